"""The Scenario DSL's grading: success criteria, their checks and expectations, and hints.

A criterion passes when all of its checks pass (`forge.grading` runs them); hints are what
a learner may reveal, each charged at its cost in the score.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from forge.templates import dsl_limits as L
from forge.templates.dsl_fields import Argv, DslModel, Ident


class Expect(DslModel):
    """What a check's result must show; at least one expectation is required."""

    exit_code: Annotated[int | None, Field(ge=0, le=255)] = None
    stdout_contains: Annotated[str | None, Field(min_length=1)] = None
    stdout_regex: Annotated[str | None, Field(min_length=1)] = None
    stderr_contains: Annotated[str | None, Field(min_length=1)] = None

    def is_empty(self) -> bool:
        """True when no expectation is named (such a check could never fail)."""
        return all(
            v is None
            for v in (self.exit_code, self.stdout_contains, self.stdout_regex, self.stderr_contains)
        )


class Check(DslModel):
    """A command run inside a lab host at grading time."""

    container: Ident
    command: Argv
    stdin: Annotated[
        str | None,
        Field(max_length=L.MAX_CHECK_STDIN,
              description="Text fed to the check on stdin: where expected values go "
                          "(a command's argv is readable by other processes)."),
    ] = None
    live: Annotated[
        bool,
        Field(description="Run before the lab is sealed, while the learner's own "
                          "processes still run (e.g. a service the learner started), "
                          "from another host over the lab network."),
    ] = False
    network: Annotated[
        bool | None,
        Field(description="Whether the check reaches the network (connects out, listens, "
                          "looks a name up). Unset: inferred from its command and the seeded "
                          "scripts it names. On a host the learner has a shell on, such a "
                          "check is left to Submit (\"Check this task\" could be watched). "
                          "false: the author vouches that it does not (refused when its "
                          "command names a network tool)."),
    ] = None
    timeout_seconds: Annotated[int, Field(ge=1, le=L.MAX_CHECK_TIMEOUT_SECONDS)] = 10
    expect: Expect


class Criterion(DslModel):
    """A graded success criterion; it passes when all of its checks pass."""

    id: Ident
    description: Annotated[str, Field(min_length=1, max_length=2000)]
    weight: Annotated[float, Field(gt=0, le=1000)] = 1.0
    checks: Annotated[tuple[Check, ...], Field(min_length=1, max_length=32)]
    check_before_submit: Annotated[
        bool,
        Field(description="Whether the lab page offers \"Check this task\" for it (default). "
                          "false where the answer is one of a few candidates: checking each "
                          "in turn would find it without the work."),
    ] = True


class Hint(DslModel):
    """A hint the learner may reveal, in order; ``criterion`` names the task it helps with."""

    text: Annotated[str, Field(min_length=3, max_length=L.MAX_HINT_CHARS,
                               description="Markdown shown when the learner reveals it.")]
    criterion: Annotated[
        Ident | None,
        Field(description="The success criterion this hint is for (none: the whole lab)."),
    ] = None
    cost: Annotated[
        float,
        Field(ge=0, le=L.MAX_HINT_COST, allow_inf_nan=False, strict=True,
              description="What revealing it costs: a fraction of the lab's total score "
                          "(0.1 = 10 percentage points), subtracted from the final score "
                          "(never below 0). 0 (default) to 0.5."),
    ] = 0.0
