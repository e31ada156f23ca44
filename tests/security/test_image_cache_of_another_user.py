"""Attack: as another local user, make the folder FORGE_IMAGE_CACHE names (say
/tmp/forge-images) before Forge does, and put an image of your own in it under the key
Forge computes for `base` (the definition and the key's recipe are public).

Before: the cache was used whoever owned it: every lab host ran on that user's root
filesystem (its programs, its /etc), which the grader's checks see too, so that user chose
what every lab holds and what its checks find; `forge image build` even built into it,
where its owner could swap the result. The storage root was already refused in that case;
the image cache was not. Now a cache root another user owns or may write, or a link, is
refused before anything of it is used: the lab fails naming the path, `forge image list`
exits 1 with one line, and nothing is built into it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from forge.images.cache import UnsafeImageCache
from forge.images.lookup import image_key, load_named, resolve_image

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "src" / "forge" / "content" / "images"
NOBODY = 65534


def _planted(tmp_path: Path) -> Path:
    """A cache of uid NOBODY's holding its own 'built' base image."""
    definition = load_named("base", IMAGES)
    assert definition is not None
    cache = tmp_path / "forge-images"
    entry = cache / image_key(definition)
    (entry / "rootfs" / "bin").mkdir(parents=True)
    (entry / "image.json").write_text(json.dumps({"name": "base", "size_bytes": 1,
                                                  "built_at": 0.0}))
    for path in (cache, *cache.rglob("*")):
        os.chown(path, NOBODY, NOBODY)
    return cache


@pytest.mark.root
def test_a_cache_another_user_made_gives_no_lab_its_image(tmp_path: Path) -> None:
    cache = _planted(tmp_path)
    with pytest.raises(UnsafeImageCache) as refused:
        resolve_image("base", IMAGES, cache)
    assert refused.value.status == 503
    assert refused.value.message.startswith(
        f"refusing image cache {cache}: it is owned by uid {NOBODY} (mode 755), not by uid "
        f"{os.geteuid()}: that user could have planted or changed the image of every lab")


@pytest.mark.root
def test_image_list_refuses_a_cache_another_user_made(tmp_path: Path) -> None:
    cache = _planted(tmp_path)
    env = {**os.environ, "FORGE_IMAGE_CACHE": str(cache), "STORAGE_ROOT": str(tmp_path / "s")}
    result = subprocess.run([sys.executable, "-m", "forge", "image", "list"], env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1, result.stdout + result.stderr[-2000:]
    assert result.stderr.splitlines()[-1].startswith(f"error: refusing image cache {cache}: ")
    assert "Traceback" not in result.stderr


def test_a_cache_of_this_user_that_others_may_write_is_refused(tmp_path: Path) -> None:
    cache = tmp_path / "forge-images"
    cache.mkdir()
    os.chmod(cache, 0o777)  # noqa: S103 - the situation under test
    with pytest.raises(UnsafeImageCache, match="other users may write it"):
        resolve_image("base", IMAGES, cache)
    os.chmod(cache, 0o700)
    with pytest.raises(Exception, match="image base is not built"):
        resolve_image("base", IMAGES, cache)  # an own, private, empty cache: as before
