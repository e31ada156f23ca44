"""Attack: read a task's answer off the network while "Check this task" runs it.

A check runs in a sandbox of its own but shares its host's network namespace. netplus's
save-page check runs on the learner's own host as `curl http://10.61.2.23:$port/` with the
secret port on stdin: a learner process polling `/proc/net/tcp` (or reading the TIME_WAIT
entry for a minute after) saw `10.61.2.23:<port>`, the answer to find-server, without
scanning. While the lab runs, such a check (on a host the learner has a shell on, talking
to the network) is refused by "Check this task" with 409 `checked_at_submit`; Submit runs
it after the seal, when no learner process is left to watch. The same holds when the
connection is made by a grader script the template seeds and the check runs (by path, by
file name, or through another seeded script), not only by a tool named in the command.
"""

from __future__ import annotations

from typing import Any

import pytest

from forge.content import content_path
from forge.grading.watched_checks import seeded_scripts, talks_to_network, watched
from forge.templates.check_network import command_names_network
from forge.templates.dsl_grading import Check, Criterion
from forge.templates.dsl_hosts import SeedFile
from forge.templates.registry import TemplateRegistry
from forge.templates.validate import TemplateError, parse_template

NETPLUS = content_path("templates") / "netplus.yaml"


def _registry() -> TemplateRegistry:
    return TemplateRegistry.load(content_path("templates"))


def test_a_check_the_learner_could_watch_is_left_to_submit() -> None:
    registry = _registry()
    netplus = registry.get("netplus").template
    criteria = {c.id: c for c in netplus.spec.success_criteria}
    hosts, scripts = registry.learner_hosts("netplus"), seeded_scripts(netplus)
    assert "learner" in hosts
    assert watched(criteria["save-page"], hosts, scripts)  # curl from the learner's own host
    assert not watched(criteria["find-server"], hosts, scripts)  # reads a file
    assert not watched(criteria["inventory-serial"], hosts, scripts)
    # The same check from a host the learner has no shell on is not watched there.
    assert not watched(criteria["save-page"], tuple(h for h in hosts if h != "learner"),
                       scripts)


def test_network_tools_are_recognised_as_commands_not_as_words() -> None:
    for command in ("/usr/bin/curl -s URL", "x; ssh root@h", "ssh-keyscan -p 1 h",
                    "cat < /dev/tcp/h/80", "dig @ns a.example", "openssl s_client -connect h:1",
                    "python3 -c 'import socket; socket.create_connection((h, 1))'",
                    "python3 -c 'from urllib.request import urlopen'", "rsync h::x .",
                    "perl -MIO::Socket::INET -e 1"):
        assert command_names_network(["/bin/sh", "-c", command]), command
    for command in ("ssh-keygen -q -f /tmp/k", "grep x /etc/ssh/sshd_config ~/.ssh/keys",
                    "sshd -T -C host=ops", "openssl verify ca.pem", "cat /proc/net/tcp"):
        assert not command_names_network(["/bin/sh", "-c", command]), command
    # ssh-hardening's no-root-login reads sshd's own config on the learner host: checkable,
    # though it names /etc/ssh/sshd_config, seeded with a `Subsystem sftp` line (a data
    # file: its words are not a program's).
    registry = _registry()
    ssh = registry.get("ssh-hardening").template
    criteria = {c.id: c for c in ssh.spec.success_criteria}
    assert not watched(criteria["no-root-login"], registry.learner_hosts("ssh-hardening"),
                       seeded_scripts(ssh))


PROBE = "#!/usr/bin/env python3\nimport socket\nsocket.create_connection(('10.61.2.23', 8080))\n"


def _check(command: list[str], **extra: Any) -> Check:
    return Check.model_validate({"container": "learner", "command": command,
                                 "expect": {"exit_code": 0}, **extra})


def _with_seeds(files: list[dict[str, Any]]) -> tuple[Any, dict[str, dict[str, str]]]:
    """netplus with `files` seeded on its learner host, and its seeded scripts."""
    netplus = _registry().get("netplus").template
    containers = tuple(
        c.model_copy(update={"files": (*c.files, *(SeedFile.model_validate(f) for f in files))})
        if c.name == "learner" else c for c in netplus.spec.assets.containers)
    assets = netplus.spec.assets.model_copy(update={"containers": containers})
    template = netplus.model_copy(update={"spec": netplus.spec.model_copy(
        update={"assets": assets})})
    return template, seeded_scripts(template)


@pytest.mark.parametrize("command", [
    ["/usr/bin/python3", "-I", "/opt/forge/probe.py"],  # by path
    ["/bin/sh", "-c", "cd /opt/forge && python3 -I probe.py"],  # by file name
    ["/bin/sh", "/opt/forge/check.sh"],  # through a seeded shell script that runs it
])
def test_a_seeded_grader_that_connects_out_is_left_to_submit(command: list[str]) -> None:
    _, scripts = _with_seeds([
        {"path": "/opt/forge/probe.py", "content": PROBE, "mode": 0o755},
        {"path": "/opt/forge/check.sh", "content": "#!/bin/sh\nexec python3 -I probe.py\n"},
    ])
    criterion = Criterion(id="reach", description="x", checks=(_check(command),))
    assert watched(criterion, ("learner",), scripts), command
    assert not watched(criterion, ("ops",), scripts)  # on a host without a shell: checkable


def test_a_data_file_or_an_unnamed_script_does_not_make_a_check_watched() -> None:
    _, scripts = _with_seeds([
        {"path": "/opt/forge/probe.py", "content": PROBE},
        {"path": "/srv/notes.txt", "content": "ssh in and curl the page, then ping it\n"},
    ])
    assert "/srv/notes.txt" not in scripts["learner"]
    reads = Criterion(id="read", description="x",
                      checks=(_check(["/bin/grep", "-q", "x", "/srv/notes.txt"]),))
    assert not watched(reads, ("learner",), scripts)


def test_the_author_may_say_either_way() -> None:
    _, scripts = _with_seeds([{"path": "/opt/forge/probe.py", "content": PROBE}])
    offline = _check(["/usr/bin/python3", "-I", "/opt/forge/probe.py", "check"],
                     network=False)
    assert not talks_to_network(offline, scripts["learner"])
    online = _check(["/bin/cat", "/workspace/x"], network=True)
    assert talks_to_network(online, scripts["learner"])
    assert watched(Criterion(id="c", description="x", checks=(online,)), ("learner",), scripts)


def test_a_template_cannot_call_a_network_command_offline() -> None:
    """`network: false` on a check whose command names curl would let "Check this task"
    run it where the learner watches: the template check refuses it, naming the field."""
    text = NETPLUS.read_text("utf-8")
    anchor = '''            - read -r port; curl -sS --max-time 5 "http://10.61.2.23:$port/" | cmp - /workspace/page.html
'''
    assert anchor in text
    with pytest.raises(TemplateError) as err:
        parse_template(text.replace(anchor, anchor + "          network: false\n").encode())
    fields = [p.path for p in err.value.problems]
    assert any(f.endswith(".network") for f in fields), fields
    parse_template(text.replace(anchor, anchor + "          network: true\n").encode())


def test_shipped_graders_that_only_read_files_stay_checkable() -> None:
    """log-forensics and password-cracking seed one script that is both the lab's server
    and its grader; their checks run the grader's mode, which reads a file, and say so."""
    registry = _registry()
    for name, ids in (("log-forensics", ("intrusion-source", "compromised-account",
                                         "first-login-time")),
                      ("password-cracking", ("password-recovered",))):
        template = registry.get(name).template
        criteria = {c.id: c for c in template.spec.success_criteria}
        for cid in ids:
            assert not watched(criteria[cid], registry.learner_hosts(name),
                               seeded_scripts(template)), (name, cid)
            assert all(chk.network is False for chk in criteria[cid].checks)
