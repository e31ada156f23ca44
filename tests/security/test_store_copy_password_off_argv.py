"""Attack: as another local user, read the old database's password from the process
table while the operator moves the state store with `forge store copy --from URL`.

Before: the runbook's `--from URL` took the source store's URL, password and all, on the
command line, where every local user reads it in /proc/PID/cmdline (`ps`) for as long as
the copy runs (minutes for a large store, for ever against a server that does not answer).
Now a `--from` given on the command line with a password in it is refused (exit 2, nothing
copied, the password never repeated), and the URL is taken from FORGE_STORE_COPY_FROM,
which no other user can read.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from forge.store import upgrade

from ..cli.test_storage_option import forge

PASSWORD = "FromPassw0rdSecret"

pytestmark = pytest.mark.usefixtures("sqlite_only_store")


@pytest.mark.parametrize("source", [
    f"postgresql+psycopg://forge:{PASSWORD}@127.0.0.1:1/old",
    # libpq takes the password as `?password=` as well; SQLAlchemy's URL.password does not
    # see it there, so that spelling went through to the process table (and into the
    # "cannot be read" message, which hid only the password after the user name).
    f"postgresql://forge@127.0.0.1:1/old?sslmode=disable&password={PASSWORD}",
], ids=["after-the-user", "as-the-url-option"])
def test_a_source_password_on_the_command_line_is_refused(tmp_path: Path, source: str) -> None:
    target = tmp_path / "new.db"
    code, out, err = forge(
        {"FORGE_DB_URL": f"sqlite:///{target}", "FORGE_STORE_COPY_FROM": None},
        "--storage", str(tmp_path / "storage"), "store", "copy", "--from", source)
    assert code == 2, err
    said = " ".join(err.replace("│", " ").split())
    assert "Invalid value for --from: a password on the command line is readable by every " \
           "local user (ps)" in said, said
    assert "FORGE_STORE_COPY_FROM" in said
    assert PASSWORD not in out + err
    assert not target.exists()  # nothing was opened, nothing written


def test_a_source_it_cannot_read_is_named_without_its_option_password(tmp_path: Path) -> None:
    target = tmp_path / "new.db"
    code, out, err = forge(
        {"FORGE_DB_URL": f"sqlite:///{target}", "FORGE_STORE_COPY_FROM":
         f"postgresql://forge@127.0.0.1:1/old?password={PASSWORD}"},
        "--storage", str(tmp_path / "storage"), "store", "copy")
    assert code == 1, err
    assert "the store to copy from (--from: postgresql+psycopg://forge@127.0.0.1:1/old?" \
           "connect_timeout=10&password=***) cannot be read" in err, err
    assert PASSWORD not in out + err


def test_the_source_comes_from_the_variable(tmp_path: Path) -> None:
    source, target = tmp_path / "old.db", tmp_path / "new.db"
    upgrade(f"sqlite:///{source}")
    code, out, err = forge(
        {"FORGE_DB_URL": f"sqlite:///{target}", "FORGE_STORE_COPY_FROM": f"sqlite:///{source}"},
        "--storage", str(tmp_path / "storage"), "store", "copy")
    assert code == 0, err
    assert f"from sqlite:///{source} into sqlite:///{target} (FORGE_DB_URL)" in out
    assert target.is_file()


def test_config_check_shows_the_store_without_its_option_password(tmp_path: Path) -> None:
    code, out, err = forge(
        {"FORGE_DB_URL": f"postgresql://forge@127.0.0.1:1/forge?password={PASSWORD}"},
        "--storage", str(tmp_path / "storage"), "config", "check")
    assert code == 0, err
    assert "FORGE_DB_URL  postgresql://forge@127.0.0.1:1/forge?password=***" in out, out
    assert PASSWORD not in out + err
