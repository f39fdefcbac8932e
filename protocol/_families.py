"""The message union of each subject family: what a reader of that family decodes."""

from __future__ import annotations

from protocol._messages import (
    ApprovalRequest,
    BrainstormResult,
    ChatMessage,
    Classification,
    ConsolidatedOptions,
    Control,
    Progress,
    Reply,
    RunAnswer,
    TurnRequest,
)
from protocol._outcomes import (
    Evaluation,
    TurnResult,
)

TaskMessage = (
    ChatMessage | Classification | TurnRequest | RunAnswer | TurnResult | Evaluation
    | BrainstormResult | Control
)
"""What arrives on a task subject (``<prefix>.task.<role>``)."""

Outbound = Progress | Reply | ConsolidatedOptions | ApprovalRequest
"""What arrives on a gateway's outbox subject (``<prefix>.out.<origin>``). Only a Reply or
ConsolidatedOptions ends a request (``is_final``)."""


def is_final(message: Outbound) -> bool:
    """Whether ``message`` ends its request (a gateway frees the session after it): a Reply or
    ConsolidatedOptions; a Progress or an ApprovalRequest is said while the request goes on."""
    return isinstance(message, Reply | ConsolidatedOptions)
