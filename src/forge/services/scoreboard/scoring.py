"""The scoring step shared by the consumer, the reprocess endpoint and the CLI.

`Scorer.score(event)` verifies a completion event (a decoded `ScenarioCompletedV1`), writes
the four result files once (atomically; the same completion again is a no-op), audits the
verdict once across replicas (`score.finalized`, claimed through the shared store's
`forge.store.finalized_audits`) and returns the `forge.score.finalized` event describing
what is on disk. It raises (the first from `refused`, the next two from `scoring_errors`):

* `CompletionRefused` — never score this event (forged, mismatched, conflicting result);
* `ScoringPaused` — not now: no signing key outside dev, storage not writable, no record
  of the scenario in the store (its hint charges unknown), the verdict's audit entry not
  writable (a file error) or the store too busy to mark it; the event must stay queued
  (results are write-once, so the redelivery is safe and audits);
* `AuditFailed` — the verdict cannot be audited and waiting will not help (the replica's
  copy of the chain is corrupt, the store fails for good: read-only, I/O error, schema):
  retried with backoff, then dead-lettered with the reason, recoverable by reprocess once
  repaired;
* anything else — a fault worth retrying (e.g. the scenario's audit log is not there yet).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from forge.audit.log import AuditError, global_log, scenario_log
from forge.bus.connection import BusConnection
from forge.bus.contracts import (
    ContractError,
    ScenarioCompletedV1,
    ScoreFinalizedV1,
    parse,
)
from forge.bus.contracts import payload as event_payload
from forge.bus.evidence_pack import EvidencePack
from forge.bus.subjects import DURABLE_SCOREBOARD_COMPLETED
from forge.config.settings import Settings
from forge.evidence.artifact_store import ArtifactStore, FilesystemArtifactStore
from forge.evidence.artifacts import (
    PUB_NAME,
    SIG_NAME,
    ResultConflict,
    build_artifacts,
)
from forge.faults import crash_point
from forge.grading.learner_aids import ScenarioNotRecorded, hint_facts, hint_uses, task_checks
from forge.lifecycle import states
from forge.lifecycle.store import ScenarioNotFound, load
from forge.services.common.app import storage_writable
from forge.services.common.readiness import CheckFailed
from forge.services.scoreboard.event_intake import (
    CompletionRefused,
    VerifiedCompletion,
    check_recorded_completion,
    verify_completion,
)
from forge.services.scoreboard.scoring_errors import NoRoomToScore, ScoringPaused
from forge.services.scoreboard.shipped import COMPLETED_EVENT, fetch_pack, shipped_audit_log
from forge.services.scoreboard.verdict_audit import VerdictAudit
from forge.signing.keystore import NoSigningKey, SigningKey, SigningKeyring, keyring_dir
from forge.store.busy import disk_out_of_room
from forge.store.db import Database
from forge.store.failed_events import record_failed_event
from forge.store.finalized_audits import finalized_among
from forge.templates.registry import TemplateRegistry
from forge_verify.aids import aids_document
from forge_verify.bundle import BUNDLE_NAMES
from forge_verify.canonical import CanonicalJSONError
from forge_verify.score import SCENARIO_ID_RE, ScoreInputError
from forge_verify.verdict import SCORE_NAME

log = logging.getLogger("forge.scoreboard.scoring")

CONSUMER = DURABLE_SCOREBOARD_COMPLETED


class AuditLogMissing(Exception):
    """The scenario's audit log has no `scenario.completed` entry (yet); retry."""


@dataclass(frozen=True)
class Finalized:
    """A scored completion: the finalized event and whether this call wrote it."""

    scenario_id: str
    created: bool
    event: ScoreFinalizedV1

    @property
    def payload(self) -> dict[str, Any]:
        """The finalized event's body as JSON-ready data."""
        return event_payload(self.event)

    @property
    def msg_id(self) -> str:
        """De-duplication id of the finalized event."""
        return f"{self.scenario_id}-finalized"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def finalized_payload(files: Mapping[str, bytes]) -> dict[str, Any]:
    """The `forge.score.finalized` body from the stored result files."""
    doc = json.loads(files[SCORE_NAME])
    bundle_name = next(n for n in BUNDLE_NAMES.values() if n in files)
    envelope = json.loads(files[SIG_NAME])
    key_ids = [s.get("keyid") for s in envelope.get("signatures", []) if isinstance(s, dict)]
    return {
        "scenario_id": doc["scenario_id"], "run_id": doc["run_id"], "track": doc["track"],
        "tenant_id": doc["tenant_id"], "subject": doc["subject"], "plan": doc["plan"],
        "score": doc["score"], "passed": doc["passed"], "total": doc["total"],
        "completed_at": doc["completed_at"],
        "score_sha256": _sha(files[SCORE_NAME]), "bundle": bundle_name,
        "bundle_sha256": _sha(files[bundle_name]), "verdict_sha256": _sha(files[SIG_NAME]),
        "verdict_pub_sha256": _sha(files[PUB_NAME]),
        "key_id": key_ids[0] if key_ids else None,
    }


class Scorer:
    """Verifies and scores completion events for one installation."""

    def __init__(self, settings: Settings, registry: TemplateRegistry,
                 keyring: SigningKeyring | None = None,
                 bus: BusConnection | None = None,
                 artifacts: ArtifactStore | None = None, *,
                 db: Database) -> None:
        self.settings = settings
        self.db = db  # the scenarios' records: hint reveals and task checks (required)
        self.registry = registry
        self.keyring = keyring or SigningKeyring(keyring_dir(settings.storage_root))
        self.bus = bus
        self.artifacts: ArtifactStore = artifacts or FilesystemArtifactStore(
            settings.storage_root)
        self._audit = VerdictAudit(settings.storage_root, db)
        # Scenarios whose last scoring attempt could not write for lack of room (disk or
        # inodes full), with why: the storage readiness check names them. A probe file fits
        # where a verdict does not, so the check's own write alone would pass.
        self.out_of_room: dict[str, str] = {}

    async def fetch_pack(self, event: ScenarioCompletedV1) -> EvidencePack | None:
        """The evidence the node shipped with `event` (inline or Object Store), verified
        against the event's reference; None for an event from before packs existed."""
        needs_bus = event.evidence_object is not None and self.bus is not None
        return await fetch_pack(self.bus.jetstream() if needs_bus and self.bus else None, event)

    @property
    def storage_root(self) -> Path:
        """Where results and audit logs live."""
        return self.settings.storage_root

    def signing_key(self) -> SigningKey:
        """The current key; in dev one is generated once; else ScoringPaused."""
        try:
            return self.keyring.current()
        except NoSigningKey as exc:
            if self.settings.env.is_dev:
                key, created = self.keyring.ensure()
                if created:
                    log.warning("dev mode: generated signing key %s in %s", key.key_id,
                                self.keyring.directory)
                return key
            raise ScoringPaused(str(exc)) from None

    def _audit_prefix(self, scenario_id: str, pack: EvidencePack | None) -> bytes:
        """The scenario's audit log through `scenario.completed`: the chain the node shipped
        (verified), or for an event without a pack this scoreboard's own copy."""
        if pack is not None:
            return shipped_audit_log(pack)
        audit = scenario_log(self.storage_root, scenario_id).read_through(COMPLETED_EVENT)
        if audit is None:
            raise AuditLogMissing(f"audit log of {scenario_id} has no {COMPLETED_EVENT} "
                                  "entry (storage not in sync?)")
        return audit

    def score(self, event: ScenarioCompletedV1, pack: EvidencePack | None = None) -> Finalized:
        """Verify, score and write once; see the module docstring for the errors. `pack` is
        the evidence the node shipped (`fetch_pack`); without it (an event from before
        packs) outputs and audit log are read from this scoreboard's own STORAGE_ROOT.
        Notes in `out_of_room` whether this attempt stopped for lack of room."""
        try:
            finalized = self._score(event, pack)
        except NoRoomToScore as exc:
            self.out_of_room[event.scenario_id] = str(exc)
            raise
        except BaseException:
            self.out_of_room.pop(event.scenario_id, None)
            raise
        self.out_of_room.pop(event.scenario_id, None)
        return finalized

    def waiting_for_room(self) -> dict[str, str]:
        """`out_of_room` without the completions finalized since: a redelivery goes to any
        replica, and one scored by another never comes back here to clear its note."""
        waiting = dict(self.out_of_room)
        for scenario_id in finalized_among(self.db, sorted(waiting)):
            self.out_of_room.pop(scenario_id, None)
            del waiting[scenario_id]
        return waiting

    def _score(self, event: ScenarioCompletedV1, pack: EvidencePack | None) -> Finalized:
        if pack is None and (event.evidence_pack is not None
                             or event.evidence_object is not None):
            raise CompletionRefused("evidence_missing",
                                    "the event names evidence that was not fetched")
        verified = self._with_aids(verify_completion(self.settings, self.registry, event, pack))
        scenario_id = verified.inputs.scenario_id
        self._refuse_if_ended(scenario_id)
        key = self.signing_key()
        try:
            storage_writable(self.storage_root)
        except CheckFailed as exc:
            raise ScoringPaused(str(exc)) from None
        audit = self._audit_prefix(scenario_id, pack)
        check_recorded_completion(event, audit, pack)
        if pack is not None:
            # The scoreboard keeps its own copy of the chain (verified above) and appends its
            # scoring entries to it; on a one-machine install it is the node's own file.
            try:
                scenario_log(self.storage_root, scenario_id).adopt(audit, COMPLETED_EVENT)
            except AuditError as exc:
                raise CompletionRefused("audit_log_mismatch", str(exc)) from None
            except OSError as exc:
                raise _paused(exc, f"cannot store the audit log of {scenario_id}: "
                                   f"{exc.strerror or exc}") from None
        try:
            written = self.artifacts.write(build_artifacts(
                verified.inputs, verified.evidence(audit), key))
        except ResultConflict as exc:
            raise CompletionRefused("result_conflict", str(exc)) from None
        except (ScoreInputError, CanonicalJSONError) as exc:
            raise CompletionRefused("invalid_completion", str(exc)) from None
        except OSError as exc:
            raise _paused(exc, f"cannot write results of {scenario_id}: "
                               f"{exc.strerror or exc}") from None
        crash_point("scoreboard.written")
        files = self.artifacts.read(scenario_id)
        if files is None:
            raise ScoringPaused(f"results of {scenario_id} vanished after writing")
        payload = finalized_payload(files)
        self._audit.audit_once(scenario_id, payload, key)
        try:
            finalized = parse(ScoreFinalizedV1, payload)
        except ContractError as exc:
            raise ScoringPaused(f"results of {scenario_id} do not make a finalized event: "
                                f"{exc}") from None
        return Finalized(scenario_id, written.created, finalized)

    def _refuse_if_ended(self, scenario_id: str) -> None:
        """Refuse the result of a scenario that ended without one meanwhile (failed: its
        node judged lost mid-grading, an operator): the learner was told it failed, so no
        verdict, no badge. The node checks this before it publishes; here closes the
        moment between that check and the publish. A scenario already ``completed``
        (a redelivery, a reprocess), or one whose verdict this scoreboard wrote before it
        ended (a redelivery finishing its finalized event), is scored as before."""
        try:
            row = load(self.db, scenario_id)
        except ScenarioNotFound:
            raise ScoringPaused(f"the store has no record of {scenario_id}") from None
        if row.state in states.TERMINAL and row.state != states.COMPLETED \
                and self.artifacts.read(scenario_id) is None:  # scored already: go on
            raise CompletionRefused("scenario_ended", f"{scenario_id} ended {row.state} "
                                    f"({row.state_reason}) before its result was scored")

    def _with_aids(self, verified: VerifiedCompletion) -> VerifiedCompletion:
        """Add the hints the learner revealed (charged in the score at the cost stored with
        each reveal) and the task checks they ran, as recorded in the store; unchanged when
        there are none, so a scenario without aids scores exactly as before. Fails closed:
        without the scenario's record scoring pauses (ScoringPaused), it never goes on as if
        no hint had been revealed."""
        sid = verified.inputs.scenario_id
        template = self.registry.get(verified.inputs.template_name).template
        try:
            uses = hint_uses(self.db, sid, verified.inputs.tenant_id,
                             hint_facts(template.spec.hints))
        except ScenarioNotRecorded:
            raise ScoringPaused(f"the store has no record of {sid}: its revealed hints "
                                "cannot be charged, so it is not scored yet") from None
        except (ValueError, ScoreInputError) as exc:
            raise CompletionRefused("invalid_completion", str(exc)) from None
        checks = task_checks(self.db, sid)
        if not uses and not checks:
            return verified
        return replace(verified, inputs=replace(verified.inputs, hints=uses),
                       aids=aids_document(uses, checks))

    def seal_unsealed(self, older_than_s: float = 60.0) -> int:
        """Finish the verdicts this replica left unsealed (see `VerdictAudit.seal_unsealed`);
        returns how many were finished; run at start and periodically."""
        return self._audit.seal_unsealed(self.signing_key, older_than_s)

    def record_failure(self, db: Database, *, subject: str, msg_id: str | None, raw: bytes,
                       error: str, scenario_id: object, attempts: int) -> int:
        """Keep a failed event (never dropped) and audit it in the global log."""
        sid = (scenario_id if isinstance(scenario_id, str)
               and SCENARIO_ID_RE.fullmatch(scenario_id) else None)
        event_id = record_failed_event(
            db, consumer=CONSUMER, subject=subject, msg_id=msg_id,
            payload=raw.decode("utf-8", "replace"), error=error, scenario_id=sid,
            attempts=attempts)
        try:
            signer = self.keyring.current_or_none()
            global_log(self.storage_root, signer=signer).append(
                "completion.failed", {"failed_event_id": event_id, "scenario_id": sid,
                                      "msg_id": msg_id, "error": error[:500]})
        except (AuditError, OSError) as exc:
            log.error("audit of failed event %d failed: %s", event_id, exc)
        return event_id


def _paused(exc: OSError, message: str) -> ScoringPaused:
    """The pause for a write that failed: NoRoomToScore when the disk had no room."""
    return NoRoomToScore(message) if disk_out_of_room(exc) else ScoringPaused(message)


__all__ = ["AuditLogMissing", "CompletionRefused", "Finalized", "Scorer", "finalized_payload"]
