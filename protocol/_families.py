"""The message union of each subject family: what a reader of that family decodes."""

from __future__ import annotations

from protocol._legacy import (
    LegacyBrainstormResult,
    LegacyClassification,
    LegacyEvaluation,
    LegacyTurnRequest,
    LegacyTurnResult,
)
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
    | LegacyClassification | LegacyTurnRequest | LegacyTurnResult | LegacyEvaluation
    | LegacyBrainstormResult
)
"""What arrives on a task subject (``<prefix>.task.<role>``). The ``Legacy*`` types are read
(``actors.legacy.upgrade`` turns them into the flat shapes) and never written."""

Outbound = Progress | Reply | ConsolidatedOptions
"""What arrives on a gateway's outbox subject (``<prefix>.out.<origin>``)."""
