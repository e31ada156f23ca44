"""Auditing a written verdict once across scoreboard replicas, and sealing it.

Each replica keeps its own copy of a scenario's chain; the store is shared. A verdict's
`score.finalized` entry is appended once (the store's `forge.store.finalized_audits` marker
says whether another replica did), then the chain is sealed with a signed checkpoint and the
verdict added to the global log. A crash between the entry and the seal is finished by
`seal_unsealed` (the unsealed marks are kept by `sealing`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DBAPIError

from forge.audit.log import AuditError, AuditLog, global_log, scenario_log
from forge.faults import crash_point
from forge.services.scoreboard.scoring_errors import AuditFailed, ScoringPaused
from forge.services.scoreboard.sealing import (
    clear_unsealed,
    in_global_log,
    is_unsealed,
    last_verdict,
    mark_unsealed,
    unsealed,
)
from forge.signing.keystore import SigningKey
from forge.store.busy import store_busy, store_error_text
from forge.store.db import Database
from forge.store.finalized_audits import finalized_audit_claim, record_finalized_audit

# The scoring step's log name: the runbook's audit and sealing lines keep it.
log = logging.getLogger("forge.scoreboard.scoring")


def verdict_entry(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The `score.finalized` audit entry's data, from the finalized payload."""
    return {k: payload[k] for k in ("score", "passed", "total", "score_sha256",
                                    "bundle_sha256", "key_id")}


class VerdictAudit:
    """Audits and seals the verdicts of one replica (its STORAGE_ROOT, the shared store)."""

    def __init__(self, storage_root: Path, db: Database) -> None:
        self.storage_root = storage_root
        self.db = db
        self._sealing = threading.Lock()  # the sweep and a scoring never seal at once

    def audit_once(self, scenario_id: str, payload: Mapping[str, Any],
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
                self.finish_seal(scenario_id, key)
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
            slog.append("score.finalized", verdict_entry(payload))
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
                "score.finalized", {"scenario_id": scenario_id, **verdict_entry(payload)})
        except (AuditError, OSError) as exc:
            log.error("audit of %s's verdict failed after its entry: %s", scenario_id, exc)
            return False
        return True

    def finish_seal(self, scenario_id: str, key: SigningKey) -> bool:
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
                if not in_global_log(glog.lines(), scenario_id,
                                     str(data.get("score_sha256"))):
                    glog.append("score.finalized", entry)
            except (AuditError, OSError) as exc:
                log.error("sealing %s's verdict failed: %s", scenario_id, exc)
                return False
            clear_unsealed(self.storage_root, scenario_id)
            log.info("sealed the verdict of %s left unsealed by a crash", scenario_id)
            return True

    def seal_unsealed(self, signing_key: Callable[[], SigningKey],
                      older_than_s: float = 60.0) -> int:
        """Finish the verdicts this replica left unsealed (a crash after the entry, before
        its seal): record the store marker (the entry may have been written without it),
        seal, add to the global log. Skips verdicts marked less than `older_than_s` ago (a
        scoring under way). `signing_key` is asked only when one is pending. Returns how many
        were finished; run at start and periodically."""
        pending = unsealed(self.storage_root, older_than_s)
        if not pending:
            return 0
        try:
            key = signing_key()
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
            done += self.finish_seal(sid, key)
        return done
