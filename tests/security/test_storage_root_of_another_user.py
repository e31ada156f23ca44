"""A storage root another local user made (probe: `cpprobe`) is never trusted.

Before: a user made /tmp/cpprobe-store (0777) with secrets/dev-secrets.json of their
choosing and an empty forge.db (0666); root's `forge --storage … receipt mint` signed with
their RECEIPT_HMAC_SECRET, `apikey create` wrote key hashes into their database, `forge up`
accepted their OPERATOR_TOKEN, and a signing key they planted under keys/signing signed
verdicts. `cd /tmp && forge demo` would use /tmp/storage, which anyone can make first. Now
every way in refuses such a root with one line naming the path, its owner and mode, and what
to do (exit 2), before anything of it is read or written.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from forge.cli import app
from forge.cli.up import prepare
from forge.config import load_settings
from forge.config.secrets import load_dev_secrets
from forge.config.storage_root import UnsafeStorage, check_storage_root
from forge.signing.keystore import NoSigningKey, SigningKeyring
from forge.store.db import Database
from forge_verify.keys import key_id_for

from ..conftest import SQLITE_ONLY

pytestmark = pytest.mark.root  # makes files of another uid

PROBE = 1234  # the other local user
PLANTED = {"SAT_HMAC_SECRET": "a" * 64, "ET_HMAC_SECRET": "b" * 64,
           "RECEIPT_HMAC_SECRET": "c" * 64, "OPERATOR_TOKEN": "d" * 64}


def _give(path: Path, mode: int) -> None:
    os.chown(path, PROBE, PROBE)
    os.chmod(path, mode)


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    """What cpprobe made: a root open to all, their dev secrets and an empty database."""
    root = tmp_path / "cpprobe-store"
    (root / "secrets").mkdir(parents=True)
    (root / "secrets" / "dev-secrets.json").write_text(json.dumps(PLANTED))
    (root / "forge.db").write_bytes(b"")
    _give(root, 0o777)
    _give(root / "secrets", 0o777)
    _give(root / "secrets" / "dev-secrets.json", 0o644)
    _give(root / "forge.db", 0o666)
    return root


def _snapshot(root: Path) -> dict[str, tuple[int, int, int, bytes | None]]:
    found = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        data = path.read_bytes() if stat.S_ISREG(st.st_mode) else None
        found[str(path.relative_to(root))] = (st.st_uid, stat.S_IMODE(st.st_mode),
                                              st.st_size, data)
    return found


def _forge(root: Path, *args: str) -> tuple[int, str, str]:
    # STORAGE_ROOT restored afterwards: --storage sets it, and left set it named the
    # planted root to every later test of the worker (which then refused it).
    result = CliRunner().invoke(app, ["--storage", str(root), *args],
                                env={"FORGE_ENV": "dev", "FORGE_DB_URL": None,
                                     "FORGE_SIGNING_KEY_DIR": None, "STORAGE_ROOT": None})
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("engine", [SQLITE_ONLY])
def test_cli_commands_refuse_a_root_of_another_user_and_touch_nothing(
        planted: Path, engine: str) -> None:
    before = _snapshot(planted)
    for args in (("receipt", "mint", "--tenant", "acme", "--plan", "PRO"),
                 ("apikey", "create", "--tenant", "acme", "--subject", "alice"),
                 ("keys", "generate"), ("entitlements", "list"),
                 ("serve", "spawn", "--port", "9401")):
        code, out, err = _forge(planted, *args)
        assert code == 2, (args, code, out, err)
        assert out == ""  # no receipt, no key
        line = err.strip().removeprefix("forge serve spawn: ").removeprefix("forge: ")
        assert "\n" not in line
        assert line == (f"refusing storage root {planted}: {planted} is owned by uid "
                        f"{PROBE} (mode 777), not by uid 0: that user could have planted "
                        f"its secrets, keys or database; if it is yours, run `chown 0:0 "
                        f"{planted} && chmod go-w {planted}`, or choose another "
                        "--storage/STORAGE_ROOT"), args
    assert _snapshot(planted) == before  # nothing written, made or re-moded


def test_forge_up_and_demo_refuse_before_starting(planted: Path) -> None:
    before = _snapshot(planted)
    with pytest.raises(typer.Exit) as stopped:
        prepare(None, planted)
    assert stopped.value.exit_code == 2
    assert _snapshot(planted) == before


def test_services_refuse_to_load_settings_from_it(planted: Path) -> None:
    with pytest.raises(UnsafeStorage, match=f"owned by uid {PROBE} \\(mode 777\\)"):
        load_settings({"FORGE_ENV": "dev", "STORAGE_ROOT": str(planted)})
    with pytest.raises(UnsafeStorage):
        load_dev_secrets(planted)


@pytest.mark.parametrize("part", ["secrets", "keys", "keys/signing", "nats", "nats-tls",
                                  "secrets/dev-secrets.json", "forge.db", "forge.db-wal",
                                  "forge.db-shm", "forge.db-journal"])
def test_any_part_of_a_root_of_ours_that_another_user_owns_or_may_write(
        tmp_path: Path, part: str) -> None:
    """Root's own root, with one part another user's, or root's but open to writing, or
    a link where the part belongs: each is refused, naming that part."""
    root = tmp_path / "storage"
    root.mkdir()
    path = root / part
    folder = "." not in part.rsplit("/", 1)[-1]
    if folder:
        path.mkdir(parents=True)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"{}")
        path.chmod(0o600)
    check_storage_root(root)
    os.chown(path, PROBE, PROBE)
    with pytest.raises(UnsafeStorage, match=f"{path} is owned by uid {PROBE}"):
        check_storage_root(root)
    os.chown(path, 0, 0)
    path.chmod(0o777 if folder else 0o666)
    with pytest.raises(UnsafeStorage, match=f"{path} is writable by other users"):
        check_storage_root(root)
    if folder:
        path.rmdir()
    else:
        path.unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    path.symlink_to(elsewhere)
    with pytest.raises(UnsafeStorage, match=f"{path} is a symlink"):
        check_storage_root(root)


@pytest.mark.parametrize("engine", [SQLITE_ONLY])
def test_a_database_another_user_made_is_not_opened(tmp_path: Path, engine: str) -> None:
    """Named by FORGE_DB_URL outside any root: the same refusal, and it stays 0666."""
    db = tmp_path / "theirs.db"
    db.write_bytes(b"")
    _give(db, 0o666)
    with pytest.raises(UnsafeStorage, match=f"{db} is owned by uid {PROBE}"):
        Database(f"sqlite:///{db}")
    assert db.stat().st_size == 0


def _plant_key(folder: Path, owner: int) -> str:
    key = Ed25519PrivateKey.generate()
    kid = key_id_for(key.public_key())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    (folder / f"{kid}.key").write_bytes(pem)
    (folder / "current").write_text(kid + "\n")
    for name in (f"{kid}.key", "current"):
        os.chown(folder / name, owner, owner)
        (folder / name).chmod(0o600)
    return kid


def test_the_keyring_never_signs_with_a_key_another_user_planted(tmp_path: Path) -> None:
    folder = tmp_path / "keys" / "signing"
    folder.mkdir(parents=True, mode=0o700)
    _plant_key(folder, PROBE)
    ring = SigningKeyring(folder)
    with pytest.raises(NoSigningKey, match=f"owned by uid {PROBE}, not by uid 0"):
        ring.current()
    assert ring.current_or_none() is None
    # A folder of theirs, even with a key file of root's in it, is refused too.
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    _plant_key(theirs, 0)
    os.chown(theirs, PROBE, PROBE)
    with pytest.raises(NoSigningKey, match=f"{theirs} is owned by uid {PROBE}"):
        SigningKeyring(theirs).current()
    with pytest.raises(UnsafeStorage):
        SigningKeyring(theirs).rotate()
    assert len(list(theirs.glob("*.key"))) == 1  # nothing generated there


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize("engine", [SQLITE_ONLY])
def test_a_root_forge_makes_itself_is_private_and_keeps_working(
        tmp_path: Path, open_umask: None, engine: str) -> None:
    """Even under umask 0 what Forge makes passes its own check, and is used again."""
    root = tmp_path / "new" / "storage"
    env = {"FORGE_ENV": "dev", "STORAGE_ROOT": str(root)}
    first = load_settings(env)
    assert stat.S_IMODE(root.stat().st_mode) == 0o755
    assert stat.S_IMODE((root / "secrets").stat().st_mode) == 0o700
    assert stat.S_IMODE((root / "secrets" / "dev-secrets.json").stat().st_mode) == 0o600
    key, created = SigningKeyring(root / "keys" / "signing").ensure()
    assert created
    assert stat.S_IMODE((root / "keys" / "signing").stat().st_mode) == 0o700
    db = Database(first.db_url)
    db.engine.dispose()
    assert stat.S_IMODE((root / "forge.db").stat().st_mode) == 0o600
    check_storage_root(root)
    again = load_settings(env)
    assert again.operator.current == first.operator.current
    assert SigningKeyring(root / "keys" / "signing").current().key_id == key.key_id
    code, out, err = _forge(root, "receipt", "mint", "--tenant", "acme", "--plan", "PRO")
    assert code == 0 and out.strip(), err


def test_a_root_an_older_release_made_under_umask_002_is_tightened_not_refused(
        tmp_path: Path) -> None:
    """Ubuntu and Fedora give users umask 002: older releases made the root and keys/
    0775, group-writable by the user's own group only. Refusing them stopped every start
    after an upgrade; they are tightened (go-w). Open to others (o+w) stays refused."""
    root = tmp_path / "storage"
    (root / "keys" / "signing").mkdir(parents=True)
    for folder in (root, root / "keys"):
        folder.chmod(0o775)
    db = root / "forge.db"
    db.write_bytes(b"")
    db.chmod(0o664)
    check_storage_root(root)
    assert [stat.S_IMODE(p.stat().st_mode) for p in (root, root / "keys", db)] == \
        [0o755, 0o755, 0o644]
    (root / "keys").chmod(0o777)
    with pytest.raises(UnsafeStorage, match="is writable by other users"):
        check_storage_root(root)


def test_a_keyring_named_on_its_own_judges_the_folders_above_it(tmp_path: Path) -> None:
    """FORGE_SIGNING_KEY_DIR=/tmp/k: the keyring's parent was taken for a storage root and
    refused, with advice to chmod go-w /tmp; a sticky folder above is fine. One below a
    folder of cpprobe's was not judged above itself at all: cpprobe could rename the keys
    folder away and put theirs in its place, and verdicts were signed with their key."""
    sticky = tmp_path / "tmp"
    sticky.mkdir()
    sticky.chmod(0o1777)
    ring = SigningKeyring(sticky / "k")
    key = ring.generate()
    assert ring.current().key_id == key.key_id
    assert stat.S_IMODE((sticky / "k").stat().st_mode) == 0o700
    assert stat.S_IMODE(sticky.stat().st_mode) == 0o1777  # not touched

    home = tmp_path / "home-cpprobe"
    home.mkdir()
    (sticky / "k").rename(home / "k")  # root's keyring, every key root's, in their folder
    _give(home, 0o755)
    theirs = SigningKeyring(home / "k")
    with pytest.raises(NoSigningKey, match=rf"{home} \(a folder above it\) is owned by "
                                           f"uid {PROBE}"):
        theirs.current()
    with pytest.raises(UnsafeStorage, match=r"\(a folder above it\)"):
        theirs.rotate()
    with pytest.raises(UnsafeStorage, match=r"\(a folder above it\)") as refused:
        SigningKeyring(home / "new").generate()
    # It read "refusing storage root …/new: … put the storage root in a folder of yours":
    # the keyring is no storage root; the refusal names it and its setting.
    assert str(refused.value).startswith(f"refusing signing keyring {home / 'new'} "
                                         "(FORGE_SIGNING_KEY_DIR / --keys-dir): "), refused
    assert "storage root" not in str(refused.value)
    assert not (home / "new").exists()
    os.chown(home, 0, 0)  # root's folder again: signs
    assert theirs.current().key_id == key.key_id


def test_a_root_this_user_cannot_look_into_is_one_line_not_a_traceback(
        tmp_path: Path) -> None:
    """The services run as root with secrets/ at 0700; `forge` run as another user got a
    PermissionError traceback."""
    root = tmp_path / "storage"
    (root / "secrets").mkdir(parents=True, mode=0o700)
    pid = os.fork()
    if pid == 0:  # a child as the other user: a refusal, not a traceback
        code = 1
        try:
            os.setgid(PROBE)
            os.setuid(PROBE)
            try:
                check_storage_root(root)
            except UnsafeStorage as exc:
                code = 0 if "cannot be looked at by uid 1234" in str(exc) else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_root_below_a_folder_another_user_may_change_is_refused(tmp_path: Path) -> None:
    """Root's own storage root inside cpprobe's home (or a group-writable folder): it passed
    every check, yet cpprobe could rename it away after the check and put a root of theirs
    (their secrets, their signing key) in its place before the services read it."""
    home = tmp_path / "home-cpprobe"
    home.mkdir()
    root = home / "storage"
    SigningKeyring(root / "keys" / "signing").generate()  # made by root: every part root's
    _give(home, 0o755)
    with pytest.raises(UnsafeStorage, match=r"\(a folder above it\) is owned by uid 1234"):
        check_storage_root(root)
    refused = CliRunner().invoke(app, ["keys", "list", "--storage", str(root)])
    assert refused.exit_code == 2 and "a folder above it" in refused.output
    os.chown(home, 0, 0)
    home.chmod(0o777)  # anyone may rename entries: the same
    with pytest.raises(UnsafeStorage, match="writable by other users without the sticky"):
        check_storage_root(root / "not-made-yet")
    home.chmod(0o1777)  # sticky, like /tmp: only the owner of an entry renames it
    check_storage_root(root)


def test_a_root_reached_through_a_link_in_a_folder_another_user_may_change_is_refused(
        tmp_path: Path) -> None:
    """The same swap through a link: `data` in cpprobe's home points at root's own folder,
    so the root's real path is root's all the way up, yet cpprobe may point `data`
    elsewhere after the check. Links of root's own (like /var/run -> /run) are fine."""
    safe = tmp_path / "srv"
    safe.mkdir()
    home = tmp_path / "home-cpprobe"
    home.mkdir()
    (home / "data").symlink_to(safe)
    root = home / "data" / "storage"
    SigningKeyring(root / "keys" / "signing").generate()
    _give(home, 0o755)
    os.chown(home / "data", PROBE, PROBE, follow_symlinks=False)
    with pytest.raises(UnsafeStorage, match=r"home-cpprobe \(a folder above it\) is owned by "
                                            "uid 1234"):
        check_storage_root(root)
    refused = CliRunner().invoke(app, ["keys", "list", "--storage", str(root)])
    assert refused.exit_code == 2 and "a folder above it" in refused.output
    os.chown(home, 0, 0)  # root's folder, root's link: nobody else may re-point it
    os.chown(home / "data", 0, 0, follow_symlinks=False)
    check_storage_root(root)
    check_storage_root(home / "data" / "not-made-yet")


@pytest.mark.parametrize("part", ["scenarios", "audit", "retention", "scoreboard/unsealed"])
def test_a_results_folder_an_older_release_left_open_to_all_is_refused(
        tmp_path: Path, part: str) -> None:
    """Under an inherited umask 0 an older release made the results, audit and holds
    folders 0777: another user could swap a scenario's audit.jsonl for a link to any file
    root then appended to. Such a root is refused with the recursive fix; a link to a
    folder of ours elsewhere (results on a bigger disk) is used as it is."""
    root = tmp_path / "storage"
    folder = root / part
    folder.mkdir(parents=True)
    check_storage_root(root)
    folder.chmod(0o777)
    with pytest.raises(UnsafeStorage, match=f"{folder} is writable by other users.*"
                                            f"chmod -R go-w {folder}"):
        check_storage_root(root)
    folder.chmod(0o755)
    os.chown(folder, PROBE, PROBE)
    with pytest.raises(UnsafeStorage, match=f"{folder} is owned by uid {PROBE}"):
        check_storage_root(root)
    folder.rmdir()
    bigger_disk = tmp_path / "disk" / part
    bigger_disk.mkdir(parents=True)
    folder.symlink_to(bigger_disk)
    check_storage_root(root)
    bigger_disk.chmod(0o777)
    with pytest.raises(UnsafeStorage, match=f"{folder} is writable by other users"):
        check_storage_root(root)
