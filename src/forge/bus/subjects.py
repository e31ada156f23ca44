"""Subject names, durable consumer names and the JetStream stream that stores them.

One stream, `FORGE`, captures every Forge event on file storage with limits retention, so
several services may consume overlapping subjects (e.g. spawn_service and scoreboard both
read `forge.scenario.completed`) through their own durable consumers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nats.js import api
from nats.js.client import JetStreamContext
from nats.js.errors import APIError, NotFoundError, ServiceUnavailableError

from forge.bus.errors import BusError
from forge.config.node_settings import NODE_ID_RE

STREAM = "FORGE"

SPAWN_REQUESTED = "forge.spawn.requested"
SCORE_FINALIZED = "forge.score.finalized"

SCENARIO_STATES: tuple[str, ...] = (
    "pending",
    "launching",
    "running",
    "grading",
    "completed",
    "failed",
    "expired",
    "deleted",
)
TERMINAL_STATES: tuple[str, ...] = ("completed", "failed", "expired", "deleted")
SCENARIO_SUBMIT = "forge.scenario.submit"
SCENARIO_ALL = "forge.scenario.*"


def scenario_subject(state: str) -> str:
    """Subject of a lifecycle event, e.g. `forge.scenario.completed`."""
    if state not in SCENARIO_STATES:
        raise ValueError(
            f"state: unknown scenario state {state!r}; expected one of {SCENARIO_STATES}"
        )
    return f"forge.scenario.{state}"


SCENARIO_COMPLETED = scenario_subject("completed")
# The slim notice that a scenario reached a terminal state (scenario_id and state only): what
# learner-side services hear, since `forge.scenario.completed` carries the grading results.
SCENARIO_ENDED = "forge.scenario.ended"
SCENARIO_TERMINAL_SUBJECTS: tuple[str, ...] = tuple(scenario_subject(s) for s in TERMINAL_STATES)

# Durable consumer names, one per (service, purpose); replicas of a service share them.
DURABLE_ORCHESTRATOR_SPAWN = "orchestrator-spawn"
DURABLE_ORCHESTRATOR_SUBMIT = "orchestrator-submit"
DURABLE_SCOREBOARD_COMPLETED = "scoreboard-completed"
DURABLE_SPAWN_LIFECYCLE = "spawn-lifecycle"
# LTI grade passback (issue 18 item 4): the scoreboard hears its own verdicts to owe grades.
DURABLE_SCOREBOARD_LTI_GRADES = "scoreboard-lti-grades"

_SUBJECT_RE = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\Z")
_FILTER_RE = re.compile(r"^([A-Za-z0-9_-]+|\*)(\.([A-Za-z0-9_-]+|\*))*(\.>)?\Z")
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")


def check_subject(subject: str, *, wildcards: bool = False) -> str:
    """Return `subject` if it is a valid NATS subject (optionally with wildcards), else raise."""
    pattern = _FILTER_RE if wildcards else _SUBJECT_RE
    if not isinstance(subject, str) or not pattern.fullmatch(subject) or len(subject) > 255:
        kind = "subject filter" if wildcards else "subject (no wildcards)"
        raise ValueError(f"subject: {subject!r} is not a valid NATS {kind}")
    return subject


def check_name(value: str, field_name: str) -> str:
    """Return `value` if it is a valid stream/consumer name (1-64 of A-Z a-z 0-9 _ -)."""
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise ValueError(f"{field_name}: {value!r} must be 1-64 characters of A-Z a-z 0-9 _ -")
    return value


@dataclass(frozen=True)
class StreamSpec:
    """The parts of a stream's configuration Forge owns; `ensure_streams` enforces them."""

    name: str
    subjects: tuple[str, ...]
    max_age_seconds: float = 7 * 24 * 3600.0
    duplicate_window_seconds: float = 10 * 60.0
    max_bytes: int = -1
    replicas: int = 1
    description: str = ""

    def __post_init__(self) -> None:
        check_name(self.name, "name")
        if not self.subjects:
            raise ValueError("subjects: at least one subject is required")
        for subject in self.subjects:
            check_subject(subject, wildcards=True)
        if self.duplicate_window_seconds > self.max_age_seconds:
            raise ValueError("duplicate_window_seconds: must not exceed max_age_seconds")
        if self.replicas < 1:
            raise ValueError("replicas: must be >= 1")

    def config(self) -> api.StreamConfig:
        """The nats-py StreamConfig for this spec (file storage, limits retention)."""
        return api.StreamConfig(
            name=self.name,
            description=self.description or None,
            subjects=list(self.subjects),
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            discard=api.DiscardPolicy.OLD,
            max_age=self.max_age_seconds,
            max_bytes=self.max_bytes,
            duplicate_window=self.duplicate_window_seconds,
            num_replicas=self.replicas,
        )


# Lab nodes (issue 15 item 3): a submit goes to the node holding the lab on its own subject
# (`forge.scenario.submit.<node_id>`, four tokens, so `forge.scenario.*` does not match it),
# read by that node's own durable; `forge.scenario.submit` stays for rows without a node.
# These live in their own stream, FORGE_NODES, so that the per-node durables (granted by
# name wildcard, one per node) can never reach a durable of the FORGE stream.
NODE_STREAM = "FORGE_NODES"
SCENARIO_SUBMIT_NODES = "forge.scenario.submit.*"
DURABLE_NODE_SUBMIT_PREFIX = "orchestrator-submit-"


def node_submit_subject(node_id: str) -> str:
    """`forge.scenario.submit.<node_id>`: submits for the labs one node holds."""
    if not NODE_ID_RE.fullmatch(node_id):
        raise ValueError(f"node_id: {node_id[:40]!r} is not a node id")
    return f"{SCENARIO_SUBMIT}.{node_id}"


def node_submit_durable(node_id: str) -> str:
    """The durable consumer name of one node's submit subject."""
    node_submit_subject(node_id)
    return f"{DURABLE_NODE_SUBMIT_PREFIX}{node_id}"


FORGE_STREAM = StreamSpec(
    name=STREAM,
    subjects=(SPAWN_REQUESTED, SCENARIO_ALL, SCORE_FINALIZED),
    description="FrostGate Forge events: spawn requests, scenario lifecycle, final scores",
)
NODES_STREAM = StreamSpec(
    name=NODE_STREAM,
    subjects=(SCENARIO_SUBMIT_NODES,),
    description="FrostGate Forge work for one lab node: submits of the labs it holds",
)
FORGE_STREAMS: tuple[StreamSpec, ...] = (FORGE_STREAM, NODES_STREAM)


def subject_matches(pattern: str, subject: str) -> bool:
    """Whether `subject` (no wildcards) is one `pattern` covers (`*` one token, `>` the rest)."""
    want, have = pattern.split("."), subject.split(".")
    for i, part in enumerate(want):
        if part == ">":
            return len(have) > i
        if i >= len(have) or (part != "*" and part != have[i]):
            return False
    return len(want) == len(have)


def stream_of(subject: str, streams: tuple[StreamSpec, ...] = FORGE_STREAMS) -> str | None:
    """The name of the stream among `streams` that stores `subject`, if any."""
    for spec in streams:
        if any(subject_matches(pattern, subject) for pattern in spec.subjects):
            return spec.name
    return None

_STREAM_NAME_IN_USE = 10058


def _differs(spec: StreamSpec, current: api.StreamConfig) -> list[str]:
    """Names of the owned fields whose live value differs from the spec."""
    want = spec.config()
    diffs: list[str] = []
    if sorted(current.subjects or []) != sorted(want.subjects or []):
        diffs.append("subjects")
    for name in ("retention", "storage", "discard", "max_bytes", "num_replicas"):
        if getattr(current, name) != getattr(want, name):
            diffs.append(name)
    for name in ("max_age", "duplicate_window"):
        if abs(float(getattr(current, name) or 0) - float(getattr(want, name) or 0)) > 1e-3:
            diffs.append(name)
    return diffs


def _replicas_hint(spec: StreamSpec) -> str:
    """What to check when a replicated stream is refused (too few servers, no cluster)."""
    if spec.replicas == 1:
        return ""
    return (f" ({spec.replicas} replicas asked by FORGE_NATS_REPLICAS: the cluster needs at "
            "least that many JetStream servers)")


async def ensure_streams(
    js: JetStreamContext, specs: tuple[StreamSpec, ...] = FORGE_STREAMS, *, manage: bool = True
) -> list[str]:
    """Create missing streams and update those whose config differs; idempotent.

    Returns a line per action taken ("created FORGE", "updated FORGE: max_age"), empty when
    everything already matched. Safe when several processes run it at the same time. With
    `manage=False` (an identity the bus does not let manage streams) it only checks that
    each stream exists, raising `BusError` until the one that manages them created it.
    """
    actions: list[str] = []
    for spec in specs:
        for _attempt in range(3):
            try:
                info = await js.stream_info(spec.name)
            except NotFoundError:
                if not manage:
                    raise BusError(
                        f"stream {spec.name} does not exist yet (the orchestrator creates it)"
                    ) from None
                try:
                    await js.add_stream(spec.config())
                except ServiceUnavailableError:
                    raise
                except APIError as exc:
                    if exc.err_code == _STREAM_NAME_IN_USE:
                        continue  # another process created it first: compare and update
                    raise BusError(f"cannot create stream {spec.name}: {exc.description}"
                                   f"{_replicas_hint(spec)}") from exc
                actions.append(f"created {spec.name}")
                break
            diffs = _differs(spec, info.config) if manage else []
            if diffs:
                try:
                    await js.update_stream(spec.config())
                except ServiceUnavailableError:
                    raise
                except APIError as exc:
                    raise BusError(
                        f"stream {spec.name} differs in {', '.join(diffs)} and cannot be "
                        f"updated: {exc.description}{_replicas_hint(spec)}"
                    ) from exc
                actions.append(f"updated {spec.name}: {', '.join(diffs)}")
            break
    return actions
