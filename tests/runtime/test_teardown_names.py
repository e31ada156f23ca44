"""A destroy removes its lab's namespaces by name: it does not list /run/netns, which holds
the names of every live lab on the machine (so each destroy cost more with each of them),
unless the lab has no record to name them from."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

from forge.runtime import HostSpec, LabSpec, SubnetSpec
from forge.runtime.local import LocalRuntime
from forge.runtime.local.netns import NETNS_DIR, list_netns

pytestmark = pytest.mark.root

_listed: list[str] = []
_watching: list[bool] = []


def _hook(event: str, args: tuple[object, ...]) -> None:
    if _watching and event in ("os.listdir", "os.scandir") and args:
        _listed.append(os.fsdecode(args[0]) if isinstance(args[0], (str, bytes)) else "")


sys.addaudithook(_hook)


def _switched_lab(lab_id: str) -> LabSpec:
    """Three hosts on one subnet (a switch namespace and three host namespaces) and a
    fourth joined to one of them by a subnet of its own (a pair, no bridge)."""
    return LabSpec(lab_id, [SubnetSpec("lan", "10.201.0.0/24"), SubnetSpec("p2p", "10.201.1.0/24")], [
        HostSpec("a", networks=[("lan", None), ("p2p", None)]),
        HostSpec("b", networks=[("lan", None)]),
        HostSpec("c", networks=[("lan", None)]),
        HostSpec("d", networks=[("p2p", None)]),
    ])


@pytest.fixture
def listed() -> Iterator[list[str]]:
    """The directories listed (os.listdir, os.scandir) while the test watches."""
    _listed.clear()
    yield _listed
    _watching.clear()


def _names(rt: LocalRuntime, lab_id: str) -> list[str]:
    return [n for n in list_netns() if n.startswith(rt.names.lab(lab_id) + ".")]


def test_a_destroy_removes_its_namespaces_without_listing_every_labs(
        rt: LocalRuntime, listed: list[str]) -> None:
    rt.create(_switched_lab("names-a"))
    assert len(_names(rt, "names-a")) == 5  # switch, four hosts
    _watching.append(True)
    rt.destroy("names-a")
    _watching.clear()
    assert _names(rt, "names-a") == []
    assert NETNS_DIR not in listed
    assert not os.path.exists(rt.names.lab_dir("names-a"))


def test_a_lab_without_its_record_still_loses_every_namespace(rt: LocalRuntime) -> None:
    rt.create(_switched_lab("names-b"))
    os.unlink(os.path.join(rt.names.lab_dir("names-b"), "meta.json"))
    rt.destroy("names-b")
    assert _names(rt, "names-b") == []
    assert not os.path.exists(rt.names.lab_dir("names-b"))
