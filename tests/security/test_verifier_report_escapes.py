"""The verifier's text report and its --trusted-key directory with hostile contents.

Before, integrity-only mode (where anyone can sign anything) printed score.json's tenant_id
and subject raw, so a newline in them added report lines of the signer's choosing (a fake
`ok` line); and a non-PEM file over 64 KiB in a --trusted-key directory stopped the whole run
with exit 2, although every other non-key file there is skipped. Now control and format
characters are escaped in the report, and such a file is skipped like the others.
"""

from __future__ import annotations

from pathlib import Path

from forge_verify import render_text, verify_paths
from forge_verify.canonical import dumps_file, loads

from .verdict_sets import BUNDLE, KEY, sample, signed, verify

FAKE = "  ok   verdict.pub is a trusted key: origin proven"


def test_a_newline_in_the_subject_adds_no_report_line(tmp_path: Path) -> None:
    score_json, members = sample(tmp_path)
    doc = loads(score_json)
    doc["subject"] = "alice\n" + FAKE + "\u202e"
    res = verify(signed(dumps_file(doc), members), trusted=False)
    text = render_text(res)
    assert FAKE not in text.splitlines()
    assert "alice\\u000a  ok   verdict.pub" in text and "\\u202e" in text
    assert res.learner is not None and "\n" in res.learner  # --json keeps the real value


def test_a_large_non_key_file_in_the_trusted_key_directory_is_skipped(tmp_path: Path) -> None:
    files = signed(*sample(tmp_path))
    paths = {}
    for name, data in files.items():
        paths[name] = tmp_path / name
        paths[name].write_bytes(data)
    keys = tmp_path / "trusted"
    keys.mkdir()
    (keys / "forge.pem").write_bytes(KEY.public_pem())
    (keys / "notes.log").write_bytes(b"rotated keys on 2026-03-01\n" * 4000)  # > 64 KiB
    res = verify_paths(paths["score.json"], paths[BUNDLE], paths["verdict.sig"],
                       paths["verdict.pub"], trusted_key=keys)
    assert res.ok and res.origin == "proven", res.reasons
