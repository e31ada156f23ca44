"""Ed25519 signing keys for verdicts and audit checkpoints (the platform's keyring).

Key ids and public-PEM handling are in `forge_verify.keys`, shared with the offline verifier.
"""
