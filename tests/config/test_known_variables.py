"""A misspelt variable is named, never silently ignored (`FORGE_EVN=prod` ran in dev)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from forge.cli.up import prepare
from forge.config import load_settings
from forge.config.known_variables import KNOWN_VARIABLES, unknown_variable_warnings

DOCS = Path(__file__).resolve().parents[2] / "docs"
SECRETS = ("SAT_HMAC_SECRET", "ET_HMAC_SECRET", "RECEIPT_HMAC_SECRET", "OPERATOR_TOKEN")


def _prod(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {"FORGE_ENV": "prod", "STORAGE_ROOT": str(tmp_path)}
    env.update({n: f"{n.lower()}-value-that-is-long-enough-0123456789" for n in SECRETS})
    return {**env, **extra}


@pytest.mark.no_store
def test_a_misspelt_variable_is_a_warning_naming_the_one_meant(tmp_path: Path) -> None:
    settings = load_settings(_prod(tmp_path, FORGE_EVN="prod", OPA_POLICY_HASHH="a" * 64,
                                   SAT_HMAC_SECERT="not shown", FORGE_MY_OWN="x",
                                   LANG="C.UTF-8", NATS_SPAWN_PASSWORD_NEXT="n" * 40))
    assert settings.warnings == (
        "FORGE_EVN is set, but Forge reads no variable of that name (did you mean "
        "FORGE_ENV?): it has no effect",
        "FORGE_MY_OWN is set, but Forge reads no variable of that name: it has no effect",
        "OPA_POLICY_HASHH is set, but Forge reads no variable of that name (did you mean "
        "OPA_POLICY_HASH?): it has no effect",
        "SAT_HMAC_SECERT is set, but Forge reads no variable of that name (did you mean "
        "SAT_HMAC_SECRET?): it has no effect")
    assert not any("not shown" in w for w in settings.warnings)


def test_every_variable_the_docs_name_is_known() -> None:
    named = {m for doc in DOCS.glob("*.md")
             for m in re.findall(r"\bFORGE_[A-Z0-9_]*[A-Z0-9]\b", doc.read_text())}
    named -= {"FORGE_NODE", "FORGE_NODE_CAPACITY",  # `FORGE_NODE_*`: a family, not a name
              "FORGE_EVN"}  # the runbook's example of a typo
    assert named and unknown_variable_warnings(dict.fromkeys(named, "x")) == []
    assert named <= KNOWN_VARIABLES


@pytest.mark.no_store
def test_forge_up_names_a_misspelt_variable_of_its_env_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env_file = tmp_path / "forge.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in _prod(tmp_path).items())
                        + "FORGE_SIGNING_KEYDIR=/srv/keys\n")
    env_file.chmod(0o600)
    env, _ = prepare(env_file, tmp_path / "storage")
    assert env["FORGE_SIGNING_KEYDIR"] == "/srv/keys"
    assert ("forge up: warning: FORGE_SIGNING_KEYDIR is set, but Forge reads no variable "
            "of that name (did you mean FORGE_SIGNING_KEY_DIR?): it has no effect"
            ) in capsys.readouterr().err
