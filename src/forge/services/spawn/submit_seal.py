"""A submitted lab's terminals close when the Submit is accepted, not when grading starts.

A lab node grades a few submits at a time, so a class submitting at its due time waits its
turn; until the grading of a lab starts (which seals its terminals), its learner could go on
typing in a lab already submitted, and the dashboard judges lateness by the Submit's time.
Once the submit event is on the bus, spawn_service asks the node holding the lab (the URL
on its row, never request input) to close the lab's terminals and refuse new ones, with a
60-second terminal-close token for that lab and learner. A node that does not answer is
logged: its grading seals the terminals when it starts, as before.
"""

from __future__ import annotations

import logging

import httpx

from forge.config.settings import Settings
from forge.lifecycle.store import ScenarioRecord
from forge.services.spawn.node_routing import node_base
from forge.services.spawn.terminal_signout import CLOSE_HEADER
from forge.tokens import TERMINAL_CLOSE, mint_token

log = logging.getLogger("forge.spawn.terminal")
SEAL_TIMEOUT_S = 5.0


async def seal_submitted(settings: Settings, http: httpx.AsyncClient,
                         row: ScenarioRecord) -> None:
    """Ask the lab's node to seal the terminals of `row`'s lab (its Submit was accepted)."""
    token = mint_token(settings.sat, TERMINAL_CLOSE, {
        "scenario_id": row.scenario_id, "sub": row.subject, "tenant_id": row.tenant_id})
    url = f"{node_base(settings, row.node_url)}/internal/scenarios/{row.scenario_id}" \
          "/terminals/seal"
    try:
        resp = await http.post(url, headers={CLOSE_HEADER: token}, timeout=SEAL_TIMEOUT_S)
    except httpx.HTTPError as exc:
        log.warning("submit: terminals of %s not sealed yet: node unreachable (%s); "
                    "its grading seals them", row.scenario_id, type(exc).__name__)
        return
    if resp.status_code != 200:
        log.warning("submit: terminals of %s not sealed yet: node answered %d; its grading "
                    "seals them", row.scenario_id, resp.status_code)
