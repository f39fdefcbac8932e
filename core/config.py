"""Typed configuration: process settings from the environment and ``topology.yaml``.

Both are parsed once into frozen pydantic models; nothing else reads the environment or the
YAML file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.types import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import ConfigError
from core.rules import RuleSpec, check_rule_names
from protocol import AGENT_ROLES, Complexity, Subjects, TaskType, check_token

DEFAULT_TOPOLOGY = Path(__file__).resolve().parent.parent / "topology.yaml"


def default_topology() -> Path:
    """``./topology.yaml`` (absolute) when the current directory has one, else
    ``DEFAULT_TOPOLOGY``."""
    local = Path("topology.yaml")
    return local.resolve() if local.is_file() else DEFAULT_TOPOLOGY


class Settings(BaseSettings):
    """Process settings, from ``SB_*`` environment variables (``NATS_URL`` and
    ``DISCORD_*`` keep their usual names)."""

    model_config = SettingsConfigDict(env_prefix="SB_", frozen=True, extra="ignore")

    nats_url: str | None = Field(default=None, validation_alias="NATS_URL")
    nats_user: str | None = Field(default=None, validation_alias="NATS_USER")
    nats_password: str | None = Field(default=None, validation_alias="NATS_PASSWORD")
    nats_creds: str | None = Field(default=None, validation_alias="NATS_CREDS")
    """A JWT ``.creds`` file, or an nkey seed file (``.nk``, from ``switchboard nats-config``):
    told apart by content (``natsauth``)."""
    nats_nkey_seed: str | None = Field(default=None, validation_alias="NATS_NKEY_SEED")
    """An nkey seed file (one ``SU...`` line), when ``NATS_CREDS`` is not set."""
    nats_creds_dir: Path | None = None
    """``SB_NATS_CREDS_DIR``: the output of ``switchboard nats-config``; each process then uses
    its own identity's seed, ``<dir>/<role>.nk``, ``gateway.nk`` or ``cli.nk`` (before
    ``NATS_CREDS``), and the embedded server ``<dir>/nats-server.conf``."""
    nats_tls_ca: str | None = Field(default=None, validation_alias="NATS_TLS_CA")
    """PEM file of the CA that signed the NATS server's certificate."""
    nats_tls_cert: str | None = Field(default=None, validation_alias="NATS_TLS_CERT")
    """PEM client certificate, for a server that verifies clients (``verify: true``)."""
    nats_tls_key: str | None = Field(default=None, validation_alias="NATS_TLS_KEY")
    """PEM private key of ``nats_tls_cert``."""
    topology: Path = Field(default_factory=lambda: default_topology())
    """``SB_TOPOLOGY``; by default ``./topology.yaml`` when there is one, else the file shipped
    with Switchboard (``DEFAULT_TOPOLOGY``)."""
    data_dir: Path = Path(".switchboard")
    nats_port: int = Field(default=4222, ge=1, le=65535)
    nats_sched_batch: bool = True
    """Run the embedded nats-server under Linux's ``SCHED_BATCH`` policy (``switchboard.embedded``:
    20-30 % more tasks/s on a busy 2-core machine); ``SB_NATS_SCHED_BATCH=0`` turns it off."""
    nats_memory_limit: str = Field(default="96MiB", pattern=r"^(off|[0-9]+(B|KiB|MiB|GiB|TiB)?)$")
    """Go's soft memory limit of the embedded nats-server (``GOMEMLIMIT``, Go's syntax:
    https://pkg.go.dev/runtime#hdr-Environment_Variables; ``switchboard.embedded``);
    ``SB_NATS_MEMORY_LIMIT=off`` leaves Go's default (none, or the environment's own)."""
    log_level: str = "INFO"
    log_json: bool = False
    model: str | None = None
    """When set, every tier uses this litellm model (for example ``openrouter/openai/gpt-4o``)."""
    discord_token: str | None = Field(default=None, validation_alias="DISCORD_TOKEN")
    discord_api_base: str | None = Field(default=None, validation_alias="DISCORD_API_BASE")
    discord_gateway_url: str | None = Field(default=None, validation_alias="DISCORD_GATEWAY_URL")
    trace_console: bool = False
    stream_replicas: int | None = None
    """Overrides ``topology.stream_replicas`` (``SB_STREAM_REPLICAS=3`` on a NATS cluster)."""
    profile_dir: Path | None = None
    """``SB_PROFILE_DIR``: each actor process profiles itself (``cProfile``) and writes
    ``<role>-<replica>.prof`` there when it stops: where its CPU went, per function (the
    bench's ``request_cpu`` scenario with ``BENCH_PROFILE=1``). Slows the actors about 2x;
    for development only."""
    s3_bucket: str | None = None
    """When set, artifacts go to this S3 bucket (aioboto3; credentials from the standard AWS
    environment variables) instead of the JetStream object store
    (docs/design.md#workspaces-and-artifacts)."""
    s3_endpoint_url: str | None = None
    """An S3-compatible endpoint (MinIO, moto, LocalStack); None is AWS itself."""
    s3_prefix: str = "threads/"
    """Key prefix: objects are ``<prefix><session>/<path>``."""
    api_token: SecretStr | None = None
    """The HTTP API's bearer token (``SB_API_TOKEN``): the key named ``default``, with every
    scope; without it or ``api_keys_file`` the API does not start."""
    api_keys_file: Path | None = None
    """``SB_API_KEYS_FILE``: YAML of the HTTP API's keys, by digest, with their scopes, rate
    and quota (``api._keys``; ``switchboard api key NAME`` writes an entry)."""
    api_listen: str = "127.0.0.1:8080"
    """Where the HTTP API listens (``SB_API_LISTEN``, ``HOST:PORT``)."""
    api_webhook_secret: SecretStr | None = None
    """Signs the API's webhooks (``SB_API_WEBHOOK_SECRET``: ``whsec_<base64>`` as Standard
    Webhooks has it, or any text); without one, a run that asks for a webhook is refused."""
    api_webhook_url: str | None = None
    """``SB_API_WEBHOOK_URL``: called when a run that names no ``webhook`` ends."""
    api_webhook_allow_hosts: str = ""
    """``SB_API_WEBHOOK_ALLOW_HOSTS``: comma-separated host names or IP addresses a webhook
    may reach although they are not public (loopback, private networks)."""
    api_webhook_attempts: int = Field(default=5, ge=1, le=20)
    """Attempts per webhook delivery (``SB_API_WEBHOOK_ATTEMPTS``)."""
    api_webhook_backoff_s: float = Field(default=2.0, ge=0.0, le=3600.0)
    """Seconds before a webhook's second attempt, doubled before each later one
    (``SB_API_WEBHOOK_BACKOFF_S``)."""

    @field_validator("nats_creds_dir", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value  # SB_NATS_CREDS_DIR= unsets it, not "."

    @property
    def workspace_root(self) -> Path:
        return self.data_dir / "workspaces"


class ModelSpec(BaseModel):
    """One model, by its litellm name (``provider/model``), with call options.

    ``api_key_env`` names the environment variable holding the key; litellm's own variables
    (``OPENAI_API_KEY``, ``OPENROUTER_API_KEY``, ...) work without it. ``params`` are passed to
    the provider as they are (litellm's own options such as ``max_retries`` only to litellm).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    api_base: str | None = None
    api_key_env: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    timeout_s: float = Field(default=120.0, gt=0)
    params: dict[str, Any] = {}
    transport: Literal["auto", "litellm"] = "auto"
    """``auto``: OpenAI-compatible providers are streamed directly (litellm resolves the
    provider, endpoint, key and price; ``modelcall._direct``), the others through
    ``litellm.acompletion``; ``litellm``: always through ``litellm.acompletion``."""
    vision: bool | None = None
    """Whether the model takes images (``image_url`` content parts); None: as litellm's model
    map says (``litellm.supports_vision``; a model it does not know: no)."""

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


class BedrockAgentSpec(BaseModel):
    """An Amazon Bedrock agent that backs a role (docs/design.md#models): the role's answers
    come from the agent's ``InvokeAgent`` stream instead of a model of its tier
    (``modelcall.hosted``).

    ``agent_id`` and ``agent_alias_id`` are the agent's and its alias's ids (1-10 letters and
    digits, the ``AgentId`` / ``AgentAliasId`` patterns of the InvokeAgent API reference,
    https://docs.aws.amazon.com/bedrock/latest/APIReference/API_agent-runtime_InvokeAgent.html);
    ``region`` the AWS region of the agent; ``endpoint_url`` another endpoint (a VPC endpoint,
    a local stand-in) instead of ``bedrock-agent-runtime.<region>.amazonaws.com``. Credentials
    come from the standard AWS variables and files (``AWS_ACCESS_KEY_ID``, ``AWS_PROFILE``,
    ...), never from this file. ``timeout_s`` bounds one whole invocation, first byte to last
    event, in seconds; ``enable_trace`` asks for the agent's trace (token counts, failure
    reasons); ``stream_final_response`` asks for the answer in several chunks instead of one
    (``streamingConfigurations.streamFinalResponse``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["bedrock"]
    agent_id: str = Field(pattern=r"^[0-9a-zA-Z]{1,10}$")
    agent_alias_id: str = Field(pattern=r"^[0-9a-zA-Z]{1,10}$")
    region: str = Field(pattern=r"^[a-z0-9-]{1,32}$")
    endpoint_url: str | None = None
    timeout_s: float = Field(default=120.0, gt=0)
    enable_trace: bool = True
    stream_final_response: bool = True

    @property
    def name(self) -> str:
        """How events and progress name the agent: ``bedrock-agent/<agent id>/<alias id>``."""
        return f"bedrock-agent/{self.agent_id}/{self.agent_alias_id}"


HostedAgentSpec = BedrockAgentSpec
"""Every kind of hosted agent a role can be backed by (one so far; a second kind makes this a
union discriminated by ``kind``)."""


MCP_NAME_PATTERN = r"^[a-zA-Z0-9-]+(_[a-zA-Z0-9-]+)*$"
"""An MCP server's name in ``topology.yaml``: letters, digits, ``-`` and single ``_`` (its tools
are offered as ``<server>__<tool>``, so the name holds no ``__``), at most 32 characters."""


class SecretValue(BaseModel):
    """A value read from an environment variable at connect time (``{env: VAR}``), with an
    optional ``prefix`` (``"Bearer "``); a missing or empty variable is a tool error naming it,
    never a value written in ``topology.yaml``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    prefix: str = ""

    def value(self) -> str:
        """``prefix`` and the variable's value.

        Raises:
            ConfigError: the variable is not set or empty.
        """
        found = os.environ.get(self.env, "")
        if not found:
            msg = f"the environment variable {self.env} is not set"
            raise ConfigError(msg)
        return self.prefix + found


def resolve_values(values: dict[str, str | SecretValue]) -> dict[str, str]:
    """``values`` with each ``SecretValue`` read from the environment.

    Raises:
        ConfigError: a variable is not set.
    """
    return {k: v.value() if isinstance(v, SecretValue) else v for k, v in values.items()}


Approval = Literal["ask", "never"]
"""Whether a tool call waits for a person's approval (docs/design.md#approvals)."""
McpApproval = Approval | dict[str, Approval]
"""An MCP server's ``approval``: one value for all its tools, or per tool (by the server's own
tool name; a tool not named never asks)."""
BUILTIN_TOOLS = ("read_file", "write_file", "list_files", "run_command")
"""The workspace tools' names (``actors.tools.TOOL_NAMES``), which ``tools.approval`` may name."""


MIN_APPROVAL_DELIVERIES = 3
"""Least ``max_deliveries`` of an agent role when tools ask for approval: the deadline's first
delivery, its return when due, one retry."""


def mcp_asks(approval: McpApproval, tool: str) -> bool:
    """Whether a call of MCP tool ``tool`` (the server's own name) waits for an approval under
    the server's ``approval``."""
    return (approval if isinstance(approval, str) else approval.get(tool, "never")) == "ask"


class McpStdioSpec(BaseModel):
    """An MCP server started as a program that speaks MCP on its stdin/stdout
    (``actors.tools._mcp``). It runs inside the tool sandbox like any command
    (docs/sandbox.md): the session's workspace read-write (its working directory), the system
    read-only, no network unless ``network``, and ``read_only``: more absolute host paths it
    may read (its own data, a model cache); ``{workspace}`` in ``args`` is the workspace's
    path. ``env`` adds to the clean command environment (values as they are, or ``{env: VAR}``
    read from the actor's environment). ``timeout_s`` bounds the start and each tool call."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    command: str = Field(min_length=1)
    args: tuple[str, ...] = ()
    env: dict[str, str | SecretValue] = {}
    network: bool = False
    read_only: tuple[str, ...] = ()
    timeout_s: float = Field(default=30.0, gt=0)
    approval: McpApproval = "never"
    """``ask``: every call of the server's tools waits for a person's approval; a mapping asks
    for the tools it marks ``ask``."""


    @field_validator("read_only")
    @classmethod
    def _read_only(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [p for p in value if not p.startswith("/") or p != os.path.normpath(p)
               or p == "/"]
        if bad:
            msg = (f"read_only {bad}: each path is absolute and clean (no '..', no trailing "
                   "'/'), and not '/' itself")
            raise ValueError(msg)
        return value


class McpHttpSpec(BaseModel):
    """An MCP server reached over streamable HTTP at ``url``, with ``headers`` (values as they
    are, or ``{env: VAR, prefix: "Bearer "}`` for secrets). ``timeout_s`` bounds the connect and
    each tool call."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = Field(pattern=r"^https?://")
    headers: dict[str, str | SecretValue] = {}
    timeout_s: float = Field(default=30.0, gt=0)
    approval: McpApproval = "never"
    """As ``McpStdioSpec.approval``."""


def _mcp_kind(value: Any) -> str | None:
    if isinstance(value, McpStdioSpec) or (isinstance(value, dict) and "command" in value):
        return "stdio"
    if isinstance(value, McpHttpSpec) or (isinstance(value, dict) and "url" in value):
        return "http"
    return None


McpServerSpec = Annotated[
    Annotated[McpStdioSpec, Tag("stdio")] | Annotated[McpHttpSpec, Tag("http")],
    Discriminator(_mcp_kind, custom_error_type="mcp_server",
                  custom_error_message="an MCP server needs `command` (stdio) or `url` (HTTP)"),
]
"""One MCP server of ``mcp_servers:``: ``command`` makes it stdio, ``url`` streamable HTTP."""


class ActorSpec(BaseModel):
    """One actor role: how many replicas, how many messages each handles at once.

    ``ack_wait_s`` is how long JetStream waits for an ack before redelivering (a crashed
    replica's task comes back after this); ``max_deliveries`` bounds redeliveries before the
    message is dead-lettered. ``tier``: the model tier of the planner's and the reflector's
    calls, an agent role's default starting tier (``TIERED_ACTORS``; refused elsewhere).
    ``agent``: a hosted agent that answers for this role instead of the models of its tier
    (agent roles only; ``Topology.hosted_agent``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    replicas: int = Field(default=1, ge=0, le=64)
    max_in_flight: int = Field(default=16, ge=1, le=4096)
    tier: int = Field(default=2, ge=1, le=4)
    ack_wait_s: float = Field(default=30.0, gt=0)
    max_deliveries: int = Field(default=5, ge=1)
    nak_delay_s: float = Field(default=1.0, ge=0)
    agent: HostedAgentSpec | None = None
    mcp: tuple[str, ...] = ()
    """The MCP servers (names in ``Topology.mcp_servers``) whose tools this agent role's runs
    are offered (agent roles only)."""


class ToolPolicy(BaseModel):
    """Limits of the workspace tools (docs/design.md#the-agentic-loop: allowlist, time and output
    limits) and the
    sandbox every program a tool starts runs in (``actors.tools._sandbox``, docs/sandbox.md).

    ``sandbox``: ``auto`` takes bubblewrap where it works, else Landlock with namespaces, and
    refuses commands when neither does; ``bubblewrap`` / ``landlock`` insist on one; ``none``
    runs programs unconfined (``switchboard up`` warns). ``network`` False: an empty network
    namespace. Bounds of one command: ``timeout_s`` wall seconds, ``cpu_s`` CPU seconds
    (``RLIMIT_CPU``), ``memory_bytes`` address space (``RLIMIT_AS``), ``processes`` processes
    and threads (a pids cgroup where one can be made, and ``RLIMIT_NPROC``), ``file_bytes``
    the largest file it may write (``RLIMIT_FSIZE``), ``open_files`` (``RLIMIT_NOFILE``),
    ``tmp_bytes`` its private ``/tmp``; ``workspace_bytes`` bounds the whole workspace.
    ``approval``: built-in tools whose calls wait for a person's approval (``ask``;
    docs/design.md#approvals), and ``approval_timeout_s`` how long a run waits before it takes
    no answer as a denial.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    allowlist: tuple[str, ...] = (
        "python", "python3", "pytest", "ls", "cat", "echo", "head", "tail", "wc", "grep",
        "node", "git", "diff", "sort", "mkdir", "touch",
    )
    timeout_s: float = Field(default=30.0, gt=0)
    max_output_bytes: int = Field(default=16_000, gt=0)
    max_file_bytes: int = Field(default=1_000_000, gt=0)
    network: bool = False
    memory_bytes: int = Field(default=1 << 30, gt=0)
    sandbox: Literal["auto", "bubblewrap", "landlock", "seatbelt", "none"] = "auto"
    cpu_s: int = Field(default=60, gt=0)
    processes: int = Field(default=128, ge=8)
    file_bytes: int = Field(default=256 << 20, gt=0)
    open_files: int = Field(default=512, ge=32)
    tmp_bytes: int = Field(default=128 << 20, gt=0)
    workspace_bytes: int = Field(default=1 << 30, gt=0)
    approval: dict[str, Approval] = {}
    approval_timeout_s: float = Field(default=600.0, gt=0, le=7 * 86400)

    @field_validator("approval")
    @classmethod
    def _approval(cls, value: dict[str, Approval]) -> dict[str, Approval]:
        unknown = sorted(set(value) - set(BUILTIN_TOOLS))
        if unknown:
            msg = (f"tools.approval names {unknown}, which are not built-in tools; built-in "
                   f"tools: {', '.join(BUILTIN_TOOLS)} (an MCP server's tools take "
                   "`approval:` in mcp_servers)")
            raise ValueError(msg)
        return value


class BreakglassSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    allowed_users: tuple[str, ...] = ()
    role: str = "architect"


class RouterSpec(BaseModel):
    """How the router asks a model to decide (docs/design.md#routing: should it respond,
    and which flow, task type and role).

    ``structured_output``: ``auto`` sends litellm's ``response_format`` with a JSON schema
    when litellm says the model supports it (``litellm.supports_response_schema``) and asks
    for JSON in the prompt otherwise; ``json_schema`` / ``json_object`` force that
    ``response_format``; ``prompt`` never sends one. ``history``: recent messages of the
    conversation shown to the model (whether people are talking to each other). ``model``:
    False skips the model and lets the keyword rules decide.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: bool = True
    tier: int = Field(default=1, ge=1, le=4)
    timeout_s: float = Field(default=10.0, gt=0)
    structured_output: Literal["auto", "json_schema", "json_object", "prompt"] = "auto"
    history: int = Field(default=4, ge=0, le=20)


class CasesSpec(BaseModel):
    """The case base of finished SEQUENTIAL runs (docs/design.md#reflexion-memory; inductive
    reasoning).

    ``max_cases``: the stream keeps this many, the oldest evicted first. ``shown``: similar
    successful cases the planner is shown. ``min_similarity``: token overlap (Jaccard, 0-1)
    for a case to count as similar; ``reuse_similarity``: overlap at which a succeeded case's
    route (flow, role) is taken without asking the model. ``learn_tier``: start runs at the
    tier similar cases needed. ``embedding_model``: a litellm embedding model (a name, or an
    entry with ``api_base`` / ``api_key_env``); when set, cases are ranked by the cosine
    similarity of embeddings (at least ``min_embedding_similarity``) instead of BM25.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_cases: int = Field(default=2000, ge=1)
    shown: int = Field(default=3, ge=0, le=20)
    min_similarity: float = Field(default=0.3, ge=0, le=1)
    reuse_similarity: float = Field(default=0.8, gt=0, le=1)
    learn_tier: bool = True
    embedding_model: ModelSpec | None = None
    min_embedding_similarity: float = Field(default=0.75, ge=0, le=1)


class FeedbackSpec(BaseModel):
    """How people's 👍 / 👎 steer the next run (docs/design.md#feedback-and-confidence): a session
    whose confidence is
    below ``low_confidence`` starts its next run one tier higher."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    low_confidence: int = Field(default=40, ge=0, le=100)


_ALL_ACTORS = (
    "classifier", "planner", *AGENT_ROLES, "evaluator", "reflector", "brainstorm", "consolidator",
)
TIERED_ACTORS = ("planner", *AGENT_ROLES, "reflector")
"""The actors whose ``tier`` in ``topology.yaml`` is read: the planner's and the reflector's
models, an agent role's starting tier when nothing else decides (``router._tiers``)."""


class Topology(BaseModel):
    """The deployment: prefix, models by tier, actors and replicas (``topology.yaml``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prefix: str = "sb"
    providers: dict[str, str] = {"offline": "offline_model:OfflineLLM"}
    """Custom model providers: provider name → ``module:Class`` of a ``litellm.CustomLLM`` or
    of an in-process provider (``modelcall.register_providers``)."""
    tiers: dict[int, list[ModelSpec]]
    escalation: list[str] = []
    """Model names in escalation order; empty means the first model of tiers 1-4 in order."""
    brainstorm_models: list[str] = []
    """The two models that brainstorm in parallel; empty means the first of tiers 2 and 3."""
    max_turns: dict[Complexity, int] = {
        Complexity.SIMPLE: 10, Complexity.MEDIUM: 20, Complexity.COMPLEX: 35,
    }
    actors: dict[str, ActorSpec]
    tools: ToolPolicy = ToolPolicy()
    breakglass: BreakglassSpec = BreakglassSpec()
    history_window: int = Field(default=20, ge=0)
    lock_ttl_s: float = Field(default=30.0, gt=0)
    """Lease of a session's run lock: a crashed holder's lock expires after this
    (docs/design.md#the-agentic-loop)."""
    lock_wait_s: float = Field(default=1800.0, ge=0)
    """How long a second request waits for the session's running one before it is retried."""
    stream_replicas: int = Field(default=1, ge=1, le=5)
    """Copies JetStream keeps of every stream and bucket: 3 on a cluster (R3)."""
    model_override: str | None = None
    router: RouterSpec = RouterSpec()
    rules: list[RuleSpec] = []
    cases: CasesSpec = CasesSpec()
    feedback: FeedbackSpec = FeedbackSpec()
    task_tiers: dict[TaskType, int] = {}
    """Starting tier per task type, before what the role's own ``tier`` says."""
    role_models: dict[str, dict[int, str]] = {}
    """A role's own model within a tier: role → tier → model name; it goes first, the tier's
    models follow as fallbacks."""
    peer_review: bool = False
    """The code reviewer asks a second, randomly chosen model of its tier for an opinion."""
    mcp_servers: dict[str, McpServerSpec] = {}
    """MCP tool servers by name (``actors.<role>.mcp`` says which roles use which)."""

    @field_validator("mcp_servers")
    @classmethod
    def _mcp_servers(cls, value: dict[str, McpServerSpec]) -> dict[str, McpServerSpec]:
        bad = sorted(name for name in value
                     if len(name) > 32 or not re.fullmatch(MCP_NAME_PATTERN, name))
        if bad:
            msg = (f"mcp_servers {bad}: a name is 1-32 letters, digits, '-' and single '_' "
                   "(tools are offered as <server>__<tool>)")
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _mcp_uses(self) -> Topology:
        for role, spec in self.actors.items():
            if spec.mcp and role not in AGENT_ROLES:
                msg = (f"actors.{role}.mcp: only agent roles use MCP servers; agent roles: "
                       f"{', '.join(AGENT_ROLES)}")
                raise ValueError(msg)
            unknown = sorted(set(spec.mcp) - set(self.mcp_servers))
            if unknown:
                msg = (f"actors.{role}.mcp names unknown MCP servers {unknown}; declared in "
                       f"mcp_servers: {', '.join(self.mcp_servers) or '(none)'}")
                raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _approval_deadlines(self) -> Topology:
        """An approval's deadline comes back to its role once before it is due (a nak with a
        delay, docs/design.md#approvals): an agent role whose tools ask needs deliveries for
        that return and for a retry after it."""
        asks = bool(self.tools.approval) or any(
            spec.approval != "never" for spec in self.mcp_servers.values())
        low = sorted(role for role, spec in self.actors.items()
                     if role in AGENT_ROLES and spec.max_deliveries < MIN_APPROVAL_DELIVERIES)
        if asks and low:
            msg = (f"actors {low}: max_deliveries must be at least {MIN_APPROVAL_DELIVERIES} "
                   "when tools ask for approval (an approval's deadline comes back once before "
                   "it is due)")
            raise ValueError(msg)
        return self

    @field_validator("rules")
    @classmethod
    def _rules(cls, value: list[RuleSpec]) -> list[RuleSpec]:
        return check_rule_names(value)

    @field_validator("task_tiers")
    @classmethod
    def _task_tiers(cls, value: dict[TaskType, int]) -> dict[TaskType, int]:
        bad = {str(k): v for k, v in value.items() if not 1 <= v <= 4}
        if bad:
            msg = f"task_tiers: tiers are 1-4, got {bad}"
            raise ValueError(msg)
        return value

    @field_validator("role_models")
    @classmethod
    def _role_models(cls, value: dict[str, dict[int, str]]) -> dict[str, dict[int, str]]:
        for role, by_tier in value.items():
            if role not in _ALL_ACTORS:
                msg = f"role_models: unknown role {role!r}; known: {', '.join(_ALL_ACTORS)}"
                raise ValueError(msg)
            bad = sorted(t for t in by_tier if not 1 <= t <= 4)
            if bad:
                msg = f"role_models.{role}: tiers are 1-4, got {bad}"
                raise ValueError(msg)
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return check_token(value, "prefix")

    @field_validator("tiers")
    @classmethod
    def _tiers(cls, value: dict[int, list[ModelSpec]]) -> dict[int, list[ModelSpec]]:
        unknown = sorted(t for t in value if t not in (1, 2, 3, 4))
        if unknown:
            msg = f"tiers {unknown} do not exist: tiers are 1-4 (cheap chat → critical decisions)"
            raise ValueError(msg)
        missing = [t for t in (1, 2, 3, 4) if not value.get(t)]
        if missing:
            msg = f"tiers {missing} have no model: every tier 1-4 needs at least one"
            raise ValueError(msg)
        return value

    @field_validator("actors")
    @classmethod
    def _actors(cls, value: dict[str, ActorSpec]) -> dict[str, ActorSpec]:
        unknown = sorted(set(value) - set(_ALL_ACTORS))
        if unknown:
            msg = f"unknown actors {unknown}; known: {', '.join(_ALL_ACTORS)}"
            raise ValueError(msg)
        unread = sorted(role for role, spec in value.items()
                        if "tier" in spec.model_fields_set and role not in TIERED_ACTORS)
        if unread:
            msg = (f"actors {unread}: `tier` is read only for the planner, the reflector and the "
                   "agent roles (the classifier's is router.tier; the others call no model by "
                   "tier)")
            raise ValueError(msg)
        backed = sorted(role for role, spec in value.items()
                        if spec.agent is not None and role not in AGENT_ROLES)
        if backed:
            msg = (f"actors {backed}: only agent roles can be backed by a hosted agent "
                   f"(agent:); agent roles: {', '.join(AGENT_ROLES)}")
            raise ValueError(msg)
        return value

    @property
    def subjects(self) -> Subjects:
        return Subjects(self.prefix)

    def actor(self, role: str) -> ActorSpec:
        """The spec of ``role``; roles absent from the file get the defaults."""
        return self.actors.get(role, ActorSpec())

    def hosted_agent(self, role: str) -> HostedAgentSpec | None:
        """The hosted agent that answers for ``role`` instead of its tier's models, or None
        when models answer: the one place that decides (``modelcall.hosted``)."""
        return self.actor(role).agent

    @property
    def pinned_model(self) -> ModelSpec | None:
        """The one model every call uses when ``SB_MODEL`` is set (``model_override``): it
        replaces every tier's models, the escalation path, the brainstormers, the router's
        model and the bots' and roles' own models. None when it is not set. The one place the
        override is read; ``actors.router._tiers`` applies it."""
        return ModelSpec(name=self.model_override) if self.model_override else None

    def model_names(self) -> set[str]:
        """Every model name this topology can call: the tiers' (or the override), escalation,
        brainstorm and role models, and the case base's embedding model. A Discord bot's own
        model overrides are stored by the gateway, not here."""
        names = {spec.name for specs in self.tiers.values() for spec in specs}
        names.update(self.escalation, self.brainstorm_models)
        names.update(model for by_tier in self.role_models.values() for model in by_tier.values())
        if self.pinned_model is not None:
            names.add(self.pinned_model.name)
        if self.cases.embedding_model is not None:
            names.add(self.cases.embedding_model.name)
        return names

    def find_model(self, name: str) -> ModelSpec:
        """The spec of the model called ``name`` in any tier (a bare spec if none)."""
        if self.pinned_model is not None:
            return self.pinned_model
        for models in self.tiers.values():
            for spec in models:
                if spec.name == name:
                    return spec
        return ModelSpec(name=name)

    @property
    def roles(self) -> tuple[str, ...]:
        """Every actor role, in pipeline order."""
        return _ALL_ACTORS


ActorKind = Literal["classifier", "planner", "agent", "evaluator", "reflector", "brainstorm",
                    "consolidator"]


def load_settings() -> Settings:
    """The process settings from the environment.

    Raises:
        ConfigError: a variable does not validate (the message names it, e.g. ``SB_NATS_PORT``).
    """
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{_variable(error['loc'])}={error.get('input')!r}: {error['msg']}"
            for error in exc.errors())
        msg = f"invalid settings in the environment: {problems}"
        raise ConfigError(msg) from exc


def _variable(loc: tuple[int | str, ...]) -> str:
    """The environment variable of a settings field (``nats_port`` → ``SB_NATS_PORT``)."""
    field = str(loc[0]) if loc else "?"
    alias = Settings.model_fields[field].validation_alias if field in Settings.model_fields \
        else None
    return str(alias) if isinstance(alias, str) else f"SB_{field.upper()}"


def load_topology(path: Path | None = None, *, settings: Settings | None = None) -> Topology:
    """Read and validate ``topology.yaml``.

    Args:
        path: the file; defaults to ``settings.topology``.
        settings: process settings; ``SB_MODEL`` there overrides every tier's model.

    Raises:
        ConfigError: the file is missing, is not YAML, or does not validate.
    """
    settings = settings or load_settings()
    path = path or settings.topology
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as exc:
        msg = f"cannot read topology {path}: {exc.strerror}"
        raise ConfigError(msg) from exc
    except yaml.YAMLError as exc:
        msg = f"topology {path} is not valid YAML: {exc}"
        raise ConfigError(msg) from exc
    if settings.model:
        raw["model_override"] = settings.model
    if settings.stream_replicas:
        raw["stream_replicas"] = settings.stream_replicas
    try:
        return Topology.model_validate(raw)
    except ValidationError as exc:
        msg = f"topology {path} is invalid:\n{exc}"
        raise ConfigError(msg) from exc


def actor_kind(role: str) -> ActorKind:
    """Which actor implementation serves ``role``.

    Raises:
        ConfigError: ``role`` is not an actor of docs/design.md#agent-roles.
    """
    if role in AGENT_ROLES:
        return "agent"
    if role in _ALL_ACTORS:
        return role  # type: ignore[return-value]
    msg = f"unknown actor role {role!r}; known: {', '.join(_ALL_ACTORS)}"
    raise ConfigError(msg)
