"""The folder `forge keys export-public --out` writes the trusted public keys to.

A verifier trusts every key in that folder, so another user able to add a file there, or to
swap the folder for theirs, could have their own key trusted: the folder is checked first.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from forge.signing.errors import SigningKeyError


def trusted_keys_folder(out_dir: Path) -> Path:
    """The folder `out_dir` (made when missing), resolved, once it is checked to be one
    that only this user or root can change: a verifier trusts every key in it, so another
    user able to add a file there, or to swap the folder for theirs, could have their own
    key trusted. SigningKeyError naming the folder otherwise, with nothing made. A missing
    folder is made 0755 (whatever the umask); a folder above it may be group-writable,
    or writable by all if sticky (like /tmp: others cannot rename what is not theirs)."""
    me = os.geteuid()
    if out_dir.exists():
        above_all = Path(os.path.realpath(out_dir)).parents
    else:  # what will hold the folders made: the nearest one there, and all above it
        there = Path(os.path.abspath(out_dir)).parent
        while not there.exists():
            there = there.parent
        real = Path(os.path.realpath(there))
        above_all = (real, *real.parents)
    for above in above_all:
        up = above.stat()
        if up.st_uid not in (me, 0) or (up.st_mode & 0o002 and not up.st_mode & stat.S_ISVTX):
            raise SigningKeyError(f"--out: {above}, above {out_dir}, can be changed by "
                                  "another user, who could swap the folder for theirs; "
                                  "export elsewhere")
    try:
        out_dir.mkdir(parents=True)
        out_dir.chmod(0o755)
    except FileExistsError:
        pass
    except OSError as exc:
        raise SigningKeyError(f"--out: {out_dir} cannot be made: {exc.strerror or exc}"
                              ) from None
    folder = Path(os.path.realpath(out_dir))
    info = folder.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise SigningKeyError(f"--out: {out_dir} is not a folder")
    if info.st_uid not in (me, 0):
        raise SigningKeyError(f"--out: {out_dir} belongs to another user (uid {info.st_uid}), "
                              "who could replace the exported keys; export to a folder of "
                              "yours")
    if info.st_mode & 0o022:
        raise SigningKeyError(f"--out: other users can write to {out_dir} (mode "
                              f"{stat.S_IMODE(info.st_mode):o}) and add keys a verifier "
                              "would trust; export to a folder only you can write to")
    return folder
