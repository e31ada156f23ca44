"""The raw rtnetlink client's handling of replies: malformed messages end in OSError
(never a hang or a struct.error), only the kernel's messages count, and an interrupted
link dump is taken again."""

from __future__ import annotations

import errno
import secrets
import socket
import struct
from collections import deque

import pytest

from forge.runtime.local import rtnl
from forge.runtime.local.netns import create_netns, in_netns, list_netns, remove_netns
from forge.runtime.local.network import attach_veths
from forge.runtime.local.rtnl import NLM_F_DUMP_INTR, NLM_F_MULTI, NLMSG_DONE, NLMSG_ERROR, Rtnl

HDR = struct.Struct("=IHHII")


def msg(kind: int, seq: int, payload: bytes = b"", flags: int = 0, size: int | None = None
        ) -> bytes:
    return HDR.pack(HDR.size + len(payload) if size is None else size, kind, flags, seq,
                    0) + payload


def test_header_shorter_than_itself_is_an_error_not_a_hang() -> None:
    with pytest.raises(OSError) as info:
        list(rtnl.messages(msg(NLMSG_ERROR, 1, size=0)))
    assert info.value.errno == errno.EPROTO
    with pytest.raises(OSError):
        list(rtnl.messages(msg(NLMSG_ERROR, 1, b"\0" * 4, size=200)))


class Replayed(Rtnl):
    """A real netlink socket whose incoming datagrams are the given ones (what a kernel
    bug, or another process writing to our port, could deliver)."""

    def __init__(self, datagrams: list[tuple[bytes, int]]) -> None:
        super().__init__()
        self.queue = deque(datagrams)
        self.sent = 0

    def _send(self, kind: int, flags: int, body: bytes) -> int:
        self.sent += 1
        self.seq += 1
        return self.seq

    def _recv(self) -> tuple[bytes, int]:
        return self.queue.popleft()


def test_short_error_payload_is_an_oserror() -> None:
    with Replayed([(msg(NLMSG_ERROR, 1, b"\1\0"), 0)]) as sock, pytest.raises(OSError) as info:
        sock.set_up("lo")
    assert "set lo up" in str(info.value)


def test_messages_not_from_the_kernel_are_ignored() -> None:
    forged = msg(NLMSG_ERROR, 1, struct.pack("=i", -errno.EPERM))
    ack = msg(NLMSG_ERROR, 1, struct.pack("=i", 0))
    with Replayed([(forged, 4242), (ack, 0)]) as sock:
        sock.set_up("lo")  # the forged EPERM from port 4242 is not taken as the answer


def test_interrupted_dump_is_taken_again_and_bounded() -> None:
    intr = msg(NLMSG_DONE, 1, b"\0" * 4, flags=NLM_F_MULTI | NLM_F_DUMP_INTR)
    done = msg(NLMSG_DONE, 2, b"\0" * 4, flags=NLM_F_MULTI)
    with Replayed([(intr, 0), (done, 0)]) as sock:
        assert sock.ports_down() == []
        assert sock.sent == 2
    always = [(msg(NLMSG_DONE, i, b"\0" * 4, flags=NLM_F_MULTI | NLM_F_DUMP_INTR), 0)
              for i in range(1, rtnl.DUMP_TRIES + 1)]
    with Replayed(always) as sock, pytest.raises(OSError) as info:
        sock.ports_down()
    assert info.value.errno == errno.EAGAIN


def test_real_dump_in_this_namespace() -> None:
    """Against the kernel: the dump of this namespace's links completes."""
    with Rtnl() as sock:
        assert isinstance(sock.ports_down(), list)


def test_switch_wiring_over_netlink(prefix: str) -> None:
    """Against the kernel: a bridge and a veth port whose peer lands in another namespace;
    a name taken twice is refused with the request named, and nothing is left after."""
    stem = f"{prefix}.rtnl{secrets.token_hex(2)}"
    switch, target = f"{stem}.sw", f"{stem}.h.box"
    try:
        create_netns(switch)
        create_netns(target)
        attach_veths(switch, [(target, [("h0n0", "eth0", 0)])], bridges=(0,))

        def links() -> list[str]:
            return sorted(name for _i, name in socket.if_nameindex())

        assert in_netns(switch, links) == ["br0", "h0n0", "lo"]
        assert in_netns(target, links) == ["eth0", "lo"]
        with pytest.raises(OSError) as info:
            attach_veths(switch, [(target, [("h0n0", "eth1", 0)])])
        assert info.value.errno == errno.EEXIST and "add veth h0n0" in str(info.value)
        assert in_netns(target, links) == ["eth0", "lo"]
    finally:
        remove_netns(switch)
        remove_netns(target)
    assert not {switch, target} & set(list_netns())
