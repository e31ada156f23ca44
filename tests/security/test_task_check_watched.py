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
from forge.grading.watched_checks import talks_to_network, watched
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


def test_network_tools_are_recognised_as_commands_not_as_words() -> None:
    for command in ("/usr/bin/curl -s URL", "x; ssh root@h", "ssh-keyscan -p 1 h",
                    "cat < /dev/tcp/h/80", "dig @ns a.example", "openssl s_client -connect h:1"):
        assert talks_to_network(["/bin/sh", "-c", command]), command
    for command in ("ssh-keygen -q -f /tmp/k", "grep x /etc/ssh/sshd_config ~/.ssh/keys",
                    "sshd -T -C host=ops", "openssl verify ca.pem"):
        assert not talks_to_network(["/bin/sh", "-c", command]), command
    # ssh-hardening's no-root-login reads sshd's own config on the learner host: checkable.
    registry = TemplateRegistry.load(content_path("templates"))
    ssh = {c.id: c for c in registry.get("ssh-hardening").template.spec.success_criteria}
    assert not watched(ssh["no-root-login"], registry.learner_hosts("ssh-hardening"))
