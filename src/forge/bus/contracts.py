"""Typed, versioned event contracts: one pydantic model per subject, shared by both ends.

Events cross machines, so their bodies are contracts, not dicts. Every model is frozen,
refuses unknown fields, takes types strictly (no "yes" for a boolean, no `true` for an exit
code) and bounds every string and list so a hostile event cannot blow memory. Each carries
`v`, its contract version. Bodies published before contracts existed have no `v` and are
exactly version 1, so a missing `v` reads as 1; any other value is refused as
`unknown_version`, never guessed.

Publishers build a model and call `publish_event` (or `encode`); consumers call `decode` /
`decode_as` and get the model or a `ContractError` whose `code` is stable:
`unknown_subject`, `unknown_version` or `invalid_event` (naming field paths, never echoing
a value, so SAT/ET tokens stay out of failed-event reasons).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, ValidationError

from forge.bus.evidence_pack import EVIDENCE_NAME_PATTERN, INLINE_PACK_LIMIT
from forge.bus.publisher import PublishAck, Publisher
from forge.bus.subjects import (
    SCENARIO_COMPLETED,
    SCENARIO_ENDED,
    SCENARIO_STATES,
    SCENARIO_SUBMIT,
    SCORE_FINALIZED,
    SPAWN_REQUESTED,
    scenario_subject,
)
from forge.templates import dsl_limits as L
from forge.templates.dsl_limits import NAME_PATTERN
from forge_verify.score import CRITERION_ID_RE, SCENARIO_ID_RE, SHA256_RE

MAX_EVENT_BYTES = 1 << 20
"""A body above this is refused before parsing (NATS' default max payload)."""
MAX_TEXT = 256
MAX_TOKEN = 8192
MAX_OUTPUT_TEXT = 64 * 1024
MAX_ITEMS = 256
MAX_REASON = 4096
# Same format as forge.identity.names (a sibling of the bus layer, so not importable here;
# tests/bus/test_contracts.py checks the two agree).
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}$"
TRACK_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"

UNKNOWN_SUBJECT = "unknown_subject"
UNKNOWN_VERSION = "unknown_version"
INVALID_EVENT = "invalid_event"


class ContractError(ValueError):
    """An event that does not meet its subject's contract; `code` is stable for audits."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _iso_time(value: str) -> str:
    """Keep the text as sent (it is hashed and compared) but insist it is a zoned time."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise ValueError("time has no timezone")
    return value


ScenarioId = Annotated[str, Field(pattern=f"^{SCENARIO_ID_RE.pattern}$")]
Sha256 = Annotated[str, Field(pattern=f"^{SHA256_RE.pattern}$")]
CriterionId = Annotated[str, Field(pattern=f"^{CRITERION_ID_RE.pattern}$")]
PartyId = Annotated[str, Field(pattern=ID_PATTERN)]
Track = Annotated[str, Field(pattern=TRACK_PATTERN)]
TemplateName = Annotated[str, Field(pattern=NAME_PATTERN)]
Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]
Token = Annotated[str, Field(min_length=1, max_length=MAX_TOKEN)]
IsoTime = Annotated[str, Field(max_length=40), AfterValidator(_iso_time)]
Count = Annotated[int, Field(ge=0, le=1 << 53)]
EvidenceName = Annotated[str, Field(pattern=EVIDENCE_NAME_PATTERN)]


class Part(BaseModel):
    """Base of every event body and nested object: frozen, strict, closed."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, populate_by_name=True)


class Contract(Part):
    """Base of every event body; `v` is the contract version."""

    SUBJECT: ClassVar[str] = ""
    v: Literal[1] = 1

    def bus_subject(self) -> str:
        """The subject this event is published on."""
        return type(self).SUBJECT


class SpawnRequestedV1(Contract):
    """`forge.spawn.requested`: spawn_service asks the orchestrator to build a lab."""

    SUBJECT: ClassVar[str] = SPAWN_REQUESTED
    scenario_id: ScenarioId
    request_id: Text
    track: Track
    template_id: TemplateName
    tenant_id: PartyId
    subject: PartyId
    plan: Text
    retention_days: Count
    sat: Token
    et: Token
    requested_at: IsoTime


SUBMITTED = "submitted"  # a submit's reason; the scenario's state reason while it grades


class ScenarioSubmitV1(Contract):
    """`forge.scenario.submit`: the learner asks for grading."""

    SUBJECT: ClassVar[str] = SCENARIO_SUBMIT
    scenario_id: ScenarioId
    tenant_id: PartyId
    subject: PartyId
    reason: Text = SUBMITTED


class ScenarioTransitionV1(Contract):
    """`forge.scenario.<state>` (every state but `completed`): a lifecycle transition."""

    scenario_id: ScenarioId
    state: Literal["pending", "launching", "running", "grading", "failed", "expired",
                   "deleted"]
    from_state: Text | None = Field(default=None, alias="from")
    reason: Annotated[str, Field(max_length=MAX_REASON)]
    at: IsoTime
    tenant_id: PartyId
    subject: PartyId
    track: Track
    expires_at: IsoTime | None = None

    def bus_subject(self) -> str:
        """`forge.scenario.<state>`."""
        return scenario_subject(self.state)


class ScenarioEndedV1(Contract):
    """`forge.scenario.ended`: the slim terminal notice (no results) learner-side hears."""

    SUBJECT: ClassVar[str] = SCENARIO_ENDED
    scenario_id: ScenarioId
    state: Literal["completed", "failed", "expired", "deleted"]


class TemplateRefV1(Part):
    """The template a lab was built from, by name and content hash."""

    name: TemplateName
    sha256: Sha256


class OutputV1(Part):
    """One captured output stream as carried by the event (text may be truncated)."""

    text: Annotated[str, Field(max_length=MAX_OUTPUT_TEXT)]
    sha256: Sha256
    size: Count
    truncated: bool = False


class CheckResultV1(Part):
    """One graded check."""

    criterion_id: CriterionId
    check_index: Annotated[int, Field(ge=0, le=MAX_ITEMS)]
    passed: bool
    exit_code: int | None
    stdout: OutputV1
    stderr: OutputV1
    timed_out: bool = False
    duration_ms: Count = 0
    container: Annotated[str, Field(max_length=MAX_TEXT)] = ""
    command: Annotated[tuple[Annotated[str, Field(max_length=L.MAX_ARG_CHARS)], ...],
                       Field(max_length=L.MAX_ARGV)] = ()


class EvidenceObjectV1(Part):
    """A pack of evidence in the Object Store (`forge.bus.evidence_pack`): name, digest, size."""

    name: Annotated[str, Field(pattern=f"^{SCENARIO_ID_RE.pattern}\\.{SHA256_RE.pattern}$")]
    sha256: Sha256
    size: Count


class ScenarioCompletedV1(Contract):
    """`forge.scenario.completed`: grading results the scoreboard verifies and scores.

    `evidence_pack` (inline, base64) or `evidence_object` (an Object Store reference) carry
    the full outputs and the audit log through `scenario.completed`, so the scoreboard needs
    no disk shared with the node. Both are optional: an event from before they existed
    still decodes (added compatibly; consumers were upgraded first)."""

    SUBJECT: ClassVar[str] = SCENARIO_COMPLETED
    scenario_id: ScenarioId
    run_id: Text
    track: Track
    template: TemplateRefV1
    tenant_id: PartyId
    subject: PartyId
    plan: Text
    retention_days: Count
    completion_reason: Text
    started_at: IsoTime
    completed_at: IsoTime
    sat: Token | None
    et: Token | None
    variables: Annotated[dict[Annotated[str, Field(max_length=64)], JsonValue],
                         Field(max_length=MAX_ITEMS)] = Field(default_factory=dict)
    policy: Annotated[dict[Annotated[str, Field(max_length=64)], JsonValue],
                      Field(max_length=64)] = Field(default_factory=dict)
    results: Annotated[tuple[CheckResultV1, ...], Field(max_length=L.MAX_CHECKS_TOTAL)]
    evidence: Annotated[dict[EvidenceName, Sha256], Field(max_length=2 * MAX_ITEMS)] = Field(
        default_factory=dict)
    evidence_pack: Annotated[str, Field(max_length=(INLINE_PACK_LIMIT + 2) // 3 * 4,
                                        pattern=r"^[A-Za-z0-9+/]*={0,2}$")] | None = None
    evidence_object: EvidenceObjectV1 | None = None


class ScoreFinalizedV1(Contract):
    """`forge.score.finalized`: a signed verdict exists for the scenario."""

    SUBJECT: ClassVar[str] = SCORE_FINALIZED
    scenario_id: ScenarioId
    run_id: Text
    track: Track
    tenant_id: PartyId
    subject: PartyId
    plan: Text
    score: Annotated[int, Field(ge=0, le=1)] | Annotated[float, Field(ge=0, le=1)]
    passed: Count
    total: Count
    completed_at: IsoTime
    score_sha256: Sha256
    bundle: Text
    bundle_sha256: Sha256
    verdict_sha256: Sha256
    verdict_pub_sha256: Sha256
    key_id: Text | None


EventModel = (SpawnRequestedV1 | ScenarioSubmitV1 | ScenarioTransitionV1 | ScenarioEndedV1
              | ScenarioCompletedV1 | ScoreFinalizedV1)
M = TypeVar("M", bound=Contract)

CONTRACTS: dict[str, dict[int, type[Contract]]] = {
    SPAWN_REQUESTED: {1: SpawnRequestedV1},
    SCENARIO_SUBMIT: {1: ScenarioSubmitV1},
    SCENARIO_ENDED: {1: ScenarioEndedV1},
    SCENARIO_COMPLETED: {1: ScenarioCompletedV1},
    SCORE_FINALIZED: {1: ScoreFinalizedV1},
    **{scenario_subject(s): {1: ScenarioTransitionV1}
       for s in SCENARIO_STATES if s != "completed"},
}
"""Subject → {version: model}. A rollout of version 2 adds `2: ...V2` beside `1`."""

def payload(event: Contract) -> dict[str, Any]:
    """The JSON-ready body of an event (aliases applied, every field present)."""
    return event.model_dump(mode="json", by_alias=True)


def encode(event: Contract) -> bytes:
    """Compact, key-sorted UTF-8 JSON of the event (as `forge.bus.events.encode_event`)."""
    return json.dumps(payload(event), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False).encode("utf-8")


def _field_errors(exc: ValidationError) -> str:
    parts: list[str] = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        path = ".".join(str(p) for p in err["loc"]) or "(body)"
        parts.append(f"{path}: {err['msg']}")
    more = f" (+{len(parts) - 5} more)" if len(parts) > 5 else ""
    return "; ".join(parts[:5]) + more


def _validate(versions: dict[int, type[Contract]], subject: str, raw: bytes) -> Contract:
    if len(raw) > MAX_EVENT_BYTES:
        raise ContractError(INVALID_EVENT, f"body: {len(raw)} bytes, above {MAX_EVENT_BYTES}")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise ContractError(INVALID_EVENT, "body: not valid JSON") from None
    if not isinstance(data, dict):
        raise ContractError(INVALID_EVENT,
                            f"body: expected a JSON object, got {type(data).__name__}")
    version = data.get("v", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version not in versions:
        known = ", ".join(str(k) for k in sorted(versions))
        shown = repr(version)[:20] if isinstance(version, int | str) else type(version).__name__
        raise ContractError(UNKNOWN_VERSION,
                            f"v: {shown} is not a version of {subject} this consumer knows "
                            f"({known})")
    try:
        return versions[version].model_validate_json(raw, strict=True)
    except ValidationError as exc:
        raise ContractError(INVALID_EVENT, _field_errors(exc)) from None


def decode(subject: str, raw: bytes) -> Contract:
    """The event body as its subject's model, or `ContractError` saying why not."""
    versions = CONTRACTS.get(subject)
    if versions is None:
        raise ContractError(UNKNOWN_SUBJECT, f"subject: no contract for {subject[:200]!r}")
    return _validate(versions, subject, raw)


def parse(model: type[M], data: Mapping[str, Any]) -> M:
    """A body held as a mapping (a stored file, a test's fixture) read as exactly `model`,
    through the same JSON path and checks as `decode`."""
    try:
        raw = json.dumps(dict(data), sort_keys=True, separators=(",", ":"),
                         ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ContractError(INVALID_EVENT, f"body: not JSON-serialisable ({exc})") from None
    event = _validate({1: model}, model.SUBJECT or model.__name__, raw)
    assert isinstance(event, model)
    return event


def decode_as(model: type[M], subject: str, raw: bytes) -> M:
    """`decode`, when the consumer expects one model; another subject is `unknown_subject`."""
    event = decode(subject, raw)
    if not isinstance(event, model):
        raise ContractError(UNKNOWN_SUBJECT,
                            f"subject: {subject[:200]!r} does not carry {model.__name__}")
    return event


async def publish_event(publisher: Publisher, event: Contract, *, msg_id: str) -> PublishAck:
    """Publish a contract on its own subject and wait for JetStream to store it."""
    return await publisher.publish(event.bus_subject(), payload(event), msg_id=msg_id)


__all__ = [
    "CONTRACTS",
    "INVALID_EVENT",
    "UNKNOWN_SUBJECT",
    "UNKNOWN_VERSION",
    "CheckResultV1",
    "Contract",
    "ContractError",
    "EventModel",
    "EvidenceObjectV1",
    "OutputV1",
    "Part",
    "ScenarioCompletedV1",
    "ScenarioEndedV1",
    "ScenarioSubmitV1",
    "ScenarioTransitionV1",
    "ScoreFinalizedV1",
    "SpawnRequestedV1",
    "TemplateRefV1",
    "decode",
    "decode_as",
    "encode",
    "parse",
    "payload",
    "publish_event",
]
