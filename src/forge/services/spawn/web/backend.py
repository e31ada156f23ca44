"""Server-side calls from spawn_service to the orchestrator and the scoreboard.

The browser only talks to spawn_service; the pages it needs from the other services are
fetched here with the operator token, after the web layer has checked who may see what.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from forge.config.settings import Settings

TIMEOUT_S = 10.0


class BackendError(Exception):
    """A service could not be reached or answered with an error; `status` is its HTTP code."""

    def __init__(self, service: str, status: int, message: str) -> None:
        super().__init__(f"{service}: {message}")
        self.service = service
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Backend:
    """HTTP client settings for the internal services."""

    settings: Settings

    def _headers(self) -> dict[str, str]:
        return {"Authorization": "Bearer " + self.settings.operator.current.decode()}

    async def _call(self, service: str, base: str, method: str, path: str,
                    **kwargs: Any) -> httpx.Response:
        try:
            async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT_S) as client:
                resp = await client.request(method, path, headers=self._headers(), **kwargs)
        except httpx.HTTPError as exc:
            raise BackendError(service, 503, f"unreachable ({type(exc).__name__})") from None
        if resp.status_code >= 400:
            raise BackendError(service, resp.status_code, _message(resp))
        return resp

    async def orchestrator(self, method: str, path: str, **kwargs: Any) -> Any:
        """JSON answer of an orchestrator call."""
        resp = await self._call("orchestrator", self.settings.orchestrator_url, method, path,
                                **kwargs)
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
            async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT_S) as client:
                # The operator token: without it /readyz names failed checks but no detail.
                resp = await client.get("/readyz", headers=self._headers())
            body = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            return {"status": "unreachable", "checks": {
                "http": {"ok": False, "detail": f"unreachable ({type(exc).__name__})"}}}
        return body if isinstance(body, dict) else {"status": "unknown", "checks": {}}


def _message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return f"HTTP {resp.status_code}"
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])[:300]
    return f"HTTP {resp.status_code}"
