"""The content Forge ships: lab templates, Rego policies, plans, reference solutions and
lab image definitions.

They are package data: they travel inside the wheel and are found with importlib.resources,
so an installed Forge works from any directory. Operators replace them with the existing
variables (`FORGE_TEMPLATE_DIR`, `FORGE_POLICY_DIR`, `FORGE_PLANS_FILE`, `FORGE_IMAGE_DIR`).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

TEMPLATES = "templates"
POLICIES = "policies"
PLANS = "plans.yaml"
SOLUTIONS = "solutions"
IMAGES = "images"


def content_path(name: str) -> Path:
    """The on-disk path of one shipped content entry (`templates`, `policies`, …).

    Forge is installed unpacked (a wheel, an editable checkout), so package data is a real
    file tree; a zipped install would need extraction and is refused with a clear message.
    """
    ref = files(__name__) / name
    path = Path(str(ref))
    if not path.exists():
        raise FileNotFoundError(f"shipped content {name!r} is missing from {path.parent}: "
                                "reinstall frostgate-forge (it must be installed unpacked)")
    return path
