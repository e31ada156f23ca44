"""A learner's whole journey against a running platform, as `forge demo` shows it.

Buy a plan (stub checkout) → spawn a netplus lab → open the access link (session cookie) →
wait for the lab → type the reference solution into the browser-terminal WebSocket →
submit → wait for the verdict → verify the stored artifacts with the runbook's command.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from websockets.sync.client import connect

from forge.content import SOLUTIONS, content_path
from forge.signing.keystore import SigningKeyring
from forge_verify import INPUT_CAPS
from forge_verify.bundle import BUNDLE_NAMES
from forge_verify.score import SCENARIO_ID_RE

DONE_MARKER = "__FORGE_SOLUTION_DONE__"

RESULT_NAMES = ("score.json", "verdict.sig", "verdict.pub")  # and the evidence bundle
BUNDLE_FILES = frozenset(BUNDLE_NAMES.values())
# GET /v1/scores/ID: score.json (as much as the verifier reads), its summary and file list.
LISTING_CAP = INPUT_CAPS["score"] + 64 * 1024


class JourneyError(Exception):
    """A stage failed; the message says which and why."""


@dataclass
class Stage:
    """One step of the journey and how long it took."""

    name: str
    seconds: float
    detail: str


@dataclass
class JourneyResult:
    """What the journey produced."""

    scenario_id: str = ""
    score: float | None = None
    passed: int | None = None
    total: int | None = None
    artifacts: dict[str, Path] = field(default_factory=dict)
    verified: bool = False
    verify_output: str = ""
    trusted_keys: Path | None = None  # the platform's public keys the verify step trusted
    stages: list[Stage] = field(default_factory=list)


@dataclass
class Journey:
    """Drives the public API exactly as a learner's browser would."""

    spawn_url: str
    scoreboard_url: str
    storage_root: Path
    track: str = "netplus"
    lab: str | None = None  # which of the track's labs; None: the track's default lab
    solution: Path = field(default_factory=lambda: content_path(SOLUTIONS) / "netplus.sh")
    on_stage: Callable[[str], None] = lambda _name: None
    # Used when checkout is refused (BILLING_MODE is not stub): an operator-minted receipt.
    mint_receipt: Callable[[str, str], str] | None = None
    timeout_s: float = 180.0
    # How the verify step proves who signed (``--trusted-key``): `trusted_key`, the
    # platform's public keys as given; else the platform's signing keyring, when the demo
    # started that platform (`own_platform`) or its results are in this storage root. None
    # of them, or a ring with no key: integrity only.
    trusted_key: Path | None = None
    keyring: Path | None = None
    own_platform: bool = False
    result: JourneyResult = field(default_factory=JourneyResult)

    def _stage(self, name: str, fn: Callable[[], str]) -> None:
        self.on_stage(name)
        started = time.perf_counter()
        try:
            detail = fn()
        except JourneyError:
            raise
        except Exception as exc:
            raise JourneyError(f"{name}: {type(exc).__name__}: {exc}") from exc
        self.result.stages.append(Stage(name, time.perf_counter() - started, detail))

    def run(self) -> JourneyResult:
        """Every stage in order; raises JourneyError at the first failure."""
        tenant, learner = "demo-academy", "learner-" + secrets.token_hex(3)
        state: dict[str, Any] = {}
        with httpx.Client(base_url=self.spawn_url, timeout=30) as web:
            self._stage("buy a plan", lambda: self._checkout(web, tenant, learner, state))
            self._stage("spawn a lab", lambda: self._spawn(web, state))
            self._stage("open the lab", lambda: self._open(web, state))
            self._stage("wait for the lab", lambda: self._wait_running(web, state))
            self._stage("solve in the terminal", lambda: self._solve(web, state))
            self._stage("submit", lambda: self._submit(web, state))
            self._stage("wait for the verdict", lambda: self._wait_verdict(web, state))
        self._stage("verify offline", self._verify)
        return self.result

    def _checkout(self, web: httpx.Client, tenant: str, learner: str,
                  state: dict[str, Any]) -> str:
        # Not signed in: checkout creates the learner and binds the receipt to it.
        resp = web.post("/v1/billing/checkout", json={"plan": "PRO", "tenant_id": tenant})
        if resp.status_code == 403 and self.mint_receipt is not None:
            state["receipt"] = self.mint_receipt(tenant, learner)
            return f"PRO receipt for {tenant}/{learner} (minted by the operator: " \
                   "checkout is disabled here)"
        _expect(resp, 201, "checkout")
        state["receipt"] = resp.json()["receipt"]
        learner = resp.json()["subject"]
        return f"PRO receipt for {tenant}/{learner} (charge {resp.json()['charge_id']})"

    def _spawn(self, web: httpx.Client, state: dict[str, Any]) -> str:
        request = {"track": self.track} if self.lab is None else {"track": self.track,
                                                                    "lab": self.lab}
        resp = web.post("/v1/spawn", json=request,
                        headers={"x-receipt-token": state["receipt"]})
        _expect(resp, 201, "spawn")
        body = resp.json()
        sid = body.get("scenario_id")
        # It names a directory under the storage root below: nothing but a scenario id.
        if not isinstance(sid, str) or SCENARIO_ID_RE.fullmatch(sid) is None:
            raise JourneyError("spawn: the answer's scenario_id is not a scenario id")
        self.result.scenario_id = sid
        # Relative, or under the site's public URL: opened here at the address called.
        link = urlsplit(str(body["access_url"]))
        state["access_url"] = f"{link.path}?{link.query}"
        return f"{body['scenario_id']} ({self.lab or self.track})"

    def _open(self, web: httpx.Client, state: dict[str, Any]) -> str:
        resp = web.get(state["access_url"], follow_redirects=False)
        _expect(resp, 303, "access link")
        if not {"forge_session", "__Host-forge_session"} & set(web.cookies.keys()):
            raise JourneyError("open the lab: no session cookie was set")
        return f"session cookie set; redirected to {resp.headers['location']}"

    def _wait_running(self, web: httpx.Client, state: dict[str, Any]) -> str:
        sid = self.result.scenario_id
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            _status, body = _small_json(web, f"/v1/scenarios/{sid}")
            if body.get("state") == "running":
                state["hosts"] = body.get("hosts", {})
                return ", ".join(f"{h} {list(a.values())}" for h, a in body["hosts"].items())
            if body.get("state") in ("failed", "expired", "deleted"):
                raise JourneyError(f"wait for the lab: {body['state']}: {body.get('reason')}")
            time.sleep(0.25)
        raise JourneyError("wait for the lab: not running in time")

    def _solve(self, web: httpx.Client, state: dict[str, Any]) -> str:
        script = self.solution.read_text(encoding="utf-8")
        url = self.spawn_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        cookie = "; ".join(f"{k}={v}" for k, v in web.cookies.items())
        typed = f"bash <<'FORGE_EOF'\n{script}\nFORGE_EOF\necho {DONE_MARKER} $?\n"
        seen = ""
        with connect(f"{url}/v1/scenarios/{self.result.scenario_id}/terminal?rows=40&cols=120",
                     additional_headers={"cookie": cookie}, max_size=2**22) as ws:
            ws.send(typed.encode())
            deadline = time.monotonic() + self.timeout_s
            while f"{DONE_MARKER} " not in seen.replace(f"echo {DONE_MARKER}", ""):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise JourneyError("solve: the solution did not finish in time")
                data = ws.recv(timeout=remaining)
                seen += data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        tail = seen.replace(f"echo {DONE_MARKER}", "").split(f"{DONE_MARKER} ", 1)[1]
        code = tail.strip().split()[0] if tail.strip() else "?"
        if code != "0":
            raise JourneyError(f"solve: the solution exited with {code}")
        return f"typed {len(script.splitlines())} lines of {self.solution.name}; exit 0"

    def _submit(self, web: httpx.Client, state: dict[str, Any]) -> str:
        # Signed in by the session cookie, like the lab page: it says where it comes from,
        # or the request is refused as cross-site.
        resp = web.post(f"/v1/scenarios/{self.result.scenario_id}/submit",
                        headers={"origin": self.spawn_url.rstrip("/")})
        _expect(resp, 202, "submit")
        return "grading requested"

    def _wait_verdict(self, web: httpx.Client, state: dict[str, Any]) -> str:
        sid = self.result.scenario_id
        deadline = time.monotonic() + self.timeout_s
        with httpx.Client(base_url=self.scoreboard_url, timeout=30,
                          cookies=web.cookies) as board:
            while time.monotonic() < deadline:
                status, body = _small_json(board, f"/v1/scores/{sid}")
                if status == 200:
                    score = body.get("score", body)
                    self.result.score = float(score["score"])
                    self.result.passed = int(score["passed"])
                    self.result.total = int(score["total"])
                    break
                time.sleep(0.25)
            else:
                raise JourneyError("wait for the verdict: no verdict in time")
            self.result.artifacts = self._artifacts(board, sid)
        return f"score {self.result.score:.2f} ({self.result.passed}/{self.result.total})"

    def _artifacts(self, board: httpx.Client, sid: str) -> dict[str, Path]:
        """The four result files: where this machine's storage root holds them (the runbook's
        paths), else downloaded from the scoreboard as the learner downloads them (results
        in JetStream, or a platform on other machines) into `demo-verdicts/<id>/` there."""
        if SCENARIO_ID_RE.fullmatch(sid) is None:  # a path below: never "..", "/x" or ""
            raise JourneyError("wait for the verdict: not a scenario id")
        results = self.storage_root / "scenarios" / sid / "results"
        bundle = next(results.glob("evidence.tar.*"), None) if results.is_dir() else None
        if bundle is None:
            status, body = _small_json(board, f"/v1/scores/{sid}")
            listed = body.get("artifacts") if status == 200 else None
            if not isinstance(listed, list):
                raise JourneyError(f"wait for the verdict: no artifact list (HTTP {status})")
            names = [n for n in listed if isinstance(n, str)
                     and (n in RESULT_NAMES or n in BUNDLE_FILES)]
            results = self.storage_root / "demo-verdicts" / sid
            results.mkdir(parents=True, exist_ok=True)
            deadline = time.monotonic() + self.timeout_s
            try:
                for name in names:
                    _download(board, f"/v1/scores/{sid}/artifacts/{name}", results / name,
                              deadline)
                bundle = next(results.glob("evidence.tar.*"), None)
                if bundle is None or not all((results / n).is_file() for n in RESULT_NAMES):
                    raise JourneyError("wait for the verdict: the scoreboard lists "
                                       f"{sorted(names)}, not the four result files")
            except BaseException:
                shutil.rmtree(results, ignore_errors=True)  # no half set left to verify
                raise
        return {"score.json": results / "score.json", "bundle": bundle,
                "verdict.sig": results / "verdict.sig", "verdict.pub": results / "verdict.pub"}

    def _verify(self) -> str:
        """Run the offline verifier as a separate process, as a learner would: forge_verify's
        main, the code behind scripts/verify_verdict.py, installed with Forge (no checkout)."""
        a = self.result.artifacts
        argv = [sys.executable, "-m", "forge_verify", str(a["score.json"]), str(a["bundle"]),
                str(a["verdict.sig"]), str(a["verdict.pub"])]
        local = a["bundle"].parent == self.storage_root / "scenarios" / self.result.scenario_id \
            / "results"
        if self.trusted_key is not None:
            argv += ["--trusted-key", str(self.trusted_key)]
            self.result.trusted_keys = self.trusted_key
        elif self.keyring is not None and (self.own_platform or local):
            # Exported afresh into a directory of this lab's own (never one left behind):
            # the ring as the scoreboard left it, retired keys with the current one.
            out = self.storage_root / "demo-trusted-keys" / self.result.scenario_id
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            if SigningKeyring(self.keyring).write_public(out):  # a folder made just now
                argv += ["--trusted-key", str(out)]
                self.result.trusted_keys = out
            else:
                out.rmdir()
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        self.result.verify_output = (proc.stdout + proc.stderr).strip()
        self.result.verified = proc.returncode == 0
        if not self.result.verified:
            raise JourneyError(f"verify offline: exit {proc.returncode}: "
                               f"{self.result.verify_output[-500:]}")
        if self.result.trusted_keys is None:
            return "PASS, integrity only (no key of the platform to prove who signed)"
        return "PASS (forge-verify exit 0, signed by this platform's key)"


def _small_json(client: httpx.Client, path: str,
                deadline_s: float = 60.0) -> tuple[int, dict[str, Any]]:
    """GET a small JSON object: its status and body ({} when it is not a JSON object),
    refusing an answer over LISTING_CAP bytes as sent (no content decoding: a few KiB of
    gzip can stand for gigabytes) or still coming after `deadline_s`."""
    deadline = time.monotonic() + deadline_s
    with client.stream("GET", path, headers={"Accept-Encoding": "identity"}) as got:
        raw = bytearray()
        for chunk in got.iter_raw():
            raw += chunk
            if len(raw) > LISTING_CAP:
                raise JourneyError(f"GET {path}: answer larger than {LISTING_CAP} bytes")
            if time.monotonic() > deadline:
                raise JourneyError(f"GET {path}: answer not done in time")
    try:
        body = json.loads(bytes(raw))
    except ValueError:
        body = None
    return got.status_code, body if isinstance(body, dict) else {}


def _download(board: httpx.Client, path: str, dest: Path, deadline: float) -> None:
    """Stream one result file to `dest`, refusing more than the verifier would read (as
    sent: no content decoding) or a transfer still going at `deadline` (monotonic)."""
    name = dest.name
    cap = INPUT_CAPS["bundle" if name in BUNDLE_FILES else
                     "score" if name == "score.json" else name]
    with board.stream("GET", path, headers={"Accept-Encoding": "identity"}) as got:
        if got.status_code != 200:
            raise JourneyError(f"download {name}: HTTP {got.status_code}")
        size = 0
        with dest.open("wb") as out:
            for chunk in got.iter_raw():
                size += len(chunk)
                if size > cap:
                    raise JourneyError(f"download {name}: larger than the verifier's "
                                       f"{cap} bytes")
                if time.monotonic() > deadline:
                    raise JourneyError(f"download {name}: not done in time")
                out.write(chunk)


def _expect(resp: httpx.Response, status: int, what: str) -> None:
    if resp.status_code != status:
        try:
            detail = json.dumps(resp.json())
        except ValueError:
            detail = resp.text[:300]
        raise JourneyError(f"{what}: HTTP {resp.status_code}: {detail}")
