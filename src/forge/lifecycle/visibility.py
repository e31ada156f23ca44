"""What a learner may see of a lab's hosts.

Finding the other hosts is often the exercise itself (netplus asks for the server's
address), so learners are shown only the hosts they have a terminal on (the template's
`access: learner` hosts; "learner" when not told); operators see every host.
"""

from __future__ import annotations

from collections.abc import Collection

from forge.templates.dsl_limits import LEARNER_HOST

__all__ = ["LEARNER_HOST", "learner_view"]


def learner_view(hosts: dict[str, dict[str, str]],
                 learner_hosts: Collection[str] = (LEARNER_HOST,),
                 ) -> tuple[dict[str, dict[str, str]], int]:
    """(the hosts shown to the learner, how many others the lab has)."""
    shown = {name: nets for name, nets in hosts.items() if name in learner_hosts}
    return shown, len(hosts) - len(shown)
