"""Which images a set of lab templates needs (so they can be built before a lab asks)."""

from __future__ import annotations

from pathlib import Path

from forge.images.definitions import HOST_USERLAND
from forge.templates import TemplateRegistry


def template_images(templates_dir: Path) -> list[str]:
    """Sorted names of the images the templates of ``templates_dir`` put hosts on."""
    names = {c.image for t in TemplateRegistry.load(templates_dir)
             for c in t.template.spec.assets.containers}
    return sorted(names - {HOST_USERLAND})
