"""Open Badges credentials from passing verdicts, and what a verifier needs to check them.

`POST /v1/scores/{id}/credential` issues (once) or returns the scenario's credential to its
owner (tenant and subject) or the operator, only when the verdict passes and verifies with
this scoreboard's keys. The issuer profile, the signed revocation status list and the
public keys are public: an employer fetches them once and verifies offline.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from forge.errors import ForgeError
from forge.evidence.credentials import (
    CredentialUrls,
    issue_credential,
    issuer_profile,
    refuse_unless_passing,
)
from forge.evidence.status_cache import StatusListCache
from forge.services.common.openapi import errors
from forge.services.scoreboard.access import (
    Reader,
    current_reader,
    owned_results,
    scoreboard_state,
)
from forge.services.scoreboard.routes import verification_summary
from forge.signing.keystore import NoSigningKey, SigningKey
from forge.store.issued_credentials import find_for_scenario
from forge.store.timestamps import aware
from forge_verify.credential import MEDIA_TYPE
from forge_verify.verdict import SCORE_NAME

router = APIRouter()
ReaderDep = Annotated[Reader, Depends(current_reader)]
KEYS_MEDIA_TYPE = "application/x-pem-file"


def credential_urls(request: Request) -> CredentialUrls:
    """Where this installation publishes issuer, status list and keys."""
    settings = scoreboard_state(request).settings
    return CredentialUrls((settings.credential_base_url or settings.scoreboard_url).rstrip("/"))


def _key(request: Request) -> SigningKey:
    try:
        return scoreboard_state(request).scorer.keyring.current()
    except NoSigningKey:
        raise ForgeError("signing_key_unavailable", 503, "credentials cannot be signed now: "
                         "the signing key is not loaded; retry later",
                         headers={"Retry-After": "30"}) from None


def _status_lists(request: Request) -> StatusListCache:
    """This process's status-list cache (one per app)."""
    cache: StatusListCache | None = getattr(request.app.state, "status_lists", None)
    if cache is None:
        cache = request.app.state.status_lists = StatusListCache()
    return cache


def _issue(request: Request, reader: Reader, scenario_id: str) -> dict[str, Any]:
    files = owned_results(scoreboard_state(request), reader, scenario_id)
    refuse_unless_passing(json.loads(files[SCORE_NAME]))
    db = scoreboard_state(request).ctx.db
    row = find_for_scenario(db, scenario_id)
    if row is None:  # first time: the verdict must verify before anything is vouched for
        check = verification_summary(request, files)
        if check.get("ok") is not True or check.get("origin") != "proven":
            raise ForgeError("verdict_not_verified", 409, "No credential: this lab's verdict "
                             "does not verify with the platform's keys, so nothing can be "
                             "vouched for.")
        row = issue_credential(db, files, _key(request), credential_urls(request))
    return {"credential_id": row.credential_id, "scenario_id": row.scenario_id,
            "key_id": row.key_id, "issued_at": aware(row.issued_at).isoformat(),
            "revoked": row.revoked_at is not None, "credential": row.token}


@router.post("/v1/scores/{scenario_id}/credential", tags=["credentials"],
             responses=errors(401, 404, 409, 503))
async def issue(scenario_id: str, request: Request, reader: ReaderDep) -> dict[str, Any]:
    """The Open Badges 3.0 credential (JWT-VC) of a passing verdict, issued once (owner or
    operator only; 409 `credential_not_earned` when the verdict does not pass)."""
    return await run_in_threadpool(_issue, request, reader, scenario_id)


def _body(media_type: str, what: str) -> dict[int | str, dict[str, Any]]:
    """An OpenAPI 200 answer that is a text body of `media_type`, not JSON."""
    return {200: {"description": what, "content": {media_type: {"schema": {"type": "string"}}}}}


@router.get("/v1/credentials/status/1", tags=["credentials"], response_class=Response,
            responses={**_body(MEDIA_TYPE, "The status list, a compact JWS"), **errors(503)})
async def status_list(request: Request) -> Response:
    """The revocation Bitstring Status List as a signed JWT (public), valid for 24 h from
    its `validFrom`; signed once and reused until a revocation, a new credential or a key
    rotation changes it (or half its validity has passed)."""
    state = scoreboard_state(request)
    token = await run_in_threadpool(_status_lists(request).token, state.ctx.db, _key(request),
                                    credential_urls(request))
    return Response(token, media_type=MEDIA_TYPE, headers={"Cache-Control": "no-cache"})


@router.get("/v1/credentials/keys", tags=["credentials"], response_class=Response,
            responses=_body(KEYS_MEDIA_TYPE, "PEM public keys"))
async def public_keys(request: Request) -> Response:
    """Every public key that signs verdicts and credentials, as PEM (public)."""
    ring = scoreboard_state(request).scorer.keyring
    pems = await run_in_threadpool(ring.export_public)
    return Response(pems, media_type=KEYS_MEDIA_TYPE,
                    headers={"Content-Disposition": 'attachment; filename="forge-keys.pem"'})


@router.get("/v1/credentials/issuer", tags=["credentials"])
async def issuer(request: Request) -> dict[str, Any]:
    """The issuer's Open Badges Profile (public)."""
    return issuer_profile(credential_urls(request))


__all__ = ["credential_urls", "router"]
