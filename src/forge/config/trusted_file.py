"""Whether another local user could have written a file the operator named.

A secret's ``<NAME>_FILE``, the OIDC and LTI files, the LTI tool key and
``ENTITLEMENTS_FILE`` are trusted as the operator's: a file another user owns, or may
write, holds what that user chose (an operator token of theirs, an identity provider of
theirs that signs anyone in as staff, a plan for any tenant).
Judged on the status of the file actually read (``os.fstat`` of its open descriptor), so
a link switched between a check and the read cannot pass one file and read another.
"""

from __future__ import annotations

import os
import stat


def chosen_by_others(path: str | os.PathLike[str], info: os.stat_result) -> str | None:
    """Why the file ``info`` describes (read from ``path``) may hold another local user's
    choice: owned by a user other than this one or root, or writable by other users (its
    group counts as no other user when it is this user's own or root's, as in
    ``root:forge 0640``). None when only this user (or root) could have written it."""
    me, group, mode = os.geteuid(), os.getegid(), stat.S_IMODE(info.st_mode)
    own_group = info.st_uid in (me, 0) and info.st_gid in (group, 0)
    fix = f"if it is yours, run `chown {me}:{group} {path} && chmod go-w {path}`"
    if info.st_uid not in (me, 0):
        return (f"is owned by uid {info.st_uid} (mode {mode:o}), not by uid {me}: that user "
                f"could have chosen its content; {fix}")
    if mode & (0o002 if own_group else 0o022):
        return (f"is writable by other users (owner uid {info.st_uid}, mode {mode:o}): they "
                f"could have chosen its content; {fix}")
    return None


__all__ = ["chosen_by_others"]
