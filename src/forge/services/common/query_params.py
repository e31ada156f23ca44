"""Refuse a query string that names one parameter twice, unless the route takes a list.

Starlette keeps every value of a repeated parameter and FastAPI hands a route the last of
them, so `?limit=5000&limit=10` was read as `limit=10`: a client, a proxy or a gateway in
front of Forge that reads the first saw another request than the one Forge acted on (a
page size, a filter, a tenant), and the sender never learned that one value was dropped.
Forms and JSON bodies already refuse a repeated name (``web.security.read_form``,
``json_keys``); the query string is refused the same way here, for every route of every
service: 422 `validation_error`, the message `<name>: given more than once` and details
naming the field, before the route does anything. A parameter the route declares as a list
(`/readyz?check=config&check=store`) may repeat, as documented for it.

It runs in the app-wide dependency (``request_checks``), so the route is known (and a page
gets its HTML error page, as for any other refusal); a WebSocket's handshake is refused
with close code 1008.
"""

from __future__ import annotations

import types
from collections import Counter
from collections.abc import Iterator
from typing import Any, Union, get_args, get_origin
from urllib.parse import parse_qsl

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIWebSocketRoute
from starlette.exceptions import WebSocketException
from starlette.requests import HTTPConnection
from starlette.status import WS_1008_POLICY_VIOLATION

from forge.errors import invalid_field

REPEATED = "given more than once"
_LISTS = (list, set, frozenset, tuple)


def _is_list(annotation: Any) -> bool:
    origin = get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        return any(_is_list(arg) for arg in get_args(annotation))
    return annotation in _LISTS or origin in _LISTS


def _list_params(dependant: Dependant) -> Iterator[str]:
    for field in dependant.query_params:
        if _is_list(field.field_info.annotation):
            yield field.alias
    for sub in dependant.dependencies:
        yield from _list_params(sub)


def repeatable(route: object) -> frozenset[str]:
    """The query parameters `route` declares as lists (its own and its dependencies')."""
    if not isinstance(route, APIRoute | APIWebSocketRoute):
        return frozenset()
    # Walked each time (a short tree), only for a query that repeats a name: a cache keyed
    # by id(route) could answer for another route once a discarded app's routes are freed.
    return frozenset(_list_params(route.dependant))


def repeated_names(query_string: bytes) -> list[str]:
    """The names a query string gives more than once, in the order they first appear
    (read as Starlette reads them: latin-1, blank values kept)."""
    if b"&" not in query_string:
        # Pairs are split at "&" only (as Starlette splits them): without one there is at
        # most one name. Most requests carry no query or one parameter; they skip the parse.
        return []
    counts = Counter(name for name, _ in parse_qsl(query_string.decode("latin-1"),
                                                   keep_blank_values=True))
    return [name for name, count in counts.items() if count > 1]


async def single_query_values(connection: HTTPConnection) -> None:
    """The app-wide check (run by ``request_checks``): 422 naming the first parameter the
    query gives twice that the route does not take as a list (a WebSocket handshake:
    closed with 1008)."""
    names = repeated_names(connection.scope.get("query_string", b""))
    if not names:
        return
    allowed = repeatable(connection.scope.get("route"))
    for name in names:
        if name not in allowed:
            shown = name[:40]
            if connection.scope["type"] == "websocket":
                raise WebSocketException(WS_1008_POLICY_VIOLATION, f"{shown}: {REPEATED}")
            raise invalid_field(shown, REPEATED)
