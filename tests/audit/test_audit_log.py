"""Hash-chained audit logs: linear under concurrent writers, tamper-evident with signed heads."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from forge.audit.log import AuditError, AuditLog, global_log, scenario_log, scenario_log_path
from forge.private_lock import lock_now
from forge.signing.keystore import SigningKey, SigningKeyring
from forge_verify.audit_chain import genesis_hash, make_line, scenario_stream, verify_chain
from forge_verify.canonical import loads
from forge_verify.score import ScoreInputError

from ..support.small_disk import fill_disk, small_tmpfs

SID = "scn-0a1b2c3d4e5f6071"


def _key(seed: int = 1) -> SigningKey:
    return SigningKey.from_private_key(Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32))


def _keys(*keys: SigningKey) -> dict[str, object]:
    return {k.key_id: k.public_key for k in keys}


def _rewrite(path: Path, index: int, data: dict[str, object]) -> None:
    """A careful forger: change one entry and recompute every later hash."""
    entries = [loads(line) for line in path.read_bytes().splitlines()]
    entries[index]["data"] = data
    prev = entries[0]["prev"]
    out = b""
    for e in entries:
        line = make_line(e["seq"], prev, e["time"], e["event"], e["data"])
        prev = loads(line)["hash"]
        out += line
    path.write_bytes(out)


def test_entries_link_from_a_stream_bound_genesis(tmp_path: Path) -> None:
    log = scenario_log(tmp_path, SID)
    a = log.append("scenario.pending", {"track": "netplus"})
    b = log.append("scenario.running")
    lines = [loads(x) for x in log.read_bytes().splitlines()]
    assert [e["seq"] for e in lines] == [0, 1]
    assert lines[0]["prev"] == genesis_hash(scenario_stream(SID))
    assert lines[1]["prev"] == a.hash and lines[1]["hash"] == b.hash
    assert set(lines[0]) == {"seq", "prev", "time", "event", "data", "hash"}
    assert log.verify(None).ok
    # The same bytes presented as another scenario's log do not verify.
    other = verify_chain(log.read_bytes(), stream=scenario_stream("scn-ffffffffffffffff"))
    assert not other.ok and "another stream" in other.reasons[0]


def _append_many(path: str, worker: int, count: int) -> None:
    log = AuditLog(Path(path), "global", fsync=False)
    for i in range(count):
        log.append("test.event", {"worker": worker, "i": i})


def test_concurrent_writers_in_separate_processes_keep_one_linear_chain(tmp_path: Path) -> None:
    path = tmp_path / "global.jsonl"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(str(path), w, 40)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    report = verify_chain(path.read_bytes(), stream="global")
    assert report.ok, report.reasons
    assert report.entries == 160
    seen = {(e["data"]["worker"], e["data"]["i"]) for e in
            (loads(x) for x in path.read_bytes().splitlines())}
    assert len(seen) == 160


def test_editing_a_line_is_detected(tmp_path: Path) -> None:
    log = global_log(tmp_path)
    for i in range(3):
        log.append("op.event", {"i": i})
    data = log.path.read_bytes().replace(b'"i":1', b'"i":7')
    log.path.write_bytes(data)
    assert "hash does not match its content" in log.verify(None).reasons[0]


def test_a_recomputed_rewrite_is_caught_by_the_signed_checkpoint(tmp_path: Path) -> None:
    key = _key()
    log = global_log(tmp_path, signer=key)
    for i in range(4):
        log.append("op.event", {"i": i})
    log.checkpoint()
    log.append("op.event", {"i": 4})
    assert log.verify(_keys(key)).ok
    _rewrite(log.path, 1, {"i": 99})
    report = log.verify(_keys(key))
    assert any("checkpoint signature invalid" in r for r in report.reasons)
    assert any(r.startswith("rewritten") for r in report.reasons)


def test_truncation_is_caught_by_the_signed_head(tmp_path: Path) -> None:
    key = _key()
    log = global_log(tmp_path, signer=key)
    for i in range(5):
        log.append("op.event", {"i": i})
    log.checkpoint()
    lines = log.path.read_bytes().splitlines(keepends=True)
    log.path.write_bytes(b"".join(lines[:3]))  # every remaining line still links
    assert verify_chain(log.path.read_bytes(), stream="global").ok
    report = log.verify(_keys(key))
    assert any("truncated: signed checkpoint covers entry 6" in r for r in report.reasons)


def test_deleting_the_signed_head_is_detected(tmp_path: Path) -> None:
    key = _key()
    log = global_log(tmp_path, signer=key)
    log.append("op.event")
    log.checkpoint()
    log.head_path.unlink()
    assert "signed head checkpoint file is missing (deleted?)" in log.verify(_keys(key)).reasons


def test_checkpoints_need_a_known_key(tmp_path: Path) -> None:
    log = global_log(tmp_path)
    log.append("op.event")
    log.checkpoint(_key(2))
    report = log.verify(_keys(_key(1)))
    assert any("unknown key" in r for r in report.reasons)
    assert log.verify(_keys(_key(1), _key(2))).ok


def test_automatic_checkpoints_every_n_entries(tmp_path: Path) -> None:
    key = _key()
    log = AuditLog(tmp_path / "a.jsonl", "global", signer=key, checkpoint_every=3)
    for i in range(7):
        log.append("op.event", {"i": i})
    report = log.verify(_keys(key))
    assert report.ok and report.checkpoints == 2 and report.entries == 9
    assert report.notes == ["1 entries after the last signed checkpoint"]


def test_a_half_written_last_line_is_cut_before_the_next_append(tmp_path: Path) -> None:
    log = global_log(tmp_path)
    log.append("op.event", {"i": 0})
    with log.path.open("ab") as fh:
        fh.write(b'{"data":{"i":1},"ev')
    assert "incomplete" in log.verify(None).reasons[0]
    entry = log.append("op.event", {"i": 2})
    assert entry.seq == 1 and log.verify(None).ok


def test_blank_lines_after_the_last_entry_say_where_and_do_not_restart_the_chain(
        tmp_path: Path) -> None:
    # A log ending in a blank line (left by a node whose disk filled up) read as a new log:
    # the next append wrote seq 0 from the genesis hash after the existing entries, so
    # every later entry failed verification. `forge audit verify` said "invalid JSON".
    log = global_log(tmp_path)
    log.append("op.event", {"i": 0})
    with log.path.open("ab") as fh:
        fh.write(b"\n\n")
    assert log.verify(None).reasons == ["line 2: empty line, not an audit entry"]
    entry = log.append("op.event", {"i": 1})
    assert entry.seq == 1 and log.verify(None).ok and log.verify(None).entries == 2
    log.path.write_bytes(b"")  # made, its first line never written: OK, and said
    report = log.verify(None)
    assert report.ok and report.notes == [
        "the log is empty: its first entry was never written (a crash or a full disk as it "
        "was made)"]
    log.path.write_bytes(b"\n")  # a log that is one blank line
    assert log.append("op.event", {}).seq == 0 and log.verify(None).ok


@pytest.mark.root
def test_a_line_a_full_disk_cuts_short_is_refused_and_taken_back(tmp_path: Path) -> None:
    # A full disk takes part of a line and refuses the rest (a short write): the append
    # ignored the short count and returned the entry as appended, a half line stayed in the
    # log (`forge audit verify`: BROKEN) and was cut off at the next append, so the entry
    # the caller was told was audited was lost, and every append after it likewise.
    with small_tmpfs(tmp_path / "disk", "1m") as disk:
        log = AuditLog(disk / "audit.jsonl", scenario_stream(SID))
        log.append("op.event", {"i": 0})
        filler = fill_disk(disk)
        appended = 1
        with pytest.raises(OSError) as refused:
            for _ in range(64):  # the last page of the log fills first
                log.append("op.event", {"pad": "x" * 600})
                appended += 1
        assert refused.value.errno == errno.ENOSPC
        report = log.verify(None)
        assert report.ok and report.entries == appended, report.reasons
        filler.remove()
        assert log.append("op.event", {"i": 1}).seq == appended and log.verify(None).ok


def test_bad_events_and_data_are_refused(tmp_path: Path) -> None:
    log = global_log(tmp_path)
    with pytest.raises(AuditError, match="event"):
        log.append("Bad Event")
    with pytest.raises(AuditError, match="event"):
        log.append("audit.checkpoint")
    with pytest.raises(AuditError, match="data"):
        log.append("op.event", {"x": float("nan")})
    with pytest.raises(AuditError, match="no signing key"):
        log.checkpoint()
    with pytest.raises(ScoreInputError, match="scenario_id"):
        scenario_log_path(tmp_path, "../../etc")
    assert not log.path.exists()


def test_read_through_is_stable_under_later_appends(tmp_path: Path) -> None:
    log = scenario_log(tmp_path, SID)
    log.append("scenario.running")
    log.append("scenario.completed", {"reason": "submitted"})
    snapshot = log.read_through("scenario.completed")
    log.append("score.finalized", {"score": 1})
    assert snapshot is not None and log.read_through("scenario.completed") == snapshot
    assert verify_chain(snapshot, stream=scenario_stream(SID)).entries == 2
    assert log.read_through("scenario.expired") is None


def test_times_are_utc_and_caller_times_are_kept(tmp_path: Path) -> None:
    log = global_log(tmp_path)
    log.append("op.event", at=datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=UTC))
    assert json.loads(log.read_bytes())["time"] == "2026-01-02T03:04:05.600000Z"


def _forge_audit(*args: str, storage: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FORGE_SIGNING_KEY_DIR"}
    env["STORAGE_ROOT"] = str(storage)
    return subprocess.run([sys.executable, "-m", "forge", "audit", "verify", *args],
                          capture_output=True, text=True, timeout=60, env=env)


def test_forge_audit_verify_cli(tmp_path: Path) -> None:
    ring = SigningKeyring(tmp_path / "keys" / "signing")
    key = ring.generate()
    glog = global_log(tmp_path, signer=key)
    slog = scenario_log(tmp_path, SID, signer=key)
    for log in (glog, slog):
        log.append("op.event", {"n": 1})
        log.checkpoint()
    ring.rotate()  # checkpoints by the retired key still verify
    ok = _forge_audit(storage=tmp_path)
    assert ok.returncode == 0 and ok.stdout.startswith("OK"), ok.stdout + ok.stderr
    assert _forge_audit("--scenario", SID, storage=tmp_path).returncode == 0
    slog.path.write_bytes(b"")
    broken = _forge_audit("--scenario", SID, storage=tmp_path)
    assert broken.returncode == 1 and "truncated" in broken.stdout
    assert _forge_audit("--scenario", "../x", storage=tmp_path).returncode == 2


def test_forge_audit_verify_of_a_scenario_without_a_log_is_not_ok(tmp_path: Path) -> None:
    """A mistyped id, or a scenario whose log and head were both removed, printed "OK …: 0
    entries" and exit 0: the operator read it as a verified log. Now exit 2, naming it."""
    ring = SigningKeyring(tmp_path / "keys" / "signing")
    slog = scenario_log(tmp_path, SID, signer=ring.generate())
    slog.append("op.event", {"n": 1})
    slog.checkpoint()
    other = "scn-" + "0" * 16
    missing = _forge_audit("--scenario", other, storage=tmp_path)
    assert missing.returncode == 2 and not missing.stdout.startswith("OK"), missing.stdout
    assert missing.stderr == (f"error: --scenario: no audit log for {other} at "
                              f"{scenario_log(tmp_path, other).path} (not a scenario of this "
                              "storage root, or its log was removed)\n")
    slog.path.unlink()
    slog.head_path.unlink()
    assert _forge_audit("--scenario", SID, storage=tmp_path).returncode == 2
    assert not scenario_log(tmp_path, other).path.parent.exists()  # nothing made


_HOLD = ("import sys; from filelock import FileLock\n"
         "with FileLock(sys.argv[1]):\n"
         "    print('held', flush=True); sys.stdin.readline()")


def test_a_free_lock_is_one_flock_that_excludes_filelock_holders(tmp_path: Path) -> None:
    """An append whose lock is free takes it with one flock (FileLock's acquire and release
    cost more CPU than the line's write; a lab's life appends four): no FileLock is made.
    It is the same lock: one held that way keeps another process's FileLock out, a held
    FileLock makes `lock_now` say so (the append then waits in FileLock, as before), and
    the lock file is private."""
    log = AuditLog(tmp_path / "audit.jsonl", "global")
    log.append("one", {"n": 1})
    log.append("two", {"n": 2})
    assert log._lock is None  # nothing of FileLock's was needed
    assert (log.lock_path.stat().st_mode & 0o777) == 0o600
    fd = lock_now(log.lock_path)
    assert fd is not None
    try:
        probe = subprocess.run(
            [sys.executable, "-c", "import sys; from filelock import FileLock, Timeout\n"
             "try:\n    FileLock(sys.argv[1], timeout=0).acquire()\nexcept Timeout:\n"
             "    print('busy')", str(log.lock_path)], capture_output=True, text=True,
            timeout=60)
        assert probe.stdout == "busy\n"
    finally:
        os.close(fd)
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(log.lock_path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert lock_now(log.lock_path) is None
    finally:
        holder.communicate("\n", timeout=60)
    log.append("three", {"n": 3})
    events = [loads(line)["event"] for line in log.read_bytes().splitlines()]
    assert events == ["one", "two", "three"] and log.verify(None).ok


def test_lock_now_leaves_a_lock_file_it_will_not_trust_to_filelock(tmp_path: Path) -> None:
    """A lock file left open to others is made 0600 first (as `private_lock` makes it); a
    link is not followed (FileLock decides about it, as before)."""
    loose = tmp_path / "loose.lock"
    loose.write_bytes(b"")
    loose.chmod(0o644)
    fd = lock_now(loose)
    assert fd is not None
    os.close(fd)
    assert (loose.stat().st_mode & 0o777) == 0o600
    link = tmp_path / "link.lock"
    link.symlink_to(loose)
    assert lock_now(link) is None


def test_a_lock_held_by_a_stuck_process_fails_the_append_instead_of_hanging(
        tmp_path: Path) -> None:
    """Another process holding the log's lock (stopped, or on a hung disk) kept every
    append, and every service action that audits, waiting for ever, with nothing in the
    log. Now an append gives up after the timeout (60 s; 0.5 s here) with an AuditError
    naming the lock, and works again once the holder lets go."""
    log = AuditLog(tmp_path / "audit.jsonl", "global", lock_timeout_s=0.5)
    log.append("before", {"n": 1})
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from filelock import FileLock\n"
         "with FileLock(sys.argv[1]):\n"
         "    print('held', flush=True); time.sleep(60)", str(log.path) + ".lock"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(AuditError, match=r"audit\.jsonl\.lock: held by another process "
                                             r"for 0\.5 s"):
            log.append("during", {"n": 2})
    finally:
        holder.kill()
        holder.wait(timeout=30)
    log.append("after", {"n": 3})
    events = [loads(line)["event"] for line in log.read_bytes().splitlines()]
    assert events == ["before", "after"] and log.verify(None).ok
