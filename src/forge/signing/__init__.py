"""Ed25519 signing keys for verdicts and audit checkpoints.

Import-free on purpose: `forge.signing.ids` is used by the offline verifier, which must not
pull in anything beyond the standard library and `cryptography`.
"""
