"""A service start loads what the service runs, not httpx's command-line client: httpx
imports click, rich and pygments for it whenever they are installed (about 0.15 s of CPU
in every start), and `forge/__init__` keeps that module out."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from forge.store.migrate import upgrade
from tests.support.service_start import STOP_AT_ACCEPT, run_probe

# The real entry point (`python -m forge serve spawn`), stopped where the server would
# start accepting: by then the app is built and every module it needs is loaded.
CHILD = STOP_AT_ACCEPT + textwrap.dedent("""
    def report():
        import httpx
        loaded = [m for m in ("rich", "pygments") if m in sys.modules]
        with httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(204))) as c:
            status = c.get("http://forge.invalid/").status_code
        print(",".join(loaded) or "-", status, "httpx" in sys.modules, flush=True)
    sys.argv = ["forge", "serve", "spawn", "--host", "127.0.0.1", "--port", "0"]
    from forge.cli import main
    main()
""")


@pytest.mark.usefixtures("sqlite_only_store")  # the probe's dev store
def test_a_started_service_has_httpx_without_its_command_line_client(tmp_path: Path) -> None:
    # A start on a store already at this release's schema (every start but the first): a
    # migration itself loads Alembic's templates (mako, and pygments with it) before the
    # server accepts, as it must.
    upgrade(f"sqlite:///{tmp_path / 'storage' / 'forge.db'}")
    out = run_probe(CHILD, tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    loaded, status, httpx_loaded = out.stdout.split()
    assert httpx_loaded == "True"  # the service does use httpx (its peers, OIDC, LTI)
    assert status == "204"  # and httpx works as ever
    assert loaded == "-"  # but nothing of the CLI's stack came with it
