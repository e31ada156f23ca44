"""Template loading, hashing, immutability, registry allowlist, shipped schema."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import jsonschema
import pydantic
import pytest
import yaml

from forge.templates import (
    TemplateError,
    TemplateRegistry,
    UnknownTemplate,
    generate_schema,
    load_template_file,
    parse_template,
    shipped_schema,
)
from forge.templates.schema import render_schema, shipped_schema_text

FIXTURES = Path(__file__).parent / "fixtures"


def _registry_dir(tmp_path: Path) -> Path:
    d = tmp_path / "templates"
    d.mkdir()
    shutil.copy(FIXTURES / "good.yaml", d / "fixture-good.yaml")
    return d


def test_shipped_schema_equals_generated() -> None:
    assert shipped_schema() == generate_schema()
    assert shipped_schema_text() == render_schema()


def test_schema_validates_good_fixture_and_rejects_bad() -> None:
    schema = shipped_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    doc = yaml.safe_load((FIXTURES / "good.yaml").read_text())
    jsonschema.validate(doc, schema, cls=jsonschema.Draft202012Validator)
    doc["spec"]["limits"]["cpu"] = 64
    with pytest.raises(jsonschema.ValidationError, match="64"):
        jsonschema.validate(doc, schema, cls=jsonschema.Draft202012Validator)


def test_hash_is_sha256_of_file_bytes() -> None:
    loaded = load_template_file(FIXTURES / "good.yaml")
    assert loaded.sha256 == hashlib.sha256((FIXTURES / "good.yaml").read_bytes()).hexdigest()
    assert loaded.template.track == "netplus" and loaded.template.tier == "foundation"


def test_loaded_template_is_immutable() -> None:
    t = load_template_file(FIXTURES / "good.yaml").template
    with pytest.raises(pydantic.ValidationError):
        t.spec.limits.cpu = 4  # type: ignore[misc]
    with pytest.raises(TypeError):
        t.spec.assets.containers[2].environment["X"] = "y"  # type: ignore[index]
    with pytest.raises(TypeError):
        t.spec.variables["x"] = t.spec.variables["port"]  # type: ignore[index]
    assert isinstance(t.spec.assets.containers, tuple)


def test_registry_loads_and_looks_up_by_name(tmp_path: Path) -> None:
    reg = TemplateRegistry.load(_registry_dir(tmp_path))
    assert reg.names() == ("fixture-good",)
    assert reg.get("fixture-good").name == "fixture-good"
    assert "fixture-good" in reg and "nope" not in reg


@pytest.mark.parametrize(
    "name", ["../templates/fixture-good", "fixture-good.yaml", "/etc/passwd", "", "FIXTURE-GOOD",
             "nope"]
)
def test_registry_never_turns_names_into_paths(tmp_path: Path, name: str) -> None:
    reg = TemplateRegistry.load(_registry_dir(tmp_path))
    with pytest.raises(UnknownTemplate):
        reg.get(name)


def test_registry_is_unaffected_by_later_file_changes(tmp_path: Path) -> None:
    d = _registry_dir(tmp_path)
    reg = TemplateRegistry.load(d)
    before = reg.get("fixture-good")
    (d / "fixture-good.yaml").write_text("garbage: [")
    (d / "other.yaml").write_bytes((FIXTURES / "good.yaml").read_bytes())
    after = reg.get("fixture-good")
    assert after.sha256 == before.sha256
    assert reg.names() == ("fixture-good",)


def test_registry_refuses_bad_files_and_name_mismatch(tmp_path: Path) -> None:
    d = _registry_dir(tmp_path)
    shutil.copy(FIXTURES / "good.yaml", d / "renamed.yaml")
    (d / "broken.yaml").write_text("apiVersion: frostgate.forge/v1\nkind: ScenarioTemplate\n")
    with pytest.raises(TemplateError) as info:
        TemplateRegistry.load(d)
    text = "\n".join(str(p) for p in info.value.problems)
    assert 'renamed.yaml: metadata.name: "fixture-good" must equal the file name "renamed"' in text
    assert "broken.yaml: metadata: Field required" in text


def test_duplicate_yaml_keys_rejected() -> None:
    data = (FIXTURES / "good.yaml").read_bytes().replace(
        b"kind: ScenarioTemplate\n", b"kind: ScenarioTemplate\nkind: ScenarioTemplate\n"
    )
    with pytest.raises(TemplateError, match="duplicate key 'kind'"):
        parse_template(data)


def test_to_document_round_trips() -> None:
    t = load_template_file(FIXTURES / "good.yaml").template
    doc = t.to_document()
    json.dumps(doc)
    assert doc["spec"]["successCriteria"][0]["id"] == "saved-page"
    assert type(t).model_validate(doc) == t
