"""Key ids and PEM handling for Ed25519 public keys (standard library + cryptography only)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Protocol

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

KEY_ID_HEX_CHARS = 16
_PEM_BEGIN = b"-----BEGIN PUBLIC KEY-----"
_PEM_END = b"-----END PUBLIC KEY-----"


class Signer(Protocol):
    """Anything that signs with an Ed25519 key and knows that key's id."""

    @property
    def key_id(self) -> str:
        """Short id of the public key."""
        ...

    def sign(self, message: bytes) -> bytes:
        """Ed25519 signature of `message`."""
        ...


class PublicKeyError(ValueError):
    """Bytes that should hold an Ed25519 public key do not."""


def same_text(a: str, b: str) -> bool:
    """Constant-time equality for any two strings (hmac.compare_digest refuses non-ASCII)."""
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"),
                               b.encode("utf-8", "surrogatepass"))


def raw_public_bytes(key: Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of an Ed25519 public key."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_for(key: Ed25519PublicKey) -> str:
    """Key id: the first 16 hex digits of sha256 over the raw public key."""
    return hashlib.sha256(raw_public_bytes(key)).hexdigest()[:KEY_ID_HEX_CHARS]


def public_pem(key: Ed25519PublicKey) -> bytes:
    """PEM SubjectPublicKeyInfo, readable by `openssl pkey -pubin`."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_pem(data: bytes) -> Ed25519PublicKey:
    """Parse one PEM public key and insist it is Ed25519."""
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise PublicKeyError(f"not a PEM public key ({exc.__class__.__name__})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise PublicKeyError(f"public key is {type(key).__name__}, not Ed25519")
    return key


def load_public_pems(data: bytes) -> list[Ed25519PublicKey]:
    """Every PEM public key in `data` (a file may bundle several)."""
    keys: list[Ed25519PublicKey] = []
    start = data.find(_PEM_BEGIN)
    while start != -1:
        end = data.find(_PEM_END, start)
        if end == -1:
            raise PublicKeyError("unterminated PEM block")
        keys.append(load_public_pem(data[start : end + len(_PEM_END)] + b"\n"))
        start = data.find(_PEM_BEGIN, end)
    if not keys:
        raise PublicKeyError("no PEM public key found")
    return keys
