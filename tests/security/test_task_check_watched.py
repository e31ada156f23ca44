"""Attack: read a task's answer off the network while "Check this task" runs it.

A check runs in a sandbox of its own but shares its host's network namespace. netplus's
save-page check runs on the learner's own host as `curl http://10.61.2.23:$port/` with the
secret port on stdin: a learner process polling `/proc/net/tcp` (or reading the TIME_WAIT
entry for a minute after) saw `10.61.2.23:<port>`, the answer to find-server, without
scanning. While the lab runs, such a check (on a host the learner has a shell on, talking
to the network) is refused by "Check this task" with 409 `checked_at_submit`; Submit runs
it after the seal, when no learner process is left to watch.
"""

from __future__ import annotations

from forge.content import content_path
from forge.services.orchestrator.task_checks import watched
from forge.templates.registry import TemplateRegistry


def test_a_check_the_learner_could_watch_is_left_to_submit() -> None:
    registry = TemplateRegistry.load(content_path("templates"))
    netplus = registry.get("netplus").template
    criteria = {c.id: c for c in netplus.spec.success_criteria}
    hosts = registry.learner_hosts("netplus")
    assert "learner" in hosts
    assert watched(criteria["save-page"], hosts)  # curl from the learner's own host
    assert not watched(criteria["find-server"], hosts)  # reads a file: nothing to watch
    assert not watched(criteria["inventory-serial"], hosts)
    # The same check from a host the learner has no shell on is not watched there.
    assert not watched(criteria["save-page"], tuple(h for h in hosts if h != "learner"))
