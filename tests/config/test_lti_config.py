"""The LTI file: a registration per LMS platform bound to one tenant, and the tool key;
every problem names the field, the key's PEM is never in the file nor in a repr."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from forge.identity.lti_config import LtiConfigError, generate_key, load_lti


def _write(tmp: Path, data: object) -> Path:
    path = tmp / "lti.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _good(tmp: Path) -> dict[str, object]:
    key = tmp / "tool.pem"
    if not key.exists():
        generate_key(key)
    return {"tool": {"base_url": "https://forge.example.org/", "private_key_file": str(key)},
            "platforms": {"canvas": {
                "tenant": "acme", "issuer": "https://canvas.example.org", "client_id": "1000",
                "deployment_ids": ["1:abc"],
                "auth_login_url": "https://sso.canvas.example.org/api/lti/authorize_redirect",
                "auth_token_url": "https://sso.canvas.example.org/login/oauth2/token",
                "key_set_url": "https://sso.canvas.example.org/api/lti/security/jwks"}}}


def test_a_good_file_loads_with_our_public_key(tmp_path: Path) -> None:
    reg = load_lti(_write(tmp_path, _good(tmp_path)))
    assert reg.base_url == "https://forge.example.org"
    assert reg.url("/lti/launch") == "https://forge.example.org/lti/launch"
    (jwk,) = reg.jwks()["keys"]
    assert jwk["kty"] == "RSA" and jwk["alg"] == "RS256" and "d" not in jwk
    assert jwk["kid"] == reg.key.kid and "PRIVATE" not in repr(reg)
    canvas = reg.find("https://canvas.example.org", "1000")
    assert canvas is not None and canvas.tenant_id == "acme"
    assert reg.find("https://canvas.example.org", "other") is None
    assert (tmp_path / "tool.pem").stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        generate_key(tmp_path / "tool.pem")  # a key is never overwritten


@pytest.mark.parametrize("change,problem", [
    (("platforms", "canvas", "tenant", "no spaces"), "platforms.canvas.tenant"),
    (("platforms", "canvas", "deployment_ids", []), "platforms.canvas.deployment_ids"),
    (("platforms", "canvas", "private_key", "x"), "platforms.canvas.private_key"),
    (("platforms", "canvas", "subject_prefix", "LTI"), "platforms.canvas.subject_prefix"),
    (("tool", "base_url", "https://forge.example.org/app"), "tool.base_url"),
    (("tool", "private_key_file", "/nonexistent/key.pem"), "tool.private_key_file"),
])
def test_each_problem_names_its_field(tmp_path: Path, change: tuple[object, ...],
                                      problem: str) -> None:
    data = _good(tmp_path)
    *path, name, value = change
    node: dict[str, object] = data
    for part in path:
        node = node[part]  # type: ignore[assignment]
    node[str(name)] = value
    with pytest.raises(LtiConfigError, match=problem.replace(".", r"\.")):
        load_lti(_write(tmp_path, data))


def test_two_registrations_of_one_client_are_refused(tmp_path: Path) -> None:
    data = _good(tmp_path)
    platforms = data["platforms"]
    assert isinstance(platforms, dict)
    platforms["copy"] = dict(platforms["canvas"])
    with pytest.raises(LtiConfigError, match="same issuer and client_id"):
        load_lti(_write(tmp_path, data))


def test_an_invalid_file_stops_both_services_at_start(tmp_path: Path,
                                                      sqlite_only_store: str) -> None:
    from forge.config import load_settings
    from forge.config.settings import ConfigError
    from forge.services.scoreboard.app import build_app as build_scoreboard
    from forge.services.spawn.app import build_app as build_spawn

    data = _good(tmp_path)
    data["platforms"]["canvas"]["key_set_url"] = "http://10.0.0.1/jwks"  # type: ignore[index]
    env = {"FORGE_ENV": "dev", "STORAGE_ROOT": str(tmp_path / "s"),
           "FORGE_DB_URL": f"sqlite:///{tmp_path / 'forge.db'}",
           "FORGE_LTI_FILE": str(_write(tmp_path, data))}
    for build in (build_spawn, build_scoreboard):
        with pytest.raises(ConfigError, match=r"platforms\.canvas\.key_set_url"):
            build(load_settings(env))
