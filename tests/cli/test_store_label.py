"""`forge up` names the database every process uses, as the store reads the URL and
without its credentials."""

from __future__ import annotations

import pytest

from forge.cli.up import store_label


@pytest.mark.no_store  # only reads the URL: no store is opened
@pytest.mark.parametrize(("url", "label"), [
    ("postgresql://forge:pw-Secret1@db:5432/forge", "PostgreSQL (db/forge)"),
    ("postgres://forge:pw-Secret1@db/forge", "PostgreSQL (db/forge)"),
    ("PostgreSQL://forge:pw-Secret1@db/forge", "PostgreSQL (db/forge)"),
    ("postgresql+psycopg://forge@/forge", "PostgreSQL (unix socket/forge)"),
    ("sqlite:////var/lib/forge/forge.db", "SQLite (/var/lib/forge/forge.db)"),
])
def test_the_database_is_named_without_its_password(url: str, label: str) -> None:
    assert store_label(url) == label
