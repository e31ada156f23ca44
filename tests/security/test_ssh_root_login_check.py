"""ssh-hardening's `no-root-login` against two configurations that let root in.

Red team, learner angle: the check copies `/etc/ssh/sshd_config`, refuses it when a line
starts with `include`, and asks `sshd -T` what it applies to a root login from the host
name `ops`. Both passed a server that lets root in:

- `"Include" /tmp/root.conf` before `PermitRootLogin no`: sshd splits a line the way a
  shell quotes (`"Include"`, `In"clude"` are Include), so the running daemon read
  `PermitRootLogin yes` from the learner's /tmp (the first value wins), while the grader,
  whose /tmp has no such file, saw only `no`.
- `Match Host 10.66.1.30` / `PermitRootLogin yes`: with UseDNS off (sshd's default) a
  Match Host is tested against the client's address, never a name, so the daemon lets
  root in from ops, while the grader asked about `host=ops` only.
- `Port 2222` beside the ticket's port, and `Match LocalPort 2222` / `PermitRootLogin yes`:
  the daemon listens on both and lets root in on 2222; the grader asked about the
  ticket's port only.
- `Match Address !10.66.1.30,*` / `PermitRootLogin yes`: root refused to ops alone, let in
  from every other address; the grader asked about ops's address only.
- `Match Address 10.66.1.0/24,!10.66.1.30` / `PermitRootLogin yes`: root let in from the
  lab's other addresses; no address the grader asked about falls in the block, so each
  Match block is now also made to apply (`Match all` in its place).

The check now reads the keyword as sshd does (quotes and backslashes taken out) and asks
for ops's name and address and for an address outside the lab, on every port the
configuration listens on. Each attack is shown to be in force on the running
daemon's configuration before the lab is graded as the orchestrator grades it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.authoring.harness import Harness
from forge.authoring.labtest import lab_test_path, load_lab_test
from forge.config.settings import load_settings
from forge.content import content_path
from forge.runtime.base import Runtime
from forge.runtime.factory import make_runtime
from forge.templates import TemplateRegistry

from ..support.prefixes import runtime_prefix

pytestmark = pytest.mark.root
TEMPLATES = content_path("templates")
# What the running daemon applies to a root login: the learner's /tmp is there, and the
# host is the client's address (UseDNS no); from ops, or (ADDRESS) from elsewhere.
AS_THE_DAEMON = (
    "ssh-keygen -q -t ed25519 -N '' -f /tmp/probe-key < /dev/null; "
    "/usr/sbin/sshd -T -f /etc/ssh/sshd_config -h /tmp/probe-key "
    "-C user=root,host=ADDRESS,addr=ADDRESS,laddr=10.66.1.10,lport=2222 "
    "| grep -i '^permitrootlogin'")
FROM = {"root-refused-to-ops-only": "198.51.100.20", "root-for-the-lab-but-ops": "10.66.1.20"}


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    settings = load_settings({"STORAGE_ROOT": str(tmp_path_factory.mktemp("ssh-root")),
                              "FORGE_RUNTIME_PREFIX": runtime_prefix("r")})
    rt = make_runtime(settings)
    try:
        yield rt
    finally:
        rt.close()


@pytest.mark.parametrize("attempt", ["quoted-include-from-tmp",
                                     "match-host-address-allows-root",
                                     "second-port-allows-root",
                                     "root-refused-to-ops-only",
                                     "root-for-the-lab-but-ops"])
def test_a_configuration_that_lets_root_in_fails_no_root_login(runtime: Runtime,
                                                              attempt: str) -> None:
    path = lab_test_path(TEMPLATES, "ssh-hardening")
    plan = load_lab_test(path)
    script = next(g for g in plan.gaming if g.name == attempt).text(Path(path).parent)
    template = TemplateRegistry.load(TEMPLATES).get("ssh-hardening").template
    harness = Harness(runtime, template, tuple((r.host, r.port) for r in plan.ready))
    with harness:
        lab = harness.launch()
        lab.in_terminal(script)
        in_force = lab.sh(AS_THE_DAEMON.replace(
            "ADDRESS", FROM.get(attempt, "10.66.1.30"))).stdout_text
        assert in_force.strip() == "permitrootlogin yes", in_force
        graded = lab.grade()
    assert graded.passed["no-root-login"] is False
