"""`forge lab test`'s proof of one lab: every step launches its own lab and grades it.

Steps: untouched scores 0; the reference solution scores 1.0; per-scenario values differ
between two launches (in every criterion that uses them); an answer copied from the
other instance fails those criteria; each declared partial earns its declared score;
each declared gaming attempt fails its criterion; the generic attempts of
`forge.authoring.attacks` fail what they target. Steps run a few at a time; each one's
labs are destroyed by the harness whatever happens.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from forge.authoring import attacks
from forge.authoring.harness import Graded, Harness, LabRun, LabTestFailure, template_ready
from forge.authoring.labtest import LabTest, script_sections
from forge.runtime.base import Runtime, RuntimeFault, ServicesNotReady
from forge.templates.dsl_models import ScenarioTemplate
from forge.templates.variables import REFERENCE_RE, generate_values, render

DRAWS = 32
Check = Callable[[Graded], tuple[bool, str]]


@dataclass(frozen=True)
class StepResult:
    """One row of the report."""

    name: str
    expected: str
    got: str
    ok: bool
    seconds: float


def _criteria_text(t: ScenarioTemplate) -> dict[str, str]:
    return {c.id: c.model_dump_json(include={"checks"}) for c in t.spec.success_criteria}


def dependent_criteria(template: ScenarioTemplate) -> list[str]:
    """Criteria whose checks change with the per-scenario values (they use a variable)."""
    if not template.spec.variables:
        return []
    one = _criteria_text(render(template, generate_values(template)))
    raw = _criteria_text(template)
    return [cid for cid, text in raw.items() if "{{" in text and one[cid] != text]


def _varied(template: ScenarioTemplate, criteria: list[str]) -> set[str]:
    """The variables `criteria`'s checks use that can take more than one value."""
    raw = _criteria_text(template)
    used = {m for c in criteria for m in REFERENCE_RE.findall(raw[c])}
    return {name for name, var in template.spec.variables.items()
            if name in used and (var.kind != "int" or var.min != var.max)}


def distinct_values(template: ScenarioTemplate, first: dict[str, str],
                    criteria: list[str]) -> dict[str, str] | None:
    """Values differing from `first` in every variable `criteria` use, and in their checks.

    A check that differs only in one of its variables is not enough: an answer copied
    from the other instance may name only the variable that stayed the same (cissp's
    intrusion check names the attacker and the scanner; with the same attacker the
    copied register passes).
    """
    mine = _criteria_text(render(template, first))
    varied = _varied(template, criteria)
    for _ in range(DRAWS):
        values = generate_values(template)
        other = _criteria_text(render(template, values))
        if all(values[v] != first[v] for v in varied) and all(
                other[c] != mine[c] for c in criteria):
            return values
    return None


def _fmt(g: Graded) -> str:
    failed = [c for c, ok in g.passed.items() if not ok]
    return f"{g.score:g}" + (f" (failed: {', '.join(failed)})" if failed and g.score else "")


class LabProof:
    """The steps of one lab's test, run against `runtime`."""

    def __init__(self, runtime: Runtime, template: ScenarioTemplate, plan: LabTest,
                 base: Path) -> None:
        self.template = template
        self.plan = plan
        self.base = base
        self.solution = plan.solution.text(base)
        # The plan's own list, else the template's ready_ports (which the local runtime's
        # create already waits for; a plan's list is checked after it).
        ready = tuple((r.host, r.port) for r in plan.ready) or template_ready(template)
        self.harness = Harness(runtime, template, ready, plan.host)
        criteria = [c.id for c in template.spec.success_criteria]
        self.answer_criteria = sorted({c for a in plan.answers for c in (a.criteria or criteria)})
        self.answers = [a.path for a in plan.answers]

    def _graded(self, act: Callable[[LabRun], object] | None,
                values: dict[str, str] | None = None) -> Graded:
        run = self.harness.launch(values)
        if act is not None:
            act(run)
        return run.grade()

    def _type(self, run: LabRun, script: str, what: str, *, must: bool = True) -> None:
        """Type a script in the terminals it names (`# host:` sections), else the plan's.
        Each section goes to a real terminal left open until grading, so a service the
        script starts in the background keeps running, as it does for a learner."""
        for host, section in script_sections(script, self.plan.host):
            try:
                run.in_terminal(section, timeout=120, host=host, check=must)
            except LabTestFailure as exc:
                raise LabTestFailure(f"{what}: {exc}") from None

    def _solve(self, run: LabRun) -> None:
        self._type(run, self.solution, "the reference solution")

    # Each step returns (expected, got, ok).
    def untouched(self) -> tuple[str, str, bool]:
        g = self._graded(None)
        return "0", _fmt(g), g.score == 0

    def partial(self, index: int) -> tuple[str, str, bool]:
        p = self.plan.partials[index]
        g = self._graded(lambda run: self._type(run, p.text(self.base), f"partial {p.name}"))
        return f"{p.expected_score:g}", _fmt(g), abs(g.score - p.expected_score) < 1e-6

    def gaming(self, index: int) -> tuple[str, str, bool]:
        attempt = self.plan.gaming[index]
        g = self._graded(lambda run: self._type(run, attempt.text(self.base), attempt.name,
                                                must=False))
        if attempt.criterion not in g.passed:
            raise LabTestFailure(f"no criterion {attempt.criterion!r} in the template")
        ok = not g.passed[attempt.criterion]
        return f"{attempt.criterion} fails", "fails" if ok else "PASSES", ok

    def _answers_attack(self, script: str, test: str) -> tuple[str, str, bool]:
        def act(run: LabRun) -> None:
            self._solve(run)
            run.in_terminal(script)
            run.must(attacks.in_place(self.answers, test), f"setting up the attempt ({test})")
        g = self._graded(act)
        passing = [c for c in self.answer_criteria if g.passed.get(c)]
        want = ", ".join(self.answer_criteria) + " fail"
        return want, ("PASSES: " + ", ".join(passing)) if passing else "all fail", not passing

    def fifo(self) -> tuple[str, str, bool]:
        return self._answers_attack(attacks.fifo_answers(self.answers), "-p")

    def symlink(self) -> tuple[str, str, bool]:
        return self._answers_attack(attacks.symlink_answers(self.answers), "-L")

    def stdin_link(self) -> tuple[str, str, bool]:
        return self._answers_attack(attacks.stdin_answers(self.answers), "-L")

    def tamper(self) -> tuple[str, str, bool]:
        g = self._graded(lambda run: run.sh(attacks.tamper_grader(run.rendered, self.plan.host,
                                                               self.answers)))
        return "0", _fmt(g), g.score == 0

    def background(self) -> tuple[str, str, bool]:
        def act(run: LabRun) -> None:
            run.in_terminal(attacks.background_solver(self.solution) + attacks.BACKGROUND_ALIVE)
        g = self._graded(act)
        return "0", _fmt(g), g.score == 0

    def reference_and_copy(self) -> list[tuple[str, str, str, bool]]:
        """Reference solution, distinct values, and the cross-instance copy (two labs)."""
        rows: list[tuple[str, str, str, bool]] = []
        dependent = dependent_criteria(self.template)
        first = generate_values(self.template)
        second = distinct_values(self.template, first, dependent) if dependent else None
        differ = bool(dependent) and second is not None
        rows.append(("per-scenario values differ", f"{len(dependent) or '≥1'} criteria differ",
                     f"{len(dependent)} differ" if differ else "values do not change the checks",
                     differ))
        solved = self.harness.launch(first)
        self._solve(solved)
        copied = {p: solved.read(p) for p in self.answers}
        g = solved.grade()
        rows.append(("reference solution", "1", _fmt(g), g.score == 1.0))
        targets = [c for c in self.answer_criteria if c in dependent]
        if self.answers and targets and second is not None:
            def paste(run: LabRun) -> None:
                for path, data in copied.items():
                    if data is not None:
                        run.write(path, data)
            h = self._graded(paste, second)
            passing = [c for c in targets if h.passed[c]]
            rows.append(("answers copied from another instance", ", ".join(targets) + " fail",
                         ("PASSES: " + ", ".join(passing)) if passing else "all fail",
                         not passing))
        return rows

    def steps(self) -> list[tuple[str, Callable[[], tuple[str, str, bool]]]]:
        """The single-lab steps that apply to this lab (answer attempts need answers)."""
        out: list[tuple[str, Callable[[], tuple[str, str, bool]]]] = [
            ("untouched", self.untouched)]
        out += [(f"partial {p.name}", functools.partial(self.partial, i))
                for i, p in enumerate(self.plan.partials)]
        out += [(f"gaming {g.name}", functools.partial(self.gaming, i))
                for i, g in enumerate(self.plan.gaming)]
        if self.answers:
            out += [("generic: answers as FIFOs", self.fifo),
                    ("generic: answers as symlinks to /tmp", self.symlink),
                    ("generic: answers linked to grader stdin", self.stdin_link)]
        out += [("generic: tamper with grader files", self.tamper),
                ("generic: background process into grading", self.background)]
        return out


def _error(exc: BaseException) -> str:
    """A step's error for the author: a service that never listened also says what it left
    (its exit status, the end of its output)."""
    if isinstance(exc, ServicesNotReady) and exc.output:
        return f"error: {exc}; {exc.output}"
    return f"error: {exc}"


def _timed(name: str, step: Callable[[], tuple[str, str, bool]]) -> StepResult:
    start = time.monotonic()
    try:
        expected, got, ok = step()
    except (LabTestFailure, RuntimeFault, OSError) as exc:
        expected, got, ok = "runs", _error(exc), False
    return StepResult(name, expected, got, ok, time.monotonic() - start)


def _pair(proof: LabProof) -> list[StepResult]:
    start = time.monotonic()
    try:
        rows = proof.reference_and_copy()
    except (LabTestFailure, RuntimeFault, OSError) as exc:
        return [StepResult("reference solution", "1", _error(exc), False,
                           time.monotonic() - start)]
    took = (time.monotonic() - start) / len(rows)
    return [StepResult(n, e, g, ok, took) for n, e, g, ok in rows]


def prove_lab(runtime: Runtime, template: ScenarioTemplate, plan: LabTest, base: Path,
              jobs: int = 2) -> list[StepResult]:
    """Run every step of one lab (`jobs` labs at a time); destroys every lab it made."""
    proof = LabProof(runtime, template, plan, base)
    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        pair = pool.submit(_pair, proof)
        singles = [pool.submit(_timed, name, step) for name, step in proof.steps()]
        return pair.result() + [f.result() for f in singles]
    finally:
        # Also on Ctrl-C: no new lab starts, running steps end, then every lab goes.
        proof.harness.stop()
        pool.shutdown(wait=True, cancel_futures=True)
        proof.harness.close()
