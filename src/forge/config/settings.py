"""Settings shared by every service, and the runbook's FORGE_ENV rules.

One pydantic-settings model: each field names its environment variable (its alias) and
type; each variable's value check is in `variable_checks`, the secrets come from
`environ_source`. Outside dev a service must not start with missing, short or conflicting
secrets, nor with a dev-only flag turned on. Every problem is collected so the operator sees
all of them at once, as a `ConfigError` naming variables (never values); a pydantic
ValidationError never reaches the operator.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from forge.config import node_settings as node_cfg
from forge.config import variable_checks as checks
from forge.config.db_url import db_url_problem
from forge.config.environ_source import EnvironSource, storage_root_path
from forge.config.flags import (
    ALLOWED_ENV_VALUES,
    ForgeEnv,
    is_boolean,
    is_truthy,
    parse_forge_env,
)
from forge.config.runtime_engines import DEFAULT_ENGINE
from forge.config.secrets import NATS_PASSWORD_VARS, missing_nats_password
from forge.config.storage_root import check_storage_root
from forge.content import content_path

DEV_ONLY_FLAGS = ("DEV_ALLOW_XPLAN", "ALLOW_FREE_DEFAULT", "DEV_ALLOW_HEADERS")
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_WS_MAX_MESSAGE_BYTES = 64 * 1024
# The environment `Settings()` reads: load_settings' mapping while it runs, else os.environ.
_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("forge_settings_environ",
                                                            default=None)
# Whether `Settings()` reads the secrets: False for load_settings(secrets=False).
_SECRETS: ContextVar[bool] = ContextVar("forge_settings_secrets", default=True)


def _default_content_path(name: str) -> Path:
    """Default location of shipped content (`templates`, `policies`, `plans.yaml`): the
    package data of `forge.content`, so an installed Forge finds it from any directory."""
    return content_path(name)


class ConfigError(Exception):
    """The environment cannot run a service; `problems` names every variable at fault."""

    def __init__(self, env_label: str, problems: list[str], *, env_unknown: bool = False) -> None:
        self.env_label = env_label
        self.problems = problems
        # FORGE_ENV itself is not a known value: nothing else was or can be judged
        self.env_unknown = env_unknown
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"configuration invalid (FORGE_ENV={env_label}):\n{lines}")


def _env_of(info: ValidationInfo) -> ForgeEnv | None:
    env = info.data.get("env")
    return env if isinstance(env, ForgeEnv) else None


def _var(name: str, default: Any = None, **kwargs: Any) -> Any:
    """A field read from the environment variable `name`."""
    return Field(default, validation_alias=name, **kwargs)


class Settings(BaseSettings):
    """Validated configuration of one Forge installation (build it with `load_settings`)."""

    model_config = SettingsConfigDict(frozen=True, arbitrary_types_allowed=True,
                                      validate_default=True, extra="forbid")

    # Declared first: later validators apply the FORGE_ENV rules through `info.data`.
    env: ForgeEnv = _var("FORGE_ENV", ForgeEnv.DEV.value)
    storage_root: Annotated[Path, BeforeValidator(storage_root_path)] = _var(
        "STORAGE_ROOT", "")
    db_url: str = _var("FORGE_DB_URL", "", repr=False)
    sat: checks.Ring
    et: checks.Ring
    receipt: checks.Ring
    operator: checks.Ring
    # URLs may carry credentials: kept out of repr, like db_url.
    nats_url: Annotated[str, BeforeValidator(checks.nats_url)] = _var(
        "NATS_URL", DEFAULT_NATS_URL, repr=False)
    nats_replicas: Annotated[int, BeforeValidator(checks.nats_replicas)] = _var(
        "FORGE_NATS_REPLICAS", 1)
    # The CA the bus clients trust (PEM text, read from the file FORGE_NATS_CA names).
    nats_ca: Annotated[str | None, BeforeValidator(checks.nats_ca)] = _var(
        "FORGE_NATS_CA", repr=False)
    opa_url: Annotated[str | None, BeforeValidator(checks.http_url("OPA_URL"))] = _var(
        "OPA_URL", repr=False)
    opa_policy_hash: str | None = _var("OPA_POLICY_HASH")
    dev_allow_xplan: bool = _var("DEV_ALLOW_XPLAN", "")
    allow_free_default: bool = _var("ALLOW_FREE_DEFAULT", "")
    # x-client-id/x-tenant-id sign a request in as anyone they name: off unless asked for,
    # since every local user of a dev machine reaches its loopback ports.
    dev_allow_headers: bool = _var("DEV_ALLOW_HEADERS", "")
    billing_mode: str = _var("BILLING_MODE", "")
    # forge.faults reads it (chaos tests): a service killing itself at a named point.
    crash_point: str = _var("FORGE_CRASH_POINT", "")
    policies_dir: Path = _var("FORGE_POLICY_DIR", _default_content_path("policies"))
    templates_dir: Path = _var("FORGE_TEMPLATE_DIR", _default_content_path("templates"))
    plans_file: Path = _var("FORGE_PLANS_FILE", _default_content_path("plans.yaml"))
    entitlements_file: Annotated[Path | None, BeforeValidator(checks.optional_path)] = _var(
        "ENTITLEMENTS_FILE")
    # Read by forge.signing.keystore.keyring_dir; checked here so a service names it.
    signing_key_dir: Annotated[Path | None, BeforeValidator(checks.signing_key_dir)] = _var(
        "FORGE_SIGNING_KEY_DIR")
    runtime_engine: Annotated[str, BeforeValidator(checks.runtime_engine)] = _var(
        "FORGE_RUNTIME_ENGINE", DEFAULT_ENGINE)
    runtime_prefix: str = _var("FORGE_RUNTIME_PREFIX", "fg")
    lab_uid_range: Annotated[str, BeforeValidator(checks.uid_range)] = _var(
        "FORGE_LAB_UID_RANGE", "300000-399999")
    housekeeping_interval_s: Annotated[float, BeforeValidator(
        checks.seconds("FORGE_HOUSEKEEPING_INTERVAL_S", 1, 86400))] = _var(
        "FORGE_HOUSEKEEPING_INTERVAL_S", 300.0)
    # How often the scoreboard deletes results past their retention (0: never; the operator
    # runs `forge retention cleanup` instead, e.g. where several scoreboards share a store).
    retention_interval_s: Annotated[float, BeforeValidator(
        checks.seconds("FORGE_RETENTION_INTERVAL_S", 0, 604800))] = _var(
        "FORGE_RETENTION_INTERVAL_S", 3600.0)
    # How long a spawn request may stay unanswered before a retry with its request_id takes
    # it for cut off (its replica died) and settles it; longer than any live request takes.
    spawn_pending_timeout_s: Annotated[float, BeforeValidator(
        checks.seconds("FORGE_SPAWN_PENDING_TIMEOUT_S", 5, 3600))] = _var(
        "FORGE_SPAWN_PENDING_TIMEOUT_S", 30.0)
    # How long the bus holds a message fetched by a consumer that died before a survivor gets
    # it; handlers send "in progress" every third of it, so long work keeps its message.
    bus_ack_wait_s: Annotated[float, BeforeValidator(
        checks.seconds("FORGE_BUS_ACK_WAIT_S", 2, 600))] = _var("FORGE_BUS_ACK_WAIT_S", 30.0)
    # How soon the scoreboard retries a completion it paused (no signing key, storage not
    # writable): the lag between the operator's fix and the verdict.
    scoreboard_pause_retry_s: Annotated[float, BeforeValidator(
        checks.seconds("FORGE_SCOREBOARD_PAUSE_RETRY_S", 1, 600))] = _var(
        "FORGE_SCOREBOARD_PAUSE_RETRY_S", 5.0)
    orchestrator_url: Annotated[str, BeforeValidator(
        checks.http_url("ORCHESTRATOR_URL"))] = _var("ORCHESTRATOR_URL", "http://127.0.0.1:8083")
    scoreboard_url: Annotated[str, BeforeValidator(checks.http_url("SCOREBOARD_URL"))] = _var(
        "SCOREBOARD_URL", "http://127.0.0.1:8086")
    max_body_bytes: Annotated[int, BeforeValidator(
        checks.byte_count("FORGE_MAX_BODY_BYTES"))] = _var(
        "FORGE_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)
    ws_max_message_bytes: Annotated[
        int, BeforeValidator(checks.byte_count("FORGE_WS_MAX_MESSAGE_BYTES"))] = _var(
        "FORGE_WS_MAX_MESSAGE_BYTES", DEFAULT_WS_MAX_MESSAGE_BYTES)
    # Issue 15 item 4: where the scoreboard keeps result artifacts (no shared disk).
    artifact_store: Annotated[str, BeforeValidator(checks.artifact_store)] = _var(
        "FORGE_ARTIFACT_STORE", "filesystem")
    # Lab images (issue 16): where image definitions live, and the machine-wide cache of
    # built root filesystems (outside any checkout, so clones and CI reuse it).
    images_dir: Path = _var("FORGE_IMAGE_DIR", _default_content_path("images"))
    image_cache: Path = _var("FORGE_IMAGE_CACHE", "/var/cache/forge/images")
    # Lab nodes (issue 15 item 3): optional; the defaults are one node at ORCHESTRATOR_URL.
    node_id: Annotated[str, BeforeValidator(checks.node_setting(node_cfg.node_id))] = _var(
        "FORGE_NODE_ID", node_cfg.DEFAULT_NODE_ID)
    # Unset: scenario rows name no URL and spawn_service uses its own ORCHESTRATOR_URL (one
    # node, exactly as before); with several nodes each sets the URL it is reached at.
    node_url: Annotated[str | None, BeforeValidator(checks.http_url("FORGE_NODE_URL"))] = _var(
        "FORGE_NODE_URL")
    node_capacity_labs: Annotated[int, BeforeValidator(checks.node_setting(node_cfg.whole(
        "FORGE_NODE_CAPACITY_LABS", 1, 100_000)))] = _var(
        "FORGE_NODE_CAPACITY_LABS", node_cfg.DEFAULT_CAPACITY_LABS)
    node_capacity_memory_mb: Annotated[int, BeforeValidator(checks.node_setting(node_cfg.whole(
        "FORGE_NODE_CAPACITY_MEMORY_MB", 16, 1 << 30)))] = Field(
        default_factory=node_cfg.default_memory_mb,
        validation_alias="FORGE_NODE_CAPACITY_MEMORY_MB")
    node_heartbeat_s: Annotated[float, BeforeValidator(checks.node_setting(node_cfg.seconds(
        "FORGE_NODE_HEARTBEAT_S", 0.2, 60.0)))] = _var(
        "FORGE_NODE_HEARTBEAT_S", node_cfg.DEFAULT_HEARTBEAT_S)
    node_grace_s: Annotated[float, BeforeValidator(checks.node_setting(node_cfg.seconds(
        "FORGE_NODE_GRACE_S", 1.0, 3600.0)))] = _var("FORGE_NODE_GRACE_S",
                                                     node_cfg.DEFAULT_GRACE_S)
    # Issue 18 item 5: the public URL at which the scoreboard's /v1/credentials/* (issuer
    # profile, signed status list, public keys) is published; credentials name URLs under
    # it. Unset: SCOREBOARD_URL.
    credential_base_url: Annotated[str | None, BeforeValidator(
        checks.http_url("FORGE_CREDENTIAL_BASE_URL"))] = _var("FORGE_CREDENTIAL_BASE_URL")
    # Sign-in with an identity provider (issue 18 item 1): the per-tenant OIDC file; unset,
    # <STORAGE_ROOT>/oidc.yaml is used when it exists (forge.identity.oidc_config).
    oidc_file: Annotated[Path | None, BeforeValidator(checks.optional_path)] = _var(
        "FORGE_OIDC_FILE")
    # LTI 1.3 (issue 18 item 4): the tool key and the LMS platforms registered by the
    # operator (forge.identity.lti_config); unset: no LMS launches into Forge.
    lti_file: Annotated[Path | None, BeforeValidator(checks.optional_path)] = _var("FORGE_LTI_FILE")
    # Issue 19 item 5 (spawn API at class scale): worker processes of spawn_service behind
    # its one port (forge.services.common.workers); 1 is the single process of before.
    spawn_workers: Annotated[int, BeforeValidator(checks.node_setting(node_cfg.whole(
        "FORGE_SPAWN_WORKERS", 1, 32)))] = _var("FORGE_SPAWN_WORKERS", 1)
    # Issue 19 item 1: warm lab pools per template on each lab node (empty: none), and the
    # MemAvailable floor (MiB) under which pools shrink instead of filling.
    warm_pool: Annotated[str, BeforeValidator(checks.warm_pool)] = _var("FORGE_WARM_POOL", "")
    warm_pool_min_available_mb: Annotated[int, BeforeValidator(checks.node_setting(node_cfg.whole(
        "FORGE_WARM_POOL_MIN_AVAILABLE_MB", 0, 1 << 30)))] = _var(
        "FORGE_WARM_POOL_MIN_AVAILABLE_MB", 512)
    # Issue 19 item 3: fresh labs a lab node builds at once (0: one per core the
    # orchestrator may run on, plus one); further creates wait their turn, pool claims
    # never wait (forge.runtime.local.runtime).
    build_slots: Annotated[int, BeforeValidator(checks.node_setting(node_cfg.whole(
        "FORGE_BUILD_SLOTS", 0, 256)))] = _var("FORGE_BUILD_SLOTS", 0)
    # How long a lab's services may take to listen on their template's ready_ports before
    # its launch fails (forge.runtime.local.ready_ports); under the reaper's STUCK_LAUNCHING.
    lab_ready_timeout_s: Annotated[float, BeforeValidator(checks.seconds(
        "FORGE_LAB_READY_TIMEOUT_S", 1, 110))] = _var("FORGE_LAB_READY_TIMEOUT_S", 30.0)
    nats_passwords: checks.NatsRings = Field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments (by variable name) first, then the environment being loaded."""
        environ = _ENVIRON.get()
        return (init_settings,
                EnvironSource(settings_cls, os.environ if environ is None else environ,
                              secrets=_SECRETS.get()))

    @field_validator("env", mode="before")
    @classmethod
    def _forge_env(cls, raw: object) -> ForgeEnv:
        env = parse_forge_env(str(raw))
        if env is None:
            raise checks.problem(
                f"FORGE_ENV has an unknown value; allowed: {', '.join(ALLOWED_ENV_VALUES)}")
        return env

    @field_validator("db_url", mode="before")
    @classmethod
    def _db_url(cls, raw: object, info: ValidationInfo) -> str:
        root = info.data.get("storage_root")
        if not raw:
            return "" if root is None else f"sqlite:///{root / 'forge.db'}"
        # Refused here, by name and without the value (it may hold a password), rather than
        # as a traceback from the first engine a service or command creates.
        problem = db_url_problem(str(raw))
        if problem is not None:
            raise checks.problem(problem)
        return str(raw)

    @field_validator("dev_allow_xplan", "allow_free_default", "dev_allow_headers", mode="before")
    @classmethod
    def _dev_only_flag(cls, raw: object, info: ValidationInfo) -> bool:
        """Dev-only flags: allowed (when truthy) in dev, refused when truthy anywhere else."""
        env = _env_of(info)
        flag = cls.model_fields[str(info.field_name)].validation_alias
        if not is_boolean(str(raw)):
            # Read as off, a misspelt "enabled" would leave the operator's intent undone
            # without a word: say which variable and what it takes instead.
            raise checks.problem(
                f"{flag} is not a boolean: set it to true or false (1/true/yes/on or "
                "0/false/no/off), or unset it")
        on = is_truthy(str(raw))
        if on and env is not None and not env.is_dev:
            raise checks.problem(
                f"{flag}=true is forbidden when FORGE_ENV={env.value} (dev only)")
        return on

    @field_validator("crash_point", mode="before")
    @classmethod
    def _no_crash_point_in_prod(cls, raw: object, info: ValidationInfo) -> str:
        """FORGE_CRASH_POINT makes a service SIGKILL itself (chaos drills): a value left
        over from a test environment would restart a production service in a loop."""
        env = _env_of(info)
        value = str(raw or "").strip()
        if value and env is ForgeEnv.PROD:
            raise checks.problem(
                "FORGE_CRASH_POINT is set (it makes a service kill itself; chaos tests "
                f"only) and is forbidden when FORGE_ENV={env.value}: unset it")
        return value

    @field_validator("billing_mode", mode="before")
    @classmethod
    def _billing_mode(cls, raw: object, info: ValidationInfo) -> str:
        """BILLING_MODE; `stub` (a fake, always-successful charge) exists only in dev."""
        env = _env_of(info)
        if env is None:
            return str(raw).strip().lower()
        mode = (str(raw) or ("stub" if env.is_dev else "disabled")).strip().lower()
        if mode == "stub" and not env.is_dev:
            raise checks.problem(
                f"BILLING_MODE=stub is forbidden when FORGE_ENV={env.value} (a fake "
                "charge; dev only): set BILLING_MODE=disabled or a real gateway")
        return mode

    @field_validator("node_grace_s", mode="after")
    @classmethod
    def _grace_covers_heartbeats(cls, value: float, info: ValidationInfo) -> float:
        """A node is lost only after several missed heartbeats, never after one late one."""
        beat = info.data.get("node_heartbeat_s")
        if isinstance(beat, float) and value < 3 * beat:
            raise checks.problem(
                "FORGE_NODE_GRACE_S must be at least 3 x FORGE_NODE_HEARTBEAT_S "
                "(a node counts as lost only after several missed heartbeats)")
        return value

    def secret_values(self) -> tuple[bytes, ...]:
        """Every secret value in force, for log redaction."""
        rings = (self.sat, self.et, self.receipt, self.operator, *self.nats_passwords.values())
        return tuple(v for ring in rings for v in ring.secret_values())

    def nats_password(self, identity: str) -> str:
        """The current NATS password of a service identity, or ConfigError naming its variable.

        Every service needs its own to start; outside dev nothing generates one.
        """
        var = NATS_PASSWORD_VARS.get(identity)
        if var is None:
            raise ValueError(f"identity: {identity!r} is not one of {sorted(NATS_PASSWORD_VARS)}")
        ring = self.nats_passwords.get(identity)
        if ring is None or not ring.current:
            raise ConfigError(self.env.value, [missing_nats_password(identity)])
        return ring.current.decode()


def _problems(error: ValidationError) -> tuple[list[str], str | None]:
    """Operator text of every error (naming the variable, never its value), and the
    FORGE_ENV problem when there is one (it makes every other check meaningless)."""
    fields = Settings.model_fields
    problems: list[str] = []
    env_problem: str | None = None
    for item in error.errors(include_input=False):
        ctx = item.get("ctx") or {}
        key = str(item["loc"][0]) if item["loc"] else "?"
        alias = fields[key].validation_alias if key in fields else None
        var = alias if isinstance(alias, str) else key
        if item["type"] == checks.PROBLEM_TYPE:
            found = list(ctx["problems"])
        elif item["type"] in ("value_error", "assertion_error"):
            found = [f"{var} is not valid"]  # an exception's text may quote the value
        else:
            found = [f"{var}: {item['msg']}"]  # pydantic's own messages never quote it
        if var == "FORGE_ENV":
            env_problem = found[0]
        problems.extend(found)
    return problems, env_problem


def load_settings(environ: Mapping[str, str] | None = None, *,
                  secrets: bool = True) -> Settings:
    """Build Settings from the environment, or raise ConfigError naming every problem;
    UnsafeStorage, before anything is read from it, when its storage root is not safe to
    trust (`forge.config.storage_root`). ``secrets=False``: for a command that uses none
    (its rings are empty, nothing is read or generated: no dev secrets file, so no
    storage root made just for it); such Settings must never sign or verify."""
    environ = os.environ if environ is None else environ
    check_storage_root(storage_root_path(environ.get("STORAGE_ROOT")))
    token = _ENVIRON.set(environ)
    reading = _SECRETS.set(secrets)
    try:
        return Settings()
    except ValidationError as exc:
        problems, env_problem = _problems(exc)
        raw_env = environ.get("FORGE_ENV")
        if env_problem is not None:
            raise ConfigError(str(raw_env), [env_problem], env_unknown=True) from None
        env = parse_forge_env(raw_env) or ForgeEnv.DEV
        raise ConfigError(env.value, problems) from None
    finally:
        _SECRETS.reset(reading)
        _ENVIRON.reset(token)
