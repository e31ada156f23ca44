"""One outgoing HTTP client per service app, shared by every call the app makes.

A client per call opens a new connection each time and is closed only if every caller
remembers to. Here the app opens one pooled client when it first needs it, every call
reuses its connections, and the app's shutdown hook closes it.
"""

from __future__ import annotations

import asyncio
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx

DEFAULT_TIMEOUT_S = 10.0


class SharedHttpClient:
    """Holds the app's `httpx.AsyncClient`: created once on first use, closed at shutdown."""

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._timeout_s = timeout_s
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        """The shared client. A new one only after `close` (an app started again) or on
        another event loop (pooled connections belong to the loop that opened them)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._client.is_closed or self._loop is not loop:
            # No cookie jar: one client serves every learner's calls, so a cookie a peer
            # set must never ride along on someone else's request. No redirects either.
            self._client = httpx.AsyncClient(
                timeout=self._timeout_s, follow_redirects=False,
                cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])))
            self._loop = loop
        return self._client

    @property
    def is_open(self) -> bool:
        """True while a client exists and has not been closed."""
        return self._client is not None and not self._client.is_closed

    async def close(self) -> None:
        """Close the client and its pooled connections (the app's shutdown hook)."""
        client, self._client, self._loop = self._client, None, None
        if client is not None and not client.is_closed:
            await client.aclose()
