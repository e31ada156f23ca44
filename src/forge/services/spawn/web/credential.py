"""The learner's credential: an Open Badges 3.0 file for a passing lab, from the result page.

Only the lab's owner reaches it (the scenario is looked up as theirs first, 404 otherwise),
and the scoreboard issues it only for a passing, verifying verdict (409 with the reason
otherwise). The page says in one line what the file is and how an employer checks it.
"""

from __future__ import annotations

import shlex
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from forge.errors import ForgeError
from forge.services.spawn import routes as spawn_routes
from forge.services.spawn.web.errors import page_for
from forge.services.spawn.web.security import security_headers
from forge.services.spawn.web.state import web_state
from forge_verify.credential import CREDENTIAL_FILE, EARNED_WHEN, MEDIA_TYPE, is_passing

router = APIRouter(include_in_schema=False)  # a page route, like the other web routes
EMPLOYER_CHECK = f"forge-verify credential {CREDENTIAL_FILE} --trusted-key forge-keys.pem"


def employer_check(tenant_id: str, subject: str) -> str:
    """The command an employer runs on this learner's credential: EMPLOYER_CHECK naming the
    learner's account, so a genuine credential of someone else handed over says FAIL
    (`learner_mismatch`), not PASS."""
    return f"{EMPLOYER_CHECK} --expect-learner {shlex.quote(f'{tenant_id}/{subject}')}"


def credential_offer(result: dict[str, Any] | None, tenant_id: str,
                     subject: str) -> dict[str, Any] | None:
    """What the result section says about the credential of the learner `tenant_id`/
    `subject` (None before a verdict exists)."""
    if result is None:
        return None
    score, check = result.get("score"), result.get("verification")
    doc: dict[str, Any] = score if isinstance(score, dict) else {}
    authentic = isinstance(check, dict) and check.get("ok") is True
    return {"earned": is_passing(doc) and authentic, "passed": is_passing(doc),
            "rule": EARNED_WHEN, "file": CREDENTIAL_FILE,
            "employer_check": employer_check(tenant_id, subject)}


@router.get("/lab/{scenario_id}/credential")
async def lab_credential(scenario_id: str, request: Request) -> Response:
    """Download the credential of the learner's own passing lab (issued on first use)."""
    try:
        row = await spawn_routes.owned_scenario(request, scenario_id)
        body = await web_state(request).backend.scoreboard(
            "POST", f"/v1/scores/{row.scenario_id}/credential")
        token = body.get("credential") if isinstance(body, dict) else None
        if not isinstance(token, str):
            raise ForgeError("credential_unavailable", 502, "no credential was returned")
    except ForgeError as exc:
        return await page_for(request, exc, f"/lab/{scenario_id}/result")
    headers = security_headers()
    headers["Content-Disposition"] = f'attachment; filename="{CREDENTIAL_FILE}"'
    return Response(token.encode("ascii"), media_type=MEDIA_TYPE, headers=headers)


KEYS_FILE = "forge-keys.pem"


@router.get("/" + KEYS_FILE)
async def platform_keys(request: Request) -> Response:
    """This platform's public verdict and credential keys (the scoreboard's, public), so a
    learner checks origin from the site they use, not only integrity: the result page's
    `--trusted-key` file."""
    try:
        answer = await web_state(request).backend.scoreboard_raw("/v1/credentials/keys")
    except ForgeError as exc:
        return await page_for(request, exc, "/tracks")
    headers = security_headers()
    headers["Content-Disposition"] = f'attachment; filename="{KEYS_FILE}"'
    headers["Cache-Control"] = "no-cache"
    return Response(answer.content, media_type="application/x-pem-file", headers=headers)


__all__ = ["EMPLOYER_CHECK", "KEYS_FILE", "credential_offer", "employer_check", "lab_credential",
           "platform_keys", "router"]
