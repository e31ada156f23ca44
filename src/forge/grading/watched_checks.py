"""Which tasks "Check this task" must leave to Submit: those the learner could watch run.

A grading check runs in a sandbox of its own but shares its host's network namespace. One
that reaches the network from a host the learner has a shell on shows where it connects
(in `/proc/net/tcp`, still for a minute after, in TIME_WAIT), which is often the answer
itself (netplus: ADDRESS:PORT). While the lab runs such a task is not checked; Submit runs
it after the seal, when no learner process is left to watch.

A check's `network` field says whether it reaches the network. Unset, it is inferred from
what the check runs: its command text and every script the template seeds on that host
which the command names (by path or file name), and the scripts those name in turn. Both
are searched for the network tools a check would call by name and the networking modules
of the script languages graders are written in. A script that has networking for another
of its modes (a lab's service and grader in one file) makes its checks look networked: the
author then says `network: false`, which the template check refuses on a check whose
command itself names a network tool. A program of the host's image is not read here:
authors keep graders in seeded files, as the shipped templates do.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator, Mapping

from forge.templates.check_network import NETWORK_TOOL
from forge.templates.dsl_grading import Check, Criterion
from forge.templates.dsl_models import ScenarioTemplate

SCRIPT_SUFFIXES = (".sh", ".bash", ".py", ".pl", ".rb", ".php", ".js", ".lua", ".tcl", ".awk")
MAX_DEPTH = 4  # a seeded script naming one naming another ...: deep enough for any grader


def talks_to_network(check: Check, scripts: Mapping[str, str] | None = None) -> bool:
    """Whether `check` reaches the network: as its `network` field says, else inferred
    from its command and the seeded `scripts` (path → content, on its host) it names."""
    if check.network is not None:
        return check.network
    command = " ".join(check.command)
    return any(NETWORK_TOOL.search(text) is not None
               for text in _texts(command, scripts or {}))


def _names(path: str, text: str) -> bool:
    """Whether `text` names the file at `path` (its full path, or its file name as a word)."""
    if path in text:
        return True
    base = re.escape(posixpath.basename(path))
    return re.search(rf"(?<![\w.-]){base}(?![\w.-])", text) is not None


def _texts(command: str, scripts: Mapping[str, str]) -> Iterator[str]:
    """The command text, then each seeded script it names, transitively (MAX_DEPTH levels)."""
    yield command
    seen: set[str] = set()
    layer = [command]
    for _ in range(MAX_DEPTH):
        found = [(p, c) for p, c in scripts.items()
                 if p not in seen and any(_names(p, text) for text in layer)]
        if not found:
            return
        seen.update(p for p, _ in found)
        layer = [c for _, c in found]
        yield from layer


def seeded_scripts(template: ScenarioTemplate) -> dict[str, dict[str, str]]:
    """host → path → content of the files the template seeds that are programs (a `#!`
    line, an executable mode or a script's suffix); data files (a config, a word list)
    are read by checks, not run, so their words say nothing of the network."""
    return {c.name: {f.path: f.content for f in c.files
                     if f.content.startswith("#!") or (f.mode or 0) & 0o111
                     or f.path.endswith(SCRIPT_SUFFIXES)}
            for c in template.spec.assets.containers}


def watched(criterion: Criterion, learner_hosts: tuple[str, ...],
            scripts: Mapping[str, Mapping[str, str]]) -> bool:
    """Would running `criterion` on the live lab show its answer to the learner?
    `scripts`: the template's `seeded_scripts`."""
    return any(check.container in learner_hosts
               and talks_to_network(check, scripts.get(check.container))
               for check in criterion.checks)


def checkable(criterion: Criterion, learner_hosts: tuple[str, ...],
              scripts: Mapping[str, Mapping[str, str]]) -> bool:
    """Whether "Check this task" may run `criterion` on the live lab: its template allows
    it (``check_before_submit``: not for an answer drawn from a few candidates, which one
    check after another would find) and running it would not show its answer (``watched``)."""
    return criterion.check_before_submit and not watched(criterion, learner_hosts, scripts)

