"""Launch a template's labs with the real runtime, act in them, grade them, clean up.

The same path as production: the orchestrator's `lab_spec` turns the rendered template
into the runtime's LabSpec, `Runtime.create` builds the lab, and grading is
`forge.grading.runner.grade` (live checks, seal, sealed checks) scored with the
verifier's `compute_score`. No service, bus or database is involved. Every lab a
`Harness` creates is destroyed when it closes, also on an exception or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import shlex
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from forge.grading.runner import grade
from forge.runtime.base import ExecResult, LabNotFound, Runtime, RuntimeFault, TtySession
from forge.services.orchestrator.labspec import lab_spec
from forge.templates.dsl_models import ScenarioTemplate
from forge.templates.variables import REFERENCE_RE, generate_values, render
from forge_verify.score import compute_score

READY_TIMEOUT = 20.0
STOP_POLL = 0.25  # seconds between looks at the stop flag while a terminal script runs


@dataclass(frozen=True)
class Graded:
    """One graded lab: its score and which criteria passed."""

    score: float
    passed: dict[str, bool]


class LabRun:
    """One launched lab instance of a template, with its per-scenario values."""

    def __init__(self, harness: Harness, lab_id: str, values: dict[str, str]) -> None:
        self.harness = harness
        self.id = lab_id
        self.values = values
        self.rendered = render(harness.template, values)
        self._ttys: list[TtySession] = []

    def sh(self, script: str, host: str | None = None, timeout: float = 120) -> ExecResult:
        """Run a bash script in a host (the learner's by default), as typed in its terminal."""
        return self.harness.runtime.exec(  # noqa: S604 - a shell in a lab host
            self.id, host or self.harness.learner, shell="exec bash -s",
            stdin=script.encode(), timeout=timeout)

    def must(self, script: str, what: str, host: str | None = None) -> ExecResult:
        """`sh` that raises LabTestFailure (with the output tail) when the script fails."""
        result = self.sh(script, host)
        if result.exit_code != 0:
            tail = (result.stdout_text + result.stderr_text)[-600:]
            raise LabTestFailure(f"{what} exited {result.exit_code}: {tail}")
        return result

    def read(self, path: str, host: str | None = None) -> bytes | None:
        """A file's bytes in a host, or None when it does not exist."""
        result = self.harness.runtime.exec(self.id, host or self.harness.learner,
                                           ["/bin/cat", "--", path], timeout=30)
        return result.stdout if result.exit_code == 0 else None

    def write(self, path: str, data: bytes, host: str | None = None) -> None:
        """Write a file in a host as the learner would (with `cat >`)."""
        result = self.harness.runtime.exec(
            self.id, host or self.harness.learner,
            ["/bin/sh", "-c", f"cat > {shlex.quote(path)}"], stdin=data, timeout=30)
        if result.exit_code != 0:
            raise LabTestFailure(f"writing {path} failed: {result.stderr_text[-300:]}")

    def in_terminal(self, script: str, timeout: float = 60, host: str | None = None,
                    *, check: bool = True) -> None:
        """Type `bash SCRIPT` in a terminal of a host (the learner's by default), as a
        learner would, and leave the terminal open: what it started (a server in the
        background) keeps running until grading's seal, as in a learner's own terminal.
        LabTestFailure if the script does not finish, or (with `check`) does not exit 0."""
        host = host or self.harness.learner
        path = f"/tmp/.forge-term-{secrets.token_hex(4)}.sh"  # noqa: S108 - in the lab host
        self.write(path, script.encode(), host)
        session = self.harness.runtime.tty(self.id, host)
        self._ttys.append(session)
        marker = secrets.token_hex(6)
        asyncio.run(_type_and_wait(session, f"bash {path}; echo {marker}-$?\n", marker,
                                   timeout, check=check, stopped=self.harness.stopping))

    def grade(self) -> Graded:
        """Grade the lab as the orchestrator does (seals it: no more exec afterwards)."""
        try:
            with tempfile.TemporaryDirectory(prefix="forge-labtest-") as scratch:
                # a subdirectory: the live checks' record goes beside it (``live_record``)
                results = grade(self.harness.runtime, self.id, self.rendered,
                                Path(scratch) / "evidence")
        finally:
            for session in self._ttys:
                with contextlib.suppress(Exception):
                    session.close()
            self.harness.release(self.id)
        passed = {c.id: all(r.passed for r in results if r.criterion_id == c.id)
                  for c in self.rendered.spec.success_criteria}
        summary = compute_score([(c.weight, passed[c.id])
                                 for c in self.rendered.spec.success_criteria])
        return Graded(summary.score, passed)


async def _type_and_wait(session: TtySession, line: str, marker: str, timeout: float,
                         *, check: bool = True, stopped: threading.Event | None = None) -> None:
    """Send `line`; wait for `MARKER-<status>` in the output; with `check`, fail unless
    the status is 0. Gives up at once (LabTestFailure) when `stopped` is set (Ctrl-C)."""
    await session.write(line.encode())
    seen = b""
    done = re.compile(re.escape(marker.encode()) + rb"-([0-9]+)")
    try:
        async with asyncio.timeout(timeout):
            while (found := done.search(seen)) is None:
                if stopped is not None and stopped.is_set():
                    raise LabTestFailure("stopped")
                try:
                    chunk = await asyncio.wait_for(session.read(), STOP_POLL)
                except TimeoutError:
                    continue
                if not chunk:
                    raise LabTestFailure("the terminal ended before the script finished: "
                                         f"{seen[-400:].decode(errors='replace')}")
                seen = (seen + chunk)[-8192:]
    except TimeoutError:
        raise LabTestFailure("the script typed in the terminal did not finish in "
                             f"{timeout:g} s") from None
    if check and found.group(1) != b"0":
        raise LabTestFailure(f"the script typed in the terminal exited {found.group(1).decode()}"
                             f": {seen[-400:].decode(errors='replace')}")


class LabTestFailure(Exception):
    """A step of a lab test could not run (a script failed, a service never listened)."""


def template_ready(template: ScenarioTemplate) -> tuple[tuple[str, str], ...]:
    """The template's ready ports as a plan's `ready` list: (host, number or int variable
    name), for a plan that lists none."""
    return tuple((c.name, m.group(1) if (m := REFERENCE_RE.fullmatch(str(p))) else str(p))
                 for c in template.spec.assets.containers for p in c.ready_ports)


class Harness:
    """Launches labs of one template on `runtime`; `close` destroys every one of them."""

    def __init__(self, runtime: Runtime, template: ScenarioTemplate,
                 ready: tuple[tuple[str, str], ...] = (), learner: str = "learner") -> None:
        self.runtime = runtime
        self.template = template
        self.ready = ready
        self.learner = learner
        self._labs: list[str] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    @property
    def stopping(self) -> threading.Event:
        """Set once the harness stops: steps still running give up at their next wait."""
        return self._stopped

    def stop(self) -> None:
        """Refuse new launches (a step still running fails at its next launch)."""
        self._stopped.set()

    def launch(self, values: dict[str, str] | None = None) -> LabRun:
        """Create a lab (fresh random values unless given) and wait for its services."""
        values = dict(values) if values is not None else generate_values(self.template)
        lab_id = "lt-" + secrets.token_hex(8)
        with self._lock:
            if self._stopped.is_set():
                raise LabTestFailure("stopped")
            self._labs.append(lab_id)
        run = LabRun(self, lab_id, values)
        self.runtime.create(lab_spec(lab_id, run.rendered))
        if self._stopped.is_set():
            raise LabTestFailure("stopped")
        for host, port in self.ready:
            number = values.get(port, port)
            up = run.sh(f"until {{ : > /dev/tcp/127.0.0.1/{int(number)}; }} 2>/dev/null; "
                        "do sleep 0.05; done", host=host, timeout=READY_TIMEOUT)
            if up.exit_code != 0:
                raise LabTestFailure(f"{host}:{number} never listened")
        return run

    def release(self, lab_id: str) -> None:
        """Destroy one lab now (a graded lab is sealed: nothing more can run in it)."""
        with self._lock:
            if lab_id not in self._labs:
                return
            self._labs.remove(lab_id)
        self._destroy([lab_id])

    def close(self) -> None:
        """Destroy every lab this harness created (those already gone are fine);
        LabTestFailure naming the labs that could not be destroyed."""
        self._stopped.set()
        with self._lock:
            labs, self._labs = self._labs, []
        self._destroy(labs)

    def _destroy(self, labs: list[str]) -> None:
        failed = []
        for lab_id in labs:
            try:
                self.runtime.destroy(lab_id)
            except LabNotFound:
                pass
            except (RuntimeFault, OSError) as exc:  # the local engine reports an
                failed.append(f"{lab_id} ({exc})")  # incomplete teardown as OSError
        if failed:
            raise LabTestFailure("could not destroy " + ", ".join(failed)
                                 + "; `forge runtime cleanup` retries")

    def __enter__(self) -> Harness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
