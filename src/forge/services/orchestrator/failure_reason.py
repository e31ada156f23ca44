"""What a learner reads of a failed lab, and what only the operator's view keeps.

A scenario's ``state_reason`` is shown to its learner (the lab page, ``GET
/v1/scenarios/ID``) and rides the ``scenario.state`` event. A runtime or store error's own
text can carry a sandbox's stderr, a path on the lab node or an engine's message, so it is
kept in the scenario's details (``error``: the orchestrator's operator view) and the log,
and the learner reads what failed. An error whose text is written for the template's
author or the learner (a spec field, an evidence pack over its limit) is shown as it is.
Either reads "WHAT: WHY", never in brackets: the pages show the reason in brackets after
the state, and "failed (launch failed (the error is …))" nested them.
"""

from __future__ import annotations

import logging
from typing import Any

from forge.runtime.base import ServicesNotReady, SpecError
from forge.services.orchestrator.evidence_ship import PackTooLarge

log = logging.getLogger("forge.orchestrator.failure")
SHOWN = (SpecError, ServicesNotReady, PackTooLarge)
RECORDED = "the error is recorded for the operator"
ERROR_CHARS = 4000


def failure(scenario_id: str, what: str, exc: BaseException) -> tuple[str, dict[str, Any]]:
    """(reason, details) of a scenario that failed at ``what`` on ``exc``: the reason names
    the error only when it is one written to be read (``SHOWN``); details keep it, and the
    log says it (``scenario ID failed: …``)."""
    said = f"{exc}; {exc.output}" if isinstance(exc, ServicesNotReady) and exc.output else exc
    error = f"{type(exc).__name__}: {said}"[:ERROR_CHARS]
    log.warning("scenario %s failed: %s: %s", scenario_id, what, error)
    reason = f"{what}: {exc}" if isinstance(exc, SHOWN) else f"{what}: {RECORDED}"
    return reason, {"error": error}
