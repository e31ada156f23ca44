"""Where settings come from: each field from its own variable, and every secret ring at once.

A pydantic-settings source. Plain fields are read from the variable named by their alias
(an empty value counts as unset). The secrets are read in one place, `read_secret_rings`:
each secret X from X or X_FILE plus the rotation values X_PREVIOUS(_FILE) and X_NEXT(_FILE),
with the runbook's rules (both set, unreadable file, too short outside dev, missing outside
dev, generated in dev). A ring with problems is handed to the model as `Refused`, so the
model reports its problems together with every other field's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from forge.config.flags import ForgeEnv, parse_forge_env
from forge.config.keyring import HmacKeyring, UnreadKeyring
from forge.config.known_variables import unknown_variable_warnings
from forge.config.secrets import (
    DEV_SECRETS_FILE,
    MIN_SECRET_BYTES,
    NATS_PASSWORD_VARS,
    REQUIRED_SECRETS,
    ROTATION_SUFFIXES,
    load_dev_secrets,
    read_secret,
)

DEFAULT_STORAGE_ROOT = "storage"
# Settings field of each required secret's ring.
RING_FIELDS = {"SAT_HMAC_SECRET": "sat", "ET_HMAC_SECRET": "et",
               "RECEIPT_HMAC_SECRET": "receipt", "OPERATOR_TOKEN": "operator"}


@dataclass(frozen=True)
class Refused:
    """A ring that cannot be built: the problems name variables, never their values."""

    problems: tuple[str, ...]


def storage_root_path(raw: str | None) -> Path:
    """STORAGE_ROOT as an absolute path (`storage` under the working directory when unset)."""
    return Path(raw or DEFAULT_STORAGE_ROOT).absolute()


def _read_ring_values(environ: Mapping[str, str], var: str,
                      env: ForgeEnv) -> tuple[dict[str, bytes | None], list[str], bool]:
    """X, X_PREVIOUS and X_NEXT (each from itself or its _FILE), with their problems, and
    whether X itself was set but could not be read (both X and X_FILE, an empty file…):
    that is not "missing", and must not be reported as such or replaced by a dev secret."""
    values: dict[str, bytes | None] = {}
    problems: list[str] = []
    current_unreadable = False
    for suffix in ROTATION_SUFFIXES:
        read = read_secret(environ, var + suffix)
        problems.extend(read.problems)
        current_unreadable = current_unreadable or (suffix == "" and bool(read.problems))
        if read.value is not None and not env.is_dev and len(read.value) < MIN_SECRET_BYTES:
            problems.append(f"{read.named(var + suffix)} is shorter than {MIN_SECRET_BYTES}"
                            " bytes")
        values[suffix] = read.value
    return values, problems, current_unreadable


def _read_group(environ: Mapping[str, str], env: ForgeEnv, storage_root: Path,
                variables: Mapping[str, str], *, required: bool,
                ) -> tuple[dict[str, HmacKeyring | Refused], list[str]]:
    """The rings of one group of secrets (key -> variable), and the dev-secret names used.

    Missing current values are an error outside dev when `required`; otherwise they stay
    empty (the service that needs one refuses to start). In dev they are generated once
    and kept in the installation's dev secrets file.
    """
    reads = {key: _read_ring_values(environ, var, env) for key, var in variables.items()}
    missing = [key for key, (values, _, unreadable) in reads.items()
               if values[""] is None and not unreadable]
    generated: list[str] = []
    if missing and env.is_dev:
        generated = [variables[key] for key in missing]
        dev = load_dev_secrets(storage_root, tuple(generated))
        for key in missing:
            reads[key][0][""] = dev[variables[key]].encode()
    rings: dict[str, HmacKeyring | Refused] = {}
    for key, (values, problems, unreadable) in reads.items():
        var = variables[key]
        if required and values[""] is None and not unreadable:
            problems.append(f"missing required secret {var} (set {var} or {var}_FILE)")
        rings[key] = Refused(tuple(problems)) if problems else HmacKeyring(
            name=var, current=values[""] or b"", previous=values["_PREVIOUS"],
            next=values["_NEXT"])
    return rings, generated


def read_secret_rings(environ: Mapping[str, str]) -> dict[str, Any]:
    """Every secret ring as Settings fields (`sat`, …, `nats_passwords`) plus dev `warnings`.

    Empty when FORGE_ENV is unknown: the model then reports only that.
    """
    env = parse_forge_env(environ.get("FORGE_ENV"))
    if env is None:
        return {}
    storage_root = storage_root_path(environ.get("STORAGE_ROOT"))
    kept_in = storage_root / DEV_SECRETS_FILE
    warnings: list[str] = []
    required, generated = _read_group(environ, env, storage_root,
                                      {n: n for n in REQUIRED_SECRETS}, required=True)
    if generated:
        warnings.append(f"dev mode: using generated secrets for {', '.join(generated)} kept in "
                        f"{kept_in} (never use dev mode in production)")
    nats, generated = _read_group(environ, env, storage_root, NATS_PASSWORD_VARS,
                                  required=False)
    if generated:
        warnings.append(f"dev mode: using generated NATS passwords for {', '.join(generated)}"
                        f" kept in {kept_in}")
    fields: dict[str, Any] = {RING_FIELDS[n]: ring for n, ring in required.items()}
    refused = [p for ring in nats.values() if isinstance(ring, Refused) for p in ring.problems]
    fields["nats_passwords"] = Refused(tuple(refused)) if refused else nats
    fields["warnings"] = tuple(warnings + unknown_variable_warnings(environ))
    return fields


def unread_secret_rings(environ: Mapping[str, str]) -> dict[str, Any]:
    """The secret fields of a command that uses no secret (image tooling, lab tests): empty
    rings, nothing read and nothing generated, so no dev secrets file is written and no
    storage root made for it. Empty when FORGE_ENV is unknown, as `read_secret_rings`."""
    if parse_forge_env(environ.get("FORGE_ENV")) is None:
        return {}
    fields: dict[str, Any] = {field: UnreadKeyring(name=var, current=b"")
                              for var, field in RING_FIELDS.items()}
    fields["nats_passwords"] = {}
    fields["warnings"] = tuple(unknown_variable_warnings(environ))
    return fields


class EnvironSource(PydanticBaseSettingsSource):
    """Settings values from one environment mapping (os.environ, or a test's dict); the
    secret rings read (``secrets``) or left empty (`unread_secret_rings`)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str],
                 *, secrets: bool = True) -> None:
        super().__init__(settings_cls)
        self._environ = environ
        self._secrets = secrets

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """The value of the field's own variable (its alias); fields without one get None."""
        alias = field.validation_alias
        if not isinstance(alias, str):
            return None, field_name, False
        value = self._environ.get(alias, "")
        return (value if value != "" else None), alias, False

    def __call__(self) -> dict[str, Any]:
        """Every set variable by alias, then the secret rings by field name."""
        data: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, name)
            if value is not None:
                data[key] = value
        data.update(read_secret_rings(self._environ) if self._secrets
                    else unread_secret_rings(self._environ))
        return data
