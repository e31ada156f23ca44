"""Benchmark sealed grading against the old way (a check as the learner, in its namespaces).

On a 2-host lab with a typical answer tree (a few small files in /workspace), prints
medians and CPU per operation for: ``exec`` of a check in the learner's namespaces (the
first release's grader, the anchor), ``run_check`` (snapshot + fresh grader sandbox), and
``seal``; and the ratio run_check / exec. Needs root.

    .venv/bin/python bench/grading.py [--runs 30]
"""

from __future__ import annotations

import argparse
import resource
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

from forge.runtime import HostSpec, LabSpec, Limits, SubnetSpec
from forge.runtime.local import LocalRuntime

CHECK = ["/bin/sh", "-c", 'read -r want; test "$(cat /workspace/answer.txt)" = "$want"']


def spec(lab_id: str) -> LabSpec:
    files: dict[str, str | bytes] = {f"/workspace/notes-{i}.txt": "x" * 4096 for i in range(20)}
    files["/workspace/answer.txt"] = "42\n"
    return LabSpec(lab_id, [SubnetSpec("a", "10.51.1.0/24")],
                   [HostSpec("learner", networks=[("a", None)], files=files),
                    HostSpec("peer", networks=[("a", None)])], Limits(disk_mb=32))


def cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def measure(runs: int, fn: Callable[[], object]) -> tuple[float, float]:
    """(median wall ms, CPU ms per call)."""
    walls = []
    cpu0 = cpu()
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - start)
    return statistics.median(walls) * 1000, (cpu() - cpu0) / runs * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    state = tempfile.mkdtemp(prefix="forge-bench-grading-")
    rt = LocalRuntime(state, prefix="g" + secrets.token_hex(2))
    problems = rt.check()
    if problems:
        print("runtime unavailable:", "; ".join(problems), file=sys.stderr)
        return 2
    lab = "bg-" + secrets.token_hex(4)
    try:
        rt.create(spec(lab))
        old = measure(args.runs, lambda: rt.exec(lab, "learner", CHECK, stdin=b"42\n"))
        new = measure(args.runs, lambda: rt.run_check(lab, "learner", CHECK, stdin=b"42\n"))
        assert rt.run_check(lab, "learner", CHECK, stdin=b"42\n").exit_code == 0
        seals = []
        for i in range(max(3, args.runs // 5)):
            other = f"{lab}-{i}"
            rt.create(spec(other))
            rt.tty(other, "learner")
            seals.append(measure(1, lambda o=other: rt.seal(o)))  # type: ignore[misc]
            rt.destroy(other)
        print(f"{'operation':<34}{'median':>10}{'CPU/op':>10}")
        print(f"{'exec as learner (anchor)':<34}{old[0]:>8.1f}ms{old[1]:>8.1f}ms")
        print(f"{'run_check (sealed grader)':<34}{new[0]:>8.1f}ms{new[1]:>8.1f}ms")
        seal_wall = statistics.median(s[0] for s in seals)
        seal_cpu = statistics.median(s[1] for s in seals)
        print(f"{'seal (1 terminal open)':<34}{seal_wall:>8.1f}ms{seal_cpu:>8.1f}ms")
        print(f"ratio run_check/exec: wall {new[0] / old[0]:.2f}x, CPU {new[1] / old[1]:.2f}x")
    finally:
        for info in rt.list():
            rt.destroy(info.lab_id)
        rt.close()
        shutil.rmtree(state, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
