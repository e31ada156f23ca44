"""Everything spawn_service holds for its lifetime, built once at start."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from forge.bus import DurableConsumer, Publisher
from forge.config.settings import Settings
from forge.plans import PlanCatalog, load_plans
from forge.services.common.app import ServiceContext
from forge.services.common.bus import bus_credentials, bus_streams
from forge.services.spawn.catalog_entry import TemplateFacts, template_facts
from forge.store.consumed_tokens import SqlReplayStore
from forge.templates.registry import TemplateRegistry


@dataclass
class SpawnState:
    """spawn_service's long-lived parts."""

    ctx: ServiceContext
    catalog: PlanCatalog
    track_templates: dict[str, str]
    publisher: Publisher
    replay: SqlReplayStore
    entitlements_file: Path | None = None
    lifecycle: DurableConsumer | None = field(default=None)
    # template name -> its catalog entry and learner hosts (forge.services.spawn.catalog_entry)
    templates: dict[str, TemplateFacts] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        return self.ctx.settings

    @property
    def known_tracks(self) -> tuple[str, ...]:
        """Tracks that some plan offers and a loaded template serves."""
        return tuple(t for t in self.catalog.tracks if t in self.track_templates)


def track_templates(registry: TemplateRegistry) -> dict[str, str]:
    """track → template name; with several templates for a track, the first by name."""
    mapping: dict[str, str] = {}
    for loaded in registry:
        track = loaded.template.track
        if track and track not in mapping:
            mapping[track] = loaded.name
    return mapping


def build_state(ctx: ServiceContext) -> SpawnState:
    """Load plans and templates (errors surface at start) and prepare the bus publisher."""
    settings = ctx.settings
    catalog = load_plans(settings.plans_file)
    registry = TemplateRegistry.load(settings.templates_dir)
    publisher = Publisher(settings.nats_url, name="forge-spawn",
                          credentials=bus_credentials(settings, "spawn"),
                          streams=bus_streams(settings))
    return SpawnState(
        ctx=ctx,
        catalog=catalog,
        track_templates=track_templates(registry),
        publisher=publisher,
        replay=SqlReplayStore(ctx.db),
        entitlements_file=settings.entitlements_file,
        templates=template_facts(registry),
    )
