"""The cyclic garbage collector held off while a process starts.

Starting a service imports ~1,500 modules and builds its routes, schemas and models:
~150,000 objects the collector tracks, nearly all living as long as the process. Its
passes over them during start-up find almost nothing to free (under 1,000 objects for
spawn_service) but cost ~12 % of the start's CPU. So `forge` holds the collector until
the command's code is loaded (a service's: until its app is built), then freezes what
exists, which keeps it out of every later pass, and turns collection back on.
"""

from __future__ import annotations

import gc


def hold() -> None:
    """No cyclic collection until `release()`: only for a process that is starting."""
    gc.disable()


def release() -> None:
    """Freeze everything allocated so far and collect again from now on; a no-op when the
    collector was not held (an in-process caller such as a test's CliRunner)."""
    if gc.isenabled():
        return
    gc.freeze()
    gc.enable()
