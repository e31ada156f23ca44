"""Refuse a body sent to an API route that takes none.

A route without a body parameter never read what a client sent it, so
`POST /v1/scenarios/{id}/submit` with `{"answers": …}` submitted the lab (irreversibly)
and `POST …/hints/{hint}` with `{"confirm_cost": false}` revealed a hint and charged its
cost: the client learned nothing of the body's fate. JSON bodies with an unknown field are
refused by name (`extra="forbid"`); a body where none is taken is refused the same way,
for every API route (`/v1/…`, `/internal/…`) of every service: 400 `unexpected_body`
naming `body`, before the route acts. A route that reads its body itself declares it
(`openapi_extra` requestBody, as the CSV enrolment does); pages, which read their forms
themselves, are not judged here.
"""

from __future__ import annotations

from fastapi.routing import APIRoute
from starlette.requests import HTTPConnection, Request

from forge.errors import ForgeError

_API = ("/v1/", "/internal/")


def _takes_body(route: APIRoute) -> bool:
    return bool(route.dependant.body_params) or "requestBody" in (route.openapi_extra or {})


async def _carries_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    if length is not None:
        return not (length.isascii() and length.isdigit() and int(length) == 0)
    if "transfer-encoding" in request.headers:  # chunked: only reading tells (bounded)
        return bool(await request.body())
    return False


async def no_unexpected_body(connection: HTTPConnection) -> None:
    """The app-wide check (run by ``request_checks``, after the query's): 400
    `unexpected_body` for a body sent to an API route that takes none (see the module)."""
    route = connection.scope.get("route")
    # For HTTP, FastAPI hands this dependency the route's own Request: a body read here
    # stays cached for whatever reads it later (a service token's body hash).
    if (not isinstance(connection, Request) or not isinstance(route, APIRoute)
            or not route.path.startswith(_API) or _takes_body(route)):
        return
    if await _carries_body(connection):
        raise ForgeError("unexpected_body", 400, "body: this route takes no body; send the "
                         "request without one", [{"field": "body", "problem": "not accepted"}])
