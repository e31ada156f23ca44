"""Machine accounts whose ids fall in the lab uid range (FORGE_LAB_UID_RANGE).

A lab's processes run as its learner uid and its checks as its grader uid (``uids``), and
each lab host's user namespace belongs to the learner uid (``netns.create_host_netns``).
The kernel knows ids, not names: a local user of the server whose uid is one of them could
signal or trace a lab's processes and its checks (a PASS not earned), read the learner's
files, and, as the owner of a host's user namespace, join it with every capability there:
its identity map makes that root's access to every file of the machine (probe BI read
/etc/shadow and wrote under /root that way). A
user with subordinate ids in that range (``/etc/subuid``, ``/etc/subgid``: Debian's
``useradd`` gives each new user 65,536 of them from 100,000, so the fourth one reaches
300,000) can run processes with those ids through ``newuidmap`` and do the first three.
Groups matter the same way, since a lab's gid is its uid.

The readiness check reads the account files (``ClashCheck``), which a directory service
(LDAP, SSSD; AD ids mapped by SSSD start at 200,000 by default) does not fill: each pair a
lab claims is also looked up through the name service (``known_to_nss``), and a pair with
an account is never handed out.
"""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Iterator
from dataclasses import dataclass

ACCOUNT_FILES = ("/etc/passwd", "/etc/group", "/etc/subuid", "/etc/subgid")
MAX_FILE_BYTES = 32 * 1024 * 1024
SHOWN = 3


@dataclass(frozen=True)
class Clash:
    """Ids ``low``-``high`` (inclusive) of ``name``, from ``source``, in the lab range."""

    source: str
    name: str
    low: int
    high: int
    what: str  # "uid", "gid" (a group's, or an account's primary group) or "ids"

    def describe(self) -> str:
        """A phrase naming what clashes, for an operator."""
        if self.what == "ids":
            return f"{self.source}: {self.name}'s ids {self.low}-{self.high}"
        return f"{self.source}: {self.name} ({self.what} {self.low})"


def _ranges(source: str, text: str) -> Iterator[tuple[str, int, int, str]]:
    """(name, first, last, what) of each entry of an account file; malformed lines are
    skipped, as the tools that read these files skip them."""
    kind = os.path.basename(source)
    for line in text.splitlines():
        fields = line.split(":")
        try:
            if kind in ("subuid", "subgid"):
                first, count = int(fields[1]), int(fields[2])
                if count > 0:
                    yield fields[0], first, first + count - 1, "ids"
            elif kind == "passwd":
                yield fields[0], int(fields[2]), int(fields[2]), "uid"
                yield fields[0], int(fields[3]), int(fields[3]), "gid"  # its primary group
            else:
                yield fields[0], int(fields[2]), int(fields[2]), "gid"
        except (IndexError, ValueError):
            continue


def clashes(first: int, count: int, files: tuple[str, ...] = ACCOUNT_FILES) -> list[Clash]:
    """Every entry of ``files`` holding an id in ``first`` .. ``first + count - 1``. A file
    that is missing says nothing; one that cannot be read, or is over MAX_FILE_BYTES, is an
    OSError (the range is then not known to be clear)."""
    last = first + count - 1
    found: list[Clash] = []
    for source in files:
        try:
            fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK)  # root's /etc: links are fine
        except FileNotFoundError:
            continue
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise OSError(f"{source} is over {MAX_FILE_BYTES} bytes")
        seen: set[tuple[str, int, int, str]] = set()
        for entry in _ranges(source, data.decode("utf-8", "replace")):
            _name, low, high, _what = entry
            if low <= last and high >= first and entry not in seen:
                seen.add(entry)
                found.append(Clash(source, *entry))
    return found


class ClashCheck:
    """``problem()`` for one range, read again only when an account file changed (the
    runtime's readiness check and every lab start ask)."""

    def __init__(self, first: int, count: int,
                 files: tuple[str, ...] = ACCOUNT_FILES) -> None:
        self.first = first
        self.count = count
        self.files = files
        # (the files' stamp, the answer for it): one attribute, so that a thread never
        # sees one's stamp with another's answer
        self._last: tuple[tuple[object, ...], str | None] | None = None

    def _stamp(self) -> tuple[object, ...] | None:
        """What the account files look like now; None when one cannot be looked at."""
        stamp: list[object] = []
        for source in self.files:
            try:
                st = os.stat(source)
            except FileNotFoundError:
                stamp.append(None)
                continue
            except OSError:  # unknown: never answered from the cache (see problem)
                return None
            stamp.append((st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
        return tuple(stamp)

    def problem(self) -> str | None:
        """Why the range is not clear of the machine's accounts, or None when it is."""
        stamp = self._stamp()
        last = self._last
        if stamp is not None and last is not None and last[0] == stamp:
            return last[1]
        span = f"FORGE_LAB_UID_RANGE {self.first}-{self.first + self.count - 1}"
        try:
            found = clashes(self.first, self.count, self.files)
        except OSError as exc:
            problem: str | None = f"{span} could not be checked against the accounts: {exc}"
        else:
            problem = None
            if found:
                shown = "; ".join(c.describe() for c in found[:SHOWN])
                more = f" (and {len(found) - SHOWN} more)" if len(found) > SHOWN else ""
                problem = (f"{span} holds ids of the machine's accounts: {shown}{more}. A "
                           "local user with one of them could signal or trace a lab's "
                           "processes and checks, or take its hosts over; set "
                           "FORGE_LAB_UID_RANGE to ids no account or subordinate range uses")
        self._last = None if stamp is None else (stamp, problem)
        return problem


def known_to_nss(ids: tuple[int, ...]) -> str | None:
    """The first of ``ids`` the name service knows as a user or a group, as "user NAME
    (uid N)" or "group NAME (gid N)"; None when it knows none of them."""
    for number in ids:
        try:
            return f"user {pwd.getpwuid(number).pw_name} (uid {number})"
        except KeyError:
            pass
        try:
            return f"group {grp.getgrgid(number).gr_name} (gid {number})"
        except KeyError:
            pass
    return None
