"""Entitlements: which plan a learner holds, from receipts, grants or dev-only shortcuts."""
