"""Attack: an image definition's packages or build script (root inside the image) plant
symlinks so that the builder, writing the definition's ``files:`` and the platform's own
files (``/etc/hostname``, ``/etc/resolv.conf``, the mount points) from the building
machine, writes *onto the machine* through them.

Before: ``_finalize`` wrote ``<rootfs>/opt/forge``, ``<rootfs>/etc/hostname``… with plain
path operations, so a script ending in ``ln -s /some/machine/dir /opt`` had the builder
create ``/some/machine/dir/forge`` as root (and ``/etc -> /x`` overwrote ``/x/hostname``,
``/x/resolv.conf``); and mmdebstrap's own cleanup, run from the machine after the
script, empties ``<rootfs>/tmp`` and ``<rootfs>/run`` with ``rm -r``, so a script leaving
``/tmp -> /var/tmp`` had the machine's own ``/var/tmp`` emptied, and one emptying /tmp
removed mmdebstrap's apt configuration there, so its cleanup ran ``apt-get update`` with
no sources on the machine's own apt lists (they were emptied). After: every parent is resolved inside the image (chroot semantics),
so the writes land in the image and the machine's directory stays empty; and a last
build hook refuses (exit 3, the build fails) a tree whose /tmp, /run, /etc… is a symlink,
before mmdebstrap's cleanup could follow it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from forge.images import ImageCache, load_definition_file
from forge.images.build import _finalize, _stage_inputs, build_image
from forge.images.cache import remove_tree
from forge.images.tree import TreeEscape, main, write_in_tree, write_manifest

pytestmark = pytest.mark.root  # the builder writes root-owned files, as in a real build


@pytest.fixture()
def machine_dir(tmp_path: Path) -> Path:
    """A directory of the building machine that no image build may write into."""
    path = tmp_path / "machine"
    path.mkdir()
    return path


def _tree(tmp_path: Path) -> Path:
    rootfs = tmp_path / "rootfs"
    for sub in ("etc", "usr/bin", "var", "tmp"):
        (rootfs / sub).mkdir(parents=True)
    return rootfs


def _evil_defs(tmp_path: Path, machine_dir: Path) -> Path:
    """A definition whose script plants links to ``machine_dir`` on paths the builder
    writes after it (and a ``files:`` entry written before it)."""
    defs = tmp_path / "defs"
    defs.mkdir(exist_ok=True)
    (defs / "evil.yaml").write_text(
        "name: evil\n"
        "packages: [bash]\n"
        "files:\n"
        "  /etc/forge-evil/inner/x.conf: {content: \"hello\\n\", mode: 0640}\n"
        "script: |\n"
        f"  ln -s {machine_dir} /etc/evil\n"
        f"  rm -rf /opt && ln -s {machine_dir} /opt\n"
        f"  rm -f /etc/hostname && ln -s {machine_dir}/hostname /etc/hostname\n")
    return defs


def test_finalize_never_follows_a_planted_parent_out_of_the_image(
    tmp_path: Path, machine_dir: Path,
) -> None:
    rootfs = _tree(tmp_path)
    # What a build script left: /opt and /etc point at the machine (absolute), /home
    # climbs out with a relative link, /run is a link loop.
    os.symlink(machine_dir, rootfs / "opt")
    os.rename(rootfs / "etc", rootfs / "etc.real")
    os.symlink(machine_dir, rootfs / "etc")
    os.symlink("../../../../../../../.." + str(machine_dir), rootfs / "home")
    _finalize(rootfs)
    assert list(machine_dir.iterdir()) == []
    # The writes went where the image itself sees those paths.
    inside = rootfs / str(machine_dir).lstrip("/")
    assert (inside / "hostname").read_text() == "forge-lab\n"
    assert (inside / "resolv.conf").read_text() == ""
    assert (inside / "forge").is_dir() and not (inside / "forge").is_symlink()
    assert (rootfs / "workspace").is_dir()


def test_definition_files_under_a_planted_symlink_stay_in_the_image(
    tmp_path: Path, machine_dir: Path,
) -> None:
    rootfs = _tree(tmp_path)
    os.symlink(machine_dir, rootfs / "etc" / "evil")  # as a package could ship it
    (machine_dir / "victim").write_text("machine file\n")
    os.symlink(machine_dir / "victim", rootfs / "etc" / "last")  # the file itself a link
    manifest = tmp_path / "files.json"
    manifest.write_text('[{"path": "/etc/evil/sub/x.conf", "content": "hi\\n", "mode": 416},'
                        ' {"path": "/etc/last", "content": "replaced\\n", "mode": 420}]')
    write_manifest(rootfs, manifest)
    assert sorted(p.name for p in machine_dir.iterdir()) == ["victim"]
    assert (machine_dir / "victim").read_text() == "machine file\n"
    landed = rootfs / str(machine_dir).lstrip("/") / "sub" / "x.conf"
    assert landed.read_text() == "hi\n" and landed.stat().st_mode & 0o777 == 0o640
    last = rootfs / "etc" / "last"
    assert not last.is_symlink() and last.read_text() == "replaced\n"
    # A loop or a file where a directory must be is an error, not a write elsewhere.
    os.symlink("loop", rootfs / "etc" / "loop")
    with pytest.raises(TreeEscape):
        write_in_tree(rootfs, "/etc/loop/x", b"", 0o644)
    with pytest.raises(TreeEscape, match="is not a directory"):
        write_in_tree(rootfs, "/etc/last/x", b"", 0o644)


def test_a_tree_whose_cleaned_paths_are_links_fails_the_build_before_cleanup(
    tmp_path: Path, machine_dir: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MMDEBSTRAP_APT_CONFIG", raising=False)
    rootfs = _tree(tmp_path)
    for sub in ("etc/apt/apt.conf.d", "run", "usr/bin", "var/lib/apt/lists"):
        (rootfs / sub).mkdir(parents=True, exist_ok=True)
    assert main(["--guard", str(rootfs)]) == 0
    (machine_dir / "keep").write_text("machine file\n")
    os.rename(rootfs / "tmp", rootfs / "tmp.real")
    os.symlink(machine_dir, rootfs / "tmp")  # mmdebstrap would rm -r machine/keep
    assert main(["--guard", str(rootfs)]) == 3
    assert f"refused: /tmp is a symlink (to {machine_dir})" in capsys.readouterr().err
    # A script that emptied /tmp removed mmdebstrap's apt configuration there: its cleanup
    # would run apt-get update against the machine's own lists (seen: they were emptied).
    os.unlink(rootfs / "tmp")
    os.rename(rootfs / "tmp.real", rootfs / "tmp")
    monkeypatch.setenv("MMDEBSTRAP_APT_CONFIG", str(rootfs / "tmp" / "mmdebstrap.apt.conf.x"))
    assert main(["--guard", str(rootfs)]) == 3
    assert "apt configuration" in capsys.readouterr().err
    (rootfs / "tmp" / "mmdebstrap.apt.conf.x").write_text("Dir \"/\";\n")
    assert main(["--guard", str(rootfs)]) == 0
    # It is the last customize hook, after the definition's script.
    definition = load_definition_file(_evil_defs(tmp_path, machine_dir) / "evil.yaml")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    hooks = _stage_inputs(definition, scratch)
    assert "/bin/sh -eu /tmp/" in hooks[-2] and hooks[-1].endswith('tree --guard "$1"')


def test_a_real_build_whose_script_plants_symlinks_writes_nothing_outside(
    tmp_path: Path, machine_dir: Path, request: pytest.FixtureRequest,
) -> None:
    defs = _evil_defs(tmp_path, machine_dir)
    cache = ImageCache(tmp_path / "c")
    result = build_image(load_definition_file(defs / "evil.yaml"), cache)
    request.addfinalizer(lambda: remove_tree(cache.root))
    assert result.built
    assert list(machine_dir.iterdir()) == []
    rootfs = result.entry.rootfs
    assert (rootfs / "etc/forge-evil/inner/x.conf").read_text() == "hello\n"
    assert (rootfs / "etc/forge-evil/inner/x.conf").stat().st_mode & 0o777 == 0o640
    hostname = rootfs / "etc" / "hostname"
    assert not hostname.is_symlink() and hostname.read_text() == "forge-lab\n"
    assert (rootfs / str(machine_dir).lstrip("/") / "forge").is_dir()
