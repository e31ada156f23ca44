"""A lab is ready once its services listen: ``create`` returns only when every port its
hosts declare (``HostSpec.ready_ports``, a template's ``ready_ports``) accepts a TCP
connection inside the host, fails naming host and port past the deadline and leaves
nothing behind, and a warm pool claim waits for the services it starts."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from forge.authoring.prove import StepResult, _error
from forge.authoring.suite import table
from forge.runtime.base import HostSpec, LabSpec, ServicesNotReady, SpecError, SubnetSpec
from forge.runtime.local import LocalRuntime
from tests.runtime.helpers import SERVER, leftovers, probe

from ..support.one_lab import own_runtime

pytestmark = pytest.mark.root

# Listens only after a while (a service that reads, seeds or compiles first); the delay is
# long beside an exec's own start, so a create that did not wait meets a closed port.
LATE = "sleep 3; exec python3 /srv/serve.py {port} up"


def lab(lab_id: str, command: str, ports: list[int], port: int = 7000) -> LabSpec:
    """One service host ``box`` (10.204.0.1) and a ``peer``."""
    return LabSpec(lab_id, [SubnetSpec("lan", "10.204.0.0/24")], [
        HostSpec("box", networks=[("lan", None)], command=command.format(port=port),
                 files={"/srv/serve.py": SERVER}, ready_ports=ports),
        HostSpec("peer", networks=[("lan", None)])])


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[LocalRuntime]:
    with own_runtime(tmp_path / "state", ready_timeout_s=2) as rt:
        yield rt


def test_create_returns_once_a_late_service_listens(tmp_path: Path) -> None:
    """Before, create returned as soon as the sandboxes existed: a learner, a grader or a
    script connecting at once met a refused port for the first seconds."""
    with own_runtime(tmp_path / "state", ready_timeout_s=60) as rt:
        info = rt.create(lab("scn-00000000000000c1", LATE, [7000]))
        assert info.state == "running"
        # From another host, over the lab network: it answers on the first try.
        assert probe(rt, info.lab_id, "peer", "10.204.0.1", 7000) == "ok:up"


def test_a_service_that_never_listens_fails_the_create_and_leaves_nothing(
        runtime: LocalRuntime, tmp_path: Path) -> None:
    """The service here fails at once: the error said only that nothing listened, so the
    author looked for a port problem. It now also carries (``output``, not the message a
    learner reads) how the service ended and the end of its output."""
    rt = runtime
    failing = "echo 'serve: cannot read [/srv/app.conf]' >&2; exit 3"
    with pytest.raises(ServicesNotReady) as failed:
        rt.create(lab("scn-00000000000000c2", failing, [7000, 7001]))
    message = str(failed.value)
    assert "host box" in message and "7000, 7001" in message and "ready_ports" in message
    assert "app.conf" not in message
    assert failed.value.output == ("its service exited with status 3; its output ends:\n"
                                   "serve: cannot read [/srv/app.conf]")
    # `forge lab test` shows it in the step's row, as text (not rich markup: "[/srv…]"
    # was a closing tag matching none, and the table's print raised MarkupError).
    shown = io.StringIO()
    Console(file=shown, width=300).print(table("box", [StepResult(
        "untouched", "runs", _error(failed.value), False, 1.0)], 1.0))
    assert "serve: cannot read [/srv/app.conf]" in shown.getvalue()
    assert rt.list() == []
    assert leftovers(rt.names.prefix, rt.names.state_dir) == []
    lab_dir = rt.names.lab_dir("scn-00000000000000c2")
    assert lab_dir not in rt.uids.claimed().values()  # its uid pair is free again
    # The id is free again: the same lab, its service now listening, is created.
    rt.create(lab("scn-00000000000000c2", "exec python3 /srv/serve.py {port} up", [7000]))
    assert probe(rt, "scn-00000000000000c2", "box", "127.0.0.1", 7000) == "ok:up"


def test_a_port_that_is_no_tcp_port_is_refused_naming_the_field(runtime: LocalRuntime) -> None:
    with pytest.raises(SpecError) as bad:
        runtime.create(lab("scn-00000000000000c3", "exec sleep 1000", [70000]))
    assert bad.value.field == "hosts[0].ready_ports[0]"
    with pytest.raises(SpecError) as none:
        runtime.create(LabSpec("scn-00000000000000c3", [SubnetSpec("lan", "10.204.0.0/24")],
                               [HostSpec("box", networks=[("lan", None)], ready_ports=[22])]))
    assert none.value.field == "hosts[0].ready_ports"
    assert runtime.list() == []


def test_a_pool_claim_waits_for_the_services_it_starts(runtime: LocalRuntime) -> None:
    """A pool lab's services start at its claim (they carry the scenario's values): the
    claim returns once they listen; the pool's own labs, which run none, never wait."""
    rt = runtime
    rt.ready_timeout_s = 60
    rt.warm({"svc": (lab("x", LATE, [7000]), 1)}, quiet_s=0.05, poll_s=0.1)
    assert rt.warm_pool is not None
    end = time.monotonic() + 60
    while not rt.warm_pool.ready_ids():
        assert time.monotonic() < end, "the pool never filled"
        time.sleep(0.05)
    info = rt.create(lab("scn-00000000000000c4", LATE, [7000]))
    assert rt.warm_pool.stats.claimed == 1
    assert probe(rt, info.lab_id, "peer", "10.204.0.1", 7000) == "ok:up"


def test_a_lab_found_built_is_waited_for_as_its_create_would(runtime: LocalRuntime) -> None:
    """An orchestrator restarted while a create waited finds the lab built (the resume of
    its launch): ``wait_ready`` waits for the services as the create did, and says which
    never listened."""
    rt = runtime
    spec = lab("scn-00000000000000c5", "exec python3 /srv/serve.py {port} up", [7000])
    rt.create(spec)
    rt.wait_ready(spec)  # listening: returns
    silent = lab("scn-00000000000000c5", "exec python3 /srv/serve.py {port} up", [7000, 7002])
    with pytest.raises(ServicesNotReady, match=r"^host box: nothing listened on TCP port 7002 "):
        rt.wait_ready(silent)
    assert [i.lab_id for i in rt.list()] == ["scn-00000000000000c5"]  # the caller's to end


def service_pid(rt: LocalRuntime, lab_id: str) -> str:
    """The pid of the python serving port 7000 on box, as the host sees it."""
    out = rt.exec(lab_id, "box", ["pgrep", "-f", "^python3 /srv/serve.py "])
    return out.stdout_text.strip()


def test_a_shared_service_listens_in_the_pool_and_a_claim_keeps_it(
        runtime: LocalRuntime) -> None:
    """A host whose service takes no scenario's value (``shared``) is seeded and started
    when the pool builds the lab, which counts as ready only once it listens; the claim
    neither starts it again nor waits for it (the same process, listening at once)."""
    rt = runtime
    rt.ready_timeout_s = 60
    shared = lab("x", LATE, [7000])
    shared.hosts[0] = HostSpec(**{**shared.hosts[0].__dict__, "shared": True})
    rt.warm({"svc": (shared, 1)}, quiet_s=0.05, poll_s=0.1)
    assert rt.warm_pool is not None
    end = time.monotonic() + 60
    while not rt.warm_pool.ready_ids():
        assert time.monotonic() < end, "the pool never filled"
        time.sleep(0.05)
    pool_id = rt.warm_pool.ready_ids()[0]
    # Ready in the pool means listening already.
    assert probe(rt, pool_id, "peer", "10.204.0.1", 7000) == "ok:up"
    before = service_pid(rt, pool_id)
    assert before
    claim = shared.__class__(**{**shared.__dict__, "lab_id": "scn-00000000000000c6"})
    info = rt.create(claim)
    assert rt.warm_pool.stats.claimed == 1
    assert service_pid(rt, info.lab_id) == before  # not started again at the claim
    assert probe(rt, info.lab_id, "peer", "10.204.0.1", 7000) == "ok:up"
