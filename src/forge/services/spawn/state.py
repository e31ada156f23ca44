"""Everything spawn_service holds for its lifetime, built once at start."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from forge.bus import DurableConsumer, Publisher
from forge.config.settings import Settings
from forge.plans import PlanCatalog, load_plans
from forge.policy.decision import PolicyEngine
from forge.services.common.app import ServiceContext
from forge.services.common.bus import bus_credentials, bus_streams
from forge.services.common.peer_check import PacedCheck
from forge.services.spawn.answers import AnswerBook
from forge.services.spawn.catalog_entry import TemplateFacts, template_facts
from forge.services.spawn.operator_keys import OperatorKeys
from forge.services.spawn.terminal_signout import OpenTerminals
from forge.store.consumed_tokens import SqlReplayStore
from forge.templates.registry import TemplateRegistry

SPAWN_RECONNECT_WAIT_S = 0.1


@dataclass
class SpawnState:
    """spawn_service's long-lived parts."""

    ctx: ServiceContext
    catalog: PlanCatalog
    # track -> its default lab (template name); see `track_templates`
    track_templates: dict[str, str]
    publisher: Publisher
    replay: SqlReplayStore
    # spawn answers waiting to be stored under their request ids (group commit)
    answers: AnswerBook
    entitlements_file: Path | None = None
    lifecycle: DurableConsumer | None = field(default=None)
    # template name -> its catalog entry and learner hosts (forge.services.spawn.catalog_entry)
    templates: dict[str, TemplateFacts] = field(default_factory=dict)
    # track -> every lab (template name) of that track, by name
    track_labs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # terminal relays of this process by browser session, closed at sign-out
    terminal_relays: OpenTerminals = field(default_factory=OpenTerminals)
    # the assignment gate's policy engine: made (and its pin checked) by build_app; made at
    # first use where a state is built without the app (assignment_gate.py)
    policy: PolicyEngine | None = None
    # the templates as loaded at start: the web pages read the same ones, not a second load
    registry: TemplateRegistry | None = None
    # which of its own OPERATOR_TOKENs the orchestrator still accepts (made by build_app)
    operator_keys: OperatorKeys | None = None
    # the peer_keys readiness check (made by build_app): a spawn is refused while it fails
    peer_keys: PacedCheck | None = None

    @property
    def settings(self) -> Settings:
        return self.ctx.settings

    @property
    def known_tracks(self) -> tuple[str, ...]:
        """Tracks that some plan offers and a loaded template serves."""
        return tuple(t for t in self.catalog.tracks if t in self.track_templates)

    def lab_title(self, template_id: str, fallback: str) -> str:
        """What a learner calls lab `template_id`: its catalog title, else `fallback` (a
        template no longer loaded)."""
        facts = self.templates.get(template_id)
        return facts.entry.title if facts is not None else fallback

    def plans_for(self, template_id: str) -> tuple[str, ...]:
        """The plans whose learners may start lab `template_id` (none for an unknown one):
        an assignment does not unlock a lab, so one no plan includes is startable by
        nobody."""
        facts = self.templates.get(template_id)
        if facts is None:
            return ()
        return self.catalog.including(facts.entry.track, facts.entry.tier)


def no_plan_warning(template_id: str) -> str:
    """What an instructor is told on assigning a lab no plan includes."""
    return (f"no plan includes {template_id}: no learner can start it until the operator "
            f"adds its track and tier to a plan (an assignment does not unlock a lab)")


def track_labs(registry: TemplateRegistry) -> dict[str, tuple[str, ...]]:
    """track → the names of its templates (labs), sorted by name."""
    labs: dict[str, list[str]] = {}
    for loaded in registry:
        track = loaded.template.track
        if track:
            labs.setdefault(track, []).append(loaded.name)
    return {track: tuple(sorted(names)) for track, names in labs.items()}


def track_templates(registry: TemplateRegistry) -> dict[str, str]:
    """track → its default lab: the template named like the track (netplus, ccna, cissp:
    what a spawn without `lab` has always started), else the track's first by name."""
    return {track: track if track in names else names[0]
            for track, names in track_labs(registry).items()}


def build_state(ctx: ServiceContext) -> SpawnState:
    """Load plans and templates (errors surface at start) and prepare the bus publisher."""
    settings = ctx.settings
    catalog = load_plans(settings.plans_file)
    registry = TemplateRegistry.load(settings.templates_dir)
    # nats-py reconnects every 0.1 s (0.5 s by default): a spawn arriving just after a NATS
    # restart waits for the reconnection within the publish's grace instead of failing. The
    # connection's own logged start-up retries keep their 0.5 s (bus.connection.RETRY_WAIT_S).
    publisher = Publisher(settings.nats_url, name="forge-spawn",
                          credentials=bus_credentials(settings, "spawn"),
                          streams=bus_streams(settings), reconnect_wait=SPAWN_RECONNECT_WAIT_S)
    return SpawnState(
        ctx=ctx,
        catalog=catalog,
        track_templates=track_templates(registry),
        publisher=publisher,
        replay=SqlReplayStore(ctx.db),
        entitlements_file=settings.entitlements_file,
        templates=template_facts(registry),
        track_labs=track_labs(registry),
        answers=AnswerBook(ctx.db),
        registry=registry,
    )
