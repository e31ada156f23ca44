"""Find the labs to test in a template directory, prove one by name, and render its table."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table
from rich.text import Text

from forge.authoring.labtest import check_against, lab_test_path, load_lab_test
from forge.authoring.prove import StepResult, prove_lab
from forge.runtime.base import Runtime
from forge.templates import TemplateRegistry
from forge.templates.problems import TemplateError


class LabTestInputError(ValueError):
    """No lab named, or a name the directory does not hold (the message says which)."""


def select_labs(templates_dir: Path, names: list[str],
                all_labs: bool) -> tuple[list[str], dict[str, TemplateError]]:
    """The lab names to test (`names`, or every template of the directory with `--all`),
    and those of them that cannot be loaded, each with its problems: one invalid draft
    does not stop the others from being tested."""
    registry, problems = TemplateRegistry.load_each(templates_dir)
    invalid = {name: TemplateError(found, str(templates_dir))
               for name, found in problems.items()}
    if all_labs:
        return list(registry.names()), invalid
    if not names:
        raise LabTestInputError("name a lab, or use --all")
    unknown = [n for n in names if n not in registry and n not in invalid]
    if unknown:
        raise LabTestInputError(f"no template named {', '.join(unknown)} in {templates_dir} "
                                f"(known: {', '.join(registry.names()) or 'none'})")
    return ([n for n in names if n in registry],
            {n: invalid[n] for n in names if n in invalid})


def prove_named(runtime: Runtime, templates_dir: Path, name: str,
                jobs: int = 2) -> list[StepResult]:
    """Load template `name` and its test plan from `templates_dir` and prove it."""
    template = TemplateRegistry.load_each(templates_dir)[0].get(name).template
    path = lab_test_path(templates_dir, name)
    plan = load_lab_test(path)
    spec = template.spec
    check_against(plan, [c.id for c in spec.success_criteria],
                  [c.name for c in spec.assets.containers],
                  [n for n, v in spec.variables.items() if v.kind == "int"],
                  path.parent, str(path), list(template.learner_hosts))
    return prove_lab(runtime, template, plan, path.parent, jobs)


def table(name: str, results: list[StepResult], seconds: float) -> Table:
    """A rich table: one row per step, expected vs got, PASS/FAIL, time."""
    ok = all(r.ok for r in results)
    out = Table(title=f"forge lab test {name}: {'PASS' if ok else 'FAIL'} in {seconds:.1f} s")
    for column in ("step", "expected", "got", "result", "s"):
        out.add_column(column, overflow="fold")
    for r in results:
        # Text, never markup: a step's result can quote a lab service's output ("[/x]").
        out.add_row(Text(r.name), Text(r.expected), Text(r.got),
                    "[green]PASS[/]" if r.ok else "[bold red]FAIL[/]", f"{r.seconds:.1f}")
    return out
