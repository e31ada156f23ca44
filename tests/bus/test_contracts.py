"""Event contracts: every subject round-trips through its model; anything else is refused
with a stable reason code naming the field, never echoing a token."""

from __future__ import annotations

import json
from typing import Any

import pytest

from forge.bus.contracts import (
    CONTRACTS,
    ID_PATTERN,
    INVALID_EVENT,
    MAX_EVENT_BYTES,
    MAX_OUTPUT_TEXT,
    UNKNOWN_SUBJECT,
    UNKNOWN_VERSION,
    Contract,
    ContractError,
    ScenarioCompletedV1,
    ScenarioEndedV1,
    ScenarioSubmitV1,
    ScenarioTransitionV1,
    ScoreFinalizedV1,
    SpawnRequestedV1,
    decode,
    decode_as,
    encode,
    parse,
)
from forge.bus.events import encode_event
from forge.bus.subjects import (
    SCENARIO_COMPLETED,
    SCENARIO_ENDED,
    SCENARIO_STATES,
    SCENARIO_SUBMIT,
    SCORE_FINALIZED,
    SPAWN_REQUESTED,
    scenario_subject,
)
from forge.identity import names

SID = "scn-0123456789abcdef"
SHA = "ab" * 32
SAT_TOKEN = "eyJhbGciOiJFZERTQSJ9.SAT-SECRET-VALUE.c2ln"
ET_TOKEN = "eyJhbGciOiJFZERTQSJ9.ET-SECRET-VALUE.c2ln"
AT = "2026-11-30T09:00:00Z"


def _output(text: str = "ok\n") -> dict[str, Any]:
    return {"text": text, "sha256": SHA, "size": len(text), "truncated": False}


def completed_body() -> dict[str, Any]:
    return {
        "scenario_id": SID, "run_id": f"{SID}.1", "track": "netplus",
        "template": {"name": "lab-netplus", "sha256": SHA}, "tenant_id": "acme",
        "subject": "alice", "plan": "PRO", "retention_days": 30,
        "completion_reason": "submitted", "started_at": "2026-11-30T08:40:00+00:00",
        "completed_at": "2026-11-30T09:00:00+00:00", "sat": SAT_TOKEN, "et": ET_TOKEN,
        "variables": {"secret": "s3cr3t", "port": "24000"},
        "policy": {"allow": True, "reasons": [], "input": {"cpu": 0.5}},
        "results": [{"criterion_id": "saved-page", "check_index": 0, "passed": True,
                     "exit_code": 0, "stdout": _output(), "stderr": _output(""),
                     "timed_out": False, "duration_ms": 12, "container": "learner",
                     "command": ["/bin/cat", "/workspace/answer.txt"]}],
        "evidence": {"saved-page.0.stdout": SHA, "saved-page.0.stderr": SHA},
    }


SAMPLES: dict[str, Contract] = {
    SPAWN_REQUESTED: SpawnRequestedV1(
        scenario_id=SID, request_id="req-0001", track="netplus", template_id="lab-netplus",
        tenant_id="acme", subject="alice", plan="PRO", retention_days=30, sat=SAT_TOKEN,
        et=ET_TOKEN, requested_at=AT),
    SCENARIO_SUBMIT: ScenarioSubmitV1(scenario_id=SID, tenant_id="acme", subject="alice"),
    SCENARIO_ENDED: ScenarioEndedV1(scenario_id=SID, state="completed"),
    SCENARIO_COMPLETED: parse(ScenarioCompletedV1, completed_body()),
    SCORE_FINALIZED: ScoreFinalizedV1(
        scenario_id=SID, run_id=f"{SID}.1", track="netplus", tenant_id="acme",
        subject="alice", plan="PRO", score=0.666667, passed=1, total=2, completed_at=AT,
        score_sha256=SHA, bundle="evidence.tar.zst", bundle_sha256=SHA, verdict_sha256=SHA,
        verdict_pub_sha256=SHA, key_id="k1"),
    **{scenario_subject(s): ScenarioTransitionV1.model_validate(
        {"scenario_id": SID, "state": s, "from_state": "pending", "reason": "because",
         "at": AT, "tenant_id": "acme", "subject": "alice", "track": "netplus",
         "expires_at": AT if s == "running" else None})
       for s in SCENARIO_STATES if s != "completed"},
}


def _refused(subject: str, body: dict[str, Any] | bytes) -> ContractError:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(ContractError) as caught:
        decode(subject, raw)
    return caught.value


def test_every_subject_has_a_contract_and_a_sample() -> None:
    assert set(CONTRACTS) == set(SAMPLES)


@pytest.mark.parametrize("subject", sorted(SAMPLES))
def test_round_trip(subject: str) -> None:
    event = SAMPLES[subject]
    raw = encode(event)
    assert event.bus_subject() == subject
    assert json.loads(raw)["v"] == 1
    assert raw == encode_event(json.loads(raw))  # same canonical bytes as the envelope
    again = decode(subject, raw)
    assert again == event and type(again) is type(event)
    assert encode(again) == raw


def test_transition_carries_from_on_the_wire() -> None:
    raw = json.loads(encode(SAMPLES[scenario_subject("running")]))
    assert raw["from"] == "pending" and "from_state" not in raw


def test_body_without_version_is_version_one() -> None:
    body = json.loads(encode(SAMPLES[SCENARIO_ENDED]))
    del body["v"]
    assert decode(SCENARIO_ENDED, json.dumps(body).encode()) == SAMPLES[SCENARIO_ENDED]


@pytest.mark.parametrize("version", [2, 0, "1", True, None, 1.0])
def test_unknown_version_is_refused(version: object) -> None:
    body = json.loads(encode(SAMPLES[SCENARIO_COMPLETED]))
    body["v"] = version
    err = _refused(SCENARIO_COMPLETED, body)
    assert err.code == UNKNOWN_VERSION
    assert str(err).startswith("unknown_version: v:")


def test_unknown_subject_is_refused() -> None:
    err = _refused("forge.scenario.bogus", json.loads(encode(SAMPLES[SCENARIO_ENDED])))
    assert err.code == UNKNOWN_SUBJECT
    with pytest.raises(ContractError) as caught:
        decode_as(ScenarioEndedV1, SCENARIO_SUBMIT, encode(SAMPLES[SCENARIO_SUBMIT]))
    assert caught.value.code == UNKNOWN_SUBJECT


def test_extra_field_is_refused_naming_it() -> None:
    body = json.loads(encode(SAMPLES[SPAWN_REQUESTED]))
    body["admin"] = True
    err = _refused(SPAWN_REQUESTED, body)
    assert err.code == INVALID_EVENT and "admin" in err.message
    nested = completed_body()
    nested["results"][0]["score_override"] = 1
    err = _refused(SCENARIO_COMPLETED, nested)
    assert err.code == INVALID_EVENT and "results.0.score_override" in err.message


def test_oversize_fields_are_refused() -> None:
    body = completed_body()
    body["results"][0]["stdout"] = _output("x" * (MAX_OUTPUT_TEXT + 1))
    err = _refused(SCENARIO_COMPLETED, body)
    assert err.code == INVALID_EVENT and "results.0.stdout.text" in err.message
    many = completed_body()
    many["results"] = many["results"] * 300
    err = _refused(SCENARIO_COMPLETED, many)
    assert err.code == INVALID_EVENT and "results" in err.message
    err = _refused(SCENARIO_COMPLETED, b"{" + b" " * MAX_EVENT_BYTES + b"}")
    assert err.code == INVALID_EVENT and "bytes" in err.message


@pytest.mark.parametrize(("path", "value", "named"), [
    (("results", 0, "passed"), "yes", "results.0.passed"),
    (("results", 0, "exit_code"), True, "results.0.exit_code"),
    (("results", 0, "check_index"), "0", "results.0.check_index"),
    (("results", 0, "stdout", "size"), -1, "results.0.stdout.size"),
    (("results", 0, "criterion_id"), "Bad Id", "results.0.criterion_id"),
    (("retention_days", ), 30.5, "retention_days"),
    (("scenario_id", ), "scn-../../etc", "scenario_id"),
    (("tenant_id", ), "acme/../x", "tenant_id"),
    (("started_at", ), "yesterday", "started_at"),
    (("completed_at", ), "2026-11-30T09:00:00", "completed_at"),
    (("evidence", ), {"../../passwd": SHA}, "evidence"),
    (("template", "sha256"), "0" * 63, "template.sha256"),
])
def test_forged_types_are_refused_naming_the_field(path: tuple[Any, ...], value: object,
                                                   named: str) -> None:
    body = completed_body()
    target: Any = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    err = _refused(SCENARIO_COMPLETED, body)
    assert err.code == INVALID_EVENT
    assert named in err.message, err.message


@pytest.mark.parametrize("field", ["sat", "et"])
def test_tokens_never_appear_in_error_text(field: str) -> None:
    token = SAT_TOKEN if field == "sat" else ET_TOKEN
    for bad in (token * 400, [token], {"t": token}):
        body = completed_body()
        body[field] = bad
        body["results"][0]["passed"] = token  # a second error that also carries the token
        err = _refused(SCENARIO_COMPLETED, body)
        assert err.code == INVALID_EVENT and field in err.message
        assert "SECRET-VALUE" not in str(err)
    spawn = json.loads(encode(SAMPLES[SPAWN_REQUESTED]))
    spawn[field] = token * 400
    assert "SECRET-VALUE" not in str(_refused(SPAWN_REQUESTED, spawn))


def test_not_json_or_not_an_object_is_invalid() -> None:
    assert _refused(SCENARIO_ENDED, b"\xff\xfe").code == INVALID_EVENT
    assert _refused(SCENARIO_ENDED, b"[1, 2]").code == INVALID_EVENT


def test_models_are_frozen() -> None:
    event = SAMPLES[SCENARIO_ENDED]
    with pytest.raises(ValueError):
        event.scenario_id = "scn-ffffffffffffffff"  # type: ignore[misc]


def test_party_id_format_is_the_identity_format() -> None:
    # The same body; Python ends at \Z ($ also matches before a final newline), the
    # contract's pydantic (Rust) pattern at $ (which does not).
    assert names._ID.pattern.removesuffix("\\Z") == ID_PATTERN.removesuffix("$")
