"""Labs of a shipped template on a runtime of the test module's own (the gaming tests)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from forge.authoring.harness import Harness
from forge.content import content_path
from forge.templates import TemplateRegistry

from .configured_runtime import configured_runtime
from .prefixes import runtime_prefix

TEMPLATES = content_path("templates")


@contextmanager
def shipped_harness(state: Path, template: str, prefix: str,
                    ready: tuple[tuple[str, str], ...] = ()) -> Iterator[Harness]:
    """A Harness for the shipped ``template`` on a runtime under ``state`` with runtime
    prefix ``prefix``, closed afterwards; ``ready``: (host, port or variable) pairs that
    must answer before a lab counts as started."""
    with configured_runtime(state, runtime_prefix(prefix)) as runtime, \
            Harness(runtime, TemplateRegistry.load(TEMPLATES).get(template).template,
                    ready) as h:
        yield h
