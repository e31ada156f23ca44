"""An operator command whose PostgreSQL cannot be reached (down, restarting) says so in one
line (exit 1) naming what the driver said, not with a Python traceback: `forge apikey
create` printed 469 lines of rich traceback with the cause at the end. Nothing is made, and
the URL's password is never printed. A real psycopg connection to a socket directory where
no server listens."""

from __future__ import annotations

from pathlib import Path

from .test_storage_option import forge

HINT = "check that the database FORGE_DB_URL names is up and reachable, and run it again"


def test_commands_on_an_unreachable_postgres_refuse_in_one_line(tmp_path: Path) -> None:
    nowhere = tmp_path / "no-server"
    nowhere.mkdir()
    env: dict[str, str | None] = {
        "FORGE_DB_URL": f"postgresql+psycopg://forge:pw-not-shown@/forge?host={nowhere}"}
    root = str(tmp_path / "storage")
    for args in (("apikey", "create", "--tenant", "acme", "--subject", "bob"),
                 ("entitlements", "grant", "--tenant", "acme", "--plan", "PRO")):
        code, out, err = forge(env, "--storage", root, *args)
        assert code == 1, (args, out, err)
        # The first command also announces the new storage root, on a line of its own.
        said = [line for line in err.splitlines() if not line.startswith("warning: ")]
        assert len(said) == 1 and "Traceback" not in err + out, (args, err)
        assert said[0].startswith("forge: not done, the state store cannot be used just now ("), err
        assert str(nowhere) in said[0] and said[0].endswith(HINT), (args, err)
        assert "pw-not-shown" not in err + out
