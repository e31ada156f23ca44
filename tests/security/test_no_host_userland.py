"""No shipped lab sees the server's userland: every host runs on an image.

Before, a host that named no image ran on the machine's own system directories read-only:
a learner could read the server's whole /etc (its hostname, its configuration, anything an
operator put there) bar a few masked files. Now such a host runs on the minimal ``base``
image. Each shipped template is launched the way the orchestrator launches it (rendered,
``lab_spec``, the configured engine) and every one of its hosts, and a check on it, is
read: /etc/os-release is the image's and neither the server's /etc/hostname nor a file
created in the server's /etc for this test is visible.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.config.settings import load_settings
from forge.content import content_path
from forge.images import ImageCache, load_definitions
from forge.images.build import build_image
from forge.runtime import Runtime
from forge.runtime.factory import make_runtime
from forge.services.orchestrator.labspec import lab_spec
from forge.templates import TemplateRegistry
from forge.templates.variables import render

from ..support.prefixes import runtime_prefix

pytestmark = pytest.mark.root

SHIPPED = ("netplus", "ccna", "cissp")


@pytest.fixture()
def marker() -> Iterator[Path]:
    path = Path("/etc") / f"forge-userland-{secrets.token_hex(6)}"
    path.write_text("server secret\n", encoding="utf-8")
    os.chmod(path, 0o644)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


@pytest.fixture()
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    settings = load_settings({"FORGE_ENV": "dev", "STORAGE_ROOT": str(tmp_path),
                              "FORGE_RUNTIME_PREFIX": runtime_prefix("u"),
                              "FORGE_RUNTIME_ENGINE": "local",
                              "FORGE_IMAGE_CACHE": str(load_settings().image_cache)})
    rt = make_runtime(settings)
    try:
        yield rt
    finally:
        for info in rt.list():
            rt.destroy(info.lab_id)
        rt.close()
        shutil.rmtree(tmp_path / "runtime", ignore_errors=True)


def test_no_shipped_lab_sees_the_servers_etc(runtime: Runtime, marker: Path) -> None:
    settings = load_settings()
    base = build_image(load_definitions(settings.images_dir)["base"],
                       ImageCache(settings.image_cache)).entry.rootfs
    image_release = (base / "etc" / "os-release").read_text()
    image_hostname = (base / "etc" / "hostname").read_text()
    assert Path("/etc/hostname").read_text() != image_hostname  # else this proves nothing
    registry = TemplateRegistry.load(content_path("templates"))
    on_host = [f"{t.template.metadata.name}/{c.name}" for t in registry
               for c in t.template.spec.assets.containers if c.image == "host"]
    assert on_host == []  # no shipped template, old or new, runs on the server's userland
    for number, name in enumerate(SHIPPED):
        template = registry.get(name).template
        assert {c.image for c in template.spec.assets.containers} == {"base"}, name
        lab = f"userland-{number}"
        runtime.create(lab_spec(lab, render(template, secrets.token_bytes(32))))
        for container in template.spec.assets.containers:
            where = f"{name}/{container.name}"
            res = runtime.exec(lab, container.name,
                               shell=f"cat /etc/os-release; cat /etc/hostname; cat {marker}")
            assert res.stdout_text == image_release + image_hostname, where
            assert f"{marker}: No such file" in res.stderr_text, where
            check = runtime.run_check(lab, container.name, ["cat", "/etc/os-release", str(marker)])
            assert check.stdout_text == image_release, where
            assert "server secret" not in check.stdout_text
        runtime.destroy(lab)
