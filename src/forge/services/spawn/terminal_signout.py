"""Sign-out ends the learner's terminals, in this process and on the lab nodes.

Signing out revokes the browser session (its token id is refused from then on, by every
replica: `forge.identity.caller.revoke_session`), closes at once every terminal relay this
process runs for that session (`OpenTerminals`), and asks the node holding each of the
learner's running labs to end its terminal sessions (an internal call with a 60-second
terminal-close token for that lab and learner, to the node URL on the scenario row, never to
request input). Relays of the same session on another spawn_service replica end with the
node's sessions, and cannot attach again: the revoked cookie is refused.

A relay registers before it checks the cookie, and sign-out revokes before it closes the
registered relays, so a relay opening during a sign-out is either refused or closed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import NamedTuple

import httpx
from sqlalchemy import select

from forge.config.settings import Settings
from forge.services.spawn.node_routing import node_base
from forge.store.db import Database
from forge.store.models import Scenario
from forge.tokens import TERMINAL_CLOSE, mint_token

log = logging.getLogger("forge.spawn.terminal")
CLOSE_HEADER = "x-forge-terminal"
SIGNED_OUT_MESSAGE = "You signed out, so this terminal was closed. Sign in again to open it."


class OpenTerminals:
    """This process's terminal relays by browser session (the session token's id)."""

    def __init__(self) -> None:
        self._by_session: dict[str, set[asyncio.Event]] = {}

    def register(self, session_id: str) -> asyncio.Event:
        """A relay of `session_id` starts: the event is set when that session signs out."""
        revoked = asyncio.Event()
        self._by_session.setdefault(session_id, set()).add(revoked)
        return revoked

    def unregister(self, session_id: str, revoked: asyncio.Event) -> None:
        """The relay ended."""
        held = self._by_session.get(session_id)
        if held is not None:
            held.discard(revoked)
            if not held:
                del self._by_session[session_id]

    def sign_out(self, session_id: str) -> int:
        """Tell every relay of the session to close now; returns how many there were."""
        held = self._by_session.pop(session_id, set())
        for revoked in held:
            revoked.set()
        return len(held)


def _running_labs(db: Database, tenant_id: str,
                  subject: str) -> list[tuple[str, str | None]]:
    """(scenario id, node URL) of the learner's running labs."""
    stmt = select(Scenario.scenario_id, Scenario.node_url).where(
        Scenario.tenant_id == tenant_id, Scenario.subject == subject,
        Scenario.state == "running")
    with db.read() as sess:
        return [(str(sid), url) for sid, url in sess.execute(stmt)]


async def ask_node(settings: Settings, http: httpx.AsyncClient, action: str, scenario_id: str,
                   learner: tuple[str, str], node_url: str | None, *, timeout: float,
                   failed: str) -> dict[str, object] | None:
    """POST `/internal/scenarios/ID/terminals/<action>` to the node holding the lab (its
    row's URL) with a terminal-close token for that lab and `learner` (tenant, subject); the
    node's JSON answer, or None when it did not answer 200 (logged: `failed`, then why)."""
    tenant_id, subject = learner
    token = mint_token(settings.sat, TERMINAL_CLOSE, {
        "scenario_id": scenario_id, "sub": subject, "tenant_id": tenant_id})
    url = f"{node_base(settings, node_url)}/internal/scenarios/{scenario_id}/terminals/{action}"
    try:
        resp = await http.post(url, headers={CLOSE_HEADER: token}, timeout=timeout)
    except httpx.HTTPError as exc:
        log.warning("%s: node unreachable (%s)", failed, type(exc).__name__)
        return None
    if resp.status_code != 200:
        log.warning("%s: node answered %d", failed, resp.status_code)
        return None
    body = resp.json()
    return body if isinstance(body, dict) else {}


class NodeCloses(NamedTuple):
    """What asking the nodes gave: terminal sessions closed, and labs whose node did not
    answer (their sessions end at their idle limit)."""

    closed: int
    unreached: int


async def close_node_terminals(settings: Settings, db: Database, http: httpx.AsyncClient,
                               tenant_id: str, subject: str) -> NodeCloses:
    """Ask each node holding one of the learner's running labs to end its terminal
    sessions. A node that does not answer is logged and counted (its sessions end at their
    idle limit; a revoked credential cannot attach again)."""
    labs = await asyncio.to_thread(_running_labs, db, tenant_id, subject)
    closed = unreached = 0
    for scenario_id, node_url in labs:
        body = await ask_node(settings, http, "close", scenario_id, (tenant_id, subject),
                              node_url, timeout=15,
                              failed=f"sign-out: terminals of {scenario_id} not closed")
        if body is None:
            unreached += 1
            continue
        count = body.get("closed", 0)
        closed += count if isinstance(count, int) else 0
    return NodeCloses(closed, unreached)
