"""Attack: find an answer by "Check this task" on each candidate in turn (red team BQ).

"Check this task" says pass or fail and costs nothing (one run per task every 20 s, 30 per
lab). log-forensics asks for one of ten account names, one of a dozen source addresses
and one of three login times: about 24 checks found all three without reading the log
(score 1.0), and cissp's intrusion and weak-setting tasks have two candidates each. A
criterion says `check_before_submit: false` where that is so; the lab page then offers no
button for it ("Checked when you submit.") and the orchestrator refuses a check of it with
409 `checked_at_submit`, as for a check the learner could watch (test_task_check_watched).
"""

from __future__ import annotations

from forge.content import content_path
from forge.grading.watched_checks import checkable, seeded_scripts
from forge.templates.dsl_grading import Check, Criterion
from forge.templates.registry import TemplateRegistry

SUBMIT_ONLY = {
    "log-forensics": {"intrusion-source", "compromised-account", "first-login-time"},
    "cissp": {"intrusion-identified", "weak-config-identified"},
}


def test_tasks_with_few_candidate_answers_are_checked_only_at_submit() -> None:
    registry = TemplateRegistry.load(content_path("templates"))
    for name, submit_only in SUBMIT_ONLY.items():
        template = registry.get(name).template
        hosts, scripts = registry.learner_hosts(name), seeded_scripts(template)
        offered = {c.id for c in template.spec.success_criteria
                   if checkable(c, hosts, scripts)}
        assert not offered & submit_only, name
    # A task whose answer must be found among thousands keeps its button.
    netplus = registry.get("netplus").template
    criteria = {c.id: c for c in netplus.spec.success_criteria}
    assert checkable(criteria["find-server"], registry.learner_hosts("netplus"),
                     seeded_scripts(netplus))


def test_the_template_decides_and_a_check_is_offered_by_default() -> None:
    check = Check.model_validate({"container": "learner", "command": ["/bin/cat", "/w/a"],
                                  "expect": {"exit_code": 0}})
    offered = Criterion(id="a", description="x", checks=(check,))
    assert offered.check_before_submit and checkable(offered, ("learner",), {})
    held = Criterion.model_validate({"id": "a", "description": "x", "checks": [check],
                                     "check_before_submit": False})
    assert not checkable(held, ("learner",), {})
