"""Sealed cookie values: AES-GCM under a key derived from the SAT secret for one purpose,
bound to who they are for (associated data), so a value carries something to this same
person's next page across a redirect without anyone else reading or changing it.

A value sealed under the previous SAT secret still opens after a rotation; one sealed for
another purpose, another person, or under an unknown key opens as None.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from forge.config.settings import Settings

_NONCE = 12
MAX_SEALED_CHARS = 4096  # what ``unseal`` reads of a cookie at most: browsers cap one at 4 KiB


def _keys(settings: Settings, purpose: bytes) -> list[bytes]:
    ring = settings.sat
    return [hmac.new(s, purpose, hashlib.sha256).digest()
            for s in (ring.current, ring.previous) if s]


def seal(settings: Settings, purpose: bytes, aad: bytes, plaintext: bytes) -> str:
    """``plaintext`` sealed for ``purpose`` and ``aad`` (a cookie value)."""
    nonce = os.urandom(_NONCE)
    sealed = AESGCM(_keys(settings, purpose)[0]).encrypt(nonce, plaintext, aad)
    return base64.urlsafe_b64encode(nonce + sealed).decode()


def unseal(settings: Settings, purpose: bytes, aad: bytes, value: str) -> bytes | None:
    """What ``seal`` sealed in ``value`` for ``purpose`` and ``aad``, else None."""
    if not value or len(value) > MAX_SEALED_CHARS:
        return None
    try:
        raw = base64.urlsafe_b64decode(value.encode())
    except (ValueError, UnicodeEncodeError, binascii.Error):
        return None
    for key in _keys(settings, purpose):
        try:
            return AESGCM(key).decrypt(raw[:_NONCE], raw[_NONCE:], aad)
        except (InvalidTag, ValueError):
            continue
    return None
