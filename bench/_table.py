"""Print the one table `make bench` ends with: issue 19's figures, before and now.

    .venv/bin/python bench/_table.py [RESULTS.jsonl]

For each figure: what it measures, the value issue 19 recorded before the work ("today"),
the target, the value measured now (the last record of that figure), CPU per operation,
and the ratio to the named outside anchor where one exists. A figure no script recorded
prints "not measured", so a missing bench is visible rather than silently absent.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from _report import results_path


@dataclass(frozen=True)
class Figure:
    """One row of the table; anchor_value is in the same unit as the figure."""

    id: str
    label: str
    unit: str
    before: str
    target: str
    anchor: str = ""
    anchor_value: float | None = None


FIGURES: tuple[Figure, ...] = (
    Figure("lab_cpu_ms", "create+destroy CPU, netplus lab", "ms", "≈65", "≤30"),
    Figure("create_ratio_200", "create time at 200 live labs / at 0", "x", "≈3.7", "≤1.2"),
    # Not in the issue: the same creates with no teardown just before, whose freeing of
    # namespaces in the kernel (cleanup_net) holds the locks a create needs.
    Figure("create_ratio_200_kept", "create at 200 live / at 0, no teardown before (extra)",
           "x", "—", "—"),
    # Not in the issue: the same number of tasks as 200 live labs have, as plain sleeping
    # processes with no lab live; pivot_root walks every task on the machine.
    Figure("create_ratio_tasks", "create with 200 labs' tasks as plain processes / at 0 "
           "(extra)", "x", "—", "—"),
    Figure("teardown_200_s", "teardown of 200 labs", "s", "9-10", "≤3"),
    # Not in the issue: a check started from the machine's mount namespace (every live
    # lab's mounts) took 5.8x at 200 live labs, 9x at 300 (measured 2026-12-02).
    Figure("check_ratio_200", "grading check at 200 live / at 0 (extra)", "x", "5.8", "—"),
    Figure("burst50_p99_s", "50 concurrent creates, p99 (no pool)", "s", "3.1-5.1", "≤1.5",
           "DOJO 2.0-8.4 s/start", 8.4),
    Figure("pool_running_p50_ms", "spawn → running from warm pool, p50 server", "ms", "≈112",
           "≤15", "chall-manager 640 µs pooled", 0.64),
    Figure("spawn200_p99_s", "200 concurrent spawns (pool 50), p99 → running", "s", "8.3 (50)",
           "≤1", "DOJO 2.0-8.4 s/start", 8.4),
    Figure("policy_decision_ms", "policy CPU per decision, costliest gate", "ms", "4.7-5.1",
           "≤1"),
    Figure("policy_cpu_ms", "policy CPU per spawn, both gates uncached", "ms", "6.7", "≤1"),
    Figure("policy_class_ms", "policy CPU per spawn in a class (cache)", "ms", "6.7", "≤1"),
    Figure("spawn_api_rps", "spawn API accepted/s", "/s", "80-153", "≥500"),
    Figure("spawn_api_p99_ms", "spawn API p99 at 200/s", "ms", "—", "≤50"),
    Figure("spawn_api_cpu_ms", "spawn API server CPU per request", "ms", "3.9", "—"),
    Figure("idle_cpu_pct", "idle CPU, worst service", "% core", "≈5", "≤0.5"),
    # Not in the issue: the same window's wake-ups (voluntary context switches), a count the
    # machine's load does not inflate where it does the CPU % ("before": orchestrator,
    # measured at e5f711ea, 2026-12-08, by bench/idle_cpu.py).
    Figure("idle_wakeups_s", "idle wake-ups/s, most of any service (extra)", "/s", "9.3",
           "—"),
    # Not in the issue: what each restart and each operator command costs before it does
    # anything ("before": measured at ffea944, 2026-12-05, by bench/startup.py).
    Figure("platform_start_s", "forge up → platform up, wall (extra)", "s", "7.8", "—"),
    Figure("service_start_cpu_s", "CPU to start a service, costliest (extra)", "s", "3.7",
           "—"),
    Figure("command_cpu_s", "CPU of one store command (extra)", "s", "1.7", "—"),
    Figure("whole_path_cpu_ms", "machine CPU per learner lab (API path)", "ms", "≈185", "≤60",
           "chall-manager 2.8 s fresh", 2800.0),
    Figure("labs_1000_live", "live netplus labs on one node", "labs", "—", "1000",
           "kube-ctf 1,000 on a GKE cluster", 1000.0),
    Figure("lab_mem_mib", "memory per live lab", "MiB", "—", "—"),
    Figure("orchestrator_rss_mib", "orchestrator RSS at 1000 labs", "MiB", "—", "—"),
)


def _latest(path: Path) -> dict[str, dict[str, object]]:
    rows: dict[str, dict[str, object]] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                rows[str(row["figure"])] = row
    return rows


def _fmt(value: object) -> str:
    if not isinstance(value, (int, float)):
        return "—"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def render(rows: dict[str, dict[str, object]]) -> str:
    """The table as text, one line per figure, plus any detail notes."""
    head = ("figure", "unit", "before", "target", "now", "CPU ms/op", "anchor", "x anchor")
    lines: list[tuple[str, ...]] = [head]
    notes: list[str] = []
    for f in FIGURES:
        row = rows.get(f.id)
        now = _fmt(row["value"]) if row and row["value"] is not None else "not measured"
        cpu = _fmt(row.get("cpu_ms_per_op")) if row else "—"
        ratio = "—"
        if row and f.anchor_value and isinstance(row["value"], (int, float)) and row["value"]:
            ratio = f"{float(row['value']) / f.anchor_value:.3g}"
        lines.append((f.label, f.unit, f.before, f.target, now, cpu, f.anchor or "—", ratio))
        if row and row.get("detail"):
            notes.append(f"  {f.label}: {row['detail']}")
    widths = [max(len(r[i]) for r in lines) for i in range(len(head))]
    out = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out + (["", *notes] if notes else []))


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else results_path()
    print(render(_latest(path)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
