"""What the signing keyring raises (shared by the keyring and its export folder check)."""

from __future__ import annotations

from pathlib import Path

from forge.config.storage_root import UnsafeStorage

KEY_DIR_ENV = "FORGE_SIGNING_KEY_DIR"


class SigningKeyError(Exception):
    """The keyring cannot do what was asked; the message says why and what to run."""


class NoSigningKey(SigningKeyError):
    """No loadable Ed25519 private key is current in the keyring."""


class KeyExists(SigningKeyError):
    """`generate` was asked for while a current key already exists."""


class UnknownKey(SigningKeyError):
    """A key id named by the operator is not in the ring."""


class UnsafeKeyring(UnsafeStorage):
    """UnsafeStorage of a keyring named on its own (FORGE_SIGNING_KEY_DIR, --keys-dir): the
    refusal names the keyring and its setting, not a storage root it is no part of."""

    def __init__(self, ring: Path, exc: UnsafeStorage) -> None:
        super().__init__(ring, exc.path, exc.why, exc.fix)
        self.args = (f"refusing signing keyring {ring} ({KEY_DIR_ENV} / --keys-dir): "
                     f"{exc.path} {exc.why}; {exc.fix}, or name another keyring folder",)
