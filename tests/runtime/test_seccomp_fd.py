"""A lab's seccomp filter never lands on the descriptors the host init reuses.

Found by bench/runtime.py: with descriptors 3 or 4 free in the creating process (a fresh
process, or one that just closed them), the filter's memfd could get one of those numbers;
the init's join script then moved its ready/info pipes onto 3 and 4 over it, and bubblewrap
failed with "Can't read seccomp data: Bad file descriptor": a lab create failed at random.
"""

from __future__ import annotations

import subprocess
import sys

from forge.runtime.local import seccomp

PROBE = """
import os
from forge.runtime.local import seccomp
for fd in range(3, 10):
    try:
        os.close(fd)
    except OSError:
        pass
fd = seccomp.filter_fd([])
data = os.read(fd, 1 << 16)
print(fd, len(data))
"""


def test_filter_gets_a_descriptor_above_the_inits_own_even_when_3_and_4_are_free() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    fd, size = int(out[0]), int(out[1])
    assert fd > 4, f"the filter got descriptor {fd}, which the init script reuses"
    assert size == len(seccomp.compiled(()))  # the whole filter, read from offset 0
