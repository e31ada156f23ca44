"""Continuous learner and operator traffic against a running installation, for rotation drills.

Each learner loops spawn → wait running → submit → wait verdict. Every HTTP answer that is
not the expected one is recorded as a failure, and so is every request refused or dropped at
connection level: nothing is retried. A rollout restarts services on their held listening
sockets, so a request made while one incarnation stops and the next starts waits in the
kernel's backlog and is answered by the next; none may be refused.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

MIN_CYCLE_S = 3.5


@dataclass
class Scenario:
    """One spawned scenario: in which rollout phase it was spawned, and its verdict."""

    scenario_id: str
    learner: str
    phase: str
    access_url: str
    verdict: dict[str, Any] | None = None
    # Why its learner gave up on it (a failure is recorded too); None while it is followed.
    abandoned: str | None = None


@dataclass
class Traffic:
    """Learner loops plus an operator loop; see the module docstring."""

    urls: dict[str, str]
    learners: dict[str, dict[str, str]]
    operator_tokens: list[str]
    phase: str = "before"
    failures: list[str] = field(default_factory=list)
    scenarios: dict[str, Scenario] = field(default_factory=dict)
    operator_calls: int = 0
    refused: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # Notified whenever a scenario is added, scored or abandoned (waits need no polling).
    _changed: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self._changed = threading.Condition(self._lock)

    def start(self) -> None:
        for name, headers in self.learners.items():
            self._threads.append(threading.Thread(target=self._learner, args=(name, headers),
                                                  daemon=True))
        self._threads.append(threading.Thread(target=self._operator, daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 120) -> None:
        """Let every learner finish the scenario it is on (its verdict included), then stop."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
            assert not thread.is_alive(), "traffic did not finish in time"

    def count(self, phase: str | None = None) -> int:
        with self._lock:
            return sum(1 for s in self.scenarios.values() if phase in (None, s.phase))

    def scored(self, phase: str) -> int:
        """How many scenarios spawned in `phase` have their verdict."""
        with self._lock:
            return sum(1 for s in self.scenarios.values() if s.phase == phase and s.verdict)

    def wait_scored(self, phases: set[str], timeout: float) -> None:
        """Block until every scenario spawned in `phases` has its verdict.

        Woken by each verdict as its learner receives it; raises at once (with the
        learner's failures) when a learner gave up on one of them, since that verdict
        will never be fetched, instead of waiting out `timeout` for it.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                mine = [s for s in self.scenarios.values() if s.phase in phases]
                gave_up = [f"{s.scenario_id}: {s.abandoned}" for s in mine if s.abandoned]
                if gave_up:
                    raise AssertionError("learners gave up on scenarios of "
                                         f"{sorted(phases)}: {gave_up}\n"
                                         + "\n".join(self.failures))
                waiting = [s.scenario_id for s in mine if s.verdict is None]
                if not waiting:
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout:.0f}s waiting for the "
                                         f"verdicts of {waiting}")
                self._changed.wait(left)

    # ------------------------------------------------------------------ plumbing
    def _fail(self, what: str, resp: httpx.Response | None = None, detail: str = "") -> None:
        text = f"{resp.status_code} {resp.text[:300]}" if resp is not None else detail
        with self._lock:
            self.failures.append(f"[{self.phase}] {what}: {text}")

    def _call(self, method: str, url: str, **kwargs: Any) -> httpx.Response | None:
        """One request on a fresh connection; refused or dropped is a failure, not retried."""
        try:
            return httpx.request(method, url, timeout=60, **kwargs)
        except httpx.HTTPError as exc:
            with self._lock:
                self.refused += 1
            self._fail(f"{method} {url}", detail=f"{type(exc).__name__}: {exc}")
            return None

    # ------------------------------------------------------------------ loops
    def _learner(self, name: str, headers: dict[str, str]) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            started = time.monotonic()
            try:
                self._one_scenario(name, headers, f"drill-{name}-{n:04d}")
            except Exception as exc:  # a timeout or a bad body is a failure, never silent
                self._fail(f"learner {name}", detail=f"{type(exc).__name__}: {exc}")
            # A learner within the plan: the drill's TEAM plan allows 20 spawns a minute.
            self._stop.wait(max(0.0, MIN_CYCLE_S - (time.monotonic() - started)))

    def _one_scenario(self, name: str, headers: dict[str, str], request_id: str) -> None:
        phase = self.phase
        resp = self._call("POST", f"{self.urls['spawn']}/v1/spawn", headers=headers,
                          json={"track": "netplus", "request_id": request_id})
        if resp is None or resp.status_code not in (200, 201):
            # 200 is the idempotent replay of a spawn retried after a refused connection.
            self._fail("spawn", resp)
            return
        body = resp.json()
        sid = body["scenario_id"]
        scenario = Scenario(sid, name, phase, body["access_url"])
        with self._changed:
            self.scenarios[sid] = scenario
            self._changed.notify_all()
        try:
            self._follow(scenario, headers)
        except Exception as exc:  # a timeout or a bad body is a failure, never silent
            self._fail(f"learner {name}", detail=f"{type(exc).__name__}: {exc}")
        finally:
            with self._changed:
                if scenario.verdict is None:
                    scenario.abandoned = "its learner gave up on it (see the failures)"
                self._changed.notify_all()

    def _follow(self, scenario: Scenario, headers: dict[str, str]) -> None:
        """Wait until it runs, submit, poll the verdict (stored on `scenario`)."""
        spawn, board, sid = self.urls["spawn"], self.urls["scoreboard"], scenario.scenario_id
        if not self._poll_running(sid, headers):
            return
        resp = self._call("POST", f"{spawn}/v1/scenarios/{sid}/submit", headers=headers)
        if resp is None or resp.status_code != 202:
            self._fail(f"submit {sid}", resp)
            return
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            resp = self._call("GET", f"{board}/v1/scores/{sid}", headers=headers)
            if resp is None:
                return
            if resp.status_code == 200:
                verdict = resp.json()
                with self._changed:
                    scenario.verdict = verdict
                    self._changed.notify_all()
                return
            # 404 is the scoreboard's documented "no verdict yet" while polling; nothing else.
            if resp.status_code != 404:
                self._fail(f"score {sid}", resp)
                return
            time.sleep(0.3)
        self._fail(f"score {sid}", detail="no verdict within 120 s")

    def _poll_running(self, sid: str, headers: dict[str, str]) -> bool:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            resp = self._call("GET", f"{self.urls['spawn']}/v1/scenarios/{sid}",
                              headers=headers)
            if resp is None:
                return False
            if resp.status_code != 200:
                self._fail(f"status {sid}", resp)
                return False
            state = resp.json()["state"]
            if state == "running":
                return True
            if state not in ("pending", "launching"):
                self._fail(f"status {sid}", detail=f"{state}: {resp.json().get('reason')}")
                return False
            time.sleep(0.25)
        self._fail(f"status {sid}", detail="not running within 120 s")
        return False

    def _operator(self) -> None:
        try:
            self._operator_loop()
        except Exception as exc:
            self._fail("operator", detail=f"{type(exc).__name__}: {exc}")

    def _operator_loop(self) -> None:
        """The operator's dashboards: every token in `operator_tokens` must be accepted."""
        i = 0
        while not self._stop.is_set():
            token = self.operator_tokens[i % len(self.operator_tokens)]
            auth = {"authorization": f"Bearer {token}"}
            for url in (f"{self.urls['orchestrator']}/v1/scenarios",
                        f"{self.urls['scoreboard']}/v1/admin/failed-events"):
                resp = self._call("GET", url, headers=auth)
                if resp is None or resp.status_code != 200:
                    self._fail(f"operator GET {url}", resp)
                with self._lock:
                    self.operator_calls += 1
            i += 1
            time.sleep(0.3)
