"""The machine's own programs: found in its fixed system folders, never through PATH.

Forge runs as root; a PATH that holds another user's folder (a login shell's ``~/bin``, a
checkout's ``./bin``) would make root run that user's program under the name of a
machine tool. The runtime's programs (``ip``, ``nft``, ``bwrap``) and the image build's
(``unshare``, ``mmdebstrap``, ``dpkg``, ``apt-cache``) are looked up here instead.
"""

from __future__ import annotations

import shutil

MACHINE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def machine_program(name: str) -> str | None:
    """The absolute path of program ``name`` in the machine's system folders, or None."""
    return shutil.which(name, path=MACHINE_PATH)
