"""One identity per live lab: a pair of uids (learner, grader) claimed from a range.

Everything the kernel keys by uid (keyrings, inotify and user-namespace counts, process
limits, signal and ptrace permission) is then private to one lab, and the grader's uid is
one no lab process has. Claims are files created with O_EXCL in a machine-wide directory
(``/run`` is a tmpfs: claims vanish with the labs at reboot), so runtimes with different
state directories or prefixes never hand out the same uid. A claim names the lab
directory it belongs to; a claim whose lab directory is gone (a crash between teardown
steps) is stale and is taken over.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
from dataclasses import dataclass

from forge.runtime.base import RuntimeFault, SpecError
from forge.runtime.local.uid_clash import known_to_nss

DEFAULT_CLAIMS_DIR = "/run/forge/lab-uids"
DEFAULT_FIRST_UID = 300000
DEFAULT_COUNT = 100000
MAX_CLAIM_BYTES = 4096
MAX_SKIPPED = 8  # pairs with an account, passed over in one claim before refusing
log = logging.getLogger("forge.runtime.uids")


def parse_range(text: str) -> tuple[int, int]:
    """``"300000-399999"`` -> (first uid, how many); both ends inclusive."""
    try:
        low, high = (int(part) for part in text.split("-", 1))
    except ValueError:
        raise SpecError("uid_range", "must look like FIRST-LAST, e.g. 300000-399999") from None
    if not 1000 <= low < high <= 2**31 - 2:
        raise SpecError("uid_range", "must be 1000 <= FIRST < LAST < 2147483647")
    return low, high - low + 1


class NoFreeUids(RuntimeFault):
    """Every pair of the range is claimed (by live labs, ready warm-pool labs among them)."""


@dataclass(frozen=True)
class LabIdentity:
    """The uids of one lab: its processes run as ``learner``; its checks as ``grader``."""

    learner: int
    grader: int


class UidPool:
    """Claims and releases uid pairs for labs."""

    def __init__(self, first: int = DEFAULT_FIRST_UID, count: int = DEFAULT_COUNT,
                 claims_dir: str = DEFAULT_CLAIMS_DIR) -> None:
        if first < 1000 or count < 2:
            raise SpecError("uid_range", "needs at least two uids from 1000 up")
        self.first = first
        self.pairs = count // 2
        self.claims_dir = claims_dir

    def _path(self, slot: int) -> str:
        return os.path.join(self.claims_dir, str(self.first + 2 * slot))

    def identity(self, slot: int) -> LabIdentity:
        """The uids of pair ``slot``."""
        uid = self.first + 2 * slot
        return LabIdentity(uid, uid + 1)

    def claim(self, lab_dir: str) -> LabIdentity:
        """Claim a free pair for the lab whose state directory is ``lab_dir``."""
        os.makedirs(self.claims_dir, mode=0o700, exist_ok=True)
        start = random.randrange(self.pairs)  # spreads claims; not a secret
        skipped: list[str] = []
        for step in range(self.pairs):
            slot = (start + step) % self.pairs
            path = self._path(slot)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            except FileExistsError:
                if not self._stale(path):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                                 0o600)
                except FileExistsError:
                    continue  # another process took it over first
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(lab_dir)
            identity = self.identity(slot)
            account = known_to_nss((identity.learner, identity.grader))
            if account is None:
                return identity
            # A local user with one of these ids could take the lab over: never handed out.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            log.warning("lab uids %d-%d skipped: the name service knows %s; set "
                        "FORGE_LAB_UID_RANGE to ids no account uses", identity.learner,
                        identity.grader, account)
            skipped.append(account)
            if len(skipped) >= MAX_SKIPPED:
                raise RuntimeFault(f"FORGE_LAB_UID_RANGE holds ids of accounts the name "
                                   f"service knows ({', '.join(skipped[:3])}, …): set it "
                                   "to ids no account uses")
        raise NoFreeUids(f"no free lab uid left in {self.first}-"
                           f"{self.first + 2 * self.pairs - 1}")

    def release(self, lab_dir: str, learner: int | None = None) -> None:
        """Give back every pair claimed for ``lab_dir`` (normally one); idempotent. With the
        lab's recorded ``learner`` uid, only that claim is read when it names ``lab_dir``
        (a teardown then costs the same with 1,000 claims as with one)."""
        if learner is not None:
            path = os.path.join(self.claims_dir, str(learner))
            if _owner(path) == lab_dir:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                return
        for uid, owner in self.claimed().items():
            if owner == lab_dir:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.claims_dir, str(uid)))

    def claimed(self) -> dict[int, str]:
        """learner uid -> lab directory, for every current claim."""
        out: dict[int, str] = {}
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(self.claims_dir):
                if name.isdigit():
                    owner = _owner(os.path.join(self.claims_dir, name))
                    if owner is not None:
                        out[int(name)] = owner
        return out

    @staticmethod
    def _stale(path: str) -> bool:
        owner = _owner(path)
        # An unreadable or empty claim may be one being written right now: not stale.
        return owner is not None and not os.path.isdir(owner)


def _owner(path: str) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(MAX_CLAIM_BYTES).decode("utf-8", "replace").strip()
    return data or None
