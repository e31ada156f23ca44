"""Refuse a query parameter that a `/v1` API route does not take.

A JSON body with a field the route does not know is refused (422 naming it), but a query
parameter it does not know was dropped without a word: `GET /v1/assignments?limit=50`
answered a whole page of 200, `GET /v1/cohorts?limt=5` one of 100, and
`GET /v1/leaderboard?tenant=acme` (for `tenant_id`) the caller's own board. A client
written against the OpenAPI document, or with a typo, never learned that its parameter was
ignored. Every `/v1` route refuses one now, as it refuses an unknown body field: 422
`validation_error`, the message `<name>: not a parameter of this route` and the ones it
takes, details naming the field, before the route does anything.

The parameters a route takes are those FastAPI reads for it (its own and its
dependencies') and those its OpenAPI `parameters` declare (a route that parses its query
itself documents them there, as the dashboard does). Pages and their forms, and WebSocket
handshakes, are not judged: a link from elsewhere may carry parameters of its own. So is a
`/v1` route marked ``FOLLOWED_LINK``: the lab's access link, opened in a browser from an
email, an LMS or a chat that may append its own (`utm_source=…`); refused, the learner was
told the link had expired or been used, and could not open a lab it was good for.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qsl

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.requests import HTTPConnection

from forge.errors import invalid_field

API_PREFIX = "/v1/"
UNKNOWN = "not a parameter of this route"
# `openapi_extra` of a `/v1` route that a browser follows as a link (its other query
# parameters are ignored, as a page's are); also says so in its OpenAPI operation.
LINK_MARK = "x-forge-followed-link"
FOLLOWED_LINK = {LINK_MARK: True}


def _declared(dependant: Dependant) -> Iterator[str]:
    for field in dependant.query_params:
        yield field.alias
    for sub in dependant.dependencies:
        yield from _declared(sub)


def route_query_names(route: APIRoute) -> frozenset[str]:
    """The query parameters `route` takes: read by FastAPI, or declared in its OpenAPI."""
    extra = (route.openapi_extra or {}).get("parameters", [])
    documented = (p.get("name") for p in extra if isinstance(p, dict) and p.get("in") == "query")
    return frozenset(_declared(route.dependant)) | {n for n in documented if isinstance(n, str)}


def unknown_query_names(query_string: bytes, known: frozenset[str]) -> list[str]:
    """The names of `query_string` (read as Starlette reads them) not in `known`, in the
    order they first appear."""
    names = dict.fromkeys(name for name, _ in parse_qsl(query_string.decode("latin-1"),
                                                        keep_blank_values=True))
    return [name for name in names if name not in known]


async def known_query_values(connection: HTTPConnection) -> None:
    """The app-wide check (run by ``request_checks``): 422 naming the first query
    parameter a `/v1` route does not take."""
    query = connection.scope.get("query_string", b"")
    route = connection.scope.get("route")
    if (not query or connection.scope["type"] != "http" or not isinstance(route, APIRoute)
            or not route.path.startswith(API_PREFIX)
            or (route.openapi_extra or {}).get(LINK_MARK)):
        return
    known = route_query_names(route)
    unknown = unknown_query_names(query, known)
    if unknown:
        takes = ", ".join(sorted(known)) if known else "none"
        raise invalid_field(unknown[0][:40], f"{UNKNOWN} (it takes: {takes})")
