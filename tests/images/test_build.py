"""`forge image build|list|prune` against real mmdebstrap and the Debian mirror.

The shipped ``base`` image comes from the machine-wide cache (built once); pruning, a
failing build, an interrupted one and a build waiting on another process's lock use a
cache of their own, so they never disturb it.
"""

from __future__ import annotations

import functools
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from forge.cli.image import app as image_app
from forge.content import content_path
from forge.images import ImageCache, image_key, load_definitions
from forge.images.build import ImageBuildError, build_image
from forge.images.cache import ROOTFS, STAGING

pytestmark = pytest.mark.root


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def forge(*args: str, cache: Path, defs: Path | None = None) -> Ran:
    """``forge image ARGS`` in this process (the CLI as an operator runs it)."""
    env = {"FORGE_IMAGE_CACHE": str(cache),
           "FORGE_IMAGE_DIR": str(defs or content_path("images"))}
    result = CliRunner().invoke(image_app, list(args), env=env)
    return Ran(result.exit_code, result.stdout, result.stderr)


def cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.NoSuchProcess:
        return []


def base_key() -> str:
    return image_key(load_definitions(content_path("images"))["base"])


def test_build_and_list_on_the_machine_cache(base_rootfs: Path,
                                            image_cache_root: Path) -> None:
    built = forge("build", "base", cache=image_cache_root)
    assert built.returncode == 0, built.stderr
    assert "base: already built" in built.stdout and base_key()[:12] in built.stdout
    assert (base_rootfs / "etc" / "os-release").is_file()
    assert oct(os.stat(image_cache_root).st_mode & 0o777) == "0o700"
    assert not os.stat(base_rootfs.parent).st_mode & 0o222  # the entry is read-only
    listed = forge("list", cache=image_cache_root)
    row = next(line for line in listed.stdout.splitlines() if line.startswith("base "))
    assert base_key()[:12] in row and " yes " in row and "MiB" in row


def fake_entry(cache: ImageCache, key: str, name: str = "base") -> None:
    """A built-looking entry of ``key`` (a tiny tree), as a finished build leaves one."""
    staging = cache.new_staging(key)
    (staging / ROOTFS / "etc").mkdir(parents=True)
    cache.install(key, staging, name, 1.0)


def test_prune_removes_what_no_definition_names(tmp_path: Path) -> None:
    # An entry of an older edit of base goes; the entry of the current definition stays.
    # (A cache of its own: other checkouts' images in the machine cache are not ours.)
    cache = ImageCache(tmp_path / "cache")
    stale = "0" * 63 + "1"
    fake_entry(cache, base_key())
    fake_entry(cache, stale)
    (cache.root / STAGING / f"{stale}-dead").mkdir()  # a build that died
    pruned = forge("prune", cache=cache.root)
    assert pruned.returncode == 0, pruned.stderr
    assert f"removed base ({stale[:12]}" in pruned.stdout
    assert "1 build leftover(s)" in pruned.stdout
    assert [e.key for e in cache.entries()] == [base_key()]
    assert list((cache.root / STAGING).iterdir()) == []


def test_prune_all_empties_a_cache(tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "cache")
    fake_entry(cache, base_key())
    assert forge("prune", "--all", cache=cache.root).returncode == 0
    shipped = len(load_definitions(content_path("images")))
    listed = forge("list", cache=cache.root).stdout
    assert cache.entries() == [] and listed.count(" no ") == shipped


def test_a_failed_build_says_why_and_leaves_nothing(tmp_path: Path) -> None:
    defs = tmp_path / "defs"
    defs.mkdir()
    (defs / "broken.yaml").write_text("name: broken\npackages: [bash, forge-no-such-package]\n")
    cache = tmp_path / "cache"
    out = forge("build", "broken", "-q", cache=cache, defs=defs)
    assert out.returncode == 1
    assert "image broken failed to build: no such package" in out.stderr
    assert "forge-no-such-package" in out.stderr and "bash," not in out.stderr
    assert ImageCache(cache).entries() == []
    # A mirror without the suite (a loopback server with nothing in it): mmdebstrap
    # itself fails, and its reason is the message.
    empty = tmp_path / "mirror"
    empty.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(empty))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list").write_text(
        f"deb http://127.0.0.1:{server.server_address[1]}/debian bookworm main\n")
    base = load_definitions(content_path("images"))["base"]
    try:
        with pytest.raises(ImageBuildError) as err:
            build_image(base, ImageCache(cache), apt_dir=apt)
    finally:
        server.shutdown()
        server.server_close()
    assert "E:" in err.value.message and "127.0.0.1" in err.value.message
    assert ImageCache(cache).entries() == [] and list((cache / STAGING).iterdir()) == []


def test_an_interrupted_build_never_counts_as_built(tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "cache")
    env = {**os.environ, "FORGE_IMAGE_CACHE": str(cache.root)}
    proc = subprocess.Popen([sys.executable, "-m", "forge", "image", "build", "base", "-q"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    # Wait until mmdebstrap is filling the staging tree, then kill -9 the build command:
    # every process of the build dies with it (nothing keeps writing into staging).
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        trees = list((cache.root / STAGING).glob(f"*/{ROOTFS}/var"))
        if trees:
            break
        time.sleep(0.2)
    assert trees, "the build never started"
    family = psutil.Process(proc.pid).children(recursive=True)
    assert any("mmdebstrap" in " ".join(cmdline(p)) for p in family)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    _, alive = psutil.wait_procs(family, timeout=30)
    assert alive == []
    assert cache.get(base_key()) is None and cache.entries() == []
    assert " no " in forge("list", cache=cache.root).stdout.splitlines()[1]
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        assert str(cache.root) not in fh.read()  # its chroot mounts died with it
    pruned = forge("prune", cache=cache.root)
    assert "1 build leftover(s)" in pruned.stdout
    assert list((cache.root / STAGING).iterdir()) == []


def test_a_second_build_waits_for_the_first_and_reuses_it(tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "cache")
    key = base_key()
    result: list[subprocess.CompletedProcess[str]] = []
    with cache.lock(key):
        # Another process is building base: ours must wait for it, not build a second.
        env = {**os.environ, "FORGE_IMAGE_CACHE": str(cache.root)}
        waiter = threading.Thread(target=lambda: result.append(subprocess.run(
            [sys.executable, "-m", "forge", "image", "build", "base", "-q"], env=env,
            capture_output=True, text=True, timeout=120, check=False)))
        waiter.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
                "image build base" in " ".join(p.info["cmdline"] or [])
                and str(cache.root) in str(p.environ().get("FORGE_IMAGE_CACHE", ""))
                for p in psutil.process_iter(["cmdline"])
                if "forge" in " ".join(p.info["cmdline"] or [])):
            time.sleep(0.1)
        time.sleep(1.0)  # let it reach the lock
        assert waiter.is_alive() and not result
        staging = cache.new_staging(key)
        (staging / ROOTFS).mkdir()
        cache.install(key, staging, "base", 1.0)
    waiter.join(timeout=120)
    assert result and result[0].returncode == 0, result
    assert "base: already built" in result[0].stdout
    assert [e.key for e in cache.entries()] == [key]


def test_build_templates_builds_what_the_templates_name(tmp_path: Path,
                                                        base_rootfs: Path,
                                                        image_cache_root: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    text = (content_path("templates") / "netplus.yaml").read_text()
    (templates / "netplus.yaml").write_text(
        text.replace("      - name: learner\n", "      - name: learner\n        image: base\n", 1))
    result = CliRunner().invoke(image_app, ["build", "--templates", "-q"], env={
        "FORGE_TEMPLATE_DIR": str(templates), "FORGE_IMAGE_CACHE": str(image_cache_root)})
    assert result.exit_code == 0, result.output
    assert "base: already built" in result.stdout


def test_the_ssh_image_carries_its_files_and_its_script_ran(image_cache_root: Path) -> None:
    # Files and the build script, end to end, on the shipped ssh image (cached after the
    # first build, like base).
    definition = load_definitions(content_path("images"))["ssh"]
    rootfs = build_image(definition, ImageCache(image_cache_root)).entry.rootfs
    conf = rootfs / "etc/ssh/sshd_config.d/forge.conf"
    assert conf.read_text() == definition.files["/etc/ssh/sshd_config.d/forge.conf"].content
    assert oct(conf.stat().st_mode & 0o7777) == "0o644"
    assert (rootfs / "usr/sbin/sshd").is_file()
    assert not list((rootfs / "etc/ssh").glob("ssh_host_*"))  # the script removed them
    assert not (rootfs / "tmp" / "forge-image-build.sh").exists()
    assert oct(rootfs.stat().st_mode & 0o777) == "0o755"  # "/" keeps its usual mode


def test_a_package_apt_cannot_find_is_named_also_without_the_machines_apt_lists() -> None:
    # mmdebstrap's last lines when apt in the new root cannot find a package (recorded from
    # a real build on a machine whose own apt lists were empty, so the check before the
    # build could not tell).
    from collections import deque

    from forge.images.build import _tail_reason

    lines = deque(["I: installing remaining packages inside the chroot...",
                   "Reading package lists...", "Building dependency tree...",
                   "E: Unable to locate package forge-no-such-package",
                   "E: setup failed: E: apt-get --yes install bash forge-no-such-package failed",
                   "E: mmdebstrap failed to run"])
    assert _tail_reason(lines, "bookworm") == (
        "no such package in the suite bookworm: forge-no-such-package")
    lines.remove("E: Unable to locate package forge-no-such-package")
    assert _tail_reason(lines, "bookworm").startswith("I: installing remaining packages")
