"""InvokeAgent failures as ``core.errors.ModelError`` subclasses, like any model's.

The error codes are those of the InvokeAgent API reference ("Errors" and the
``ResponseStream`` exception members,
https://docs.aws.amazon.com/bedrock/latest/APIReference/API_agent-runtime_InvokeAgent.html)
and of AWS's common errors (https://docs.aws.amazon.com/bedrock/latest/APIReference/CommonErrors.html).
An error arrives either as an HTTP error answer (``x-amzn-ErrorType: ThrottlingException``,
botocore's ``ClientError``) or as an exception event in the middle of the stream
(``:exception-type: throttlingException``, botocore's ``EventStreamError``); both are matched
without regard to case. Throttling, quotas and the service's own failures are transient (the
request comes back later, another model of the tier may answer first); validation, access
and unknown agents are permanent: answered at once, never retried.
"""

from __future__ import annotations

from botocore.eventstream import ParserError
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
    ResponseStreamingError,
)

from core.config import HostedAgentSpec
from core.errors import (
    ModelError,
    ModelRejectedError,
    ModelTimeoutError,
    ModelUnavailableError,
)

DETAIL_CHARS = 300

_TRANSIENT = {
    "throttlingexception": "throttled by Bedrock (too many requests)",
    "servicequotaexceededexception": "over the account's Bedrock quota",
    "internalserverexception": "Bedrock failed internally",
    "badgatewayexception": "a dependency of the agent failed on the server side",
    "dependencyfailedexception": "a dependency of the agent (its model, Lambda, knowledge "
                                 "base) failed",
    "modelnotreadyexception": "the agent's model is not ready to serve yet",
    "conflictexception": "the session is busy with another request",
    "serviceunavailableexception": "Bedrock is unavailable",
}
"""Error code (lower case) → words; all ``ModelUnavailableError``."""

_PERMANENT = {
    "validationexception": "Bedrock rejected the request",
    "accessdeniedexception": "access denied: check the AWS credentials (AWS_ACCESS_KEY_ID, "
                             "AWS_PROFILE, ...) and their bedrock:InvokeAgent permission",
    "unrecognizedclientexception": "AWS does not know these credentials",
    "invalidsignatureexception": "the request signature is invalid (check the secret key)",
    "expiredtokenexception": "the AWS session token has expired",
    "resourcenotfoundexception": "no such agent or alias (check agent_id, agent_alias_id and "
                                 "region)",
}
"""Error code (lower case) → words; all ``ModelRejectedError``."""


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 1] + "…"


def from_client_error(spec: HostedAgentSpec, exc: ClientError) -> ModelError:
    """The ModelError for an AWS error answer or an exception event of the stream.

    Args:
        spec: the agent that was called (its ``name`` goes into the message).
        exc: botocore's ``ClientError`` (``EventStreamError`` for stream exceptions); its
            ``response["Error"]`` holds ``Code`` and ``Message``, and
            ``ResponseMetadata.HTTPStatusCode`` the HTTP status (400 for stream events).

    Returns:
        ``ModelUnavailableError`` for the transient codes above, 429 and 5xx;
        ``ModelRejectedError`` for the permanent ones and any other 4xx.
    """
    error = exc.response.get("Error", {})
    code = str(error.get("Code") or "")
    detail = _clip(str(error.get("Message") or code or exc))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    key = code.lower()
    prefix = f"hosted agent {spec.name!r} failed"
    if key in _TRANSIENT:
        return ModelUnavailableError(f"{prefix}: {_TRANSIENT[key]} ({code}: {detail})",
                                     model=spec.name)
    if key in _PERMANENT:
        return ModelRejectedError(f"{prefix}: {_PERMANENT[key]} ({code}: {detail})",
                                  model=spec.name)
    if status == 429 or status >= 500:
        return ModelUnavailableError(f"{prefix}: HTTP {status} {code} ({detail})",
                                     model=spec.name)
    return ModelRejectedError(f"{prefix}: {code or f'HTTP {status}'} ({detail})",
                              model=spec.name)


def from_botocore(spec: HostedAgentSpec, exc: BotoCoreError | ParserError,
                  where: str) -> ModelError:
    """The ModelError for a failure on this side of the wire.

    Args:
        spec: the agent that was called.
        exc: botocore's exception: no or partial credentials, an unknown profile and an
            invalid parameter are permanent (``ModelRejectedError``); a read timeout is
            ``ModelTimeoutError``; connection failures, a stream cut short or with a bad
            checksum, and anything else are transient (``ModelUnavailableError``).
        where: the endpoint called, for connection errors.
    """
    prefix = f"hosted agent {spec.name!r} failed"
    detail = _clip(str(exc) or type(exc).__name__)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return ModelRejectedError(f"{prefix}: no AWS credentials: set AWS_ACCESS_KEY_ID and "
                                  f"AWS_SECRET_ACCESS_KEY, or AWS_PROFILE ({detail})",
                                  model=spec.name)
    if isinstance(exc, ProfileNotFound):
        return ModelRejectedError(f"{prefix}: no such AWS profile: check AWS_PROFILE "
                                  f"({detail})", model=spec.name)
    if isinstance(exc, ParamValidationError):
        return ModelRejectedError(f"{prefix}: invalid request ({detail})", model=spec.name)
    if isinstance(exc, ReadTimeoutError):
        return ModelTimeoutError(f"{prefix}: no data from {where} within the read timeout "
                                 f"({detail})", model=spec.name)
    if isinstance(exc, ConnectionError):
        return ModelUnavailableError(f"{prefix}: cannot reach {where} ({detail})",
                                     model=spec.name)
    if isinstance(exc, ResponseStreamingError | ParserError):
        return ModelUnavailableError(f"{prefix}: the answer broke off mid-stream ({detail})",
                                     model=spec.name)
    return ModelUnavailableError(f"{prefix}: {type(exc).__name__} ({detail})", model=spec.name)
