"""Free ports for Forge's own servers come from below the kernel's ephemeral range, where
no outgoing connection takes one between picking it and binding it."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from forge.bus import ports


def test_a_free_port_is_below_the_ephemeral_range_and_bindable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    usual = tmp_path / "ip_local_port_range"
    usual.write_text("32768\t60999\n")  # Linux's default (this machine's may differ)
    monkeypatch.setattr(ports, "_EPHEMERAL_RANGE", usual)
    floor = ports._ephemeral_floor()
    assert floor == 32768
    for _ in range(20):
        port = ports.free_port()
        assert ports._PORTS_FLOOR <= port < floor
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((ports.LOOPBACK, port))  # free when returned


def test_a_narrow_or_unreadable_range_falls_back_to_the_kernels_choice(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    narrow = tmp_path / "ip_local_port_range"
    narrow.write_text("10500\t60999\n")
    monkeypatch.setattr(ports, "_EPHEMERAL_RANGE", narrow)
    assert ports._ephemeral_floor() == 10500
    assert ports.free_port() >= 10500  # from bind(0): the range below is too small to try
    monkeypatch.setattr(ports, "_EPHEMERAL_RANGE", tmp_path / "missing")
    assert ports._ephemeral_floor() == 32768
