"""Lab hosts on an image run on its tree: its /etc and packages, not the machine's.

One scenario on real bubblewrap and namespaces through the configured engine
(`make_runtime`): two labs with a host on the shipped ``base`` image, one of them also
with a host on the machine's userland as before.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from forge.cli.image import app as image_app
from forge.content import content_path
from forge.images import ImageCache
from forge.runtime import HostSpec, LabSpec, Runtime, SubnetSpec
from forge.runtime.base import SpecError
from forge.runtime.local import LocalRuntime
from tests.runtime.helpers import leftovers, tty_read_until, tty_send

from ..support.configured_runtime import configured_runtime, runtime_of, runtime_settings
from ..support.prefixes import runtime_prefix

pytestmark = pytest.mark.root


@pytest.fixture()
def labs(tmp_path: Path, base_rootfs: Path) -> Iterator[tuple[Runtime, str, str]]:
    prefix = runtime_prefix("i")
    state = str(tmp_path / "runtime")
    try:
        with runtime_of(runtime_settings(tmp_path, prefix)) as rt:
            yield rt, prefix, state
        assert leftovers(prefix, state) == []
        with open("/proc/self/mountinfo", encoding="utf-8") as fh:
            assert state not in fh.read()  # the root overlays went with the labs' disks
    finally:
        shutil.rmtree(tmp_path / "runtime", ignore_errors=True)


def sh(rt: Runtime, lab: str, host: str, script: str) -> tuple[int, str, str]:
    res = rt.exec(lab, host, shell=script, timeout=30)
    return res.exit_code, res.stdout_text, res.stderr_text


def test_a_host_on_an_image_sees_the_image_not_the_machine(
    labs: tuple[Runtime, str, str], base_rootfs: Path, etc_marker: Path,
) -> None:
    rt, _, _ = labs
    rt.create(LabSpec("img-a", [SubnetSpec("a", "10.73.0.0/24")], [
        HostSpec("box", networks=[("a", None)], image="base"),
        HostSpec("old", networks=[("a", None)], image="host"),
        HostSpec("plain", networks=[("a", None)]),
    ]))
    rt.create(LabSpec("img-b", [SubnetSpec("a", "10.74.0.0/24")], [
        HostSpec("box", networks=[("a", None)], image="base"),
    ]))
    # /etc/os-release and the package set are the image's.
    code, out, _ = sh(rt, "img-a", "box", "cat /etc/os-release")
    assert code == 0 and out == (base_rootfs / "etc" / "os-release").read_text()
    image_pkgs = subprocess.run(
        ["dpkg-query", f"--admindir={base_rootfs}/var/lib/dpkg", "-W", "-f", "${Package}\n"],
        capture_output=True, text=True, check=True).stdout.split()
    code, out, err = sh(rt, "img-a", "box", "dpkg-query -W -f '${Package}\\n'")
    assert code == 0, err
    assert sorted(out.split()) == sorted(image_pkgs) and "netcat-openbsd" in image_pkgs
    # The machine's /etc is not there (a file made in it for this test is invisible).
    code, out, err = sh(rt, "img-a", "box", f"cat {etc_marker}; ls /etc")
    assert "machine secret" not in out and etc_marker.name not in out
    assert "No such file" in err
    # The shared tree is never written: the image's files are root's, the learner's not;
    # the host's scratch places are writable.
    code, _, err = sh(rt, "img-a", "box", "echo x > /usr/bin/forge-x")
    assert code != 0 and "Permission denied" in err
    assert not (base_rootfs / "usr" / "bin" / "forge-x").exists()
    code, out, _ = sh(rt, "img-a", "box", "echo t > /tmp/t && echo v > /var/tmp/v && "
                      "echo h > /home/h && cat /tmp/t /var/tmp/v /home/h")
    assert (code, out) == (0, "t\nv\nh\n")
    # The image's root is an overlay whose writable layer is the lab's disk (its limit).
    code, out, _ = sh(rt, "img-a", "box", "df -k --output=size / /var /tmp | tail -n +2")
    assert out.split() == [str(64 * 1024)] * 3
    # Both labs share the one cached tree: the same inode as the cache's file.
    ino = os.stat(base_rootfs / "usr" / "bin" / "bash").st_ino
    for lab in ("img-a", "img-b"):
        code, out, _ = sh(rt, lab, "box", "stat -c %i /usr/bin/bash")
        assert (code, out.strip()) == (0, str(ino))
    # Checks run on the image too; a host naming no image runs on the default image
    # (base), only ``image: host`` on the machine's userland.
    check = rt.run_check("img-a", "box", ["cat", "/etc/os-release"])
    assert check.stdout_text == (base_rootfs / "etc" / "os-release").read_text()
    code, out, _ = sh(rt, "img-a", "old", "cat /etc/os-release")
    assert out == Path("/etc/os-release").read_text()
    code, out, _ = sh(rt, "img-a", "plain", f"cat /etc/os-release {etc_marker}")
    assert out == (base_rootfs / "etc" / "os-release").read_text()
    # The learner's terminal opens on the image too (its bash, its tools).
    tty = rt.tty("img-a", "box")
    try:
        tty_send(tty, b"dpkg-query -W -f '${Version}-' netcat-openbsd; echo $((6*7))-$(id -un)\n")
        assert re.search(rb"\d[^\s]*-42-learner", tty_read_until(tty, rb"-42-learner"))
    finally:
        tty.close()


def test_an_image_not_built_or_not_defined_is_refused_before_anything_is_made(
    tmp_path: Path, base_rootfs: Path,
) -> None:
    defs = tmp_path / "defs"
    defs.mkdir()
    shutil.copy(content_path("images") / "base.yaml", defs / "base.yaml")
    (defs / "fresh.yaml").write_text("name: fresh\npackages: [bash, curl]\n")
    prefix, state = runtime_prefix("n"), str(tmp_path / "runtime")
    with configured_runtime(tmp_path, prefix, FORGE_IMAGE_DIR=str(defs)) as rt:
        for image, message in (
            ("fresh", "hosts[1].image: image fresh is not built: run forge image build fresh"),
            ("nope", "hosts[1].image: image nope is not defined"),
        ):
            spec = LabSpec("img-x", [SubnetSpec("a", "10.75.0.0/24")], [
                HostSpec("ok", networks=[("a", None)], image="base"),
                HostSpec("bad", networks=[("a", None)], image=image),
            ])
            with pytest.raises(SpecError) as err:
                rt.create(spec)
            assert str(err.value).startswith(message)
            assert leftovers(prefix, state) == []


def test_prune_leaves_an_image_a_running_lab_uses(tmp_path: Path, base_rootfs: Path) -> None:
    # An older image (a hard-linked copy of base under a key no definition names) that a
    # lab still runs on: pruning it would pull its files from under the lab.
    cache = ImageCache(tmp_path / "cache")
    old = "0" * 63 + "2"
    staging = cache.new_staging(old)
    subprocess.run(["cp", "-al", str(base_rootfs), str(staging / "rootfs")], check=True)
    entry = cache.install(old, staging, "base", 1.0)
    prefix, state = runtime_prefix("p"), str(tmp_path / "runtime")
    rt = LocalRuntime(state, prefix=prefix, images={"old": str(entry.rootfs)})
    prune = ["prune", "--all"]
    env = {"FORGE_IMAGE_CACHE": str(cache.root)}
    try:
        rt.create(LabSpec("img-old", [SubnetSpec("a", "10.78.0.0/24")],
                          [HostSpec("box", networks=[("a", None)], image="old")]))
        assert cache.in_use(old)
        kept = CliRunner().invoke(image_app, prune, env=env)
        assert kept.exit_code == 0 and f"kept base ({old[:12]})" in kept.stdout
        assert cache.get(old) is not None
        assert rt.exec("img-old", "box", ["true"]).exit_code == 0
    finally:
        rt.destroy("img-old")
        rt.close()
    assert not cache.in_use(old)
    removed = CliRunner().invoke(image_app, prune, env=env)
    assert f"removed base ({old[:12]}" in removed.stdout and cache.entries() == []
