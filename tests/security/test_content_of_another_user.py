"""Content folders and files (FORGE_TEMPLATE_DIR, FORGE_PLANS_FILE, FORGE_POLICY_DIR,
FORGE_IMAGE_DIR) another local user owns or may write, or a folder on the way to them.

Before, such content was loaded as the operator's: a template of user `nobody`'s had its
check scripts run as the grader, their policies decided who may do what, their plans set
every tenant's limits, and an image definition of theirs had its script run as root by
`forge image build` (a local user who could write FORGE_IMAGE_DIR got root), and a
FORGE_NATS_CA of theirs chose the server the services gave their NATS password. Now each is
refused where it is loaded, naming the path, its owner and mode; the shipped content and a
root-owned copy of it still load.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import forge.content as shipped_content
from forge.bus.tls import BusTls
from forge.cli import config_check
from forge.config import ConfigError, load_settings
from forge.images.definitions import ImageDefinitionError, load_definitions
from forge.images.lookup import load_named
from forge.plans.catalog import PlanError, load_plans
from forge.policy.decision import PolicyError
from forge.policy.rego_bundle import MAX_POLICY_DEPTH, PolicyBundle
from forge.templates import TemplateError, TemplateRegistry
from tests.cli.test_storage_option import forge as run_forge

pytestmark = pytest.mark.root

NOBODY = 65534
SHIPPED = Path(shipped_content.__file__).parent


def _refused(exc: pytest.ExceptionInfo[Exception], path: Path, why: str) -> None:
    assert f"{path} {why}" in str(exc.value), str(exc.value)


def test_templates_and_plans_another_user_could_write_are_refused(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir(mode=0o755)
    netplus = templates / "netplus.yaml"
    shutil.copy(SHIPPED / "templates" / "netplus.yaml", netplus)
    assert TemplateRegistry.load(templates).names() == ("netplus",)  # root's 0644: loads

    os.chown(netplus, NOBODY, NOBODY)  # its check scripts would run as the grader
    with pytest.raises(TemplateError) as refused:
        TemplateRegistry.load(templates)
    _refused(refused, netplus, f"is owned by uid {NOBODY} (mode 644), not by uid 0")
    os.chown(netplus, 0, 0)
    templates.chmod(0o777)  # anyone may put a template of theirs in
    with pytest.raises(TemplateError) as refused:
        TemplateRegistry.load(templates)
    _refused(refused, templates, "is writable by other users (owner uid 0, mode 777)")
    templates.chmod(0o755)

    # A link out of the folder is followed only after every folder of its target is
    # checked: here one of nobody's, who may swap the file at any time.
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    shutil.copy(netplus, theirs / "ssh-hardening.yaml")
    os.chown(theirs, NOBODY, NOBODY)
    (templates / "ssh-hardening.yaml").symlink_to(theirs / "ssh-hardening.yaml")
    with pytest.raises(TemplateError) as refused:
        TemplateRegistry.load(templates)
    _refused(refused, theirs, f"is owned by uid {NOBODY} (mode 755)")

    # `forge config check` names it as the services' start would.
    app = typer.Typer()
    app.callback()(lambda: None)
    config_check.register(app)
    env = {"FORGE_ENV": "dev", "STORAGE_ROOT": str(tmp_path / "storage"),
           "FORGE_TEMPLATE_DIR": str(templates)}
    result = CliRunner().invoke(app, ["config", "check"], env=env)
    output = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert result.exit_code == 1, output
    assert f"FORGE_TEMPLATE_DIR: {templates}" in output
    assert f"{theirs} is owned by uid {NOBODY}" in output

    # The plans file, in a folder nobody owns (they could rename it and put theirs).
    plans = theirs / "plans.yaml"
    shutil.copy(SHIPPED / "plans.yaml", plans)
    with pytest.raises(PlanError) as refused:
        load_plans(plans)
    assert str(refused.value).startswith(f"plans file {theirs} is owned by uid {NOBODY}")
    os.chown(theirs, 0, 0)
    assert load_plans(plans).get("free") is not None


def test_policies_another_user_could_write_are_refused(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(SHIPPED / "policies", policies)
    (policies / "lib").mkdir(mode=0o755)
    extra = policies / "lib" / "extra_test.rego"
    extra.write_text("package extra_test\n")
    extra.chmod(0o644)
    bundle_hash = PolicyBundle.load(policies).hash  # root's: loads
    data = policies / "data.json"
    data.chmod(0o666)  # anyone may rewrite the tables the rules read
    with pytest.raises(PolicyError) as refused:
        PolicyBundle.load(policies)
    _refused(refused, data, "is writable by other users (owner uid 0, mode 666)")
    data.chmod(0o644)
    os.chown(extra, NOBODY, NOBODY)  # a folder down counts too
    with pytest.raises(PolicyError) as refused:
        PolicyBundle.load(policies)
    _refused(refused, extra, f"is owned by uid {NOBODY} (mode 644)")
    os.chown(extra, 0, 0)
    assert PolicyBundle.load(policies).hash == bundle_hash

    # The walk is bounded: a tree deeper than it checks is refused, not loaded unchecked.
    policies.joinpath(*["d"] * (MAX_POLICY_DEPTH + 2)).mkdir(parents=True)
    with pytest.raises(PolicyError) as refused:
        PolicyBundle.load(policies)
    assert "nests folders deeper than" in str(refused.value)


@pytest.mark.usefixtures("sqlite_only_store")
def test_an_image_definition_another_user_could_write_is_not_built(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir(mode=0o755)
    base = images / "base.yaml"
    shutil.copy(SHIPPED / "images" / "base.yaml", base)
    assert load_named("base", images) is not None  # root's: loads (and is cached)

    os.chown(base, NOBODY, NOBODY)  # its script would run as root at build time
    with pytest.raises(ImageDefinitionError) as refused:
        load_named("base", images)
    _refused(refused, base, f"is owned by uid {NOBODY} (mode 644), not by uid 0")
    with pytest.raises(ImageDefinitionError):
        load_definitions(images)

    # `forge image build` refuses it before mmdebstrap runs.
    code, _, err = run_forge({"STORAGE_ROOT": str(tmp_path / "storage"),
                              "FORGE_IMAGE_DIR": str(images),
                              "FORGE_IMAGE_CACHE": str(tmp_path / "cache")},
                             "image", "build", "base")
    assert code == 1
    assert f"{base} is owned by uid {NOBODY} (mode 644)" in err


def test_a_nats_ca_another_user_could_write_is_not_trusted(tmp_path: Path) -> None:
    """FORGE_NATS_CA: the clients give their NATS password only to a server this CA signed;
    a CA file of nobody's (or in a folder of theirs) let nobody's server get it."""
    tls = BusTls.generate(tmp_path / "tls")
    env = {"FORGE_ENV": "dev", "STORAGE_ROOT": str(tmp_path / "root"),
           "FORGE_NATS_CA": str(tls.ca_file)}
    assert load_settings(env).nats_ca == tls.ca_file.read_text()  # root's: trusted
    os.chown(tls.ca_file, NOBODY, NOBODY)
    with pytest.raises(ConfigError) as refused:
        load_settings(env)
    [problem] = refused.value.problems
    assert problem.startswith(f"FORGE_NATS_CA {tls.ca_file} is owned by uid {NOBODY} "
                              "(mode 644), not by uid 0")


def test_content_inside_forge_s_own_package_is_as_trusted_as_its_code(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkout its developer owns, run by root (`sudo make demo`): the shipped content
    sits beside Forge's code, which that developer may change anyway, so it loads; the
    same files copied out of the package are refused."""
    from forge.config import trusted_tree

    package = tmp_path / "checkout" / "forge"
    (package / "content").mkdir(parents=True)
    for part in (package.parent, package, package / "content"):
        os.chown(part, NOBODY, NOBODY)
    outside = tmp_path / "elsewhere"
    shutil.copytree(package, outside)
    for part in (outside, outside / "content"):
        os.chown(part, NOBODY, NOBODY)
    monkeypatch.setattr(trusted_tree, "_PACKAGE", os.path.realpath(package))
    assert trusted_tree.chosen_content(package / "content") is None
    # Named through a link of that user's, it is judged: they could point the link at a
    # folder of theirs between the check and the read.
    link = tmp_path / "images"
    link.symlink_to(package / "content")
    os.lchown(link, NOBODY, NOBODY)
    why = trusted_tree.chosen_content(link)
    assert why is not None and f"{link} is a link owned by uid {NOBODY}" in why, why
    why = trusted_tree.chosen_content(outside / "content")
    assert why is not None and f"is owned by uid {NOBODY}" in why, why
