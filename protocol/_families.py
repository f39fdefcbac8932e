"""The message union of each subject family: what a reader of that family decodes."""

from __future__ import annotations

from protocol._messages import (
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

Outbound = Progress | Reply | ConsolidatedOptions
"""What arrives on a gateway's outbox subject (``<prefix>.out.<origin>``)."""
