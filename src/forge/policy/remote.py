"""Policy decisions from an OPA server over its REST Data API.

`POST {OPA_URL}/v1/data/<package/path>` with `{"input": …}` returns the package document
(`allow`, `deny_reasons`, helpers). Requests have timeouts and a bounded number of retries
with backoff; a circuit breaker stops hammering a dead server. `probe()` (for /readyz)
checks `GET /health` without touching the breaker. Every outage surfaces as
PolicyUnavailable: the caller fails closed and retries, never records a deny.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from forge.policy.decision import (
    Decision,
    GateDecisions,
    PolicyEvaluationError,
    PolicyUnavailable,
    check_input,
    check_package,
    decision_from_result,
)
from forge.policy.gates import entry_path, gate_decisions


class CircuitBreaker:
    """Closed → open after `threshold` consecutive failures; half-open after `reset_after`
    seconds lets one trial call through; its success closes the breaker again."""

    def __init__(
        self,
        threshold: int = 5,
        reset_after: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.reset_after = reset_after
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def state(self) -> str:
        """"closed", "open" or "half-open"."""
        with self._lock:
            if self._opened_at is None:
                return "closed"
            if self._clock() - self._opened_at >= self.reset_after:
                return "half-open"
            return "open"

    def allow_request(self) -> bool:
        """May a call go out now? In half-open state only one trial at a time."""
        with self._lock:
            if self._opened_at is None:
                return True
            if self._clock() - self._opened_at < self.reset_after or self._trial_in_flight:
                return False
            self._trial_in_flight = True
            return True

    def record_success(self) -> None:
        """A call succeeded: close the breaker."""
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial_in_flight = False

    def record_failure(self) -> None:
        """A call failed: count it; open (or re-open) the breaker at the threshold."""
        with self._lock:
            self._failures += 1
            if self._trial_in_flight or self._failures >= self.threshold:
                self._opened_at = self._clock()
            self._trial_in_flight = False


class RemoteEngine:
    """PolicyEngine backed by an OPA (or forge.policy.opa_server) REST Data API."""

    def __init__(
        self,
        url: str,
        *,
        policy_hash: str = "",
        timeout: float = 2.0,
        retries: int = 2,
        backoff: float = 0.05,
        breaker: CircuitBreaker | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._policy_hash = policy_hash
        self.retries = max(0, retries)
        self.backoff = backoff
        self.breaker = breaker if breaker is not None else CircuitBreaker()
        self._client = client if client is not None else httpx.Client(timeout=timeout)

    @property
    def policy_hash(self) -> str:
        """Hash of the local policy bundle the server is expected to run (set by caller)."""
        return self._policy_hash

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        if not self.breaker.allow_request():
            raise PolicyUnavailable(f"policy engine at {self.url} unavailable (circuit open)")
        last: str = "no attempt made"
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * (2 ** (attempt - 1)))
            try:
                resp = self._client.post(f"{self.url}{path}", json=body)
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}"
                continue
            if resp.status_code >= 500:
                last = f"HTTP {resp.status_code}"
                continue
            self.breaker.record_success()
            if resp.status_code != 200:
                raise PolicyEvaluationError(
                    f"policy engine refused the query: HTTP {resp.status_code} {resp.text[:200]}"
                )
            try:
                return resp.json()
            except ValueError as exc:
                raise PolicyEvaluationError("policy engine answered with invalid JSON") from exc
        self.breaker.record_failure()
        raise PolicyUnavailable(
            f"policy engine at {self.url} unavailable after {self.retries + 1} attempt(s): {last}"
        )

    def decide(self, package: str, input: Mapping[str, Any]) -> Decision:
        """POST the input to the package's Data API path and normalise the answer."""
        check_package(package)
        check_input(input)
        doc = self._post("/v1/data/" + package.replace(".", "/"), {"input": dict(input)})
        if not isinstance(doc, dict):
            raise PolicyEvaluationError("policy engine answered with a non-object")
        result = doc.get("result")
        if result is None:
            return decision_from_result(package, None, None, self.policy_hash)
        if not isinstance(result, dict):
            raise PolicyEvaluationError(f"data.{package} is not a package document")
        return decision_from_result(
            package, result.get("allow"), result.get("deny_reasons"), self.policy_hash
        )

    def decide_gates(self, entry: str, input: Mapping[str, Any]) -> GateDecisions:
        """POST the input to `forge/gates/<entry>` once and normalise every gate's answer."""
        path = entry_path(entry)
        check_input(input)
        doc = self._post("/v1/data/" + path.replace(".", "/"), {"input": dict(input)})
        if not isinstance(doc, dict):
            raise PolicyEvaluationError("policy engine answered with a non-object")
        return gate_decisions(entry, doc.get("result"), self.policy_hash)

    def probe(self) -> None:
        """Readiness: GET /health once; raises PolicyUnavailable; never trips the breaker."""
        try:
            resp = self._client.get(f"{self.url}/health")
        except httpx.HTTPError as exc:
            raise PolicyUnavailable(
                f"policy engine at {self.url} unreachable: {type(exc).__name__}"
            ) from exc
        if resp.status_code != 200:
            raise PolicyUnavailable(f"policy engine at {self.url} not healthy: {resp.status_code}")
