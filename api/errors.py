"""Errors of the HTTP API; each one that reaches a request is answered as
``{"error": {"code", "message"}}`` with its ``status``.

Hierarchy::

    ApiError                     500 internal
    ├── ApiConfigError           the API cannot start: no token, a bad --listen (not HTTP)
    ├── BadRequestError          400 bad_request: the body or a parameter is invalid
    │   ├── MalformedJsonError       400 malformed_json: the body is not JSON
    │   ├── BadPathError             400 bad_path: a file path leaves the workspace or is not clean
    │   └── BadHeaderError           400 bad_header: a request header's value is not valid
    ├── UnauthorizedError        401 unauthorized: no or a wrong bearer token
    ├── ForbiddenError           403 forbidden: deciding an approval of another user's run
    │   ├── InsufficientScopeError   403 insufficient_scope: the key lacks the route's scope
    │   ├── SessionOwnedError        403 session_owned: the session is another key's
    │   └── WebhookRefusedError      403 webhook_refused: a webhook URL the API will not call
    ├── NotFoundError            404 not_found: no such run, file or route
    ├── ConflictError            409 conflict: the run cannot be stopped (finished or paused),
    │   │                        or does not wait on that approval
    │   ├── SessionBusyError         409 session_busy: ``reject`` and the session has a run
    │   ├── NotRetryableError        409 not_retryable: only a failed run is retried
    │   └── IdempotencyInProgressError 409 idempotency_in_progress: the key's first request
    │                                has not stored its run yet
    ├── PayloadTooLargeError     413 payload_too_large: the body is larger than the limit
    ├── UnsupportedMediaTypeError 415 unsupported_media_type: the body is not sent as JSON
    ├── IdempotencyKeyReusedError 422 idempotency_key_reused: the key came with another body
    ├── RateLimitedError         429 rate_limited: the key's rate is spent (``Retry-After``)
    │   └── QuotaExceededError       429 quota_exceeded: the key's runs of the day are spent
    └── UnavailableError         503 unavailable: NATS or the actors do not answer
        └── StoreError               503 unavailable: a JetStream bucket did not answer
"""

from __future__ import annotations


class ApiError(Exception):
    """Root of every error raised by the ``api`` package; ``status`` and ``code`` are what a
    client gets."""

    status = 500
    code = "internal"

    def headers(self) -> dict[str, str]:
        """Response header fields the answer carries besides the JSON body (none here)."""
        return {}


class ApiConfigError(ApiError):
    """The API cannot start: ``SB_API_TOKEN`` is missing or ``--listen`` is not HOST:PORT."""


class BadRequestError(ApiError):
    """The request body or a parameter is invalid (wrong type, unknown field, empty message)."""

    status = 400
    code = "bad_request"


class MalformedJsonError(BadRequestError):
    """The body is not a JSON document."""

    code = "malformed_json"


class BadPathError(BadRequestError):
    """A file path is absolute, has ``..`` or empty parts, backslashes or control characters."""

    code = "bad_path"


class BadHeaderError(BadRequestError):
    """A request header's value is not valid (a ``Last-Event-ID`` this API never sent)."""

    code = "bad_header"


class UnauthorizedError(ApiError):
    """The ``Authorization: Bearer`` token is missing or wrong."""

    status = 401
    code = "unauthorized"

    def headers(self) -> dict[str, str]:
        """``WWW-Authenticate``, naming the scheme (RFC 9110 §11.6.1, RFC 6750 §3)."""
        return {"WWW-Authenticate": 'Bearer realm="switchboard"'}


class ForbiddenError(ApiError):
    """The caller may not do this to the run (deciding an approval of someone else's run)."""

    status = 403
    code = "forbidden"


class InsufficientScopeError(ForbiddenError):
    """The key has not the scope the route needs (RFC 6750 §3.1 names the error so)."""

    code = "insufficient_scope"


class SessionOwnedError(ForbiddenError):
    """A run submitted into a session that another API key started."""

    code = "session_owned"


class WebhookRefusedError(ForbiddenError):
    """A webhook URL the API will not call: not http(s) with a host, user info in it, a host
    that is not public (unless allowed), or webhooks are not configured (no secret to sign
    them with). A refusal by policy, not a malformed request: 403."""

    code = "webhook_refused"


class NotFoundError(ApiError):
    """No such run, file or route."""

    status = 404
    code = "not_found"


class ConflictError(ApiError):
    """The request does not fit the run's state (stopping a finished or paused run)."""

    status = 409
    code = "conflict"


class SessionBusyError(ConflictError):
    """``multitask_strategy: reject`` and the session has a run in progress."""

    code = "session_busy"


class NotRetryableError(ConflictError):
    """Retrying a run that did not fail (one that is going on, answered, stopped or paused)."""

    code = "not_retryable"


class IdempotencyInProgressError(ConflictError):
    """A request with this ``Idempotency-Key`` is being handled and has no run yet: retry
    (draft-ietf-httpapi-idempotency-key-header §2.7)."""

    code = "idempotency_in_progress"


class IdempotencyKeyReusedError(ApiError):
    """The ``Idempotency-Key`` was used with another request body
    (draft-ietf-httpapi-idempotency-key-header §2.7: 422)."""

    status = 422
    code = "idempotency_key_reused"


class RateLimitedError(ApiError):
    """The key made more requests than its rate allows: try again in ``retry_after_s``."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        """``Retry-After`` in whole seconds, at least 1 (RFC 9110 §10.2.3, RFC 6585 §4)."""
        return {"Retry-After": str(max(1, int(self.retry_after_s + 0.999)))}


class QuotaExceededError(RateLimitedError):
    """The key started all the runs its ``runs_per_day`` allows this UTC day."""

    code = "quota_exceeded"


class PayloadTooLargeError(ApiError):
    """The request body is larger than the API accepts."""

    status = 413
    code = "payload_too_large"


class UnsupportedMediaTypeError(ApiError):
    """The request body's ``Content-Type`` is not ``application/json``."""

    status = 415
    code = "unsupported_media_type"

    def headers(self) -> dict[str, str]:
        """``Accept``: the media type the body must have (RFC 9110 §15.5.16, §12.5.1)."""
        return {"Accept": "application/json"}


class UnavailableError(ApiError):
    """NATS, JetStream or the actors do not answer: try again later."""

    status = 503
    code = "unavailable"


class StoreError(UnavailableError):
    """A JetStream bucket of the API (runs, files) failed or did not answer in time."""
