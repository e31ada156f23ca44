"""Whether this kernel makes macvlan interfaces, which some labs need only at grading.

A host whose template lists ``grading_identities`` gets one macvlan sub-interface per
identity when its lab is sealed (``probe_identity``). On a kernel without macvlan
(``CONFIG_MACVLAN`` off, or the module blacklisted) every other step of those labs
works: they start, the learner works, and the seal then fails (``ip -batch … failed``),
so Submit grades nothing. The preflight (``forge runtime check``) asks the kernel first,
in a namespace of its own made and removed for it, as the seal would: a veth as the
parent, a macvlan in bridge mode on it. A check killed mid-probe (SIGKILL) leaves that
namespace behind; the next check removes those of its own prefix whose process is gone
(``remove_stale``), never another prefix's (another installation's) nor a live check's.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets

from forge.runtime.local.netns import create_netns, ip_batch, list_netns, remove_netns

# The shipped labs whose hosts list grading_identities (a test keeps this true).
NEEDED_BY = ("nft-firewall",)
PROBE = ["link add fgprobe0 type veth peer name fgprobe1",
         "link add link fgprobe0 name fgprobe2 type macvlan mode bridge"]


def _alive(pid: int) -> bool:
    """Is there a process ``pid`` (one of another user counts)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(prefix: str) -> list[str]:
    """Remove the probe namespaces of this ``prefix`` whose check process is gone (killed
    mid-probe); the names removed."""
    shape = re.compile(re.escape(prefix) + r"-macvlan-probe-(\d+)-[0-9a-f]{6}")
    removed = []
    for name in list_netns():
        if (found := shape.fullmatch(name)) and not _alive(int(found.group(1))):
            with contextlib.suppress(OSError):
                remove_netns(name)
                removed.append(name)
    return removed


def macvlan_problem(prefix: str) -> str | None:
    """Why macvlan interfaces cannot be made here (naming the labs that need them), or
    None; the probe's namespace is named after the runtime's ``prefix``."""
    remove_stale(prefix)
    name = f"{prefix}-macvlan-probe-{os.getpid()}-{secrets.token_hex(3)}"
    try:
        create_netns(name)
    except OSError as exc:
        return f"macvlan could not be probed: no network namespace ({exc})"
    try:
        ip_batch(name, PROBE)
    except OSError as exc:
        said = " ".join(str(exc).split())
        return (f"this kernel cannot make macvlan interfaces ({said}): labs whose hosts "
                f"list grading_identities, of the shipped ones {', '.join(NEEDED_BY)}, "
                "start but fail when sealed for grading; load the module (modprobe "
                "macvlan) or use a kernel built with CONFIG_MACVLAN")
    finally:
        remove_netns(name)
    return None
