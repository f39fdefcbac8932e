"""What Switchboard reads from a Bedrock agent's ``trace`` events: token counts, the failure
reason, and a count of the steps (it acts on none of them; they are reported).

The shapes are the ``TracePart`` / ``Trace`` union of the Bedrock agent runtime API
(https://docs.aws.amazon.com/bedrock/latest/APIReference/API_agent-runtime_TracePart.html,
https://docs.aws.amazon.com/bedrock/latest/userguide/trace-events.html): ``trace`` holds one
of ``preProcessingTrace``, ``orchestrationTrace``, ``postProcessingTrace``,
``routingClassifierTrace``, ``customOrchestrationTrace``, ``guardrailTrace`` or
``failureTrace``; the step traces hold one member each (``rationale``, ``invocationInput``,
``observation``, ``modelInvocationInput``, ``modelInvocationOutput``), and a
``modelInvocationOutput`` carries ``metadata.usage`` with ``inputTokens`` / ``outputTokens``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TraceSummary:
    """The traces of one invocation, folded.

    ``steps`` counts trace kinds (``orchestrationTrace.rationale``: 2, ...);
    ``input_tokens`` / ``output_tokens`` are summed over every model invocation the agent
    made (``metadata.usage``); ``usage_seen`` says whether any trace carried usage;
    ``failure`` is the last ``failureTrace.failureReason`` and ``failure_code`` its
    ``failureCode`` (0 when absent); ``rationale`` the last rationale text.
    """

    steps: Counter[str] = field(default_factory=Counter)
    input_tokens: int = 0
    output_tokens: int = 0
    usage_seen: bool = False
    failure: str = ""
    failure_code: int = 0
    rationale: str = ""

    def add(self, part: dict[str, Any]) -> str:
        """Fold one ``trace`` event (a ``TracePart``) in; returns the step's kind."""
        trace = part.get("trace") or {}
        kind = next(iter(trace), "unknown")
        body = trace.get(kind) or {}
        step = next(iter(body), "") if kind != "failureTrace" else ""
        name = f"{kind}.{step}" if step else kind
        self.steps[name] += 1
        if kind == "failureTrace":
            self.failure = str(body.get("failureReason") or "the agent reported a failure")
            self.failure_code = int(body.get("failureCode") or 0)
            return name
        found = body.get(step)
        inner: dict[str, Any] = found if isinstance(found, dict) else {}
        if step == "rationale":
            self.rationale = str(inner.get("text") or "")
        metadata = inner.get("metadata") or {}
        usage = metadata.get("usage") if step == "modelInvocationOutput" else None
        if usage:
            self.usage_seen = True
            self.input_tokens += int(usage.get("inputTokens") or 0)
            self.output_tokens += int(usage.get("outputTokens") or 0)
        return name

    def describe(self) -> str:
        """One line for an execution event: ``3 trace events: orchestrationTrace.rationale
        ×1, ...``."""
        total = sum(self.steps.values())
        kinds = ", ".join(f"{name} ×{count}" for name, count in self.steps.most_common())
        return f"{total} trace events: {kinds}" if total else "no trace events"
