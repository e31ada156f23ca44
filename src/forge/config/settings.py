"""Settings shared by every service, and the runbook's FORGE_ENV rules.

Outside dev a service must not start with missing, short or conflicting secrets, nor with a
dev-only flag turned on. Every problem is collected so the operator sees all of them at once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from forge.config.flags import ALLOWED_ENV_VALUES, ForgeEnv, is_truthy, parse_forge_env
from forge.config.keyring import HmacKeyring
from forge.config.secrets import (
    DEV_SECRETS_FILE,
    MIN_SECRET_BYTES,
    NATS_PASSWORD_VARS,
    REQUIRED_SECRETS,
    ROTATION_SUFFIXES,
    load_dev_secrets,
    read_secret,
)
from forge.content import PLANS, POLICIES, TEMPLATES, content_path

DEV_ONLY_FLAGS = ("DEV_ALLOW_XPLAN", "ALLOW_FREE_DEFAULT")
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_WS_MAX_MESSAGE_BYTES = 64 * 1024
_SIZE_BOUNDS = {"FORGE_MAX_BODY_BYTES": (1024, 64 * 1024 * 1024),
                "FORGE_WS_MAX_MESSAGE_BYTES": (1024, 16 * 1024 * 1024)}


class ConfigError(Exception):
    """The environment cannot run a service; `problems` names every variable at fault."""

    def __init__(self, env_label: str, problems: list[str]) -> None:
        self.env_label = env_label
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"configuration invalid (FORGE_ENV={env_label}):\n{lines}")


@dataclass(frozen=True)
class Settings:
    """Validated configuration of one Forge installation."""

    env: ForgeEnv
    storage_root: Path
    db_url: str
    sat: HmacKeyring
    et: HmacKeyring
    receipt: HmacKeyring
    operator: HmacKeyring
    nats_url: str = DEFAULT_NATS_URL
    opa_url: str | None = None
    opa_policy_hash: str | None = None
    dev_allow_xplan: bool = False
    allow_free_default: bool = False
    billing_mode: str = "stub"
    policies_dir: Path = field(default_factory=lambda: content_path(POLICIES))
    templates_dir: Path = field(default_factory=lambda: content_path(TEMPLATES))
    plans_file: Path = field(default_factory=lambda: content_path(PLANS))
    entitlements_file: Path | None = None
    runtime_prefix: str = "fg"
    lab_uid_range: str = "300000-399999"
    housekeeping_interval_s: float = 300.0
    orchestrator_url: str = "http://127.0.0.1:8083"
    scoreboard_url: str = "http://127.0.0.1:8086"
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    ws_max_message_bytes: int = DEFAULT_WS_MAX_MESSAGE_BYTES
    nats_passwords: Mapping[str, HmacKeyring] = field(default_factory=dict)
    warnings: tuple[str, ...] = field(default=())

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
            raise ConfigError(self.env.value, [
                f"missing NATS credentials of {identity}: set {var} or {var}_FILE"
            ])
        return ring.current.decode()


def _path_setting(environ: Mapping[str, str], name: str, default: Path) -> Path:
    raw = environ.get(name, "")
    return Path(raw) if raw else default


def _size(environ: Mapping[str, str], name: str, default: int, problems: list[str]) -> int:
    """A byte count from the environment, within the bounds a service can work with."""
    raw = (environ.get(name) or "").strip()
    if not raw:
        return default
    low, high = _SIZE_BOUNDS[name]
    if not raw.isdigit() or not low <= int(raw) <= high:
        problems.append(f"{name} must be a whole number of bytes from {low} to {high}")
        return default
    return int(raw)


def _billing_mode(environ: Mapping[str, str], env: ForgeEnv, problems: list[str]) -> str:
    """BILLING_MODE; `stub` (a fake, always-successful charge) exists only in dev."""
    mode = (environ.get("BILLING_MODE") or ("stub" if env.is_dev else "disabled")).strip().lower()
    if mode == "stub" and not env.is_dev:
        problems.append(f"BILLING_MODE=stub is forbidden when FORGE_ENV={env.value} (a fake "
                        "charge; dev only): set BILLING_MODE=disabled or a real gateway")
    return mode


def _url(environ: Mapping[str, str], name: str, default: str) -> str:
    return (environ.get(name) or default).rstrip("/")


def _read_keyrings(
    environ: Mapping[str, str], env: ForgeEnv, storage_root: Path, problems: list[str]
) -> tuple[dict[str, HmacKeyring], list[str]]:
    values: dict[str, dict[str, bytes | None]] = {}
    for name in REQUIRED_SECRETS:
        values[name] = {}
        for suffix in ROTATION_SUFFIXES:
            var = name + suffix
            read = read_secret(environ, var)
            problems.extend(read.problems)
            if read.value is not None and not env.is_dev and len(read.value) < MIN_SECRET_BYTES:
                problems.append(f"{var} is shorter than {MIN_SECRET_BYTES} bytes")
            values[name][suffix] = read.value
    missing = [n for n in REQUIRED_SECRETS if values[n][""] is None]
    warnings: list[str] = []
    if missing and not env.is_dev:
        problems.extend(
            f"missing required secret {n} (set {n} or {n}_FILE)" for n in missing
        )
    elif missing:
        dev = load_dev_secrets(storage_root)
        for n in missing:
            values[n][""] = dev[n].encode()
        warnings.append(
            "dev mode: using generated secrets for "
            + ", ".join(missing)
            + f" kept in {storage_root / DEV_SECRETS_FILE} (never use dev mode in production)"
        )
    rings = {
        n: HmacKeyring(
            name=n,
            current=values[n][""] or b"",
            previous=values[n]["_PREVIOUS"],
            next=values[n]["_NEXT"],
        )
        for n in REQUIRED_SECRETS
    }
    return rings, warnings


def _seconds(environ: Mapping[str, str], name: str, default: float,
             problems: list[str]) -> float:
    raw = environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 1.0 <= value <= 86400.0:
        problems.append(f"{name} must be a number of seconds between 1 and 86400")
        return default
    return value
def _read_nats_passwords(
    environ: Mapping[str, str], env: ForgeEnv, storage_root: Path, problems: list[str]
) -> tuple[dict[str, HmacKeyring], list[str]]:
    """Each service's NATS password (+ _PREVIOUS/_NEXT for the server's rotation window).

    Missing ones are generated in dev (kept with the dev secrets); outside dev they stay
    empty here and the service that needs one refuses to start (`Settings.nats_password`).
    """
    values: dict[str, dict[str, bytes | None]] = {}
    for identity, name in NATS_PASSWORD_VARS.items():
        values[identity] = {}
        for suffix in ROTATION_SUFFIXES:
            read = read_secret(environ, name + suffix)
            problems.extend(read.problems)
            if read.value is not None and not env.is_dev and len(read.value) < MIN_SECRET_BYTES:
                problems.append(f"{name + suffix} is shorter than {MIN_SECRET_BYTES} bytes")
            values[identity][suffix] = read.value
    warnings: list[str] = []
    missing = [i for i in NATS_PASSWORD_VARS if values[i][""] is None]
    if missing and env.is_dev:
        names = tuple(NATS_PASSWORD_VARS[i] for i in missing)
        dev = load_dev_secrets(storage_root, names)
        for identity in missing:
            values[identity][""] = dev[NATS_PASSWORD_VARS[identity]].encode()
        warnings.append("dev mode: using generated NATS passwords for " + ", ".join(names)
                        + f" kept in {storage_root / DEV_SECRETS_FILE}")
    rings = {
        identity: HmacKeyring(name=NATS_PASSWORD_VARS[identity], current=v[""] or b"",
                              previous=v["_PREVIOUS"], next=v["_NEXT"])
        for identity, v in values.items()
    }
    return rings, warnings


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from the environment, or raise ConfigError naming every problem."""
    environ = os.environ if environ is None else environ
    raw_env = environ.get("FORGE_ENV")
    env = parse_forge_env(raw_env)
    problems: list[str] = []
    if env is None:
        problems.append(
            f"FORGE_ENV has an unknown value; allowed: {', '.join(ALLOWED_ENV_VALUES)}"
        )
        raise ConfigError(str(raw_env), problems)
    if not env.is_dev:
        problems.extend(
            f"{flag}=true is forbidden when FORGE_ENV={env.value} (dev only)"
            for flag in DEV_ONLY_FLAGS
            if is_truthy(environ.get(flag))
        )
    billing_mode = _billing_mode(environ, env, problems)
    max_body = _size(environ, "FORGE_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, problems)
    ws_max = _size(environ, "FORGE_WS_MAX_MESSAGE_BYTES", DEFAULT_WS_MAX_MESSAGE_BYTES,
                   problems)
    storage_root = _path_setting(environ, "STORAGE_ROOT", Path("storage")).absolute()
    rings, warnings = _read_keyrings(environ, env, storage_root, problems)
    housekeeping_s = _seconds(environ, "FORGE_HOUSEKEEPING_INTERVAL_S", 300.0, problems)
    nats_rings, nats_warnings = _read_nats_passwords(environ, env, storage_root, problems)
    if problems:
        raise ConfigError(env.value, problems)
    db_url = environ.get("FORGE_DB_URL") or f"sqlite:///{storage_root / 'forge.db'}"
    return Settings(
        env=env,
        storage_root=storage_root,
        db_url=db_url,
        sat=rings["SAT_HMAC_SECRET"],
        et=rings["ET_HMAC_SECRET"],
        receipt=rings["RECEIPT_HMAC_SECRET"],
        operator=rings["OPERATOR_TOKEN"],
        nats_url=environ.get("NATS_URL") or DEFAULT_NATS_URL,
        opa_url=environ.get("OPA_URL") or None,
        opa_policy_hash=environ.get("OPA_POLICY_HASH") or None,
        dev_allow_xplan=env.is_dev and is_truthy(environ.get("DEV_ALLOW_XPLAN")),
        allow_free_default=env.is_dev and is_truthy(environ.get("ALLOW_FREE_DEFAULT")),
        billing_mode=billing_mode,
        policies_dir=_path_setting(environ, "FORGE_POLICY_DIR", content_path(POLICIES)),
        templates_dir=_path_setting(environ, "FORGE_TEMPLATE_DIR", content_path(TEMPLATES)),
        plans_file=_path_setting(environ, "FORGE_PLANS_FILE", content_path(PLANS)),
        entitlements_file=Path(environ["ENTITLEMENTS_FILE"])
        if environ.get("ENTITLEMENTS_FILE")
        else None,
        runtime_prefix=environ.get("FORGE_RUNTIME_PREFIX") or "fg",
        lab_uid_range=environ.get("FORGE_LAB_UID_RANGE") or "300000-399999",
        housekeeping_interval_s=housekeeping_s,
        orchestrator_url=_url(environ, "ORCHESTRATOR_URL", "http://127.0.0.1:8083"),
        scoreboard_url=_url(environ, "SCOREBOARD_URL", "http://127.0.0.1:8086"),
        max_body_bytes=max_body,
        ws_max_message_bytes=ws_max,
        nats_passwords=nats_rings,
        warnings=tuple(warnings + nats_warnings),
    )
