"""FORGE_DB_URL: the URL schemes Forge connects with, and the one rewrite it applies.

Kept in configuration so that Settings refuses a URL the store could not open (naming the
variable, never its value) with the same rule `forge.store.db_engine` applies when it connects.
"""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

# Driver-less PostgreSQL URLs an operator may write; Forge ships the psycopg 3 driver only.
_POSTGRES_ALIASES = frozenset({"postgresql", "postgres"})
# What a URL's scheme may be once normalised: SQLite's built-in driver or psycopg 3.
DB_DRIVERS = frozenset({"sqlite", "sqlite+pysqlite", "postgresql+psycopg"})
# libpq also takes the password as an option of the URL (`?password=`), where SQLAlchemy's
# URL.password (and its hide_password) does not see it.
PASSWORD_OPTION = "password"  # noqa: S105 - the option's name


def has_password(url: URL) -> bool:
    """Whether `url` carries a password: after its user name or as its `password` option."""
    return url.password is not None or PASSWORD_OPTION in url.query


def shown_url(url: str) -> str:
    """`url` for output, without its password wherever it is written (``***`` instead)."""
    made = make_url(url)
    if PASSWORD_OPTION not in made.query:
        return made.render_as_string(hide_password=True)
    hidden = made.update_query_dict({PASSWORD_OPTION: "***"})
    return hidden.render_as_string(hide_password=True).replace(
        f"{PASSWORD_OPTION}=%2A%2A%2A", f"{PASSWORD_OPTION}=***")


def normalize_url(url: str) -> str:
    """`url` with a driver-less PostgreSQL scheme pointed at psycopg 3 (the `postgres` extra).

    SQLAlchemy has no dialect for `postgres://` (the libpq scheme providers hand out), and
    SQLAlchemy 2.0 picks psycopg2, which Forge does not install, for `postgresql://`.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in _POSTGRES_ALIASES:
        return url
    return f"postgresql+psycopg://{rest}"  # only the scheme changes: the rest stays verbatim


def with_connect_timeout(url: str, seconds: int) -> str:
    """`url` bounded to `seconds` for a PostgreSQL server that takes the connection and never
    answers (libpq's ``connect_timeout``; without one a command waits as long as TCP does).
    A URL naming its own ``connect_timeout`` keeps it, and any other URL (SQLite) is returned
    as it is; the URL's other options, and its password, are kept. A driver-less
    ``postgres://`` or ``postgresql://`` URL (as FORGE_DB_URL may be written) is bounded too."""
    made = make_url(url)
    if (make_url(normalize_url(url)).get_backend_name() != "postgresql"
            or "connect_timeout" in made.query):
        return url
    return made.update_query_dict({"connect_timeout": str(seconds)}).render_as_string(
        hide_password=False)


def db_url_problem(url: str) -> str | None:
    """Why Forge cannot connect with `url` (None when it can), without repeating the URL,
    which may hold a password: only its scheme is named."""
    try:
        parsed = make_url(normalize_url(url))
        driver = parsed.drivername
    except (ArgumentError, ValueError):
        return ("FORGE_DB_URL is not a database URL: use sqlite:////path/forge.db or "
                "postgresql://user:password@host:5432/dbname")
    if driver not in DB_DRIVERS:
        return (f"FORGE_DB_URL uses {driver!r}, which Forge does not connect with; use "
                "sqlite:// or postgresql:// (psycopg 3: postgresql+psycopg://)")
    if driver == "postgresql+psycopg":
        return _option_problem(parsed)
    return None


def _option_problem(url: URL) -> str | None:
    """What psycopg refuses in the URL's options before any connection (an option libpq
    does not know, a ``connect_timeout`` that is not a number), else None. Without this
    every command and service ended in a driver traceback. Only the query is looked at: the
    password is never in what is said."""
    try:
        from psycopg import ProgrammingError
        from psycopg.conninfo import conninfo_to_dict, make_conninfo, timeout_from_conninfo
    except ImportError:  # no postgres extra: connecting says that, naming the extra
        return None
    options = {name: ",".join(value) if isinstance(value, tuple) else value
               for name, value in url.query.items()}
    try:
        timeout_from_conninfo(conninfo_to_dict(make_conninfo("", **options)))
    except (ProgrammingError, ValueError, TypeError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return (f"FORGE_DB_URL has an option the PostgreSQL driver refuses ({reason}): "
                "use the libpq connection parameters, e.g. ?sslmode=require&connect_timeout=10")
    return None
