"""A verdict is audited once across scoreboard replicas.

Replicas share the store and the results (the Object Store on a real install; one results
directory here) but each keeps its own copy of a scenario's audit chain under its own
STORAGE_ROOT. A completion the bus redelivers to another replica after one scored it (its
finalized event was not yet published when the bus failed over: the scale-out drill saw it)
must not give the scenario a second `score.finalized` line; two replicas scoring it at the
same moment write one between them; and a replica killed between writing the results and
auditing them leaves the audit to whichever replica gets the completion next. Real SQLite
and PostgreSQL, real files, a real kill -9 (`FORGE_CRASH_POINT`).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from forge.audit.log import global_log, global_log_path, scenario_log, scenario_log_path
from forge.bus.contracts import ScenarioCompletedV1, parse, payload
from forge.bus.evidence_pack import EvidencePack, encode_pack
from forge.config import Settings, load_settings
from forge.evidence.artifact_store import FilesystemArtifactStore
from forge.services.scoreboard.scoring import Finalized, Scorer
from forge.services.scoreboard.scoring_errors import AuditFailed, ScoringPaused
from forge.signing.keystore import SigningKeyring
from forge.store import finalized_audits
from forge.store.db import Database
from forge.store.finalized_audits import claim_finalized_audit, record_finalized_audit
from forge.store.migrate import upgrade
from forge.store.models import FinalizedAudit
from forge.templates.registry import TemplateRegistry

from ..conftest import TEMPLATE_FIXTURES
from ..services.conftest import prod_environ
from .conftest import build_completion

FINALIZED = b'"event":"score.finalized"'

# One replica as its own process, killed -9 just after the results are written.
CRASHING_REPLICA = """
import json, sys
from pathlib import Path
from forge.bus.contracts import ScenarioCompletedV1, parse
from forge.config import load_settings
from forge.evidence.artifact_store import FilesystemArtifactStore
from forge.services.scoreboard.scoring import Scorer
from forge.services.scoreboard.shipped import inline_pack
from forge.signing.keystore import SigningKeyring
from forge.store import finalized_audits
from forge.store.db import Database
from forge.store.finalized_audits import claim_finalized_audit, record_finalized_audit
from forge.templates.registry import TemplateRegistry

settings = load_settings()
event = parse(ScenarioCompletedV1, json.loads(Path(sys.argv[1]).read_text()))
scorer = Scorer(settings, TemplateRegistry.load(settings.templates_dir),
                SigningKeyring(Path(sys.argv[2])), artifacts=FilesystemArtifactStore(
                    Path(sys.argv[3])), db=Database(settings.db_url))
scorer.score(event, inline_pack(event))
"""


@dataclass
class Replicas:
    """Scoreboard replicas on one store and one results store, each with its own root."""

    tmp_path: Path
    db_url: str
    keys: Path
    results: Path
    node: Settings

    def settings(self, name: str) -> Settings:
        return load_settings(self.environ(name))

    def environ(self, name: str) -> dict[str, str]:
        return prod_environ(self.tmp_path / name, FORGE_DB_URL=self.db_url)

    def scorer(self, name: str, db: Database) -> Scorer:
        return Scorer(self.settings(name), TemplateRegistry.load(TEMPLATE_FIXTURES),
                      SigningKeyring(self.keys),
                      artifacts=FilesystemArtifactStore(self.results), db=db)

    def completion(self) -> tuple[ScenarioCompletedV1, EvidencePack]:
        """A completion as a lab node ships it (its audit log and outputs in an inline
        pack), the scenario recorded in the shared store."""
        done = build_completion(self.node, record_in=self.settings("board-a"))
        sid = done.scenario_id
        evidence = self.node.storage_root / "scenarios" / sid / "evidence"
        pack = EvidencePack(sid, scenario_log_path(self.node.storage_root, sid).read_bytes(),
                            {p.name: p.read_bytes() for p in evidence.iterdir()})
        body = done.variant(evidence_pack=base64.b64encode(encode_pack(pack)).decode())
        return parse(ScenarioCompletedV1, body), pack

    def kill_scoring(self, event: ScenarioCompletedV1, name: str, point: str) -> None:
        """Replica `name` scores `event` in its own process and is killed -9 at `point`."""
        body = self.tmp_path / "event.json"
        body.write_text(json.dumps(payload(event)))
        env = {**os.environ, **self.environ(name), "FORGE_CRASH_POINT": point,
               "FORGE_ENV": "staging"}  # a crash point is refused in prod
        killed = subprocess.run([sys.executable, "-c", CRASHING_REPLICA, str(body),
                                 str(self.keys), str(self.results)],
                                env=env, capture_output=True, text=True, timeout=120,
                                check=False)
        assert killed.returncode == -9, killed.stderr

    def marker(self, db: Database, sid: str) -> str | None:
        """The verdict hash the shared store's committed marker records for `sid`."""
        with db.read() as sess:
            return sess.execute(select(FinalizedAudit.score_sha256).where(
                FinalizedAudit.scenario_id == sid)).scalar_one_or_none()

    def audited(self, sid: str, *names: str) -> tuple[int, int]:
        """`score.finalized` lines of `sid` in the replicas' scenario chains and global
        logs, summed."""
        roots = [self.tmp_path / name for name in names]
        return (sum(scenario_log(r, sid).read_bytes().count(FINALIZED) for r in roots),
                sum(line.count(FINALIZED) and sid.encode() in line
                    for r in roots for line in global_log(r).read_bytes().splitlines()))


@pytest.fixture
def replicas(tmp_path: Path, db_url: str) -> Iterator[Replicas]:
    upgrade(db_url)
    keys = tmp_path / "keys"
    SigningKeyring(keys).ensure()  # the replicas' signing key (one installation)
    yield Replicas(tmp_path, db_url, keys, tmp_path / "results",
                   load_settings(prod_environ(tmp_path / "node")))


@pytest.fixture
def stores(db_url: str) -> Iterator[list[Database]]:
    """One store connection per replica (they are separate processes), closed after."""
    dbs = [Database(db_url) for _ in range(2)]
    yield dbs
    for db in dbs:
        db.dispose()


def test_completion_redelivered_to_another_replica_is_audited_once(
        replicas: Replicas, stores: list[Database]) -> None:
    event, pack = replicas.completion()
    sid = event.scenario_id
    board_a, board_b = replicas.scorer("board-a", stores[0]), replicas.scorer("board-b",
                                                                              stores[1])
    first = board_a.score(event, pack)
    # The bus redelivers the completion to the other replica, then to the first again.
    again = board_b.score(event, pack)
    third = board_a.score(event, pack)
    assert first.created and not again.created and not third.created
    assert again.payload == first.payload == third.payload  # same verdict, announced again
    assert replicas.audited(sid, "board-a", "board-b") == (1, 1)
    # The other replica keeps the node's chain (adopted), with no verdict entry of its own.
    kept = scenario_log(replicas.tmp_path / "board-b", sid).read_bytes()
    assert kept == pack.audit_log and FINALIZED not in kept
    chain = scenario_log(replicas.tmp_path / "board-a", sid)
    assert chain.read_bytes().startswith(pack.audit_log)
    report = chain.verify({board_a.signing_key().key_id:
                           board_a.signing_key().public_key})
    assert report.ok and report.checkpoints == 1, report.reasons


def test_two_replicas_scoring_at_once_audit_once(replicas: Replicas,
                                                 stores: list[Database]) -> None:
    event, pack = replicas.completion()
    boards = [replicas.scorer("board-a", stores[0]), replicas.scorer("board-b", stores[1])]
    start = threading.Barrier(2)
    outcomes: list[Finalized] = []
    errors: list[BaseException] = []

    def score(board: Scorer) -> None:
        start.wait()
        try:
            outcomes.append(board.score(event, pack))
        except BaseException as exc:  # shown below, with the other replica's outcome
            errors.append(exc)

    threads = [threading.Thread(target=score, args=(b,)) for b in boards]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert sorted(o.created for o in outcomes) == [False, True]
    assert replicas.audited(event.scenario_id, "board-a", "board-b") == (1, 1)


def test_replica_killed_between_results_and_audit_leaves_it_to_the_next(
        replicas: Replicas, stores: list[Database]) -> None:
    event, pack = replicas.completion()
    sid = event.scenario_id
    replicas.kill_scoring(event, "board-a", "scoreboard.written")
    assert (replicas.results / "scenarios" / sid / "results").is_dir()
    assert replicas.audited(sid, "board-a", "board-b") == (0, 0)

    # The completion comes back to the other replica: it audits the verdict.
    assert not replicas.scorer("board-b", stores[1]).score(event, pack).created
    assert replicas.audited(sid, "board-a", "board-b") == (1, 1)
    # And once more to the restarted first one, which has no entry of its own: none added.
    assert not replicas.scorer("board-a", stores[0]).score(event, pack).created
    assert replicas.audited(sid, "board-a", "board-b") == (1, 1)


@pytest.mark.parametrize("first", ["board-a", "board-b"])
def test_replica_killed_between_entry_and_marker_audits_at_least_once(
        replicas: Replicas, stores: list[Database], first: str) -> None:
    """The one window where a verdict gets two entries: killed after the chain entry,
    before the marker commits (`scoreboard.audited`). The killed replica, back, only seals
    its entry and marks it; another replica getting the completion first writes its own:
    the verdict is audited at least once, never lost."""
    event, pack = replicas.completion()
    sid = event.scenario_id
    replicas.kill_scoring(event, "board-a", "scoreboard.audited")
    assert replicas.audited(sid, "board-a", "board-b") == (1, 0)
    assert replicas.marker(stores[0], sid) is None

    boards = {"board-a": replicas.scorer("board-a", stores[0]),
              "board-b": replicas.scorer("board-b", stores[1])}
    verdict = boards[first].score(event, pack)
    assert replicas.marker(stores[0], sid) == verdict.payload["score_sha256"]
    # Whoever comes next adds nothing.
    boards["board-b" if first == "board-a" else "board-a"].score(event, pack)
    # Each chain then holds one entry of the same verdict, each sealed and in its global log.
    expected = (1, 1) if first == "board-a" else (2, 2)
    assert replicas.audited(sid, "board-a", "board-b") == expected
    key = boards["board-a"].signing_key()
    chain = scenario_log(replicas.tmp_path / "board-a", sid)
    report = chain.verify({key.key_id: key.public_key})
    assert report.ok and report.checkpoints == 1, report.reasons  # the entry is sealed


def _sealed_checkpoints(replicas: Replicas, board: Scorer, name: str, sid: str) -> int:
    """Checkpoints after the last `score.finalized` entry of replica `name`'s chain (the
    chain verified with the installation's key)."""
    key = board.signing_key()
    chain = scenario_log(replicas.tmp_path / name, sid)
    report = chain.verify({key.key_id: key.public_key})
    assert report.ok, report.reasons
    return chain.read_bytes().rpartition(FINALIZED)[2].count(b'"audit.checkpoint"')


def test_replica_killed_after_the_marker_seals_at_its_sweep(
        replicas: Replicas, stores: list[Database]) -> None:
    """Killed after the marker commits, before the seal (`scoreboard.marked`): the other
    replica, seeing the marker, rightly adds nothing, and the killed one may never get the
    completion again. Before, its entry stayed unsealed and no global log had the verdict;
    now its sweep (at start, then periodically) seals it and adds it to its global log,
    once: a second sweep or a late redelivery adds nothing."""
    event, pack = replicas.completion()
    sid = event.scenario_id
    replicas.kill_scoring(event, "board-a", "scoreboard.marked")
    board_a = replicas.scorer("board-a", stores[0])
    board_b = replicas.scorer("board-b", stores[1])
    assert replicas.marker(stores[0], sid) is not None
    board_b.score(event, pack)  # the redelivery: the marker says audited
    assert replicas.audited(sid, "board-a", "board-b") == (1, 0)
    assert _sealed_checkpoints(replicas, board_a, "board-a", sid) == 0

    assert board_a.seal_unsealed(older_than_s=0) == 1  # board-a restarts
    assert replicas.audited(sid, "board-a", "board-b") == (1, 1)
    assert _sealed_checkpoints(replicas, board_a, "board-a", sid) == 1
    assert board_a.seal_unsealed(older_than_s=0) == 0
    board_a.score(event, pack)
    assert replicas.audited(sid, "board-a", "board-b") == (1, 1)
    assert _sealed_checkpoints(replicas, board_a, "board-a", sid) == 1


def test_entry_followed_by_another_event_is_still_sealed(
        replicas: Replicas, stores: list[Database]) -> None:
    """On a one-machine install the orchestrator appends to the same chain
    (`scenario.state`): an entry with something after it but no checkpoint is unsealed
    all the same (before, only a chain ending in `score.finalized` was sealed)."""
    event, pack = replicas.completion()
    sid = event.scenario_id
    replicas.kill_scoring(event, "board-a", "scoreboard.marked")
    board = replicas.scorer("board-a", stores[0])
    scenario_log(replicas.tmp_path / "board-a", sid).append("scenario.state",
                                                            {"state": "completed"})
    board.score(event, pack)  # the redelivery to the killed replica, back
    assert replicas.audited(sid, "board-a") == (1, 1)
    assert _sealed_checkpoints(replicas, board, "board-a", sid) == 1
    assert board.seal_unsealed(older_than_s=0) == 0


def test_entry_without_its_marker_is_sealed_and_marked_by_the_sweep(
        replicas: Replicas, stores: list[Database]) -> None:
    """Killed after the entry, before the marker (`scoreboard.audited`), and the completion
    never comes back to it: its sweep marks, seals and logs the verdict."""
    event, pack = replicas.completion()
    sid = event.scenario_id
    replicas.kill_scoring(event, "board-a", "scoreboard.audited")
    board = replicas.scorer("board-a", stores[0])
    assert replicas.marker(stores[0], sid) is None
    assert board.seal_unsealed(older_than_s=0) == 1
    assert replicas.marker(stores[0], sid) is not None
    assert replicas.audited(sid, "board-a") == (1, 1)
    assert _sealed_checkpoints(replicas, board, "board-a", sid) == 1
    assert not board.score(event, pack).created  # a late redelivery adds nothing
    assert replicas.audited(sid, "board-a") == (1, 1)


def test_corrupt_chain_fails_with_its_reason_and_the_repaired_redelivery_audits(
        replicas: Replicas, stores: list[Database]) -> None:
    """A corrupt chain is not a pause (retried every few seconds for ever, never
    dead-lettered): it fails with the reason (retried with backoff, then dead-lettered),
    and once repaired the completion audits."""
    event, pack = replicas.completion()
    sid = event.scenario_id
    board = replicas.scorer("board-a", stores[0])
    # The replica's copy of the chain has a corrupt last line: no entry can be appended.
    path = scenario_log_path(replicas.tmp_path / "board-a", sid)
    path.parent.mkdir(parents=True)
    path.write_bytes(pack.audit_log + b"{not json\n")
    with pytest.raises(AuditFailed, match=r"cannot be audited: .*line"):
        board.score(event, pack)  # never acked: the completion comes back
    assert replicas.marker(stores[0], sid) is None
    assert replicas.audited(sid, "board-a") == (0, 0)
    assert (replicas.results / "scenarios" / sid / "results").is_dir()

    path.write_bytes(pack.audit_log)  # the operator repairs the chain
    assert not board.score(event, pack).created
    assert replicas.audited(sid, "board-a") == (1, 1)
    assert replicas.marker(stores[0], sid) is not None


def test_busy_store_pauses_scoring_instead_of_waiting_or_failing(
        replicas: Replicas, stores: list[Database], monkeypatch: pytest.MonkeyPatch) -> None:
    """Another replica holds the store (SQLite: the installation's write lock; PostgreSQL:
    an open claim of the same marker, its replica hung): scoring pauses (retried later),
    it neither waits unbounded nor fails the event for good."""
    event, pack = replicas.completion()
    sid = event.scenario_id
    board = replicas.scorer("board-a", stores[0])
    with (_store_held(replicas, stores, sid, monkeypatch),
          pytest.raises(ScoringPaused, match="cannot mark the audit")):
        board.score(event, pack)
    assert replicas.audited(sid, "board-a") == (0, 0)
    assert not board.score(event, pack).created  # released: the redelivery audits
    assert replicas.audited(sid, "board-a") == (1, 1)


def test_store_failing_for_good_is_a_fault_with_its_reason_not_a_pause(
        replicas: Replicas, stores: list[Database]) -> None:
    """A store error waiting cannot fix (here the marker's table is gone; the same path as
    a read-only database or an I/O error) is not a pause retried for ever: it fails with
    the database's own error text (retried with backoff, then dead-lettered)."""
    event, pack = replicas.completion()
    sid = event.scenario_id
    board = replicas.scorer("board-a", stores[0])
    with stores[1].session() as sess:
        sess.execute(text("ALTER TABLE finalized_audits RENAME TO finalized_audits_away"))
    try:
        with pytest.raises(AuditFailed, match=r"cannot mark the audit.*finalized_audits"):
            board.score(event, pack)
    finally:
        with stores[1].session() as sess:
            sess.execute(text("ALTER TABLE finalized_audits_away RENAME TO finalized_audits"))
    assert replicas.audited(sid, "board-a") == (0, 0)  # no entry without its marker
    assert not board.score(event, pack).created  # repaired: the redelivery audits
    assert replicas.audited(sid, "board-a") == (1, 1)


@contextlib.contextmanager
def _store_held(replicas: Replicas, stores: list[Database], sid: str,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Hold the store as a hung replica would, briefly bounding the waits for it."""
    if make_url(replicas.db_url).get_backend_name() == "sqlite":
        stores[0].lock_timeout_s = 0.2
        lock = Path(str(make_url(replicas.db_url).database) + "-writelock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
        return
    monkeypatch.setattr(finalized_audits, "LOCK_TIMEOUT_MS", 200)
    with stores[1].engine.connect() as conn:
        trans = conn.begin()
        claim_finalized_audit(Session(bind=conn), sid, "0" * 64)  # never committed
        try:
            yield
        finally:
            trans.rollback()


def test_store_marker_commits_before_the_global_log_append(
        replicas: Replicas, stores: list[Database]) -> None:
    """The store's write lock is not held across the checkpoint and the global log: while
    another writer holds the global log's lock, the verdict's marker is already committed."""
    event, pack = replicas.completion()
    sid = event.scenario_id
    board = replicas.scorer("board-a", stores[0])
    chain = scenario_log(replicas.tmp_path / "board-a", sid)
    errors: list[BaseException] = []

    def score() -> None:
        try:
            board.score(event, pack)
        except BaseException as exc:  # shown below
            errors.append(exc)

    gpath = global_log_path(replicas.tmp_path / "board-a")
    gpath.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(gpath) + ".lock"):  # spawn or the orchestrator appending, slowly
        scoring = threading.Thread(target=score)
        scoring.start()
        deadline = time.monotonic() + 120
        while b'"audit.checkpoint"' not in chain.read_bytes().partition(FINALIZED)[2]:
            assert not errors and time.monotonic() < deadline, errors  # sealed, by now
            time.sleep(0.05)
        assert scoring.is_alive()  # waiting for the global log
        assert replicas.marker(stores[1], sid) is not None
    scoring.join(120)
    assert not errors, errors
    assert replicas.audited(sid, "board-a") == (1, 1)


def test_marker_of_a_different_verdict_does_not_suppress_its_audit(
        replicas: Replicas, stores: list[Database], caplog: pytest.LogCaptureFixture) -> None:
    """A replica holding a different verdict for the scenario (its own artifact store or
    keyring, or results re-created after retention) audits it, and says so loudly."""
    event, pack = replicas.completion()
    sid = event.scenario_id
    record_finalized_audit(stores[1], sid, "f" * 64)  # another verdict was audited
    with caplog.at_level(logging.ERROR, logger="forge.scoreboard.scoring"):
        verdict = replicas.scorer("board-a", stores[0]).score(event, pack)
    assert replicas.audited(sid, "board-a") == (1, 1)
    assert verdict.payload["score_sha256"] != "f" * 64
    assert any(sid in r.getMessage() and "other than the one audited" in r.getMessage()
               for r in caplog.records)
    assert replicas.marker(stores[0], sid) == "f" * 64  # the first record stays


def test_the_sweep_finds_a_verdict_in_a_long_global_log_without_reading_it_whole(
        tmp_path: Path) -> None:
    """The sweep asks whether a crash-left verdict is in the global log already: that log
    holds every verdict the installation ever gave and was read whole into memory for it.
    Read a line at a time, a 16 MB log is scanned in a fraction of its size, and the
    verdict at its very end (and only the one with its digest) is found."""
    import tracemalloc

    from forge.services.scoreboard.sealing import in_global_log

    glog = global_log(tmp_path)
    sid = "s" + "a" * 31
    filler = b'{"event":"spawn.created","data":{"scenario_id":"s%031d"},"pad":"%s"}\n'
    glog.path.parent.mkdir(parents=True)
    with glog.path.open("wb") as fh:
        for n in range(40_000):
            fh.write(filler % (n, b"x" * 320))
        fh.write(json.dumps({"event": "score.finalized", "data": {
            "scenario_id": sid, "score_sha256": "ab" * 32}}).encode() + b"\n")
    assert glog.path.stat().st_size > 15_000_000
    tracemalloc.start()
    try:
        assert in_global_log(glog.lines(), sid, "ab" * 32)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, peak
    assert not in_global_log(glog.lines(), sid, "cd" * 32)
    assert not in_global_log(global_log(tmp_path / "none").lines(), sid, "ab" * 32)
