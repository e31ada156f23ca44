"""A port outside 0-65535 given to `forge up`, `forge demo` or `forge serve` is refused as a
bad argument (exit 2, one line naming the option) before anything is made. Before: the
number reached `socket.bind` and the operator got an OverflowError traceback (exit 1), after
`forge up` had already taken the storage lock and made keys and secrets under the root."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from forge.cli import app

from ..live_server import distinct_ports
from ..support.prefixes import runtime_prefix

CASES = [
    ("up", "--spawn-port", "70000"),
    ("up", "--orchestrator-port", "-1"),
    ("up", "--scoreboard-port", "65536"),
    ("demo", "--spawn-port", "70000"),
    ("demo", "--scoreboard-port", "-5"),
    ("serve", "--port", "70000"),
]


@pytest.mark.no_store  # refused while the arguments are parsed: no store is ever opened
@pytest.mark.parametrize(("command", "option", "value"), CASES)
def test_a_port_out_of_range_is_a_usage_error(tmp_path: Path, command: str, option: str,
                                              value: str) -> None:
    root = tmp_path / "root"
    argv = ["--storage", str(root), command]
    argv += ["spawn", option, value] if command == "serve" else [option, value]
    result = CliRunner().invoke(app, argv, env={"FORGE_ENV": "dev", "STORAGE_ROOT": None,
                                                "FORGE_RUNTIME_PREFIX": runtime_prefix("p")})
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output and "OverflowError" not in result.output
    said = " ".join(result.stderr.replace("│", " ").split())
    assert f"Invalid value for '{option}'" in said
    assert ("less than or equal to 65535" in said) == (int(value) > 0)
    assert not root.exists()  # no lock, key or secret made for a refused start


@pytest.mark.no_store  # refused while the arguments are parsed: no store is ever opened
@pytest.mark.parametrize(("command", "option"), [("up", "--ready-timeout"),
                                                 ("demo", "--timeout")])
@pytest.mark.parametrize("value", ["-1", "0", "nan"])
def test_a_wait_that_is_no_number_of_seconds_is_a_usage_error(
        tmp_path: Path, command: str, option: str, value: str) -> None:
    """`forge up --ready-timeout -1` (or 0, or nan) started every service and NATS, then
    stopped them all at once "not ready within -1 s"; `forge demo --timeout -5` did the
    same. Such a wait is now refused while parsing, before anything starts. (Free ports of
    its own: were it not refused, what starts is this test's, and stops at once.)"""
    root = tmp_path / "root"
    ports = distinct_ports(4)
    named = ["--spawn-port", str(ports[0]), "--orchestrator-port", str(ports[1]),
             "--scoreboard-port", str(ports[2])]
    named += ["--nats-port", str(ports[3])] if command == "up" else []
    result = CliRunner().invoke(app, ["--storage", str(root), command, *named, option, value],
                                env={"FORGE_ENV": "dev", "STORAGE_ROOT": None,
                                     "FORGE_RUNTIME_PREFIX": runtime_prefix("p")})
    assert result.exit_code == 2, result.output
    said = " ".join(result.stderr.replace("│", " ").split())
    assert f"Invalid value for '{option}'" in said and "Traceback" not in result.output
    assert not root.exists()
