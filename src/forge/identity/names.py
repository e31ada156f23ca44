"""Strict formats for tenant and subject ids, so they are safe in keys, logs and URLs."""

from __future__ import annotations

import re

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}\Z")


def valid_id(value: object) -> bool:
    """True for 1-128 chars of letters, digits and . _ @ : - (starting alphanumeric)."""
    return isinstance(value, str) and bool(_ID.match(value))
