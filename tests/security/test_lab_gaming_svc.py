"""Gaming the service labs (tls-ca, ssh-hardening) with what another instance of the same
lab handed out scores nothing: attacks `forge lab test`'s gaming lists cannot express, as
they need two labs at once (real LocalRuntime, graded as the orchestrator grades).

- tls-ca: the key, certificate and chain a solved lab serves, copied into another lab
  with the *same* host name and port and served there: only the CA differs (each lab's
  CA is made at its start), and the other lab's clients trust only their own CA. The CA
  keys are not reachable from the learner's host through the enrollment service either.
- ssh-hardening: the other lab's ops public key in authorized_keys, everything else done
  right: the ops team of this lab holds a different private key, so no key login.
Each copy is first shown to be in place and the source lab to score 1.0.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.authoring.harness import Harness
from forge.authoring.labtest import lab_test_path, load_lab_test
from forge.content import content_path
from forge.runtime.base import Runtime
from forge.templates import TemplateRegistry

from ..support.configured_runtime import configured_runtime
from ..support.prefixes import runtime_prefix

pytestmark = pytest.mark.root
TEMPLATES = content_path("templates")
TLS_FILES = ("site.key", "site.crt", "intermediate.crt")


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    with configured_runtime(tmp_path_factory.mktemp("gaming-svc"), runtime_prefix("s")) as rt:
        yield rt


def _harness(runtime: Runtime, name: str) -> tuple[Harness, str]:
    """A harness for a shipped lab (with its ready ports) and its reference solution."""
    path = lab_test_path(TEMPLATES, name)
    plan = load_lab_test(path)
    template = TemplateRegistry.load(TEMPLATES).get(name).template
    ready = tuple((r.host, r.port) for r in plan.ready)
    return Harness(runtime, template, ready), plan.solution.text(Path(path).parent)


def test_tls_certificate_of_another_lab_is_not_trusted_here(runtime: Runtime) -> None:
    harness, solution = _harness(runtime, "tls-ca")
    with harness:
        source = harness.launch()
        source.in_terminal(solution)
        files = {f: source.read(f"/workspace/tls/{f}") for f in TLS_FILES}
        assert all(files.values()), files
        assert source.grade().score == 1.0
        # Same host name and port: nothing differs but the lab's CA.
        target = harness.launch(dict(source.values))
        target.must("mkdir -p /workspace/tls", "making the directory")
        for name, data in files.items():
            assert data is not None
            target.write(f"/workspace/tls/{name}", data)
        port = source.values["port"]
        target.in_terminal(
            "cd /workspace/tls\n"
            f"setsid nohup openssl s_server -quiet -www -accept {port} -cert site.crt "
            "-key site.key -cert_chain intermediate.crt >/dev/null 2>&1 </dev/null &\n"
            f"for _ in $(seq 100); do {{ : > /dev/tcp/127.0.0.1/{port}; }} 2>/dev/null "
            "&& break; sleep 0.1; done\n"
            # In place: the copied certificate is what this lab's server presents.
            f"openssl s_client -connect 127.0.0.1:{port} </dev/null 2>/dev/null "
            "| openssl x509 -noout -fingerprint > /tmp/served\n"
            "openssl x509 -noout -fingerprint -in site.crt | cmp - /tmp/served\n"
            # The CA keys are not handed out, also not through path tricks.
            "for p in /root.key /intermediate.key /../root.key /srv/ca/root.key "
            "/%2e%2e/intermediate.key; do\n"
            "  curl -s --path-as-is http://10.65.1.5:8080$p | grep -q 'PRIVATE KEY' && exit 7\n"
            "done; true\n")
        graded = target.grade()
    assert graded.passed == {"certificate-issued": False, "serves-issued-certificate": False,
                             "full-chain": False}


def test_ssh_key_of_another_labs_ops_team_logs_nobody_in(runtime: Runtime) -> None:
    harness, solution = _harness(runtime, "ssh-hardening")
    with harness:
        source = harness.launch()
        source.in_terminal(solution)
        foreign = source.read("/home/.ssh/authorized_keys")
        assert foreign is not None and foreign.startswith(b"ssh-ed25519 ")
        assert source.grade().score == 1.0
        target = harness.launch(dict(source.values))
        target.in_terminal(solution)
        target.write("/home/.ssh/authorized_keys", foreign)
        assert target.read("/home/.ssh/authorized_keys") == foreign
        graded = target.grade()
    # The hardening itself is right; only the key is another lab's.
    assert graded.passed == {"key-login": False, "keys-only": True, "no-root-login": True}
