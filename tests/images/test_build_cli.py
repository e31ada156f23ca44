"""`forge image build --all` builds every definition of FORGE_IMAGE_DIR and says how long."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from forge.cli.image import app as image_app
from forge.content import content_path


def test_build_all_builds_every_definition_and_sums_up(tmp_path: Path, base_rootfs: Path,
                                                       image_cache_root: Path) -> None:
    defs = tmp_path / "defs"
    defs.mkdir()
    (defs / "base.yaml").write_text((content_path("images") / "base.yaml").read_text())
    env = {"FORGE_IMAGE_DIR": str(defs), "FORGE_IMAGE_CACHE": str(image_cache_root)}
    done = CliRunner().invoke(image_app, ["build", "--all", "-q"], env=env)
    assert done.exit_code == 0, done.output
    assert "base: already built" in done.stdout
    assert done.stdout.splitlines()[-1] == "images: 1 cached"
    # A definition that cannot be built fails the run with its reason, after base.
    (defs / "broken.yaml").write_text("name: broken\npackages: [bash, forge-no-such-pkg]\n")
    failed = CliRunner().invoke(image_app, ["build", "--all", "-q"], env=env)
    assert failed.exit_code == 1
    assert "image broken failed to build: no such package" in failed.stderr
