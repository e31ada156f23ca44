"""Whether the machine's ``/proc`` shows every process to every local user.

A lab's processes run in pid namespaces of their own, but the machine's ``/proc`` lists
them too: mounted without ``hidepid``, any local user of a lab node (a student with a
shell account there) reads the command line of every learner process, so what a learner
types as a command's arguments (an answer, a cracked password). Forge puts none of its
own values on command lines; mounting ``/proc`` with ``hidepid=invisible`` (``gid=`` for
the monitoring that needs it) closes the rest. Forge does not change the machine's mounts:
the runtime says it once, at its first check.
"""

from __future__ import annotations

MOUNTS = "/proc/self/mounts"
MAX_MOUNTS_BYTES = 4 << 20  # a node with every lab's mounts stays far below this


def proc_visibility_problem(mounts: str = MOUNTS) -> str | None:
    """Why local users can read other users' command lines (None: ``/proc`` hides them,
    or the mount table does not name it)."""
    try:
        with open(mounts, "rb") as fh:
            table = fh.read(MAX_MOUNTS_BYTES).decode("utf-8", "replace")
    except OSError:
        return None
    options: list[str] | None = None
    for line in table.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[1] == "/proc" and fields[2] == "proc":
            options = fields[3].split(",")  # the last mount over /proc is the one seen
    if options is None:
        return None
    hidden = [o for o in options if o.startswith("hidepid=")]
    if hidden and hidden[-1].split("=", 1)[1] not in ("0", "off"):
        return None
    return ("/proc is mounted without hidepid: every local user of this machine can read "
            "the command lines of the learners' processes (what they type as arguments); "
            "mount it with hidepid=invisible")
