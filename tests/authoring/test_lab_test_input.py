"""`forge lab test` on a template directory it cannot load (one of its templates invalid,
or no such directory) is an input error: exit 2 and every problem named, nothing launched.
Before: the TemplateError escaped as a traceback (exit 1), the one answer a lab author got
for a typo in any template of --dir."""

from __future__ import annotations

from pathlib import Path

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
