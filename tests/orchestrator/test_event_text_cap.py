"""A check's output in the completion event is capped by its encoded size.

A learner controls what some checks print; control bytes grow sixfold in JSON (`\\u0000`),
so a cap on raw bytes let a few checks push the event past its 1 MiB limit and fail the
lab's grading. The cap now holds for the encoded text, which stays a prefix of the output.
"""

from __future__ import annotations

import json

from forge.services.orchestrator.grade_lab import EVENT_TEXT_CAP, _result_dict
from forge_verify.score import CheckResult, StreamOutput


def _result(text: str) -> CheckResult:
    stream = StreamOutput(text=text, sha256="0" * 64, size=len(text.encode()),
                          truncated=False)
    return CheckResult(criterion_id="c", check_index=0, passed=False, exit_code=0,
                       stdout=stream, stderr=stream, timed_out=False, duration_ms=1,
                       container="learner", command=("/bin/cat", "/home/learner/answer"))


def test_control_bytes_are_capped_by_their_encoded_size() -> None:
    text = "\x00" * EVENT_TEXT_CAP
    record = _result_dict(_result(text))
    for stream in ("stdout", "stderr"):
        out = record[stream]
        assert out["truncated"] is True
        assert text.startswith(out["text"]) and out["text"]
        assert len(json.dumps(out["text"], ensure_ascii=False).encode()) <= EVENT_TEXT_CAP


def test_short_output_is_carried_whole() -> None:
    record = _result_dict(_result("token 42\n"))
    assert record["stdout"]["text"] == "token 42\n" and not record["stdout"].get("truncated")
