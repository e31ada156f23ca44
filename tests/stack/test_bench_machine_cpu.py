"""The benches' machine CPU figure (bench/runtime.machine_figure): noise is not a figure.

``machine_cpu_ms`` subtracts what the machine uses idle from /proc/stat's busy time. With
the two cores kept busy by other work, the idle rate moved by more than the labs used and
the figure was clipped to 0: bench/scale_runtime.py recorded ``lab_cpu_ms`` 0.0 (batches
0.0, 0.9, 0.0 ms per create+destroy, which costs ~40 ms), and `make bench`'s table showed
the target met. Now such a measurement is None and the table says "not measured" for
it, with the CPU counted in the bench's own cgroup beside it (bench/_cgroup_cpu.py).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from ..support.prefixes import runtime_prefix

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _bench_runtime() -> ModuleType:
    spec = importlib.util.spec_from_file_location("forge_bench_runtime", BENCH / "runtime.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_machine_busy_with_other_work_gives_no_figure() -> None:
    figure = _bench_runtime().machine_figure
    # 2 cores, 1.8 CPU-seconds per second busy before the labs: whatever they used is noise.
    assert figure(used_s=4.0, idle_rate=1.8, elapsed_s=2.0, count=10, cores=2) is None
    # Quiet before, busier during (other work started): the difference is negative, not 0.
    assert figure(used_s=0.2, idle_rate=0.2, elapsed_s=2.0, count=10, cores=2) is None


def test_a_quiet_machine_gives_the_calls_cost() -> None:
    figure = _bench_runtime().machine_figure
    # 0.45 s used over 1 s at an idle rate of 0.05 CPU-s/s: 0.4 s for 10 calls.
    assert figure(used_s=0.45, idle_rate=0.05, elapsed_s=1.0, count=10, cores=2) == 40.0


def _bench_module(name: str) -> ModuleType:
    """A bench helper module, loaded as `bench/<name>.py` imports its siblings."""
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(f"forge_bench_{name}", BENCH / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


def test_a_figure_not_measured_says_so_beside_its_cgroup_cpu() -> None:
    """A machine figure other work made noise is recorded as None with the cgroup CPU
    beside it: the table says "not measured" for it (not "—", not the cgroup figure)."""
    table = _bench_module("_table")
    text = table.render({"lab_cpu_ms": {"figure": "lab_cpu_ms", "value": None,
                                        "cpu_ms_per_op": 26.0, "detail": "busy"}})
    row = next(line for line in text.splitlines() if line.startswith("create+destroy CPU"))
    assert "not measured" in row and "26" in row, row


@pytest.mark.root
def test_the_cgroup_figure_counts_children_started_inside_not_the_bench() -> None:
    """bench/_cgroup_cpu: a child started while the bench is in the group is counted
    after the bench left it; the bench's own work after leaving is not."""
    import subprocess

    meter = _bench_module("_cgroup_cpu").CpuCgroup(f"{runtime_prefix('cg')}-bench-cpu")
    try:
        meter.enter()
        child = subprocess.Popen([sys.executable, "-c", "sum(range(3_000_000))"])
        meter.leave()
        before = meter.usage_s()
        assert child.wait() == 0
        counted = meter.usage_s() - before
        sum(range(3_000_000))  # the bench's own work, outside the group now
        assert meter.usage_s() - before == counted > 0
    finally:
        meter.close()
    assert not meter.path.exists()


def test_idle_bench_counts_wakeups_beside_cpu_and_says_when_the_machine_was_busy() -> None:
    """bench/idle_cpu: wake-ups (voluntary switches) from /proc status text, printed per
    process beside CPU %, the reference sleeper last; a reading taken while other work
    shared the cores (load above the core count) says so."""
    up = _bench_module("_forge_up")
    status = ("Name:\tpython3\nvoluntary_ctxt_switches:\t1234\n"
              "nonvoluntary_ctxt_switches:\t56\n")
    assert up.parse_switches(status) == (1234, 56)
    assert up.parse_switches("Name:\tgone\n") == (0, 0)

    idle = _bench_module("idle_cpu")
    r = idle.Reading
    readings = {"reference": r(0.06, 600, 0), "spawn": r(0.12, 180, 6),
                "orchestrator": r(0.3, 600, 60), "nats": r(0.3, 5400, 0)}
    lines = idle.report(readings, 60.0, (0.4, 0.5), 2)
    assert lines[1].split() == ["orchestrator", "0.50", "10.0", "1.0", "500"]
    assert lines[-2].split()[0] == "reference" and lines[-1].endswith("quiet")
    assert "BUSY" in idle.report(readings, 60.0, (1.0, 9.5), 2)[-1]
    # The worst service: not nats-server, not the reference; the most wake-ups of any.
    assert idle.worst(readings, 60.0) == ("orchestrator", 0.5, 10.0)
    # A thread that ended takes its switches with it: no negative count.
    assert idle.used(r(1.0, 10, 5), r(1.5, 8, 7)) == r(0.5, 0, 2)
