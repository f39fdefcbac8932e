"""Errors of the actor runtime and the actors.

Hierarchy::

    SwitchboardError
    ├── ConfigError              topology.yaml or settings are invalid
    ├── BrokerError              NATS / JetStream failed or is unreachable
    │   ├── NotRunningError      no Switchboard streams on the server (system not up)
    │   ├── AuthError            the server refused the credentials (authorization violation)
    │   ├── PermissionDeniedError   a publish or subscribe outside this identity's permissions
    │   └── TLSError             no TLS session: unknown CA, bad certificate, TLS not offered
    ├── UnparsableAnswerError    a model's routing answer is unusable (the rules decide)
    ├── EmbeddedServerError      the embedded nats-server could not start
    ├── ArtifactError            the artifact store (JetStream object store, S3) failed
    │   └── ArtifactNotFoundError   no such artifact in the store
    ├── DeadLetterError          a dead letter cannot be replayed (``runtime.dead_letters``)
    │   └── DeadLetterNotFoundError  no dead letter with that sequence in the DLQ stream
    └── HandlerError             a handler could not finish; decides ack / nak / term
        ├── NotDueError          the message is due later: nak with its delay, not a failure
        ├── ModelError           a model call failed; always one of the two below
        ├── TransientError       worth retrying: nak with a delay, redelivered later
        │   ├── ModelUnavailableError (ModelError)  rate limit, 5xx, connection: another
        │   │   │                model of the tier may answer, or this one later
        │   │   └── ModelTimeoutError
        │   ├── StoreConflictError   a KV compare-and-set lost a race
        │   └── LockLostError    another replica took a session's run lock (``actors.runs``)
        └── PermanentError       retrying cannot help: terminate and dead-letter
            ├── ModelRejectedError (ModelError)  bad key, unknown model, bad request, content
            │   │                policy: no retry fixes it, the person is told at once
            │   └── ContextWindowError   too long for this model (a larger one may take it)
            ├── MalformedMessageError   the bytes are not a known message
            ├── UnhandledMessageError   the actor has no handler for this message type
            └── ToolError        a tool refused or failed (shown to the model, not raised out)
                ├── ToolRefusedError  a safety rule refused the call; ``kind`` names the rule
                ├── SandboxUnavailableError  no sandbox mechanism works on this machine
                ├── ServerUnavailableError   an MCP tool server cannot be started or reached
                └── GitError     a git command in the workspace failed (merge conflict, bad ref)
"""

from __future__ import annotations


class SwitchboardError(Exception):
    """Root of every error raised by the ``actors`` package."""


class ConfigError(SwitchboardError):
    """Configuration (``topology.yaml``, environment) is invalid."""


class BrokerError(SwitchboardError):
    """NATS or JetStream failed, timed out or cannot be reached."""


class NotRunningError(BrokerError):
    """The NATS server answers but Switchboard's streams are missing: the system is not up.

    The one such error of every package (``gateway.errors`` re-exports it)."""

    def __init__(self, msg: str = "Switchboard is not running") -> None:
        super().__init__(msg)


class UnparsableAnswerError(SwitchboardError, ValueError):
    """A model's answer holds no usable route; the message says what was wrong (the router
    falls back to its rules: ``actors.router``)."""


class AuthError(BrokerError):
    """The NATS server refused this process's credentials (user/password, nkey seed, JWT
    creds): its "Authorization Violation" (docs.nats.io, "Authentication")."""


class PermissionDeniedError(BrokerError):
    """The NATS server refused a publish or a subscription because this identity's
    permissions do not allow its subject (docs.nats.io, "Authorization"); ``subject`` names
    it."""

    def __init__(self, message: str, *, subject: str = "") -> None:
        super().__init__(message)
        self.subject = subject


class TLSError(BrokerError):
    """No TLS session with the NATS server: the certificate is not signed by the configured
    CA (``NATS_TLS_CA``) or names another host, the server asks for a client certificate, or
    TLS was asked for (``tls://``, ``NATS_TLS_*``) and the server does not offer it."""


class EmbeddedServerError(SwitchboardError):
    """The embedded ``nats-server`` could not be found or did not become healthy."""


class HandlerError(SwitchboardError):
    """A handler could not finish its message."""


class NotDueError(HandlerError):
    """The message is not due yet (a deadline that has not passed): it is nak'ed with a delay
    of ``due_in_s`` seconds and comes back then, without counting as a failure (no retry
    event, no dead letter). Each return still counts as a JetStream delivery."""

    def __init__(self, message: str, *, due_in_s: float) -> None:
        super().__init__(message)
        self.due_in_s = max(0.0, due_in_s)


class TransientError(HandlerError):
    """Retrying later may succeed: the message is nak'ed with a delay."""


class ModelError(HandlerError):
    """A model call failed; ``model`` names the litellm model. Raised as one of its
    subclasses, which say whether a retry or another model can help."""

    def __init__(self, message: str, *, model: str = "") -> None:
        super().__init__(message)
        self.model = model

    fallback_helps: bool = True
    """Whether another model of the tier may answer where this one failed."""


class ModelUnavailableError(ModelError, TransientError):
    """The provider could not answer now (429 rate limit, 5xx, connection refused, a broken
    stream): retried later, and another model of the tier is tried first."""


class ModelTimeoutError(ModelUnavailableError):
    """A model call took longer than its timeout."""


class LockLostError(TransientError):
    """Another replica took the session's run lock (this holder's lease had expired)."""


class StoreConflictError(TransientError):
    """A KV compare-and-set lost to a concurrent writer more times than allowed."""


class PermanentError(HandlerError):
    """Retrying cannot help: the message is terminated and dead-lettered."""


class ModelRejectedError(ModelError, PermanentError):
    """The provider refused the request for a reason no retry fixes (401 bad key, 404 unknown
    model, 400 bad request, content policy): never retried or redelivered."""

    fallback_helps = False


class ContextWindowError(ModelRejectedError):
    """The conversation is longer than the model's context window: this model will never
    take it, a model with a larger window may."""

    fallback_helps = True


class MalformedMessageError(PermanentError):
    """The message bytes do not decode to a known message type."""


class UnhandledMessageError(PermanentError):
    """The actor declares no handler for this message type."""


class ToolError(PermanentError):
    """A tool refused (path outside the workspace, command not allowed) or failed."""


class ToolRefusedError(ToolError):
    """A tool's safety rule refused the call; ``kind`` names the rule for events
    (``path_outside_workspace``, ``command_not_allowed``, ``network_unavailable``, ...)."""

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class SandboxUnavailableError(ToolError):
    """No sandbox mechanism (bubblewrap, Landlock) can run a program on this machine; the
    message says why, for the person and the events (``actors.tools._sandbox``)."""


class ArtifactError(SwitchboardError):
    """The artifact store (JetStream object store or S3) failed, timed out or is missing."""


class ArtifactNotFoundError(ArtifactError):
    """No artifact with this session and path is in the store."""


class DeadLetterError(SwitchboardError):
    """A dead letter cannot be replayed: its original subject is not a task subject of this
    deployment (``runtime.dead_letters``)."""


class DeadLetterNotFoundError(DeadLetterError):
    """No dead letter with this stream sequence (never stored, discarded, replayed, or aged
    out after 30 days)."""


class ServerUnavailableError(ToolError):
    """An MCP tool server could not be started or reached, or died again after its one
    restart (``actors.tools._mcp``); the model gets a ``server_unavailable`` tool error."""


class GitError(ToolError):
    """A git command in a workspace failed: a merge conflict, a bad branch name, a timeout."""
