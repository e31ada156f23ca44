"""Per-tenant OpenID Connect settings: the file `oidc.yaml`, validated with a problem line.

One entry per tenant under `tenants:` (issuer, client, redirect URI, scopes, claim mapping).
The client secret never sits in the file: it is read from the variable named by
`client_secret_env` or the file named by `client_secret_file`, and is kept out of every
repr and message. Any problem stops the service at start with `OidcConfigError`, whose text
names the field (`tenants.acme.issuer: ...`), never a value that could be a secret.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from forge.config.trusted_file import read_operator_file
from forge.identity.config_file import read_yaml_file
from forge.identity.names import valid_id
from forge.identity.roles import INSTRUCTOR, LEARNER, OPERATOR

DEFAULT_FILE_NAME = "oidc.yaml"
MAX_SECRET_BYTES = 4096
_CLAIM = re.compile(r"^[A-Za-z0-9_.:/-]{1,128}\Z")
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}\Z")
_SCOPE = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,64}\Z")  # RFC 6749 scope-token


class OidcConfigError(Exception):
    """The OIDC file cannot be used; the message names the file and the field at fault."""


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url(value: str, what: str) -> str:
    """An https URL with a host (http only on loopback, for a provider on this machine)."""
    try:
        parts = urlsplit(value)
        _ = parts.port
    except ValueError:
        raise ValueError(f"must be an https:// URL ({what})") from None
    host = parts.hostname or ""
    if not host or parts.fragment or parts.username or parts.password:
        raise ValueError(f"must be an https:// URL with a host, no user or fragment ({what})")
    if parts.scheme != "https" and not (parts.scheme == "http" and _loopback(host)):
        raise ValueError(f"must be an https:// URL ({what}; http only on loopback)")
    return value


def secure_url(value: object) -> bool:
    """True for an https URL with a host (http only on loopback): where a client secret or
    a code may be sent."""
    try:
        _url(str(value), "endpoint")
    except ValueError:
        return False
    return isinstance(value, str)


_NUMERIC_LABEL = re.compile(r"0x[0-9a-f]*|[0-9]+")


def _internal_host(host: str) -> bool:
    """localhost, or an IP literal that is not a public address (loopback, private,
    link-local such as a cloud metadata service, reserved...), or a host the resolver's
    legacy numeric parser reads as an address ipaddress does not (`127.1`, `0x7f000001`,
    `167772161`, `0177.0.0.1`): counted as internal, so never called unless it is the
    issuer's own host."""
    name = host.rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return not ipaddress.ip_address(name).is_global
    except ValueError:
        return all(_NUMERIC_LABEL.fullmatch(label) for label in name.split("."))


def endpoint_allowed(endpoint: object, issuer: str) -> bool:
    """May an endpoint named by `issuer`'s discovery document be called (with a client
    secret, a code)? It must be a `secure_url`, and the document may point at this machine
    or an internal address only where the configured issuer itself is (a provider running
    there): otherwise whoever runs the provider could make the platform call its own
    services or the internal network."""
    if not secure_url(endpoint):
        return False
    host = urlsplit(str(endpoint)).hostname or ""
    return not _internal_host(host) or host == (urlsplit(issuer).hostname or "")


class TenantOidc(BaseModel):
    """How one tenant's people sign in through its identity provider."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    display_name: str = Field(min_length=1, max_length=80)
    issuer: str = Field(min_length=1, max_length=512)
    client_id: str = Field(min_length=1, max_length=255)
    client_secret_env: str | None = None
    client_secret_file: Path | None = None
    token_auth: str = "client_secret_basic"  # noqa: S105 - a method name, not a secret
    redirect_uri: str = Field(min_length=1, max_length=512)
    scopes: tuple[str, ...] = ("openid", "profile", "email")
    subject_claim: str = "sub"
    role_claim: str | None = None
    roles: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    group_claim: str | None = None

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, value: str) -> str:
        return _url(value, "the provider's issuer identifier, exactly as it publishes it")

    @field_validator("redirect_uri")
    @classmethod
    def _redirect(cls, value: str) -> str:
        return _url(value, "this site's callback, registered at the provider")

    @field_validator("token_auth")
    @classmethod
    def _token_auth(cls, value: str) -> str:
        if value not in ("client_secret_basic", "client_secret_post"):
            raise ValueError("must be client_secret_basic or client_secret_post")
        return value

    @field_validator("client_secret_env")
    @classmethod
    def _secret_env(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError("must name an environment variable (A-Z, 0-9, _)")
        return value

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if "openid" not in value or len(value) > 16 or not all(_SCOPE.match(s) for s in value):
            raise ValueError("must list up to 16 scope names, openid among them")
        return value

    @field_validator("subject_claim", "role_claim", "group_claim")
    @classmethod
    def _claim(cls, value: str | None) -> str | None:
        if value is not None and not _CLAIM.match(value):
            raise ValueError("must be a claim name (letters, digits, _ . : / -)")
        return value

    @field_validator("roles")
    @classmethod
    def _roles(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        unknown = sorted(set(value) - {LEARNER, INSTRUCTOR, OPERATOR})
        if unknown:
            raise ValueError("keys must be learner, instructor or operator")
        for values in value.values():
            if not values or not all(isinstance(v, str) and 0 < len(v) <= 128 for v in values):
                raise ValueError("each role lists 1 or more claim values")
        return value


    @model_validator(mode="after")
    def _roles_need_a_claim(self) -> TenantOidc:
        if self.roles and self.role_claim is None:
            raise ValueError("roles needs role_claim (the claim whose values it lists)")
        return self


@dataclass(frozen=True)
class OidcTenant:
    """A tenant's validated settings with its client secret (kept out of repr)."""

    tenant_id: str
    config: TenantOidc
    client_secret: str = field(repr=False)


@dataclass(frozen=True)
class OidcRegistry:
    """Every tenant that signs in through an identity provider, by tenant id."""

    tenants: Mapping[str, OidcTenant] = field(default_factory=dict)
    source: Path | None = None

    def get(self, tenant_id: str) -> OidcTenant | None:
        """The tenant's settings, or None when it has no identity provider set up."""
        return self.tenants.get(tenant_id) if valid_id(tenant_id) else None


def _secret(where: str, cfg: TenantOidc, environ: Mapping[str, str]) -> str:
    if (cfg.client_secret_env is None) == (cfg.client_secret_file is None):
        raise OidcConfigError(f"{where}.client_secret_env / client_secret_file: set exactly "
                              "one (the client secret never goes in this file)")
    if cfg.client_secret_env is not None:
        value = environ.get(cfg.client_secret_env, "")
        if not value:
            raise OidcConfigError(f"{where}.client_secret_env: the variable "
                                  f"{cfg.client_secret_env} is not set")
        return value
    assert cfg.client_secret_file is not None
    try:
        raw, why = read_operator_file(cfg.client_secret_file, MAX_SECRET_BYTES)
    except OSError as exc:
        raise OidcConfigError(f"{where}.client_secret_file: cannot read "
                              f"{cfg.client_secret_file} ({exc.strerror})") from None
    if why is not None:
        raise OidcConfigError(f"{where}.client_secret_file: {cfg.client_secret_file} {why}")
    text = raw.decode("utf-8", "replace").strip()
    if not text or len(raw) > MAX_SECRET_BYTES:
        raise OidcConfigError(f"{where}.client_secret_file: must hold 1 to "
                              f"{MAX_SECRET_BYTES} bytes")
    return text


def _tenant(name: object, body: object, environ: Mapping[str, str]) -> OidcTenant:
    where = f"tenants.{name}"
    if not valid_id(name):
        raise OidcConfigError(f"{where}: a tenant id is 1-128 chars of [A-Za-z0-9._@:-]")
    if not isinstance(body, dict):
        raise OidcConfigError(f"{where}: must be a mapping")
    if "client_secret" in body:
        raise OidcConfigError(f"{where}.client_secret: never put the secret in this file; "
                              "use client_secret_env or client_secret_file")
    try:
        cfg = TenantOidc(**body)
    except ValidationError as exc:
        first = exc.errors(include_input=False)[0]
        path = ".".join(str(p) for p in first["loc"])
        raise OidcConfigError(f"{where}.{path}: {first['msg']}" if path
                              else f"{where}: {first['msg']}") from None
    suffix = f"/signin/oidc/{name}/callback"
    if not urlsplit(cfg.redirect_uri).path.endswith(suffix):
        raise OidcConfigError(f"{where}.redirect_uri: must end with {suffix}")
    return OidcTenant(str(name), cfg, _secret(where, cfg, environ))


def load_oidc(path: Path, environ: Mapping[str, str]) -> OidcRegistry:
    """Read and validate an OIDC file; OidcConfigError names the field at fault."""
    raw = read_yaml_file(path, "OIDC", OidcConfigError)
    if not isinstance(raw, dict) or not isinstance(raw.get("tenants"), dict):
        raise OidcConfigError(f"OIDC file {path}: tenants: must be a mapping of tenant ids")
    extra = sorted(str(k) for k in raw if k != "tenants")
    if extra:
        raise OidcConfigError(f"OIDC file {path}: {extra[0]}: unknown field (only tenants)")
    try:
        tenants = {str(k): _tenant(k, v, environ) for k, v in raw["tenants"].items()}
    except OidcConfigError as exc:
        raise OidcConfigError(f"OIDC file {path}: {exc}") from None
    return OidcRegistry(tenants, path)


def oidc_file(configured: Path | None, storage_root: Path) -> Path | None:
    """The OIDC file in force: FORGE_OIDC_FILE when set (it must exist), else
    `<STORAGE_ROOT>/oidc.yaml` when present, else None (no tenant signs in through OIDC)."""
    if configured is not None:
        return configured
    default = storage_root / DEFAULT_FILE_NAME
    return default if default.is_file() else None
