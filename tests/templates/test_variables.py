"""Per-scenario variables: generation, deterministic derivation, rendering, bad values."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from forge.templates import (
    TemplateError,
    derive_values,
    generate_values,
    load_template_file,
    render,
)

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def template():  # type: ignore[no-untyped-def]
    return load_template_file(FIXTURES / "good.yaml").template


def test_generated_values_match_their_kinds(template) -> None:  # type: ignore[no-untyped-def]
    seen = set()
    for _ in range(20):
        v = generate_values(template)
        assert re.fullmatch(r"[A-Za-z0-9]{20}", v["secret"])
        assert 20000 <= int(v["port"]) <= 29999
        seen.add(v["secret"])
    assert len(seen) == 20  # unpredictable: no repeats


def test_render_substitutes_everywhere_allowed(template) -> None:  # type: ignore[no-untyped-def]
    r = render(template, {"secret": "S3cretS3cretS3cret00", "port": "23456"})
    target = r.spec.assets.containers[2]
    assert target.command[3] == "23456"
    assert target.environment["SERVE_PORT"] == "23456"
    assert target.files[0].content == "token S3cretS3cretS3cret00\n"
    assert r.spec.success_criteria[0].checks[0].expect.stdout_contains == (
        "token S3cretS3cretS3cret00"
    )
    assert "{{" not in str(r.to_document())


def test_seed_derivation_is_deterministic_and_seed_specific(template) -> None:  # type: ignore[no-untyped-def]
    a = derive_values(template, b"a" * 32)
    assert a == derive_values(template, b"a" * 32)
    assert a != derive_values(template, b"b" * 32)
    rendered = render(template, b"a" * 32)
    assert rendered.spec.assets.containers[2].command[3] == a["port"]
    with pytest.raises(ValueError, match="at least 16 bytes"):
        derive_values(template, b"short")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"port": "23456"}, 'vars.secret: no value given'),
        ({"secret": "x" * 20, "port": "99"}, 'must be within [20000, 29999]'),
        ({"secret": "bad;rm -rf /;xxxxxxx", "port": "23456"}, "must be 20 token characters"),
        ({"secret": "x" * 20, "port": "23456", "extra": "1"},
         "vars.extra: value given for an undeclared variable"),
    ],
)
def test_bad_values_are_refused(template, values, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TemplateError) as info:
        render(template, values)
    assert any(message in str(p) for p in info.value.problems)


def test_a_templates_references_are_found_once(template, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Each lab's render and its lab spec walked the registry template's whole document for
    its references again (twice per lab, on the orchestrator's event loop). A template is
    frozen, so they are found once per template object, and forgotten with it."""
    import gc

    from forge.services.orchestrator.labspec import shared_hosts
    from forge.templates import ScenarioTemplate, variables

    walks: list[str] = []
    real_walk = variables._walk

    def counted(node, path):  # type: ignore[no-untyped-def]
        if path == "":
            walks.append(path)
        return real_walk(node, path)

    monkeypatch.setattr(variables, "_walk", counted)
    fresh = ScenarioTemplate.model_validate(template.to_document())  # not seen before
    cached = len(getattr(variables, "_REFERENCES", {}))
    found = list(variables.referenced_variables(fresh))
    assert {name for _, name in found} == {"secret", "port"}
    values = {"secret": "S3cretS3cretS3cret00", "port": "23456"}
    for _ in range(3):  # three labs
        render(fresh, values)
        shared_hosts(fresh)
    assert list(variables.referenced_variables(fresh)) == found
    assert len(walks) == 1  # one search; before: one per call (8 here)
    del fresh
    gc.collect()
    assert len(variables._REFERENCES) == cached
