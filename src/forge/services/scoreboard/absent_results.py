"""What a reader is told of a lab with no result files: "score not found" unless the store
records its verdict as signed and audited (a `finalized_audits` row) and the reader may
see that lab (the operator, or the learner the store names as its owner). Then the answer
says what happened and what to do: lost by a restore (`results_missing`: the operator's
`forge artifacts check` names it, a copy of the storage root made after the store's brings
it back) or, past its retention, removed by results retention (`results_expired`). Anyone
else gets the plain 404, so no other learner's or tenant's lab is revealed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

from forge.errors import ForgeError
from forge.store.db import Database
from forge.store.models import FinalizedAudit, Scenario
from forge.store.timestamps import aware

NOT_FOUND = ForgeError("not_found", 404, "score not found")


class MayRead(Protocol):
    """A reader who may or may not see a scenario's results (`access.Reader`)."""

    def may_read(self, scenario_id: str, tenant_id: object, subject: object) -> bool: ...


def absent_results(db: Database, reader: MayRead, scenario_id: str,
                   now: datetime | None = None) -> ForgeError:
    """The 404 for a scenario whose result files are not in the results store (see the
    module's docstring)."""
    with db.read() as sess:
        audited = sess.get(FinalizedAudit, scenario_id)
        lab = sess.get(Scenario, scenario_id)
        owner = (lab.tenant_id, lab.subject) if lab is not None else (None, None)
        days = lab.retention_days if lab is not None else None
        at = aware(audited.audited_at) if audited is not None else None
    if at is None or not reader.may_read(scenario_id, *owner):
        return NOT_FOUND
    if days is not None and (now or datetime.now(UTC)) >= at + timedelta(days=days):
        return ForgeError("results_expired", 404, (
            f"scenario_id: this lab was graded on {at:%Y-%m-%d}; its results were kept "
            f"{days} days and removed by results retention"), [{"field": "scenario_id"}])
    return ForgeError("results_missing", 404, (
        "scenario_id: this lab was graded (its signed verdict is recorded) but its result "
        "files are missing from the results store, as after a restore whose state store "
        "and storage root were copied at different moments. The operator's `forge "
        "artifacts check` names such labs; restoring the storage root from a copy made "
        "after the store's brings them back"), [{"field": "scenario_id"}])
