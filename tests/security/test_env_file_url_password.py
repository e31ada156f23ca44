"""Attack: as another local user, read the database password from the env file of
`forge up --env-file forge.env`.

Before: the file was refused when readable by other users only if it set one of the named
secrets (the HMAC secrets, OPERATOR_TOKEN, the NATS passwords). One that set only
`FORGE_DB_URL=postgresql+psycopg://forge:PASSWORD@db/forge` (the runbook's PostgreSQL
setup) was read at mode 0644, so every local user of the machine had the state store's
password: every API key hash, grant, scenario and its answers. Now a variable whose value
is a URL with a password counts as a secret, whatever its name.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from forge.stack.envfile import EnvFileError, read_env_file

PASSWORD = "DbPassw0rdSecret"


def _env_file(tmp_path: Path, text: str, mode: int) -> Path:
    path = tmp_path / "forge.env"
    path.write_text(text)
    os.chmod(path, mode)
    return path


@pytest.mark.parametrize("line", [
    f"FORGE_DB_URL=postgresql+psycopg://forge:{PASSWORD}@db.example:5432/forge",
    f"FORGE_DB_URL='postgres://forge:{PASSWORD}@db/forge?sslmode=require'",
    f"NATS_URL=nats://a:4222, nats://spawn:{PASSWORD}@b:4222",
    # A generated (base64) password with a "/" in it, which SQLAlchemy reads as a password.
    f"FORGE_DB_URL=postgresql+psycopg://forge:ab/{PASSWORD}+x=@db/forge",
    # libpq's password option.
    f"FORGE_DB_URL=postgresql://forge@db/forge?sslmode=require&password={PASSWORD}",
])
@pytest.mark.no_store
def test_a_url_with_a_password_in_a_file_others_can_read_is_refused(
        tmp_path: Path, line: str) -> None:
    path = _env_file(tmp_path, f"FORGE_ENV=prod\n{line}\n", 0o644)
    name = line.split("=", 1)[0]
    with pytest.raises(EnvFileError) as refused:
        read_env_file(path)
    assert str(refused.value) == (
        f"{path}: sets {name} but is readable by other users (owner uid {os.geteuid()}, "
        f"mode 644); run `chmod 600 {path}`")
    assert PASSWORD not in str(refused.value)
    os.chmod(path, 0o600)
    assert PASSWORD in read_env_file(path)[name]


@pytest.mark.no_store
def test_a_url_without_a_password_may_be_read_by_others(tmp_path: Path) -> None:
    text = ("FORGE_DB_URL=postgresql+psycopg://forge@db/forge\n"
            "NATS_URL=nats://a:4222,nats://b:4222\nOPA_URL=http://opa:8181/v1\n"
            "FORGE_DB_URL_NOTE=sqlite:////srv/forge/forge.db\n")
    path = _env_file(tmp_path, text, 0o644)
    assert read_env_file(path)["NATS_URL"] == "nats://a:4222,nats://b:4222"
