"""`forge up` builds the images the templates need before it starts anything.

First use builds (a line per image and its time), later starts find them cached ("images:
N cached"); an image that cannot be built stops `forge up` with the reason and exit 1,
with nothing started: every lab on it would fail at spawn.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from forge.cli.up import build_needed_images
from forge.config.settings import load_settings
from forge.content import content_path
from forge.images import ImageCache, load_definition_file
from forge.images.build import build_image

from .test_up import Up, bound, some_ports

pytestmark = pytest.mark.usefixtures("sqlite_only_store")  # services on their default SQLite store


def lab_dirs(tmp_path: Path, image: str) -> tuple[Path, Path]:
    """A templates directory whose netplus puts its learner on ``image``, and a
    definitions directory with the shipped base and a ``broken`` image (no such package)."""
    templates, defs = tmp_path / "templates", tmp_path / "defs"
    templates.mkdir()
    defs.mkdir()
    text = (content_path("templates") / "netplus.yaml").read_text()
    (templates / "netplus.yaml").write_text(text.replace(
        "      - name: learner\n", f"      - name: learner\n        image: {image}\n", 1))
    (defs / "base.yaml").write_text((content_path("images") / "base.yaml").read_text())
    (defs / "broken.yaml").write_text("name: broken\npackages: [bash, forge-no-such-pkg]\n")
    return templates, defs


def test_an_image_that_cannot_be_built_stops_up_before_anything_starts(tmp_path: Path) -> None:
    templates, defs = lab_dirs(tmp_path, "broken")
    env_file = tmp_path / "forge.env"
    env_file.write_text(f"FORGE_TEMPLATE_DIR={templates}\nFORGE_IMAGE_DIR={defs}\n"
                        # the machine's cache: the lab's other hosts are on base, built
                        # once per machine (`make test` builds it first)
                        f"FORGE_IMAGE_CACHE={load_settings().image_cache}\n"
                        f"FORGE_RUNTIME_PREFIX=b{secrets.token_hex(2)}\n")
    ports = some_ports()
    up = Up(tmp_path / "storage", env_file, ports)
    up.proc.wait(timeout=120)
    up.stop()
    assert up.proc.returncode == 1, up.err[-2000:]
    assert "image broken: not built yet, building (first use)…" in up.err
    # (the reason names the package; with the machine's apt lists it also says "of this
    # machine's apt sources", without them mmdebstrap's own answer is mapped to the same)
    assert "forge up: image broken failed to build: no such package in the suite bookworm" \
        in up.err
    assert "forge-no-such-pkg; nothing was started" in up.err
    assert "Forge is up" not in up.err
    assert up.service_pids() == [] and up.nats_pids() == []
    assert not any(bound(p) for p in ports.values())
    assert "broken" not in [e.name for e in ImageCache(load_settings().image_cache).entries()]
    # Refused while it held the root, it still removes the root it made (dev secrets, a
    # signing key, a database): they stayed behind, the removal skipped as "held".
    assert not (tmp_path / "storage").exists(), up.err[-3000:]
    assert f"removed the storage root it had created: {tmp_path / 'storage'}" in up.err


def test_images_already_built_are_reported_as_cached(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    templates, defs = lab_dirs(tmp_path, "base")
    cache = load_settings().image_cache  # the machine's: base is built once per machine
    build_image(load_definition_file(defs / "base.yaml"), ImageCache(cache))
    settings = load_settings({"FORGE_ENV": "dev", "STORAGE_ROOT": str(tmp_path / "s"),
                              "FORGE_TEMPLATE_DIR": str(templates),
                              "FORGE_IMAGE_DIR": str(defs), "FORGE_IMAGE_CACHE": str(cache)})
    build_needed_images(settings)
    err = capsys.readouterr().err
    assert err.strip() == "images: 1 cached"
