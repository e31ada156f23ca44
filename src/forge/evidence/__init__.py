"""Scores, evidence bundles, DSSE verdicts and their offline verifier.

Deliberately import-free: `forge.evidence.verify` must load with only the standard library,
`cryptography` and `zstandard` installed (scripts/verify_verdict.py runs on bare machines).
"""
