"""The throwaway PostgreSQL the tests use: private, socket-only, and gone when stopped."""

from __future__ import annotations

import os
import pwd
import stat

import psycopg

from ..support.postgres import PG_USER, PostgresCluster, database_name, find_bindir


def running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie awaiting its reaper is not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_cluster_is_private_socket_only_and_removed_on_stop() -> None:
    assert find_bindir().name == "bin" and find_bindir().parent.name.split(".")[0].isdigit()
    cluster = PostgresCluster()
    try:
        cluster.start()
        pid = int((cluster.data / "postmaster.pid").read_text().split()[0])
        for path in (cluster.root, cluster.socket_dir):
            info = path.stat()
            assert stat.S_IMODE(info.st_mode) == 0o700
            if os.geteuid() == 0:  # PostgreSQL refuses root: the server runs as postgres
                assert info.st_uid == pwd.getpwnam(PG_USER).pw_uid
        with cluster.admin() as conn:
            settings = dict(conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('listen_addresses', 'fsync', 'unix_socket_directories')").fetchall())
        assert settings == {"listen_addresses": "", "fsync": "off",
                            "unix_socket_directories": str(cluster.socket_dir)}
        url = cluster.create_database()
        with psycopg.connect(host=str(cluster.socket_dir), user=PG_USER,
                             dbname=database_name(url)) as conn:
            tables = {r[0] for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert {"scenarios", "quota_slots", "alembic_version"} <= tables  # migrated template
        cluster.drop_database(url)
        with cluster.admin() as conn:
            assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                (database_name(url),)).fetchone() is None
    finally:
        cluster.stop()
    assert not cluster.root.exists()
    assert not running(pid)  # the postmaster is gone, not orphaned
