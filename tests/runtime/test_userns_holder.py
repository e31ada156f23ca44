"""The process that holds a lab host's new user and network namespaces while the runtime
sets them up (``userns_holder``, forked by the ``userns_helper`` program): who it is, what
it holds, and that a dead or hung helper costs one request at most."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest

from forge.runtime.local import userns_holder

pytestmark = pytest.mark.root

OWNER = 65532  # a uid no process of the test machine runs as


def _status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        return dict(line.rstrip("\n").split(":\t", 1) for line in fh if ":\t" in line)


def _pid(proc: str) -> int:
    """The pid of the process whose /proc directory ``proc`` (a descriptor's path) is."""
    return int(os.readlink(proc).rsplit("/", 1)[1])


def _gone(pid: int, timeout_s: float = 10.0) -> bool:
    """Whether ``pid`` stops existing (or is a zombie) within ``timeout_s``."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            if _status(pid).get("State", "").startswith("Z"):
                return True
        except FileNotFoundError:
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def fresh_helper(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A helper of this test's own, stopped afterwards (the module's is kept aside)."""
    monkeypatch.setattr(userns_holder, "_helper", None)
    yield
    if userns_holder._helper is not None:
        userns_holder._stop(userns_holder._helper)


def test_the_holder_is_the_owner_in_namespaces_of_its_own(fresh_helper: None) -> None:
    with userns_holder.holder(OWNER) as proc:
        pid = _pid(proc)
        status = _status(pid)
        assert status["Uid"].split() == [str(OWNER)] * 4
        assert status["Gid"].split() == [str(OWNER)] * 4
        assert status["Groups"].strip() == ""
        for kind in ("user", "net"):
            assert os.readlink(f"/proc/{pid}/ns/{kind}") != os.readlink(f"/proc/self/ns/{kind}")
        # It holds no descriptor of the runtime's or the helper's but its own socket
        # (std streams are /dev/null): nothing of the machine reaches a learner uid.
        fds = {int(fd): os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        assert all(target == "/dev/null" for fd, target in fds.items() if fd <= 2)
        assert [t for fd, t in fds.items() if fd > 2 and t != "/dev/null"] == [
            next(t for t in fds.values() if t.startswith("socket:"))]
        # Not dumpable: a process of the same uid cannot read its memory or environment.
        peek = subprocess.run(["setpriv", f"--reuid={OWNER}", f"--regid={OWNER}",
                               "--clear-groups", "--", "cat", f"/proc/{pid}/environ"],
                              capture_output=True, text=True, timeout=30, check=False)
        assert peek.returncode != 0 and "Permission denied" in peek.stderr, peek
    assert _gone(pid)  # it ends with the body


def test_the_helper_is_alone_and_keeps_nothing_of_the_runtime(fresh_helper: None) -> None:
    with userns_holder.holder(OWNER):
        pass
    helper = userns_holder._helper
    assert helper is not None
    proc = helper[0]
    with open(f"/proc/{proc.pid}/environ", "rb") as fh:
        assert fh.read() == b""  # no secret of the runtime's environment
    targets = [os.readlink(f"/proc/{proc.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{proc.pid}/fd")]
    assert sorted(t for t in targets if t != "/dev/null")[:1] == [
        t for t in targets if t.startswith("socket:")]
    assert len([t for t in targets if t != "/dev/null"]) == 1
    assert _status(proc.pid)["Threads"] == "1"
    assert os.getsid(proc.pid) == proc.pid  # out of reach of the runtime's group signals


def test_a_killed_helper_is_started_again(fresh_helper: None) -> None:
    with userns_holder.holder(OWNER):
        pass
    assert userns_holder._helper is not None
    first = userns_holder._helper[0].pid
    os.kill(first, signal.SIGKILL)
    userns_holder._helper[0].wait()
    with userns_holder.holder(OWNER) as proc:
        assert _status(_pid(proc))["Uid"].split()[0] == str(OWNER)
    assert userns_holder._helper[0].pid != first


def test_a_hung_helper_fails_one_request_and_is_replaced(
        fresh_helper: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(userns_holder, "HOLDER_TIMEOUT_S", 0.5)
    with userns_holder.holder(OWNER):
        pass
    assert userns_holder._helper is not None
    hung = userns_holder._helper[0]
    os.kill(hung.pid, signal.SIGSTOP)
    try:
        with (pytest.raises(OSError, match="cannot make a user namespace for a host: no "
                                           "answer"), userns_holder.holder(OWNER)):
            pass
        assert hung.poll() is not None  # ended, not left stopped
        with userns_holder.holder(OWNER) as proc:
            assert _status(_pid(proc))["Uid"].split()[0] == str(OWNER)
    finally:
        if hung.poll() is None:
            hung.kill()
            hung.wait()


def test_the_helper_ends_with_the_runtime_process() -> None:
    code = textwrap.dedent(f"""
        from forge.runtime.local import userns_holder
        with userns_holder.holder({OWNER}):
            pass
        print(userns_holder._helper[0].pid, flush=True)
        import os
        os._exit(0)  # no cleanup: as if killed
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert _gone(int(out.stdout.split()[-1]))


@pytest.mark.parametrize("owner", [0, 0xFFFFFFFF])
def test_the_helper_never_makes_a_root_holder(fresh_helper: None, owner: int) -> None:
    # 0 is root; -1 (0xFFFFFFFF) means "leave unchanged" to setresuid: root again.
    with (pytest.raises(OSError, match=f"owner uid {owner} refused"),
          userns_holder.holder(owner)):
        pass


def test_a_holder_that_ends_before_it_is_opened_is_never_taken_for_another(
        fresh_helper: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its pid may be another process's by then (the helper reaps it at once): the runtime
    opens its /proc directory, then checks it still runs, and writes nothing otherwise."""
    real_open = os.open

    def killed_first(path: str, *args: object, **kwargs: object) -> int:
        if path.startswith("/proc/") and path.count("/") == 2:
            os.kill(int(path.rsplit("/", 1)[1]), signal.SIGKILL)
            assert _gone(int(path.rsplit("/", 1)[1]))
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", killed_first)  # the only such path: the holder's
    with (pytest.raises(OSError, match="its process ended before it was set up"),
          userns_holder.holder(OWNER)):
        pass


def test_a_helper_killed_under_many_requests_fails_only_those_it_had(
        fresh_helper: None) -> None:
    """Eight threads ask at once while the helper is killed: a request may fail with it,
    but no failure takes down the helper started after it, and every thread's last
    request gets its holder. Each thread asks until it has made two requests after the kill
    (at most 200 in all): on a loaded machine a thread could make all six of a fixed count
    before the kill, its last one in flight when the helper died (CI, this stop)."""
    failures: list[str] = []
    last_ok: list[bool] = []
    killed = threading.Event()

    def asker() -> None:
        ok, after = False, 0
        for _ in range(200):
            if after == 2:
                break
            after += killed.is_set()
            try:
                with userns_holder.holder(OWNER) as proc:
                    ok = _status(_pid(proc))["Uid"].split()[0] == str(OWNER)
            except OSError as exc:
                failures.append(str(exc))
                ok = False
        last_ok.append(ok)

    with userns_holder.holder(OWNER):
        pass
    assert userns_holder._helper is not None
    first = userns_holder._helper[0]
    threads = [threading.Thread(target=asker) for _ in range(8)]
    for thread in threads:
        thread.start()
    first.kill()
    killed.set()
    for thread in threads:
        thread.join(timeout=120)
    assert last_ok == [True] * 8, failures
    assert len(failures) <= 8, failures  # at most those the killed helper had taken
