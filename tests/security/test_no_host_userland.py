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
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.content import content_path
from forge.runtime import Runtime
from forge.services.orchestrator.labspec import lab_spec
from forge.templates import TemplateRegistry
from forge.templates.variables import render

from ..support.configured_runtime import configured_runtime
from ..support.images import ensure_default_image
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
    with configured_runtime(tmp_path, runtime_prefix("u")) as rt:
        yield rt


def test_no_shipped_lab_sees_the_servers_etc(runtime: Runtime, marker: Path) -> None:
    base = Path(ensure_default_image())  # base
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
