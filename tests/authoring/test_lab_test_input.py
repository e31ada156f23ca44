"""`forge lab test` on a template directory it cannot load (one of its templates invalid,
or no such directory) is an input error: exit 2 and every problem named, nothing launched.
Before: the TemplateError escaped as a traceback (exit 1), the one answer a lab author got
for a typo in any template of --dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import Forge


def errors(stderr: str) -> list[str]:
    """stderr without the notice of a storage root made for this test's first command."""
    return [line for line in stderr.splitlines() if not line.startswith("warning: creating")]


def test_an_invalid_template_in_the_directory_is_named_not_a_traceback(
        forge: Forge, tmp_path: Path) -> None:
    labs = tmp_path / "labs"
    labs.mkdir()
    (labs / "vault-code.yaml").write_text("apiVersion: frostgate.forge/v1\nkind: Nope\n")
    for argv in (("vault-code",), ("--all",)):
        result = forge("lab", "test", *argv, "--dir", "labs")
        assert result.returncode == 2, result.stdout + result.stderr
        assert "Traceback" not in result.stderr and "forge lab test" not in result.stdout
        assert errors(result.stderr) == [
            f"error: {labs.name}: invalid template (3 problem(s)):",
            "  vault-code.yaml: kind: Input should be 'ScenarioTemplate'",
            "  vault-code.yaml: metadata: Field required",
            "  vault-code.yaml: spec: Field required"]


def test_a_template_directory_that_is_not_there_is_named(forge: Forge, tmp_path: Path) -> None:
    result = forge("lab", "test", "--all", "--dir", "nowhere")
    assert result.returncode == 2, result.stdout + result.stderr
    assert errors(result.stderr) == ["error: nowhere: invalid template (1 problem(s)):",
                                          "  template directory not found"]


def test_a_test_plan_that_is_not_utf8_is_named_not_a_traceback(
        forge: Forge, tmp_path: Path) -> None:
    """A plan saved in Latin-1 (an author's `café` in a comment) is refused naming the file
    and the byte, by `forge template check` and `forge lab test` alike, nothing launched.
    Before: both died with a UnicodeDecodeError traceback."""
    assert forge("lab", "new", "vault-code", "--dir", "labs", "--image-dir",
                 "images").returncode == 0
    plan = tmp_path / "labs" / "vault-code.lab-test.yaml"
    with open(plan, "ab") as fh:
        fh.write(b"# caf\xe9\n")
    offset = plan.stat().st_size - 2  # the \xe9
    checked = forge("template", "check", str(plan))
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "Traceback" not in checked.stderr
    assert f"not UTF-8 text (byte {offset})" in checked.stdout
    tested = forge("lab", "test", "vault-code", "--dir", "labs")
    assert tested.returncode != 0 and "Traceback" not in tested.stderr
    assert f"{plan.relative_to(tmp_path)}: cannot read file: not UTF-8 text (byte {offset})" \
        in tested.stderr
    assert "forge lab test vault-code" not in tested.stdout  # no step ran


def test_a_yaml_error_in_a_test_plan_names_its_line(forge: Forge, tmp_path: Path) -> None:
    """An unclosed `[` in the plan: the error says what and on which line, as it does for
    a template. Before: `not valid YAML (ParserError)`, nothing to find it by."""
    assert forge("lab", "new", "vault-code", "--dir", "labs", "--image-dir",
                 "images").returncode == 0
    plan = tmp_path / "labs" / "vault-code.lab-test.yaml"
    lines = plan.read_text().splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.startswith("answers:"))
    lines.insert(at + 1, "  - {path: [/workspace/answer.txt}\n")
    plan.write_text("".join(lines))
    checked = forge("template", "check", str(plan))
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert f"  not valid YAML: expected ',' or ']', but got '}}' (line {at + 2}, column 34)" \
        in checked.stdout.splitlines(), checked.stdout
    tested = forge("lab", "test", "vault-code", "--dir", "labs")
    assert f"line {at + 2}, column 34" in tested.stderr, tested.stderr


def test_scripts_typed_on_a_host_without_a_learner_terminal_are_refused(
        forge: Forge, tmp_path: Path) -> None:
    """A plan typing its solution on a host the learner gets no terminal on (`host: ops`,
    or a `# host: ops` section) proved a lab no learner can solve: `forge lab test` passed
    a lab graded on ops by a solution typed on ops. Refused naming the field, nothing
    launched."""
    assert forge("lab", "new", "vault-code", "--dir", "labs", "--image-dir",
                 "images").returncode == 0
    labs = tmp_path / "labs"
    template = labs / "vault-code.yaml"
    template.write_text(template.read_text().replace(
        "  successCriteria:\n",
        "      - name: ops\n"
        "        networks: [{subnet: lan, address: 10.70.1.20}]\n"
        "  successCriteria:\n"))
    assert forge("template", "check", str(template)).returncode == 0
    plan = labs / "vault-code.lab-test.yaml"
    text = plan.read_text()
    plan.write_text(text.replace("host: learner ", "host: ops "))
    result = forge("lab", "test", "vault-code", "--dir", "labs")
    assert result.returncode == 1, result.stdout + result.stderr
    assert ("host: 'ops' is not a learner host (access: learner): a learner gets no "
            "terminal there") in result.stderr
    assert "forge lab test vault-code" not in result.stdout  # nothing was launched
    plan.write_text(text)
    (labs / "vault-code.partial.sh").write_text("# host: ops\ntrue\n")
    result = forge("lab", "test", "vault-code", "--dir", "labs")
    assert result.returncode == 1, result.stdout + result.stderr
    assert ("partials.0: section '# host: ops' is not a learner host (access: learner): "
            "a learner gets no terminal there") in result.stderr
    assert "forge lab test vault-code" not in result.stdout


@pytest.mark.root
def test_one_invalid_draft_does_not_stop_the_others_being_tested(
        forge: Forge, tmp_path: Path) -> None:
    """A directory of drafts, one of them invalid: `forge lab test --all` (and `forge lab
    test NAME` of another draft) refused the whole directory (exit 2, the invalid draft's
    problems), so no other draft could be tested until it was fixed. Each is now tested
    and reported: the invalid one's problems, the other's own result (here its bad plan,
    which launches nothing), exit 1 naming both."""
    made = forge("lab", "new", "vault-code", "--dir", "labs", "--image-dir", "images")
    assert made.returncode == 0, made.stderr
    # Its next step names the directory: `forge lab test vault-code` alone looked in the
    # shipped templates ("no template named vault-code").
    assert "then `forge lab test vault-code --dir labs`" in made.stdout
    labs = tmp_path / "labs"
    (labs / "draft-two.yaml").write_text("apiVersion: frostgate.forge/v1\nkind: Nope\n")
    plan = labs / "vault-code.lab-test.yaml"
    plan.write_text(plan.read_text() + "colour: blue\n")
    result = forge("lab", "test", "--all", "--dir", "labs")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "  draft-two.yaml: kind: Input should be 'ScenarioTemplate'" in result.stderr
    assert "colour" in result.stderr  # vault-code was tested: its plan's problem
    assert "0/2 labs passed" in result.stderr and "failed: draft-two, vault-code" \
        in result.stderr
    named = forge("lab", "test", "vault-code", "--dir", "labs")
    assert named.returncode == 1, named.stdout + named.stderr
    assert "draft-two" not in named.stderr and "colour" in named.stderr
    assert "0/1 labs passed" in named.stderr
