"""Turning a `forge.scenario.completed` event into verified scoring inputs.

Nothing in the event is trusted on its word: the SAT and ET are verified with the shared
keyrings (signature, typ, aud; not expiry — a lab may outlive its tokens), must name this
scenario and agree with each other and with the event; the template is looked up by name
in the registry and must have the sha256 the event names; criteria, weights and the check
list come from the template. Only the outputs and the lab's values come from the event, and
both must be what the orchestrator recorded: outputs are the full captures the node shipped
in the event's evidence pack (`shipped`; or the event's text when it is exactly such a
capture) whose hashes, with the values' digest, the orchestrator wrote in the scenario's
audit log. An event from before packs existed falls back to the evidence files under this
scoreboard's own STORAGE_ROOT (only ever there on a one-machine install). Each check's
pass/fail is then judged again from those outputs against the template rendered with
those values (see `judged`); the event's flags are only compared, never used.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from forge.bus.contracts import OutputV1, ScenarioCompletedV1
from forge.bus.evidence_pack import EvidencePack
from forge.config.settings import Settings
from forge.evidence.artifacts import EvidenceInputs
from forge.scenario_paths import scenario_dir
from forge.services.scoreboard.judged import rejudge_results, rendered_rules
from forge.services.scoreboard.refused import CompletionRefused
from forge.templates.problems import UnknownTemplate
from forge.templates.registry import TemplateRegistry
from forge.templates.variables import values_digest
from forge.tokens import ET, SAT, TokenError, TokenMismatch, check_sat_et_binding, verify_token
from forge_verify.canonical import CanonicalJSONError, loads
from forge_verify.rules import criteria_document
from forge_verify.score import (
    CheckResult,
    CriterionSpec,
    ScoreInputError,
    ScoreInputs,
    StreamOutput,
)

EVIDENCE_DIR = "evidence"
MAX_EVIDENCE_FILE = 1 << 20


@dataclass(frozen=True)
class VerifiedCompletion:
    """Scoring inputs built from a verified event, plus the evidence to bundle."""

    inputs: ScoreInputs
    template_yaml: bytes
    policy: Mapping[str, Any]
    criteria: Mapping[str, Any]
    recordings: Mapping[str, bytes] = dataclasses.field(default_factory=dict)
    aids: Mapping[str, Any] | None = None

    def evidence(self, audit_log: bytes) -> EvidenceInputs:
        """Evidence inputs with the scenario's audit log (read through `scenario.completed`),
        the rendered criteria the checks were judged against, the terminal recordings and
        the learner's aids."""
        decisions = [dict(self.policy)] if self.policy else []
        return EvidenceInputs(self.template_yaml, decisions, audit_log, self.criteria,
                              recordings=self.recordings, aids=self.aids)


def _time(value: str) -> datetime:
    """A time the contract already checked is zoned ISO 8601."""
    return datetime.fromisoformat(value)


def verify_tokens(settings: Settings, event: ScenarioCompletedV1) -> tuple[dict[str, Any],
                                                                           dict[str, Any]]:
    """Verified SAT and ET claims, bound to each other and to the event's identity fields."""
    if event.sat is None or event.et is None:
        raise CompletionRefused("tokens_missing", "sat and et: both tokens are required")
    try:
        sat = verify_token(settings.sat, SAT, event.sat, check_expiry=False)
    except TokenError as exc:
        raise CompletionRefused(f"sat_{exc.code}", f"SAT refused: {exc}") from None
    try:
        et = verify_token(settings.et, ET, event.et, check_expiry=False)
    except TokenError as exc:
        raise CompletionRefused(f"et_{exc.code}", f"ET refused: {exc}") from None
    try:
        check_sat_et_binding(sat, et)
    except TokenMismatch as exc:
        raise CompletionRefused("sat_et_mismatch", f"SAT and ET disagree: {exc}") from None
    bindings = (
        ("scenario_id", event.scenario_id, sat.get("scenario_id")),
        ("track", event.track, sat.get("track")),
        ("template.name", event.template.name, sat.get("template_id")),
        ("tenant_id", event.tenant_id, sat.get("tenant_id")),
        ("subject", event.subject, sat.get("sub")),
        ("plan", event.plan, sat.get("plan")),
        ("retention_days", event.retention_days, et.get("retention_days")),
    )
    for field, event_value, claim in bindings:
        if event_value != claim or type(event_value) is not type(claim):
            raise CompletionRefused("claims_mismatch",
                                    f"{field}: event does not match the verified tokens")
    return sat, et


def _stream(raw: OutputV1) -> StreamOutput:
    return StreamOutput(raw.text, raw.sha256, raw.size, raw.truncated)


Captures = Mapping[str, bytes] | Path | None
"""Where full outputs come from: a shipped pack's outputs, a legacy local evidence directory
(events without a pack), or nowhere (judge the event's text)."""


def _read_evidence(evidence_dir: Captures, stem: str) -> bytes | None:
    """A capture's bytes (None: not shipped / not on this machine); a capture too large to be
    a grader's is refused, other I/O errors propagate (retried)."""
    if evidence_dir is None:
        return None
    if not isinstance(evidence_dir, Path):
        return evidence_dir.get(stem)
    try:
        with (evidence_dir / stem).open("rb") as fh:
            data = fh.read(MAX_EVIDENCE_FILE + 1)
    except FileNotFoundError:
        return None
    if len(data) > MAX_EVIDENCE_FILE:
        raise CompletionRefused("evidence_mismatch", f"evidence: {stem} is larger than a "
                                                     "grader capture")
    return data


def _full_output(evidence_dir: Captures, hashes: Mapping[str, Any], stem: str,
                 out: StreamOutput) -> StreamOutput:
    """The output the grader captured: the evidence file whose sha256 the event names, or the
    event's own text when it is exactly that capture. Any other output is refused, so a
    check is never judged on text the grader did not record."""
    expected = hashes.get(stem)
    if not isinstance(expected, str):
        return out  # no capture named: judged as it stands (truncated text proves little)
    data = _read_evidence(evidence_dir, stem)
    if data is None:
        data = out.text.encode("utf-8", "surrogateescape")
    digest = hashlib.sha256(data).hexdigest()
    if not hmac.compare_digest(digest, expected):
        raise CompletionRefused("evidence_mismatch", f"evidence: {stem} is not the output "
                                                     "the grader recorded (sha256 differs)")
    exact = len(data) == out.size and hmac.compare_digest(digest, out.sha256)
    return StreamOutput(data.decode("utf-8", "surrogateescape"), out.sha256, out.size,
                        not exact)


def check_recorded_completion(event: ScenarioCompletedV1, audit_log: bytes,
                              pack: EvidencePack | None = None) -> None:
    """The event's evidence hashes and variables, and the pack's terminal recordings, must be
    the ones the orchestrator wrote in the scenario's audit log with `scenario.completed`
    (its last line here), when it did."""
    recordings = {name: hashlib.sha256(data).hexdigest() for name, data in
                  sorted((pack.recordings if pack is not None else {}).items())}
    try:
        entry = loads(audit_log.splitlines()[-1])
    except (CanonicalJSONError, IndexError):
        raise CompletionRefused("evidence_mismatch", "audit log: the scenario.completed "
                                                     "entry cannot be read") from None
    body = entry.get("data") if isinstance(entry, dict) else None
    recorded = body if isinstance(body, dict) else {}
    if "evidence" in recorded and recorded["evidence"] != event.evidence:
        raise CompletionRefused("evidence_mismatch",
                                "evidence: the event's output hashes differ from the ones the "
                                "orchestrator recorded in the scenario's audit log")
    if recorded.get("recordings", {}) != recordings:
        raise CompletionRefused("evidence_mismatch",
                                "recordings: the shipped terminal recordings differ from the "
                                "ones the orchestrator recorded in the scenario's audit log")
    if "variables_sha256" in recorded and not (
            isinstance(recorded["variables_sha256"], str)
            and hmac.compare_digest(values_digest(event.variables),
                                    recorded["variables_sha256"])):
        raise CompletionRefused("variables_mismatch",
                                "variables: differ from the ones the orchestrator recorded in "
                                "the scenario's audit log")


def _results(event: ScenarioCompletedV1, criteria: tuple[CriterionSpec, ...],
             evidence_dir: Captures) -> tuple[CheckResult, ...]:
    hashes = event.evidence
    results: list[CheckResult] = []
    for raw in event.results:
        stem = f"{raw.criterion_id}.{raw.check_index}"
        stdout = _full_output(evidence_dir, hashes, f"{stem}.stdout", _stream(raw.stdout))
        stderr = _full_output(evidence_dir, hashes, f"{stem}.stderr", _stream(raw.stderr))
        results.append(CheckResult(raw.criterion_id, raw.check_index, raw.passed,
                                   raw.exit_code, stdout, stderr, raw.timed_out,
                                   raw.duration_ms, raw.container, raw.command))
    expected = sorted((c.id, i) for c in criteria for i in range(c.check_count))
    got = sorted((r.criterion_id, r.check_index) for r in results)
    if got != expected:
        raise CompletionRefused(
            "check_list_mismatch",
            f"results: checks {got} do not match the template's criteria {expected}")
    return tuple(results)


def verify_completion(settings: Settings, registry: TemplateRegistry,
                      event: ScenarioCompletedV1,
                      pack: EvidencePack | None = None) -> VerifiedCompletion:
    """Verify the event and build scoring inputs, or raise CompletionRefused saying why.

    Types, formats and sizes were checked by the contract (`forge.bus.contracts`); what is
    checked here is what a well-typed forgery could still get wrong."""
    scenario_id = event.scenario_id
    sat, et = verify_tokens(settings, event)
    try:
        loaded = registry.get(event.template.name)
    except UnknownTemplate as exc:
        raise CompletionRefused("unknown_template", f"template.name: {exc}") from None
    if not hmac.compare_digest(loaded.sha256, event.template.sha256):
        raise CompletionRefused("template_hash_mismatch",
                                "template.sha256: differs from the loaded template")
    # Same as evidence.artifacts.criteria_from_template, whose Protocol mypy cannot match
    # against the frozen pydantic models.
    criteria = tuple(CriterionSpec(c.id, c.description, float(c.weight), len(c.checks))
                     for c in loaded.template.spec.success_criteria)
    rules = rendered_rules(loaded.template, event.variables)
    captures: Captures = None
    if pack is not None:
        captures = pack.outputs
    else:  # an event from before packs: this scoreboard's own root (one-machine installs)
        evidence_dir = scenario_dir(settings.storage_root, scenario_id) / EVIDENCE_DIR
        captures = evidence_dir if evidence_dir.is_dir() else None
    results = rejudge_results(rules, _results(event, criteria, captures))
    retention = et.get("retention_days")
    if isinstance(retention, bool) or not isinstance(retention, int):
        raise CompletionRefused("invalid_completion", "retention_days: not an integer")
    try:
        inputs = ScoreInputs(
            scenario_id=scenario_id, run_id=event.run_id, track=str(sat["track"]),
            template_name=loaded.name, template_sha256=loaded.sha256, subject=str(sat["sub"]),
            tenant_id=str(sat["tenant_id"]), plan=str(sat["plan"]), retention_days=retention,
            completion_reason=event.completion_reason,
            started_at=_time(event.started_at), completed_at=_time(event.completed_at),
            criteria=criteria, results=results)
    except ScoreInputError as exc:
        raise CompletionRefused("invalid_completion", str(exc)) from None
    return VerifiedCompletion(inputs, loaded.source, event.policy, criteria_document(rules),
                              dict(pack.recordings) if pack is not None else {})


__all__ = ["CompletionRefused", "VerifiedCompletion", "check_recorded_completion",
           "verify_completion", "verify_tokens"]
