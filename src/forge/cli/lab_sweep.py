"""The labs `forge up --teardown-labs` and `forge demo` destroy when they stop.

Every lab of the installation's lab nodes, but a `foreign` one (another installation's
with the same prefix) and those a caller keeps (the demo leaves the labs a stopped `forge
up` kept for its next start); their scenarios end `failed` with the reason and their
quota slots are freed. A node that fails does not stop the others.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection
from dataclasses import dataclass, field

from forge.config.settings import Settings, load_settings
from forge.stack.topology import Topology


@dataclass
class LabTeardown:
    """What `--teardown-labs` did: labs destroyed, and one line per node that failed."""

    destroyed: int = 0
    failures: list[str] = field(default_factory=list)


def held_labs(settings: Settings) -> frozenset[str]:
    """The labs `settings`' runtime holds now (none when it cannot be asked): what a
    platform started later must leave to the next `forge up`, whose learners' they are."""
    from forge.runtime.factory import make_runtime

    try:
        runtime = make_runtime(settings)
    except Exception:  # the teardown reports the same failure
        return frozenset()
    try:
        return frozenset(info.lab_id for info in runtime.list())
    except Exception:
        return frozenset()
    finally:
        runtime.close()


def teardown_labs(settings: Settings, topology: Topology | None = None,
                  env: dict[str, str] | None = None,
                  keep: Collection[str] = ()) -> LabTeardown:
    """Destroy every lab of this installation (for `--teardown-labs`), but those in `keep`:
    of every lab node's runtime prefix when `topology` is given, else of `settings`'."""
    nodes = [("local", settings)]
    if topology is not None:
        base = dict(os.environ if env is None else env)
        nodes = [(f"node {node.node or node.name}",
                  load_settings({**base, **node.environ("127.0.0.1", 0)}))
                 for node in topology.nodes]
    return teardown_nodes(nodes, keep)


def teardown_nodes(nodes: list[tuple[str, Settings]],
                   keep: Collection[str] = ()) -> LabTeardown:
    """Destroy every lab of each named node's runtime but those in `keep`; a node that
    fails does not stop the others (each failure is reported, with what that node did
    destroy counted)."""
    from forge.runtime.factory import make_runtime

    result = LabTeardown()
    for label, one in nodes:
        labs: list[str] = []
        try:
            runtime = make_runtime(one)
        except Exception as exc:  # reported; the other nodes still go
            result.failures.append(f"{label}: {exc}")
            continue
        gone: list[str] = []
        try:
            # Not a ``foreign`` lab: another installation's with the same prefix.
            labs = [info.lab_id for info in runtime.list()
                    if info.state != "foreign" and info.lab_id not in keep]
            runtime.destroy_many(labs)
            gone = labs
        except Exception as exc:  # reported; the other nodes still go
            result.failures.append(f"{label}: {exc}")
            with contextlib.suppress(Exception):
                left = {info.lab_id for info in runtime.list()}
                gone = [i for i in labs if i not in left]
        finally:
            runtime.close()
        result.destroyed += len(gone)
        try:
            _end_scenarios(one, gone)
        except Exception as exc:  # reported: the next start fails them instead
            result.failures.append(f"{label}: the scenarios of its destroyed labs could not "
                                   f"be ended in the store: {exc}")
    return result


def _end_scenarios(settings: Settings, lab_ids: list[str]) -> None:
    """The destroyed labs' scenarios end ``failed`` with the reason, slots freed."""
    from forge.lifecycle.torn_down import end_torn_down
    from forge.store.db import Database

    if not lab_ids:
        return
    db = Database(settings.db_url)
    try:
        end_torn_down(db, settings.storage_root, lab_ids)
    finally:
        db.dispose()
