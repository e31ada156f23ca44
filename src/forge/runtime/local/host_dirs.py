"""A host's directories on the machine: the lab's identity files and each host's seeded trees.

``write_identity`` writes the lab's passwd/group (naming its own ``learner`` and grader
uids), hosts and resolv.conf: bound over an image host's /etc files, and the top layer of
the /etc overlay a host on the machine's userland gets (``machine_etc``); ``seed_host_dir`` makes a
host's writable trees (/home, /workspace, /srv, /tmp, /var/tmp, on the lab's size-capped
disk, see ``disk``) and read-only seeds (/opt/forge), with the ownership the seeds ask
for. The sandbox (``sandbox``, ``bwrap_args``) binds them into the host.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from forge.runtime.local.kernel_names import Names
from forge.runtime.plan import READONLY_DIRS, WRITABLE_DIRS, PlannedHost, seed_mode
from forge.templates.seedpaths import effective_owner, under

# A lab has no DNS server: with no nameserver line the resolver asks 127.0.0.1, which
# refuses at once, instead of waiting seconds on the machine's unreachable resolver.
RESOLV_CONF = "# Forge lab hosts have no DNS; use addresses.\noptions timeout:1 attempts:1\n"
HOSTS = "127.0.0.1 localhost\n::1 localhost ip6-localhost\n"
# lab-directory file → the /etc file it stands for
LAB_ETC_FILES = {"passwd": "passwd", "group": "group", "etc-hosts": "hosts",
                 "etc-resolv.conf": "resolv.conf"}


def write_identity(etc_dir: str, uid: int, grader: int) -> None:
    """passwd/group (naming the lab user and the grader), hosts and resolv.conf, bound
    over /etc's, in ``etc_dir`` (made here, on the lab's disk)."""
    users = (f"root:x:0:0:root:/root:/bin/sh\nlearner:x:{uid}:{uid}:Forge learner:/home:"
             f"/bin/bash\ngrader:x:{grader}:{grader}:Forge grader:/nonexistent:"
             "/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
    groups = f"root:x:0:\nlearner:x:{uid}:\ngrader:x:{grader}:\nnogroup:x:65534:\n"
    files = (("passwd", users), ("group", groups), ("etc-hosts", HOSTS),
             ("etc-resolv.conf", RESOLV_CONF))
    os.makedirs(etc_dir, mode=0o755, exist_ok=True)
    for name, text in files:
        with open(os.path.join(etc_dir, name), "w", encoding="utf-8") as fh:
            fh.write(text)


@dataclass(frozen=True)
class HostPaths:
    """Where one host lives on the machine: ``host_dir`` (read-only seeds, init pid, log),
    ``data_dir`` (its writable trees, on the lab's size-capped disk) and ``etc_dir``
    (the identity files bound over /etc)."""

    etc_dir: str
    host_dir: str
    data_dir: str


def host_paths(names: Names, lab_id: str, host: str) -> HostPaths:
    """Where ``host`` of ``lab_id`` lives under ``names``' state directory."""
    return HostPaths(names.etc_dir(lab_id), names.host_dir(lab_id, host),
                     names.data_dir(lab_id, host))


# In-host path -> directory under the host's data_dir (all on the lab's disk).
DATA_BINDS = {**{d: d.lstrip("/") for d in WRITABLE_DIRS}, "/tmp": "tmp",  # noqa: S108
              "/var/tmp": "var-tmp"}  # noqa: S108
STICKY = ("tmp", "var-tmp")


def seed_host_dir(paths: HostPaths, host: PlannedHost, uid: int) -> None:
    """Create the host's directories and its seeds under /home, /workspace, /srv (owned by
    the lab user unless the seed says ``root``) and /opt/forge (root's, bound read-only);
    an image host's other seeds go into its root overlay (``seeds.write_root_seeds``)."""
    os.makedirs(paths.host_dir, mode=0o755, exist_ok=True)
    os.makedirs(paths.data_dir, mode=0o755, exist_ok=True)
    # A directory holding a root-owned seed stays root's (the learner owning it could
    # rename the seed away and put their own file in its place); a top-level directory
    # holding one becomes root's and sticky, like /tmp: the learner still creates files
    # there but moves or deletes only their own.
    kept = {os.path.dirname(p) for p in host.spec.files
            if under(p, WRITABLE_DIRS) and effective_owner(p, host.spec.owners.get(p)) != "learner"}
    kept = {a for d in kept for a in _ancestors(d)}
    for sub in DATA_BINDS.values():
        path = os.path.join(paths.data_dir, sub)
        os.makedirs(path, mode=0o755, exist_ok=True)
        if sub in STICKY or "/" + sub in kept:
            os.chown(path, 0, 0)  # a pool lab's dir was the learner's until its claim
            os.chmod(path, 0o1777)  # noqa: S103 - sticky scratch dirs, like /tmp
        else:
            os.chown(path, uid, uid)
    for d in READONLY_DIRS:  # root-owned; bound read-only into the host
        os.makedirs(os.path.join(paths.host_dir, d.lstrip("/")), mode=0o755, exist_ok=True)
    for path, content in host.spec.files.items():
        writable = under(path, WRITABLE_DIRS)
        if not writable and not under(path, READONLY_DIRS):
            continue  # a root seed of an image host
        owned = writable and effective_owner(path, host.spec.owners.get(path)) == "learner"
        base = paths.data_dir if writable else paths.host_dir
        target = os.path.join(base, path.lstrip("/"))
        top = os.path.join(base, path.lstrip("/").split("/")[0])
        parent = os.path.dirname(target)
        if not os.path.isdir(parent):
            os.makedirs(parent, mode=0o755)
            while owned and parent != top:
                if "/" + os.path.relpath(parent, base) not in kept:
                    os.chown(parent, uid, uid)
                parent = os.path.dirname(parent)
        data = content.encode() if isinstance(content, str) else content
        mode = seed_mode(host.spec, path, data)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(target, mode)
        if owned:
            os.chown(target, uid, uid)


def _ancestors(path: str) -> list[str]:
    """``path`` and every directory above it, up to (not including) ``/``."""
    out = []
    while path not in ("/", ""):
        out.append(path)
        path = os.path.dirname(path)
    return out
