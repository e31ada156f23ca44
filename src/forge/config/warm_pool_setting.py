"""FORGE_WARM_POOL: how many pre-built labs of each template a lab node keeps ready."""

from __future__ import annotations

import re

TEMPLATE_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}\Z")
MAX_POOL_SIZE = 1000


def parse_warm_pool(text: str) -> dict[str, int]:
    """``"netplus=20,ccna=5"`` -> {template id: size}; empty means no pools.

    Raises ValueError naming the entry that is not ``template=N`` with 0 <= N <= 1000."""
    pools: dict[str, int] = {}
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        name, sep, size = (p.strip() for p in entry.partition("="))
        if not sep or not TEMPLATE_RE.fullmatch(name) or not size.isdecimal() \
                or int(size) > MAX_POOL_SIZE:
            raise ValueError(f"FORGE_WARM_POOL entry {entry[:80]!r} must be template=N with "
                             f"0 <= N <= {MAX_POOL_SIZE}, e.g. netplus=20,ccna=5")
        if name in pools:
            raise ValueError(f"FORGE_WARM_POOL names template {name!r} twice")
        pools[name] = int(size)
    return pools
