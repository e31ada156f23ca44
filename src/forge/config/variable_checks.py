"""Checks of one environment variable's value each, for the `Settings` model's fields.

Each check turns the raw text into the field's value or raises a pydantic error of type
`PROBLEM_TYPE` whose ctx["problems"] are the operator's problem lines verbatim (naming the
variable, never its value); `forge.config.settings` collects them into one ConfigError.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

from forge.ca_file import CaFileError, read_ca
from forge.config import node_settings as node_cfg
from forge.config.environ_source import Refused
from forge.config.keyring import HmacKeyring
from forge.config.runtime_engines import ENGINES, engine_problem
from forge.config.trusted_tree import chosen_content
from forge.config.warm_pool_setting import parse_warm_pool

_SIZE_BOUNDS = {"FORGE_MAX_BODY_BYTES": (1024, 64 * 1024 * 1024),
                "FORGE_WS_MAX_MESSAGE_BYTES": (1024, 16 * 1024 * 1024)}
_NATS_SCHEMES = ("nats", "tls")  # nats-py's WebSocket transport needs aiohttp: not shipped
PROBLEM_TYPE = "forge_config"  # pydantic error type whose ctx["problems"] are operator text


def problem(*problems: str) -> PydanticCustomError:
    """A validation error carrying operator-facing problem lines verbatim."""
    return PydanticCustomError(PROBLEM_TYPE, "{text}",
                               {"text": "; ".join(problems), "problems": list(problems)})


def _ring(value: object) -> object:
    """Raise a ring's problems (collected by environ_source) as one validation error."""
    if isinstance(value, Refused):
        raise problem(*value.problems)
    return value


Ring = Annotated[HmacKeyring, BeforeValidator(_ring)]
NatsRings = Annotated[Mapping[str, HmacKeyring], BeforeValidator(_ring)]


def byte_count(var: str) -> Callable[[object], int]:
    """A validator for a byte count within the bounds a service can work with."""
    low, high = _SIZE_BOUNDS[var]

    def check(raw: object) -> int:
        text = str(raw).strip()
        if not text.isdecimal() or not low <= int(text) <= high:
            raise problem(f"{var} must be a whole number of bytes from {low} to {high}")
        return int(text)
    return check


def http_url(var: str) -> Callable[[object], str | None]:
    """A validator for an http(s) URL with a host, without a trailing `/`."""
    def check(raw: object) -> str | None:
        if raw is None:
            return None
        text = str(raw).strip().rstrip("/")
        try:
            parts = urlsplit(text)
            valid = parts.scheme in ("http", "https") and bool(parts.hostname)
            _ = parts.port  # a non-numeric port raises here
        except ValueError:
            valid = False
        if not valid:
            raise problem(f"{var} must be an http:// or https:// URL with a host")
        return text
    return check


def nats_url(raw: object) -> str:
    """NATS_URL: one or more comma-separated nats:// or tls:// server URLs."""
    text = str(raw)
    servers = [part.strip() for part in text.split(",") if part.strip()]
    try:
        valid = bool(servers) and all(
            (parts := urlsplit(s if "://" in s else f"nats://{s}")).scheme in _NATS_SCHEMES
            and bool(parts.hostname) and (parts.port or 0) >= 0 for s in servers)
    except ValueError:
        valid = False
    if not valid:
        raise problem("NATS_URL must list nats:// or tls:// server URLs (separated by "
                       "commas; WebSocket ws:// and wss:// are not supported)")
    return text


def nats_replicas(raw: object) -> int:
    """FORGE_NATS_REPLICAS: copies JetStream keeps of each stream and bucket (1, 3 or 5)."""
    text = str(raw).strip()
    if text not in ("1", "3", "5"):
        raise problem("FORGE_NATS_REPLICAS must be 1, 3 or 5 (an odd JetStream replica "
                       "count, at most the number of NATS servers in the cluster)")
    return int(text)


def uid_range(raw: object) -> str:
    """FORGE_LAB_UID_RANGE: FIRST-LAST, both ends inclusive, two uids at least."""
    text = str(raw).strip()
    low_text, _, high_text = (part.strip() for part in text.partition("-"))
    if not (low_text.isdecimal() and high_text.isdecimal()
            and 1000 <= int(low_text) < int(high_text) <= 2**31 - 2):
        raise problem("FORGE_LAB_UID_RANGE must look like FIRST-LAST with "
                       "1000 <= FIRST < LAST < 2147483647, e.g. 300000-399999")
    return text


def runtime_engine(raw: object) -> str:
    """FORGE_RUNTIME_ENGINE: the name of a registered runtime engine (`runtime_engines`)."""
    text = str(raw).strip().lower()
    if text not in ENGINES:
        raise problem(engine_problem())
    return text


def seconds(var: str, low: int, high: int) -> Callable[[object], float]:
    """A validator of `var`: a number of seconds between `low` and `high` (NaN fails both
    bounds); the same check as the FORGE_NODE_* durations, whole-number bounds printed as
    given."""
    return node_setting(node_cfg.seconds(var, low, high))


def optional_path(raw: object) -> Path | None:
    """An optional path variable: unset or empty is None."""
    return Path(str(raw)) if raw else None


def signing_key_dir(raw: object) -> Path | None:
    """FORGE_SIGNING_KEY_DIR: the folder of the verdict signing keys (unset or empty:
    STORAGE_ROOT/keys/signing). One that exists and is not a folder is refused here: every
    key command and the scoreboard's check said "refusing storage root … choose another
    STORAGE_ROOT" about it, naming the wrong variable and the wrong fix."""
    if not raw:
        return None
    path = Path(str(raw))
    if path.exists() and not path.is_dir():
        raise problem(f"FORGE_SIGNING_KEY_DIR {path} is not a folder: name the folder of "
                      "the verdict signing keys (`forge keys generate` makes it), or unset "
                      "it to use STORAGE_ROOT/keys/signing")
    return path


def nats_ca(raw: object) -> str | None:
    """FORGE_NATS_CA: a file of PEM CA certificates; the bus clients trust only those and
    speak TLS first (unset or empty: no CA, NATS_URL as given). Returns the PEM text. A
    file another local user owns or may write (or a folder on the way) is refused: their
    CA would sign the server the services give their NATS password to."""
    if not raw:
        return None
    chosen = chosen_content(Path(str(raw)))
    if chosen is not None:
        raise problem(f"FORGE_NATS_CA {chosen}")
    try:
        return read_ca(Path(str(raw)))
    except CaFileError as exc:
        raise problem(f"FORGE_NATS_CA {exc}: it must name a file of PEM CA certificates "
                      "(`forge up` writes its NATS's in STORAGE_ROOT/nats-tls/ca.pem)") from None


def artifact_store(raw: object) -> str:
    """FORGE_ARTIFACT_STORE: where results live, `filesystem` (default) or `jetstream`."""
    text = str(raw).strip().lower()
    if text not in ("filesystem", "jetstream"):
        raise problem("FORGE_ARTIFACT_STORE must be filesystem (results under STORAGE_ROOT) "
                       "or jetstream (the NATS Object Store, for multi-machine installs)")
    return text


def node_setting(check: Callable[[object], Any]) -> Callable[[object], Any]:
    """A FORGE_NODE_* validator whose NodeSettingError becomes the operator's problem line."""
    def run(raw: object) -> Any:
        try:
            return check(raw)
        except node_cfg.NodeSettingError as exc:
            raise problem(str(exc)) from None
    return run


def warm_pool(raw: object) -> str:
    """FORGE_WARM_POOL: template=N,... (see forge.config.warm_pool_setting); kept as text."""
    text = str(raw or "").strip()
    try:
        parse_warm_pool(text)
    except ValueError as exc:
        raise problem(str(exc)) from None
    return text
