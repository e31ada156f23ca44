"""ssh-hardening's `keys-only` against configurations that keep passwords for someone.

Review ET, learner angle: the check asked the running daemon, from ops alone, which
methods it offers. Everything done right plus `Match Address !10.66.1.30,*` /
`PasswordAuthentication yes` (passwords for every address but ops's), or a second
`Port 2222` with `Match LocalPort 2222` / `PasswordAuthentication yes`, showed ops
"publickey" and earned the task while the server still took passwords. The criterion
now also asks `sshd -T` what it applies to the account's login from ops and from an
address outside the lab, on every port the configuration listens on. Passwords kept for
the lab's other addresses (`Match Address 10.66.1.0/24,!10.66.1.30`) passed that too: no
address asked falls in the block; sshd -T is now also asked with each Match block made
to apply. Each attack is shown to be in force on the running daemon (a client that is
not ops is offered passwords) before the lab is graded as the orchestrator grades it.
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
# The methods the running daemon offers a client on srv01 itself (not ops) on PORT.
OFFERED = ("ssh -p PORT -o PreferredAuthentications=none -o BatchMode=yes "
           "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=5 "
           "-o LogLevel=ERROR learner@10.66.1.10 true 2>&1 < /dev/null | tr -d '\\r'")


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    settings = load_settings({"STORAGE_ROOT": str(tmp_path_factory.mktemp("ssh-keys")),
                              "FORGE_RUNTIME_PREFIX": runtime_prefix("k")})
    rt = make_runtime(settings)
    try:
        yield rt
    finally:
        rt.close()


@pytest.mark.parametrize(("attempt", "probe_port"), [("passwords-for-all-but-ops", None),
                                                     ("passwords-on-second-port", "2222"),
                                                     ("passwords-for-the-lab-but-ops", None)])
def test_passwords_kept_for_someone_fail_keys_only(runtime: Runtime, attempt: str,
                                                   probe_port: str | None) -> None:
    path = lab_test_path(TEMPLATES, "ssh-hardening")
    plan = load_lab_test(path)
    script = next(g for g in plan.gaming if g.name == attempt).text(Path(path).parent)
    template = TemplateRegistry.load(TEMPLATES).get("ssh-hardening").template
    harness = Harness(runtime, template, tuple((r.host, r.port) for r in plan.ready))
    with harness:
        lab = harness.launch()
        lab.in_terminal(script)
        port = probe_port or lab.values["port"]
        offered = lab.sh(OFFERED.replace("PORT", port)).stdout_text
        assert "Permission denied (publickey,password)." in offered, offered
        graded = lab.grade()
    assert graded.passed == {"key-login": True, "keys-only": False, "no-root-login": True}


# Control: passwords left on in the file, but `AuthenticationMethods publickey` for every
# client: the server offers nothing but public keys, and keys-only is earned.
METHODS_PUBLICKEY = r"""
port=$(sed -n 's/^ *4\. SSH port: *\([0-9]*\).*/\1/p' /workspace/TICKET.txt)
mkdir -p ~/.ssh && chmod 700 ~/.ssh
timeout 5 bash -c 'cat < /dev/tcp/10.66.1.30/7022' >> ~/.ssh/authorized_keys
sed -e "s/^Port .*/Port $port/" -e 's/^PermitRootLogin .*/PermitRootLogin no/' \
  /etc/ssh/sshd_config > /tmp/c
echo 'AuthenticationMethods publickey' >> /tmp/c
cat /tmp/c > /etc/ssh/sshd_config
kill -HUP "$(cat /srv/ssh/sshd.pid)"
for _ in $(seq 100); do { : > "/dev/tcp/127.0.0.1/$port"; } 2>/dev/null && break; sleep 0.1; done
"""


def test_authentication_methods_publickey_for_everyone_earns_keys_only(
        runtime: Runtime) -> None:
    path = lab_test_path(TEMPLATES, "ssh-hardening")
    plan = load_lab_test(path)
    template = TemplateRegistry.load(TEMPLATES).get("ssh-hardening").template
    harness = Harness(runtime, template, tuple((r.host, r.port) for r in plan.ready))
    with harness:
        lab = harness.launch()
        lab.in_terminal(METHODS_PUBLICKEY)
        offered = lab.sh(OFFERED.replace("PORT", lab.values["port"])).stdout_text
        assert "Permission denied (publickey)." in offered, offered
        graded = lab.grade()
    assert graded.passed == {"key-login": True, "keys-only": True, "no-root-login": True}
