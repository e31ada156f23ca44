"""The outcomes of a grading's live checks, kept on disk before the lab is sealed.

Live checks reach what the learner left running; the seal ends it. A grading cut off
after its seal (a crash, a stop of the service) is graded again at the next start, and
its live checks, run again, would find nothing and give FAILs nobody earned. So their
outcomes (and their evidence files) are made durable before the seal, and a grading of a
sealed lab takes them from here, when they were recorded for the same checks (a digest of
each live check as planned: criterion, index, host, command, input, expectations).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from forge.durable import replace_file, sync_path
from forge.templates.dsl_grading import Check, Criterion
from forge_verify.score import CheckResult, ScoreInputError, StreamOutput

MAX_RECORD_BYTES = 256 << 20  # far above what a template's live checks can write


def record_path(evidence_dir: Path) -> Path:
    """Where the live outcomes of the grading writing ``evidence_dir`` are kept: beside it,
    not in it (every file in it is evidence)."""
    return evidence_dir.with_name(evidence_dir.name + ".live.json")


def live_digest(items: list[tuple[Criterion, int, Check]]) -> str:
    """What identifies the planned live checks (a record of other checks is not used)."""
    planned = [[criterion.id, index, check.model_dump(mode="json")]
               for criterion, index, check in items]
    return hashlib.sha256(json.dumps(planned, sort_keys=True).encode()).hexdigest()


def keep_live(evidence_dir: Path, digest: str, results: list[CheckResult],
              evidence_files: list[Path]) -> None:
    """Make ``results`` and their ``evidence_files`` durable (written, then renamed)."""
    for path in evidence_files:
        sync_path(path)
    sync_path(evidence_dir)  # their names too: the record must never outlive them
    body = {"digest": digest, "results": [asdict(r) for r in results]}
    replace_file(record_path(evidence_dir), json.dumps(body).encode())


def _result(raw: dict[str, Any]) -> CheckResult:
    streams = {name: StreamOutput(**raw[name]) for name in ("stdout", "stderr")}
    return CheckResult(**{**raw, **streams, "command": tuple(raw["command"])})


def kept_live(evidence_dir: Path, digest: str) -> list[CheckResult] | None:
    """The live outcomes kept for the checks ``digest`` names; None when there are none,
    they were kept for other checks, or the record cannot be read."""
    path = record_path(evidence_dir)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_RECORD_BYTES + 1)
        if len(data) > MAX_RECORD_BYTES:
            return None
        body = json.loads(data)
        if not isinstance(body, dict) or body.get("digest") != digest:
            return None
        return [_result(raw) for raw in body["results"]]
    except (OSError, ValueError, TypeError, KeyError, RecursionError, ScoreInputError):
        return None
