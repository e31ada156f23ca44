"""What a learner may see of a lab's hosts.

Finding the other hosts is often the exercise itself (netplus asks for the server's
address), so learners are shown only their own workstation; operators see every host.
"""

from __future__ import annotations

from forge.templates.dsl_limits import LEARNER_HOST

__all__ = ["LEARNER_HOST", "learner_view"]


def learner_view(hosts: dict[str, dict[str, str]]) -> tuple[dict[str, dict[str, str]], int]:
    """(the hosts shown to the learner, how many others the lab has)."""
    shown = {name: nets for name, nets in hosts.items() if name == LEARNER_HOST}
    return shown, len(hosts) - len(shown)
