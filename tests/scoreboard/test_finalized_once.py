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
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from forge.audit.log import global_log, scenario_log, scenario_log_path
from forge.bus.contracts import ScenarioCompletedV1, parse, payload
from forge.bus.evidence_pack import EvidencePack, encode_pack
from forge.config import Settings, load_settings
from forge.evidence.artifact_store import FilesystemArtifactStore
from forge.services.scoreboard.scoring import Finalized, Scorer
from forge.signing.keystore import SigningKeyring
from forge.store.db import Database
from forge.store.migrate import upgrade
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
from forge.store.db import Database
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
    body = replicas.tmp_path / "event.json"
    body.write_text(json.dumps(payload(event)))
    env = {**os.environ, **replicas.environ("board-a"),
           "FORGE_CRASH_POINT": "scoreboard.written"}
    killed = subprocess.run([sys.executable, "-c", CRASHING_REPLICA, str(body),
                             str(replicas.keys), str(replicas.results)],
                            env=env, capture_output=True, text=True, timeout=120, check=False)
    assert killed.returncode == -9, killed.stderr
    assert (replicas.results / "scenarios" / sid / "results").is_dir()
    assert replicas.audited(sid, "board-a", "board-b") == (0, 0)

    # The completion comes back to the other replica: it audits the verdict.
    assert not replicas.scorer("board-b", stores[1]).score(event, pack).created
    assert replicas.audited(sid, "board-a", "board-b") == (1, 1)
    # And once more to the restarted first one, which has no entry of its own: none added.
    assert not replicas.scorer("board-a", stores[0]).score(event, pack).created
    assert replicas.audited(sid, "board-a", "board-b") == (1, 1)
