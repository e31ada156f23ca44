"""ssh-hardening's `keys-only` and `no-root-login` against configurations that keep
passwords, or root's login, for someone. Each attack is shown to be in force on the
running daemon (a client that is not ops is offered passwords; `sshd -T` with the
learner's /tmp in place applies `PermitRootLogin yes`) before the lab is graded as the
orchestrator grades it. One runtime, lab test and template serve every case.

`keys-only` (review ET, learner angle): the check asked the running daemon, from ops alone,
which methods it offers. Everything done right plus `Match Address !10.66.1.30,*` /
`PasswordAuthentication yes` (passwords for every address but ops's), or a second
`Port 2222` with `Match LocalPort 2222` / `PasswordAuthentication yes`, showed ops
"publickey" and earned the task while the server still took passwords. The criterion
now also asks `sshd -T` what it applies to the account's login from ops and from an
address outside the lab, on every port the configuration listens on. Passwords kept for
the lab's other addresses (`Match Address 10.66.1.0/24,!10.66.1.30`) passed that too: no
address asked falls in the block; sshd -T is now also asked with each Match block made
to apply.

`no-root-login` (red team, learner angle): the check copies `/etc/ssh/sshd_config`, refuses
it when a line starts with `include`, and asked `sshd -T` what it applies to a root login
from the host name `ops`. These passed a server that lets root in:

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
configuration listens on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from forge.authoring.harness import Harness
from forge.authoring.labtest import LabTest, lab_test_path, load_lab_test
from forge.content import content_path
from forge.runtime.base import Runtime
from forge.templates import ScenarioTemplate, TemplateRegistry

from ..support.configured_runtime import configured_runtime
from ..support.prefixes import runtime_prefix

pytestmark = pytest.mark.root
TEMPLATES = content_path("templates")
# The methods the running daemon offers a client on srv01 itself (not ops) on PORT.
OFFERED = ("ssh -p PORT -o PreferredAuthentications=none -o BatchMode=yes "
           "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=5 "
           "-o LogLevel=ERROR learner@10.66.1.10 true 2>&1 < /dev/null | tr -d '\\r'")
# What the running daemon applies to a root login: the learner's /tmp is there, and the
# host is the client's address (UseDNS no); from ops, or (ADDRESS) from elsewhere.
AS_THE_DAEMON = (
    "ssh-keygen -q -t ed25519 -N '' -f /tmp/probe-key < /dev/null; "
    "/usr/sbin/sshd -T -f /etc/ssh/sshd_config -h /tmp/probe-key "
    "-C user=root,host=ADDRESS,addr=ADDRESS,laddr=10.66.1.10,lport=2222 "
    "| grep -i '^permitrootlogin'")
FROM = {"root-refused-to-ops-only": "198.51.100.20", "root-for-the-lab-but-ops": "10.66.1.20"}
KEYS_ONLY_LOST = {"key-login": True, "keys-only": False, "no-root-login": True}

# Control: passwords left on in the file, but `AuthenticationMethods publickey` for every
# client: the server offers nothing but public keys, and keys-only is earned. Root is
# refused by a trailing `Match Address *` block (how settings are appended after a Match
# block): it applies to every client, also one no other block matches, as `Match all` does;
# no-root-login's "no Match block applying" probe, which kept only the lines before the
# first Match, failed a trailing `Match all`, and made `Match Address *` match no client
# (a false fail naming "no Match block but Match all applying").
METHODS_PUBLICKEY = r"""
port=$(sed -n 's/^ *4\. SSH port: *\([0-9]*\).*/\1/p' /workspace/TICKET.txt)
mkdir -p ~/.ssh && chmod 700 ~/.ssh
timeout 5 bash -c 'cat < /dev/tcp/10.66.1.30/7022' >> ~/.ssh/authorized_keys
sed -e "s/^Port .*/Port $port/" -e 's/^PermitRootLogin .*/PermitRootLogin yes/' \
  /etc/ssh/sshd_config > /tmp/c
echo 'AuthenticationMethods publickey' >> /tmp/c
printf 'Match Address *\n    PermitRootLogin no\n' >> /tmp/c
cat /tmp/c > /etc/ssh/sshd_config
kill -HUP "$(cat /srv/ssh/sshd.pid)"
for _ in $(seq 100); do { : > "/dev/tcp/127.0.0.1/$port"; } 2>/dev/null && break; sleep 0.1; done
"""


@dataclass(frozen=True)
class SshHardening:
    """What every case launches from: the runtime, ssh-hardening's lab test and template."""

    runtime: Runtime
    plan: LabTest
    template: ScenarioTemplate

    def harness(self) -> Harness:
        """A harness of its own for one case (closing one refuses further launches)."""
        return Harness(self.runtime, self.template,
                       tuple((r.host, r.port) for r in self.plan.ready))

    def attempt(self, name: str) -> str:
        """The script of the lab test's gaming attempt `name`."""
        path = lab_test_path(TEMPLATES, "ssh-hardening")
        return next(g for g in self.plan.gaming if g.name == name).text(Path(path).parent)


@pytest.fixture(scope="module")
def ssh_hardening(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshHardening]:
    with configured_runtime(tmp_path_factory.mktemp("ssh-hardening"), runtime_prefix("k")) as rt:
        yield SshHardening(rt, load_lab_test(lab_test_path(TEMPLATES, "ssh-hardening")),
                           TemplateRegistry.load(TEMPLATES).get("ssh-hardening").template)


@pytest.mark.parametrize(("attempt", "probe_port"), [("passwords-for-all-but-ops", None),
                                                     ("passwords-on-second-port", "2222"),
                                                     ("passwords-for-the-lab-but-ops", None)])
def test_passwords_kept_for_someone_fail_keys_only(ssh_hardening: SshHardening, attempt: str,
                                                   probe_port: str | None) -> None:
    with ssh_hardening.harness() as harness:
        lab = harness.launch()
        lab.in_terminal(ssh_hardening.attempt(attempt))
        port = probe_port or lab.values["port"]
        offered = lab.sh(OFFERED.replace("PORT", port)).stdout_text
        assert "Permission denied (publickey,password)." in offered, offered
        graded = lab.grade()
    assert graded.passed == KEYS_ONLY_LOST


def test_authentication_methods_publickey_for_everyone_earns_keys_only(
        ssh_hardening: SshHardening) -> None:
    with ssh_hardening.harness() as harness:
        lab = harness.launch()
        lab.in_terminal(METHODS_PUBLICKEY)
        offered = lab.sh(OFFERED.replace("PORT", lab.values["port"])).stdout_text
        assert "Permission denied (publickey)." in offered, offered
        in_force = lab.sh(AS_THE_DAEMON.replace("ADDRESS", "198.51.100.20")).stdout_text
        assert in_force.strip() == "permitrootlogin no", in_force
        graded = lab.grade()
    assert graded.passed == {"key-login": True, "keys-only": True, "no-root-login": True}


@pytest.mark.parametrize("attempt", ["quoted-include-from-tmp",
                                     "match-host-address-allows-root",
                                     "second-port-allows-root",
                                     "root-refused-to-ops-only",
                                     "root-for-the-lab-but-ops"])
def test_a_configuration_that_lets_root_in_fails_no_root_login(ssh_hardening: SshHardening,
                                                              attempt: str) -> None:
    with ssh_hardening.harness() as harness:
        lab = harness.launch()
        lab.in_terminal(ssh_hardening.attempt(attempt))
        in_force = lab.sh(AS_THE_DAEMON.replace(
            "ADDRESS", FROM.get(attempt, "10.66.1.30"))).stdout_text
        assert in_force.strip() == "permitrootlogin yes", in_force
        graded = lab.grade()
    assert graded.passed["no-root-login"] is False
