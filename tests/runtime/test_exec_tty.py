"""exec (timeouts, output caps, stdin, exit codes) and tty (PTY round trip) in lab hosts."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import signal
from collections.abc import Iterator

import pytest

from forge.runtime import LabNotFound, SpecError, TerminalClosed, TtySession
from forge.runtime.local import LocalRuntime
from tests.runtime.helpers import sh, simple_lab, tty_read, tty_read_until, tty_send

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def lab(rt: LocalRuntime) -> Iterator[str]:
    lab_id = "ex-" + secrets.token_hex(4)
    rt.create(simple_lab(lab_id, environment={"GREETING": "hello lab"}))
    yield lab_id
    rt.destroy(lab_id)


def _alive(rt: LocalRuntime, lab: str, pid_file: str) -> bool:
    return rt.exec(lab, "box", ["sh", "-c", f"kill -0 $(cat {pid_file})"]).exit_code == 0


def test_exit_code_stdin_env_and_argv_without_shell(rt: LocalRuntime, lab: str) -> None:
    assert sh(rt, lab, "box", "exit 7").exit_code == 7
    res = rt.exec(lab, "box", ["cat"], stdin=b"from stdin")
    assert (res.exit_code, res.stdout) == (0, b"from stdin")
    assert rt.exec(lab, "box", ["printf", "%s|", "a b", "$HOME"]).stdout == b"a b|$HOME|"
    assert rt.exec(lab, "box", ["id", "-u"]).stdout == f"{rt.identity(lab).learner}\n".encode()
    assert sh(rt, lab, "box", 'echo "$GREETING"').stdout == b"hello lab\n"
    killed = sh(rt, lab, "box", "kill -9 $$")
    assert killed.exit_code == 137 and not killed.timed_out


@pytest.mark.timeout(60)  # a hang guard only: exec must return once its 5 s timeout kills
def test_timeout_kills_the_command_and_all_children(rt: LocalRuntime, lab: str) -> None:
    script = (
        "sleep 300 & echo $! > /workspace/child; "
        "setsid sh -c 'echo $$ > /workspace/escaped; exec sleep 300' & "
        "sleep 0.2; echo started; sleep 300"
    )
    # 5 s: the clock runs from before the sandbox starts, and "started" must come first.
    res = sh(rt, lab, "box", script, timeout=5.0)
    assert res.timed_out and res.exit_code == 128 + 9  # SIGKILLed, not left to finish
    assert res.stdout == b"started\n"
    assert not _alive(rt, lab, "/workspace/child")
    assert not _alive(rt, lab, "/workspace/escaped")


def test_background_processes_do_not_outlive_exec(rt: LocalRuntime, lab: str) -> None:
    # The background sleep holds stdout open: exec must not wait for it (it would run into
    # its own timeout then), but return when the shell ends and kill what it left behind.
    res = sh(rt, lab, "box", "(sleep 300 & echo $! > /workspace/bg) ; echo done", timeout=30)
    assert res.stdout == b"done\n" and res.exit_code == 0 and not res.timed_out
    assert not _alive(rt, lab, "/workspace/bg")


def test_lab_user_cannot_kill_the_host(rt: LocalRuntime, lab: str) -> None:
    # kill(-1) hits every process the lab user may signal (not the caller itself).
    res = sh(rt, lab, "box", "sleep 300 & echo $! > /workspace/victim; kill -9 -1")
    assert res.exit_code == 0
    assert not _alive(rt, lab, "/workspace/victim")
    assert rt.exec(lab, "box", ["echo", "still here"]).stdout == b"still here\n"
    assert [i.state for i in rt.list() if i.lab_id == lab] == ["running"]


def test_output_is_capped_but_hashed_in_full(rt: LocalRuntime, lab: str) -> None:
    res = sh(rt, lab, "box", "head -c 300000 /dev/zero | tr '\\0' a; echo oops >&2",
                  max_output=1000)
    full = b"a" * 300000
    assert res.stdout == full[:1000]
    assert res.stdout_size == 300000
    assert res.stdout_sha256 == hashlib.sha256(full).hexdigest()
    assert res.stderr == b"oops\n" and res.stderr_size == 5
    assert res.stderr_sha256 == hashlib.sha256(b"oops\n").hexdigest()
    assert res.truncated
    small = sh(rt, lab, "box", "echo hi", max_output=1000)
    assert not small.truncated and small.stdout_size == 3


def test_bad_exec_arguments(rt: LocalRuntime, lab: str) -> None:
    with pytest.raises(SpecError, match="argv/shell"):
        rt.exec(lab, "box", ["true"], shell="true")
    with pytest.raises(SpecError, match="timeout"):
        rt.exec(lab, "box", ["true"], timeout=0)
    with pytest.raises(SpecError, match="argv"):
        rt.exec(lab, "box", [])
    with pytest.raises(LabNotFound):
        rt.exec(lab, "nohost", ["true"])
    with pytest.raises(LabNotFound):
        rt.exec("no-such-lab", "box", ["true"])
    with pytest.raises(SpecError, match="lab_id"):
        rt.exec("../../etc", "box", ["true"])


def test_tty_round_trip_and_resize(rt: LocalRuntime, lab: str) -> None:
    tty = rt.tty(lab, "box", rows=24, cols=80)
    try:
        tty_send(tty, b"PS1='at-$((2+3))> '; echo $((6*7))-$(hostname)-$(id -un)\n")
        # Up to its prompt: readline has read the size and written it back by then.
        banner = tty_read_until(tty, rb"42-box-learner\r\n[^\n]*at-5> ")
        assert b"no job control" not in banner  # the PTY is the shell's controlling tty
        tty.resize(30, 100)
        tty_send(tty, b"stty size; test -t 0 && echo is-a-terminal\n")
        # The echo of the typed line contains the words too: wait for the output line.
        out = tty_read_until(tty, b"\nis-a-terminal")
        assert b"30 100\r\nis-a-terminal" in out
        tty_send(tty, b"sleep 300 & echo $! > /workspace/ttybg; echo bg-$((3*3))\n")
        tty_read_until(tty, b"\nbg-9")  # the echoed line shows bg-$((3*3)), not bg-9
        assert _alive(rt, lab, "/workspace/ttybg")
    finally:
        tty.close()
    assert tty.closed and tty_read(tty) == b""
    assert not _alive(rt, lab, "/workspace/ttybg")


@pytest.fixture
def caller_ignores_interrupts() -> Iterator[None]:
    """This process ignores SIGINT and SIGQUIT, as a service started in the background by
    a shell without job control does (`forge up &` in a script, CI's runner)."""
    before = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT,
                                                                 signal.SIGQUIT)}
    yield
    for sig, handler in before.items():
        signal.signal(sig, handler)


def _ignored(status: bytes) -> int:
    """The SigIgn mask of a /proc/<pid>/status text."""
    line = next(ln for ln in status.splitlines() if ln.startswith(b"SigIgn:"))
    return int(line.split()[1], 16)


@pytest.mark.timeout(120)  # a hang guard only
@pytest.mark.usefixtures("caller_ignores_interrupts")
def test_ctrl_c_interrupts_a_command_even_when_the_service_ignores_interrupts(
        rt: LocalRuntime, lab: str) -> None:
    # In CI, Ctrl-C in a lab terminal echoed ^C and did not end `sleep`: the test process
    # ignored SIGINT (started in the background), and every learner process inherited it.
    ignored = _ignored(rt.exec(lab, "box", ["cat", "/proc/self/status"]).stdout)
    assert not ignored & (1 << (signal.SIGINT - 1) | 1 << (signal.SIGQUIT - 1))
    tty = rt.tty(lab, "box")
    try:
        tty_send(tty, b"PS1='at-$((2+3))> '\n")
        tty_read_until(tty, b"at-5> ")
        tty_send(tty, b"sh -c 'echo sta\"\"rted; exec sleep 300'\n")
        tty_read_until(tty, b"started\r\n")  # output, not the echo of the line: it runs
        tty_send(tty, b"\x03")
        tty_read_until(tty, b"at-5> ")  # the prompt is back (sleep would run 300 s)
        tty_send(tty, b"echo status-$?\n")
        assert b"status-130\r" in tty_read_until(tty, rb"status-\d+\r")  # by SIGINT
    finally:
        tty.close()


@pytest.mark.usefixtures("caller_ignores_interrupts")
def test_a_grading_check_starts_with_default_signals_too(rt: LocalRuntime, lab: str) -> None:
    """A check such as `timeout -s INT 5 ./probe` relies on SIGINT ending its command; an
    orchestrator started in the background must not pass its ignored signals on."""
    result = rt.run_check(lab, "box", ["cat", "/proc/self/status"])
    assert result.exit_code == 0
    assert not _ignored(result.stdout) & (1 << (signal.SIGINT - 1) | 1 << (signal.SIGQUIT - 1))


def test_tty_is_closed_when_the_lab_is_destroyed(rt: LocalRuntime) -> None:
    lab_id = "tt-" + secrets.token_hex(4)
    rt.create(simple_lab(lab_id))
    tty = rt.tty(lab_id, "box")
    tty_send(tty, b"echo ready\n")
    tty_read_until(tty, b"ready")
    rt.destroy(lab_id)
    assert tty.closed
    assert tty_read(tty) == b""
    with pytest.raises(LabNotFound):
        rt.tty(lab_id, "box")


def test_a_read_waiting_on_the_terminal_ends_when_the_lab_is_destroyed(rt: LocalRuntime) -> None:
    """The orchestrator's pump awaits `read()`; destroying the lab from another thread (the
    reaper, an operator) must end that read with b"" rather than leave it waiting."""
    lab_id = "tw-" + secrets.token_hex(4)
    rt.create(simple_lab(lab_id))
    tty = rt.tty(lab_id, "box")

    async def read_to_end_while_destroyed() -> bytes:
        loop = asyncio.get_running_loop()
        reader = asyncio.ensure_future(_drain(tty))
        await loop.run_in_executor(None, rt.destroy, lab_id)
        return await asyncio.wait_for(reader, 10)

    asyncio.run(read_to_end_while_destroyed())
    assert tty.closed and tty_read(tty) == b""


async def _drain(tty: TtySession) -> bytes:
    out = b""
    while chunk := await tty.read():
        out += chunk
    return out


def test_input_the_program_does_not_read_waits_and_a_close_ends_the_wait(rt: LocalRuntime,
                                                                         lab: str) -> None:
    """`write` holds what the PTY cannot take (the loop keeps running meanwhile), and a
    close from another thread ends it with TerminalClosed instead of leaving it waiting."""
    tty = rt.tty(lab, "box")
    tty_send(tty, b"stty raw -echo; echo RAW-$((1+1)); sleep 600\n")
    tty_read_until(tty, b"RAW-2")

    async def flood_then_close() -> tuple[bool, type[BaseException] | None]:
        loop = asyncio.get_running_loop()
        writer = asyncio.ensure_future(tty.write(b"x" * (1 << 20)))  # far above the PTY's queue
        for _ in range(50):
            await asyncio.sleep(0)  # other coroutines run while the write waits
        pending = not writer.done()
        await loop.run_in_executor(None, tty.close)
        try:
            await asyncio.wait_for(writer, 10)
        except TerminalClosed as exc:
            return pending, type(exc)
        return pending, None

    assert asyncio.run(flood_then_close()) == (True, TerminalClosed)
    with pytest.raises(TerminalClosed):
        tty_send(tty, b"more\n")
