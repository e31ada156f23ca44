"""Attack: make the root steps of an exec, a terminal or a check run the learner's program.

An exec (and a terminal, and a grader check) starts as root and drops to the lab user
(or the grader) with ``setpriv``. A template may give its hosts a PATH with a directory
the learner writes (``/workspace/bin``) or a loader variable (LD_PRELOAD, natural in a
library-hijack lab). Had the host's environment been in force while root looked up and
loaded ``setpriv``, the learner would plant a ``setpriv`` of their own and run it as root
at the next exec, or as the grader's root at the next check and print whatever the check
expects. The root steps run with the fixed PATH and nothing of the host's environment;
the command still gets exactly that environment.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
from collections.abc import Iterator

import pytest

from forge.runtime import HostSpec, LabSpec, Limits, SubnetSpec
from forge.runtime.base import SpecError
from forge.runtime.local import LocalRuntime
from forge.runtime.local.grader import CHECK_ENV
from tests.runtime.helpers import tty_read_until, tty_send

from ..support.prefixes import runtime_prefix

pytestmark = pytest.mark.root

HIJACK_PATH = "/workspace/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PLANT = ("mkdir -p /workspace/bin && printf '#!/bin/sh\\necho PLANTED-RAN-AS-$(id -u)\\n"
         "exec /usr/bin/setpriv \"$@\"\\n' > /workspace/bin/setpriv && "
         "chmod 755 /workspace/bin/setpriv && cp /workspace/bin/setpriv /workspace/bin/env")


@pytest.fixture
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalRuntime, str]]:
    state = tmp_path_factory.mktemp("rootsteps")
    rt = LocalRuntime(str(state), prefix=runtime_prefix("r"))
    lab_id = "rs-" + secrets.token_hex(4)
    env = {"PATH": HIJACK_PATH, "LD_PRELOAD": "/workspace/missing-hijack.so",
           "EMPTY": "", "TWO_LINES": "a\nb 'c' $(d)"}
    try:
        rt.create(LabSpec(lab_id, [SubnetSpec("office", "10.95.1.0/24")],
                          [HostSpec("target", networks=[("office", "10.95.1.10")],
                                    environment=env)],
                          Limits(memory_mb=256, disk_mb=16)))
        yield rt, lab_id
    finally:
        with contextlib.suppress(Exception):
            rt.destroy(lab_id)
        rt.close()
        shutil.rmtree(state, ignore_errors=True)


def test_a_planted_setpriv_never_runs_as_root(lab: tuple[LocalRuntime, str]) -> None:
    rt, lab_id = lab
    learner = rt.identity(lab_id).learner
    planted = rt.exec(lab_id, "target", shell=PLANT)
    assert planted.exit_code == 0, planted.stderr_text
    for result in (rt.exec(lab_id, "target", ["id", "-u"]),
                   rt.run_check(lab_id, "target", ["id", "-u"])):
        assert "PLANTED" not in result.stdout_text, result.stdout_text
        assert result.exit_code == 0, result.stderr_text
    assert rt.exec(lab_id, "target", ["id", "-u"]).stdout_text.strip() == str(learner)
    tty = rt.tty(lab_id, "target")
    try:
        tty_send(tty, b"echo UID-$(id -u)-END\n")
        seen = tty_read_until(tty, rb"UID-\d+-END")
    finally:
        tty.close()
    assert b"PLANTED" not in seen and f"UID-{learner}-END".encode() in seen, seen[-400:]


def test_the_command_still_gets_exactly_the_host_environment(
        lab: tuple[LocalRuntime, str]) -> None:
    rt, lab_id = lab
    expected = {"PATH": HIJACK_PATH, "LD_PRELOAD": "/workspace/missing-hijack.so",
                "EMPTY": "", "TWO_LINES": "a\nb 'c' $(d)", "HOME": "/home",
                "LANG": "C.UTF-8", "HOSTNAME": "target", "TERM": "xterm-256color"}
    # A check gets the host's environment with nothing read from the learner's home
    # (grader.CHECK_ENV wins: HOME and the config homes point nowhere).
    for result, want in ((rt.exec(lab_id, "target", ["/usr/bin/env", "-0"]), expected),
                         (rt.run_check(lab_id, "target", ["/usr/bin/env", "-0"]),
                          {**expected, **CHECK_ENV})):
        pairs = [p for p in result.stdout.split(b"\0") if p]
        got = dict(p.decode().split("=", 1) for p in pairs)
        assert got == want, got
        # Only the command was loaded with LD_PRELOAD (its own complaint), no root step.
        assert result.stderr_text.count("missing-hijack.so") <= 1, result.stderr_text
    pwd = rt.exec(lab_id, "target", ["/bin/pwd"])
    assert pwd.stdout_text == "/workspace\n"


@pytest.mark.parametrize(("environment", "field"), [
    ({"FGE_PATH": "x"}, "hosts[0].environment.FGE_PATH"),  # would shadow a staged value
    ({"UID": "0"}, "hosts[0].environment.UID"),  # bash will not let a script assign it
    ({"OPTIND": "x"}, "hosts[0].environment.OPTIND"),  # dash refuses it: no shell starts
    ({"IFS": ":"}, "hosts[0].environment.IFS"),  # the service's shell would split with it
    ({"go": "run"}, "hosts[0].environment.go"),  # the init's own variable
    ({f"V{i:061d}": "" for i in range(700)}, "hosts[0].environment"),  # beyond one exec
])
def test_names_the_renaming_shell_cannot_carry_are_refused_before_a_lab_is_built(
        tmp_path_factory: pytest.TempPathFactory, environment: dict[str, str],
        field: str) -> None:
    state = tmp_path_factory.mktemp("rootnames")
    rt = LocalRuntime(str(state), prefix=runtime_prefix("n"))
    try:
        with pytest.raises(SpecError) as refused:
            rt.create(LabSpec("rn-" + secrets.token_hex(4),
                              [SubnetSpec("office", "10.96.1.0/24")],
                              [HostSpec("target", networks=[("office", "10.96.1.10")],
                                        environment=environment)]))
        assert refused.value.field == field, refused.value
        assert rt.list() == []
    finally:
        rt.close()
        shutil.rmtree(state, ignore_errors=True)


def test_a_program_name_a_shell_would_read_as_an_option_is_refused(
        lab: tuple[LocalRuntime, str]) -> None:
    rt, lab_id = lab
    with pytest.raises(SpecError) as refused:
        rt.exec(lab_id, "target", ["-c", "echo hi"])
    assert refused.value.field == "argv[0]"
