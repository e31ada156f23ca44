"""Benchmark the local sandbox runtime (needs root).

For a 3-host / 2-subnet lab with a router, prints: sequential create and destroy latency
(p50/p99), a burst of concurrent creates (p50/p99 and wall time), and how many labs stay
alive at once with the memory each costs. Then the same (netplus-shaped) lab with every
host on the ``base`` image next to every host on the machine's userland (``image: host``):
create+destroy wall time (median), machine CPU (``machine_cpu_ms``) and memory per lab with
their ratio, and the disk
the image cache takes. Everything created is torn down at the end.

    .venv/bin/python bench/runtime.py [--seq 30] [--burst 50] [--capacity 200]
                                      [--image-cycles 15] [--image-alive 10] [--images-only]
"""

from __future__ import annotations

import argparse
import os
import resource
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from forge.runtime import HostSpec, LabSpec, SubnetSpec
from forge.runtime.local import LocalRuntime

TICKS = os.sysconf("SC_CLK_TCK")


def lab(lab_id: str, service: str | None, image: str | None = None) -> LabSpec:
    """client (subnet a) -> router (a, b) -> server (subnet b), routes via the router;
    every host on ``image`` (None: the runtime's default)."""
    return LabSpec(lab_id, [SubnetSpec("a", "10.50.1.0/24"), SubnetSpec("b", "10.50.2.0/24")], [
        HostSpec("client", networks=[("a", None)], routes=[("10.50.2.0/24", "10.50.1.254")],
                 image=image),
        HostSpec("router", networks=[("a", "10.50.1.254"), ("b", "10.50.2.254")], router=True,
                 image=image),
        HostSpec("server", networks=[("b", None)], routes=[("default", "10.50.2.254")],
                 command=service, image=image),
    ])


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) in milliseconds."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] * 1000


def mem_available_mb() -> float:
    """MemAvailable from /proc/meminfo, in MiB."""
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return 0.0


def own_cpu_s() -> float:
    """CPU used by this process (every thread) so far: the runtime's own share of a lab."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


def machine_busy_s() -> float:
    """CPU seconds the whole machine ran work (all CPUs), from /proc/stat: user, nice,
    system, irq and softirq; not idle, iowait, or steal (time the hypervisor gave another
    guest: on a busy host it grows with our wall time, not with our work)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:3]) + fields[5] + fields[6]) / TICKS


# Above this share of the machine busy before a measurement (other work, e.g. other
# benches or test runs), /proc/stat less the idle rate measures that work's noise.
BUSY_MACHINE_SHARE = 0.25


def machine_figure(used_s: float, idle_rate: float, elapsed_s: float, count: int,
                   cores: int) -> float | None:
    """Machine CPU (ms) per call from ``used_s`` busy seconds over ``elapsed_s`` and an
    idle rate of ``idle_rate`` busy CPU seconds per second; None when it is noise: the
    machine was busy with other work (more than ``BUSY_MACHINE_SHARE`` of ``cores``), or
    the calls seem to have cost nothing (the idle rate moved by more than they used)."""
    if idle_rate > BUSY_MACHINE_SHARE * cores:
        return None
    mine = used_s - idle_rate * elapsed_s
    return mine * 1000 / count if mine > 0 else None


def machine_cpu_ms(run: Callable[[int], object], count: int,
                   settle_s: float = 0.5) -> float | None:
    """Machine CPU (ms) per call of ``run(i)``, i in range(count): /proc/stat's busy time
    over the calls and a settle (the kernel frees a lab's namespaces in its own workers
    afterwards), less what the machine uses idle: two seconds measured after one of quiet,
    so the baseline holds none of the previous work's deferred clean-up. None when the
    machine's other work makes that difference noise (``machine_figure``): it read 0 ms
    per lab with the two cores kept busy by other work, a figure no lab costs.

    Not getrusage: a lab's sandbox trees die with their bwrap parents at destroy, and are
    reaped by no process of ours, so their CPU never reaches RUSAGE_CHILDREN (a lab whose
    service burned 200 ms showed 5 ms there)."""
    time.sleep(1.0)
    busy, start = machine_busy_s(), time.perf_counter()
    time.sleep(2.0)
    idle_rate = (machine_busy_s() - busy) / (time.perf_counter() - start)
    busy, start = machine_busy_s(), time.perf_counter()
    for i in range(count):
        run(i)
    time.sleep(settle_s)
    return machine_figure(machine_busy_s() - busy, idle_rate, time.perf_counter() - start,
                          count, os.cpu_count() or 1)


def cgroup_memory_mb(rt: LocalRuntime, lab_id: str) -> float:
    """Memory charged to the lab's cgroup (its processes, tmpfs and page cache)."""
    stem = rt.names.lab(lab_id)
    if rt.cgroups.version == 2:
        path = os.path.join(rt.cgroups.root, stem, "memory.current")
    else:
        path = os.path.join(rt.cgroups.root, "memory", stem, "memory.usage_in_bytes")
    with open(path) as fh:
        return int(fh.read()) / (1 << 20)


def median(values: list[float]) -> float:
    """The middle value (mean of the two middle ones for an even count)."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def base_image() -> tuple[str, tuple[str, str, str]]:
    """The shipped ``base`` image's tree (built now if the cache lacks it) and the result
    row of the disk the cache takes."""
    from forge.config.settings import load_settings
    from forge.images import ImageCache, load_definitions
    from forge.images.build import build_image

    settings = load_settings()
    cache = ImageCache(settings.image_cache)
    built = build_image(load_definitions(settings.images_dir)["base"], cache)
    entries = cache.entries()
    total = sum(e.size_bytes for e in entries) / (1 << 20)
    how = f"built now in {built.seconds:.1f} s" if built.built else "already built"
    row = ("image cache disk (base)", f"{built.entry.size_bytes / (1 << 20):.1f} MiB",
           f"once however many labs use it ({how}); whole cache {total:.0f} MiB in "
           f"{len(entries)} image(s) at {cache.root}")
    return str(built.entry.rootfs), row


def image_comparison(rt: LocalRuntime, service: str, cycles: int,
                     alive: int) -> list[tuple[str, str, str]]:
    """The lab on the ``base`` image vs on the machine's userland: medians and ratios of
    create+destroy wall time (median) and machine CPU, and memory per lab with ``alive``
    labs up."""
    figures: dict[str, dict[str, float]] = {}
    for image in ("host", "base"):
        rt.create(lab(f"warm-{image}", service, image))  # page cache, first start
        rt.destroy(f"warm-{image}")
        walls: list[float] = []

        def cycle(i: int, image: str = image, walls: list[float] = walls) -> None:
            start = time.perf_counter()
            rt.create(lab(f"img-{image}-{i}", service, image))
            rt.destroy(f"img-{image}-{i}")
            walls.append(time.perf_counter() - start)

        cpu = machine_cpu_ms(cycle, cycles)
        before = mem_available_mb()
        ids = [f"mem-{image}-{i}" for i in range(alive)]
        for lab_id in ids:
            rt.create(lab(lab_id, service, image))
        time.sleep(1)
        charged = [cgroup_memory_mb(rt, x) for x in ids]
        used = (before - mem_available_mb()) / alive
        for lab_id in ids:
            rt.destroy(lab_id)
        figures[image] = {"wall": median(walls) * 1000, "cpu": -1.0 if cpu is None else cpu,
                          "mem": median(charged), "machine": used}

    def row(label: str, key: str, unit: str, fmt: str) -> tuple[str, str, str]:
        host, img = figures["host"][key], figures["base"][key]
        if host < 0 or img < 0:  # machine_cpu_ms: the machine's other work made it noise
            return (label, "not measured", "the machine was busy with other work")
        ratio = f"{img / host:.2f}x" if host > 0 else "n/a"
        return (label, f"{img:{fmt}} {unit}",
                f"machine userland {host:{fmt}} {unit}; ratio image/host {ratio}")

    return [
        row("image lab create+destroy (median)", "wall", "ms", ".0f"),
        row("image lab machine CPU per create+destroy", "cpu", "ms", ".0f"),
        row("image lab memory (cgroup, median)", "mem", "MiB", ".2f"),
        row("image lab memory (machine)", "machine", "MiB", ".1f"),
    ]


def timed(fn: object, *args: object) -> float:
    start = time.perf_counter()
    fn(*args)  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq", type=int, default=30, help="sequential create/destroy cycles")
    parser.add_argument("--burst", type=int, default=50, help="concurrent creates")
    parser.add_argument("--capacity", type=int, default=200, help="labs to keep alive at once")
    parser.add_argument("--service", default="sleep infinity",
                        help="service command of the server host")
    parser.add_argument("--image-cycles", type=int, default=15,
                        help="create+destroy cycles per userland in the image comparison")
    parser.add_argument("--image-alive", type=int, default=10,
                        help="labs alive at once per userland for the memory figure")
    parser.add_argument("--images-only", action="store_true",
                        help="only the image comparison")
    args = parser.parse_args()

    rootfs, disk = base_image()
    prefix = "b" + secrets.token_hex(2)
    state = tempfile.mkdtemp(prefix="forge-bench-")
    rt = LocalRuntime(state, prefix=prefix, workers=64, images={"base": rootfs})
    problems = rt.check()
    if problems:
        print("runtime unavailable:", "; ".join(problems), file=sys.stderr)
        return 2
    results: list[tuple[str, str, str]] = []
    try:
        results += image_comparison(rt, args.service, args.image_cycles, args.image_alive)
        results.append(disk)
        if args.images_only:
            return 0
        # Warm-up (page cache, first bwrap start).
        rt.create(lab("warm", args.service))
        rt.destroy("warm")

        creates, destroys = [], []
        for i in range(args.seq):
            creates.append(timed(rt.create, lab(f"seq-{i}", args.service)))
            destroys.append(timed(rt.destroy, f"seq-{i}"))
        results += [
            ("sequential create p50", f"{pct(creates, 50):.1f} ms", "target <= 150 ms"),
            ("sequential create p99", f"{pct(creates, 99):.1f} ms", ""),
            ("destroy p50", f"{pct(destroys, 50):.1f} ms", ""),
            ("destroy p99", f"{pct(destroys, 99):.1f} ms", ""),
        ]

        ids = [f"burst-{i}" for i in range(args.burst)]
        busy0 = machine_busy_s()
        start = time.perf_counter()

        def create_at(lab_id: str) -> float:
            rt.create(lab(lab_id, args.service))
            return time.perf_counter() - start

        with ThreadPoolExecutor(max_workers=args.burst) as pool:
            burst = list(pool.map(create_at, ids))
        wall = time.perf_counter() - start
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(rt.destroy, ids))
        time.sleep(0.5)  # the kernel's deferred namespace cleanup
        cpu_per_lab = (machine_busy_s() - busy0) / args.burst * 1000
        results += [
            (f"burst of {args.burst} creates p50", f"{pct(burst, 50):.0f} ms", ""),
            (f"burst of {args.burst} creates p99", f"{pct(burst, 99):.0f} ms", "target <= 2000 ms"),
            (f"burst of {args.burst} wall time", f"{wall * 1000:.0f} ms",
             f"{args.burst / wall:.1f} labs/s"),
            ("CPU per lab (create+destroy)", f"{cpu_per_lab:.0f} ms",
             f"machine (/proc/stat, no idle baseline), {os.cpu_count()} cores; "
             f"loadavg at start {os.getloadavg()[0]:.1f}"),
        ]

        before = mem_available_mb()
        alive: list[str] = []
        start = time.perf_counter()
        for i in range(args.capacity):
            if mem_available_mb() < 2048:
                break
            lab_id = f"cap-{i}"
            try:
                rt.create(lab(lab_id, args.service))
            except Exception as exc:  # report how far we got
                print(f"create {lab_id} failed: {exc}", file=sys.stderr)
                break
            alive.append(lab_id)
        fill = time.perf_counter() - start
        time.sleep(1)
        used = before - mem_available_mb()
        charged = sum(cgroup_memory_mb(rt, x) for x in alive)
        listed = [i for i in rt.list() if i.state == "running"]
        sample = alive[:: max(1, len(alive) // 10)]
        working = sum(rt.exec(x, "client", ["true"]).exit_code == 0 for x in sample)
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(rt.destroy, alive))
        teardown = time.perf_counter() - start
        results += [
            ("labs alive at once", f"{len(listed)} / {args.capacity}",
             f"{working}/{len(sample)} sampled labs answer exec; target >= 200"),
            ("memory per lab (cgroups)", f"{charged / max(1, len(alive)):.2f} MiB",
             "charged to the labs' cgroups (processes, tmpfs)"),
            ("memory per lab (machine)", f"{used / max(1, len(alive)):.1f} MiB",
             f"{used:.0f} MiB MemAvailable delta for {len(alive)} labs (includes kernel "
             "objects; noisy when other work runs)"),
            ("fill time", f"{fill:.1f} s", f"{len(alive) / fill:.1f} labs/s sequential"),
            ("teardown of all", f"{teardown:.1f} s", f"{len(alive) / teardown:.1f} labs/s"),
        ]
    finally:
        for info in rt.list():
            rt.destroy(info.lab_id)
        rt.close()
        shutil.rmtree(state, ignore_errors=True)
        width = max((len(r[0]) for r in results), default=0)
        for name, value, note in results:
            print(f"{name:<{width}}  {value:>14}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
