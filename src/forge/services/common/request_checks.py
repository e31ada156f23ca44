"""The one app-wide dependency of every service: the checks each request passes before its
route runs, in this order: a query parameter given twice (``query_params``), one a `/v1`
route does not take (``known_query``), then a body sent to an API route that takes none
(``no_body``).

One dependency, not one per check: FastAPI solves each app-wide dependency as a dependant
of its own (a nested solve, a cache key, parameter lookups), and the two cost about a fifth
of a request that does nothing else (`/healthz`). Being the first dependency of every route
keeps each check's place among the other refusals: after routing (404, 405) and after
FastAPI reads a body the route takes (an unreadable one is refused first), before every
other dependency and parameter of the route.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection

from forge.services.common.known_query import known_query_values
from forge.services.common.no_body import no_unexpected_body
from forge.services.common.query_params import single_query_values


async def request_checks(connection: HTTPConnection) -> None:
    """App-wide dependency: 422 for a repeated query parameter the route does not take
    as a list, or one a `/v1` route does not take, else 400 `unexpected_body` for a body
    an API route does not take."""
    await single_query_values(connection)
    await known_query_values(connection)
    await no_unexpected_body(connection)
