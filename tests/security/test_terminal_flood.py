"""A terminal cannot stall the orchestrator or fill its memory (issue 12, terminals).

Attack 1: in the lab terminal, `stty raw -echo; sleep 600` (a program that stops reading its
terminal), then paste 256 KB. The orchestrator wrote keystrokes to the PTY with a blocking
write on its event loop, so once the PTY's input queue was full the whole orchestrator froze
(every lab, every API request, grading) until that program read or ended.

Attack 2: a client that never reads its socket, while the lab prints without end. The
orchestrator read the PTY as fast as the lab wrote into an unbounded queue, so memory grew
with the lab's output. Now output is read only as fast as the client takes it.

Real spawn_service + orchestrator, nats-server, SQLite and the local lab runtime (the `lab`
fixture of test_terminal_cap).
"""

from __future__ import annotations

import resource
import time

import httpx
import pytest

from forge.services.orchestrator.terminal import close_terminals

from .test_terminal_cap import Lab, lab, round_trip

__all__ = ["lab"]  # the module-scoped platform fixture, shared with test_terminal_cap
pytestmark = [pytest.mark.root, pytest.mark.usefixtures("sqlite_only_store")]
MB = 1_000_000


def read_until(ws: object, marker: bytes) -> None:
    seen = b""
    deadline = time.monotonic() + 30
    while marker not in seen:
        data = ws.recv(timeout=max(0.1, deadline - time.monotonic()))  # type: ignore[attr-defined]
        seen += data if isinstance(data, bytes) else data.encode()


def test_keystrokes_nobody_reads_do_not_freeze_the_orchestrator(lab: Lab) -> None:
    headers = lab.learner("rory")
    sid = lab.spawn_running(headers)
    with lab.open(sid, headers) as ws:
        ws.send(b"stty raw -echo; echo RAW-$((1+1)); sleep 600\n")
        read_until(ws, b"RAW-2")
        for _ in range(64):
            ws.send(b"x" * 4096)  # 256 KB of keystrokes that `sleep` never reads
        busy = lab.learner("rory-busy")  # another lab's terminal still works,
        with lab.open(lab.spawn_running(busy), busy) as other:
            round_trip(other, "unfrozen")
        health = httpx.get(f"{lab.orch_url}/healthz", timeout=60)  # and so does the API
        assert health.status_code == 200


def _progress(lab: Lab, sid: str) -> int:
    res = lab.runtime.exec(sid, "learner", ["sh", "-c", "cat /workspace/progress || echo 0"])
    return int(res.stdout.decode().strip() or 0)


def test_output_a_client_does_not_read_is_not_buffered_without_bound(lab: Lab) -> None:
    """The lab prints 300 MB (1 MB of random bytes per step, so WebSocket compression
    cannot hide it; steps counted in /workspace/progress) to a client that reads nothing:
    the printing program waits, the orchestrator's memory does not grow."""
    headers = lab.learner("stella")
    sid = lab.spawn_running(headers)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with lab.open(sid, headers, max_queue=16) as ws:  # a client that reads nothing
        ws.send(b"for i in $(seq 300); do head -c 1000000 /dev/urandom; echo $i > "
                b"/workspace/progress; done\n")
        last, steady = -1, 0
        while steady < 8:  # until the printer stalls (or finishes); never reading `ws`
            time.sleep(0.5)
            now = _progress(lab, sid)
            steady = steady + 1 if now == last else 0
            last = now
            if now >= 300:
                break
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
    print(f"accepted {last} MB of output; peak RSS grew {grown / MB:.1f} MB")
    assert last < 100, f"{last} MB of output accepted for a client that read nothing"
    assert grown < 64 * MB, f"the orchestrator's peak memory grew {grown / MB:.0f} MB"
    lab.in_loop(lambda: close_terminals(lab.orch, sid, "test over"))  # the shell lives on
