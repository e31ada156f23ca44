"""Attack: keep typing in a lab after its Submit was accepted, while its grading waits.

A lab node grades a few submits at a time, so a class submitting at its due time queues;
the lab stayed `running` with its terminals open until its grading started (which seals
them), and the dashboard judges lateness by the Submit's time: a learner could submit on
time, then go on working in the lab until the queue reached it (reproduced on a live stack:
the answer written after the 202, the criterion passed, on time). Now spawn_service asks
the lab's node to seal the terminals as soon as the submit event is on the bus: the open
shell closes with `lab_sealed` / 4410 and no new one opens, while the grading still waits;
the node keeps that seal on disk, so a restart of the node while the submit waits does not
open the lab again (it did: the seal lived in the node's memory only).

Real spawn_service + orchestrator (uvicorn), nats-server, SQLite and the local lab runtime;
the orchestrator's submit consumers are stopped meanwhile, as a busy node's would be full.
"""

from __future__ import annotations

import httpx
import pytest

from .test_terminal_cap import Lab, attached_frame, closed_with, lab, round_trip  # noqa: F401

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("sqlite_only_store")]
SEALED_CODE = 4410


def test_a_submitted_lab_takes_no_more_typing_while_its_grading_waits(
        lab: Lab) -> None:  # noqa: F811
    headers = lab.learner("after-submit")
    sid = lab.spawn_running(headers)
    submits = [c for c in lab.orch.consumers if "submit" in c.durable]
    assert submits
    with lab.open(sid, headers) as ws:
        assert attached_frame(ws)["new"] is True
        round_trip(ws, "before-submit")
        for consumer in submits:  # the node is busy grading others: this submit waits
            lab.in_loop(consumer.stop)
        try:
            with httpx.Client(base_url=lab.spawn_url, timeout=60) as client:
                resp = client.post(f"/v1/scenarios/{sid}/submit", headers=headers)
                assert resp.status_code == 202, resp.text
                control, code, reason = closed_with(ws)
                assert control["error"] == "lab_sealed" and code == SEALED_CODE, control
                assert "submitted" in control["message"] and reason == control["message"]
                # ... while the grading has not started: the lab is still running.
                status = client.get(f"/v1/scenarios/{sid}", headers=headers).json()
                assert status["state"] == "running", status
            with lab.open(sid, headers) as again:  # and no shell opens again
                control, code, _ = closed_with(again)
            assert control["error"] == "lab_sealed" and code == SEALED_CODE
            lab.wait_held(sid, 0)
            # ... nor after the node restarts while the submit still waits: a restarted
            # node starts with no seal in memory (its terminal slots are new), and the lab
            # took a new shell, the Submit on time, the typing after it.
            lab.orch.terminals._sealed.clear()  # what a restart forgets
            with lab.open(sid, headers) as after_restart:
                control, code, _ = closed_with(after_restart)
            assert control["error"] == "lab_sealed" and code == SEALED_CODE, control
            assert "submitted" in control["message"], control
            lab.wait_held(sid, 0)
        finally:
            for consumer in submits:
                lab.in_loop(consumer.start)
