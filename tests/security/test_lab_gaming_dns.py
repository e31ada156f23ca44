"""Gaming the dns-zone lab's "transfers to the secondary only" with a deny list of the one
host the grader probes from (red team, this stop).

`transfer-restricted` says "the secondary ns2 can transfer acme.lab from ns1; any other
host is refused", but asks only ns2 (allowed) and client (refused); the legacy server's
probe (under `zone-served`) takes a completed transfer for fine as long as it lacks the
leaked record. So `allow-transfer { !10.64.1.100; any; };` (everybody but the client)
scored the criterion while legacy, ns1 itself and any other address of the LAN still get
the whole zone. The reference solution otherwise, graded as the orchestrator grades, on a
real LocalRuntime.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from forge.authoring.harness import Harness
from forge.authoring.labtest import lab_test_path, load_lab_test
from forge.content import content_path

from ..support.shipped_labs import shipped_harness

pytestmark = pytest.mark.root
TEMPLATES = content_path("templates")
ALLOWED = "allow-transfer { 10.64.1.11; };"
DENY_THE_PROBE = "allow-transfer { !10.64.1.100; any; };"
AXFR = "dig +time=2 +tries=2 @10.64.1.10 acme.lab AXFR"


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """Labs of the shipped dns-zone template on a runtime of this module's own."""
    with shipped_harness(tmp_path_factory.mktemp("dns"), "dns-zone", "d",
                         (("legacy", "53"), ("learner", "53"))) as h:
        yield h


def deny_list_solution() -> str:
    path = lab_test_path(TEMPLATES, "dns-zone")
    text = load_lab_test(path).solution.text(Path(path).parent)
    assert ALLOWED in text
    return text.replace(ALLOWED, DENY_THE_PROBE)


def test_transfers_open_to_all_but_the_probe_host_are_not_restricted(
        harness: Harness) -> None:
    run = harness.launch()
    run.must(deny_list_solution(), "the reference solution with a deny list")
    # In place: legacy (neither ns2 nor client) gets the whole zone from ns1, so does ns1
    # itself; the client is refused.
    legacy = harness.runtime.exec(run.id, "legacy", shell=AXFR, timeout=15)
    assert "XFR size" in legacy.stdout_text, legacy.stdout_text[-400:]
    own = run.sh(AXFR, timeout=15)
    assert "XFR size" in own.stdout_text, own.stdout_text[-400:]
    client = harness.runtime.exec(run.id, "client", shell=AXFR, timeout=15)
    assert "Transfer failed" in client.stdout_text, client.stdout_text[-400:]
    graded = run.grade()
    assert graded.passed["leak-found"] and graded.passed["zone-served"], graded
    assert not graded.passed["transfer-restricted"], graded


# Red team CY: `transfer-restricted` took "Transfer failed" anywhere in dig's output for a
# refusal, and a record's text is the learner's. ns2 gets the real zone (a view of its
# own); everybody else gets an open transfer of an acme.lab without www (served from a
# zone of its own, so the zone-served answers stay right) and with a TXT record reading
# "Transfer failed". Every host but ns2 gets the zone, and the criterion passed (3/3).
FAKE_REFUSAL = r"""
set -euo pipefail
cd /srv/dns
until dig +time=2 +tries=1 @10.64.1.53 acme.lab AXFR > legacy.axfr && grep -q 'XFR size' legacy.axfr; do sleep 0.25; done
awk '$4 == "TXT" && $1 ~ /^backup-/ {print $5; exit}' legacy.axfr | tr -d '"' > /workspace/leak.txt
rr() { awk -v n="$1" -v t="$2" '$1 == n && $4 == t {print $5; exit}' legacy.axfr; }
www=$(rr www.acme.lab. A); mail=$(rr mail.acme.lab. A)
soa='$TTL 300
@ IN SOA ns1.acme.lab. hostmaster.acme.lab. ( 1 3600 600 86400 300 )
  IN NS ns1.acme.lab.'
printf '%s\n  IN NS ns2.acme.lab.\nns1 IN A 10.64.1.10\nns2 IN A 10.64.1.11\nwww IN A %s\nmail IN A %s\n' "$soa" "$www" "$mail" > full.zone
printf '%s\n  IN NS ns2.acme.lab.\nns1 IN A 10.64.1.10\nns2 IN A 10.64.1.11\nmail IN A %s\n@ IN TXT "Transfer failed"\n' "$soa" "$mail" > open.zone
printf '%s\n@ IN A %s\n' "$soa" "$www" > www.zone
cat >> named.conf <<'CONF'
view "secondary" { match-clients { 10.64.1.11; };
  zone "acme.lab" { type primary; file "/srv/dns/full.zone"; allow-transfer { any; }; }; };
view "everybody" { match-clients { any; };
  zone "acme.lab" { type primary; file "/srv/dns/open.zone"; allow-transfer { any; }; };
  zone "www.acme.lab" { type primary; file "/srv/dns/www.zone"; }; };
CONF
named-checkconf named.conf
kill -HUP "$(cat named.pid)"
until [ "$(dig +short +time=1 +tries=1 @10.64.1.10 www.acme.lab A)" = "$www" ]; do sleep 0.2; done
"""


def test_a_record_reading_transfer_failed_is_no_refusal(harness: Harness) -> None:
    run = harness.launch()
    run.must(FAKE_REFUSAL, "views with an open transfer beside a fake refusal")
    # Not refused: the client, legacy and ns1 itself get the zone whole.
    for host in ("client", "legacy"):
        out = harness.runtime.exec(run.id, host, shell=AXFR, timeout=15).stdout_text
        assert "XFR size" in out and "Transfer failed" in out, out[-400:]
    assert "XFR size" in run.sh(AXFR, timeout=15).stdout_text
    graded = run.grade()
    assert graded.passed["leak-found"] and graded.passed["zone-served"], graded
    assert not graded.passed["transfer-restricted"], graded


# Review DE: a server of the learner's (ns1 is theirs, as root) can answer the AXFR with
# the zone's records and then an error; dig prints the records, then "; Transfer failed.".
# The refusal check reads dig's output, so it is run here on what dig prints for each
# answer (the script as the template has it; `dig` a stand-in that prints that output:
# the lab's images have no language to write such a server in for a live test).
GENUINE_REFUSAL = """
; <<>> DiG 9.18.33-1~deb12u2-Debian <<>> +time=2 +tries=2 @10.64.1.10 acme.lab AXFR
;; global options: +cmd
; Transfer failed.
"""
RECORDS_THEN_ERROR = """
; <<>> DiG 9.18.33-1~deb12u2-Debian <<>> +time=2 +tries=2 @10.64.1.10 acme.lab AXFR
;; global options: +cmd
acme.lab.\t\t300\tIN\tSOA\tns1.acme.lab. hostmaster.acme.lab. 1 3600 600 86400 300
mail.acme.lab.\t\t300\tIN\tA\t10.64.1.25
; Transfer failed.
"""
TXT_SAYS_FAILED = """
; <<>> DiG 9.18.33-1~deb12u2-Debian <<>> +time=2 +tries=2 @10.64.1.10 acme.lab AXFR
;; global options: +cmd
acme.lab.\t\t300\tIN\tTXT\t"; Transfer failed"
;; XFR size: 1 records (messages 1, bytes 80)
"""


def _refusal_check() -> list[str]:
    template = yaml.safe_load((Path(TEMPLATES) / "dns-zone.yaml").read_text())
    [criterion] = [c for c in template["spec"]["successCriteria"]
                   if c["id"] == "transfer-restricted"]
    commands = [check["command"] for check in criterion["checks"]
                if check["container"] != "ns2"]
    assert commands and all(command == commands[0] for command in commands)
    return list(commands[0])


@pytest.mark.parametrize(("output", "refused"), [
    (GENUINE_REFUSAL, True), (RECORDS_THEN_ERROR, False), (TXT_SAYS_FAILED, False)],
    ids=["refused", "records-then-error", "txt-says-failed"])
def test_only_a_transfer_without_any_record_counts_as_refused(
        tmp_path: Path, output: str, refused: bool) -> None:
    dig = tmp_path / "dig"
    (tmp_path / "out").write_text(output)
    dig.write_text(f"#!/bin/sh\ncat {tmp_path / 'out'}\n")
    dig.chmod(0o755)
    done = subprocess.run(_refusal_check(), input="10.64.1.20\n", capture_output=True,
                          text=True, timeout=30, env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
    assert (done.returncode == 0) is refused, (done.returncode, done.stderr)
