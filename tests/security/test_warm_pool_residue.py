"""Attack: learn another learner's lab through a warm pool.

Pooled labs are built before anyone asks. If a pool lab carried scenario values, or a
lab were handed to a second learner after a first one used it, learner B could read A's
files, processes, environment, shell history or flag. The pool builds only a template's
shape, personalises a lab at its claim, and never reuses a claimed lab: A and B get two
different labs from the same pool and share nothing."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.runtime.base import HostSpec, LabSpec, SubnetSpec
from forge.runtime.local import LocalRuntime
from forge.runtime.local.machine_etc import VIEW
from forge.runtime.local.reconcile import init_pid, read_meta
from tests.runtime.helpers import tty_read_until, tty_send

from ..support.prefixes import runtime_prefix

A, B = "scn-00000000000000c1", "scn-00000000000000c2"


def lab(lab_id: str, secret: str = "") -> LabSpec:
    host: dict[str, object] = {}
    if secret:
        host = {"environment": {"FLAG": secret}, "files": {"/home/flag.txt": secret + "\n"},
                "command": 'echo "$FLAG" > /srv/served; exec sleep 1000'}
    return LabSpec(lab_id, [SubnetSpec("lan", "10.205.0.0/24")],
                   [HostSpec("box", networks=[("lan", None)], **host)])  # type: ignore[arg-type]


@pytest.fixture
def pooled(tmp_path: Path) -> Iterator[LocalRuntime]:
    rt = LocalRuntime(str(tmp_path), prefix=runtime_prefix("r"))
    rt.warm({"one": (lab("x"), 2)}, quiet_s=0.05, poll_s=0.1)
    end = time.monotonic() + 60
    while rt.warm_pool is not None and rt.warm_pool.status()["one"]["ready"] < 2:
        assert time.monotonic() < end, "the pool never filled"
        time.sleep(0.05)
    yield rt
    rt.warm({})
    for info in rt.list():
        rt.destroy(info.lab_id)
    rt.close()


def tree_bytes(root: str) -> bytes:
    """Every regular file's content under ``root`` (the machine's view of a lab), but the
    machine's own /etc under the lab's /etc overlay (``machine_etc``)."""
    out = b""
    for base, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not (d == VIEW and os.path.basename(base) == ".etc")]
        for name in files:
            path = os.path.join(base, name)
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as fh:
                    out += fh.read()
    return out


def proc_bytes(pid: int) -> bytes:
    with open(f"/proc/{pid}/environ", "rb") as env, open(f"/proc/{pid}/cmdline", "rb") as cmd:
        return env.read() + cmd.read()


def test_pooled_labs_share_nothing_between_learners(pooled: LocalRuntime) -> None:
    rt = pooled
    assert rt.warm_pool is not None
    secret_a, secret_b = secrets.token_hex(12), secrets.token_hex(12)
    # Unclaimed pool labs hold no scenario value: none exists before a claim.
    for pool_id in rt.warm_pool.ready_ids():
        meta = read_meta(rt.names, pool_id)
        assert "FLAG" not in meta["hosts"]["box"]["env"]
        held = tree_bytes(rt.names.lab_dir(pool_id)) + proc_bytes(
            init_pid(rt.names, pool_id, "box"))
        assert b"FLAG" not in held and b"flag.txt" not in held
        assert not os.listdir(os.path.join(rt.names.data_dir(pool_id, "box"), "home"))

    rt.create(lab(A, secret_a))
    # Learner A leaves everything a learner can leave behind.
    rt.exec(A, "box", shell="echo mine > /home/a.txt; echo t > /tmp/a; echo w > /workspace/a")
    term = rt.tty(A, "box")  # left open: its background process lives on
    tty_send(term, b"sleep 7771 & echo history-of-a; history -w\n")
    tty_read_until(term, b"history-of-a\r\n")
    end = time.monotonic() + 20
    while not rt.exec(A, "box", shell="cat /home/.bash_history").stdout_text:
        assert time.monotonic() < end, "bash never wrote A's history"
        time.sleep(0.05)
    assert "sleep 7771" in rt.exec(A, "box", ["ps", "ax"]).stdout_text

    rt.create(lab(B, secret_b))
    assert rt.warm_pool.stats.claimed == 2  # both from the same pool
    seen = rt.exec(B, "box", shell="ls -a /home /tmp /workspace /srv; env; ps ax; "
                   "cat /home/flag.txt /srv/served 2>&1; cat /home/.bash_history 2>&1").stdout
    assert secret_b.encode() in seen  # B's own lab is personalised...
    # "sleep 7771", not "7771" alone: B's `ps ax` shows random ids and uids (CI once
    # found "7771" in one of them).
    for residue in (secret_a.encode(), b"a.txt", b"sleep 7771", b"history-of-a", b"mine"):
        assert residue not in seen, seen.decode(errors="replace")  # ...and holds nothing of A's
    assert b".bash_history" not in rt.exec(B, "box", ["ls", "-a", "/home"]).stdout
    on_disk = tree_bytes(rt.names.lab_dir(B))
    assert secret_a.encode() not in on_disk and b"history-of-a" not in on_disk
    # A fresh terminal in B starts with an empty screen and history.
    term_b = rt.tty(B, "box")
    tty_send(term_b, b"history; echo end-of-b\n")
    shown = tty_read_until(term_b, b"end-of-b\r\n")
    term_b.close()
    assert b"history-of-a" not in shown
    # Different identities: another uid pair, so no file of A's is B's.
    assert rt.identity(A) != rt.identity(B)
