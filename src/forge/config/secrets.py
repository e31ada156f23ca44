"""Reading secrets from the environment (or `<NAME>_FILE` mounts) and dev-secret persistence."""

from __future__ import annotations

import contextlib
import json
import os
import secrets as _secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from forge.config.storage_root import check_path, make_private_dir
from forge.config.trusted_file import chosen_by_others
from forge.durable import replace_file
from forge.private_lock import private_lock
from forge_verify.files import InputRefused, read_bounded

REQUIRED_SECRETS = ("SAT_HMAC_SECRET", "ET_HMAC_SECRET", "RECEIPT_HMAC_SECRET", "OPERATOR_TOKEN")
ROTATION_SUFFIXES = ("", "_PREVIOUS", "_NEXT")
# One NATS identity per service (forge.bus.permissions.SERVICE_IDENTITIES), each with its password.
NATS_IDENTITIES = ("spawn", "orchestrator", "scoreboard")
NATS_PASSWORD_VARS = {identity: f"NATS_{identity.upper()}_PASSWORD" for identity in NATS_IDENTITIES}
MIN_SECRET_BYTES = 32
DEV_SECRETS_FILE = "secrets/dev-secrets.json"
MAX_SECRET_FILE_BYTES = 64 * 1024


def nats_password_given(identity: str, environ: Mapping[str, str]) -> bool:
    """Whether ``environ`` sets the NATS password of ``identity`` (its variable or _FILE),
    for the problem list of an environment that failed before its settings were read."""
    var = NATS_PASSWORD_VARS[identity]
    return any(environ.get(name) for name in (var, f"{var}_FILE"))


def missing_nats_password(identity: str) -> str:
    """The problem line of a service whose NATS password is not set (outside dev it refuses
    to start), naming both ways to set it."""
    var = NATS_PASSWORD_VARS[identity]
    return f"missing NATS credentials of {identity}: set {var} or {var}_FILE"


@dataclass(frozen=True)
class SecretRead:
    """Outcome of reading one variable: a value, or problems that name it (never its value)."""

    value: bytes | None = field(repr=False)
    problems: tuple[str, ...] = ()
    # Where a value read from a file came from ("X_FILE, /path"), for problems about it.
    from_file: str = ""

    def named(self, name: str) -> str:
        """How a problem with the value names it, with the _FILE variable the operator set
        when it came from a file (X alone is not set then)."""
        return f"{name} (read from {self.from_file})" if self.from_file else name


def read_secret(environ: Mapping[str, str], name: str) -> SecretRead:
    """Read `name` from the environment or from the file named by `<name>_FILE`."""
    direct = environ.get(name, "")
    file_var = f"{name}_FILE"
    file_path = environ.get(file_var, "")
    if direct and file_path:
        return SecretRead(None, (f"{name} and {file_var} are both set; set only one",))
    if direct:
        if direct != direct.strip():
            # Kept, a newline a secret manager left on the value would make another key
            # than the same secret read from a _FILE (whose content is trimmed), and a value
            # of blanks would pass as a secret.
            return SecretRead(None, (f"{name} begins or ends with whitespace (a newline left "
                                     f"by the secret manager?): remove it, or use {file_var}",))
        return SecretRead(direct.encode())
    if not file_path:
        return SecretRead(None)
    try:
        # Bounded: a FIFO or device named here must not hang or exhaust a starting service.
        # Links are followed (orchestrators mount secrets through symlinks).
        content = _read_secret_file(file_path, file_var).strip()
    except InputRefused as exc:
        return SecretRead(None, (f"{file_var}: cannot read {file_path}: {exc.reason}",))
    except _ChosenByOthers as exc:
        return SecretRead(None, (f"{file_var}: {file_path} {exc}",))
    if not content:
        return SecretRead(None, (f"{file_var}: {file_path} is empty",))
    return SecretRead(content, from_file=f"{file_var}, {file_path}")


class _ChosenByOthers(Exception):
    """A secret file another local user could have written (its owner, or its mode)."""


def _read_secret_file(path: str, file_var: str) -> bytes:
    """The bytes of the secret file at ``path``, refused (``_ChosenByOthers``) when another
    local user owns it or may write it: that user would have chosen the secret (an
    ``OPERATOR_TOKEN_FILE`` in a folder such as /tmp, planted first, is a token of theirs).
    The file checked is the one read (opened once, checked and read through that
    descriptor). Readable by others is accepted: secret managers mount files 0444/0644."""
    fd: int | None = None
    with contextlib.suppress(OSError):  # read_bounded below names why (missing, a FIFO…)
        if stat.S_ISREG(os.stat(path).st_mode):  # no device is opened (opening one can act)
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    if fd is None:
        read_bounded(path, MAX_SECRET_FILE_BYTES, what=file_var)  # raises InputRefused
        raise InputRefused(file_var, "replaced while being read; try again")
    try:
        why = chosen_by_others(path, os.fstat(fd))
        if why is not None:
            raise _ChosenByOthers(why)
        return read_bounded(f"/proc/self/fd/{fd}", MAX_SECRET_FILE_BYTES, what=file_var)
    finally:
        os.close(fd)


def generate_secret() -> str:
    """A fresh secret: 48 random bytes, URL-safe base64 (64 characters)."""
    return _secrets.token_urlsafe(48)


def load_dev_secrets(
    storage_root: Path, names: tuple[str, ...] = REQUIRED_SECRETS
) -> dict[str, str]:
    """Return the installation's dev secrets, creating them once (mode 0600) if absent.
    UnsafeStorage when the storage root, its ``secrets`` folder or the file is another
    user's or writable by others (nothing is read or written then).

    Every service of one installation reads the same file, so tokens minted by one verify in
    another, and restarts keep working. A file lock makes concurrent first starts agree.
    """
    path = storage_root / DEV_SECRETS_FILE
    # The root and its secrets folder must be ours alone: secrets another user chose, or
    # can read, would sign whatever they like (forge.config.storage_root).
    make_private_dir(storage_root, path.parent)
    with private_lock(str(path) + ".lock", timeout=30):
        existing: dict[str, str] = {}
        if check_path(storage_root, path, directory=False):
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as fh:
                os.fchmod(fd, 0o600)
                existing = json.loads(fh.read().decode("utf-8"))
        missing = [n for n in names if not existing.get(n)]
        if missing:
            for name in missing:
                existing[name] = generate_secret()
            replace_file(path, json.dumps(existing, indent=2, sort_keys=True).encode(),
                         mode=0o600)
        return existing
