"""Building a scenario's evidence artifacts: score.json, the bundle and the signed verdict.

The formats and their checks live in the `forge_verify` distribution (canonical JSON, bundle,
score, statement, DSSE), which the offline verifier runs on bare machines; this package only
assembles and signs them on the platform.
"""
