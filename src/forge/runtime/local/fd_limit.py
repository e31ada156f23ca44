"""The open-files limit of the process that runs labs.

A ready warm-pool host holds one pipe here until it is claimed (`FORGE_WARM_POOL` allows
up to 1,000 labs per template), and every live lab holds its terminals' and sandboxes'
descriptors: a 1,024 soft limit would make the database, the bus and new labs fail with
EMFILE long before the node is full. The soft limit goes up to the hard one, which root
may set.
"""

from __future__ import annotations

import resource


def raise_open_files_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (2**20 when that is unlimited); returns the
    soft limit in force. Lab processes inherit it, but gain nothing: any process may raise
    its own soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = (1 << 20) if hard == resource.RLIM_INFINITY else hard
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (OSError, ValueError):
        return soft
    return wanted
