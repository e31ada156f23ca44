"""The whole platform for browser tests: spawn + orchestrator (real runtime) + scoreboard, the
real templates, one nats-server; plus Debian's Chromium driven by Playwright."""

from __future__ import annotations

import os
import re
import shutil
import socket
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from forge.bus import NatsServer
from forge.config import Settings, load_settings
from forge.content import content_path
from forge.entitlements.grants import grant
from forge.identity.apikeys import create_api_key
from forge.runtime.local import LocalRuntime
from forge.services.orchestrator.app import build_app as build_orchestrator
from forge.services.scoreboard.app import build_app as build_scoreboard
from forge.services.spawn.app import build_app as build_spawn
from forge.store.db import Database

from ..live_server import live_server, reserve_port
from ..services.conftest import SECRETS, prod_environ, with_signing_key
from ..support.prefixes import runtime_prefix
from .relay import CuttableRelay

REPO = Path(__file__).resolve().parents[2]
LAB_URL = re.compile(r".*/lab/(scn-[0-9a-f]{16})$")
# An assertion after a click waits for a request, a store write and a render: Playwright's
# 5 s is short on a loaded 2-core machine (CI saw a hint's text miss it once).
expect.set_options(timeout=20_000)


def _chromium() -> str:
    """The system Chromium, found by name (the Makefile installs it when missing)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("no chromium on PATH: `make test` installs it (apt package chromium)")


CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
OPERATOR_TOKEN = SECRETS["OPERATOR_TOKEN"]


@dataclass
class WebPlatform:
    """URLs and handles of a running platform."""

    url: str
    orchestrator_url: str
    scoreboard_url: str
    settings: Settings
    db: Database
    storage: Path
    nats_admin_url: str = ""  # the test harness reads the stream as the bus admin
    # While this context is open spawn_service's server is stopped (it closed every browser
    # connection, terminal WebSockets included); on leaving, a new one serves the same port.
    spawn_stopped: Callable[[], AbstractContextManager[None]] = field(default=nullcontext)

    def learner_key(self, tenant: str = "acme", subject: str = "alice",
                    plan: str = "PRO") -> str:
        """An API key for a learner whose plan is granted in the entitlement store."""
        grant(self.db, tenant, plan, subject)
        return create_api_key(self.db, tenant, subject).plaintext

    def start_lab(self, page: Page, key: str) -> str:
        """Sign `page` in with `key`, start netplus from the track list and wait until the
        lab page says running; the lab's scenario id."""
        page.goto(self.url + "/signin")
        page.get_by_label("API key").fill(key)
        page.get_by_role("button", name="Sign in with API key").click()
        page.get_by_role("button", name="Start this lab: Find the server").click()
        expect(page).to_have_url(LAB_URL)
        expect(page.locator("#state")).to_have_text("running", timeout=60_000)
        # The running page came by a reload the page made itself: its scripts (the Submit
        # dialog's, Extend's) run before its load event; a click before them, on a loaded
        # machine, posted the form bare and no dialog ever came.
        page.wait_for_load_state("load")
        found = LAB_URL.match(page.url)
        assert found is not None
        return found.group(1)

    def client(self) -> httpx.Client:
        """An httpx client that behaves like a same-origin browser form post."""
        return httpx.Client(base_url=self.url, timeout=30, headers={"origin": self.url})


@contextmanager
def running_web_platform(tmp: Path, *, reaper_interval_s: float = 3600,
                         **env: str) -> Iterator[WebPlatform]:
    """Start the platform in `tmp`; `env` adds or overrides settings (e.g. FORGE_PLANS_FILE).
    The orchestrator's reaper (which grades a lab whose time ran out) passes every
    `reaper_interval_s` seconds: by default not within a test."""
    nats = NatsServer()
    nats.start()
    storage = with_signing_key(tmp / "storage")
    base = {**nats.client_env(), "FORGE_DB_URL": f"sqlite:///{tmp / 'forge.db'}",
            "FORGE_TEMPLATE_DIR": str(content_path("templates")), **env}
    runtime = LocalRuntime(str(tmp / "runtime"), runtime_prefix("w"))
    try:
        settings = load_settings(prod_environ(storage, **base))
        orchestrator = build_orchestrator(settings, runtime=runtime,
                                          reaper_interval_s=reaper_interval_s,
                                          consumer_options={"max_deliver": 4})
        scoreboard = build_scoreboard(settings, max_deliver=2, backoff=(0.2,),
                                      fetch_timeout=0.5)
        with live_server(orchestrator) as orch_url, live_server(scoreboard) as board_url:
            spawn_settings = load_settings(prod_environ(
                storage, ORCHESTRATOR_URL=orch_url, SCOREBOARD_URL=board_url, **base))
            with _SpawnServer(spawn_settings) as spawn:
                platform = WebPlatform(spawn.url, orch_url, board_url, spawn_settings,
                                       spawn.db, storage, nats.admin_url)

                @contextmanager
                def stopped() -> Iterator[None]:
                    spawn.stop()
                    try:
                        yield
                    finally:
                        spawn.start()
                        platform.db = spawn.db

                platform.spawn_stopped = stopped
                yield platform
    finally:
        for info in runtime.list():
            runtime.destroy(info.lab_id)
        runtime.close()
        nats.close()


class _SpawnServer:
    """spawn_service under uvicorn on a fixed loopback port, which a test can stop (the server
    closes its open terminal WebSockets, as when the process serving them goes down) and start
    again: a freshly built spawn_service app on the same port."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._sock: socket.socket | None = reserve_port()  # held until the first start
        self.port = int(self._sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: AbstractContextManager[str] | None = None
        self.db: Database

    def start(self) -> None:
        app = build_spawn(self.settings)
        self.db = app.state.spawn.ctx.db
        sock, self._sock = self._sock, None  # a start again binds the port anew
        self._server = live_server(app, port=None if sock else self.port, sock=sock)
        self._server.__enter__()

    def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            server.__exit__(None, None, None)

    def __enter__(self) -> _SpawnServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(scope="module")
def web_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebPlatform]:
    with running_web_platform(tmp_path_factory.mktemp("web")) as platform:
        yield platform


@pytest.fixture
def relay(web_platform: WebPlatform) -> Iterator[CuttableRelay]:
    """The platform behind a relay whose connections the test can cut (a network drop)."""
    host, port = web_platform.url.removeprefix("http://").rsplit(":", 1)
    proxy = CuttableRelay((host, int(port)))
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS,
                                      headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def web_artifacts() -> Path:
    """Where failure screenshots go: $FORGE_WEB_ARTIFACTS, else test-output/web (git-ignored)."""
    raw = os.environ.get("FORGE_WEB_ARTIFACTS")
    path = Path(raw) if raw else REPO / "test-output" / "web"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call":
        item.stash[FAILED] = report.failed


FAILED = pytest.StashKey[bool]()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest, web_artifacts: Path) -> Iterator[Page]:
    """A fresh browser context and page; on failure a full-page screenshot is saved."""
    context = browser.new_context(viewport={"width": 1440, "height": 960})
    tab = context.new_page()
    messages: list[str] = []
    tab.on("console", lambda msg: messages.append(f"{msg.type}: {msg.text}"))
    try:
        yield tab
    finally:
        if os.environ.get("FORGE_WEB_CONSOLE"):
            print("\n".join(messages))
        if request.node.stash.get(FAILED, False):
            shot = web_artifacts / f"{request.node.name}.png"
            try:
                tab.screenshot(path=str(shot), full_page=True)
                (web_artifacts / f"{request.node.name}.console.txt").write_text(
                    "\n".join(messages))
                print(f"\nfailure screenshot: {shot}")
            except Exception as exc:  # the page may be gone; the test failure is what matters
                print(f"\nno failure screenshot ({type(exc).__name__}: {exc})")
        context.close()


def docs_images() -> Path | None:
    """$FORGE_DOCS_IMAGES: write the README screenshots there (e.g. docs/images)."""
    raw = os.environ.get("FORGE_DOCS_IMAGES")
    return Path(raw) if raw else None
