"""HMAC keyrings: the current secret signs; previous and next are accepted for verification.

Rotation without failed requests needs every verifier to accept both the old and the new
secret while services roll; a key id (kid) derived from the secret lets a verifier pick the
right one without trying them all, and without ever revealing the secret.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

_KID_DOMAIN = b"frostgate-forge/kid/v1:"
_VERIFIER_DOMAIN = b"frostgate-forge/verifier/v1:"


def derive_kid(secret: bytes) -> str:
    """A short, stable, non-reversible id for a secret (16 hex chars of a domain-separated hash)."""
    return hashlib.sha256(_KID_DOMAIN + secret).hexdigest()[:16]


def derive_verifier(secret: bytes) -> str:
    """A full-length, non-reversible digest of a secret (its own domain, unlike the kid's):
    a peer holding it can check a presented secret without holding the secret, where 16
    hex chars of a kid would be a 64-bit target."""
    return hashlib.sha256(_VERIFIER_DOMAIN + secret).hexdigest()


@dataclass(frozen=True)
class HmacKeyring:
    """The secrets of one name: `current` signs, all of them verify."""

    name: str
    current: bytes
    previous: bytes | None = None
    next: bytes | None = None
    _by_kid: dict[str, bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_kid: dict[str, bytes] = {}
        for secret in (self.current, self.previous, self.next):
            if secret:
                by_kid[derive_kid(secret)] = secret
        object.__setattr__(self, "_by_kid", by_kid)

    def __repr__(self) -> str:  # never show secret material
        return f"HmacKeyring(name={self.name!r}, kids={sorted(self._by_kid)})"

    @property
    def current_kid(self) -> str:
        """Key id of the signing secret."""
        return derive_kid(self.current)

    @property
    def kids(self) -> tuple[str, ...]:
        """Every key id accepted for verification."""
        return tuple(self._by_kid)

    @property
    def verifiers(self) -> tuple[str, ...]:
        """A ``derive_verifier`` digest of every accepted secret."""
        return tuple(derive_verifier(s) for s in self._by_kid.values())

    def key_for(self, kid: str) -> bytes | None:
        """The secret with this key id, or None when it is not in the ring."""
        return self._by_kid.get(kid)

    def matches(self, presented: str | bytes) -> bool:
        """Constant-time comparison of a presented secret (e.g. a bearer token) with every key."""
        candidate = presented.encode() if isinstance(presented, str) else presented
        found = False
        for secret in (self.current, self.previous, self.next):
            if secret and hmac.compare_digest(candidate, secret):
                found = True
        return found

    def secret_values(self) -> tuple[bytes, ...]:
        """All secret values (for log redaction only)."""
        return tuple(s for s in (self.current, self.previous, self.next) if s)


class SecretsNotRead(RuntimeError):
    """A keyring of settings loaded without their secrets was asked to sign or verify."""


@dataclass(frozen=True, repr=False, eq=False)
class UnreadKeyring(HmacKeyring):
    """The ring of settings loaded without secrets (``load_settings(secrets=False)``, for
    image and lab commands): reading a secret, so signing or checking anything with it,
    raises SecretsNotRead naming the variable. An empty ``current`` made PyJWT refuse the
    key with a traceback, and an HMAC under an empty key (a CSRF token, a peer proof, a
    list's MAC) is one anybody can make."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_kid", {})

    def __getattribute__(self, attr: str) -> object:
        if attr in ("current", "previous", "next"):
            name = object.__getattribute__(self, "name")
            raise SecretsNotRead(f"{name} was not read: these settings were loaded without "
                                 "secrets (for image and lab commands), so they cannot sign "
                                 "or verify anything")
        return object.__getattribute__(self, attr)

    def key_for(self, kid: str) -> bytes | None:
        """Refused: there is no secret to check with (SecretsNotRead)."""
        return self.current

    def secret_values(self) -> tuple[bytes, ...]:
        """None were read: nothing to redact."""
        return ()


def list_mac(ring: HmacKeyring, domain: bytes, items: list[str]) -> dict[str, str]:
    """``{"kid", "mac"}``: an HMAC with ``ring``'s current secret over ``items`` (in their
    order) under ``domain``, so a peer holding the same ring knows who listed them."""
    return {"kid": ring.current_kid, "mac": _mac(ring.current, domain, items)}


def list_mac_valid(ring: HmacKeyring, domain: bytes, items: list[str], signed: object) -> bool:
    """Whether ``signed`` is a ``list_mac`` of ``items`` by a secret of ``ring`` (any key id
    the ring accepts; constant-time compare)."""
    if not isinstance(signed, dict):
        return False
    kid, mac = signed.get("kid"), signed.get("mac")
    if not isinstance(kid, str) or not isinstance(mac, str):
        return False
    secret = ring.key_for(kid)
    return secret is not None and hmac.compare_digest(mac, _mac(secret, domain, items))


def _mac(secret: bytes, domain: bytes, items: list[str]) -> str:
    return hmac.new(secret, domain + "\n".join(items).encode(), hashlib.sha256).hexdigest()

