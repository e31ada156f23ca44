"""Only `forge up`'s own user may reach the embedded nats-servers' monitoring ports.

nats-server's HTTP monitoring (/varz, /connz, /subsz, /jsz) has no authentication of its
own, and `forge up` reads it to supervise the servers: on loopback, any local user of the
machine could read the bus's connection names, subscriptions and stream settings. Running
as root, `forge up` installs one nftables table that resets a loopback TCP connection to
those ports from any other user id. The table is named after the storage root, replaced
whole on each start (one left by a `forge up` killed with -9 is taken over by the next)
and deleted on stop. Not root, nftables is out of reach: the ports stay open, and
`forge up` says so.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from forge.detached import run_detached

FAMILY = "ip"  # the monitoring ports listen on 127.0.0.1 only
TABLE_PREFIX = "forge_nats_monitor_"
_SBIN = "/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin"
NFT_TIMEOUT_S = 10.0


class GuardUnavailable(Exception):
    """The monitoring ports could not be closed to other users; the message says why."""


def table_name(storage_root: Path) -> str:
    """The guard's table for `storage_root` (one `forge up` per root, so one table)."""
    digest = hashlib.sha256(os.fsencode(os.path.abspath(storage_root))).hexdigest()[:12]
    return TABLE_PREFIX + digest


def ruleset(table: str, ports: Sequence[int], uid: int) -> str:
    """The nft script that makes (or replaces) `table`: a loopback connection to `ports`
    from a socket of any user but `uid` is reset."""
    if not ports or not all(isinstance(p, int) and 0 < p < 65536 for p in ports):
        raise ValueError(f"monitoring ports must be TCP ports, got {list(ports)!r}")
    listed = ", ".join(str(p) for p in sorted(set(ports)))
    return (f"table {FAMILY} {table}\n"
            f"delete table {FAMILY} {table}\n"
            f"table {FAMILY} {table} {{\n"
            "  chain output {\n"
            "    type filter hook output priority 0; policy accept;\n"
            f"    ip daddr 127.0.0.0/8 tcp dport {{ {listed} }} meta skuid != {uid} "
            "reject with tcp reset\n"
            "  }\n"
            "}\n")


def _nft(args: list[str], script: str | None = None) -> None:
    nft = shutil.which("nft", path=_SBIN)
    if nft is None:
        raise GuardUnavailable("nft is not installed")
    try:
        done = run_detached([nft, *args], input=script, timeout=NFT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise GuardUnavailable(f"nft did not answer within {NFT_TIMEOUT_S:.0f} s") from None
    except OSError as exc:  # cannot be run at all
        raise GuardUnavailable(f"nft: {exc.strerror or exc}") from None
    if done.returncode != 0:
        raise GuardUnavailable(f"nft: {done.stderr.strip()[-300:] or 'failed'}")


@dataclass(frozen=True)
class MonitorGuard:
    """An installed guard: `remove()` deletes its table."""

    table: str

    @classmethod
    def install(cls, storage_root: Path, ports: Sequence[int]) -> MonitorGuard:
        """Close `ports` on loopback to every user but this process's; GuardUnavailable
        when that cannot be done (not root, no nft)."""
        if os.geteuid() != 0:
            raise GuardUnavailable("not running as root, so nftables cannot be set")
        table = table_name(storage_root)
        _nft(["-f", "-"], ruleset(table, ports, os.geteuid()))
        return cls(table)

    def remove(self) -> None:
        """Delete the table (gone already is fine: an operator's `nft flush ruleset`)."""
        try:
            _nft(["delete", "table", FAMILY, self.table])
        except GuardUnavailable as exc:
            if "No such file or directory" not in str(exc):
                raise


__all__ = ["GuardUnavailable", "MonitorGuard", "ruleset", "table_name"]
