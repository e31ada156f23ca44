"""Gaming the cissp lab's findings (red team).

A fixed register, written once without opening the evidence, scored 1/3 in every lab:
`weak-config-identified` passed on "PermitRootLogin yes", the same in every lab's
sshd_config. The weak settings now include MaxAuthTries, drawn per lab, cited with this
lab's value (and no other weak value): the register stays at its structure's 1/6.

Host routes:

`intrusion-identified` passes when an unauthorized-access risk names the address that got
in, and fails when such a risk also blames an address that never did: blaming every
address of the log, or every address of 203.0.113.0/24, is not telling the intruder from
those that only knocked (the `every-documentation-address` gaming attempt). It found the
blamed addresses with a pattern that skips an address followed by `/` (a network such as
203.0.113.0/24 names no host), but took the intruder's address as named when followed by
`/`. So every address of 203.0.113.0/24 written as a host route, `203.0.113.N/32`, named
the intruder and blamed nobody: the criterion passed without reading the log. The
register is graded as the orchestrator grades, in a lab of the shipped template on a real
LocalRuntime.

The secret, encoded: the lab teaches never to copy the secret key into the register (many
people read it), and `exposed-key-identified` failed on the secret as written, but passed
on it in base64, hex or reversed, each of which anyone reading the register turns back
into the key at once: encoding is not hiding. Each form goes through the lab's own
credential check (the grader's command and stdin, in the lab); the last is also graded.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from forge.authoring.harness import Harness

from ..support.shipped_labs import shipped_harness

pytestmark = pytest.mark.root

# Every address of the documentation network the log's intruders come from, each a /32,
# in one intrusion risk that names the account of the task's own words.
EVERY_HOST_ROUTE = r"""
set -euo pipefail
ips=$(for n in $(seq 1 254); do printf '203.0.113.%s/32 ' "$n"; done)
jq -n --arg ips "$ips" '{risks: [
  {id: "R1", title: "intrusion", category: "unauthorized-access",
   evidence: ("login for backup from one of " + $ips), likelihood: 5, impact: 5,
   risk_score: 25, treatment: "mitigate", owner: "infra", action: "block"}]}' \
  > /workspace/risk_register.json
"""


# Three complete risks, written once for every lab: the settings as the shipped
# sshd_config had them in every lab (MaxAuthTries 10 then), nothing of the evidence read.
FIXED_REGISTER = r"""
set -euo pipefail
jq -n --arg tries "${TRIES:-10}" '{risks: [
  {id: "R1", title: "Intrusion", category: "unauthorized-access", evidence: "auth.log",
   likelihood: 5, impact: 5, risk_score: 25, treatment: "mitigate", owner: "infra", action: "block"},
  {id: "R2", title: "Leaked key", category: "credential-exposure", evidence: "billing-api.env",
   likelihood: 5, impact: 4, risk_score: 20, treatment: "mitigate", owner: "dev", action: "revoke"},
  {id: "R3", title: "Weak sshd", category: "misconfiguration",
   evidence: ("sshd_config: PermitRootLogin yes; PasswordAuthentication yes; MaxAuthTries " + $tries),
   likelihood: 4, impact: 4, risk_score: 16, treatment: "mitigate", owner: "infra",
   action: "set PermitRootLogin no, PasswordAuthentication no and MaxAuthTries 3"}]}' \
  > /workspace/risk_register.json
"""


# The secret in a form anyone reverses at once, in a credential risk that names the key id.
ENCODED_SECRET = r"""
set -euo pipefail
cd /srv/incident/web01
key=$(grep '^STORAGE_ACCESS_KEY_ID=' billing-api.env | cut -d= -f2)
secret=$(grep '^STORAGE_SECRET_ACCESS_KEY=' billing-api.env | cut -d= -f2)
case $FORM in
  base64) s=$(printf %s "$secret" | base64 -w0) ;;
  base64-offset) s=$(printf 'secret=%s' "$secret" | base64 -w0 | tr '+/' '-_') ;;
  hex) s=$(printf %s "$secret" | od -An -tx1 | tr -d ' \n' | tr a-f A-F) ;;
  reversed) s=$(printf %s "$secret" | rev) ;;
  none) s="the secret itself is not repeated" ;;
esac
jq -n --arg k "$key" --arg s "$s" '{risks: [
  {id: "R1", title: "key", category: "credential-exposure", evidence: ("key " + $k + " (" + $s + ")"),
   likelihood: 5, impact: 4, risk_score: 20, treatment: "mitigate", owner: "dev", action: "revoke"}]}' \
  > /workspace/risk_register.json
printf '%s\n%s\n' "$key" "$secret" | python3 -I /opt/forge/check_register.py credential
"""


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """Labs of the shipped cissp template on a runtime of this module's own."""
    with shipped_harness(tmp_path_factory.mktemp("cissp"), "cissp", "c") as h:
        yield h


def test_every_address_as_a_host_route_is_no_intrusion_found(harness: Harness) -> None:
    run = harness.launch()
    run.must(EVERY_HOST_ROUTE, "an intrusion risk naming every 203.0.113.N/32")
    attacker = f"203.0.113.{run.values['attacker']}/32"
    assert attacker in run.sh("cat /workspace/risk_register.json").stdout_text
    graded = run.grade()
    assert not graded.passed["intrusion-identified"], graded


def test_a_register_written_once_for_every_lab_names_no_weak_setting(harness: Harness) -> None:
    run = harness.launch()  # its MaxAuthTries is 12 to 99, never the 10 cited
    run.must(FIXED_REGISTER, "the fixed register")
    graded = run.grade()
    assert graded.passed == {"register-structure": True, "intrusion-identified": False,
                             "exposed-key-identified": False,
                             "weak-config-identified": False}, graded
    # The control: the same register citing this lab's value, read from its sshd_config.
    run = harness.launch()
    run.must("TRIES=$(awk '$1 == \"MaxAuthTries\" {print $2}' /srv/incident/web01/sshd_config)\n"
             + FIXED_REGISTER, "the register with this lab's MaxAuthTries")
    assert f"MaxAuthTries {run.values['max_tries']}" in run.sh(
        "cat /workspace/risk_register.json").stdout_text
    assert run.grade().passed["weak-config-identified"]


def test_the_secret_encoded_is_still_the_secret_repeated(harness: Harness) -> None:
    run = harness.launch()
    for form in ("base64", "base64-offset", "hex", "reversed"):
        checked = run.sh(f"FORM={form}\n" + ENCODED_SECRET)
        assert checked.exit_code == 1 and "repeats the secret" in checked.stdout_text, (
            form, checked)
    assert not run.grade().passed["exposed-key-identified"]
    # The control: the same register without the secret in any form passes the check.
    run = harness.launch()
    checked = run.sh("FORM=none\n" + ENCODED_SECRET)
    assert checked.exit_code == 0 and "PASS" in checked.stdout_text, checked
