"""A lab's test plan: `NAME.lab-test.yaml`, next to the template `NAME.yaml`.

It says how `forge lab test` proves the lab: the reference solution (a script run in the
learner's terminal host), partial solutions with the score each must earn, the answer
files the graders read (the generic gaming attempts replace them with FIFOs and symlinks
and copy them between instances), the services to wait for, and the lab's own gaming
attempts, each naming the criterion it must fail. The model is strict: an unknown field
or a bad value is an error naming the file and the field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from forge.errors import ForgeError
from forge.templates import dsl_limits as L
from forge.templates.dsl_fields import Ident
from forge.templates.registry import LAB_TEST_SUFFIX
from forge_verify.files import InputRefused, read_bounded_text

MAX_SCRIPT = 64 * 1024
MAX_PLAN_BYTES = 1024 * 1024  # as a template (forge.templates.validate.MAX_TEMPLATE_BYTES)
# `# host: NAME` starts a section; NAME is a template identifier (dsl_limits.IDENT_PATTERN).
_SECTION_RE = re.compile(r"(?m)^# host: (" + L.IDENT_PATTERN.strip("^$") + r")\n")


def script_sections(script: str, default_host: str) -> list[tuple[str, str]]:
    """(host, script) per `# host: NAME` section, in file order, each with the common lines
    before the first section: a lab with several learner hosts is solved by typing in each
    one's terminal. A script without sections is typed in `default_host`."""
    parts = _SECTION_RE.split(script)
    if len(parts) == 1:
        return [(default_host, script)]
    common = parts[0]
    return [(parts[i], common + parts[i + 1]) for i in range(1, len(parts), 2)]


class LabTestError(ForgeError):
    """A lab-test file that is missing or invalid (each problem names its field)."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__("invalid_lab_test", 422,
                         f"{source}: " + "; ".join(problems))
        self.problems = problems


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Script(_Model):
    """A script given inline (`script`) or as a file next to the lab-test file (`file`)."""

    script: Annotated[str | None, Field(min_length=1, max_length=MAX_SCRIPT)] = None
    file: Annotated[str | None, Field(min_length=1, max_length=255)] = None

    @model_validator(mode="after")
    def _one(self) -> Script:
        if (self.script is None) == (self.file is None):
            raise ValueError("give exactly one of script or file")
        if self.file is not None and self.file.startswith("/"):
            raise ValueError("file must be a path relative to the lab-test file")
        return self

    def text(self, base: Path) -> str:
        """The script's text (read from `base / file` for a file: at most MAX_SCRIPT bytes
        of UTF-8, else ValueError saying which)."""
        if self.script is not None:
            return self.script
        assert self.file is not None
        with open(base / self.file, "rb") as fh:
            data = fh.read(MAX_SCRIPT + 1)
        if len(data) > MAX_SCRIPT:
            raise ValueError(f"{self.file} is larger than {MAX_SCRIPT // 1024} KiB")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{self.file} is not UTF-8 text") from None


class Partial(Script):
    """A partial solution and the score (0 < score < 1) it must earn exactly."""

    name: Ident
    expected_score: Annotated[float, Field(gt=0, lt=1)]


class Gaming(Script):
    """A lab-specific gaming attempt: after it, `criterion` must not pass."""

    name: Ident
    criterion: Ident


class Answer(_Model):
    """A file the learner writes and graders read; `criteria` read it (default: all)."""

    path: Annotated[str, Field(pattern=r"^/(workspace|home|srv)/[A-Za-z0-9._/-]{1,200}$")]
    criteria: tuple[Ident, ...] = ()


class Ready(_Model):
    """A TCP port a host's service listens on once the lab is usable (a variable or number)."""

    host: Ident
    port: Annotated[str, Field(pattern=r"^([0-9]{1,5}|[a-z][a-z0-9_]{0,62})$")]


class LabTest(_Model):
    """The whole plan of one lab."""

    host: Ident = "learner"
    solution: Script
    ready: tuple[Ready, ...] = ()
    answers: tuple[Answer, ...] = ()
    partials: tuple[Partial, ...] = ()
    gaming: tuple[Gaming, ...] = ()


def check_against(plan: LabTest, criteria: list[str], hosts: list[str],
                  int_variables: list[str], base: Path, source: str,
                  learner_hosts: list[str] | None = None) -> None:
    """LabTestError unless every criterion, host, port variable and script file the plan
    names exists, and every script is typed on a host the learner has a terminal on
    (`learner_hosts`, default all `hosts`): a solution typed where no learner can type
    proves nothing."""
    terminals = hosts if learner_hosts is None else learner_hosts
    problems = [f"ready.{i}.port: {r.port!r} is neither a number nor an int variable"
                for i, r in enumerate(plan.ready)
                if not r.port.isdigit() and r.port not in int_variables]
    if plan.host not in hosts:
        problems.append(f"host: no host {plan.host!r} in the template")
    elif plan.host not in terminals:
        problems.append(f"host: {plan.host!r} is not a learner host (access: learner): "
                        "a learner gets no terminal there")
    problems += [f"ready.{i}.host: no host {r.host!r} in the template"
                 for i, r in enumerate(plan.ready) if r.host not in hosts]
    problems += [f"answers.{i}.criteria: no criterion {c!r} in the template"
                 for i, a in enumerate(plan.answers) for c in a.criteria if c not in criteria]
    problems += [f"gaming.{i}.criterion: no criterion {g.criterion!r} in the template"
                 for i, g in enumerate(plan.gaming) if g.criterion not in criteria]
    scripts = [("solution", plan.solution),
               *((f"partials.{i}", p) for i, p in enumerate(plan.partials)),
               *((f"gaming.{i}", g) for i, g in enumerate(plan.gaming))]
    problems += [f"{where}.file: {s.file} not found next to the plan" for where, s in scripts
                 if s.file is not None and not (base / s.file).is_file()]
    readable = []
    for where, s in scripts:
        if s.file is None or (base / s.file).is_file():
            try:
                readable.append((where, s.text(base)))
            except (OSError, ValueError) as exc:
                problems.append(f"{where}.file: {exc}")
    sections = [(where, host) for where, text in readable
                for host, _ in script_sections(text, plan.host)]
    problems += [f"{where}: section '# host: {host}' names no host of the template"
                 for where, host in sections if host not in hosts]
    problems += [f"{where}: section '# host: {host}' is not a learner host (access: "
                 "learner): a learner gets no terminal there"
                 for where, host in sections if host in hosts and host not in terminals
                 and host != plan.host]
    if problems:
        raise LabTestError(source, problems)


def lab_test_path(templates_dir: Path, name: str) -> Path:
    """Where the lab-test file of template `name` lives."""
    return templates_dir / f"{name}{LAB_TEST_SUFFIX}"


def parse_lab_test(data: Any, source: str) -> LabTest:
    """Validate a decoded lab-test document; LabTestError lists `field: message` problems."""
    try:
        return LabTest.model_validate(data)
    except ValidationError as err:
        problems = []
        for item in err.errors(include_input=False, include_url=False):
            where = ".".join(str(p) for p in item["loc"]) or "(document)"
            problems.append(f"{where}: {item['msg']}")
        raise LabTestError(source, problems) from None


def load_lab_test(path: Path) -> LabTest:
    """Read (bounded: a regular UTF-8 file of at most MAX_PLAN_BYTES) and validate `path`
    (a missing file is an error saying what to create)."""
    if not path.exists() and not path.is_symlink():
        raise LabTestError(str(path), ["no lab-test file: `forge lab new` scaffolds one, "
                                       "docs/authoring.md describes it"])
    try:
        doc = yaml.safe_load(read_bounded_text(path, MAX_PLAN_BYTES, what="lab-test file"))
    except InputRefused as exc:
        raise LabTestError(str(path), [f"cannot read file: {exc.reason}"]) from None
    except yaml.YAMLError as exc:
        raise LabTestError(str(path), [f"not valid YAML: {_yaml_where(exc)}"]) from None
    return parse_lab_test(doc, str(path))


def _yaml_where(exc: yaml.YAMLError) -> str:
    """What the parser found and where (1-based line and column), in one line."""
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return type(exc).__name__
    mark = exc.problem_mark
    return f"{exc.problem} (line {mark.line + 1}, column {mark.column + 1})"
