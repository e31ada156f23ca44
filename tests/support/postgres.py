"""A throwaway PostgreSQL cluster for the tests: Debian's binaries, a unix socket only.

The cluster lives in a temp directory owned by the `postgres` user (mode 0700); when the tests
run as root, initdb and pg_ctl run as that user (PostgreSQL refuses to run as root). It is
tuned for speed, not durability (fsync, synchronous_commit and full_page_writes off), and is
stopped with `pg_ctl stop -m immediate` and deleted when the session ends, failed or not.

Each test gets a fresh database copied from a template that already holds the migrated schema
(CREATE DATABASE ... TEMPLATE), which is much cheaper than running the migrations per test.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

PG_USER = "postgres"
TEMPLATE_DB = "forge_template"


def find_bindir() -> Path:
    """The bin directory of the highest installed PostgreSQL major version."""
    found = []
    for initdb in glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        version = Path(initdb).parents[1].name
        if re.fullmatch(r"\d+(\.\d+)?", version):
            found.append((tuple(int(p) for p in version.split(".")), Path(initdb).parent))
    if not found:
        raise RuntimeError("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): "
                           "run `make system-deps` (make test does) or apt-get install postgresql")
    return max(found)[1]


def database_name(url: str) -> str:
    """The database a URL of `PostgresCluster.url` names."""
    return url.split("?", 1)[0].rsplit("/", 1)[1]


class PostgresCluster:
    """One initdb'd cluster listening on a unix socket in its own temp directory."""

    def __init__(self) -> None:
        self.bindir = find_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="forge-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "run"
        self.log = self.root / "postgres.log"
        self._names = itertools.count(1)
        self._as_root = os.geteuid() == 0
        self.started = False

    def _run(self, *argv: str) -> None:
        cmd = [str(self.bindir / argv[0]), *argv[1:]]
        if self._as_root:
            cmd = ["runuser", "-u", PG_USER, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{argv[0]} failed ({done.returncode}): "
                               f"{done.stderr.strip()[-2000:]}\n{log}")

    def start(self) -> None:
        """initdb, then start the server on the socket directory; wait until it answers."""
        self.socket_dir.mkdir()
        if self._as_root:
            pw = pwd.getpwnam(PG_USER)
            for path in (self.root, self.socket_dir):
                os.chown(path, pw.pw_uid, pw.pw_gid)
        self.root.chmod(0o700)
        self.socket_dir.chmod(0o700)
        self._run("initdb", "-D", str(self.data), "-U", PG_USER, "--auth=trust",
                  "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync")
        self.start_server()
        with self.admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE_DB)))
        # Imported here: the store is what is under test, the cluster only needs psycopg.
        from forge.store import upgrade

        upgrade(self.url(TEMPLATE_DB))

    def start_server(self) -> None:
        """Start the server on the initdb'd data directory (again, after `stop_server`)."""
        options = " ".join([
            f"-k {self.socket_dir}", "-c listen_addresses=''", "-c fsync=off",
            "-c synchronous_commit=off", "-c full_page_writes=off", "-c max_connections=400",
            "-c shared_buffers=64MB",
        ])
        self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data),
                  "-l", str(self.log), "-o", options)
        self.started = True

    def stop_server(self) -> None:
        """Stop the server as an operator's restart does (fast: clients are cut off), keeping
        its data for `start_server`."""
        self._run("pg_ctl", "stop", "-m", "fast", "-w", "-D", str(self.data))
        self.started = False

    def stop(self) -> None:
        """Stop the server at once (the data is disposable) and delete the directory."""
        try:
            if self.started:
                self._run("pg_ctl", "stop", "-m", "immediate", "-w", "-D", str(self.data))
        finally:
            self.started = False
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        """A SQLAlchemy URL for `database` over the unix socket, with the psycopg 3 driver."""
        return f"postgresql+psycopg://{PG_USER}@/{database}?host={self.socket_dir}"

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        """An autocommit connection to the maintenance database."""
        return psycopg.connect(host=str(self.socket_dir), user=PG_USER, dbname="postgres",
                               autocommit=True)

    def create_database(self, *, migrated: bool = True) -> str:
        """A fresh database (the migrated schema, or empty from template0); its URL."""
        name = f"forge_t{next(self._names)}"
        template = TEMPLATE_DB if migrated else "template0"
        with self.admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)))
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop a test's database, disconnecting whatever the test left connected."""
        name = database_name(url)
        with self.admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


@contextmanager
def running_cluster() -> Iterator[PostgresCluster]:
    """A started cluster for the block; stopped and deleted after it, failed or not."""
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def set_read_only(cluster: PostgresCluster, url: str, on: bool) -> None:
    """The database's default for new sessions, and its sessions ended so that the
    service's pool (pre-pinged) reconnects into it, as after a failover."""
    name = sql.Identifier(database_name(url))
    with cluster.admin() as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = {}")
                     .format(name, sql.SQL("on" if on else "off")))
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = %s AND pid <> pg_backend_pid()", [database_name(url)])
