"""Append-only, hash-chained audit logs with signed checkpoints.

Import-free on purpose: `forge.audit.chain` is reused by the offline verifier, which must not
pull in filelock or anything beyond the standard library and `cryptography`.
"""
