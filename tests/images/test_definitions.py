"""Image definitions are strict and bounded; the cache key follows exactly what is built.

A bad definition is refused before anything is built, with a message naming its file and
the field at fault; the key is stable across loads and spellings of the same definition
and changes with any edit, the mmdebstrap version or the architecture.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from forge.content import content_path
from forge.images import ImageDefinitionError, image_key, load_definition_file, load_definitions
from forge.images.build import ImageBuildError, apt_mirrors

TOOL = ("1.3.5", "amd64")
GOOD = """name: web
suite: bookworm
packages: [bash, nginx-light]
files:
  /etc/nginx/conf.d/lab.conf:
    content: "server {}\\n"
    mode: 0640
script: |
  echo built > /srv/marker
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_images_are_valid_and_small() -> None:
    shipped = load_definitions(content_path("images"))
    assert {"base", "ssh"} <= set(shipped)
    base = shipped["base"]
    assert {"bash", "coreutils", "iproute2", "procps", "iputils-ping",
            "netcat-openbsd", "python3", "curl", "wget", "jq"} == set(base.packages)
    assert "openssh-server" in shipped["ssh"].packages
    assert "bubblewrap" in base.all_packages()  # exec enters the host and runs bwrap there


@pytest.mark.parametrize(("text", "field"), [
    (GOOD.replace("nginx-light", "Nginx_Light"), "packages[1]"),
    (GOOD.replace("nginx-light", "--force-yes"), "packages[1]"),
    (GOOD.replace("[bash, nginx-light]", "[bash, bash]"), "packages"),
    (GOOD.replace("/etc/nginx/conf.d/lab.conf", "/etc/../root/.ssh/authorized_keys"),
     "files"),
    (GOOD.replace("/etc/nginx/conf.d/lab.conf", "/usr/bin/ls"), "files"),
    (GOOD.replace("mode: 0640", "mode: '0640'"), "files['/etc/nginx/conf.d/lab.conf'].mode"),
    (GOOD.replace("mode: 0640", "mode: 04755"), "files['/etc/nginx/conf.d/lab.conf'].mode"),
    (GOOD.replace("suite: bookworm", "suite: ../sid"), "suite"),
    (GOOD + "pakages: [curl]\n", "pakages"),
    (GOOD.replace("name: web", "name: other"), "name"),
    (GOOD.replace("[bash, nginx-light]", "[" + ", ".join(f"p{i:02d}" for i in range(65)) + "]"),
     "packages"),
    (GOOD.replace("  echo built > /srv/marker", "  " + "x" * 20000), "script"),
    ("- just\n- a list\n", "(top)"),
])
def test_a_bad_definition_names_its_file_and_field(tmp_path: Path, text: str,
                                                   field: str) -> None:
    path = write(tmp_path, "web", text)
    with pytest.raises(ImageDefinitionError) as err:
        load_definition_file(path)
    assert str(path) in err.value.message
    assert any(p.startswith(field) for p in err.value.problems), err.value.problems
    assert err.value.code == "invalid_image_definition"


def test_the_cli_refuses_a_bad_definition_before_building(tmp_path: Path) -> None:
    defs, cache = tmp_path / "defs", tmp_path / "cache"
    defs.mkdir()
    write(defs, "web", GOOD.replace("nginx-light", "Nginx_Light"))
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "FORGE_IMAGE_DIR": str(defs),
           "FORGE_IMAGE_CACHE": str(cache), "STORAGE_ROOT": str(tmp_path / "storage")}
    out = subprocess.run([sys.executable, "-m", "forge", "image", "build", "web"], env=env,
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 1
    assert "web.yaml" in out.stderr and "packages[1]" in out.stderr
    assert not cache.exists() or not any(cache.iterdir())


def test_the_key_is_stable_and_follows_every_edit(tmp_path: Path) -> None:
    one = load_definition_file(write(tmp_path, "web", GOOD))
    # The same definition spelled differently (key order, flow vs block style).
    respelled = ("packages:\n  - bash\n  - nginx-light\nscript: |\n  echo built > /srv/marker\n"
                 "name: web\nfiles:\n  /etc/nginx/conf.d/lab.conf: {mode: 0640, content: "
                 "\"server {}\\n\"}\nsuite: bookworm\n")
    other_dir = tmp_path / "again"
    other_dir.mkdir()
    two = load_definition_file(write(other_dir, "web", respelled))
    assert image_key(one, TOOL) == image_key(two, TOOL)
    assert len(image_key(one, TOOL)) == 64
    edits = [GOOD.replace("[bash, nginx-light]", "[bash, nginx-light, curl]"),
             GOOD.replace("mode: 0640", "mode: 0644"),
             GOOD.replace("echo built", "echo rebuilt"),
             GOOD.replace("suite: bookworm", "suite: trixie")]
    keys = {image_key(one, TOOL)}
    for i, text in enumerate(edits):
        d = tmp_path / f"edit{i}"
        d.mkdir()
        keys.add(image_key(load_definition_file(write(d, "web", text)), TOOL))
    keys.add(image_key(one, ("1.4.0", "amd64")))
    keys.add(image_key(one, ("1.3.5", "arm64")))
    assert len(keys) == 1 + len(edits) + 2


def test_mirrors_come_from_this_machines_apt_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\nTypes: deb\nURIs: http://deb.debian.org/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n\nTypes: deb-src\n"
        "URIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\n")
    (tmp_path / "sources.list.d" / "other.list").write_text(
        "deb [arch=amd64] https://packages.example.test/apt nodistro main\n")
    assert apt_mirrors("bookworm", tmp_path) == [
        "deb http://deb.debian.org/debian bookworm main",
        "deb http://deb.debian.org/debian bookworm-updates main",
        "deb http://deb.debian.org/debian-security bookworm-security main",
    ]
    with pytest.raises(ImageBuildError, match=r"no apt source .* suite 'trixie'"):
        apt_mirrors("trixie", tmp_path)
