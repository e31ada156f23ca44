"""Shared result sink for the bench scripts: each records its figures, `_table.py` prints them.

A bench script (run as `python bench/<name>.py`, so this directory is on sys.path) calls

    from _report import record
    record("policy_cpu_ms", 0.8, cpu_ms_per_op=0.8, detail="training+spawn, one query")

Each call appends one JSON line to $FORGE_BENCH_OUT (default build/bench/results.jsonl);
`make bench` clears that file, runs every script, then prints one table with
`bench/_table.py` — today's value from issue 19, the new value, CPU per operation and the
ratio to the named anchors. Figure ids are listed in `_table.FIGURES`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def results_path() -> Path:
    """Where results are appended (FORGE_BENCH_OUT, or build/bench/results.jsonl)."""
    return Path(os.environ.get("FORGE_BENCH_OUT") or ROOT / "build" / "bench" / "results.jsonl")


def record(figure: str, value: float | None, *, cpu_ms_per_op: float | None = None,
           detail: str = "") -> None:
    """Append one measured figure (a median, in the unit `_table.FIGURES` names); value
    None: not measured (the table says so), e.g. a machine figure other work made noise,
    recorded for its CPU ms/op and detail."""
    path = results_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    row = {"figure": figure, "value": value, "cpu_ms_per_op": cpu_ms_per_op,
           "detail": detail, "at": time.time()}
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(row) + "\n")
