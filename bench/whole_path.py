"""Machine CPU per learner lab through the API (issue 19 item 6: ≤ 60 ms), needs root.

The platform runs as `forge up` runs it (its supervisor and topology: real NATS, SQLite,
one lab node with the local runtime, the shipped netplus lab a learner gets). One learner
at a time does what the lab page does: `POST /v1/spawn`, the access exchange (one-time
token → session cookie), a status poll every 50 ms with that cookie until the lab runs,
then `DELETE /v1/scenarios/{id}` and polls until it is gone. Two figures per lab, medians of RUNS:

* machine: CPU of the whole machine from /proc/stat (user, nice, system, irq, softirq:
  not idle, iowait or steal; ``runtime.machine_busy_s``) during the labs, minus the same
  machine's CPU over an idle window of equal length just before (the platform idle),
  minus this bench process's own CPU (the client);
* platform: utime+stime (with reaped children) of every process of the platform: services,
  nats-server and the children they reaped (e.g. each sandbox's bwrap, `ip`), from
  /proc/<pid>/stat.
  Immune to other work on the machine, but blind to kernel work done outside those
  processes (a network namespace is destroyed later by a kernel worker) and to the lab's
  own processes (killed with the lab and reaped inside its sandbox, almost never by a
  platform process: the netplus lab's web server, a Perl process, takes ~2.5 ms of CPU to
  start listening here; the test fixture's `python3 -m http.server` ~41).

Per service (spawn, orchestrator, scoreboard, nats) the platform share is printed too, so
the cost can be attributed. Records `whole_path_cpu_ms` (the machine figure, as the issue
measures it; the platform figure and the split are in the detail).

Beside them, the platform's cgroup (``_cgroup_cpu``): the CPU of every platform process
and of what they start, counted by the kernel, whatever else the machine runs; not the
client, and not kernel threads (the namespace teardown). The target is the machine figure.

    .venv/bin/python bench/whole_path.py      # BENCH_WHOLE_LABS=10 BENCH_WHOLE_RUNS=3
    # FORGE_RUNTIME_PREFIX=x: the labs' prefix (default random); BENCH_PORT_BASE: ports
"""

from __future__ import annotations

import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from _cgroup_cpu import CpuCgroup
from _report import record

from forge.bus.ports import free_port
from forge.cli.up import teardown_labs
from forge.config.settings import load_settings
from forge.services.common.bus import bus_auth
from forge.stack.supervisor import Supervisor
from forge.stack.topology import plan
from runtime import TICKS, machine_busy_s, own_cpu_s

ROOT = Path(__file__).resolve().parents[1]
LABS = int(os.environ.get("BENCH_WHOLE_LABS", "10"))
RUNS = int(os.environ.get("BENCH_WHOLE_RUNS", "3"))
POLL_S = 0.05
BUSY_MACHINE_PCT = 25.0  # above this share of the machine busy before the labs, see below


def proc_cpu_s(pid: int) -> tuple[float, list[int]]:
    """(utime+stime+cutime+cstime of `pid`, its children's pids)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        kids: list[int] = []
        for task in Path(f"/proc/{pid}/task").glob("*"):
            kids += [int(k) for k in (task / "children").read_text().split()]
    except OSError:
        return 0.0, []
    return sum(int(f) for f in fields[11:15]) / TICKS, kids


def platform_cpu_s(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds per platform process tree (each root with all its descendants)."""
    out: dict[str, float] = {}
    for name, pid in roots.items():
        total, todo = 0.0, [pid]
        while todo:
            cpu, kids = proc_cpu_s(todo.pop())
            total += cpu
            todo += kids
        out[name] = total
    return out


def learner(storage: Path, tag: str) -> dict[str, str]:
    """A learner with an API key and the ENTERPRISE plan."""
    from forge.entitlements.grants import grant
    from forge.identity.apikeys import create_api_key
    from forge.store.db import Database

    db = Database(f"sqlite:///{storage}/forge.db")
    try:
        grant(db, "tenant-w", "ENTERPRISE", f"learner-{tag}")
        return {"x-api-key": create_api_key(db, "tenant-w", f"learner-{tag}").plaintext}
    finally:
        db.dispose()


def one_lab(url: str, key: dict[str, str]) -> None:
    """Spawn → access exchange → poll every 50 ms until running → delete → gone."""
    with httpx.Client(base_url=url, timeout=60) as api, \
            httpx.Client(base_url=url, timeout=60) as browser:
        resp = api.post("/v1/spawn", headers=key, json={"track": "netplus", "lab": "netplus"})
        resp.raise_for_status()
        body = resp.json()
        sid = body["scenario_id"]
        exchange = browser.get(body["access_url"].removeprefix(url), follow_redirects=False)
        if exchange.status_code != 303:
            raise SystemExit(f"access exchange answered {exchange.status_code}")
        deadline = time.monotonic() + 120
        state = "pending"
        while state != "running":
            state = browser.get(f"/v1/scenarios/{sid}").json()["state"]
            if state in ("failed", "expired", "deleted") or time.monotonic() > deadline:
                raise SystemExit(f"lab {sid} did not run: {state}")
            time.sleep(POLL_S)
        api.delete(f"/v1/scenarios/{sid}", headers=key).raise_for_status()
        while api.get(f"/v1/scenarios/{sid}", headers=key).json()["state"] != "deleted":
            if time.monotonic() > deadline:
                raise SystemExit(f"lab {sid} was not deleted")
            time.sleep(POLL_S)


def measure(run: Callable[[], object], roots: dict[str, int],
            meter: CpuCgroup) -> tuple[float, float, dict[str, float], float]:
    """(seconds, machine CPU s minus the client's, platform CPU s per tree, CPU s in the
    platform's cgroup) of `run()`."""
    machine, own, plat = machine_busy_s(), own_cpu_s(), platform_cpu_s(roots)
    grouped = meter.usage_s()
    started = time.monotonic()
    run()
    elapsed = time.monotonic() - started
    after = platform_cpu_s(roots)
    return (elapsed, machine_busy_s() - machine - (own_cpu_s() - own),
            {k: after[k] - plat.get(k, 0.0) for k in after}, meter.usage_s() - grouped)


def main() -> int:
    if os.geteuid() != 0:
        raise SystemExit("bench/whole_path.py needs root (the local runtime builds labs)")
    with tempfile.TemporaryDirectory(prefix="forge-whole-") as tmp:
        storage = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FORGE_", "NATS_"))}
        # The shipped templates: the netplus lab a learner gets (no FORGE_TEMPLATE_DIR).
        env.update(FORGE_ENV="dev", STORAGE_ROOT=tmp, FORGE_RUNTIME_PREFIX=os.environ.get(
            "FORGE_RUNTIME_PREFIX") or "w" + secrets.token_hex(2))
        settings = load_settings(env)
        # BENCH_PORT_BASE=N: the services on N, N+1, N+2 and NATS's clients on N+3 (a
        # machine shared by several people's runs); unset, free ports.
        base = int(os.environ.get("BENCH_PORT_BASE") or 0)
        ports = ({"spawn": base, "orchestrator": base + 1, "scoreboard": base + 2} if base
                 else {"spawn": free_port(), "orchestrator": free_port(),
                       "scoreboard": free_port()})
        topology = plan(storage, ports, base_prefix=settings.runtime_prefix)
        sup = Supervisor(env, storage, ports=ports, bus_auth=bus_auth(settings),
                         topology=topology, report=lambda m: print(f"  [{m}]"),
                         nats_port=base + 3 if base else 0)
        machine_ms, platform_ms, shares, baselines = [], [], [], []
        grouped_ms, idle_grouped = [], []
        # The platform starts inside the cgroup (every service, nats-server and what they
        # start later is counted); this process, the client, leaves it before any lab.
        meter = CpuCgroup(f"{settings.runtime_prefix}-bench-cpu")
        meter.enter()
        try:
            sup.start()
            ready = sup.wait_ready(120)
            meter.leave()
            if not ready:
                raise SystemExit(f"platform not ready; logs in {tmp}/logs")
            url = sup.url("spawn")
            roots = {c.name: c.proc.pid for c in sup.children.values() if c.proc is not None}
            for member in sup.nats_members:
                if member.server.pid is not None:
                    roots[member.name] = member.server.pid
            one_lab(url, learner(storage, "warm"))  # first lab: images, caches, connections
            for run in range(RUNS):
                keys = [learner(storage, f"{run}-{i}") for i in range(LABS)]
                time.sleep(1.0)
                idle_s, idle_cpu, _, idle_group = measure(lambda: time.sleep(3.0), roots, meter)
                elapsed, busy, per, group = measure(
                    lambda keys=keys: [one_lab(url, k) for k in keys], roots, meter)
                grouped_ms.append(group / LABS * 1000)
                idle_grouped.append(idle_group / idle_s * 1000)
                baseline = idle_cpu / idle_s * elapsed
                baselines.append(idle_cpu / idle_s / (os.cpu_count() or 1) * 100)
                machine_ms.append((busy - baseline) / LABS * 1000)
                platform_ms.append(sum(per.values()) / LABS * 1000)
                shares.append({k: v / LABS * 1000 for k, v in per.items()})
                split = ", ".join(f"{k} {v:.1f}" for k, v in shares[-1].items())
                print(f"run {run + 1}: {LABS} labs in {elapsed:.1f}s: machine "
                      f"{machine_ms[-1]:.1f} ms/lab (idle baseline {baseline / elapsed * 100:.0f}"
                      f"% of the machine), platform {platform_ms[-1]:.1f} ms/lab ({split}), "
                      f"platform cgroup {grouped_ms[-1]:.1f} ms/lab")
        finally:
            meter.leave()
            sup.stop()
            teardown_labs(settings, topology, env)
            meter.close()
    machine, platform = statistics.median(machine_ms), statistics.median(platform_ms)
    grouped, idle = statistics.median(grouped_ms), statistics.median(idle_grouped)
    split = {k: statistics.median(s[k] for s in shares) for k in shares[0]}
    text = ", ".join(f"{k} {v:.1f}" for k, v in split.items())
    counted = (f"platform cgroup {grouped:.1f} ms/lab (idle {idle:.1f} ms/s included; "
               f"{meter.includes()})")
    print(f"whole path per learner lab: machine {machine:.1f} ms CPU (every process and "
          f"kernel thread, less idle and the client), platform processes {platform:.1f} ms "
          f"({text}), {counted}; medians of {RUNS} runs of {LABS} labs")
    busy = statistics.median(baselines)
    if busy > BUSY_MACHINE_PCT:
        # Other work kept the machine busy: a difference against the idle window measures
        # that work's noise, not the labs. The target is the machine's figure: not measured
        # now (the table says so); the cgroup and process figures go beside it.
        print(f"the machine was {busy:.0f} % busy before the labs: the machine figure is "
              "noise; not recorded as the figure, the cgroup one is its CPU ms/op")
        record("whole_path_cpu_ms", None, cpu_ms_per_op=round(grouped, 1),
               detail=f"machine figure not measured: the machine was {busy:.0f} % busy with "
                      f"other work (/proc/stat minus baseline read {machine:.1f} ms); CPU "
                      f"ms/op: {counted}; platform processes {platform:.1f} ms/lab: {text}")
        return 0
    # The rest is outside the platform's processes: the lab's own (its sandboxes' shells
    # and idlers, and the netplus web server, a Perl process: ~2.5 ms of CPU to start
    # listening, measured alone) and kernel work such as freeing the lab's namespaces.
    record("whole_path_cpu_ms", round(machine, 1), cpu_ms_per_op=round(grouped, 1),
           detail=f"machine CPU minus idle baseline and client; CPU ms/op: {counted}; "
                  f"platform processes {platform:.1f} ms/lab: {text} (ms/lab); the machine's "
                  f"other {machine - platform:.1f} ms/lab: mostly the lab's own processes "
                  f"(netplus starts a Perl web server) and kernel work, plus any other "
                  f"work's noise")
    return 0


if __name__ == "__main__":
    sys.exit(main())
