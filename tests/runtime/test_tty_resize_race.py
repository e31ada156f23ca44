"""A resize is not lost to the shell's own write-back of the older size.

The race (seen once under load: a reattached browser terminal's shell kept `24 80`): before
each prompt, readline reads the terminal's size and writes the same value back. A resize
landing between the two was undone by the old size, for good. Here a small program in the
lab's PTY does exactly readline's two steps, waiting between them, so the resize lands in
the gap every time; the terminal must end at the latest resize. A size the learner sets
on purpose (`stty`) is kept.

Real local runtime: a lab host, its PTY, bash and python3 in the lab.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from forge.runtime.local import LocalRuntime
from tests.runtime.helpers import simple_lab, tty_read_until, tty_send

pytestmark = pytest.mark.root

# readline's set_winsize: get the size, (the resize lands here), set the same value back,
# then draw the prompt; on the next line report the size the program sees now.
READLINE_STEPS = b"""import fcntl, struct, sys, termios
old = fcntl.ioctl(0, termios.TIOCGWINSZ, bytes(8))
print("size-" + "read", flush=True)
sys.stdin.readline()
fcntl.ioctl(0, termios.TIOCSWINSZ, old)
print("prompt" + ">", flush=True)
sys.stdin.readline()
rows, cols = struct.unpack("HHHH", fcntl.ioctl(0, termios.TIOCGWINSZ, bytes(8)))[:2]
print(f"final={rows}x{cols}", flush=True)
"""


@pytest.fixture(scope="module")
def lab(rt: LocalRuntime) -> Iterator[str]:
    lab_id = "rz-" + secrets.token_hex(4)
    rt.create(simple_lab(lab_id))
    try:
        rt.exec(lab_id, "box", ["sh", "-c", "cat > /workspace/steps.py"], stdin=READLINE_STEPS)
        yield lab_id
    finally:
        rt.destroy(lab_id)


def _final_size(rt: LocalRuntime, lab: str, in_gap: list[tuple[int, int]],
                after: list[tuple[int, int]]) -> bytes:
    """Run the readline steps with `in_gap` resizes between its get and its set and `after`
    ones once its prompt is drawn; the size the program sees at the end."""
    tty = rt.tty(lab, "box", rows=24, cols=80)
    try:
        tty_send(tty, b"python3 /workspace/steps.py\n")
        tty_read_until(tty, b"size-read")
        for rows, cols in in_gap:
            tty.resize(rows, cols)
        tty_send(tty, b"\n")  # the program writes the size it read back, then its prompt
        tty_read_until(tty, b"prompt>")
        for rows, cols in after:
            tty.resize(rows, cols)
        tty_send(tty, b"\n")
        out = tty_read_until(tty, rb"final=\d+x\d+")
        return out[out.index(b"final="):].split(b"\r")[0]
    finally:
        tty.close()


@pytest.mark.parametrize(("in_gap", "after"), [
    ([(40, 120)], []),  # a resize between the shell's get and set
    ([(30, 100), (40, 120)], []),  # two reattaches in a row, both in the gap
    ([], [(40, 120)]),  # after the write-back: nothing to undo
    ([(30, 100)], [(40, 120)]),  # one in the gap, a later one after it
], ids=["in-gap", "two-in-gap", "after", "gap-then-after"])
def test_the_latest_resize_survives_a_stale_write_back(
        rt: LocalRuntime, lab: str, in_gap: list[tuple[int, int]],
        after: list[tuple[int, int]]) -> None:
    """Wherever the resizes land around the shell's get-then-set, the program ends up
    seeing the latest one (before the fix: `final=24x80` for every resize in the gap)."""
    assert _final_size(rt, lab, in_gap, after) == b"final=40x120"


def test_a_size_the_learner_sets_is_kept(rt: LocalRuntime, lab: str) -> None:
    """After a resize, `stty rows 50 cols 90` in the shell is a deliberate size: later
    output and input do not set the resize again."""
    tty = rt.tty(lab, "box", rows=24, cols=80)
    try:
        tty_send(tty, b"PS1='at-$((2+3))> '\n")
        tty_read_until(tty, b"at-5> ")  # readline has read and written the size back
        tty.resize(40, 120)
        tty_send(tty, b"stty rows 50 cols 90; stty size; echo one-$((1+1))\n")
        assert b"50 90\r\none-2" in tty_read_until(tty, b"one-2")
        tty_send(tty, b"stty size; echo two-$((2+2))\n")
        assert b"50 90\r\ntwo-4" in tty_read_until(tty, b"two-4")
    finally:
        tty.close()
