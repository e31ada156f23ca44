"""The scoring step shared by the consumer, the reprocess endpoint and the CLI.

`Scorer.score(event)` verifies a completion event (a decoded `ScenarioCompletedV1`), writes
the four result files once (atomically; the same completion again is a no-op), audits the
verdict once across replicas (`score.finalized`, claimed through the shared store's
`forge.store.finalized_audits`) and returns the `forge.score.finalized` event describing
what is on disk. It raises:

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

import contextlib
import hashlib
import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DBAPIError

from forge.audit.log import AuditError, AuditLog, global_log, scenario_log
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
from forge.services.common.app import storage_writable
from forge.services.common.readiness import CheckFailed
from forge.services.scoreboard.event_intake import (
    CompletionRefused,
    VerifiedCompletion,
    check_recorded_completion,
    verify_completion,
)
from forge.services.scoreboard.sealing import (
    clear_unsealed,
    in_global_log,
    is_unsealed,
    last_verdict,
    mark_unsealed,
    unsealed,
)
from forge.services.scoreboard.shipped import COMPLETED_EVENT, fetch_pack, shipped_audit_log
from forge.signing.keystore import NoSigningKey, SigningKey, SigningKeyring, keyring_dir
from forge.store.busy import store_busy, store_error_text
from forge.store.db import Database
from forge.store.failed_events import record_failed_event
from forge.store.finalized_audits import finalized_audit_claim, record_finalized_audit
from forge.templates.registry import TemplateRegistry
from forge_verify.aids import aids_document
from forge_verify.bundle import BUNDLE_NAMES
from forge_verify.canonical import CanonicalJSONError
from forge_verify.score import SCENARIO_ID_RE, ScoreInputError
from forge_verify.verdict import SCORE_NAME

log = logging.getLogger("forge.scoreboard.scoring")

CONSUMER = DURABLE_SCOREBOARD_COMPLETED


class ScoringPaused(Exception):
    """Scoring cannot happen now (signing key, storage, the scenario's record); retry later,
    drop nothing."""


class AuditFailed(Exception):
    """The verdict's audit failed in a way waiting cannot fix; the normal fault path
    (retry with backoff, then dead letter with this reason)."""


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


def _verdict_entry(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The `score.finalized` audit entry's data, from the finalized payload."""
    return {k: payload[k] for k in ("score", "passed", "total", "score_sha256",
                                    "bundle_sha256", "key_id")}


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
        self._sealing = threading.Lock()  # the sweep and a scoring never seal at once

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
        packs) outputs and audit log are read from this scoreboard's own STORAGE_ROOT."""
        if pack is None and (event.evidence_pack is not None
                             or event.evidence_object is not None):
            raise CompletionRefused("evidence_missing",
                                    "the event names evidence that was not fetched")
        verified = self._with_aids(verify_completion(self.settings, self.registry, event, pack))
        scenario_id = verified.inputs.scenario_id
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
                raise ScoringPaused(f"cannot store the audit log of {scenario_id}: "
                                    f"{exc.strerror or exc}") from None
        try:
            written = self.artifacts.write(build_artifacts(
                verified.inputs, verified.evidence(audit), key))
        except ResultConflict as exc:
            raise CompletionRefused("result_conflict", str(exc)) from None
        except (ScoreInputError, CanonicalJSONError) as exc:
            raise CompletionRefused("invalid_completion", str(exc)) from None
        except OSError as exc:
            raise ScoringPaused(f"cannot write results of {scenario_id}: "
                                f"{exc.strerror or exc}") from None
        crash_point("scoreboard.written")
        files = self.artifacts.read(scenario_id)
        if files is None:
            raise ScoringPaused(f"results of {scenario_id} vanished after writing")
        payload = finalized_payload(files)
        self._audit_once(scenario_id, payload, key)
        try:
            finalized = parse(ScoreFinalizedV1, payload)
        except ContractError as exc:
            raise ScoringPaused(f"results of {scenario_id} do not make a finalized event: "
                                f"{exc}") from None
        return Finalized(scenario_id, written.created, finalized)

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

    def _audit_once(self, scenario_id: str, payload: Mapping[str, Any],
                    key: SigningKey) -> None:
        """Audit the verdict once across replicas (each keeps its own chain; the store is
        shared): not when this replica's chain has the entry (a redelivery), not when the
        store's marker says another replica audited this same verdict; yes on whichever
        replica gets the completion after a crash between the results and their audit, and
        yes (logged as an error) when the marker records a different verdict.

        Only the scenario-chain append runs inside the marker's transaction (it must commit
        with the marker); the checkpoint and the global-log append follow the commit, so no
        store write lock is held across their fsyncs and the global log's lock. A chain entry
        that cannot be written now or a busy store is ScoringPaused: the results are
        write-once, so the redelivery is safe and audits. The verdict is marked unsealed on
        this replica's disk before its entry is written and cleared once sealed, so a crash
        in between is finished by `seal_unsealed` (the marker stops every other replica)."""
        sha = str(payload["score_sha256"])
        try:
            here = scenario_log(self.storage_root, scenario_id, signer=key)
            if here.read_through("score.finalized") is not None:
                # Audited here; the marker may not have committed, nor the entry been sealed
                # (a crash in between: `scoreboard.audited`, `scoreboard.marked`).
                record_finalized_audit(self.db, scenario_id, sha)
                self._finish_seal(scenario_id, key)
                return
            with finalized_audit_claim(self.db, scenario_id, sha) as recorded:
                if recorded == sha:
                    return  # another replica audited this verdict
                if recorded is not None:
                    log.error("scenario %s has a verdict (score_sha256 %s) other than the one "
                              "audited before (%s): a replica with its own artifact store or "
                              "keyring, or results re-created? auditing this one too",
                              scenario_id, sha, recorded)
                slog = self._append_verdict(scenario_id, payload, key)
                crash_point("scoreboard.audited")
        except DBAPIError as exc:
            if store_busy(exc):  # locked (flock, lock_timeout), deadlock, unreachable
                raise ScoringPaused(f"the store cannot mark the audit of {scenario_id} now: "
                                    f"{store_error_text(exc)}") from None
            raise AuditFailed(f"the store cannot mark the audit of {scenario_id}: "
                              f"{store_error_text(exc)}") from None
        crash_point("scoreboard.marked")
        with self._sealing:
            if self._seal_verdict(scenario_id, payload, key, slog):
                clear_unsealed(self.storage_root, scenario_id)

    def _append_verdict(self, scenario_id: str, payload: Mapping[str, Any],
                        key: SigningKey) -> AuditLog:
        """Append `score.finalized` to the scenario's chain (its marker rolls back if this
        raises): ScoringPaused if the file cannot be written now, AuditFailed if the chain
        is corrupt (no waiting repairs it: retried, then dead-lettered with the reason)."""
        try:
            mark_unsealed(self.storage_root, scenario_id)
            slog = scenario_log(self.storage_root, scenario_id, signer=key)
            slog.append("score.finalized", _verdict_entry(payload))
        except AuditError as exc:
            log.error("audit of %s's verdict failed: %s", scenario_id, exc)
            clear_unsealed(self.storage_root, scenario_id)
            raise AuditFailed(f"the verdict of {scenario_id} cannot be audited: "
                              f"{exc}") from None
        except OSError as exc:
            log.error("audit of %s's verdict failed: %s", scenario_id, exc)
            with contextlib.suppress(OSError):
                clear_unsealed(self.storage_root, scenario_id)
            raise ScoringPaused(f"the verdict of {scenario_id} cannot be audited now: "
                                f"{exc.strerror or exc}") from None
        return slog

    def _seal_verdict(self, scenario_id: str, payload: Mapping[str, Any], key: SigningKey,
                      slog: AuditLog) -> bool:
        """Seal the chain with a checkpoint and add the verdict to the global log, just after
        this replica wrote its entry; the entry is written and the verdict final, so a
        failure here is logged, not fatal (its unsealed mark stays for the sweep)."""
        try:
            slog.checkpoint()
            global_log(self.storage_root, signer=key).append(
                "score.finalized", {"scenario_id": scenario_id, **_verdict_entry(payload)})
        except (AuditError, OSError) as exc:
            log.error("audit of %s's verdict failed after its entry: %s", scenario_id, exc)
            return False
        return True

    def _finish_seal(self, scenario_id: str, key: SigningKey) -> bool:
        """Seal this replica's last verdict entry of `scenario_id` if no checkpoint follows it
        and add it to the global log unless it is there (never a second global entry), then
        clear its unsealed mark; True when nothing is left to do. Only a verdict marked
        unsealed, or whose entry no checkpoint follows, reads the global log."""
        with self._sealing:
            slog = scenario_log(self.storage_root, scenario_id, signer=key)
            data, sealed = last_verdict(slog.read_bytes())
            if data is None or (sealed and not is_unsealed(self.storage_root, scenario_id)):
                clear_unsealed(self.storage_root, scenario_id)
                return True
            entry = {"scenario_id": scenario_id,
                     **{k: v for k, v in data.items() if k != "scenario_id"}}
            try:
                if not sealed:
                    slog.checkpoint()
                glog = global_log(self.storage_root, signer=key)
                if not in_global_log(glog.read_bytes(), scenario_id,
                                     str(data.get("score_sha256"))):
                    glog.append("score.finalized", entry)
            except (AuditError, OSError) as exc:
                log.error("sealing %s's verdict failed: %s", scenario_id, exc)
                return False
            clear_unsealed(self.storage_root, scenario_id)
            log.info("sealed the verdict of %s left unsealed by a crash", scenario_id)
            return True

    def seal_unsealed(self, older_than_s: float = 60.0) -> int:
        """Finish the verdicts this replica left unsealed (a crash after the entry, before
        its seal): record the store marker (the entry may have been written without it),
        seal, add to the global log. Skips verdicts marked less than `older_than_s` ago (a
        scoring under way). Returns how many were finished; run at start and periodically."""
        pending = unsealed(self.storage_root, older_than_s)
        if not pending:
            return 0
        try:
            key = self.signing_key()
        except ScoringPaused as exc:
            log.warning("cannot seal %d unsealed verdicts yet: %s", len(pending), exc)
            return 0
        done = 0
        for sid in pending:
            data, _ = last_verdict(scenario_log(self.storage_root, sid).read_bytes())
            try:
                if data is not None:
                    record_finalized_audit(self.db, sid, str(data.get("score_sha256")))
            except DBAPIError as exc:
                log.warning("cannot mark the audit of %s now: %s", sid, store_error_text(exc))
                continue
            done += self._finish_seal(sid, key)
        return done

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
            signer = self.keyring.current() if self.keyring.has_key() else None
            global_log(self.storage_root, signer=signer).append(
                "completion.failed", {"failed_event_id": event_id, "scenario_id": sid,
                                      "msg_id": msg_id, "error": error[:500]})
        except (AuditError, OSError) as exc:
            log.error("audit of failed event %d failed: %s", event_id, exc)
        return event_id


__all__ = ["AuditFailed", "AuditLogMissing", "CompletionRefused", "Finalized", "Scorer",
           "ScoringPaused", "finalized_payload"]
