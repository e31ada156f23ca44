"""Attack: as another local user, own (or be able to write) a folder above the image cache
FORGE_IMAGE_CACHE names (say /srv/shared/forge-images, /srv/shared being yours). Let root
make the cache there (owner-only, as it should be), then rename it away and put a link to a
tree of yours in its place: `mv forge-images old && ln -s ~/mine forge-images`.

Before: only the cache folder itself was judged, so a cache below such a folder passed the
check, and between the check and the overlay mount (or a build into staging) the path led
into the other user's tree: every lab host, and the grader's checks, ran on that user's
root filesystem. The storage root already refused folders above it that another user could
change; the image cache did not. Now the same rule refuses the cache, naming the folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from forge.images.cache import ImageCache, UnsafeImageCache
from forge.images.lookup import resolve_image

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "src" / "forge" / "content" / "images"
NOBODY = 65534


@pytest.mark.root
def test_a_cache_below_another_users_folder_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "shared"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, NOBODY, NOBODY)
    cache = theirs / "forge-images"
    with pytest.raises(UnsafeImageCache) as refused:
        ImageCache(cache).ensure()
    assert refused.value.status == 503
    assert refused.value.message.startswith(
        f"refusing image cache {cache}: {theirs} (a folder above it, owner uid {NOBODY}, "
        "mode 755) lets another user put a folder or link of theirs in the cache's place")
    assert not cache.exists()  # nothing made where its owner could swap it
    os.mkdir(cache, 0o700)  # made by root before the folder above changed hands
    with pytest.raises(UnsafeImageCache, match="a folder above it"):
        resolve_image("base", IMAGES, cache)


@pytest.mark.root
def test_image_list_refuses_a_cache_below_another_users_folder(tmp_path: Path) -> None:
    theirs = tmp_path / "shared"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, NOBODY, NOBODY)
    cache = theirs / "forge-images"
    env = {**os.environ, "FORGE_IMAGE_CACHE": str(cache), "STORAGE_ROOT": str(tmp_path / "s")}
    result = subprocess.run([sys.executable, "-m", "forge", "image", "list"], env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1, result.stdout + result.stderr[-2000:]
    last = result.stderr.splitlines()[-1]
    assert last.startswith(f"error: refusing image cache {cache}: {theirs} (a folder above it")
    assert "Traceback" not in result.stderr


def test_a_cache_below_a_folder_all_may_write_is_refused(tmp_path: Path) -> None:
    open_to_all = tmp_path / "open"
    open_to_all.mkdir()
    os.chmod(open_to_all, 0o777)  # noqa: S103 - the situation under test
    cache = open_to_all / "forge-images"
    with pytest.raises(UnsafeImageCache, match=r"\(a folder above it, owner uid \d+, mode 777\)"):
        resolve_image("base", IMAGES, cache)
    os.chmod(open_to_all, 0o1777)  # noqa: S103 - sticky, as /tmp: no one renames it away
    with pytest.raises(Exception, match="image base is not built"):
        resolve_image("base", IMAGES, cache)
