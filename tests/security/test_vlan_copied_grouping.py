"""vlan-segment: a grouping of the switch's ports copied from another lab.

Review ET, learner angle: the departments behind sw1's ports came from one `layout`
variable of three values (pc1 always in engineering, its colleague pc2, pc3 or pc4), so a
switch copied from another learner's lab (the bridges renamed after this lab's plan) was
right in about one lab of three, and earned reach and isolation (4/6) without asking a
single PC. The layout now is every split of the four PCs into two non-empty departments.

The split is the template's own `grp` shell function (the PCs' banners and every check
define it identically), run here by bash for each value the variable may take.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from forge.authoring.labtest import lab_test_path, load_lab_test
from forge.templates import TemplateRegistry
from forge.templates.variables import generate_values

from ..support.shipped_labs import TEMPLATES, shipped_harness

GRP = re.compile(r"grp\(\) \{.*?; \}")
# A switch copied from a lab where pc1 and pc2 were engineering, its bridges named after
# this lab's plan.
COPIED = r"""
set -euo pipefail
eng=$(awk '$1 == "engineering" {print $2}' /workspace/vlan-plan.txt)
sales=$(awk '$1 == "sales" {print $2}' /workspace/vlan-plan.txt)
for v in "$eng" "$sales"; do ip link add "vlan$v" type bridge; ip link set dev "vlan$v" up; done
ip link set dev eth0 master "vlan$eng"; ip link set dev eth1 master "vlan$eng"
ip link set dev eth2 master "vlan$sales"; ip link set dev eth3 master "vlan$sales"
"""


def _grp_and_range() -> tuple[str, range, set[str]]:
    """The checks' grp, the layouts the lab may draw, and the grp of each PC's banner."""
    template = TemplateRegistry.load(TEMPLATES).get("vlan-segment").template
    texts = [arg for c in template.spec.success_criteria for ch in c.checks
             for arg in ch.command]
    defs = {m.group(0) for text in texts for m in GRP.finditer(text)}
    assert len(defs) == 1, defs
    banners = {m.group(0) for h in template.spec.assets.containers if h.name.startswith("pc")
               for m in GRP.finditer(" ".join(h.command or ()))}
    var = template.spec.variables["layout"]
    assert var.min is not None and var.max is not None
    return defs.pop(), range(var.min, var.max + 1), banners


def test_a_grouping_copied_from_another_lab_is_right_in_few_labs() -> None:
    grp, layouts, banners = _grp_and_range()
    script = grp + '; for l in "$@"; do echo $(for n in 1 2 3 4; do grp $n; done); done'
    out = subprocess.run(["bash", "-c", script, "grp", *map(str, layouts)],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(out) == len(layouts)
    splits = [tuple(line.split()) for line in out]
    for split in splits:  # two departments, each with a PC
        assert set(split) == {"engineering", "sales"}, split
    # Which ports share a bridge, whatever its VLAN: what reach and isolation grade.
    groupings = [frozenset(frozenset(i for i, d in enumerate(s) if d == dept)
                           for dept in ("engineering", "sales")) for s in splits]
    # Values are drawn uniformly: a copied grouping is right in at most 1 lab of 7.
    worst = max(groupings.count(g) for g in groupings) / len(groupings)
    assert worst <= 1 / 7, (worst, groupings)
    # ... and every PC's banner says its department with the function the checks use.
    assert banners == {grp}, banners


@pytest.mark.root
def test_a_department_of_one_pc_is_a_lab_the_solution_solves(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """A split the old layout never drew (pc4 alone in sales): untouched 0, the reference
    solution 1.0, and a copy of the old template's most common answer (pc1 and pc2 in
    engineering) earns neither reach nor isolation."""
    plan_path = lab_test_path(TEMPLATES, "vlan-segment")
    solution = load_lab_test(plan_path).solution.text(Path(plan_path).parent)
    with shipped_harness(tmp_path_factory.mktemp("vlan1"), "vlan-segment", "w",
                         tuple((f"pc{n}", "7000") for n in range(1, 5))) as h:
        values = generate_values(h.template)
        values["layout"] = "7"  # pc1, pc2 and pc3 in engineering, pc4 alone in sales
        untouched = h.launch(values)
        assert untouched.grade().score == 0
        copied = h.launch(values)
        copied.must(COPIED, "the copied switch")
        graded = copied.grade()
        assert not graded.passed["same-vlan-reach"] and not graded.passed["vlans-isolated"]
        solved = h.launch(values)
        solved.in_terminal(solution)
        assert solved.grade().score == 1.0
