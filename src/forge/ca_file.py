"""Reading a CA certificate file an operator names (e.g. ``FORGE_NATS_CA``), bounded."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

MAX_CA_BYTES = 1 << 20


class CaFileError(ValueError):
    """A CA file that cannot be used; the message says what is wrong (not the path)."""


def read_ca(path: Path) -> str:
    """The PEM certificates in ``path`` (at most MAX_CA_BYTES), as PEM text of those
    certificates only; CaFileError if it cannot be read, is larger or holds none."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_CA_BYTES + 1)
    except OSError as exc:
        raise CaFileError(f"cannot be read ({exc.strerror or exc})") from None
    if len(data) > MAX_CA_BYTES:
        raise CaFileError(f"is larger than {MAX_CA_BYTES} bytes")
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise CaFileError("holds no PEM certificate") from None
    # The certificates alone, re-encoded: a bundle's comments (any text) and any other
    # block (a private key pasted in by mistake) go no further.
    pem = serialization.Encoding.PEM
    return b"".join(c.public_bytes(pem) for c in certificates).decode("ascii")
