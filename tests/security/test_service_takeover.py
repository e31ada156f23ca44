"""A learner takes over a template service, or steers one, to pass a check after the seal.

A host's services run as the lab user, in the same pid namespace as the learner's
terminal: the learner can see them and signal them (incident-response is graded on
killing one). Before the service mark, the learner could also write into a service's
memory through /proc/PID/mem (ptrace itself is refused by seccomp, this kernel has no
Yama): a service answers what the learner wrote, and a service outlives the seal, so a
live check graded the learner's forgery. Now every service keeps a capability no learner
process has (``SERVICE_MARK_CAP``), and the kernel refuses the learner its memory,
descriptors and environment.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.runtime import HostSpec, LabSpec, Limits, SubnetSpec
from forge.runtime.base import SpecError
from forge.runtime.local import LocalRuntime, landlock
from forge.runtime.plan import plan_lab
from forge.templates.dsl_limits import SERVICE_MARK_CAP
from tests.support.one_lab import one_lab

pytestmark = pytest.mark.root

# The service: answers its state on 127.0.0.1:7070; only fixing it (not possible here)
# would make it answer "hardened".
SERVICE = r"""import socket
state = bytearray(b"STATE=vulnerable")
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 7070))
srv.listen(8)
while True:
    conn, _ = srv.accept()
    conn.sendall(bytes(state) + b"\n")
    conn.close()
"""

# The learner's attack: find the service, then rewrite its state through /proc/PID/mem.
ATTACK = r"""import os, sys
pid = next(p for p in os.listdir("/proc") if p.isdigit() and
           b"/srv/service.py" in open(f"/proc/{p}/cmdline", "rb").read()
           and p != str(os.getpid()))
print("FOUND", pid)
os.kill(int(pid), 0)  # it may be signalled (incident-response kills a service)
for part in ("environ", "mem"):
    try:
        open(f"/proc/{pid}/{part}", "rb").close()
        print("OPENED", part)
    except PermissionError:
        print("REFUSED", part)
try:
    mem = open(f"/proc/{pid}/mem", "r+b", buffering=0)
except PermissionError:
    sys.exit(3)
for line in open(f"/proc/{pid}/maps"):
    addr, perms = line.split()[:2]
    if not perms.startswith("rw"):
        continue
    start, end = (int(x, 16) for x in addr.split("-"))
    try:
        mem.seek(start)
        data = mem.read(end - start)
    except OSError:
        continue
    at = data.find(b"STATE=vulnerable")
    while at >= 0:
        mem.seek(start + at)
        mem.write(b"STATE=hardened!!")
        print("WROTE")
        at = data.find(b"STATE=vulnerable", at + 1)
"""

PROBE = ["/usr/bin/python3", "-I", "-c",
         "import socket; s = socket.create_connection(('127.0.0.1', 7070), 5); "
         "print(s.recv(64).decode().strip())"]


def _spec() -> LabSpec:
    host = HostSpec("web", networks=[("dmz", "10.94.1.10")],
                    command="exec python3 -I /srv/service.py",
                    files={"/srv/service.py": SERVICE})
    return LabSpec("svc-" + secrets.token_hex(4), [SubnetSpec("dmz", "10.94.1.0/24")],
                   [host], Limits(memory_mb=256))


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[LocalRuntime, str]]:
    spec = _spec()
    with one_lab(tmp_path / "state", spec) as runtime:
        yield runtime, spec.lab_id


def _answer(rt: LocalRuntime, lab_id: str) -> str:
    for _ in range(50):  # the service may still be binding its port (bounded)
        res = rt.run_check(lab_id, "web", PROBE, timeout=10)
        if res.exit_code == 0:
            return res.stdout_text.strip()
        rt.exec(lab_id, "web", ["sleep", "0.1"])
    raise AssertionError(f"service never answered: {res.stderr_text}")


def test_learner_cannot_rewrite_a_service_that_outlives_the_seal(
    lab: tuple[LocalRuntime, str],
) -> None:
    rt, lab_id = lab
    assert _answer(rt, lab_id) == "STATE=vulnerable"
    rt.exec(lab_id, "web", ["sh", "-c", "cat > /workspace/attack.py"],
            stdin=ATTACK.encode())
    res = rt.exec(lab_id, "web", ["python3", "-I", "/workspace/attack.py"], timeout=20)
    out = res.stdout_text
    assert "FOUND" in out, res.stderr_text
    # Seen and signalled, as incident-response needs; its memory and environment refused.
    assert "REFUSED environ" in out and "REFUSED mem" in out, out
    assert res.exit_code == 3 and "WROTE" not in out, out
    rt.seal(lab_id)  # the learner's processes end; the service runs on for live checks
    assert _answer(rt, lab_id) == "STATE=vulnerable"


def test_without_landlock_the_mark_alone_keeps_the_learner_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """A kernel without Landlock ABI 6 (Debian 12's stock 6.1): the runtime says so once,
    and the service mark alone refuses the learner the service's memory."""
    monkeypatch.setattr(landlock, "domain_problem",
                        lambda: "this kernel has no Landlock ABI 6 (Linux 6.12)")
    caplog.set_level(logging.WARNING, logger="forge.runtime.local.runtime")
    spec = _spec()
    with one_lab(tmp_path / "state", spec) as rt:
        assert _answer(rt, spec.lab_id) == "STATE=vulnerable"
        rt.exec(spec.lab_id, "web", ["sh", "-c", "cat > /workspace/attack.py"],
                stdin=ATTACK.encode())
        res = rt.exec(spec.lab_id, "web", ["python3", "-I", "/workspace/attack.py"])
        assert "REFUSED mem" in res.stdout_text and res.exit_code == 3, res.stdout_text
    warned = [r.getMessage() for r in caplog.records if "Landlock ABI 6" in r.getMessage()]
    assert len(warned) == 1, warned


# A runtime barred from Landlock by a syscall filter: systemd's SystemCallFilter= refuses
# every landlock_* call (argv[2]: "all"), a narrower one only landlock_restrict_self while
# the ABI query still answers. It says why, once, and its learners' execs and terminals
# still run, in no domain, as on an older kernel (the service mark holds).
BARRED = r"""
import errno, logging, sys
import pyseccomp as sc
barred = sc.SyscallFilter(sc.ALLOW)
calls = ["landlock_restrict_self"]
if sys.argv[2] == "all":
    calls += ["landlock_create_ruleset", "landlock_add_rule"]
for call in calls:
    barred.add_rule(sc.ERRNO(errno.EPERM), call)
barred.load()
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
from forge.runtime.local import LocalRuntime
from tests.security.test_service_takeover import ATTACK, _spec
from tests.support.one_lab import one_lab
from pathlib import Path
spec = _spec()
with one_lab(Path(sys.argv[1]), spec) as rt:
    assert rt.check() == [] and rt.check() == []
    print(rt.exec(spec.lab_id, "web", ["echo", "exec-ran"]).stdout_text.strip())
    rt.exec(spec.lab_id, "web", ["sh", "-c", "cat > /workspace/attack.py"],
            stdin=ATTACK.encode())
    res = rt.exec(spec.lab_id, "web", ["python3", "-I", "/workspace/attack.py"])
    print(res.exit_code, res.stdout_text.replace(chr(10), " "))
"""


@pytest.mark.parametrize(("barred", "said"), [
    ("all", "a syscall filter refuses Landlock (landlock_create_ruleset: Operation not "
            "permitted)"),
    ("restrict", "is here but refused a domain: [Errno 1] landlock_restrict_self"),
])
def test_a_runtime_barred_from_landlock_says_why_and_its_learners_still_work(
    tmp_path: Path, barred: str, said: str,
) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run([sys.executable, "-c", BARRED, str(tmp_path / "state"), barred],
                          capture_output=True, text=True, timeout=120, env=env,
                          cwd=Path(__file__).resolve().parents[2], check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "exec-ran"
    assert lines[1].startswith("3 ") and "REFUSED mem" in lines[1], lines  # the mark holds
    warned = [line for line in done.stderr.splitlines() if "no domain of their own" in line]
    assert len(warned) == 1 and said in warned[0], done.stderr


def test_services_keep_the_mark_and_learners_never_have_it(
    lab: tuple[LocalRuntime, str],
) -> None:
    rt, lab_id = lab
    _answer(rt, lab_id)
    script = ("grep CapEff /proc/$(pgrep -fx 'python3 -I /srv/service.py')/status && "
              "grep CapEff /proc/self/status")
    lines = rt.exec(lab_id, "web", ["sh", "-c", script]).stdout_text.split("\n")
    service, learner = (int(line.split()[1], 16) for line in lines if line)
    mark = 1 << 35  # CAP_WAKE_ALARM
    assert SERVICE_MARK_CAP == "WAKE_ALARM"
    assert service == mark and learner == 0


def test_no_template_host_may_be_approved_the_mark() -> None:
    spec = _spec()
    spec.hosts[0].capabilities.append("cap_wake_alarm")
    with pytest.raises(SpecError) as err:
        plan_lab(spec)
    assert err.value.field == "hosts[0].capabilities[0]"
    assert "reserved" in str(err.value)


# A process that outlives the seal (played by a service: one a template lets the learner
# steer, e.g. a watchdog restarting a script under /home) rewrites the answer all along.
REWRITER = ("i=0; while :; do i=$((i+1)); echo $i > /workspace/answer.tmp; "
            "mv /workspace/answer.tmp /workspace/answer.txt; sleep 0.02; done")


def test_checks_after_the_seal_read_one_snapshot(tmp_path: Path) -> None:
    host = HostSpec("web", networks=[("dmz", "10.94.1.10")], command=REWRITER)
    spec = LabSpec("svc-" + secrets.token_hex(4), [SubnetSpec("dmz", "10.94.1.0/24")],
                   [host], Limits(memory_mb=256))
    read = ["/bin/cat", "/workspace/answer.txt"]
    with one_lab(tmp_path / "state", spec) as rt:
        before = rt.run_check(spec.lab_id, "web", read).stdout_text
        rt.exec(spec.lab_id, "web", ["sleep", "0.2"])
        assert before != rt.run_check(spec.lab_id, "web", read).stdout_text  # it runs
        rt.seal(spec.lab_id)
        first = rt.run_check(spec.lab_id, "web", read).stdout_text
        for _ in range(3):
            rt.run_check(spec.lab_id, "web", ["/bin/sleep", "0.1"])
            assert rt.run_check(spec.lab_id, "web", read).stdout_text == first
        # Graded again (a regrade after a crash): a new seal, a new snapshot.
        rt.seal(spec.lab_id)
        assert rt.run_check(spec.lab_id, "web", read).stdout_text != first


def test_a_service_that_dropped_the_mark_is_still_out_of_reach(tmp_path: Path) -> None:
    """A service loses the mark when it exec's a program with file capabilities (iputils
    ping) or drops its capabilities itself: the learner's own Landlock domain still keeps
    its memory out of reach (where the kernel has Landlock ABI 6)."""
    if not landlock.domain_supported():
        pytest.skip("this kernel has no Landlock ABI 6 (Linux 6.12): the learner is kept "
                    "out of a service only while it keeps the mark")
    host = HostSpec("web", networks=[("dmz", "10.94.1.10")],
                    command="exec setpriv --inh-caps=-all --ambient-caps=-all "
                            "python3 -I /srv/service.py",
                    files={"/srv/service.py": SERVICE})
    spec = LabSpec("svc-" + secrets.token_hex(4), [SubnetSpec("dmz", "10.94.1.0/24")],
                   [host], Limits(memory_mb=256))
    with one_lab(tmp_path / "state", spec) as rt:
        assert _answer(rt, spec.lab_id) == "STATE=vulnerable"
        caps = rt.exec(spec.lab_id, "web", ["sh", "-c", "grep CapPrm /proc/$(pgrep -fx "
                                            "'python3 -I /srv/service.py')/status"])
        assert caps.stdout_text.split() == ["CapPrm:", "0000000000000000"]  # no mark
        rt.exec(spec.lab_id, "web", ["sh", "-c", "cat > /workspace/attack.py"],
                stdin=ATTACK.encode())
        res = rt.exec(spec.lab_id, "web", ["python3", "-I", "/workspace/attack.py"])
        assert "REFUSED mem" in res.stdout_text and res.exit_code == 3, res.stdout_text
        # The learner's processes hold none of the descriptors the runtime entered with.
        fds = rt.exec(spec.lab_id, "web", ["ls", "-l", "/proc/self/fd"]).stdout_text
        assert not re.search(r"(mnt|uts|ipc|net|pid):\[|-> /$", fds, re.M), fds
        rt.seal(spec.lab_id)
        assert _answer(rt, spec.lab_id) == "STATE=vulnerable"


CORE = r"""import os, resource, signal, subprocess
pid = int(subprocess.run(["pgrep", "-fx", "python3 -I /srv/service.py"],
                         capture_output=True, text=True).stdout.split()[0])
try:
    resource.prlimit(pid, resource.RLIMIT_CORE, (resource.RLIM_INFINITY,) * 2)
    print("RAISED")
except (ValueError, PermissionError):
    print("REFUSED")
print("LIMIT", *resource.prlimit(pid, resource.RLIMIT_CORE))
os.kill(pid, signal.SIGSEGV)
"""


def test_a_crashed_service_leaves_no_core_for_the_learner(
    lab: tuple[LocalRuntime, str],
) -> None:
    """The learner (same uid) may set a service's limits and signal it: a core dump of it
    would put its memory and environment in /workspace. Services have none, hard limit
    included."""
    rt, lab_id = lab
    _answer(rt, lab_id)
    rt.exec(lab_id, "web", ["sh", "-c", "cat > /workspace/core.py"], stdin=CORE.encode())
    res = rt.exec(lab_id, "web", ["python3", "-I", "/workspace/core.py"])
    assert res.stdout_text.split() == ["REFUSED", "LIMIT", "0", "0"], (
        res.stdout_text + res.stderr_text)
    rt.exec(lab_id, "web", ["sleep", "0.5"])
    left = rt.exec(lab_id, "web", ["sh", "-c", "ls /workspace /srv /home /tmp"]).stdout_text
    assert "core" not in left.replace("core.py", ""), left


PTRACE = r"""import ctypes, subprocess
libc = ctypes.CDLL(None, use_errno=True)
pid = int(subprocess.run(["pgrep", "-fx", "python3 -I /srv/service.py"],
                         capture_output=True, text=True).stdout.split()[0])
print("ATTACHED" if libc.ptrace(16, pid, None, None) == 0 else "REFUSED")
"""


def test_a_host_approved_sys_ptrace_lets_its_learner_attach_to_its_service(
    tmp_path: Path,
) -> None:
    """What the capabilities gate grants an advanced lab (a debugger on the host's
    services) holds on every kernel: such a host's learner processes get no domain."""
    host = HostSpec("web", networks=[("dmz", "10.94.1.10")], capabilities=["SYS_PTRACE"],
                    command="exec python3 -I /srv/service.py",
                    files={"/srv/service.py": SERVICE})
    spec = LabSpec("svc-" + secrets.token_hex(4), [SubnetSpec("dmz", "10.94.1.0/24")],
                   [host], Limits(memory_mb=256))
    with one_lab(tmp_path / "state", spec) as rt:
        _answer(rt, spec.lab_id)
        res = rt.exec(spec.lab_id, "web", ["python3", "-I", "-c", PTRACE])
        assert res.stdout_text.strip() == "ATTACHED", res.stdout_text + res.stderr_text


def test_a_passing_shortage_is_not_taken_for_a_kernel_without_landlock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Out of descriptors at the first probe: that probe fails (an exec then fails, closed)
    and the next one asks again, instead of every learner running with no domain for the
    life of the process."""
    if landlock.domain_problem() is not None:
        pytest.skip("this kernel gives no learner domain to lose")
    monkeypatch.setattr(landlock, "_answer", [])
    real = landlock._restrict_this_thread

    def short() -> None:
        raise OSError(errno.EMFILE, "landlock_create_ruleset: Too many open files")

    monkeypatch.setattr(landlock, "_restrict_this_thread", short)
    with pytest.raises(OSError):
        landlock.in_own_domain(lambda: "started without a domain")
    monkeypatch.setattr(landlock, "_restrict_this_thread", real)
    assert landlock.domain_problem() is None and landlock.domain_supported()
