"""Seeds written into an image host's root overlay, and its per-lab SSH host keys.

Before any lab process runs, the platform (root) writes a host's seeds that lie outside
/home, /workspace, /srv and /opt/forge into the host's root overlay (its upper layer, on
the lab's disk; the shared image is never written). The in-host path is resolved inside
the overlay as if it were ``/``: a symbolic link of the image (``/var/run -> /run``, an
absolute ``/etc/x -> /usr/share/y``) is followed within the tree, never out of it; every
directory is then opened without following links (``openat``-style), missing ones are
made root-owned 0755, and the file is created with ``O_NOFOLLOW``. A path that resolves
somewhere a seed may not go is a SpecError naming the field.

An image with ``sshd`` gets fresh host keys for each lab at host start, owned by the lab
user (the lab's sshd runs as that user, which must read them): none is in the image, so
two labs never share a host key.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import stat

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from forge import treepath
from forge.runtime.base import RuntimeFault, SpecError
from forge.runtime.local.rootfs import SSHD
from forge.runtime.plan import READONLY_DIRS, WRITABLE_DIRS, PlannedHost, seed_mode
from forge.templates.seedpaths import effective_owner, seed_path_problem, under

HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"


def is_root_seed(path: str) -> bool:
    """Whether a seed of an image host goes into its root overlay (not a data bind or
    the read-only seeds' tree)."""
    return not under(path, WRITABLE_DIRS + READONLY_DIRS)


def resolve_in_root(root: str, path: str) -> str:
    """``path`` with every symbolic link of the tree ``root`` followed inside it (as if
    ``root`` were ``/``); the rest of the path may not exist yet. Raises ValueError on a
    link loop or a non-directory in the middle."""
    done, rest = treepath.walk(root, treepath.split(path))
    if ".." in rest:
        raise ValueError("'..' after a missing directory")
    return "/" + "/".join(done + rest)


def write_in_root(root: str, path: str, data: bytes, mode: int, uid: int | None, *,
                  fresh: bool = False) -> None:
    """Create or replace the file ``path`` (already resolved) inside ``root`` without
    following any link; ``uid``: its owner (None: root). ``fresh``: whatever is at ``path``
    (a file or a link) is removed first and the file is created anew (O_EXCL), so the new
    file is never an old inode someone else may hold or link to."""
    parts = [p for p in path.split("/") if p]
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            try:
                nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                os.mkdir(part, 0o755, dir_fd=fd)
                nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                os.fchown(nfd, 0, 0)
                os.fchmod(nfd, 0o755)
            os.close(fd)
            fd = nfd
        if fresh:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(parts[-1], dir_fd=fd)
        out = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NOCTTY
                      | os.O_NONBLOCK | (os.O_EXCL if fresh else os.O_TRUNC), mode, dir_fd=fd)
    finally:
        os.close(fd)
    with os.fdopen(out, "wb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise ValueError(f"{path} is not a regular file")
        fh.write(data)
        os.fchown(fh.fileno(), uid if uid is not None else 0, uid if uid is not None else 0)
        os.fchmod(fh.fileno(), mode)


def write_root_seeds(root: str, host: PlannedHost, uid: int) -> None:
    """Write ``host``'s root seeds into its overlay ``root`` (see the module doc)."""
    for path, content in host.spec.files.items():
        if not is_root_seed(path):
            continue
        where = f"hosts[{host.index}].files[{path!r}]"
        owner = effective_owner(path, host.spec.owners.get(path))
        try:
            real = resolve_in_root(root, path)
        except (OSError, ValueError) as exc:
            raise _seed_error(where, "cannot be placed in the image", exc) from None
        problem = seed_path_problem(real, True, owner)
        if problem is None and not is_root_seed(real):
            problem = f"is a per-host directory mounted over the image; seed {real} itself"
        if problem is not None:
            raise SpecError(where, f"resolves in the image to {real}, which {problem}")
        data = content.encode() if isinstance(content, str) else content
        try:
            write_in_root(root, real, data, seed_mode(host.spec, path, data),
                          uid if owner == "learner" else None)
        except (OSError, ValueError) as exc:
            raise _seed_error(where, "cannot be written in the image", exc) from None


# What the image's tree says of a seed's path: the template's to fix (a directory there, a
# file in the middle, a link loop). Any other OSError is the node's own (no space, a path
# under its state directory in the message) and stays with the operator.
_AUTHORS_ERRNOS = frozenset({errno.EISDIR, errno.ENOTDIR, errno.ELOOP})


def _seed_error(where: str, what: str, exc: Exception) -> RuntimeFault:
    """The error a seed that could not be placed or written raises: a SpecError (shown to
    the learner as the lab's reason) when the template's path is at fault, else a
    RuntimeFault."""
    if isinstance(exc, ValueError) or (isinstance(exc, OSError)
                                       and exc.errno in _AUTHORS_ERRNOS):
        return SpecError(where, f"{what}: {exc}")
    return RuntimeFault(f"{where}: {what}: {exc}")


def make_ssh_host_keys(root: str, uid: int) -> bool:
    """Give an image with sshd a fresh Ed25519 host key, owned by the lab user, 0600
    (the public half 0644); False when the image has no sshd."""
    if not os.path.exists(os.path.join(root, SSHD)):
        return False
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH)
    directory, name = os.path.split(HOST_KEY)
    try:  # an image may link /etc/ssh elsewhere inside itself; follow it as sshd would
        key_dir = resolve_in_root(root, directory)
    except ValueError as exc:
        raise SpecError("image", f"{directory}: {exc}") from None
    # The key files themselves are never followed: a link there (to /etc/shadow, say) is
    # replaced by a new file, not written through.
    key_path = posixpath.join(key_dir, name)
    try:
        write_in_root(root, key_path, private, 0o600, uid, fresh=True)
        write_in_root(root, key_path + ".pub", public + b" forge-lab\n", 0o644, None,
                      fresh=True)
    except (IsADirectoryError, PermissionError) as exc:
        raise SpecError("image", f"{HOST_KEY}: cannot be written ({exc.strerror})") from None
    return True
