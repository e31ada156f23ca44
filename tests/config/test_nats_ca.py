"""FORGE_NATS_CA: the CA whose servers alone get a service's NATS password (over TLS)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from forge.bus.dial import connect
from forge.bus.errors import BusUnavailable
from forge.bus.server import NatsServer
from forge.bus.tls import BusTls
from forge.config import ConfigError, load_settings
from forge.services.common.bus import bus_credentials


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"FORGE_ENV": "dev", "STORAGE_ROOT": str(tmp_path / "root"), **extra}


def test_unset_or_empty_is_no_ca(tmp_path: Path) -> None:
    assert load_settings(_env(tmp_path)).nats_ca is None
    assert load_settings(_env(tmp_path, FORGE_NATS_CA="")).nats_ca is None


def test_a_ca_file_reaches_every_services_credentials(tmp_path: Path) -> None:
    tls = BusTls.generate(tmp_path / "tls")
    settings = load_settings(_env(tmp_path, FORGE_NATS_CA=str(tls.ca_file)))
    assert settings.nats_ca == tls.ca_file.read_text()
    assert bus_credentials(settings, "spawn").server_ca == tls.ca_file.read_text()
    assert "BEGIN CERTIFICATE" not in repr(settings)


@pytest.mark.parametrize("content", [None, b"", b"not a certificate\n", b"x" * (1 << 21)])
def test_a_file_that_is_no_ca_is_a_problem_naming_the_variable(
        tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        load_settings(_env(tmp_path, FORGE_NATS_CA=str(path)))
    [problem] = err.value.problems
    assert problem.startswith("FORGE_NATS_CA ") and "PEM CA certificates" in problem
    assert str(path) not in problem


def test_a_tls_url_without_its_ca_says_what_is_missing(tmp_path: Path) -> None:
    with NatsServer(tmp_path / "store", tls=BusTls.generate(tmp_path / "tls")) as server:
        plain = server.auth.credentials("spawn")  # no CA: what a forgotten FORGE_NATS_CA gives
        with pytest.raises(BusUnavailable) as err:
            asyncio.run(connect(server.url, "forge-test", credentials=plain, timeout=10))
    assert "set FORGE_NATS_CA" in str(err.value)
    assert plain.password not in str(err.value)


def test_a_bundle_gives_its_certificates_only(tmp_path: Path) -> None:
    """A bundle as distributions ship them (comments, any text) is taken, and only its
    certificates go further: not its words, nor a private key pasted in by mistake."""
    tls = BusTls.generate(tmp_path / "tls")
    cert = tls.ca_file.read_bytes()
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes("# Autorité de certification — Forge\n".encode() + cert
                       + tls.key_file.read_bytes() + b"trailing words\n")
    settings = load_settings(_env(tmp_path, FORGE_NATS_CA=str(bundle)))
    assert settings.nats_ca == cert.decode()
    assert "PRIVATE KEY" not in (settings.nats_ca or "")
