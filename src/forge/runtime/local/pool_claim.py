"""Turning a ready pool lab into a scenario's lab: move, then personalise.

``rename_lab`` moves every kernel object and path of a pool lab (``wp-`` id) to the
scenario's lab id, so ``list``, ``exec``, ``destroy`` and a restarted orchestrator see an
ordinary lab; ``personalise`` then adds what the scenario gives (seeds, root seeds,
environment) and starts the hosts' services: each host's init waits since the pool built
it, and is sent its service's environment and command over its start-line pipe (never
on a command line), which it starts as a fresh lab's init does (born in the host's
``init`` cgroup, as the lab user, with default signals). Used by
``warm_pool.WarmPool.claim``.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import secrets
import subprocess
import threading
from collections.abc import Callable, Iterable
from typing import Protocol

from forge.runtime.base import LabInfo, LabSpec
from forge.runtime.local.bwrap_args import host_env
from forge.runtime.local.cgroups import Cgroups
from forge.runtime.local.host_dirs import HostPaths, seed_host_dir
from forge.runtime.local.kernel_names import Names
from forge.runtime.local.netns import netns_path, remove_netns
from forge.runtime.local.reconcile import init_pid, read_meta, replace_meta
from forge.runtime.local.rootfs import merged_root
from forge.runtime.local.sandbox import NO_SERVICE_LINE, env_line, send_start
from forge.runtime.local.seeds import write_root_seeds
from forge.runtime.local.uids import UidPool
from forge.runtime.plan import LabPlan, PlannedHost
from forge.templates.exec_size import COMMAND_VAR, ENV_PREFIX, service_script

log = logging.getLogger("forge.runtime.local.pool_claim")

MS_BIND = 4096
_libc = ctypes.CDLL(None, use_errno=True)


class LocalRuntime(Protocol):
    """What a pool needs of ``runtime.LocalRuntime`` (named here, not imported: the runtime
    imports this module)."""

    names: Names
    uids: UidPool
    cgroups: Cgroups
    rootfs: str
    images: dict[str, str]
    default_image: str | None
    _lock: threading.Lock
    _procs: dict[str, list[subprocess.Popen[bytes]]]
    _held_go: dict[str, dict[str, int]]
    _resolve_image: Callable[[str], str]

    def create(self, spec: LabSpec) -> LabInfo:
        """Build a lab."""

    def destroy(self, lab_id: str) -> None:
        """Remove a lab."""

    def destroy_many(self, lab_ids: list[str]) -> None:
        """Remove many labs together."""


def rename_lab(rt: LocalRuntime, old: str, new: str) -> list[str]:
    """Give lab ``old`` the id ``new``: its uid claim, state directory (replacing the empty
    one ``create`` made), cgroups, named namespaces and in-process handles. Returns the
    namespaces' old names, still mounted, for the caller to remove (``remove_netns``),
    then ``Names.claim_marker(old)``, which keeps them this runtime's until then."""
    names = rt.names
    old_dir, new_dir = names.lab_dir(old), names.lab_dir(new)
    old_stem, new_stem = names.lab(old), names.lab(new)
    meta = read_meta(names, old)
    # The lab's own claim file (by its recorded uid; not a scan of every lab's claim),
    # first: new_dir exists already, so the claim never looks stale.
    path = os.path.join(rt.uids.claims_dir, str(int(meta["identity"]["learner"])))
    tmp = f"{path}.{new}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(new_dir)
    os.replace(tmp, path)
    # Before the state directory goes: what the rename leaves of ``old`` stays ours.
    marker = names.claim_marker(old)
    os.makedirs(os.path.dirname(marker), mode=0o700, exist_ok=True)
    with open(marker, "w", encoding="ascii") as fh:
        fh.write(new + "\n")
    os.rename(old_dir, new_dir)
    rt.cgroups.move(old_stem, new_stem)
    switch = [] if meta.get("switch") is False else [names.switch_ns(old)]
    moved = [*switch, *(names.host_ns(old, h) for h in meta["hosts"])]
    for ns in moved:
        _bind_netns(ns, new_stem + ns[len(old_stem):])
    with rt._lock:
        rt._procs[new] = rt._procs.pop(old, []) + rt._procs.get(new, [])
        rt._held_go[new] = rt._held_go.pop(old, {})
    return moved


def drop_names(names: Names, old_names: list[str]) -> None:
    """Unmount the pool ids' namespace names left by claims (an unmount propagates to
    every mount namespace sharing /run/netns, ~3 ms each here: not on the claim path);
    a pool id whose names are all gone is no longer anything, and its claim marker goes.
    A crash before this leaves a ``degraded`` pool lab of names only, which the
    orchestrator's reconcile at start destroys like any orphan."""
    kept: set[str] = set()
    for name in old_names:
        try:
            remove_netns(name)
        except OSError:
            log.exception("old namespace name %s could not be removed", name)
            kept.add(name)
    for lab_id in _lab_ids(names, old_names) - _lab_ids(names, kept):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(names.claim_marker(lab_id))


def _lab_ids(names: Names, objects: Iterable[str]) -> set[str]:
    """The lab ids of kernel object names."""
    return {parsed[0] for name in objects if (parsed := names.parse(name)) is not None}


def cgroups_unmovable(runtime: LocalRuntime) -> str | None:
    """Why a claim could not move a lab's cgroups to the scenario's name on this machine,
    or None. A claim gives a pool lab the scenario's id by moving its kernel objects
    (``Cgroups.move``: a rename on v1, a new tree and a migration on v2); where that fails,
    every claim would cost a pool build and a teardown more than a fresh build. Tried once,
    on a scratch cgroup with a child in every hierarchy in use; on v2 with the lab
    controllers enabled and a process in the child, as a claim finds a pool lab."""
    cgroups = runtime.cgroups
    # Not a lab's name (no "prefix." stem): a listing or reconcile never takes it for one.
    probe = f"{runtime.names.prefix}_move_probe_{secrets.token_hex(4)}"
    moved = probe + "-moved"
    sleeper: subprocess.Popen[bytes] | None = None
    try:
        for path in cgroups.paths(probe):
            os.mkdir(path)
        if cgroups.version == 2:
            cgroups.create((probe, "host"), None)  # enables the controllers as a lab's does
            sleeper = subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL)
            with open(cgroups.procs_files(probe, "host")[0], "w", encoding="ascii") as fh:
                fh.write(str(sleeper.pid))
        else:
            for path in cgroups.paths(probe):
                os.mkdir(os.path.join(path, "host"))
        cgroups.move(probe, moved)
        if sleeper is not None and f"/{moved}/host" not in _cgroup_line(sleeper.pid):
            return f"a process could not be moved between cgroups in {cgroups.root}"
    except (OSError, TimeoutError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        return f"cgroups cannot be moved in {cgroups.root} ({why})"
    finally:
        if sleeper is not None:
            sleeper.kill()
            sleeper.wait()
        for name in (probe, moved):
            for path in cgroups.paths(name):
                for gone in (os.path.join(path, "host"), path):
                    with contextlib.suppress(OSError):
                        os.rmdir(gone)
    return None


def _cgroup_line(pid: int) -> str:
    """The process's cgroup2 path (its ``0::`` line), or ""."""
    with open(f"/proc/{pid}/cgroup", encoding="ascii") as fh:
        return next((line[3:].strip() for line in fh if line.startswith("0::")), "")


def _bind_netns(old: str, new: str) -> None:
    """Bind the named namespace ``old`` under the name ``new`` too."""
    src, dst = netns_path(old).encode(), netns_path(new).encode()
    os.close(os.open(dst, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    if _libc.mount(src, dst, b"none", MS_BIND, None) != 0:
        err = ctypes.get_errno()
        os.unlink(dst)
        raise OSError(err, f"bind netns {old} as {new}: {os.strerror(err)}")


def personalise(rt: LocalRuntime, plan: LabPlan) -> None:
    """Add what the scenario gives to a renamed pool lab: seeds (and an image host's root
    seeds), each host's environment, then the hosts' services (every waiting init gets
    its start line, an empty one for a host without a service)."""
    lab_id = plan.lab_id
    for host in plan.hosts:  # a host that died while it waited: the claim fails (LabNotFound)
        init_pid(rt.names, lab_id, host.spec.name)  # and the lab is built fresh instead
    meta = read_meta(rt.names, lab_id)
    uid = int(meta["identity"]["learner"])
    before: dict[str, list[str]] = {}
    # A shared host (equal in the pool's shape, by the claim's key) was seeded and its
    # service started at the pool build: nothing of it is the scenario's.
    personal = [host for host in plan.hosts if not host.spec.shared]
    for host in personal:
        name = host.spec.name
        paths = HostPaths(rt.names.etc_dir(lab_id), rt.names.host_dir(lab_id, name),
                          rt.names.data_dir(lab_id, name))
        seed_host_dir(paths, host, uid)
        recorded = meta["hosts"][name]
        if recorded.get("image") is True:
            write_root_seeds(merged_root(paths.data_dir), host, uid)
        before[name] = list(recorded.get("env", {}))
        recorded["env"] = host_env(host)
    replace_meta(rt.names, lab_id, meta)
    # Every line before any pipe is taken: a value that cannot be written raises while
    # the pipes are still the lab's (closed with it), not with one in hand.
    lines = {host.spec.name: service_line(host, before[host.spec.name])
             for host in personal}
    with rt._lock:
        held = rt._held_go.pop(lab_id, {})
    try:
        for host in personal:
            fd = held.pop(host.spec.name, -1)
            if fd < 0:
                raise RuntimeError(f"host {host.spec.name}: its init is not waiting")
            send_start(fd, lines[host.spec.name])
    finally:
        for fd in held.values():
            os.close(fd)


def service_line(host: PlannedHost, shape_env: list[str]) -> bytes:
    """The start line of ``host``'s waiting init, whose environment has the variables
    ``shape_env`` (the pool shape's, under ``FGE_`` names): none for a host without a
    service; otherwise the scenario's environment, staged, in place of the shape's, the
    command as FG_CMD and the service script for the scenario's names
    (``bwrap_args.INIT_SH``), all through the pipe, never on a command line."""
    if not host.spec.command:
        return NO_SERVICE_LINE
    env = host_env(host)
    staged = {ENV_PREFIX + k: v for k, v in env.items()}
    return env_line([ENV_PREFIX + k for k in shape_env if k not in env],
                    {**staged, COMMAND_VAR: host.spec.command}, service_script(list(env)))

