"""A lab process cannot open an AF_VSOCK socket (red team, learner angle).

vsock addresses (context ids and ports) belong to the machine, not to a network namespace:
on a virtual machine a lab's `socket(AF_VSOCK)` and `connect((2, port))` went to the
hypervisor's vsock device, past the lab's own network, and with a loopback transport two
labs could talk over CID 1. Inside a shipped lab the socket opened and a connect to CID 1
went out and timed out, where the lab's network has no route at all. The lab's syscall
filter now refuses the family (EAFNOSUPPORT, as on a kernel built without vsock), in a
learner's command and terminal alike.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from forge.runtime import HostSpec, LabSpec, Limits, SubnetSpec
from forge.runtime.local import LocalRuntime
from tests.runtime.helpers import tty_read_until, tty_send

from ..support.one_lab import one_lab

pytestmark = pytest.mark.root

PROBE = ("import errno, socket\n"
         "for make in (lambda: socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM),\n"
         "             lambda: socket.socket(socket.AF_VSOCK, socket.SOCK_DGRAM)):\n"
         "    try:\n"
         "        make().close()\n"
         "        print('vsock=opened')\n"
         "    except OSError as exc:\n"
         "        print('vsock=' + errno.errorcode[exc.errno])\n")

# The same call made directly, with the family's upper 32 bits set: the kernel reads the
# family as an int (AF_VSOCK), where a filter comparing the whole register let it through.
RAW_PROBE = ("import ctypes, errno, os\n"
             "libc = ctypes.CDLL(None, use_errno=True)\n"
             "libc.syscall.restype = ctypes.c_long\n"
             "nr = {'x86_64': 41, 'aarch64': 198}[os.uname().machine]\n"
             "for family in (40, 40 | 1 << 32):\n"
             "    fd = libc.syscall(ctypes.c_long(nr), ctypes.c_long(family),\n"
             "                      ctypes.c_long(1), ctypes.c_long(0))\n"
             "    print('vsock=' + ('opened' if fd >= 0 else\n"
             "                      errno.errorcode[ctypes.get_errno()]))\n")


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    spec = LabSpec("vs-lab", [SubnetSpec("office", "10.93.7.0/24")],
                   [HostSpec("learner", networks=[("office", "10.93.7.10")],
                             files={"/srv/probe.py": PROBE, "/srv/raw.py": RAW_PROBE})],
                   Limits(memory_mb=256, disk_mb=16))
    with one_lab(tmp_path_factory.mktemp("vsock-state"), spec) as runtime:
        yield runtime


def test_a_learner_command_cannot_open_a_vsock_socket(rt: LocalRuntime) -> None:
    res = rt.exec("vs-lab", "learner", shell="python3 -I /srv/probe.py", timeout=20)
    out = res.stdout_text + res.stderr_text
    assert out.split() == ["vsock=EAFNOSUPPORT", "vsock=EAFNOSUPPORT"], out


def test_a_learner_terminal_cannot_open_a_vsock_socket(rt: LocalRuntime) -> None:
    tty = rt.tty("vs-lab", "learner")
    try:
        tty_send(tty, b"python3 -I /srv/probe.py; echo probe-$((40 + 2))\n")
        text = tty_read_until(tty, rb"probe-42")
    finally:
        tty.close()
    assert b"vsock=opened" not in text
    assert text.count(b"vsock=EAFNOSUPPORT") >= 2, text


def test_the_family_with_its_upper_bits_set_is_refused_too(rt: LocalRuntime) -> None:
    res = rt.exec("vs-lab", "learner", shell="python3 -I /srv/raw.py", timeout=20)
    out = res.stdout_text + res.stderr_text
    assert out.split() == ["vsock=EAFNOSUPPORT", "vsock=EAFNOSUPPORT"], out
