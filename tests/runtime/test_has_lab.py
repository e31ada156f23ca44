"""``has_lab`` answers what ``list()`` would show of one lab from that lab's names alone:
the orchestrator asks it of a grading resumed after a restart, where ``list()`` read every
live lab's addresses and inits (a netlink socket per host) to answer for one."""

from __future__ import annotations

import os
import sys

import pytest

from forge.runtime.local import LocalRuntime
from forge.runtime.local.netns import create_netns, remove_netns

from .helpers import simple_lab

pytestmark = pytest.mark.root

_events: list[tuple[str, str]] = []
_watching: list[bool] = []


def _hook(event: str, args: tuple[object, ...]) -> None:
    if _watching and event in ("socket.__new__", "open"):
        _events.append((event, str(args[0]) if args else ""))


sys.addaudithook(_hook)


def _listed(rt: LocalRuntime, lab_id: str) -> bool:
    return any(info.lab_id == lab_id for info in rt.list())


def test_has_lab_reads_only_the_lab_asked_about(rt: LocalRuntime) -> None:
    rt.create(simple_lab("has-a"))
    rt.create(simple_lab("has-b"))
    try:
        _events.clear()
        _watching.append(True)
        try:
            found = rt.has_lab("has-a")
        finally:
            _watching.clear()
        assert found and _listed(rt, "has-a")
        assert not [e for e in _events if e[0] == "socket.__new__"]  # no netlink reads
        assert not [p for _e, p in _events if rt.names.lab("has-b") in p]
    finally:
        rt.destroy_many(["has-a", "has-b"])
    assert not rt.has_lab("has-a") and not _listed(rt, "has-a")


def test_has_lab_finds_what_list_finds_of_a_partial_lab(rt: LocalRuntime) -> None:
    assert not rt.has_lab("has-c") and not rt.has_lab("../etc") and not rt.has_lab("")
    # Only a host's namespace left (a lab torn down midway, or another installation's).
    ns = rt.names.host_ns("has-c", "box")
    create_netns(ns)
    try:
        assert rt.has_lab("has-c") and _listed(rt, "has-c")
    finally:
        remove_netns(ns)
    # Only its cgroup left.
    path = os.path.join(rt.cgroups.bases()[0], rt.names.lab("has-c"))
    os.mkdir(path)
    try:
        assert rt.has_lab("has-c") and _listed(rt, "has-c")
    finally:
        os.rmdir(path)
    assert not rt.has_lab("has-c") and not _listed(rt, "has-c")
