"""Gaming a lab's grading from the learner's terminal scores nothing (the cissp lab, real
LocalRuntime, graded as the orchestrator grades: `forge.grading.runner.grade`).

- an answer file that is a FIFO fed by a writer left running;
- an answer file that is a symbolic link: to the real answer moved to /tmp, or to the
  grader's stdin, where the expected values arrive;
- a process left running from the terminal that solves the lab when grading signals it
  (the seal kills it with SIGKILL, so it never runs: signalled, it would score 1.0);
- the answer of another instance of the same lab (its per-scenario values differ).
Each attempt is first shown to be in place (the FIFO exists, the process runs).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.authoring import attacks
from forge.authoring.harness import Harness, LabRun
from forge.authoring.labtest import lab_test_path, load_lab_test
from forge.authoring.prove import dependent_criteria, distinct_values
from forge.content import content_path
from forge.templates.variables import generate_values

from ..support.shipped_labs import shipped_harness

pytestmark = pytest.mark.root
TEMPLATES = content_path("templates")
REGISTER = "/workspace/risk_register.json"
CRITERIA = ("register-structure", "intrusion-identified", "exposed-key-identified",
            "weak-config-identified")


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """Labs of the shipped cissp template on a runtime of this module's own."""
    with shipped_harness(tmp_path_factory.mktemp("gaming"), "cissp", "g") as h:
        yield h


@pytest.fixture(scope="module")
def solution() -> str:
    path = lab_test_path(TEMPLATES, "cissp")
    return load_lab_test(path).solution.text(Path(path).parent)


def solved(harness: Harness, solution: str) -> LabRun:
    run = harness.launch()
    run.must(solution, "the reference solution")
    return run


def test_fifo_answer_fed_by_a_running_writer_scores_zero(harness: Harness,
                                                          solution: str) -> None:
    run = solved(harness, solution)
    run.in_terminal(attacks.fifo_answers([REGISTER]))
    run.must(f"test -p {REGISTER} && timeout 5 cat {REGISTER} | grep -q risks",
             "the FIFO serves the real register while the writer runs")
    graded = run.grade()
    assert graded.score == 0 and not any(graded.passed.values())


@pytest.mark.parametrize("trick", ["to-tmp", "to-grader-stdin"])
def test_symlinked_answer_scores_zero(harness: Harness, solution: str, trick: str) -> None:
    run = solved(harness, solution)
    script = (attacks.symlink_answers([REGISTER]) if trick == "to-tmp"
              else attacks.stdin_answers([REGISTER]))
    run.in_terminal(script)
    run.must(f"test -L {REGISTER}", "the answer is a link")
    if trick == "to-tmp":
        run.must(f"grep -q risks {REGISTER}", "the link leads to the real register")
    graded = run.grade()
    assert graded.score == 0 and not any(graded.passed.values())


def test_background_process_left_running_never_acts_in_grading(harness: Harness,
                                                                solution: str) -> None:
    run = harness.launch()
    run.in_terminal(attacks.background_solver(solution) + attacks.BACKGROUND_ALIVE)
    graded = run.grade()
    assert graded.score == 0 and not any(graded.passed.values())


def test_the_background_solver_is_a_real_threat_when_signalled(harness: Harness,
                                                                solution: str) -> None:
    # The control for the test above: a seal that signalled instead of SIGKILL would let
    # the process solve the lab, and it would score everything.
    run = harness.launch()
    run.in_terminal(attacks.background_solver(solution) + attacks.BACKGROUND_ALIVE)
    run.must(f'kill -TERM "$(cat {attacks.STASH}/bg.pid)"\n'
             f"until [ -s {REGISTER} ]; do sleep 0.05; done; sleep 0.5",
             "signalling the background process")
    assert run.grade().score == 1.0


def test_answer_copied_from_another_instance_scores_nothing_it_depends_on(
        harness: Harness, solution: str) -> None:
    template = harness.template
    dependent = dependent_criteria(template)
    assert sorted(dependent) == ["exposed-key-identified", "intrusion-identified",
                                 "weak-config-identified"]
    first = generate_values(template)
    second = distinct_values(template, first, dependent)
    assert second is not None
    source = harness.launch(first)
    source.must(solution, "the reference solution")
    register = source.read(REGISTER)
    assert register is not None
    assert source.grade().score == 1.0
    target = harness.launch(second)
    target.write(REGISTER, register)
    graded = target.grade()
    assert graded.passed == {"register-structure": True, "intrusion-identified": False,
                             "exposed-key-identified": False, "weak-config-identified": False}
    assert set(CRITERIA) == set(graded.passed)


def test_the_other_instance_differs_in_every_variable_a_check_uses(
        harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """A draw whose intrusion check differs only by the scanner is not another instance.

    With the same attacker, a register copied from the first instance names the right
    address and passes `intrusion-identified` (CI saw `forge lab test cissp` fail so).
    """
    template = harness.template
    dependent = dependent_criteria(template)
    first = generate_values(template)
    same_attacker = dict(generate_values(template), attacker=first["attacker"],
                         scanner=str(2 + (int(first["scanner"]) - 1) % 253))
    fresh = dict(generate_values(template), attacker=str(2 + (int(first["attacker"]) - 1) % 253),
                 scanner=str(2 + (int(first["scanner"]) - 1) % 253),
                 max_tries=str(12 + (int(first["max_tries"]) - 11) % 88))
    draws = iter([same_attacker, fresh])
    monkeypatch.setattr("forge.authoring.prove.generate_values", lambda _t: next(draws))
    assert distinct_values(template, first, dependent) == fresh
