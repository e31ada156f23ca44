"""Rebuild the picture of labs from what the kernel and the state directory hold.

Used by ``list()`` (so an orchestrator can adopt or destroy labs after a crash) and by
exec/tty (which need a host's init pid and approved capabilities, whichever runtime
instance created the lab).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from forge.durable import replace_file
from forge.runtime.base import LabInfo, LabNotFound
from forge.runtime.local.cgroups import Cgroups
from forge.runtime.local.kernel_names import Names
from forge.runtime.local.netns import list_netns, netns_path
from forge.runtime.local.network import read_addresses

Meta = dict[str, Any]  # {"hosts": {name: {caps, env, rootfs}}, "identity": {...}}


def write_meta(names: Names, lab_id: str, meta: Meta) -> None:
    """Record the lab's hosts (capabilities, environment, rootfs) and identity (0600,
    new file)."""
    path = os.path.join(names.lab_dir(lab_id), "meta.json")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(meta, fh)


def replace_meta(names: Names, lab_id: str, meta: Meta) -> None:
    """Replace the lab's metadata whole (a warm lab claimed: its identity and hosts)."""
    replace_file(Path(names.lab_dir(lab_id), "meta.json"), json.dumps(meta).encode(),
                 sync=False)


def read_meta(names: Names, lab_id: str) -> Meta:
    """The lab's recorded metadata, or {} when missing or unreadable."""
    try:
        with open(os.path.join(names.lab_dir(lab_id), "meta.json"), encoding="utf-8") as fh:
            data: Meta = json.load(fh)
            return data
    except (OSError, ValueError):
        return {}


def init_pid(names: Names, lab_id: str, host: str, strict: bool = True) -> int:
    """The host init's pid, verified to still live in the host's network namespace
    (so a recycled pid is never entered). 0 (or LabNotFound when strict) otherwise."""
    try:
        with open(os.path.join(names.host_dir(lab_id, host), "init.pid"),
                  encoding="ascii") as fh:
            pid = int(fh.read())
        ns = os.stat(netns_path(names.host_ns(lab_id, host)))
        mine = os.stat(f"/proc/{pid}/ns/net")
        if (ns.st_dev, ns.st_ino) != (mine.st_dev, mine.st_ino):
            raise OSError("init left the namespace")
    except (OSError, ValueError):
        if strict:
            raise LabNotFound(f"host {host} of lab {lab_id} is not running") from None
        return 0
    return pid


def present(names: Names, cgroups: Cgroups, lab_id: str) -> bool:
    """Whether ``discover`` would list ``lab_id``: its state directory, one of its top-level
    cgroups, or a name of it in /run/netns or the state directory (looked at only when the
    first two are not there). None of every lab's addresses and inits is read, which
    ``discover`` does (~0.7 ms of CPU per live lab)."""
    stem = names.lab(lab_id)
    if os.path.lexists(names.lab_dir(lab_id)) or any(
            os.path.isdir(os.path.join(base, stem)) for base in cgroups.bases()):
        return True
    candidates = list_netns()
    with contextlib.suppress(FileNotFoundError):
        candidates += os.listdir(names.state_dir)
    return any(name.startswith(stem + ".") and (parsed := names.parse(name)) is not None
               and parsed[0] == lab_id for name in candidates)


def discover(names: Names, cgroups: Cgroups) -> list[LabInfo]:
    """Every lab of this prefix with a namespace, cgroup or state directory.

    A lab is ``running`` when its switch exists (if it has one: ``network.bridged``; a lab
    recorded before that choice existed always has one) and every recorded host has a live
    init; anything partial (a crash mid-create or mid-destroy) is ``degraded``. A lab whose
    kernel objects exist but whose state directory is not under this state dir is
    ``foreign``: another installation's with the same prefix (or this one's, read with the
    wrong storage root); a create makes the state directory before any kernel object and
    a destroy removes it last, and keeps it when anything else could not be removed; a
    pool claim marks the pool id (``Names.claim_marker``) before its state directory takes
    the scenario's id, until its old names are gone.
    """
    hosts: dict[str, set[str]] = {}
    found: set[str] = set()
    namespaces = set(list_netns())
    candidates = [*namespaces, *cgroups.list_top()]
    with contextlib.suppress(FileNotFoundError):
        candidates += os.listdir(names.state_dir)
    for name in candidates:
        parsed = names.parse(name)
        if parsed is None:
            continue
        lab_id, host = parsed
        found.add(lab_id)
        if host is not None and name in namespaces:
            hosts.setdefault(lab_id, set()).add(host)
    infos = []
    for lab_id in sorted(found):
        present = hosts.get(lab_id, set())
        meta = read_meta(names, lab_id)
        expected = set(meta.get("hosts", {}))
        addrs = {h: read_addresses(names.host_ns(lab_id, h)) for h in sorted(present)}
        healthy = (bool(expected) and expected == present
                   and (meta.get("switch") is False or names.switch_ns(lab_id) in namespaces)
                   and all(init_pid(names, lab_id, h, strict=False) for h in present))
        if not (os.path.isdir(names.lab_dir(lab_id))
                or os.path.exists(names.claim_marker(lab_id))):
            infos.append(LabInfo(lab_id, addrs, "foreign"))
            continue
        infos.append(LabInfo(lab_id, addrs, "running" if healthy else "degraded"))
    return infos
