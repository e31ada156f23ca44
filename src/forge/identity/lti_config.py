"""LTI 1.3 platforms registered by the operator, and our tool key: the file `lti.yaml`.

`tool:` names this site's public URL (`base_url`, the URLs pasted into the LMS are under
it) and the RSA key Forge signs with (deep linking responses, client assertions for grade
passback and rosters); the key is read from `private_key_file`, never put in this file.
`platforms:` has one entry per LMS registration: issuer, client id, deployment ids, its
login, token and key set URLs, and the one Forge tenant its launches belong to. Any
problem stops the service at start with `LtiConfigError` naming the field.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from forge.config.trusted_file import read_operator_file
from forge.identity.config_file import read_yaml_file
from forge.identity.names import valid_id
from forge.identity.oidc_config import _url, endpoint_allowed

MAX_KEY_BYTES = 16 * 1024
_PREFIX = re.compile(r"^[a-z][a-z0-9]{0,15}\.\Z")
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}\Z")


class LtiConfigError(Exception):
    """The LTI file cannot be used; the message names the file and the field at fault."""


class ToolSettings(BaseModel):
    """This site as an LTI tool: its public URL and its signing key's file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(min_length=1, max_length=512)
    private_key_file: Path
    key_id: str | None = Field(default=None, min_length=1, max_length=64)

    @field_validator("base_url")
    @classmethod
    def _base(cls, value: str) -> str:
        url = _url(value, "this site's public URL, e.g. https://forge.example.org")
        if urlsplit(url).path not in ("", "/") or urlsplit(url).query:
            raise ValueError("must be an origin without a path (https://host[:port])")
        return url.rstrip("/")


class PlatformSettings(BaseModel):
    """One LMS registration of Forge, bound to one Forge tenant."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant: str
    issuer: str = Field(min_length=1, max_length=512)
    client_id: str = Field(min_length=1, max_length=255)
    deployment_ids: tuple[str, ...] = Field(min_length=1, max_length=64)
    auth_login_url: str = Field(min_length=1, max_length=1024)
    auth_token_url: str = Field(min_length=1, max_length=1024)
    key_set_url: str = Field(min_length=1, max_length=1024)
    auth_audience: str | None = Field(default=None, max_length=1024)
    subject_prefix: str = "lti."

    @field_validator("tenant")
    @classmethod
    def _tenant(cls, value: str) -> str:
        if not valid_id(value):
            raise ValueError("a tenant id is 1-128 chars of [A-Za-z0-9._@:-]")
        return value

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, value: str) -> str:
        return _url(value, "the platform's issuer, exactly as its launches name it")

    @field_validator("deployment_ids")
    @classmethod
    def _deployments(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not all(isinstance(v, str) and 0 < len(v) <= 255 for v in value):
            raise ValueError("each deployment id is 1-255 characters")
        return value

    @field_validator("subject_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not _PREFIX.match(value):
            raise ValueError("1-16 lower-case letters or digits followed by a dot, e.g. lti.")
        return value


@dataclass(frozen=True)
class Platform:
    """A validated registration under its name in the file."""

    name: str
    config: PlatformSettings

    @property
    def tenant_id(self) -> str:
        """The Forge tenant every launch of this platform belongs to."""
        return self.config.tenant

    def allowed(self, url: object) -> bool:
        """May Forge call `url` for this platform (token, grades, roster, keys)? https (http
        only on loopback), and an internal address only where the issuer itself is."""
        return endpoint_allowed(url, self.config.issuer)


@dataclass(frozen=True)
class ToolKey:
    """Our RSA key (PEM kept out of repr) and the public JWK platforms fetch."""

    kid: str
    private_pem: str = field(repr=False)
    public_jwk: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LtiRegistry:
    """The tool and every registered platform."""

    base_url: str
    key: ToolKey
    platforms: Mapping[str, Platform]

    def find(self, issuer: object, client_id: object) -> Platform | None:
        """The registration of (issuer, client_id), or None."""
        for p in self.platforms.values():
            if p.config.issuer == issuer and p.config.client_id == client_id:
                return p
        return None

    def by_issuer(self, issuer: object) -> list[Platform]:
        """Every registration of an issuer (an LMS may register Forge several times)."""
        return [p for p in self.platforms.values() if p.config.issuer == issuer]

    def url(self, path: str) -> str:
        """A URL of this site for the LMS (launch, login, keys, deep linking)."""
        return self.base_url + path

    def jwks(self) -> dict[str, Any]:
        """Our public key set, served at /lti/jwks."""
        return {"keys": [dict(self.key.public_jwk)]}


def generate_key(path: Path) -> None:
    """Write a new 2048-bit RSA key (PEM, mode 0600) for `tool.private_key_file`."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.touch(mode=0o600, exist_ok=False)
    path.write_bytes(pem)


def _tool_key(tool: ToolSettings) -> ToolKey:
    try:
        # A key another user chose signs grades and roster calls they can sign too.
        raw, why = read_operator_file(tool.private_key_file, MAX_KEY_BYTES)
    except OSError as exc:
        raise LtiConfigError(f"tool.private_key_file: cannot read {tool.private_key_file} "
                             f"({exc.strerror}); make one with `forge lti key new PATH`") from None
    if why is not None:
        raise LtiConfigError(f"tool.private_key_file: {tool.private_key_file} {why}")
    try:
        key = serialization.load_pem_private_key(raw, password=None)
    except (ValueError, TypeError):
        raise LtiConfigError("tool.private_key_file: not an unencrypted PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 2048:
        raise LtiConfigError("tool.private_key_file: LTI needs an RSA key of 2048 bits or more")
    public = key.public_key()
    der = public.public_bytes(serialization.Encoding.DER,
                              serialization.PublicFormat.SubjectPublicKeyInfo)
    kid = tool.key_id or "forge-" + hashlib.sha256(der).hexdigest()[:16]
    jwk = dict(RSAAlgorithm.to_jwk(public, as_dict=True))
    jwk.update(kid=kid, alg="RS256", use="sig")
    return ToolKey(kid, raw.decode(), jwk)


def _first_problem(where: str, exc: ValidationError) -> LtiConfigError:
    first = exc.errors(include_input=False)[0]
    path = ".".join(str(p) for p in first["loc"])
    return LtiConfigError(f"{where}.{path}: {first['msg']}" if path else f"{where}: "
                          f"{first['msg']}")


def _platform(name: object, body: object) -> Platform:
    where = f"platforms.{name}"
    if not isinstance(name, str) or not _NAME.match(name):
        raise LtiConfigError(f"{where}: a name is 1-64 of a-z 0-9 -")
    if not isinstance(body, dict):
        raise LtiConfigError(f"{where}: must be a mapping")
    try:
        cfg = PlatformSettings(**body)
    except ValidationError as exc:
        raise _first_problem(where, exc) from None
    platform = Platform(name, cfg)
    for url_field in ("auth_login_url", "auth_token_url", "key_set_url"):
        if not platform.allowed(getattr(cfg, url_field)):
            raise LtiConfigError(f"{where}.{url_field}: must be an https:// URL (http only on "
                                 "loopback), on an internal host only where the issuer is")
    return platform


def load_lti(path: Path) -> LtiRegistry:
    """Read and validate an LTI file; LtiConfigError names the field at fault."""
    raw = read_yaml_file(path, "LTI", LtiConfigError)
    try:
        if not isinstance(raw, dict) or set(raw) - {"tool", "platforms"}:
            raise LtiConfigError("only tool: and platforms: belong at the top")
        try:
            tool = ToolSettings(**(raw.get("tool") or {}))
        except (ValidationError, TypeError) as exc:
            if isinstance(exc, ValidationError):
                raise _first_problem("tool", exc) from None
            raise LtiConfigError("tool: must be a mapping") from None
        bodies = raw.get("platforms") or {}
        if not isinstance(bodies, dict):
            raise LtiConfigError("platforms: must be a mapping of names")
        platforms = {str(k): _platform(k, v) for k, v in bodies.items()}
        seen: dict[tuple[str, str], str] = {}
        for p in platforms.values():
            pair = (p.config.issuer, p.config.client_id)
            if pair in seen:
                raise LtiConfigError(f"platforms.{p.name}: same issuer and client_id as "
                                     f"platforms.{seen[pair]}")
            seen[pair] = p.name
        prefixes: dict[tuple[str, str], str] = {}
        for p in platforms.values():  # else user "2" of one LMS would be user "2" of another
            key = (p.config.tenant, p.config.subject_prefix)
            if key in prefixes:
                raise LtiConfigError(f"platforms.{p.name}.subject_prefix: same tenant and "
                                     f"subject_prefix as platforms.{prefixes[key]}; give "
                                     "each LMS of a tenant its own prefix")
            prefixes[key] = p.name
        return LtiRegistry(tool.base_url, _tool_key(tool), platforms)
    except LtiConfigError as exc:
        raise LtiConfigError(f"LTI file {path}: {exc}") from None


def lti_file(configured: Path | None) -> Path | None:
    """The LTI file in force: FORGE_LTI_FILE when set, else None (no LMS launches)."""
    return configured
