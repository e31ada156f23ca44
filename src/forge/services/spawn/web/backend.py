"""Server-side calls from spawn_service to the orchestrator and the scoreboard.

The browser only talks to spawn_service; the pages it needs from the other services are
fetched here with the operator token, after the web layer has checked who may see what.
Every call goes through the app's one shared HTTP client (pooled connections, closed at
shutdown), never a client of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx

from forge.config.settings import Settings
from forge.errors import ForgeError
from forge.services.common.auth import RequestTarget, service_token
from forge.services.common.http_client import SharedHttpClient
from forge.services.spawn.node_routing import (
    node_base,
    node_silent_after_send,
    node_unreachable,
)

TIMEOUT_S = 10.0
_CODE = re.compile(r"^[a-z][a-z0-9_]{0,63}\Z")


# The request never left: no connection was made (or none was free in the pool).
UNSENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class BackendError(ForgeError):
    """A service could not be reached (502) or refused the call (its 4xx, or 502 for its
    5xx but a 503 that says it is stopping, passed on with its Retry-After); the message
    starts with the service's name."""

    def __init__(self, service: str, code: str, status: int, message: str, *,
                 unsent: bool = False, headers: dict[str, str] | None = None,
                 details: list[Any] | None = None,
                 said_details: list[Any] | None = None) -> None:
        super().__init__(code, status, f"{service}: {message}", details, headers=headers)
        self.service = service
        self.said = message  # the service's own message, without its name
        # the details of the service's own refusal (a relay passes them on as its own)
        self.said_details: list[Any] = list(said_details or [])
        self.unsent = unsent  # no connection was made: the service certainly did nothing

    def relayed(self) -> ForgeError:
        """This refusal of a lab's node as an API of spawn_service answers it: the node's
        status, code, details and Retry-After, its message without the internal service's
        name ("orchestrator: …", a service API clients never address); a node that failed
        (5xx) reads "lab node: …"."""
        said = self.said if self.status < 500 or self.code == "lab_node_unreachable" \
            else f"lab node: {self.said}"
        return ForgeError(self.code, self.status, said, self.details or self.said_details,
                          headers=self.headers)


@dataclass(frozen=True)
class Backend:
    """Calls to the internal services over the app's shared HTTP client."""

    settings: Settings
    http: SharedHttpClient

    def _signed(self, service: str, base: str, method: str, path: str,
                **kwargs: Any) -> httpx.Request:
        """The request, with a service token (SAT keyring, not OPERATOR_TOKEN: see
        services.common.auth) made for it alone: ``service`` (its name), the method, the
        whole target as sent and the body."""
        request = self.http.client.build_request(method, _url(base, path), timeout=TIMEOUT_S,
                                                 **kwargs)
        bound = RequestTarget.of(service, method, request.url.raw_path.decode("latin-1"),
                                 request.content)
        request.headers["Authorization"] = "Bearer " + service_token(self.settings, bound)
        return request

    async def _call(self, service: str, base: str, method: str, path: str,
                    **kwargs: Any) -> httpx.Response:
        try:
            resp = await self.http.client.send(self._signed(service, base, method, path,
                                                            **kwargs))
        except httpx.HTTPError as exc:
            raise BackendError(service, "backend_unreachable", 502,
                               f"unreachable ({type(exc).__name__})",
                               unsent=isinstance(exc, UNSENT)) from None
        if resp.status_code >= 400:
            code, message, said = _refusal(resp)
            if resp.status_code == 503 and code == STOPPING:  # try again shortly
                raise BackendError(service, code, 503, message, headers={
                    "Retry-After": _seconds(resp.headers.get("retry-after"))})
            status = resp.status_code if resp.status_code < 500 else 502
            raise BackendError(service, code, status, message,
                               said_details=said if resp.status_code < 500 else None)
        return resp

    async def orchestrator(self, method: str, path: str, **kwargs: Any) -> Any:
        """JSON answer of an orchestrator call."""
        resp = await self._call("orchestrator", self.settings.orchestrator_url, method, path,
                                **kwargs)
        return resp.json()

    async def lab_node(self, node_id: str | None, node_url: str | None, method: str,
                       path: str, **kwargs: Any) -> Any:
        """JSON answer of the node holding a lab (the row's node_url, written by that node;
        ORCHESTRATOR_URL for rows without one). A node that does not answer is a 503
        `lab_node_unreachable` naming it, not a hang."""
        if node_id is None:
            return await self.orchestrator(method, path, **kwargs)
        try:
            resp = await self._call("orchestrator", node_base(self.settings, node_url), method,
                                    path, **kwargs)
        except BackendError as exc:
            if exc.code != "backend_unreachable":
                raise
            gone = node_unreachable(node_id) if exc.unsent else node_silent_after_send(node_id)
            raise BackendError("orchestrator", gone.code, gone.status, gone.message,
                               unsent=exc.unsent, headers=gone.headers,
                               details=gone.details) from None
        return resp.json()

    async def scoreboard(self, method: str, path: str, **kwargs: Any) -> Any:
        """JSON answer of a scoreboard call."""
        resp = await self._call("scoreboard", self.settings.scoreboard_url, method, path,
                                **kwargs)
        return resp.json()

    async def scoreboard_raw(self, path: str) -> httpx.Response:
        """A scoreboard response as bytes (artifact downloads)."""
        return await self._call("scoreboard", self.settings.scoreboard_url, "GET", path)

    async def readiness(self, service: str) -> dict[str, Any]:
        """A service's /readyz body; unreachable services are reported, not raised."""
        base = {"orchestrator": self.settings.orchestrator_url,
                "scoreboard": self.settings.scoreboard_url}[service]
        try:
            # A service token for this one request: without a credential /readyz names
            # the failed checks but no detail.
            resp = await self.http.client.send(self._signed(service, base, "GET", "/readyz"))
            body = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            return {"status": "unreachable", "checks": {
                "http": {"ok": False, "detail": f"unreachable ({type(exc).__name__})"}}}
        return body if isinstance(body, dict) else {"status": "unknown", "checks": {}}


def _url(base: str, path: str) -> str:
    return base.rstrip("/") + path


STOPPING = "service_stopping"


def _seconds(value: str | None) -> str:
    """A service's Retry-After in whole seconds (1-60; 5 when it gave none we can read)."""
    if value and value.isascii() and value.isdigit() and len(value) < 4:
        return str(min(60, max(1, int(value))))
    return "5"  # none, a date, or not ASCII digits ("²" is a digit to str.isdigit)


def _refusal(resp: httpx.Response) -> tuple[str, str, list[Any]]:
    """The service's error code, message and details (its objects) from its error body,
    else generic ones."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    code, message, details = "backend_error", f"HTTP {resp.status_code}", []
    if isinstance(body, dict):
        if isinstance(body.get("error"), str) and _CODE.match(body["error"]):
            code = str(body["error"])
        if isinstance(body.get("message"), str):
            message = str(body["message"])[:300]
        if isinstance(body.get("details"), list):
            details = [d for d in body["details"][:20] if isinstance(d, dict)]
    return code, message, details
