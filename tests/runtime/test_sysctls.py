"""A lab namespace's sysctls end up as planned whatever the namespace started with: a host
gets unprivileged ping, low ports for the lab user, forwarding only on a router and no
IPv6; the switch (bridges only, no lab process) gets the forwarding and IPv6 part alone.
The values are written straight away except ``ip_forward``, which is read first (its
write takes the global RTNL lock even when unchanged)."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterator

import pytest

from forge.runtime.local import private_proc
from forge.runtime.local.netns import create_netns, in_netns, remove_netns
from forge.runtime.local.network import (
    IPV6,
    apply_sysctls,
    base_sysctls,
    switch_sysctls,
)


def _read(keys: list[str]) -> dict[str, str]:
    out = {}
    for key in keys:
        with open("/proc/sys/" + key.replace(".", "/"), encoding="ascii") as fh:
            out[key] = " ".join(fh.read().split())
    return out


@pytest.fixture()
def ns(prefix: str) -> Iterator[str]:
    name = f"{prefix}.sysctl{secrets.token_hex(3)}"
    yield name
    with contextlib.suppress(OSError):
        remove_netns(name)


ALL_KEYS = [*base_sysctls(True)]


@pytest.mark.parametrize("router", [True, False], ids=["router", "host"])
def test_a_host_namespace_gets_every_planned_value(ns: str, router: bool) -> None:
    create_netns(ns, lambda: apply_sysctls(base_sysctls(router)))
    got = in_netns(ns, lambda: _read(ALL_KEYS))
    assert got["net.ipv4.ping_group_range"] == "0 2147483647"
    assert got["net.ipv4.ip_unprivileged_port_start"] == "0"
    assert got["net.ipv4.ip_forward"] == ("1" if router else "0")
    assert got["net.ipv4.conf.default.forwarding"] == ("1" if router else "0")
    if IPV6:
        assert got["net.ipv6.conf.default.disable_ipv6"] == "1"


def test_values_already_set_otherwise_are_rewritten(ns: str) -> None:
    """Every key that is not read first is written whatever it held: a namespace whose
    default forwarding is on while ``ip_forward`` is off (so the read-first key needs no
    write, and nothing resets the other through it), with the kernel's ping range and
    port floor, ends as planned for a host."""
    def odd_start() -> None:
        apply_sysctls({"net.ipv4.conf.default.forwarding": "1",
                       "net.ipv4.ping_group_range": "1 0",
                       "net.ipv4.ip_unprivileged_port_start": "1024"})
        if IPV6:
            apply_sysctls({"net.ipv6.conf.default.disable_ipv6": "0"})

    create_netns(ns, odd_start)
    before = in_netns(ns, lambda: _read(ALL_KEYS))
    assert (before["net.ipv4.conf.default.forwarding"], before["net.ipv4.ip_forward"]) \
        == ("1", "0")
    in_netns(ns, lambda: apply_sysctls(base_sysctls(False)))
    got = in_netns(ns, lambda: _read(ALL_KEYS))
    assert got == {key: " ".join(value.split()) for key, value in base_sysctls(False).items()}


def test_the_switch_gets_no_lab_user_settings(ns: str) -> None:
    assert set(switch_sysctls()) == set(base_sysctls(False)) - {
        "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start"}
    create_netns(ns, lambda: apply_sysctls(switch_sysctls()))
    got = in_netns(ns, lambda: _read(ALL_KEYS))
    assert got["net.ipv4.ip_forward"] == "0"
    assert got["net.ipv4.conf.default.forwarding"] == "0"
    assert got["net.ipv4.ping_group_range"] != "0 2147483647"  # the kernel's default
    if IPV6:
        assert got["net.ipv6.conf.default.disable_ipv6"] == "1"


def test_a_kernel_refusing_a_private_procfs_still_gets_every_value(
    ns: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Where the new mount API is refused (an older kernel, a seccomp policy), the values
    go through the machine's /proc instead, with one warning."""
    def refused() -> int:
        raise OSError(errno.EPERM, "fsopen proc: Operation not permitted")

    monkeypatch.setattr(private_proc, "_mount_proc", refused)
    monkeypatch.setattr(private_proc, "_refused", False)
    create_netns(ns, lambda: apply_sysctls(base_sysctls(True)))
    in_netns(ns, lambda: apply_sysctls(base_sysctls(False)))
    got = in_netns(ns, lambda: _read(ALL_KEYS))
    assert got == {key: " ".join(value.split()) for key, value in base_sysctls(False).items()}
    warned = [r for r in caplog.records if "private procfs is refused" in r.getMessage()]
    assert len(warned) == 1


def test_a_private_procfs_leaves_nothing_mounted(ns: str) -> None:
    """The procfs the values go through is never attached to a mount namespace."""
    with open("/proc/self/mountinfo", encoding="ascii") as fh:
        before = fh.read().count(" proc ")
    create_netns(ns, lambda: apply_sysctls(base_sysctls(False)))
    with open("/proc/self/mountinfo", encoding="ascii") as fh:
        assert fh.read().count(" proc ") == before
    assert not private_proc._refused


@pytest.mark.parametrize("key", ["kernel.pid_max", "net.ipv4./tmp/forge-sysctl-probe",
                                 "net.ipv4..ip_forward", "net.ipv4.conf/../ip_forward"])
def test_only_network_keys_are_written(ns: str, key: str) -> None:
    """A key is net.<family>.<name...> of plain parts: an absolute part would have made
    the open ignore its directory and write any file."""
    with pytest.raises(ValueError, match="is not a net"):
        create_netns(ns, lambda: apply_sysctls({key: "1"}))
    assert not os.path.exists("/tmp/forge-sysctl-probe")
