"""The Ed25519 keyring: ids, file modes, rotation that keeps old verdicts verifiable."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from forge.signing.keystore import KeyExists, NoSigningKey, SigningKeyring, keyring_dir
from forge_verify import verify_paths
from forge_verify.keys import raw_public_bytes

from .sample import build, write_files

NAMES = ("score.json", "evidence.tar.zst", "verdict.sig", "verdict.pub")


def test_generate_writes_a_private_key_only_its_owner_can_read(tmp_path: Path) -> None:
    ring = SigningKeyring(tmp_path / "keys")
    key = ring.generate()
    assert key.key_id == hashlib.sha256(raw_public_bytes(key.public_key)).hexdigest()[:16]
    assert stat.S_IMODE((ring.directory / f"{key.key_id}.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(ring.directory.stat().st_mode) == 0o700
    assert ring.current().key_id == key.key_id
    assert key.private_key.private_bytes_raw() == ring.current().private_key.private_bytes_raw()
    assert "private_key" not in repr(key)
    with pytest.raises(KeyExists, match="forge keys rotate"):
        ring.generate()


def test_no_loadable_key_is_a_clear_error(tmp_path: Path) -> None:
    ring = SigningKeyring(tmp_path / "keys")
    with pytest.raises(NoSigningKey, match=r"no current key.*forge keys generate"):
        ring.current()
    assert ring.current_or_none() is None
    key = ring.generate()
    path = ring.directory / f"{key.key_id}.key"
    os.chmod(path, 0o644)
    with pytest.raises(NoSigningKey, match="readable by others"):
        ring.current()
    os.chmod(path, 0o600)
    path.write_bytes(b"garbage")
    with pytest.raises(NoSigningKey, match="not a PEM private key"):
        ring.current()
    path.unlink()
    with pytest.raises(NoSigningKey, match="cannot read"):
        ring.current()
    (ring.directory / "current").write_text("../../etc/passwd\n")
    with pytest.raises(NoSigningKey, match="does not hold a key id"):
        ring.current()


@pytest.mark.parametrize("damage", ["key_garbage", "key_gone", "current_garbage"])
def test_an_unusable_key_names_the_command_that_mends_it(tmp_path: Path, damage: str) -> None:
    # The message said `forge keys generate`, which refuses once 'current' exists (and, with
    # 'current' garbled, printed the same message again): the operator was sent in a loop.
    ring = SigningKeyring(tmp_path / "keys")
    old = ring.generate()
    key_file = ring.directory / f"{old.key_id}.key"
    if damage == "key_garbage":
        key_file.write_bytes(b"garbage")
    elif damage == "key_gone":
        key_file.unlink()
    else:
        (ring.directory / "current").write_text("not-a-key-id\n")
    with pytest.raises(NoSigningKey) as err:
        ring.current()
    assert "forge keys rotate" in str(err.value) and "keys generate" not in str(err.value)
    new = ring.rotate()  # what the message says to run
    assert ring.current().key_id == new.key_id != old.key_id
    assert old.key_id in ring.public_keys()  # what the old key signed still verifies


@pytest.mark.parametrize("damage", ["current_garbage", "current_gone"])
def test_mending_a_lost_current_retires_the_key_it_named(tmp_path: Path, damage: str) -> None:
    # With 'current' garbled (the check says `forge keys rotate`) or deleted (it says
    # `forge keys generate`), the new key became current but the old private key stayed
    # on disk, listed "can sign" and never retired: a rotation that left the key it
    # replaced able to sign.
    ring = SigningKeyring(tmp_path / "keys")
    old = ring.generate()
    current = ring.directory / "current"
    if damage == "current_garbage":
        current.write_text("not-a-key-id\n")
        new = ring.rotate()
    else:
        current.unlink()
        new = ring.generate()
    assert ring.current().key_id == new.key_id != old.key_id
    assert not (ring.directory / f"{old.key_id}.key").exists()
    infos = {i.key_id: i for i in ring.list_keys()}
    assert not infos[old.key_id].can_sign and infos[old.key_id].retired_at is not None
    assert old.key_id in ring.public_keys()  # what it signed still verifies


def test_a_key_file_holding_another_key_is_refused(tmp_path: Path) -> None:
    ring = SigningKeyring(tmp_path / "keys")
    a = ring.generate()
    b = ring.rotate()
    # Put b's private key under a's name and point current at a.
    (ring.directory / f"{a.key_id}.key").write_bytes((ring.directory / f"{b.key_id}.key")
                                                     .read_bytes())
    os.chmod(ring.directory / f"{a.key_id}.key", 0o600)
    (ring.directory / "current").write_text(a.key_id + "\n")
    with pytest.raises(NoSigningKey, match=f"holds key {b.key_id}"):
        ring.current()


def test_ensure_generates_once_for_dev(tmp_path: Path) -> None:
    ring = SigningKeyring(tmp_path / "keys")
    first, created = ring.ensure()
    again, created_again = SigningKeyring(tmp_path / "keys").ensure()
    assert created and not created_again and first.key_id == again.key_id


def test_rotation_keeps_old_verdicts_verifiable_with_exported_keys(tmp_path: Path) -> None:
    ring = SigningKeyring(tmp_path / "keys")
    old = ring.generate()
    before = write_files(build(tmp_path / "w1", key=ring.current()), tmp_path / "before")
    new = ring.rotate()
    assert new.key_id != old.key_id and ring.current().key_id == new.key_id
    assert not (ring.directory / f"{old.key_id}.key").exists()  # old key can no longer sign
    after = write_files(build(tmp_path / "w2", key=ring.current()), tmp_path / "after")

    exported = tmp_path / "trusted"
    ring.export_public(exported)
    assert sorted(p.name for p in exported.iterdir()) == sorted(
        [f"{old.key_id}.pem", f"{new.key_id}.pem"])
    bundle = tmp_path / "trusted-all.pem"
    bundle.write_bytes(ring.export_public())
    for trusted in (exported, bundle):
        for paths, kid in ((before, old.key_id), (after, new.key_id)):
            res = verify_paths(*(paths[n] for n in NAMES), trusted_key=trusted)
            assert res.ok and res.origin == "proven" and res.key_id == kid, res.reasons
    infos = {i.key_id: i for i in ring.list_keys()}
    assert infos[new.key_id].current and infos[new.key_id].can_sign
    assert not infos[old.key_id].current and not infos[old.key_id].can_sign
    assert infos[old.key_id].retired_at is not None


def test_keyring_dir_defaults_under_storage_and_honours_the_env(tmp_path: Path) -> None:
    assert keyring_dir(tmp_path, {}) == tmp_path / "keys" / "signing"
    assert keyring_dir(tmp_path, {"FORGE_SIGNING_KEY_DIR": "/srv/k"}) == Path("/srv/k")


def _forge(*args: str, storage: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FORGE_SIGNING_KEY_DIR"}
    env["STORAGE_ROOT"] = str(storage)
    return subprocess.run([sys.executable, "-m", "forge", *args], capture_output=True,
                          text=True, timeout=60, env=env)


def test_keys_cli_generate_rotate_list_export(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    assert _forge("keys", "list", storage=storage).returncode == 1
    gen = _forge("keys", "generate", storage=storage)
    assert gen.returncode == 0, gen.stderr
    first = gen.stdout.split()[3]
    assert _forge("keys", "generate", storage=storage).returncode == 1
    rot = _forge("keys", "rotate", storage=storage)
    assert rot.returncode == 0
    listing = _forge("keys", "list", storage=storage).stdout
    assert first in listing and "verify only" in listing and "current" in listing
    pems = _forge("keys", "export-public", storage=storage).stdout
    assert pems.count("BEGIN PUBLIC KEY") == 2
    out = tmp_path / "exported"
    assert _forge("keys", "export-public", "--out", str(out), storage=storage).returncode == 0
    assert len(list(out.glob("*.pem"))) == 2
    assert SigningKeyring(storage / "keys" / "signing").current().key_id != first


def test_an_unusable_key_is_none_with_a_warning_and_never_an_exception(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """current_or_none serves audit records that may go unsigned (retention, reprocessing):
    no key yet is quiet, a key that cannot be loaded is a WARNING, and a key directory this
    process may not read (keys made with sudo) is None too, not an error that would end
    the scoreboard's retention loop."""
    ring = SigningKeyring(tmp_path / "keys")
    assert ring.current_or_none() is None and not caplog.records
    key = ring.generate()
    os.chmod(ring.directory / f"{key.key_id}.key", 0o644)
    assert ring.current_or_none() is None
    assert any("readable by others" in r.getMessage() for r in caplog.records)
    real_exists = Path.exists

    def barred(self: Path, *args: object, **kwargs: object) -> bool:
        if self.parent == ring.directory:
            raise PermissionError(13, "Permission denied")
        return real_exists(self)

    monkeypatch.setattr(Path, "exists", barred)
    assert ring.current_or_none() is None


def test_a_keys_dir_that_is_a_file_is_named_by_every_key_command(tmp_path: Path) -> None:
    # It said "refusing storage root … choose another --storage/STORAGE_ROOT" (generate)
    # or "no signing keys in … (run `forge keys generate`)" (list): neither is the fix.
    planted = tmp_path / "not-a-folder"
    planted.write_text("x\n")
    for command in (("keys", "generate"), ("keys", "list"), ("keys", "rotate")):
        done = _forge(*command, "--keys-dir", str(planted), storage=tmp_path / "storage")
        assert done.returncode == 2, done.stderr
        assert f"FORGE_SIGNING_KEY_DIR / --keys-dir {planted} is not a folder" in done.stderr
    assert planted.read_text() == "x\n"
