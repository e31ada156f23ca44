"""Which tasks "Check this task" must leave to Submit: those the learner could watch run.

A grading check runs in a sandbox of its own but shares its host's network namespace. One
that connects out from a host the learner has a shell on shows where it connects (in
`/proc/net/tcp`, still for a minute after, in TIME_WAIT), which is often the answer itself
(netplus: ADDRESS:PORT). While the lab runs such a task is not checked; Submit runs it
after the seal, when no learner process is left. Read from the check's command text: the
network tools a check script would call by name.
"""

from __future__ import annotations

import re

from forge.templates.dsl_grading import Criterion

# A tool name as a command word (a path to it counts; `ssh-keygen`, `/etc/ssh/`, `~/.ssh`
# or `host=ops` do not).
NETWORK_TOOL = re.compile(r"(?<![\w.-])(?:curl|wget|nc|ncat|socat|dig|nslookup|ssh|ssh-keyscan|"
                          r"ping|nmap|telnet)(?![\w./-])|/dev/(?:tcp|udp)/|openssl\s+s_client")


def talks_to_network(command: list[str] | tuple[str, ...]) -> bool:
    """Whether a check's command (its argv, joined) calls a network tool by name."""
    return NETWORK_TOOL.search(" ".join(command)) is not None


def watched(criterion: Criterion, learner_hosts: tuple[str, ...]) -> bool:
    """Would running `criterion` on the live lab show its answer to the learner?"""
    return any(check.container in learner_hosts and talks_to_network(check.command)
               for check in criterion.checks)
