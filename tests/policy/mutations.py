"""Policy inputs beyond the recorded corpus: each corpus input with one field changed (to a
value of another type, an edge value, a value a gate knows) or removed, chosen by a seeded
generator, so the inputs are the same on every run.

`corpus/<package>_mutated.json` holds them with the decisions the policies made before the
issue-19 item-4 rewrite (allow read off positive checks, reasons only for a deny):

    PYTHONPATH=<checkout of the old policies>/src:. .venv/bin/python -m tests.policy.mutations

Re-run it only on purpose: it records the decisions of whatever policies it imports.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).parent / "corpus"
PACKAGES = ("training", "capabilities", "spawn", "assignment")

VALUES: tuple[Any, ...] = (
    None, True, False, 0, -1, 1, 3, 0.5, 10**6, "", "x", "netplus", "ccna", "cissp", "FREE",
    "PRO", "TEAM", "foundation", "advanced", "deny", "allowlist", "package-mirrors",
    "NET_RAW", "SYS_ADMIN", "req-00000001", [], ["netplus"], ["NET_ADMIN", "NET_RAW"], {},
    {"used": 0, "limit": 1},
)


def corpus_cases(name: str) -> list[dict[str, Any]]:
    """The recorded cases (input, allow, reasons) of one package's corpus file."""
    cases: list[dict[str, Any]] = json.loads((CORPUS / f"{name}.json").read_text())["cases"]
    return cases


def paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path (object keys and array indexes) to a value inside `doc`."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield (*prefix, k)
            yield from paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield (*prefix, i)
            yield from paths(v, (*prefix, i))


def changed(doc: dict[str, Any], path: tuple[Any, ...], value: Any,
            remove: bool = False) -> dict[str, Any]:
    """A copy of `doc` with the value at `path` set to `value` (or removed)."""
    out = copy.deepcopy(doc)
    parent: Any = out
    for key in path[:-1]:
        parent = parent[key]
    if remove:
        del parent[path[-1]]
    else:
        parent[path[-1]] = copy.deepcopy(value)
    return out


def mutations(doc: dict[str, Any], count: int, seed: int) -> list[dict[str, Any]]:
    """`count` variants of `doc`, each with one field changed or removed."""
    rng = random.Random(seed)
    where = list(paths(doc))
    if not where:
        return []
    out = []
    for _ in range(count):
        path = rng.choice(where)
        out.append(changed(doc, path, rng.choice(VALUES), remove=rng.random() < 0.2))
    return out


def mutated_inputs(name: str, per_input: int = 3, per_allowed: int = 12) -> list[dict[str, Any]]:
    """Mutations of a package's corpus inputs: `per_input` of each, `per_allowed` of each
    allowed one (a change to an allowed input is where a wrong allow would show)."""
    return [m for i, case in enumerate(corpus_cases(name))
            for m in mutations(case["input"], per_allowed if case["allow"] else per_input,
                               seed=i)]


def record(out: Path = CORPUS) -> None:
    """Record each package's decisions on the mutations of its corpus inputs (not the
    inputs themselves: those are recorded already) into `<package>_mutated.json`."""
    from forge.policy import EmbeddedEngine  # the engine and policies in force when run

    engine = EmbeddedEngine()
    for name in PACKAGES:
        lines = []
        for doc in mutated_inputs(name):
            d = engine.decide(f"forge.{name}", doc)
            lines.append(json.dumps({"allow": d.allow, "input": doc, "reasons": d.reasons},
                                    sort_keys=True))
        head = json.dumps({"package": f"forge.{name}",
                           "recorded_with_policy_hash": engine.policy_hash})[:-1]
        (out / f"{name}_mutated.json").write_text(
            head + ', "cases": [\n' + ",\n".join(lines) + "\n]}\n")


if __name__ == "__main__":
    record()
