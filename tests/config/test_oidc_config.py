"""The per-tenant OIDC file: a good one loads; each mistake is one line naming the field,
never the secret; spawn_service refuses to start on it (`forge serve` prints that line)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from forge.config import load_settings
from forge.config.settings import ConfigError
from forge.identity.oidc import OidcRefused, map_identity
from forge.identity.oidc_config import OidcConfigError, load_oidc, oidc_file, secure_url
from forge.services.spawn.app import build_app

from ..services.conftest import prod_environ

SECRET = "s3cret-value-that-must-never-be-printed"
GOOD: dict[str, Any] = {
    "display_name": "Acme Login", "issuer": "https://idp.acme.example",
    "client_id": "forge", "client_secret_env": "ACME_OIDC_SECRET",
    "redirect_uri": "https://forge.example/signin/oidc/acme/callback",
    "role_claim": "groups", "roles": {"instructor": ["teachers"]}, "group_claim": "groups",
}
ENV = {"ACME_OIDC_SECRET": SECRET}


def write(tmp_path: Path, **changes: Any) -> Path:
    body = {k: v for k, v in {**GOOD, **changes}.items() if v is not None}
    path = tmp_path / "oidc.yaml"
    path.write_text(yaml.safe_dump({"tenants": {"acme": body}}))
    return path


def test_a_good_file_loads_with_its_secret_kept_out_of_repr(tmp_path: Path) -> None:
    registry = load_oidc(write(tmp_path), ENV)
    tenant = registry.get("acme")
    assert tenant is not None and tenant.client_secret == SECRET
    assert SECRET not in repr(tenant) and SECRET not in repr(registry)
    assert tenant.config.scopes == ("openid", "profile", "email")
    assert registry.get("other") is None and registry.get("../acme") is None


@pytest.mark.parametrize(("changes", "field"), [
    ({"client_secret": SECRET}, "tenants.acme.client_secret: never put the secret"),
    ({"client_secret_env": None}, "tenants.acme.client_secret_env / client_secret_file"),
    ({"client_secret_env": "UNSET_VAR"}, "tenants.acme.client_secret_env: the variable"),
    ({"issuer": "http://idp.acme.example"}, "tenants.acme.issuer: "),
    ({"redirect_uri": "https://forge.example/elsewhere"}, "tenants.acme.redirect_uri: must "
                                                          "end with /signin/oidc/acme/callback"),
    ({"scopes": ["profile"]}, "tenants.acme.scopes: "),
    ({"roles": {"admin": ["x"]}}, "tenants.acme.roles: "),
    ({"token_auth": "private_key_jwt"}, "tenants.acme.token_auth: "),
    ({"colour": "blue"}, "tenants.acme.colour: "),
])
def test_each_mistake_names_its_field_and_never_the_secret(
        tmp_path: Path, changes: dict[str, Any], field: str) -> None:
    with pytest.raises(OidcConfigError) as caught:
        load_oidc(write(tmp_path, **changes), ENV)
    assert field in str(caught.value)
    assert SECRET not in str(caught.value)


def test_the_default_file_is_used_only_when_present(tmp_path: Path) -> None:
    assert oidc_file(None, tmp_path) is None
    (tmp_path / "oidc.yaml").write_text("tenants: {}\n")
    assert oidc_file(None, tmp_path) == tmp_path / "oidc.yaml"
    assert oidc_file(tmp_path / "x.yaml", tmp_path) == tmp_path / "x.yaml"


@pytest.mark.usefixtures("sqlite_only_store")
def test_spawn_service_refuses_to_start_on_a_bad_file(tmp_path: Path) -> None:
    path = write(tmp_path, issuer="ftp://idp")
    settings = load_settings(prod_environ(tmp_path / "storage", FORGE_ENV="dev",
                                          FORGE_OIDC_FILE=str(path)))
    with pytest.raises(ConfigError) as caught:
        build_app(settings)
    assert "tenants.acme.issuer" in str(caught.value)


def test_codes_and_secrets_go_only_to_https_endpoints() -> None:
    """A discovery document naming a plain-http token endpoint (off loopback) is refused, so
    the client secret and the code never travel in clear."""
    assert secure_url("https://idp.acme.example/token")
    assert secure_url("http://127.0.0.1:8443/token")  # a provider on this machine
    for bad in ("http://idp.acme.example/token", "ftp://idp/token", "https://", None,
                "https://user:pw@idp.example/token"):
        assert not secure_url(bad)


def test_claims_map_to_the_most_privileged_role_and_a_learner_list_closes_the_door(
        tmp_path: Path) -> None:
    """Which claim values give which role; with `learner` listed, nobody else signs in."""
    tenant = load_oidc(write(tmp_path, roles={"instructor": ["teachers"],
                                              "operator": ["admins"]}), ENV).get("acme")
    assert tenant is not None
    base = {"sub": "ada", "exp": 2_000_000_000}
    assert map_identity(tenant, base).role == "learner"
    assert map_identity(tenant, {**base, "groups": "teachers"}).role == "instructor"
    who = map_identity(tenant, {**base, "groups": ["teachers", "admins", "x" * 200]})
    assert who.role == "operator" and who.subject == "ada"
    closed = load_oidc(write(tmp_path, roles={"learner": ["students"],
                                              "instructor": ["teachers"]}), ENV).get("acme")
    assert closed is not None
    assert map_identity(closed, {**base, "groups": ["students"]}).role == "learner"
    assert map_identity(closed, {**base, "groups": ["teachers"]}).role == "instructor"
    with pytest.raises(OidcRefused) as refused:
        map_identity(closed, {**base, "groups": ["visitors"]})
    assert refused.value.status == 403 and "not given your account access" in refused.value.message
    with pytest.raises(OidcRefused):
        map_identity(closed, {**base, "sub": "not a valid id!"})
    with pytest.raises(OidcConfigError) as caught:
        load_oidc(write(tmp_path, role_claim=None), ENV)
    assert "tenants.acme: " in str(caught.value) and "roles needs role_claim" in str(caught.value)
