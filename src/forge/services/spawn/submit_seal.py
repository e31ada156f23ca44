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

import httpx

from forge.config.settings import Settings
from forge.lifecycle.store import ScenarioRecord
from forge.services.spawn.terminal_signout import ask_node

SEAL_TIMEOUT_S = 5.0


async def seal_submitted(settings: Settings, http: httpx.AsyncClient,
                         row: ScenarioRecord) -> None:
    """Ask the lab's node to seal the terminals of `row`'s lab (its Submit was accepted)."""
    await ask_node(settings, http, "seal", row.scenario_id, (row.tenant_id, row.subject),
                   row.node_url, timeout=SEAL_TIMEOUT_S,
                   failed=f"submit: terminals of {row.scenario_id} not sealed yet (its "
                   "grading seals them)")
