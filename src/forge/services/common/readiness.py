"""Readiness checks: each service registers what the runbook's checklist names for it."""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from forge.services.common.logging import Redactor

Detail = str | dict[str, Any] | None
CheckFn = Callable[[], Awaitable[Detail] | Detail]
_URL_CREDENTIALS = re.compile(r"(://)[^/@\s]+@")
log = logging.getLogger("forge.readiness")
# Set for a run an operator asked for: checks that trust an earlier answer for a while
# (`forge.services.common.peer_check`) ask again.
FRESH: ContextVar[bool] = ContextVar("forge_readiness_fresh", default=False)


class CheckFailed(Exception):
    """Raised by a check with an operator-facing reason (never a secret)."""


@dataclass
class _Check:
    name: str
    fn: CheckFn
    timeout_s: float


@dataclass
class Readiness:
    """An ordered set of named checks; `run` executes them concurrently with timeouts."""

    redactor: Redactor = field(default_factory=Redactor)
    _checks: list[_Check] = field(default_factory=list)
    _failing: set[str] = field(default_factory=set)

    def add(self, name: str, fn: CheckFn, timeout_s: float = 3.0) -> None:
        """Register a check; it passes by returning (optionally a detail) and fails by raising."""
        self._checks.append(_Check(name, fn, timeout_s))

    @property
    def names(self) -> list[str]:
        return [c.name for c in self._checks]

    async def _one(self, check: _Check) -> dict[str, Any]:
        try:
            result = check.fn()
            if inspect.isawaitable(result):
                result = await asyncio.wait_for(result, check.timeout_s)
            return {"ok": True, "detail": result or "ok"}
        except TimeoutError:
            return {"ok": False, "detail": f"timed out after {check.timeout_s:g}s"}
        except CheckFailed as exc:
            return {"ok": False, "detail": self._clean(str(exc))}
        except Exception as exc:
            return {"ok": False, "detail": self._clean(f"{type(exc).__name__}: {exc}")}

    def _clean(self, text: str) -> str:
        return self.redactor(_URL_CREDENTIALS.sub(r"\1***@", text))[:500]

    async def run(self, only: frozenset[str] | None = None) -> tuple[bool, dict[str, Any]]:
        """Run every check, or the named ones (`only`, names from `names`); returns (all
        run passed, JSON body naming each failed check)."""
        chosen = self._checks if only is None else [c for c in self._checks if c.name in only]
        results = await asyncio.gather(*(self._one(c) for c in chosen))
        checks = {c.name: r for c, r in zip(chosen, results, strict=True)}
        failed = [name for name, r in checks.items() if not r["ok"]]
        self._log_changes(checks, failed)
        body: dict[str, Any] = {"status": "ready" if not failed else "not_ready",
                                "failed": failed, "checks": checks}
        if failed:
            body.update(error="not_ready", message="failed checks: " + ", ".join(failed))
        return not failed, body

    def _log_changes(self, checks: dict[str, Any], failed: list[str]) -> None:
        """One log line when a check starts failing and one when it recovers (not per poll),
        so the operator finds in the log what /readyz showed."""
        for name in failed:
            if name not in self._failing:
                log.warning("readiness check %s failed: %s", name, checks[name]["detail"])
        for name in sorted((self._failing & checks.keys()) - set(failed)):
            log.info("readiness check %s recovered", name)
        # A check not run this time keeps the state it had.
        self._failing = (self._failing - checks.keys()) | set(failed)
