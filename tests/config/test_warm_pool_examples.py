"""The FORGE_WARM_POOL examples an operator copies name templates Forge ships.

README.md and docs/operator_runbook.md said `FORGE_WARM_POOL=lab-netplus=20,web-basics=5`:
the names of test fixtures, not of shipped templates (`netplus`, `ccna`, …). Copied into a
`forge up` environment, the orchestrator logged "FORGE_WARM_POOL names template
'lab-netplus', which is not loaded; no pool" and every spawn built a lab from scratch.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from forge.config.warm_pool_setting import parse_warm_pool

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = {p.name.removesuffix(".yaml")
           for p in (ROOT / "src/forge/content/templates").glob("*.yaml")
           if not p.name.endswith(".lab-test.yaml")}
EXAMPLE = re.compile(r"FORGE_WARM_POOL=([a-z0-9._=,-]+)|e\.g\. `([a-z0-9._=,-]+=\d+)`")


def _examples(text: str) -> list[str]:
    return [a or b for a, b in EXAMPLE.findall(text)]


@pytest.mark.parametrize("doc", ["README.md", "docs/operator_runbook.md"])
def test_documented_pools_name_shipped_templates(doc: str) -> None:
    examples = _examples((ROOT / doc).read_text(encoding="utf-8"))
    assert examples, f"{doc} shows no FORGE_WARM_POOL example"
    for example in examples:
        assert set(parse_warm_pool(example)) <= SHIPPED, (doc, example)


def test_the_refusal_names_shipped_templates() -> None:
    with pytest.raises(ValueError) as refused:
        parse_warm_pool("netplus")
    example = str(refused.value).rsplit("e.g. ", 1)[1]
    assert set(parse_warm_pool(example)) <= SHIPPED
