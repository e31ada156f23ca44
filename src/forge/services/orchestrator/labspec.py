"""Turn a rendered template into the runtime's engine-neutral LabSpec."""

from __future__ import annotations

import re
import shlex

from forge.runtime.base import HostSpec, LabSpec, Limits, SubnetSpec
from forge.templates.dsl_models import ScenarioTemplate
from forge.templates.variables import referenced_variables

_HOST_PATH = re.compile(r"spec\.assets\.containers\[(\d+)\]\.")


def shared_hosts(template: ScenarioTemplate) -> frozenset[str]:
    """The hosts of an unrendered template that run a service and whose command,
    environment, seeds and ready ports name no variable: the same in every scenario."""
    touched = {int(m.group(1)) for path, _name in referenced_variables(template)
               if (m := _HOST_PATH.match(path)) is not None}
    return frozenset(c.name for i, c in enumerate(template.spec.assets.containers)
                     if c.command and i not in touched)


def lab_spec(scenario_id: str, template: ScenarioTemplate,
             source: ScenarioTemplate | None = None) -> LabSpec:
    """Hosts, networks, routes, files, capabilities and limits exactly as the template says.
    ``source``: the template before its render, which says which hosts are ``shared``
    (their service is a warm pool lab's already; none without it)."""
    shared = shared_hosts(source) if source is not None else frozenset()
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
            shared=c.name in shared,
            grading_address=c.grading_address,
            grading_identities=list(c.grading_identities),
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
