"""Attack: a PATH that holds another user's folder first (a login shell's ``~/bin``) makes
root's `forge image build` run that user's program.

Before: the image key asked `mmdebstrap --version` and `dpkg --print-architecture`
through PATH (also in every service that looks an image up), and the build ran
`unshare … mmdebstrap …` through PATH, with that PATH handed on to mmdebstrap and its
apt, dpkg and chroot. After: each is taken from the machine's system folders
(``forge.machine_path``), as the runtime's own programs are. The build itself is not run:
the image is already built, and the build's command line is read, not executed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from forge.config.settings import load_settings
from forge.images import load_definitions, lookup
from forge.images.build import BUILD_ENV, mmdebstrap_argv
from forge.images.definitions import DEFAULT_IMAGE
from forge.machine_path import MACHINE_PATH

from ..cli.test_storage_option import forge
from ..support.images import ensure_default_image

pytestmark = pytest.mark.root
PLANTED = ("mmdebstrap", "unshare", "dpkg", "apt-cache", "chroot")


def test_image_build_runs_nothing_planted_earlier_on_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ensure_default_image()
    planted = tmp_path / "bin"
    planted.mkdir()
    for name in PLANTED:  # says a version when asked, fails any build
        (planted / name).write_text(
            f"#!/bin/sh\ntouch {tmp_path}/ran-{name}\n"
            f'case "$1" in --version|--print-architecture) echo "{name} 9.9.9"; exit 0;; '
            "esac\nexit 1\n")
        (planted / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{planted}:{os.environ['PATH']}")
    lookup.tool_identity.cache_clear()
    try:
        code, out, err = forge({}, "image", "build", DEFAULT_IMAGE)
    finally:
        lookup.tool_identity.cache_clear()
    assert sorted(p.name for p in tmp_path.glob("ran-*")) == []
    assert code == 0 and f"{DEFAULT_IMAGE}: already built" in out, err
    # What a build would run, and the PATH it would hand on.
    definition = load_definitions(load_settings().images_dir)[DEFAULT_IMAGE]
    argv = mmdebstrap_argv(definition, tmp_path / "rootfs", [], [])
    programs = [argv[0], argv[argv.index("--") + 1]]
    assert [Path(p).name for p in programs] == ["unshare", "mmdebstrap"]
    assert all(os.path.dirname(p) in MACHINE_PATH.split(":") for p in programs), programs
    assert BUILD_ENV["PATH"] == MACHINE_PATH
