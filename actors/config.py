"""Typed configuration: process settings from the environment and ``topology.yaml``.

Both are parsed once into frozen pydantic models; nothing else reads the environment or the
YAML file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from actors.errors import ConfigError
from protocol import AGENT_ROLES, Complexity, Subjects, check_token

DEFAULT_TOPOLOGY = Path(__file__).resolve().parent.parent / "topology.yaml"


class Settings(BaseSettings):
    """Process settings, from ``SB_*`` environment variables (``NATS_URL`` and
    ``DISCORD_*`` keep their usual names)."""

    model_config = SettingsConfigDict(env_prefix="SB_", frozen=True, extra="ignore")

    nats_url: str | None = Field(default=None, validation_alias="NATS_URL")
    nats_user: str | None = Field(default=None, validation_alias="NATS_USER")
    nats_password: str | None = Field(default=None, validation_alias="NATS_PASSWORD")
    nats_creds: str | None = Field(default=None, validation_alias="NATS_CREDS")
    topology: Path = DEFAULT_TOPOLOGY
    data_dir: Path = Path(".switchboard")
    nats_port: int = 4222
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
    s3_bucket: str | None = None
    """When set, artifacts go to this S3 bucket (aioboto3; credentials from the standard AWS
    environment variables) instead of the JetStream object store (SPEC.md §6)."""
    s3_endpoint_url: str | None = None
    """An S3-compatible endpoint (MinIO, moto, LocalStack); None is AWS itself."""
    s3_prefix: str = "threads/"
    """Key prefix: objects are ``<prefix><session>/<path>`` (seed 003:
    ``s3://discord-bot-artifacts/threads/<thread-id>/``)."""

    @property
    def workspace_root(self) -> Path:
        return self.data_dir / "workspaces"


class ModelSpec(BaseModel):
    """One model, by its litellm name (``provider/model``), with call options.

    ``api_key_env`` names the environment variable holding the key; litellm's own variables
    (``OPENAI_API_KEY``, ``OPENROUTER_API_KEY``, ...) work without it. ``params`` are passed to
    ``litellm.acompletion`` as they are.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    api_base: str | None = None
    api_key_env: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    timeout_s: float = Field(default=120.0, gt=0)
    params: dict[str, Any] = {}

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


class ActorSpec(BaseModel):
    """One actor role: how many replicas, how many messages each handles at once.

    ``ack_wait_s`` is how long JetStream waits for an ack before redelivering (a crashed
    replica's task comes back after this); ``max_deliveries`` bounds redeliveries before the
    message is dead-lettered.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    replicas: int = Field(default=1, ge=0, le=64)
    max_in_flight: int = Field(default=16, ge=1, le=4096)
    tier: int = Field(default=2, ge=1, le=4)
    ack_wait_s: float = Field(default=30.0, gt=0)
    max_deliveries: int = Field(default=5, ge=1)
    nak_delay_s: float = Field(default=1.0, ge=0)


class ToolPolicy(BaseModel):
    """Limits of the workspace tools (SPEC.md §3: allowlist, time and output limits).

    ``memory_bytes`` is the address-space limit (``RLIMIT_AS``) of a command; ``network``
    False runs commands in a new, empty network namespace.
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


class BreakglassSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    allowed_users: tuple[str, ...] = ()
    role: str = "architect"


_ALL_ACTORS = (
    "classifier", "planner", *AGENT_ROLES, "evaluator", "reflector", "brainstorm", "consolidator",
)


class Topology(BaseModel):
    """The deployment: prefix, models by tier, actors and replicas (``topology.yaml``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prefix: str = "sb"
    providers: dict[str, str] = {"offline": "actors.llm.offline:OfflineLLM"}
    """Custom litellm providers: provider name → ``module:Class`` of a ``litellm.CustomLLM``."""
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
    """Lease of a session's run lock: a crashed holder's lock expires after this (SPEC.md §3)."""
    lock_wait_s: float = Field(default=1800.0, ge=0)
    """How long a second request waits for the session's running one before it is retried."""
    stream_replicas: int = Field(default=1, ge=1, le=5)
    """Copies JetStream keeps of every stream and bucket: 3 on a cluster (R3)."""
    model_override: str | None = None

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return check_token(value, "prefix")

    @field_validator("tiers")
    @classmethod
    def _tiers(cls, value: dict[int, list[ModelSpec]]) -> dict[int, list[ModelSpec]]:
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
        return value

    @property
    def subjects(self) -> Subjects:
        return Subjects(self.prefix)

    def actor(self, role: str) -> ActorSpec:
        """The spec of ``role``; roles absent from the file get the defaults."""
        return self.actors.get(role, ActorSpec())

    def models_for_tier(self, tier: int) -> list[ModelSpec]:
        if self.model_override:
            return [ModelSpec(name=self.model_override)]
        return self.tiers[max(1, min(4, tier))]

    def model_for_tier(self, tier: int) -> ModelSpec:
        return self.models_for_tier(tier)[0]

    def find_model(self, name: str) -> ModelSpec:
        """The spec of the model called ``name`` in any tier (a bare spec if none)."""
        if self.model_override:
            return ModelSpec(name=self.model_override)
        for models in self.tiers.values():
            for spec in models:
                if spec.name == name:
                    return spec
        return ModelSpec(name=name)

    def with_tier_models(self, overrides: dict[str, str]) -> Topology:
        """This topology with the first model of some tiers replaced (a bot's ``models``:
        tier ``"1"``..``"4"`` → litellm model name); the escalation path follows.

        Unknown tiers are ignored.
        """
        tiers = {t: list(models) for t, models in self.tiers.items()}
        renamed: dict[str, str] = {}
        for key, name in overrides.items():
            tier = int(key) if key.isdigit() else 0
            if tier in tiers and name:
                renamed[tiers[tier][0].name] = name
                tiers[tier] = [ModelSpec(name=name), *tiers[tier][1:]]
        if not renamed:
            return self
        escalation = [renamed.get(name, name) for name in self.escalation]
        return self.model_copy(update={"tiers": tiers, "escalation": escalation})

    def escalation_path(self) -> list[ModelSpec]:
        if self.model_override:
            return [ModelSpec(name=self.model_override)]
        if self.escalation:
            return [self.find_model(name) for name in self.escalation]
        return [self.model_for_tier(t) for t in (1, 2, 3, 4)]

    def brainstormers(self) -> list[ModelSpec]:
        if self.brainstorm_models:
            return [self.find_model(name) for name in self.brainstorm_models]
        return [self.model_for_tier(2), self.model_for_tier(3)]

    @property
    def roles(self) -> tuple[str, ...]:
        """Every actor role, in pipeline order."""
        return _ALL_ACTORS


ActorKind = Literal["classifier", "planner", "agent", "evaluator", "reflector", "brainstorm",
                    "consolidator"]


def load_topology(path: Path | None = None, *, settings: Settings | None = None) -> Topology:
    """Read and validate ``topology.yaml``.

    Args:
        path: the file; defaults to ``settings.topology``.
        settings: process settings; ``SB_MODEL`` there overrides every tier's model.

    Raises:
        ConfigError: the file is missing, is not YAML, or does not validate.
    """
    settings = settings or Settings()
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
        ConfigError: ``role`` is not an actor of SPEC.md §1-2.
    """
    if role in AGENT_ROLES:
        return "agent"
    if role in _ALL_ACTORS:
        return role  # type: ignore[return-value]
    msg = f"unknown actor role {role!r}; known: {', '.join(_ALL_ACTORS)}"
    raise ConfigError(msg)
