"""Turn a rendered template into the runtime's engine-neutral LabSpec."""

from __future__ import annotations

import shlex

from forge.runtime.base import HostSpec, LabSpec, Limits, SubnetSpec
from forge.templates.dsl_models import ScenarioTemplate


def lab_spec(scenario_id: str, template: ScenarioTemplate) -> LabSpec:
    """Hosts, networks, routes, files, capabilities and limits exactly as the template says."""
    spec = template.spec
    hosts = [
        HostSpec(
            name=c.name,
            networks=[(a.subnet, a.address) for a in c.networks],
            routes=[(r.to, r.via) for r in c.routes],
            router=c.router,
            capabilities=list(c.capabilities),
            environment=dict(c.environment),
            command=shlex.join(c.command) if c.command else None,
            files={f.path: f.content for f in c.files},
            owners={f.path: f.owner for f in c.files if f.owner is not None},
            modes={f.path: f.mode for f in c.files if f.mode is not None},
            image=c.image,
            ready_ports=[int(p) for p in c.ready_ports],  # numbers once rendered
        )
        for c in spec.assets.containers
    ]
    return LabSpec(
        lab_id=scenario_id,
        subnets=[SubnetSpec(s.name, s.cidr) for s in spec.network.subnets],
        hosts=hosts,
        limits=Limits(cpu=spec.limits.cpu, memory_mb=spec.limits.memory_mb,
                      pids=spec.limits.pids, disk_mb=spec.limits.disk_mb),
        egress=spec.network.egress,
        allowlist_profile=spec.network.allowlist_profile,
    )
