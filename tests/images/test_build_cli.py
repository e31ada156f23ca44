"""`forge image build --all` builds every definition of FORGE_IMAGE_DIR and says how long;
`forge image list` shows each image's size on disk and the cache's total."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from forge.cli.image import app as image_app
from forge.content import content_path
from forge.images import ImageCache, image_key, load_definition_file
from tests.images.test_build import fake_entry


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


def test_list_shows_each_size_and_the_cache_total(tmp_path: Path) -> None:
    """An author's FORGE_IMAGE_DIR replaces the shipped folder; the cache is machine-wide,
    and list counted the shipped images' builds (here ssh) as removable, and prune removed
    them: every installation on the machine then failed "image ssh is not built"."""
    defs = tmp_path / "defs"
    defs.mkdir()
    (defs / "base.yaml").write_text((content_path("images") / "base.yaml").read_text())
    cache = ImageCache(tmp_path / "cache")
    current = image_key(load_definition_file(defs / "base.yaml"))
    fake_entry(cache, current)
    stale = "0" * 63 + "3"
    fake_entry(cache, stale)  # an older edit's entry, named by no definition
    shipped = image_key(load_definition_file(content_path("images") / "ssh.yaml"))
    fake_entry(cache, shipped, "ssh")  # named by the shipped ssh.yaml only
    sizes = {e.key: e.size_bytes for e in cache.entries()}
    env = {"FORGE_IMAGE_DIR": str(defs), "FORGE_IMAGE_CACHE": str(cache.root)}
    listed = CliRunner().invoke(image_app, ["list"], env=env)
    assert listed.exit_code == 0, listed.output
    row = next(line for line in listed.stdout.splitlines() if line.startswith("base "))
    assert f"{sizes[current] / (1 << 20):.1f} MiB" in row
    total = f"{sum(sizes.values()) / (1 << 20):.1f} MiB"
    assert listed.stdout.splitlines()[-1] == (
        f"cache: {cache.root}: 3 image(s), {total} on disk (1 of them, "
        f"{sizes[stale] / (1 << 20):.1f} MiB, named by no current definition: forge image "
        "prune removes them) (1 named only by the shipped definitions, other installations' "
        "images: forge image prune keeps them)")
    pruned = CliRunner().invoke(image_app, ["prune"], env=env)
    assert pruned.exit_code == 0, pruned.output
    assert f"kept ssh ({shipped[:12]}): a shipped image definition names it, and other " \
        "installations of this machine run on it (--all removes it)" in pruned.stdout
    assert f"removed base ({stale[:12]}" in pruned.stdout
    assert sorted(e.key for e in cache.entries()) == sorted([current, shipped])
