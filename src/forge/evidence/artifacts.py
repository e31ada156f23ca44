"""Building the four result files of a scenario and writing them atomically, once.

`build_artifacts` turns graded results plus evidence into score.json, the bundle,
verdict.sig and verdict.pub (pure, in memory). `write_results` puts them under
`<storage_root>/scenarios/<scenario_id>/results/`: files are written and fsynced in a
temporary directory beside it, which is then renamed into place, so the results directory
appears complete or not at all. Results are immutable: writing the same score.json and
bundle again is a no-op; anything different is refused with ResultConflict.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence, Sized
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from forge.durable import write_all
from forge.evidence.bundled_template import bundled_template
from forge.scenario_paths import scenario_dir
from forge.signing.keystore import SigningKey
from forge_verify.aids import AIDS_MEMBER
from forge_verify.audit_chain import scenario_stream, verify_chain
from forge_verify.bundle import BUNDLE_NAMES, build_bundle, sha256_hex
from forge_verify.canonical import dumps_file
from forge_verify.recordings import MEMBER_PREFIX as RECORDINGS_PREFIX
from forge_verify.rejudge import rejudge_bundle
from forge_verify.rules import CRITERIA_MEMBER
from forge_verify.score import (
    CheckResult,
    CriterionSpec,
    ScoreInputError,
    ScoreInputs,
    ScoreSummary,
    StreamOutput,
    build_score_document,
    check_member_prefix,
)
from forge_verify.verdict import SCORE_NAME, build_statement, sign_statement

OUTPUT_CAP_BYTES = 1024 * 1024
SIG_NAME = "verdict.sig"
PUB_NAME = "verdict.pub"
# The files of a result set, by name (the bundle under one of its two compressions).
RESULT_FILE_NAMES = (SCORE_NAME, SIG_NAME, PUB_NAME, *BUNDLE_NAMES.values())
TEMPLATE_MEMBER = "template.yaml"
POLICY_MEMBER = "policy/decisions.json"
AUDIT_MEMBER = "audit/scenario.jsonl"
_TMP_PREFIX = ".results-tmp-"
_STALE_TMP_SECONDS = 3600


class ResultConflict(Exception):
    """Results already exist for the scenario and differ from the ones offered."""

    def __init__(self, scenario_id: str, differing: list[str]) -> None:
        self.scenario_id = scenario_id
        self.differing = differing
        super().__init__(f"results for {scenario_id} are final and differ in "
                         f"{', '.join(differing)}; refusing to overwrite")


@dataclass(frozen=True)
class EvidenceInputs:
    """Evidence beyond the check outputs: the exact template, policy decisions, audit log,
    and the rendered criteria (`criteria.json`) that every check is judged against again."""

    template_yaml: bytes
    policy_decisions: Sequence[Mapping[str, Any]] = ()
    audit_log: bytes = b""
    criteria: Mapping[str, Any] | None = None
    recordings: Mapping[str, bytes] = field(default_factory=dict)
    """Terminal recordings by file name, bundled as `recordings/<name>` (covered, not graded)."""
    aids: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Artifacts:
    """The four result files, in memory."""

    scenario_id: str
    score_json: bytes
    bundle_name: str
    bundle: bytes
    verdict_sig: bytes
    verdict_pub: bytes
    summary: ScoreSummary
    key_id: str
    document: dict[str, Any] = field(repr=False, compare=False)

    def files(self) -> dict[str, bytes]:
        """File name -> bytes."""
        return {SCORE_NAME: self.score_json, self.bundle_name: self.bundle,
                SIG_NAME: self.verdict_sig, PUB_NAME: self.verdict_pub}


@dataclass(frozen=True)
class ResultsWritten:
    """Where the results are, and whether this call created them (False: already there)."""

    directory: Path
    created: bool
    score_sha256: str
    bundle_name: str
    bundle_sha256: str


class _TemplateCriterion(Protocol):
    id: str
    description: str
    weight: float

    @property
    def checks(self) -> Sized: ...


def criteria_from_template(criteria: Iterable[_TemplateCriterion]) -> tuple[CriterionSpec, ...]:
    """CriterionSpecs from a loaded template's successCriteria (id, description, weight,
    number of checks), so weights always come from the template, never from an event."""
    return tuple(CriterionSpec(c.id, c.description, float(c.weight), len(c.checks))
                 for c in criteria)


def cap_output(out: StreamOutput, cap: int) -> StreamOutput:
    """Keep at most `cap` UTF-8 bytes of text; hash and size still describe the full text.

    Text is encoded with surrogateescape, so output decoded that way keeps its exact bytes.
    """
    raw = out.text.encode("utf-8", "surrogateescape")
    if len(raw) <= cap:
        if not out.truncated and (len(raw) != out.size or sha256_hex(raw) != out.sha256):
            # The text is not byte-for-byte the hashed output (e.g. lossy decoding).
            return replace(out, truncated=True)
        return out
    kept = raw[:cap].decode("utf-8", "ignore")
    return replace(out, text=kept, truncated=True)


def _stream_meta(out: StreamOutput) -> dict[str, Any]:
    return {"sha256": out.sha256, "size": out.size, "truncated": out.truncated,
            "kept_bytes": len(out.text.encode("utf-8", "surrogateescape"))}


def _check_members(results: Sequence[CheckResult]) -> dict[str, bytes]:
    members: dict[str, bytes] = {}
    for r in results:
        prefix = check_member_prefix(r.criterion_id, r.check_index)
        members[f"{prefix}/stdout.txt"] = r.stdout.text.encode("utf-8", "surrogateescape")
        members[f"{prefix}/stderr.txt"] = r.stderr.text.encode("utf-8", "surrogateescape")
        members[f"{prefix}/result.json"] = dumps_file({
            "criterion_id": r.criterion_id, "index": r.check_index, "container": r.container,
            "command": list(r.command), "passed": r.passed, "exit_code": r.exit_code,
            "timed_out": r.timed_out, "duration_ms": r.duration_ms,
            "stdout": _stream_meta(r.stdout), "stderr": _stream_meta(r.stderr),
        })
    return members


def build_artifacts(
    inputs: ScoreInputs,
    evidence: EvidenceInputs,
    key: SigningKey,
    *,
    signed_at: datetime | None = None,
    bundle_format: str = "zst",
    output_cap: int = OUTPUT_CAP_BYTES,
) -> Artifacts:
    """Compute the score from the check results and produce the four signed files."""
    if sha256_hex(evidence.template_yaml) != inputs.template_sha256:
        raise ScoreInputError("template_sha256: does not match the template bytes given")
    try:
        template = bundled_template(evidence.template_yaml)
    except ValueError as exc:
        raise ScoreInputError(str(exc)) from None
    inputs = replace(inputs, template_bundled_sha256=(
        sha256_hex(template) if template != evidence.template_yaml else None))
    chain = verify_chain(evidence.audit_log, stream=scenario_stream(inputs.scenario_id))
    if not chain.ok:
        raise ScoreInputError(f"audit_log: {'; '.join(chain.reasons)}")
    capped = tuple(replace(r, stdout=cap_output(r.stdout, output_cap),
                           stderr=cap_output(r.stderr, output_cap)) for r in inputs.results)
    inputs = replace(inputs, results=capped)
    doc = build_score_document(inputs, chain.entries, chain.head)
    score_json = dumps_file(doc)
    members = _check_members(capped)
    members[TEMPLATE_MEMBER] = template  # hints' text withheld (bundled_template)
    members[POLICY_MEMBER] = dumps_file([dict(d) for d in evidence.policy_decisions])
    members[AUDIT_MEMBER] = evidence.audit_log
    for name, cast in sorted(evidence.recordings.items()):
        members[RECORDINGS_PREFIX + name] = cast
    if evidence.aids is not None:
        members[AIDS_MEMBER] = dumps_file(dict(evidence.aids))
    if evidence.criteria is not None:
        members[CRITERIA_MEMBER] = dumps_file(dict(evidence.criteria))
    problems = rejudge_bundle(doc, members)
    if problems:  # never sign what the offline verifier would find inconsistent
        raise ScoreInputError("criteria: " + "; ".join(problems))
    bundle = build_bundle(inputs.scenario_id, members, bundle_format)
    bundle_name = BUNDLE_NAMES[bundle_format]
    statement = build_statement(
        score_sha256=sha256_hex(score_json), bundle_name=bundle_name,
        bundle_sha256=sha256_hex(bundle), scenario_id=inputs.scenario_id,
        score=doc["score"], passed=doc["passed"], total=doc["total"],
        signed_at=signed_at or datetime.now(UTC), key_id=key.key_id)
    envelope = sign_statement(statement, key)
    return Artifacts(
        scenario_id=inputs.scenario_id, score_json=score_json, bundle_name=bundle_name,
        bundle=bundle, verdict_sig=envelope.to_json(), verdict_pub=key.public_pem(),
        summary=ScoreSummary(doc["score"], doc["passed"], doc["total"]), key_id=key.key_id,
        document=doc)


def results_dir(storage_root: Path, scenario_id: str) -> Path:
    """`<storage_root>/scenarios/<scenario_id>/results` (the id is validated first)."""
    return scenario_dir(storage_root, scenario_id) / "results"


def read_results(storage_root: Path, scenario_id: str) -> dict[str, bytes] | None:
    """The stored result files by name, or None when the scenario has no results."""
    final = results_dir(storage_root, scenario_id)
    if not final.is_dir():
        return None
    return {n: (final / n).read_bytes() for n in RESULT_FILE_NAMES if (final / n).is_file()}


def write_synced(path: Path, data: bytes, *, replace: bool = False) -> None:
    """Write ``data`` to ``path`` (mode 0640) and fsync it, so a result file is on disk
    before it is announced. A new file only (``O_EXCL``), or with ``replace`` over an
    existing regular file; never through a symlink at ``path``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_TRUNC if replace else os.O_EXCL)
    fd = os.open(path, flags, 0o640)
    try:
        write_all(fd, data, sync=True)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    """One new result file (the seam the crash tests cut between files)."""
    write_synced(path, data)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sweep_stale_temps(scenario_dir: Path) -> None:
    """Remove temp dirs left by a writer that died (older than an hour)."""
    cutoff = time.time() - _STALE_TMP_SECONDS
    for tmp in scenario_dir.glob(_TMP_PREFIX + "*"):
        try:
            if tmp.is_dir() and tmp.stat().st_mtime < cutoff:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            continue


def _compare_existing(final: Path, art: Artifacts) -> ResultsWritten:
    existing = read_results(final.parent.parent.parent, art.scenario_id) or {}
    differing = [n for n in (SCORE_NAME, art.bundle_name) if existing.get(n) != art.files()[n]]
    if differing:
        raise ResultConflict(art.scenario_id, differing)
    return ResultsWritten(final, False, sha256_hex(art.score_json), art.bundle_name,
                          sha256_hex(art.bundle))


def write_results(storage_root: Path, artifacts: Artifacts) -> ResultsWritten:
    """Write the four files atomically; no-op if identical results exist, else conflict."""
    final = results_dir(storage_root, artifacts.scenario_id)
    if final.exists():
        return _compare_existing(final, artifacts)
    scenario_dir = final.parent
    scenario_dir.mkdir(parents=True, exist_ok=True)
    _sweep_stale_temps(scenario_dir)
    tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=scenario_dir))
    try:
        for name, data in artifacts.files().items():
            _write_file(tmp / name, data)
        os.chmod(tmp, 0o750)  # noqa: S103 - group (operators) may read results
        _fsync_dir(tmp)
        try:
            os.rename(tmp, final)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
            return _compare_existing(final, artifacts)
        _fsync_dir(scenario_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ResultsWritten(final, True, sha256_hex(artifacts.score_json),
                          artifacts.bundle_name, sha256_hex(artifacts.bundle))


def score_and_write(
    storage_root: Path,
    inputs: ScoreInputs,
    evidence: EvidenceInputs,
    key: SigningKey,
    *,
    signed_at: datetime | None = None,
    bundle_format: str = "zst",
) -> ResultsWritten:
    """build_artifacts + write_results: what the scoreboard consumer calls per completion."""
    artifacts = build_artifacts(inputs, evidence, key, signed_at=signed_at,
                                bundle_format=bundle_format)
    return write_results(storage_root, artifacts)
