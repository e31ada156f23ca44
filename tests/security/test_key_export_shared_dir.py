"""Attack: have one's own key trusted by a verifier, through `forge keys export-public --out`.

A verifier given `--trusted-key <folder>` trusts every key in it. So a local user who can
add a file to the export folder (it is theirs, or writable by others: /tmp, mode 0777), or
swap the folder for theirs (a folder above it is theirs or writable by all without the
sticky bit), gets their own key trusted and can sign verdicts nobody earned. The export
refuses such a folder, names it, and writes nothing there. In a folder it accepts, a name
planted before the check (`<kid>.pem.tmp`) neither blocks the export nor receives it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from forge.cli import _register, app
from forge.signing.keystore import SigningKeyError, SigningKeyring

pytestmark = pytest.mark.root  # files and folders owned by another user


@pytest.fixture
def ring(tmp_path: Path) -> SigningKeyring:
    keyring = SigningKeyring(tmp_path / "keys")
    keyring.generate()
    return keyring


def test_a_folder_others_can_add_keys_to_gets_none(ring: SigningKeyring, tmp_path: Path
                                                  ) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp
    with pytest.raises(SigningKeyError, match=r"--out: other users can write to .* \(mode 1777\)"):
        ring.export_public(shared)
    open_to_all = tmp_path / "mine-0777"
    open_to_all.mkdir()
    open_to_all.chmod(0o777)
    with pytest.raises(SigningKeyError, match="other users can write"):
        ring.export_public(open_to_all)
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, 65534, 65534)
    with pytest.raises(SigningKeyError, match=r"belongs to another user \(uid 65534\)"):
        ring.export_public(theirs)
    for folder in (shared, open_to_all, theirs):
        assert list(folder.iterdir()) == []


def test_a_folder_another_user_could_swap_gets_none(ring: SigningKeyring, tmp_path: Path
                                                   ) -> None:
    """Above the folder: one writable by all without the sticky bit, or another user's."""
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o777)
    with pytest.raises(SigningKeyError, match=r"loose, above .* swap the folder"):
        ring.export_public(loose / "keys")
    assert not (loose / "keys").exists()  # refused before anything is made
    lent = tmp_path / "lent"
    lent.mkdir(mode=0o755)
    os.chown(lent, 65534, 65534)
    (lent / "keys").mkdir(mode=0o755)
    with pytest.raises(SigningKeyError, match="swap the folder"):
        ring.export_public(lent / "keys")
    # A link to a refused folder is refused too (the folder is judged, not the link).
    (tmp_path / "link").symlink_to(loose)
    with pytest.raises(SigningKeyError):
        ring.export_public(tmp_path / "link")


def test_a_private_folder_under_a_sticky_one_takes_the_export_and_planted_names_are_left(
        ring: SigningKeyring, tmp_path: Path) -> None:
    sticky = tmp_path / "tmp"
    sticky.mkdir()
    sticky.chmod(0o1777)  # /tmp: others cannot rename or remove what is not theirs
    out = sticky / "trusted-keys"
    os.umask(old := os.umask(0o002))  # a group-writable umask: the folder is made 0755
    try:
        ring.export_public(out)
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o755
    kid = next(iter(ring.public_keys()))
    assert (out / f"{kid}.pem").read_bytes() == ring.export_public()
    assert (out / f"{kid}.pem").stat().st_mode & 0o777 == 0o644

    # A link, then another user's file, at the fixed temporary name: neither blocks the
    # export nor is written through.
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    (out / f"{kid}.pem.tmp").symlink_to(victim)
    ring.export_public(out)
    assert victim.read_text() == "keep me"
    (out / f"{kid}.pem.tmp").unlink()
    planted = out / f"{kid}.pem.tmp"
    planted.write_text("theirs")
    os.chown(planted, 65534, 65534)
    ring.export_public(out)
    assert planted.read_text() == "theirs"
    assert (out / f"{kid}.pem").read_bytes() == ring.export_public()
    assert sorted(p.name for p in out.iterdir()) == [f"{kid}.pem", f"{kid}.pem.tmp"]


def test_the_command_names_the_refused_folder_and_exits_1(ring: SigningKeyring,
                                                          tmp_path: Path) -> None:
    """`forge keys export-public --out /tmp`-like: exit 1, the reason on stderr, no key."""
    _register()
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    ran = CliRunner().invoke(app, ["keys", "export-public", "--keys-dir", str(ring.directory),
                                   "--out", str(shared)])
    assert ran.exit_code == 1
    assert f"error: --out: other users can write to {shared}" in ran.output
    assert list(shared.iterdir()) == []
