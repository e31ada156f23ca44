"""A genuine verdict presented as someone else's, or as one on a harder lab.

A verdict verifies for whoever holds its four files, so a learner could hand an employer
or a teacher a classmate's PASS, or their own PASS of an easier lab of the same track,
and `forge verify` said only PASS with the scenario id. Now the report names whose
verdict it is and on which lab (from the signed score.json), and `--expect-learner` /
`--expect-lab` fail one that is not what the checker was told. Real verifier code and
the same CLI as the runbook's command (`forge verify`, `forge_verify.main`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from forge_verify import expect, main, render_text, verify_paths

from ..evidence.conftest import artifacts, result_files  # noqa: F401  (fixtures)

FILES = ("score.json", "evidence.tar.zst", "verdict.sig", "verdict.pub")


def test_the_report_names_the_learner_and_the_lab(
        result_files: dict[str, Path]) -> None:  # noqa: F811
    res = verify_paths(*(result_files[n] for n in FILES))
    assert res.ok
    assert (res.learner, res.lab, res.track) == ("tenant-acme/learner-alice", "netplus",
                                                "netplus")
    assert res.template_sha256 is not None and len(res.template_sha256) == 64
    assert "  for  tenant-acme/learner-alice on lab netplus (track netplus)" in \
        render_text(res).splitlines()
    shown = res.to_dict()
    assert shown["learner"] == "tenant-acme/learner-alice" and shown["lab"] == "netplus"


def test_a_verdict_of_another_learner_or_lab_fails_what_was_expected(
        result_files: dict[str, Path]) -> None:  # noqa: F811
    paths = [str(result_files[n]) for n in FILES]
    assert main(["--expect-learner", "tenant-acme/learner-alice", "--expect-lab", "netplus",
                 "--", *paths]) == 0
    res = verify_paths(*(result_files[n] for n in FILES))
    expect(res, learner="tenant-acme/learner-bob", lab="dns-zone")
    assert res.status == "FAIL"
    assert {r.code for r in res.reasons} == {"learner_mismatch", "lab_mismatch"}
    assert any("learner-alice" in r.message and "learner-bob" in r.message
               for r in res.reasons)
    # The same learner id in another tenant is another learner.
    assert main(["--expect-learner", "tenant-other/learner-alice", "--", *paths]) == 1
    # Through `forge verify`, as the runbook runs it: exit 1, the reason in the JSON.
    done = subprocess.run([sys.executable, "-m", "forge", "verify", *paths, "--json",
                           "--expect-lab", "dns-zone"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 1, done.stderr
    body = json.loads(done.stdout)
    assert body["status"] == "FAIL" and [r["code"] for r in body["reasons"]] == ["lab_mismatch"]


def test_a_score_json_that_is_not_the_signed_one_names_nobody(
        result_files: dict[str, Path]) -> None:  # noqa: F811
    """The report names a learner only from the score.json the statement signs: an edited
    one (another subject) fails and names no one, so its line cannot mislead."""
    score = result_files["score.json"]
    score.write_bytes(score.read_bytes().replace(b"learner-alice", b"learner-bobby"))
    res = verify_paths(*(result_files[n] for n in FILES))
    assert res.status == "FAIL" and "score_digest_mismatch" in {r.code for r in res.reasons}
    assert res.learner is None and res.lab is None
    assert "  for  " not in render_text(res)
