"""docs/authoring.md works as written: its `$ forge …` commands, run in order in a scratch
directory, scaffold a lab and prove it; `forge lab new` never overwrites and refuses a bad
name; a bad test plan is an error naming the field."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from forge.authoring.scaffold import ScaffoldError, scaffold
from forge.content import content_path

from ..cli.test_storage_option import forge as forge_in_process
from .conftest import Forge

pytestmark = pytest.mark.root
TEMPLATES = content_path("templates")
DOC = Path(__file__).resolve().parents[2] / "docs" / "authoring.md"


def tutorial_commands() -> list[list[str]]:
    """The `$ forge …` lines of the tutorial's code blocks, in order."""
    commands, fenced = [], False
    for line in DOC.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif fenced and line.startswith("$ "):
            argv = shlex.split(line[2:])
            assert argv[0] == "forge", line
            commands.append(argv[1:])
    return commands


def test_the_tutorial_runs_as_written(forge: Forge, tmp_path: Path) -> None:
    commands = tutorial_commands()
    assert commands[0] == ["lab", "new", "vault-code", "--dir", "labs", "--image-dir", "images"]
    assert commands[-1] == ["lab", "test", "vault-code", "--dir", "labs"]
    for argv in commands:
        result = forge(*argv)
        assert result.returncode == 0, f"forge {' '.join(argv)}\n{result.stdout}{result.stderr}"
    out = result.stdout
    assert "forge lab test vault-code: PASS" in out and "FAIL" not in out
    assert "1/1 labs passed" in out
    # Its labs' state is all it kept of a storage root: no dev secrets, no warning.
    assert "storage root" not in result.stderr
    assert [p.name for p in (tmp_path / "storage").iterdir()] == ["runtime"]
    for step in ("untouched", "reference solution", "partial empty-answer",
                 "gaming guessed-code", "answers copied from another instance",
                 "generic: answers as FIFOs", "generic: answers as symlinks to /tmp",
                 "generic: background process into grading"):
        assert step in out, step
    written = sorted(p.relative_to(tmp_path).as_posix() for p in
                     [*(tmp_path / "labs").iterdir(), *(tmp_path / "images").iterdir()])
    assert written == ["images/vault-code.yaml", "labs/vault-code.lab-test.yaml",
                       "labs/vault-code.partial.sh", "labs/vault-code.solution.sh",
                       "labs/vault-code.yaml"]

    # Again: refused, and nothing changed.
    before = {p: p.read_bytes() for p in (tmp_path / "labs").iterdir()}
    again = forge(*commands[0])
    assert again.returncode == 1 and "not overwriting" in again.stderr
    assert {p: p.read_bytes() for p in (tmp_path / "labs").iterdir()} == before

    # A gaming attempt that scores is a failing lab test: exit 1, the row says so (and
    # --all found the directory's one lab).
    plan = tmp_path / "labs" / "vault-code.lab-test.yaml"
    plan.write_text(plan.read_text().replace("criterion: code-recovered\n    script: |\n"
                                             "      cp ", "criterion: answer-written\n"
                                             "    script: |\n      cp "))
    # An invalid second draft beside it is reported, and does not stop vault-code's test.
    (tmp_path / "labs" / "draft-two.yaml").write_text("kind: Nope\n")
    broken = forge("lab", "test", "--all", "--dir", "labs")
    assert broken.returncode == 1, broken.stdout
    assert "gaming whole-brief" in broken.stdout and "PASSES" in broken.stdout
    assert "draft-two.yaml: kind: Input should be 'ScenarioTemplate'" in broken.stderr
    assert "0/2 labs passed" in broken.stderr


BAD_NAMES = ["Vault", "ab", "x" * 33, "vault--code", "vault-", "base", "forensics", "../vault",
             "vault code"]


def test_lab_new_refuses_a_bad_name(forge: Forge, tmp_path: Path) -> None:
    result = forge("lab", "new", "../vault", "--dir", "labs", "--image-dir", "images")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "name: '../vault' must be" in result.stderr
    for name in BAD_NAMES:
        with pytest.raises(ScaffoldError) as err:
            scaffold(name, tmp_path / "labs", tmp_path / "images")
        assert err.value.code == "invalid_lab_name" and "name:" in err.value.message
    assert not (tmp_path / "labs").exists() and not (tmp_path / "images").exists()


def test_authoring_commands_make_no_storage_root_and_the_image_stub_builds_as_it_says(
        tmp_path: Path) -> None:
    """The tutorial's first step made ./storage (dev secrets) in the author's scratch folder,
    warning that "keys and grants made here" are seen only by services using it (so did
    `forge image build|list` and `forge lab test`, which use no secret); and the image
    stub said to build with `forge image build NAME`, which looks in the shipped
    folder and failed without naming FORGE_IMAGE_DIR."""
    env: dict[str, str | None] = {"STORAGE_ROOT": str(tmp_path / "storage"),
                                  "FORGE_IMAGE_DIR": None, "FORGE_TEMPLATE_DIR": None}
    images = tmp_path / "images"
    code, _, err = forge_in_process(env, "lab", "new", "vault-code", "--dir",
                                    str(tmp_path / "labs"), "--image-dir", str(images))
    assert code == 0, err
    assert "storage root" not in err and not (tmp_path / "storage").exists()
    stub = (images / "vault-code.yaml").read_text()
    assert f"`FORGE_IMAGE_DIR={images} forge image build vault-code`" in stub
    code, _, err = forge_in_process(env, "image", "build", "vault-code")
    assert code == 1
    assert "set FORGE_IMAGE_DIR to the folder holding vault-code.yaml" in err
    # Nor did `forge image build|list` and `forge lab test` (no secret of it is used).
    env |= {"FORGE_IMAGE_DIR": str(images), "FORGE_IMAGE_CACHE": str(tmp_path / "cache")}
    code, out, err = forge_in_process(env, "image", "list")
    assert code == 0, err
    assert out.splitlines()[1].startswith("vault-code ")
    code, _, err = forge_in_process(env, "lab", "test", "nope", "--dir",
                                    str(tmp_path / "labs"))
    assert code == 2 and "nope" in err
    assert "storage root" not in err and not (tmp_path / "storage").exists()


def test_an_image_folder_of_ones_own_says_it_replaces_the_shipped_images(
        tmp_path: Path) -> None:
    """Section 3 sets FORGE_IMAGE_DIR=images; the scaffolded host (and every host naming
    no image) is on `base`, which that folder lacks: `forge lab test` failed each step
    with "image base is not defined" and no word of what to do."""
    from forge.images import ImageNotBuilt, resolve_image

    scaffold("vault-code", tmp_path / "labs", tmp_path / "images")
    with pytest.raises(ImageNotBuilt) as err:
        resolve_image("base", tmp_path / "images", tmp_path / "cache")
    assert "replaces the shipped images: copy those the lab uses, such as base.yaml, " \
        "into it" in err.value.message


def test_lab_new_refuses_a_shipped_labs_name(forge: Forge, tmp_path: Path) -> None:
    """`forge lab new netplus` in a directory of one's own wrote a second `netplus`: copied
    next to the shipped templates (section 7) it replaces the shipped lab, and in an
    operator's FORGE_TEMPLATE_DIR it shadows it. Refused, naming why, nothing written."""
    for name in ("netplus", "web-sqli", "vlan-segment"):
        result = forge("lab", "new", name, "--dir", "labs", "--image-dir", "images")
        assert result.returncode == 2, result.stdout + result.stderr
        assert f"error: name: '{name}' is taken by a shipped lab; choose another" \
            in result.stderr
    assert not (tmp_path / "labs").exists() and not (tmp_path / "images").exists()


def test_lab_new_never_writes_into_the_shipped_content(forge: Forge, tmp_path: Path,
                                                     forge_env: dict[str, str]) -> None:
    """Without --dir and FORGE_TEMPLATE_DIR (FORGE_IMAGE_DIR) the scaffold wrote its draft
    into the package's shipped templates and images, so the next service start offered it
    to learners. Refused naming the option to give; nothing written."""
    from forge.content import content_path

    shipped = [content_path("templates") / f"zz-draft{suffix}" for suffix in
               (".yaml", ".lab-test.yaml", ".solution.sh", ".partial.sh")]
    shipped.append(content_path("images") / "zz-draft.yaml")
    assert not any(p.exists() for p in shipped)
    forge_env.pop("FORGE_IMAGE_DIR", None)
    try:
        result = forge("lab", "new", "zz-draft")
        assert result.returncode == 2, result.stdout + result.stderr
        assert "error: --dir: " in result.stderr and "FORGE_TEMPLATE_DIR" in result.stderr
        result = forge("lab", "new", "zz-draft", "--dir", "labs")
        assert result.returncode == 2, result.stdout + result.stderr
        assert "error: --image-dir: " in result.stderr and "FORGE_IMAGE_DIR" in result.stderr
        assert not any(p.exists() for p in shipped)
        assert not (tmp_path / "labs").exists()
    finally:
        for p in shipped:
            p.unlink(missing_ok=True)


def test_a_bad_test_plan_is_an_error_naming_the_field(forge: Forge, tmp_path: Path) -> None:
    assert forge("lab", "new", "vault-code", "--dir", "labs", "--image-dir", "images").returncode == 0
    plan = tmp_path / "labs" / "vault-code.lab-test.yaml"
    text = plan.read_text()
    plan.write_text(text.replace("expected_score: 0.25", "expected_score: 1.5")
                    + "colour: blue\n")
    result = forge("lab", "test", "vault-code", "--dir", "labs")
    assert result.returncode == 1
    assert "partials.0.expected_score" in result.stderr and "colour" in result.stderr
    assert "forge lab test" not in result.stdout  # nothing was launched
    # Names that the template does not have, and a script file that is missing.
    plan.write_text(text.replace("criterion: code-recovered", "criterion: code-recoverd", 1)
                    .replace("file: vault-code.partial.sh", "file: missing.sh"))
    result = forge("lab", "test", "vault-code", "--dir", "labs")
    assert result.returncode == 1
    assert "gaming.0.criterion: no criterion 'code-recoverd'" in result.stderr
    assert "partials.0.file: missing.sh not found" in result.stderr
    # A "# host:" section for a host the template does not have.
    (tmp_path / "labs" / "vault-code.partial.sh").write_text("# host: r9\ntrue\n")
    plan.write_text(text)
    result = forge("lab", "test", "vault-code", "--dir", "labs")
    assert result.returncode == 1
    assert "partials.0: section '# host: r9' names no host of the template" in result.stderr
    # A script file that is not text, and one that is too large.
    partial = tmp_path / "labs" / "vault-code.partial.sh"
    partial.write_bytes(b"echo \xff\xfe\n")
    result = forge("lab", "test", "vault-code", "--dir", "labs")
    assert result.returncode == 1
    assert "partials.0.file: vault-code.partial.sh is not UTF-8 text" in result.stderr
    partial.write_text("#" * (64 * 1024 + 1))
    result = forge("lab", "test", "vault-code", "--dir", "labs")
    assert result.returncode == 1
    assert "partials.0.file: vault-code.partial.sh is larger than 64 KiB" in result.stderr


def test_template_check_validates_the_shipped_templates_and_plans(forge: Forge) -> None:
    # The runbook's command: the lab-test plans next to the templates are checked as plans.
    files = sorted(str(p) for p in TEMPLATES.glob("*.yaml"))
    result = forge("template", "check", *files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(": ok (lab-test plan)") == len(files) // 2


def test_the_scaffolded_image_starts_from_the_shipped_base(tmp_path: Path) -> None:
    from forge.content import content_path
    from forge.images.definitions import load_definition_file

    scaffold("vault-code", tmp_path / "labs", tmp_path / "images")
    stub = load_definition_file(tmp_path / "images" / "vault-code.yaml")
    base = load_definition_file(content_path("images") / "base.yaml")
    assert stub.packages == base.packages and stub.name == "vault-code"
