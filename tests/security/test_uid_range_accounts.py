"""Attack: a local user of the server whose id is one of a lab's.

The kernel knows ids, not names. A machine account with a lab's learner uid could signal
or trace the lab's processes, read the learner's files and, as the owner of each host's
user namespace, hold every capability there; one with its grader uid could do the same
to the checks that decide the verdict. FORGE_LAB_UID_RANGE was only documented as "keep
it clear of real users". Now the runtime's readiness names such an account and no lab
starts while it exists, also one made after the runtime started. A real account
(useradd/groupadd), in a range of this test's own.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from forge.runtime.base import HostSpec, LabSpec, RuntimeFault, RuntimeUnavailable, SubnetSpec
from forge.runtime.local import LocalRuntime
from forge.runtime.local.netns import list_netns
from forge.runtime.local.uid_clash import known_to_nss
from forge.runtime.local.uids import LabIdentity, UidPool

from ..support.one_lab import own_runtime, pool_lab

# It adds machine accounts: alone, after the parallel run (Makefile, pytest target).
pytestmark = pytest.mark.machine_accounts


def lab(lab_id: str) -> LabSpec:
    return LabSpec(lab_id, [SubnetSpec("lan", "10.213.0.0/24")],
                   [HostSpec("box", networks=[("lan", None)], command="exec sleep 1000")])


@contextmanager
def account(uid: int, *, group: bool = False) -> Iterator[str]:
    """A real machine account (or group) with id ``uid``, removed afterwards."""
    name = "fgclash" + secrets.token_hex(3)
    if group:
        made = ["groupadd", "--gid", str(uid), name]
        gone = ["groupdel", name]
    else:  # a system user: no home, no mail spool, no subordinate ids of its own
        made = ["useradd", "--system", "--uid", str(uid), "--no-user-group", "--gid",
                "65534", "--no-create-home", "--shell", "/usr/sbin/nologin", name]
        gone = ["userdel", name]
    subprocess.run(made, check=True, capture_output=True, timeout=30)
    try:
        yield name
    finally:
        subprocess.run(gone, check=True, capture_output=True, timeout=30)


USERDB = Path("/run/userdb")  # systemd's drop-in user records, read by nss-systemd


@contextmanager
def directory_account(uid: int) -> Iterator[str]:
    """An account only the name service knows, as a directory service's (LDAP, SSSD) is:
    a systemd user record in /run/userdb, in no account file. Removed afterwards."""
    name = "fgdir" + secrets.token_hex(3)
    made_dir = not USERDB.exists()
    USERDB.mkdir(mode=0o755, exist_ok=True)
    record = USERDB / f"{name}.user"
    by_uid = USERDB / f"{uid}.user"
    record.write_text(json.dumps({"userName": name, "uid": uid, "gid": uid,
                                  "disposition": "regular", "homeDirectory": "/nonexistent",
                                  "shell": "/usr/sbin/nologin"}), encoding="utf-8")
    by_uid.symlink_to(record.name)
    try:
        assert known_to_nss((uid,)) == f"user {name} (uid {uid})", \
            "this machine's name service does not read /run/userdb (nss-systemd)"
        yield name
    finally:
        by_uid.unlink()
        record.unlink()
        if made_dir:
            USERDB.rmdir()


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[LocalRuntime]:
    """A runtime of two uid pairs high above any real account."""
    with own_runtime(tmp_path / "state", uid_pairs=2) as rt:
        yield rt


def mine(runtime: LocalRuntime) -> set[str]:
    """The network namespaces of this runtime (other tests make theirs meanwhile)."""
    return {name for name in list_netns() if name.startswith(runtime.names.prefix)}


def _clash(problems: list[str]) -> list[str]:
    return [p for p in problems if "FORGE_LAB_UID_RANGE" in p]


def test_an_account_with_a_lab_uid_stops_every_lab_start(runtime: LocalRuntime) -> None:
    first = runtime.uids.first
    assert runtime.check() == []
    runtime.create(lab("before"))  # the runtime was in use before the account was made
    claims = sorted(os.listdir(runtime.uids.claims_dir))
    namespaces = mine(runtime)
    with account(first + 3) as name:  # the grader uid of the second pair
        [problem] = _clash(runtime.check())
        assert f"{name} (uid {first + 3})" in problem and "/etc/passwd" in problem
        with pytest.raises(RuntimeUnavailable, match=name):
            runtime.create(lab("after"))
        # Refused before anything was made: no lab, no uid claimed, no namespace.
        assert [info.lab_id for info in runtime.list()] == ["before"]
        assert sorted(os.listdir(runtime.uids.claims_dir)) == claims
        assert mine(runtime) == namespaces
    assert _clash(runtime.check()) == []
    runtime.create(lab("after"))
    assert {info.lab_id for info in runtime.list()} == {"before", "after"}


def test_a_group_with_a_lab_gid_is_named_too(runtime: LocalRuntime) -> None:
    first = runtime.uids.first
    with account(first, group=True) as name:  # a lab's gid is its learner uid
        [problem] = _clash(runtime.check())
        assert f"{name} (gid {first})" in problem and "/etc/group" in problem
        with pytest.raises(RuntimeUnavailable, match=name):
            runtime.create(lab("grouped"))
    assert runtime.check() == []


def test_a_pair_the_name_service_knows_is_never_handed_out(tmp_path: Path) -> None:
    """The readiness check reads the account files; a directory service (LDAP, SSSD)
    fills none, so each claimed pair is also looked up through the name service. Here the
    name service is the machine's own (files), asked by the pool directly."""
    first = 1_960_000_000 + 4 * secrets.randbelow(10_000_000)
    pool = UidPool(first, 4, str(tmp_path / "uids"))  # two pairs
    with account(first + 1) as name:  # the grader uid of the first pair
        for n in range(12):  # claims start at a random pair: both are tried
            got = pool.claim(str(tmp_path / f"lab{n}"))
            assert got == LabIdentity(first + 2, first + 3), (got, name)
            pool.release(str(tmp_path / f"lab{n}"))
        assert os.listdir(tmp_path / "uids") == []  # the skipped pair's claim is not left
        (tmp_path / "holder").mkdir()  # a live lab's directory: its claim is not stale
        taken = pool.claim(str(tmp_path / "holder"))
        with pytest.raises(RuntimeFault, match="no free lab uid"):
            pool.claim(str(tmp_path / "another"))
        pool.release(str(tmp_path / "holder"), taken.learner)


def test_pool_labs_that_waited_while_an_account_had_their_ids_are_never_handed_out(
        tmp_path: Path) -> None:
    """Ready warm-pool labs wait with ids of the range; while an account holds one of
    those ids its holder may reach them. They are destroyed then, and again once the
    range is clear, and the pool refills with new labs."""
    with own_runtime(tmp_path / "state", uid_pairs=2) as rt:
        rt.warm({"one": (lab("x"), 1)}, quiet_s=0.05, poll_s=0.1)
        waited = pool_lab(rt)
        with account(rt.uids.first + 1) as name:
            assert name in " ".join(rt.check())
            assert rt.warm_pool is not None and rt.warm_pool.ready_ids() == []
            assert waited not in {info.lab_id for info in rt.list()}  # destroyed
        assert rt.check() == []
        assert pool_lab(rt) != waited  # a new lab, built once the range was clear


def test_a_pool_lab_whose_pair_the_name_service_came_to_know_is_never_handed_out(
        tmp_path: Path) -> None:
    """Red team CB: a ready pool lab took its uid pair when it was built, and the claim
    handed it out without asking the name service again. An account a directory service
    gave one of those ids meanwhile (in no account file, so the readiness check is clear)
    owned the waiting lab's user namespaces: its holder planted a `.bashrc` in the
    learner's home before the claim and read the service's secret after it. Now the claim
    destroys such a lab and the spawn gets a lab built at once, with another pair."""
    with own_runtime(tmp_path / "state", uid_pairs=2) as rt:
        rt.warm({"one": (lab("x"), 1)}, quiet_s=0.05, poll_s=0.1, account_sweep_s=3600)
        waited = pool_lab(rt)
        held = rt.identity(waited)
        with directory_account(held.learner):
            assert _clash(rt.check()) == []  # the account files know nothing of it
            rt.create(lab("claimer"))
            got = rt.identity("claimer")
            assert got != held and got.learner not in (held.learner, held.grader)
            assert waited not in {info.lab_id for info in rt.list()}  # destroyed
            assert rt.warm_pool is not None
            assert rt.warm_pool.stats.exposed == 1 and rt.warm_pool.stats.claimed == 0


def test_ready_pool_labs_whose_pair_the_name_service_came_to_know_are_destroyed(
        tmp_path: Path) -> None:
    """The pool also looks up its ready labs' pairs now and then (here every 0.2 s; once
    a minute by default), so such a lab does not wait on, reachable by the account's
    holder, until a claim: it is destroyed and the pool refills with another pair."""
    with own_runtime(tmp_path / "state", uid_pairs=2) as rt:
        rt.warm({"one": (lab("x"), 1)}, quiet_s=0.05, poll_s=0.1, account_sweep_s=0.2)
        waited = pool_lab(rt)
        held = rt.identity(waited)
        assert rt.warm_pool is not None
        with directory_account(held.grader):
            end = time.monotonic() + 60
            while waited in {info.lab_id for info in rt.list()}:
                assert time.monotonic() < end, "the exposed pool lab was never destroyed"
                time.sleep(0.05)
            assert rt.warm_pool.stats.exposed == 1
            refilled = pool_lab(rt)
            assert rt.identity(refilled).learner not in (held.learner, held.grader)


def test_a_running_lab_whose_pair_the_name_service_came_to_know_is_not_graded(
        runtime: LocalRuntime) -> None:
    """A learner's lab took a pair no account had; a directory service gave one of its
    ids to an account while the lab ran (the readiness check, reading the account files,
    stays clear). That account could have signalled or entered the lab's processes and,
    with the grader uid, its checks: grading refuses (RuntimeFault: the scenario fails as
    "grading failed", never a verdict) and the lab is not sealed. Once the account is
    gone, the same lab grades."""
    runtime.create(lab("running"))
    held = runtime.identity("running")
    with directory_account(held.grader):
        assert _clash(runtime.check()) == []
        with pytest.raises(RuntimeFault, match="not grading"):
            runtime.seal("running")
        assert not runtime.sealed("running")
    runtime.seal("running")
    assert runtime.sealed("running")
