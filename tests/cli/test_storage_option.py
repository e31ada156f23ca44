"""`forge --storage PATH`: one way to name the storage root, and a warning when a command
creates a new one (issue 17 item 8). Before: `forge apikey|entitlements|…` acted silently on
`./storage` of the current directory, so a key made from the wrong directory "didn't work"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from forge.cli import app
from forge.config import load_settings
from forge.identity.apikeys import verify_api_key
from forge.store.db import Database

from ..conftest import SQLITE_ONLY

WARNING = "creating a new storage root at"


def forge(env: dict[str, str | None], *args: str) -> tuple[int, str, str]:
    """Run `forge ARGS` in process; every variable of `env`, and STORAGE_ROOT, is restored
    afterwards (the global --storage option sets STORAGE_ROOT for the command: left set, it
    named this test's root to every later test of the worker)."""
    result = CliRunner().invoke(app, list(args),
                                env={"FORGE_ENV": "dev", "STORAGE_ROOT": None, **env})
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("engine", [SQLITE_ONLY])
def test_storage_option_beats_the_variable_and_a_fresh_root_is_announced_once(
        tmp_path: Path, engine: str) -> None:
    chosen, stray = tmp_path / "chosen", tmp_path / "stray"
    env: dict[str, str | None] = {"STORAGE_ROOT": str(stray), "FORGE_DB_URL": None}

    code, out, err = forge(env, "--storage", str(chosen), "apikey", "create",
                           "--tenant", "acme", "--subject", "alice")
    assert code == 0, err
    plaintext = dict(line.split(maxsplit=1) for line in out.splitlines())["api_key"]
    # The key lives in the root the option named; the variable's root was never made.
    assert not stray.exists()
    db = Database(load_settings({"FORGE_ENV": "dev", "STORAGE_ROOT": str(chosen)}).db_url)
    assert verify_api_key(db, plaintext) is not None
    warnings = [line for line in err.splitlines() if WARNING in line]
    assert warnings == [f"warning: {WARNING} {chosen} (STORAGE_ROOT/--storage); keys and "
                        "grants made here are seen only by services using this root"]

    # An existing root: no warning, and the key is listed from it by option or variable.
    code, out, err = forge(env, "--storage", str(chosen), "apikey", "list", "--json")
    assert code == 0 and WARNING not in err
    assert [k["subject"] for k in json.loads(out)["keys"]] == ["alice"]
    code, out, err = forge({"STORAGE_ROOT": str(chosen), "FORGE_DB_URL": None},
                           "apikey", "list", "--json")
    assert code == 0 and WARNING not in err and len(json.loads(out)["keys"]) == 1

    # The variable alone still works as before; a fresh root it names is announced too.
    code, out, err = forge(env, "apikey", "list", "--json")
    assert code == 0 and json.loads(out) == {"keys": []}
    assert err.count(WARNING) == 1 and str(stray) in err

    # Signing keys follow the same option (their own --storage still exists).
    signing = tmp_path / "signing-root"
    code, out, err = forge(env, "--storage", str(signing), "keys", "generate")
    assert code == 0, err
    assert (signing / "keys" / "signing" / "current").is_file()
    assert err.count(WARNING) == 1 and str(signing) in err
    code, _, err = forge(env, "--storage", str(signing), "keys", "rotate")
    assert code == 0 and WARNING not in err


def test_a_storage_path_naming_a_file_is_refused(tmp_path: Path) -> None:
    afile = tmp_path / "not-a-dir"
    afile.write_text("x")
    code, _, err = forge({"STORAGE_ROOT": None}, "--storage", str(afile), "keys", "list")
    assert code == 2 and "--storage" in err and "not a directory" in err
