"""What spawn_service knows of each template: its catalog entry and its learner hosts.

Read once from the template registry at start; the tracks API, the track cards and the lab
page show it, so learners see a title, summary, difficulty, time and objectives rather than
internal labels, and one terminal tab per host the template marks `access: learner`.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from forge.templates.dsl_models import Difficulty
from forge.templates.registry import TemplateRegistry


class CatalogEntry(BaseModel):
    """One lab as the catalog shows it (the template's metadata, learner-facing fields)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    track: str
    template: str
    lab: str  # what POST /v1/spawn takes as `lab` (the template name)
    tier: str  # the plan must include it (plans.yaml `tiers`, the training gate)
    title: str
    summary: str
    difficulty: Difficulty
    estimated_minutes: int
    objectives: list[str]
    terminal_hosts: list[str]


@dataclass(frozen=True)
class TemplateFacts:
    """A template's catalog entry and the hosts its learner may open terminals on."""

    entry: CatalogEntry
    learner_hosts: tuple[str, ...]


def template_facts(registry: TemplateRegistry) -> dict[str, TemplateFacts]:
    """template name -> facts, for every loaded template."""
    facts: dict[str, TemplateFacts] = {}
    for loaded in registry:
        t = loaded.template
        meta = t.metadata
        entry = CatalogEntry(
            track=t.track or "", template=loaded.name, lab=loaded.name, tier=t.tier or "",
            title=meta.title, summary=meta.summary,
            difficulty=meta.difficulty, estimated_minutes=meta.estimated_minutes,
            objectives=list(meta.objectives), terminal_hosts=list(t.learner_hosts))
        facts[loaded.name] = TemplateFacts(entry, t.learner_hosts)
    return facts
