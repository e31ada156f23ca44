"""The platform's append-only audit logs (writing, locking, checkpoints).

The chain format and its verification live in `forge_verify.audit_chain`, shared with the
offline verifier; this package adds what only the running platform needs (files, locks).
"""
