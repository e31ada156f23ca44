"""`forge template …`: validate template files and print the Scenario DSL's JSON Schema."""

from __future__ import annotations

from pathlib import Path

import typer

NOT_CROSS_CHECKED = ("subnets, addresses, routes, host names, checks and variables are "
                     "cross-checked once the problems above are fixed: check again then")

app = typer.Typer(help="Scenario templates: validate files, print the JSON Schema.",
                  no_args_is_help=True)


@app.command("check")
def check(files: list[Path] = typer.Argument(..., help="Template files (YAML).")) -> None:
    """Validate each file; print every problem with its path. Exit 1 if any is invalid, 2 if
    any cannot be read or parsed at all (a device, FIFO, oversized or too deeply nested).
    A `NAME.lab-test.yaml` is checked as the lab's test plan (docs/authoring.md)."""
    from forge.authoring.labtest import LabTestError, load_lab_test
    from forge.templates import TemplateError, UnreadableTemplate, load_template_file
    from forge.templates.registry import LAB_TEST_SUFFIX
    from forge.templates.variables import exposed_references, near_miss_references

    bad = unreadable = 0
    for path in files:
        if path.name.endswith(LAB_TEST_SUFFIX):
            try:
                load_lab_test(path)
            except LabTestError as exc:
                bad += 1
                typer.echo(f"{path}: INVALID ({len(exc.problems)} problem(s))")
                for problem in exc.problems:
                    typer.echo(f"  {problem}")
                continue
            typer.echo(f"{path}: ok (lab-test plan)")
            continue
        try:
            loaded = load_template_file(path)
        except UnreadableTemplate as exc:
            unreadable += 1
            typer.echo(f"error: {exc.reason}", err=True)
            continue
        except TemplateError as exc:
            bad += 1
            typer.echo(f"{path}: INVALID ({len(exc.problems)} problem(s))")
            for p in exc.problems:
                typer.echo(f"  {p}")
            _warn_file_name(path, _written_name(path))
            if not exc.cross_checked:
                typer.echo(f"  note: {NOT_CROSS_CHECKED}")
            continue
        typer.echo(f"{path}: ok ({loaded.name}, sha256 {loaded.sha256})")
        _warn_file_name(path, loaded.name)
        for advice in [*near_miss_references(loaded.template),
                       *exposed_references(loaded.template)]:
            typer.echo(f"  note: {advice}")
    if unreadable:
        raise typer.Exit(2)
    if bad:
        raise typer.Exit(1)


def _warn_file_name(path: Path, name: str | None) -> None:
    """Warn when the file is not named after the template: the registry refuses it. Said
    for an invalid template too, where it came only once every other problem was fixed."""
    if name is not None and path.name != f"{name}.yaml":
        typer.echo(f"  warning: the services and `forge lab test` load template {name!r} "
                   f"only from a file named {name}.yaml (they refuse a template directory "
                   f"holding {path.name}): rename the file or metadata.name")


def _written_name(path: Path) -> str | None:
    """metadata.name as written in an invalid template (a string), if it can be read."""
    import yaml

    from forge.templates.validate import MAX_TEMPLATE_BYTES
    from forge_verify.files import InputRefused, read_bounded

    try:
        doc = yaml.safe_load(read_bounded(path, MAX_TEMPLATE_BYTES, what="template"))
    except (InputRefused, yaml.YAMLError, UnicodeDecodeError, RecursionError):
        return None
    meta = doc.get("metadata") if isinstance(doc, dict) else None
    name = meta.get("name") if isinstance(meta, dict) else None
    return name if isinstance(name, str) and name else None


@app.command("schema")
def schema(
    write: bool = typer.Option(False, "--write", help="Regenerate the shipped schema file."),
) -> None:
    """Print the JSON Schema of the Scenario DSL (the file shipped with Forge)."""
    from forge.templates import schema as s

    if write:
        target = Path(s.__file__).with_name(s.SCHEMA_FILE)
        target.write_text(s.render_schema(), encoding="utf-8")
        typer.echo(f"wrote {target}")
        return
    typer.echo(s.shipped_schema_text(), nl=False)
