"""The generic gaming attempts `forge lab test` tries on every lab where they apply.

Each is a bash script typed in the learner's terminal. The answer-file attempts start from
a lab the reference solution solved, so the only thing wrong is the trick itself: the
criteria that read the answers must then fail.

- ``fifo-answer``: each answer file becomes a FIFO fed by a background writer;
- ``symlink-answer``: each answer moves to /tmp and a symbolic link takes its place;
- ``symlink-grader-stdin``: each answer links to /dev/stdin or /proc/self/fd/0, where a
  grader's expected values arrive;
- ``tamper-grader``: on an untouched lab, every file a learner-host check runs or names is
  overwritten (or shadowed by a link) with a script printing what the checks look for;
- ``background-process``: on an untouched lab, a detached process that runs the reference
  solution when it is signalled (grading's seal must kill it with SIGKILL, unsignalled).
"""

from __future__ import annotations

import re
import shlex

from forge.templates.dsl_models import ScenarioTemplate

STASH = "/tmp/.forge-game"  # noqa: S108 - a path inside the lab host, not here


def _prelude() -> str:
    return f"set -u\nmkdir -p {STASH}\n"


def _detached(command: str) -> str:
    """A bash line starting `command` detached from the terminal, outliving the shell."""
    return (f"setsid nohup bash -c {shlex.quote(command)} "
            ">/dev/null 2>&1 </dev/null &\n")


def fifo_answers(answers: list[str]) -> str:
    """Replace each answer with a FIFO that a background loop keeps feeding its content."""
    out = _prelude()
    for i, path in enumerate(answers):
        q, keep = shlex.quote(path), f"{STASH}/fifo-{i}"
        out += f"mv -f -- {q} {keep} 2>/dev/null || : > {keep}\nmkfifo -- {q}\n"
        out += _detached(f"while :; do cat {keep} > {q}; done")
    return out


def symlink_answers(answers: list[str]) -> str:
    """Move each answer out of the graded trees (to /tmp) and link to it."""
    out = _prelude()
    for i, path in enumerate(answers):
        q, keep = shlex.quote(path), f"{STASH}/link-{i}"
        out += f"mv -f -- {q} {keep} 2>/dev/null || : > {keep}\nln -sfn -- {keep} {q}\n"
    return out


def stdin_answers(answers: list[str]) -> str:
    """Link each answer to the grader's stdin (where a check's expected values arrive)."""
    targets = ("/dev/stdin", "/proc/self/fd/0")
    out = _prelude()
    for i, path in enumerate(answers):
        out += f"rm -f -- {shlex.quote(path)}\n"
        out += f"ln -sfn -- {targets[i % 2]} {shlex.quote(path)}\n"
    return out


def in_place(answers: list[str], test: str) -> str:
    """A script exiting 0 only if every answer passes `test -p`/`-L` (the trick is set)."""
    return "".join(f"test {test} {shlex.quote(p)}\n" for p in answers)


PATH_RE = re.compile(r"(?<![A-Za-z0-9._-])/[A-Za-z0-9._-][A-Za-z0-9._/-]{0,200}")


def grader_paths(template: ScenarioTemplate, host: str) -> list[str]:
    """Files a check on `host` runs or reads: its absolute argv entries, and every file the
    template seeds on that host that a check names anywhere (e.g. inside `sh -c`)."""
    seeded = {f.path for c in template.spec.assets.containers if c.name == host
              for f in c.files}
    found: set[str] = set()
    for criterion in template.spec.success_criteria:
        for check in criterion.checks:
            if check.container != host:
                continue
            for arg in check.command:
                if arg.startswith("/") and " " not in arg and len(arg) < 256:
                    found.add(arg)
                found.update(p for p in PATH_RE.findall(arg) if p in seeded)
    return sorted(found)


def expected_output(template: ScenarioTemplate) -> str:
    """Everything the checks of a rendered template look for in stdout, one per line."""
    lines = ["PASS"]
    for c in template.spec.success_criteria:
        for check in c.checks:
            if check.expect.stdout_contains:
                lines.append(check.expect.stdout_contains)
    return "\n".join(lines) + "\n"


def tamper_grader(rendered: ScenarioTemplate, host: str, answers: list[str]) -> str:
    """Overwrite, or failing that replace by a link to a fake, each file the checks use
    (but the answers: writing those is the learner's job)."""
    fake = f"{STASH}/fake"
    out = _prelude()
    out += f"cat > {fake} <<'FORGE_FAKE_EOF'\n#!/bin/sh\ncat <<'EOF'\n"
    out += expected_output(rendered) + "EOF\nexit 0\nFORGE_FAKE_EOF\nchmod 755 " + fake + "\n"
    for path in (p for p in grader_paths(rendered, host) if p not in answers):
        q = shlex.quote(path)
        out += (f"cat {fake} > {q} 2>/dev/null || "
                f"{{ rm -f -- {q} 2>/dev/null && ln -s {fake} {q} 2>/dev/null; }} || true\n")
    return out


def background_solver(solution: str) -> str:
    """Leave a detached process that runs the reference solution when signalled."""
    keep = f"{STASH}/solution.sh"
    out = _prelude()
    out += f"cat > {keep} <<'FORGE_SOLUTION_EOF'\n{solution.rstrip()}\nFORGE_SOLUTION_EOF\n"
    out += _detached(f"echo $$ > {STASH}/bg.pid; "
                     f"trap 'bash {keep}' HUP TERM INT; while :; do sleep 0.2; done")
    out += f"until [ -s {STASH}/bg.pid ]; do sleep 0.05; done\n"
    return out


BACKGROUND_ALIVE = f"kill -0 \"$(cat {STASH}/bg.pid)\"\n"
