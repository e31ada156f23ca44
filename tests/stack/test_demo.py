"""`forge demo`: the full learner journey on a platform it starts itself; exit 0 only if verified."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from forge.runtime.local import LocalRuntime

from ..live_server import distinct_ports, free_port
from ..support.prefixes import runtime_prefix

pytestmark = pytest.mark.usefixtures("sqlite_only_store")  # services on their default SQLite store

REPO = Path(__file__).resolve().parents[2]


def demo_env(prefix: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FORGE_", "NATS_"))}
    env["FORGE_RUNTIME_PREFIX"] = prefix
    env["COLUMNS"] = "220"  # keep rich's summary table on one line per row
    return env


def run_demo(storage: Path, env: dict[str, str],
             timeout: str = "120") -> subprocess.CompletedProcess[str]:
    ports = distinct_ports(3)
    return subprocess.run(
        [sys.executable, "-m", "forge", "demo", "--storage", str(storage),
         "--spawn-port", str(ports[0]), "--orchestrator-port", str(ports[1]),
         "--scoreboard-port", str(ports[2]), "--timeout", timeout],
        env=env, capture_output=True, text=True, timeout=600, cwd=REPO)


@pytest.mark.root
def test_demo_runs_the_whole_journey_and_verifies(tmp_path: Path) -> None:
    prefix = runtime_prefix("d")
    storage = tmp_path / "storage"
    proc = run_demo(storage, demo_env(prefix))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    for stage in ("buy a plan", "spawn a lab", "solve in the terminal", "wait for the verdict",
                  "verify offline"):
        assert stage in out
    assert "score 1.00" in out and "verified (PASS)" in out
    # The platform the demo started signed it: its own public keys proved the origin, and
    # the command printed for the reader passes them too.
    assert "signed by this platform's key" in out
    results = list((storage / "scenarios").glob("scn-*/results"))
    assert f"--trusted-key {storage / 'demo-trusted-keys' / results[0].parent.name}" in out
    assert len(results) == 1
    # The command printed says where to run it, and runs there as printed (every path in
    # it absolute): PASS.
    assert f"Run it yourself, in {REPO}:" in out
    (command,) = [line for line in out.splitlines()
                  if line.startswith("python scripts/verify_verdict.py ")]
    ran = subprocess.run([sys.executable, *shlex.split(command)[1:]], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0 and ran.stdout.startswith("PASS"), ran.stdout + ran.stderr
    assert {p.name for p in results[0].iterdir()} == {
        "score.json", "evidence.tar.zst", "verdict.sig", "verdict.pub"}
    assert LocalRuntime(str(storage / "runtime"), prefix).list() == []


@pytest.mark.root
def test_demo_fails_when_the_verdict_cannot_be_had(tmp_path: Path) -> None:
    env = demo_env(runtime_prefix("e"))
    env["FORGE_TEMPLATE_DIR"] = str(tmp_path / "no-templates")
    # Nothing can start without templates: the wait for the platform ends with its timeout.
    proc = run_demo(tmp_path / "storage", env, timeout="4")
    assert proc.returncode == 1
    assert "demo failed" in proc.stdout


def test_demo_against_a_named_platform_that_is_not_ready_starts_nothing(
        tmp_path: Path) -> None:
    """The runbook's check after a rotation names the platform (`--url`): one that does not
    answer ready is a failure to report (exit 1), not a reason to start another platform
    with the operator's environment on its ports."""
    storage = tmp_path / "storage"
    port = free_port()  # nothing listens there
    proc = subprocess.run(
        [sys.executable, "-m", "forge", "demo", "--storage", str(storage), "--url",
         f"http://127.0.0.1:{port}", "--scoreboard-url", f"http://127.0.0.1:{free_port()}",
         "--spawn-port", str(port)],
        env=demo_env(runtime_prefix("n")), capture_output=True, text=True,
        timeout=120, cwd=REPO)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "is not ready" in proc.stdout
    assert not (storage / "logs").exists()  # no service was started


def test_a_demo_whose_platform_is_refused_leaves_no_storage_root(tmp_path: Path) -> None:
    """Its orchestrator's port taken, the demo's own platform is refused: the storage root
    it had made (dev secrets, a signing key, logs, a lock) stayed behind. Removed, said."""
    import socket

    storage = tmp_path / "storage"
    ports = distinct_ports(3)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ports[1]))
        squatter.listen()
        proc = subprocess.run(
            [sys.executable, "-m", "forge", "demo", "--storage", str(storage),
             "--spawn-port", str(ports[0]), "--orchestrator-port", str(ports[1]),
             "--scoreboard-port", str(ports[2])],
            env=demo_env(runtime_prefix("r")), capture_output=True, text=True, timeout=300,
            cwd=REPO)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "platform not started: orchestrator: cannot listen" in proc.stdout
    # ... and says what to do next (the rich table wraps lines: compare without breaks).
    said = " ".join(proc.stdout.split())
    assert "give the demo other ports: --spawn-port, --orchestrator-port, --scoreboard-port" \
        " (with make: make demo DEMO_ARGS=" in said, proc.stdout
    assert f"forge demo: not started; removed the storage root it had created: {storage}" \
        in proc.stdout + proc.stderr
    assert not storage.exists()


@pytest.mark.root
def test_demo_as_the_runbooks_end_to_end_check_on_a_running_prod_platform(
    tmp_path: Path,
) -> None:
    """Runbook rotation step 5: `forge demo` against a running FORGE_ENV=prod platform, where
    checkout is disabled and the operator's environment mints the learner's receipt."""
    import signal
    import time

    import httpx

    from ..services.conftest import NATS_PASSWORDS, SECRETS

    prefix = runtime_prefix("r")
    storage = tmp_path / "storage"
    env = {**demo_env(prefix), "FORGE_ENV": "prod", **SECRETS, **NATS_PASSWORDS}
    assert subprocess.run([sys.executable, "-m", "forge", "keys", "generate", "--storage",
                           str(storage)], env=env, capture_output=True, timeout=60).returncode == 0
    keys = tmp_path / "platform-keys"  # what the platform's operator hands out
    assert subprocess.run([sys.executable, "-m", "forge", "keys", "export-public", "--storage",
                           str(storage), "--out", str(keys)], env=env, capture_output=True,
                          timeout=60).returncode == 0
    ports = distinct_ports(3)
    up = subprocess.Popen(
        [sys.executable, "-m", "forge", "up", "--storage", str(storage), "--spawn-port",
         str(ports[0]), "--orchestrator-port", str(ports[1]), "--scoreboard-port",
         str(ports[2]), "--teardown-labs"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if all(httpx.get(f"http://127.0.0.1:{p}/readyz", timeout=2).status_code == 200
                       for p in ports):
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        # Run from another host's point of view: its own storage root, where the platform's
        # results are not; the four files come from the scoreboard, as a learner's do.
        elsewhere = tmp_path / "operator-host"
        demo = subprocess.run(
            [sys.executable, "-m", "forge", "demo", "--storage", str(elsewhere), "--url",
             f"http://127.0.0.1:{ports[0]}", "--scoreboard-url", f"http://127.0.0.1:{ports[2]}",
             "--trusted-key", str(keys)],
            env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    finally:
        up.send_signal(signal.SIGINT)
        up.communicate(timeout=60)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-2000:]
    assert "the platform already running" in demo.stdout
    assert "minted by the operator" in demo.stdout
    assert "verified (PASS)" in demo.stdout
    assert "signed by this platform's key" in demo.stdout  # the keys it was given
    (fetched,) = (elsewhere / "demo-verdicts").iterdir()
    assert {p.name for p in fetched.iterdir()} == {
        "score.json", "evidence.tar.zst", "verdict.sig", "verdict.pub"}


@pytest.mark.root
def test_demo_uses_the_platform_running_on_the_ports_it_is_given(tmp_path: Path) -> None:
    """`forge up --spawn-port P …` then `forge demo --spawn-port P …` on the same storage:
    the demo looked for a platform on 8082/8086 only, so it tried to start another on P
    and was refused ("another forge up … holds STORAGE") beside a ready platform. It now
    looks on the ports it is given and runs its journey there."""
    import signal
    import time

    import httpx

    env = demo_env(runtime_prefix("u"))
    storage = tmp_path / "storage"
    ports = distinct_ports(3)
    port_args = ["--spawn-port", str(ports[0]), "--orchestrator-port", str(ports[1]),
                 "--scoreboard-port", str(ports[2])]
    up = subprocess.Popen(
        [sys.executable, "-m", "forge", "up", "--storage", str(storage), *port_args,
         "--teardown-labs"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if all(httpx.get(f"http://127.0.0.1:{p}/readyz", timeout=2).status_code == 200
                       for p in ports):
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        demo = subprocess.run(
            [sys.executable, "-m", "forge", "demo", "--storage", str(storage), *port_args],
            env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    finally:
        up.send_signal(signal.SIGINT)
        up.communicate(timeout=60)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-2000:]
    assert "the platform already running" in demo.stdout
    assert "verified (PASS)" in demo.stdout


@pytest.mark.root
def test_a_demo_refused_beside_a_running_platform_destroys_none_of_its_labs(
        tmp_path: Path) -> None:
    """`forge demo` on a storage root another `forge up` holds is refused ("another forge
    up … holds STORAGE"); it then destroyed every lab under that root anyway, failing the
    running platform's learners' scenarios as "destroyed when the platform was stopped
    (forge up --teardown-labs)". A refused demo started nothing, so it destroys nothing."""
    from forge.stack.lock import StorageLock
    from tests.runtime.helpers import simple_lab

    prefix = runtime_prefix("k")
    storage = tmp_path / "storage"
    runtime = LocalRuntime(str(storage / "runtime"), prefix=prefix)
    try:
        runtime.create(simple_lab("learners-lab"))
        up = StorageLock.acquire(storage)  # the running platform's hold, as `forge up`'s
        try:
            proc = run_demo(storage, demo_env(prefix), timeout="10")
        finally:
            up.release()
        assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
        assert "another forge up" in proc.stdout
        assert [info.lab_id for info in runtime.list()] == ["learners-lab"]
    finally:
        for info in runtime.list():
            runtime.destroy(info.lab_id)
        runtime.close()


@pytest.mark.root
def test_a_demo_after_forge_up_stopped_leaves_the_labs_it_kept(tmp_path: Path) -> None:
    """`forge up` stopped keeps its learners' labs for its next start (README); a `forge
    demo` on that storage root then started its own platform and, stopping it, destroyed
    every lab under the root: the learner's kept lab too. It destroys only its own now."""
    import signal
    import time

    import httpx

    prefix = runtime_prefix("p")
    storage = tmp_path / "storage"
    env = demo_env(prefix)
    runtime = LocalRuntime(str(storage / "runtime"), prefix=prefix)

    def forge(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "forge", "--storage", str(storage),
                               *args], env=env, capture_output=True, text=True, timeout=120,
                              cwd=REPO)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    ports = distinct_ports(3)
    up = subprocess.Popen(
        [sys.executable, "-m", "forge", "up", "--storage", str(storage), "--spawn-port",
         str(ports[0]), "--orchestrator-port", str(ports[1]), "--scoreboard-port",
         str(ports[2])],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                try:
                    if all(httpx.get(f"http://127.0.0.1:{p}/readyz", timeout=2).status_code
                           == 200 for p in ports):
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.3)
            (key,) = [line.split()[1] for line in forge(
                "apikey", "create", "--tenant", "acme", "--subject", "ann").splitlines()
                if line.startswith("api_key")]
            forge("entitlements", "grant", "--tenant", "acme", "--plan", "PRO")
            base, auth = f"http://127.0.0.1:{ports[0]}", {"x-api-key": key}
            spawned = httpx.post(f"{base}/v1/spawn", json={"track": "netplus"}, headers=auth,
                                 timeout=30)
            assert spawned.status_code == 201, spawned.text
            lab = spawned.json()["scenario_id"]
            state = ""
            deadline = time.monotonic() + 120
            while state != "running" and time.monotonic() < deadline:
                time.sleep(0.5)
                state = httpx.get(f"{base}/v1/scenarios/{lab}", headers=auth,
                                  timeout=10).json()["state"]
            assert state == "running"
        finally:
            up.send_signal(signal.SIGINT)  # labs kept (no --teardown-labs)
            up.communicate(timeout=60)
        assert lab in [info.lab_id for info in runtime.list()]

        proc = run_demo(storage, env)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
        assert "a platform started for the demo" in proc.stdout
        assert [info.lab_id for info in runtime.list()] == [lab]  # the demo's own is gone
    finally:
        for info in runtime.list():
            runtime.destroy(info.lab_id)
        runtime.close()


def test_make_demo_passes_the_readmes_demo_args_to_forge_demo() -> None:
    """README: `make demo DEMO_ARGS="--spawn-port …"` runs the demo on other ports. The
    Makefile ran a bare `forge demo`, so a machine whose 8082/8083/8086 were taken could
    not run `make demo` at all."""
    readme = (REPO / "README.md").read_text()
    found = re.search(r'`make demo DEMO_ARGS="([^"]+)"`', readme)
    assert found, "README gives no `make demo DEMO_ARGS=\"…\"` example"
    # As a user runs it: not as a sub-make of `make test` (whose MAKEFLAGS/MAKELEVEL made
    # this make print "Entering/Leaving directory" lines around the commands).
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    dry = subprocess.run(["make", "-n", "--no-print-directory", "demo",
                          f"DEMO_ARGS={found.group(1)}"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[-1].endswith(f"forge demo {found.group(1)}"), dry.stdout
