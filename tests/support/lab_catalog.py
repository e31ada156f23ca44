"""A template directory with several labs per track, built from the shipped templates.

The shipped netplus, ccna and cissp templates, plus renamed copies: `basic-netplus`
(foundation; sorts before `netplus`, so the track's default must come from its name, not
the order), `netplus-advanced` (an advanced netplus lab: a FREE or PRO plan includes the
track but not the tier) and `ccna-b` (a second ccna lab). Tests that choose labs use it, so
they do not depend on the labs being written in other branches.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from forge.content import content_path

SHIPPED = ("netplus", "ccna", "cissp")
# new name -> (copied template, new tier label or None, new title)
COPIES = {
    "basic-netplus": ("netplus", None, "Ping the gateway"),
    "netplus-advanced": ("netplus", "advanced", "Find the hidden server"),
    "ccna-b": ("ccna", None, "Static routing, second edition"),
}


def lab_catalog_dir(root: Path) -> Path:
    """Write the templates into `root` (created) and return it, for FORGE_TEMPLATE_DIR."""
    root.mkdir(parents=True, exist_ok=True)
    shipped = content_path("templates")
    for name in SHIPPED:
        shutil.copy(shipped / f"{name}.yaml", root / f"{name}.yaml")
    for name, (source, tier, title) in COPIES.items():
        text = (shipped / f"{source}.yaml").read_text()
        text = text.replace(f"\n  name: {source}\n", f"\n  name: {name}\n", 1)
        head, sep, rest = text.partition("\n  title: ")
        assert sep, f"{source}.yaml has no metadata.title"
        text = head + sep + title + "\n" + rest.split("\n", 1)[1]
        if tier is not None:
            old = next(t for t in ("foundation", "intermediate", "advanced")
                       if f'"tier:{t}"' in text)
            text = text.replace(f'"tier:{old}"', f'"tier:{tier}"', 1)
        (root / f"{name}.yaml").write_text(text)
    return root
