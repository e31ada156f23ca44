"""Investigation holds: scenarios whose results retention must not delete.

Kept in `<storage_root>/retention/holds.json` (written atomically under a file lock, so
concurrent CLI runs and a running cleanup see a consistent set). Every hold and release is
appended to the global audit log.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock

from forge.audit.log import global_log
from forge.durable import replace_file
from forge.private_lock import private_lock
from forge_verify.keys import Signer
from forge_verify.score import require_scenario_id

HOLDS_FILE = Path("retention") / "holds.json"
MAX_REASON = 500


class HoldError(Exception):
    """The holds file cannot be read or written; the message says which and why."""


@dataclass(frozen=True)
class Hold:
    """One hold: which scenario, since when, and why."""

    scenario_id: str
    held_at: str
    reason: str


class HoldStore:
    """The set of held scenario ids of one installation."""

    def __init__(self, storage_root: Path, signer: Signer | None = None) -> None:
        self.storage_root = Path(storage_root)
        self.path = self.storage_root / HOLDS_FILE
        self.signer = signer
        self._lock = private_lock(self.path.with_name(self.path.name + ".lock"))

    def _read(self) -> dict[str, Hold]:
        try:
            raw = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise HoldError(f"{self.path}: unreadable holds file ({exc})") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("holds"), list):
            raise HoldError(f"{self.path}: expected {{\"holds\": [...]}}")
        holds: dict[str, Hold] = {}
        for item in raw["holds"]:
            try:
                hold = Hold(require_scenario_id(item["scenario_id"]), str(item["held_at"]),
                            str(item.get("reason", "")))
            except (KeyError, TypeError, ValueError):
                raise HoldError(f"{self.path}: malformed hold entry") from None
            holds[hold.scenario_id] = hold
        return holds

    def _write(self, holds: dict[str, Hold]) -> None:
        body: dict[str, Any] = {"holds": [asdict(h) for _, h in sorted(holds.items())]}
        data = json.dumps(body, indent=2, sort_keys=True).encode() + b"\n"
        replace_file(self.path, data)  # under the holds' lock

    def list(self) -> list[Hold]:
        """Every hold, by scenario id."""
        with self._locked():
            return [h for _, h in sorted(self._read().items())]

    def is_held(self, scenario_id: str) -> bool:
        """True when the scenario is under a hold."""
        with self._locked():
            return scenario_id in self._read()

    def held_ids(self) -> frozenset[str]:
        """All held ids at once (one read for a whole cleanup run)."""
        with self._locked():
            return frozenset(self._read())

    def hold(self, scenario_id: str, reason: str = "") -> tuple[Hold, bool]:
        """Place a hold (idempotent); returns the hold and whether it is new."""
        sid = require_scenario_id(scenario_id)
        if len(reason) > MAX_REASON:
            raise ValueError(f"reason: at most {MAX_REASON} characters")
        with self._locked():
            holds = self._read()
            if sid in holds:
                return holds[sid], False
            hold = Hold(sid, datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), reason)
            holds[sid] = hold
            self._write(holds)
        global_log(self.storage_root, signer=self.signer).append(
            "retention.hold", {"scenario_id": sid, "reason": reason})
        return hold, True

    def release(self, scenario_id: str) -> bool:
        """Lift a hold; returns False when there was none."""
        sid = require_scenario_id(scenario_id)
        with self._locked():
            holds = self._read()
            if holds.pop(sid, None) is None:
                return False
            self._write(holds)
        global_log(self.storage_root, signer=self.signer).append(
            "retention.release", {"scenario_id": sid})
        return True

    def _locked(self) -> FileLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return self._lock
