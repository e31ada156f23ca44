"""Reading a CA certificate file an operator names (e.g. ``FORGE_NATS_CA``), bounded."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509

MAX_CA_BYTES = 1 << 20


class CaFileError(ValueError):
    """A CA file that cannot be used; the message says what is wrong (not the path)."""


def read_ca(path: Path) -> str:
    """The PEM certificates in ``path`` (at most MAX_CA_BYTES), as text; CaFileError if it
    cannot be read, is larger or holds no certificate."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_CA_BYTES + 1)
    except OSError as exc:
        raise CaFileError(f"cannot be read ({exc.strerror or exc})") from None
    if len(data) > MAX_CA_BYTES:
        raise CaFileError(f"is larger than {MAX_CA_BYTES} bytes")
    try:
        x509.load_pem_x509_certificates(data)
    except ValueError:
        raise CaFileError("holds no PEM certificate") from None
    return data.decode("ascii")
