"""What the signing keyring raises (shared by the keyring and its export folder check)."""

from __future__ import annotations


class SigningKeyError(Exception):
    """The keyring cannot do what was asked; the message says why and what to run."""


class NoSigningKey(SigningKeyError):
    """No loadable Ed25519 private key is current in the keyring."""


class KeyExists(SigningKeyError):
    """`generate` was asked for while a current key already exists."""


class UnknownKey(SigningKeyError):
    """A key id named by the operator is not in the ring."""
