"""Two modules never share a name for different things.

A module's name says what it does; the only names that repeat are roles every package of one
kind has (each service's `app`, `routes`, `state`, `access`, `terminal`; a package's own
`errors`; a `forge` subcommand's module under `cli/`, named after its command).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "forge"
SERVICE_ROLES = {"app", "routes", "state", "access", "terminal"}


def _allowed(name: str, paths: list[Path]) -> bool:
    rel = [p.relative_to(SRC).parts for p in paths]
    if name == "__init__" or name == "errors":
        return True
    if name in SERVICE_ROLES:
        return all(r[0] == "services" for r in rel)
    # a CLI command module may share its name with the concept it drives, once
    return len(paths) == 2 and sum(r[0] == "cli" for r in rel) == 1


def test_no_two_modules_share_a_name_for_different_things() -> None:
    by_name: dict[str, list[Path]] = defaultdict(list)
    for path in SRC.rglob("*.py"):
        if "migrations" not in path.parts:
            by_name[path.stem].append(path)
    clashes = {n: [str(p.relative_to(SRC)) for p in ps] for n, ps in by_name.items()
               if len(ps) > 1 and not _allowed(n, ps)}
    assert not clashes, clashes
