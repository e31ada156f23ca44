"""Attack: read every hint for free from the evidence bundle of an earlier attempt.

The signed bundle carries the lab's template so a verdict names exactly what was run. It
used to carry it byte for byte, hints' text included: a learner who downloaded the bundle of
a first attempt (or of anyone who shared theirs) read every hint of the lab without paying
their cost. Now each hint's text is bundled as its sha256 (criterion, cost and order kept);
score.json names the authored template's hash and the bundled one's, and the offline
verifier still passes the verdict.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import yaml

from forge.evidence.artifacts import EvidenceInputs, build_artifacts
from forge.templates.validate import parse_template
from forge_verify.aids import aids_document
from forge_verify.bundle import read_bundle
from forge_verify.canonical import loads
from forge_verify.score import HintUse

from ..evidence.sample import CRITERIA, POLICY, SIGNED_AT, audit_log, fixed_key, score_inputs

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = (ROOT / "src" / "forge" / "content" / "templates" / "netplus.yaml").read_bytes()
KEY = fixed_key(17)
USED = HintUse("h2", "find-server", 0.1, "2026-03-01T11:20:00Z")


def _flat(text: str) -> str:
    """Whitespace collapsed, so YAML's folded lines compare like the text they fold."""
    return " ".join(text.split())


def test_a_bundle_holds_no_hint_text_and_still_verifies(tmp_path: Path) -> None:
    hints = parse_template(TEMPLATE).template.spec.hints
    assert len(hints) >= 3
    inputs = replace(score_inputs(), template_sha256=hashlib.sha256(TEMPLATE).hexdigest(),
                     hints=(USED,))
    art = build_artifacts(inputs, EvidenceInputs(
        TEMPLATE, POLICY, audit_log(tmp_path, signer=KEY), CRITERIA,
        aids=aids_document([USED], [])), KEY, signed_at=SIGNED_AT)
    files = art.files()
    members = read_bundle(files["evidence.tar.zst"])

    everything = {**members, **{f"file:{n}": d for n, d in files.items()}}
    for hint in hints:
        for name, data in everything.items():
            assert _flat(hint.text) not in _flat(data.decode("utf-8", "replace")), name

    bundled = yaml.safe_load(members["template.yaml"])["spec"]["hints"]
    assert [(h.get("criterion"), h.get("cost", 0.0)) for h in bundled] == [
        (h.criterion, h.cost) for h in hints]
    assert [h["text"] for h in bundled] == [
        "sha256:" + hashlib.sha256(h.text.encode()).hexdigest() for h in hints]

    doc = loads(files["score.json"])
    assert doc["template"]["sha256"] == hashlib.sha256(TEMPLATE).hexdigest()
    assert doc["template"]["bundled_sha256"] == hashlib.sha256(
        members["template.yaml"]).hexdigest()

    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "trusted.pem").write_bytes(KEY.public_pem())
    names = ("score.json", "evidence.tar.zst", "verdict.sig", "verdict.pub")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "verify_verdict.py"),
         *(str(tmp_path / n) for n in names), "--trusted-key", str(tmp_path / "trusted.pem"),
         "--json"], capture_output=True, text=True, timeout=60, check=False)
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["status"] == "PASS", report["reasons"]
