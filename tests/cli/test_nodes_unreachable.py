"""`forge nodes list` when the node ORCHESTRATOR_URL names is down (the lost node the
operator wants to see): it used to say only `orchestrator unreachable at URL
(ConnectError)`, leaving the operator without the list exactly when a node was lost. It
now says that any live node answers and how to ask one. Nothing listens on the port."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from .test_storage_option import forge


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_nodes_list_on_a_dead_node_says_to_ask_another(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    for args in (("nodes", "list"), ("nodes", "drain", "node-2")):
        code, out, err = forge({"ORCHESTRATOR_URL": url, "FORGE_DB_URL": None},
                               "--storage", str(tmp_path / "storage"), *args)
        assert code == 1, (args, out, err)
        said = [line for line in err.splitlines() if line.startswith("error: ")]
        assert said == [f"error: orchestrator unreachable at {url} (ConnectError); "
                        "ORCHESTRATOR_URL names the lab node to ask: any live node answers "
                        "for all of them, so set it to another node's FORGE_NODE_URL"], err
        assert "Traceback" not in out + err


def test_with_nothing_running_it_says_to_start_the_platform(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A newcomer's `forge nodes list` (or `forge scenarios …`) with no platform up, or one
    up on another storage root, called the default port and was told to ask "another
    node": with neither ORCHESTRATOR_URL nor a `forge up` on the root, it now says to start
    the platform or point the command at it."""
    from forge.cli.context import unreachable_next_step
    from forge.config import load_settings

    root = tmp_path / "storage"
    monkeypatch.delenv("ORCHESTRATOR_URL", raising=False)
    settings = load_settings({"FORGE_ENV": "dev", "STORAGE_ROOT": str(root)})
    assert unreachable_next_step(settings, "ORCHESTRATOR_URL", "; other") == (
        f"; no forge up runs on {root} and ORCHESTRATOR_URL is unset: start the platform "
        "(forge up), or point this command at it (forge --storage ROOT of its forge up, "
        "or ORCHESTRATOR_URL)")
    monkeypatch.setenv("ORCHESTRATOR_URL", "http://127.0.0.1:1")
    assert unreachable_next_step(settings, "ORCHESTRATOR_URL", "; other") == "; other"
