"""Which lab hosts a learner may open a terminal on: the template decides, server-side.

A host is open to the learner's terminal only when the lab's template marks it
`access: learner`; grader-only and internal hosts (and names the lab does not have) are
refused whatever the page or a hand-made request asks for. The refusal is a `Closing` the
terminal endpoint sends like its other refusals (JSON frame, then close code 4403).
"""

from __future__ import annotations

from forge.services.orchestrator.terminal_slots import Closing
from forge.templates.registry import TemplateRegistry

HOST_REFUSED_CODE = 4403


def host_refusal(registry: TemplateRegistry, template_id: str, host: str,
                 asked: str | None) -> Closing | None:
    """None when `host` (the token's) is a learner host of the template, else why not.

    `asked` is the host named in the request's query, if any: it must be the token's host.
    A template no longer loaded offers no terminal at all (fail closed).
    """
    if asked is not None and asked != host:
        return Closing(HOST_REFUSED_CODE, "terminal_host_mismatch",
                       "host: the terminal ticket was issued for another host of this lab.")
    allowed = registry.learner_hosts(template_id)
    if host in allowed:
        return None
    offered = ", ".join(allowed) or "none"
    return Closing(HOST_REFUSED_CODE, "terminal_host_not_allowed",
                   f"host: this lab offers terminals only on its learner hosts ({offered}).")
