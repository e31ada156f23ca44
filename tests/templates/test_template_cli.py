"""`forge template check` and `forge template schema` as an operator runs them."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from forge.cli import _register, app
from forge.templates import generate_schema

FIXTURES = Path(__file__).parent / "fixtures"
runner = CliRunner()
_register()


def test_check_ok() -> None:
    result = runner.invoke(app, ["template", "check", str(FIXTURES / "good.yaml")])
    assert result.exit_code == 0, result.output
    assert "ok (fixture-good, sha256 " in result.output


def test_check_names_a_file_the_services_would_refuse(tmp_path: Path) -> None:
    """A valid template saved as `vault.yaml` with `metadata.name: vault-code` was simply
    `ok`, yet the registry (every service, `forge lab test`) refuses the whole directory
    for it. The check now says so; the same template as `vault-code.yaml` has no note."""
    doc = yaml.safe_load((FIXTURES / "good.yaml").read_text())
    doc["metadata"]["name"] = "vault-code"
    for name, noted in (("vault.yaml", True), ("vault-code.yaml", False)):
        path = tmp_path / name
        path.write_text(yaml.safe_dump(doc))
        result = runner.invoke(app, ["template", "check", str(path)])
        assert result.exit_code == 0, result.output
        note = ("  warning: the services and `forge lab test` load template 'vault-code' only "
                f"from a file named vault-code.yaml (they refuse a template directory "
                f"holding {name}): rename the file or metadata.name")
        assert (note in result.output.splitlines()) is noted, result.output
    # Said of an invalid template too: it came only once every other problem was fixed.
    doc["spec"]["assets"]["containers"][1]["networks"][0]["subnet"] = "dmz2"
    path = tmp_path / "vault.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = runner.invoke(app, ["template", "check", str(path)])
    assert result.exit_code == 1
    assert "  warning: the services and `forge lab test` load template 'vault-code' only " \
           "from a file named vault-code.yaml" in result.output, result.output


def test_check_notes_what_looks_like_a_variable_but_is_left_as_written(
        tmp_path: Path) -> None:
    """`{{ var.port }}`, `{{ vars.port }` and `{{ vars.port | int }}` were `ok` and seeded
    into the learner's file literally. Each is now a note naming the field; a real
    reference and another template language's `{{ user }}` draw none."""
    doc = yaml.safe_load((FIXTURES / "good.yaml").read_text())
    doc["spec"]["description"] = (
        "Port {{ var.port }}, again {{ vars.port }, as int {{ vars.port | int }}; "
        "fine: {{ vars.port }} and {{ user }}.")
    path = tmp_path / "fixture-good.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = runner.invoke(app, ["template", "check", str(path)])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if "not a variable reference" in line]
    assert notes == [f'  note: spec.description: "{ref}" is not a variable reference (write '
                     "{{ vars.NAME }}): it is left as written"
                     for ref in ("{{ var.port }}", "{{ vars.port }, as int",
                                 "{{ vars.port | int }}")], result.output


def test_check_prints_every_problem_and_exits_1(tmp_path: Path) -> None:
    doc = yaml.safe_load((FIXTURES / "good.yaml").read_text())
    doc["spec"]["assets"]["containers"][1]["networks"][0]["subnet"] = "dmz2"
    doc["spec"]["successCriteria"][0]["checks"][0]["container"] = "ghost"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    result = runner.invoke(app, ["template", "check", str(FIXTURES / "good.yaml"), str(bad)])
    assert result.exit_code == 1
    assert 'spec.assets.containers[1].networks[0]: unknown subnet "dmz2"' in result.output
    assert 'spec.successCriteria[0].checks[0].container: unknown container "ghost"' in result.output
    assert "good.yaml: ok" in result.output


def test_check_reports_a_mistyped_key_and_a_wrong_reference_at_once(tmp_path: Path) -> None:
    """A schema problem stopped the cross-reference checks: an author fixed a mistyped key
    and only then was told of an unknown subnet (two passes). Unknown keys are now reported
    with the cross-reference problems; a wrong value, which leaves nothing to cross-check
    safely, says that more may follow once it is fixed."""
    doc = yaml.safe_load((FIXTURES / "good.yaml").read_text())
    doc["spec"]["assets"]["containers"][1]["networks"][0]["subnet"] = "dmz2"
    doc["spec"]["successCriteria"][0]["checks"][0]["timeout"] = 5  # timeout_seconds
    bad = tmp_path / "fixture-good.yaml"
    bad.write_text(yaml.safe_dump(doc))
    result = runner.invoke(app, ["template", "check", str(bad)])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"{bad}: INVALID (2 problem(s))",
        "  spec.successCriteria[0].checks[0].timeout: Extra inputs are not permitted",
        '  spec.assets.containers[1].networks[0]: unknown subnet "dmz2"']

    doc["spec"]["limits"]["cpu"] = "lots"
    bad.write_text(yaml.safe_dump(doc))
    result = runner.invoke(app, ["template", "check", str(bad)])
    assert result.exit_code == 1
    assert "unknown subnet" not in result.output
    assert result.output.splitlines()[-1] == (
        "  note: subnets, addresses, routes, host names, checks and variables are "
        "cross-checked once the problems above are fixed: check again then")


def test_check_notes_a_per_scenario_value_given_to_a_service_as_an_argument(
        tmp_path: Path) -> None:
    """Valid, but an author is told where a value leaks to the machine's process list, and
    where to put it instead; the value read from the environment draws no note."""
    doc = yaml.safe_load((FIXTURES / "good.yaml").read_text())
    doc["spec"]["assets"]["containers"][2]["command"] = [
        "/bin/sh", "-c", 'exec /usr/bin/python3 -m http.server "$SERVE_PORT" -d /srv/www']
    env = tmp_path / "env.yaml"
    env.write_text(yaml.safe_dump(doc))
    result = runner.invoke(app, ["template", "check", str(FIXTURES / "good.yaml"), str(env)])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if "note:" in line]
    assert notes == ['  note: spec.assets.containers[2].command[3]: "{{ vars.port }}" is an '
                     "argument of the service: local users of the machine can read it where "
                     "/proc lacks hidepid; if the learner must find it, pass it in environment "
                     "and read it there"], result.output
    assert result.output.index("note:") < result.output.index("env.yaml: ok")


def test_check_unreadable_and_non_yaml(tmp_path: Path) -> None:
    junk = tmp_path / "junk.yaml"
    junk.write_text("a: [unclosed")
    result = runner.invoke(app, ["template", "check", str(junk), str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2  # an unreadable file is a usage error (exit 2), above invalid
    assert "not valid UTF-8 YAML" in result.output
    assert "cannot read file" in result.output


def test_schema_prints_shipped_schema() -> None:
    result = runner.invoke(app, ["template", "schema"])
    assert result.exit_code == 0
    assert json.loads(result.output) == generate_schema()
