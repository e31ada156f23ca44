"""Gaming the forensics and response labs from the learner's terminal (real LocalRuntime,
graded as the orchestrator grades), beyond what `forge lab test`'s gaming lists show:

- log-forensics: reading the answers off the generator's command line or environment
  (`ps`, /proc/*/cmdline, /proc/*/environ) finds nothing: the generator runs on the log
  server, where the learner has no terminal; the log itself does hold them (control);
- password-cracking: guessing online locks the account after 5 failures, and then even
  the right password is refused and no login is recorded (while another account, not
  locked, still logs in with its password: the control); the control logs in while the
  learner holds 200 half-sent connections open to the login port (a slow-loris): the
  portal started a thread per connection, the lab's 128 pids ran out and the portal
  died, so the lab's login could no longer be proven by anyone;
- incident-response: the watchdog really restarts a killed beacon and re-creates its
  deleted script; with both scripts gone and the processes dead, the login-profile hook
  reinstalls everything at the next terminal; after the reference solution a new
  terminal starts nothing and the lab scores 1.0; filling the lab's process table until
  the implant's forks fail, then freeing it (as Submit's closing the terminal does),
  leaves the beacon beaconing (its loop forked `sleep`, and bash gives up after 15 s of
  failed forks: half the score without finding the implant, red team); holding every
  port web01 could connect from silences the beacon only until the seal ends the holder,
  and the C2 is asked after the seal too; killing every
  process of the account (`kill -9 -1`) and wiping every dotfile under /home, the same
  lines in every lab, takes web01's site and the account's own files with the implant
  and scores 0 (it scored 5/6 before they had to survive, red team); sparing everything
  named web01, all of /home/bin and the first 4 lines of .profile, the same lines in
  every lab, spares the implant too and scores 0 (5/6 while its layout was fixed, review ET).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.authoring.harness import Harness, LabRun
from forge.authoring.labtest import lab_test_path, load_lab_test
from forge.content import content_path
from forge.runtime.base import Runtime
from forge.templates import TemplateRegistry

from ..support.configured_runtime import configured_runtime
from ..support.prefixes import runtime_prefix
from ..support.proc import machine_cmdlines

pytestmark = pytest.mark.root
TEMPLATES = content_path("templates")
# Wait (polling, bounded) until a condition holds in the lab; exit 1 if it never does.
UNTIL = "for _ in $(seq 100); do {cond} && exit 0; sleep 0.1; done; exit 1\n"
BEACON = "pgrep -f '^bash /home/.cache/'"
# The watchdog, /home/bin/web01-TAG, beside the account's exporter /home/bin/web01-HOSTID.
WATCHDOG = "pgrep -f '^bash /home/bin/web01-{tag}'"


# Binds every port of web01's ephemeral range (the file limit, 20000, takes two processes)
# and keeps them: no connect from web01 finds a source port.
HOLD_PORTS = r"""
cat > /tmp/hold.py <<'PY'
import socket, sys, time
first, end, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
held = {}
while True:  # again and again: a port in use a moment ago (a beacon's connection) is free now
    for p in range(first, end):
        if p not in held:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # over TIME_WAIT too
            try:
                s.bind(("", p))
                held[p] = s
            except OSError:
                s.close()
    with open(out, "w") as fh:
        fh.write("%d\n" % len(held))
    time.sleep(0.05)
PY
ulimit -n "$(ulimit -Hn)"; n=$(( $(ulimit -n) - 16 ))
read -r lo hi < /proc/sys/net/ipv4/ip_local_port_range
for ((p = lo; p <= hi; p += n)); do
  end=$(( p + n > hi + 1 ? hi + 1 : p + n ))
  (setsid python3 -I /tmp/hold.py "$p" "$end" "/tmp/held.$p" </dev/null >/dev/null 2>&1 &)
done
for _ in $(seq 600); do
  # every port held but those of the beacon's closed connections (TIME_WAIT, 60 s: no
  # connect to the C2 may take them either; the holders take each once it is free)
  held=$(cat /tmp/held.* 2>/dev/null | awk '{s += $1} END {print s + 0}')
  waiting=$(ss -Htan state time-wait | wc -l)
  [ $(( held + waiting )) -ge $(( hi - lo + 1 )) ] && exit 0
  sleep 0.1
done
exit 1
"""


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    with configured_runtime(tmp_path_factory.mktemp("gaming-ir"), runtime_prefix("i")) as rt:
        yield rt


def harness(runtime: Runtime, name: str, ready: tuple[tuple[str, str], ...]) -> Harness:
    return Harness(runtime, TemplateRegistry.load(TEMPLATES).get(name).template, ready)


def solution(name: str) -> str:
    path = lab_test_path(TEMPLATES, name)
    return load_lab_test(path).solution.text(Path(path).parent)


def test_log_forensics_answers_are_not_on_any_command_line_the_learner_sees(
        runtime: Runtime) -> None:
    with harness(runtime, "log-forensics", (("logsrv", "5140"),)) as h:
        run = h.launch()
        no_answer_in_service_arguments(run, b"authlog.py", ("seed", "a1", "account"),
                                       (("logsrv", "5140"),))
        v = run.values
        intruder = f"{v['a1']}.{v['a2']}.{v['a3']}.{v['a4']}"
        seen = run.sh("ps -eo args; for f in /proc/[0-9]*/cmdline /proc/[0-9]*/environ; do "
                      "tr '\\0' ' ' < $f 2>/dev/null; echo; done").stdout_text
        # The generator's whole argument list (one random number alone may be a pid).
        args = " ".join(v[k] for k in ("seed", "a1", "a2", "a3", "a4", "account", "hh", "mm",
                                       "ss"))
        assert "authlog.py" not in seen and intruder not in seen and args not in seen
        log = run.sh("nc -d 10.64.1.5 5140").stdout_text
        assert "Accepted password for " in log and f" from {intruder} port " in log
        run.grade()


# From the learner's host: hold LORIS connections to the login port open, each with a
# line begun and never ended, then log in on a new one while they are all still held.
LORIS = r"""
python3 - "$@" <<'PY'
import socket, sys
held = []
for _ in range(200):
    try:
        s = socket.create_connection(("10.65.1.20", 2323), timeout=10)
        s.sendall(b"x")
        held.append(s)
    except OSError as e:
        print("connect failed:", e)
        break
s = socket.create_connection(("10.65.1.20", 2323), timeout=30)
s.sendall(("%s %s\n" % (sys.argv[1], sys.argv[2])).encode())
print(s.makefile().read().splitlines()[-1])
PY
"""


def portal(run: LabRun, user: str, password: str) -> str:
    return run.sh(f"printf '%s %s\\n' {user} '{password}' | nc -N 10.65.1.20 2323"
                  ).stdout_text.splitlines()[-1]


def test_online_guessing_locks_the_account_even_for_the_right_password(
        runtime: Runtime) -> None:
    users = ["a.novak", "j.osei", "m.keller", "r.silva"]
    with harness(runtime, "password-cracking", (("portal", "2323"),)) as h:
        run = h.launch()
        no_answer_in_service_arguments(run, b"portal.py", ("target", "word", "digits"),
                                       (("portal", "2323"),))
        v = run.values
        target = int(v["target"])
        words = (run.read("/srv/wordlists/common-passwords.txt") or b"").decode().split()
        right = words[int(v["word"])].capitalize() + v["digits"]
        other = (target + 1) % 4
        loris = run.sh(f"set -- {users[other]} {v[f'decoy{other}']}\n" + LORIS)
        assert loris.stdout_text.splitlines()[-1].startswith("OK"), loris  # control
        for left in (4, 3, 2, 1, 0):
            reply = portal(run, users[target], f"Wrong{left}")
            assert reply.startswith("DENIED") and f"({left} attempts left" in reply
        assert portal(run, users[target], right).startswith("LOCKED")
        run.sh(f"echo '{users[target]}:{right}' > /workspace/cracked.txt")
        graded = run.grade()
        assert graded.passed == {"password-recovered": True, "portal-login": False}


def test_killed_beacon_comes_back_and_a_deleted_script_is_recreated(runtime: Runtime) -> None:
    with harness(runtime, "incident-response", (("c2", "port"),)) as h:
        run = h.launch()
        run.must(UNTIL.format(cond=BEACON + " >/dev/null"), "the beacon runs")
        first = run.sh(BEACON).stdout_text.split()
        script = run.sh("ps -eo args= | awk '$2 ~ /^\\/home\\/.cache\\// {print $2; exit}'"
                        ).stdout_text.strip()
        assert script.startswith("/home/.cache/web01/.fc-")
        run.must(f"rm -f {script}; pkill -9 -f '^bash {script}'", "kill and delete the beacon")
        run.must(UNTIL.format(cond=f"test -f {script} && {BEACON} >/dev/null"),
                 "the watchdog restores the beacon")
        assert set(run.sh(BEACON).stdout_text.split()).isdisjoint(first)
        # Red team, this stop: every port web01 could connect from held (bound), the
        # beacon left running. Its connects fail, so the C2 hears nothing: half the score
        # without finding the implant, until the C2 was asked after the seal too.
        run.in_terminal(HOLD_PORTS, timeout=120)
        # In place: the C2 goes quiet (asked as the live check asks it) while the beacon
        # runs.
        quiet = UNTIL.format(cond="echo {port} | python3 -I /opt/forge/c2.py quiet | grep -q PASS")
        went_quiet = h.runtime.exec(run.id, "c2", shell=quiet.format(port=run.values["port"]),
                                    timeout=30)
        assert went_quiet.exit_code == 0, went_quiet
        run.must(BEACON, "the beacon still runs")
        graded = run.grade()
        assert not graded.passed["beacon-stopped"] and not graded.passed["persistence-removed"]


def test_profile_hook_reinstalls_the_implant_at_the_next_login(runtime: Runtime) -> None:
    with harness(runtime, "incident-response", (("c2", "port"),)) as h:
        run = h.launch()
        run.must(UNTIL.format(cond=BEACON + " >/dev/null"), "the beacon runs")
        watchdog = WATCHDOG.format(tag=run.values["tag"])
        w = f"/home/bin/web01-{run.values['tag']}"
        run.must(f"test -f {w}; "
                 f"kill -STOP $({watchdog}); kill -9 $({watchdog}) $({BEACON}); "
                 f"rm -rf {w} /home/.cache/web01/.fc-*; sleep 0.5; "
                 f"! {watchdog} && ! {BEACON} && grep -q base64 /home/.profile",
                 "stop the processes and delete both scripts, leaving the hook")
        run.in_terminal("true\n")  # a terminal is a login shell: it runs ~/.profile
        run.must(UNTIL.format(cond=f"{watchdog} >/dev/null && {BEACON} >/dev/null"),
                 "the hook brings the implant back")
        graded = run.grade()
        assert not graded.passed["beacon-stopped"] and not graded.passed["persistence-removed"]


def test_after_the_reference_solution_a_new_login_starts_nothing(runtime: Runtime) -> None:
    with harness(runtime, "incident-response", (("c2", "port"),)) as h:
        run = h.launch()
        run.must(UNTIL.format(cond=BEACON + " >/dev/null"), "the beacon runs")
        run.must(solution("incident-response"), "the reference solution")
        run.in_terminal("true\n")
        run.must(f"sleep 1; ! {WATCHDOG.format(tag=run.values['tag'])} && ! {BEACON}",
                 "nothing restarted")
        assert run.grade().score == 1.0


# The same lines in every lab, nothing of the implant looked at: every process of the
# account killed (kill(-1) spares only its caller), every dotfile and dot-directory under
# /home wiped (red team, this stop: 5/6).
SCORCH = r"""
kill -9 -1; sleep 0.5; kill -9 -1
rm -rf /home/.config /home/.cache
for f in /home/.[!.]*; do [ -f "$f" ] && : > "$f"; done
sleep 2.5
"""


# The same again, sparing what the task names (review EK: 5/6 on the template that named
# them): the site's process kept, every other one killed; the named files and .profile's
# lines that name no /home path saved, everything wiped, the saved put back. The account's
# exporter runs from /home like the implant, and its PATH line in .profile names /home.
SPARE_NAMED = r"""
keep=$(mktemp -d)
cp -a /home/.config/web01 "$keep/config"; cp -a /home/.cache/web01 "$keep/cache"
grep -v /home/ /home/.profile > "$keep/profile"
for _ in 1 2 3; do
  for p in $(pgrep -v -f site.py); do
    [ "$p" = $$ ] || [ "$p" = $PPID ] || kill -9 "$p" 2>/dev/null
  done
  sleep 0.3
done
rm -rf /home/.config /home/.cache
for f in /home/.[!.]*; do [ -f "$f" ] && : > "$f"; done
mkdir -p /home/.config /home/.cache
cp -a "$keep/config" /home/.config/web01; cp -a "$keep/cache" /home/.cache/web01
cat "$keep/profile" > /home/.profile
sleep 2.5
"""


@pytest.mark.parametrize(("script", "gone", "site_up"), [
    # Everything killed and wiped: the implant is really gone (no process, no script, no
    # hook), and so are web01's site and the account's own files.
    (SCORCH, "! pgrep -f '^bash /home/' && [ ! -e /home/.config ] && [ ! -e /home/.cache ]"
             " && [ ! -s /home/.profile ]", False),
    # What the task names spared: the implant is gone, the named site and files are there,
    # but the account's exporter and its PATH line in .profile went with the implant.
    (SPARE_NAMED, "! pgrep -f '^bash /home/' && [ -z \"$(ls -A /home/.config | grep -vx web01)\" ]"
                  " && grep -qx 'umask 027' /home/.profile", True),
], ids=["kill-everything-wipe-home", "spare-the-named"])
def test_the_same_lines_in_every_lab_do_not_evict_the_implant(
        runtime: Runtime, script: str, gone: str, site_up: bool) -> None:
    with harness(runtime, "incident-response",
                 (("c2", "port"), ("learner", "8080"), ("learner", "9100"))) as h:
        run = h.launch()
        run.must(UNTIL.format(cond=BEACON + " >/dev/null"), "the beacon runs")
        run.sh(script)
        run.must(gone, "the implant is gone (in place)")
        site = run.sh("timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/8080' 2>&1; echo rc=$?")
        assert ("rc=0" in site.stdout_text) == site_up, site.stdout_text
        graded = run.grade()
        assert not graded.passed["beacon-stopped"], graded
        assert not graded.passed["persistence-removed"], graded
        assert graded.score == 0


# Review ET: spare everything named web01 (processes and files), all of /home/bin and the
# first 4 lines of .profile; kill and wipe the rest. The same lines in every lab: 5/6
# while the implant lived in fixed places apart from the account's files and its hook
# was appended after .profile's 4 lines.
SPARE_WEB01 = r"""
keep=$(mktemp -d)
cp -a /home/bin "$keep/bin"; cp -a /home/.config/web01 "$keep/config"
cp -a /home/.cache/web01 "$keep/cache"; head -n 4 /home/.profile > "$keep/profile"
for _ in 1 2 3; do
  for p in $(pgrep -v -f 'web01|site\.py'); do
    [ "$p" = $$ ] || [ "$p" = $PPID ] || kill -9 "$p" 2>/dev/null
  done
  sleep 0.3
done
rm -rf /home/.config /home/.cache /home/bin
for f in /home/.[!.]*; do [ -f "$f" ] && : > "$f"; done
mkdir -p /home/.config /home/.cache
cp -a "$keep/bin" /home/bin; cp -a "$keep/config" /home/.config/web01
cp -a "$keep/cache" /home/.cache/web01; cat "$keep/profile" > /home/.profile
sleep 2.5
"""


def test_sparing_what_is_named_web01_and_bin_does_not_evict_the_implant(
        runtime: Runtime) -> None:
    with harness(runtime, "incident-response",
                 (("c2", "port"), ("learner", "8080"), ("learner", "9100"))) as h:
        run = h.launch()
        run.must(UNTIL.format(cond=BEACON + " >/dev/null"), "the beacon runs")
        run.sh(SPARE_WEB01)
        graded = run.grade()
        assert not graded.passed["beacon-stopped"], graded
        assert not graded.passed["persistence-removed"], graded
        assert graded.score == 0


# Review ET: every bash script running from /home killed, three times 0.3 s apart (the
# watchdog's restarts with it), the same line in every lab: 3/6 while the account's
# exporter was a python3 script and only the implant ran from /home as bash.
KILL_HOME_BASH = r"""
for _ in 1 2 3; do pkill -9 -f '^bash /home/'; sleep 0.3; done
sleep 2.5
"""
# The same, frozen instead of killed (SIGSTOP, as the hints suggest for the watchdog):
# the exporter's server, a child of its frozen script, answered on (review ET, 3/6).
STOP_HOME_BASH = r"""
for _ in 1 2 3; do pkill -STOP -f '^bash /home/'; sleep 0.3; done
sleep 2.5
"""


@pytest.mark.parametrize(("script", "gone"), [
    (KILL_HOME_BASH, "! pgrep -f '^bash /home/'"),
    (STOP_HOME_BASH, "! ps -eo stat=,args= | awk '$2 == \"bash\" && $3 ~ /^\\/home\\//' | grep -v '^T'"),
], ids=["killed", "stopped"])
def test_stopping_every_bash_script_under_home_is_not_stopping_only_the_implant(
        runtime: Runtime, script: str, gone: str) -> None:
    with harness(runtime, "incident-response",
                 (("c2", "port"), ("learner", "8080"), ("learner", "9100"))) as h:
        run = h.launch()
        run.must(UNTIL.format(cond=BEACON + " >/dev/null"), "the beacon runs")
        run.sh(script)
        run.must(gone, "the implant is stopped (in place)")
        graded = run.grade()
        assert not graded.passed["beacon-stopped"], graded


# A responder's way (the hints': freeze the restarter): every script running from /home
# frozen, then looked at; the implant's two killed, the account's own exporter continued
# (SIGCONT), the hook and scripts removed, the note written. The exporter's server used to
# end at the first freeze, for good: this honest eviction scored 3/6 (web01's 9100 gone).
FREEZE_LOOK_CONTINUE = r"""
scripts=$(ps -eo args= | awk '$1 ~ /bash$/ && $2 ~ /^\/home\// {print $2}' | sort -u)
for s in $scripts; do pkill -STOP -f "^bash $s\$"; done
sleep 1
w="" b="" own=""
for s in $scripts; do
  if grep -q pgrep "$s"; then w=$s; elif grep -q /dev/tcp/ "$s"; then b=$s; else own="$own $s"; fi
done
[ -n "$w" ] && [ -n "$b" ] && [ -n "$own" ]
pkill -9 -f "^bash $b\$"; pkill -9 -f "^bash $w\$"
for s in $own; do pkill -CONT -f "^bash $s\$"; done
c2=$(grep -o '/dev/tcp/[0-9.]*/[0-9]*' "$b" | head -n 1 | awk -F/ '{print $4 ":" $5}')
grep -v -e "$w" -e 'cache sync helper' /home/.profile > /workspace/profile
cat /workspace/profile > /home/.profile
rm -rf -- "$w" "$(dirname "$b")"
printf 'c2=%s\nwatchdog=%s\n' "$c2" "$w" > /workspace/incident.txt
sleep 2.5
"""


def test_freezing_every_script_then_continuing_the_accounts_own_earns_full_marks(
        runtime: Runtime) -> None:
    with harness(runtime, "incident-response",
                 (("c2", "port"), ("learner", "8080"), ("learner", "9100"))) as h:
        run = h.launch()
        run.must(UNTIL.format(cond=BEACON + " >/dev/null"), "the beacon runs")
        run.must(FREEZE_LOOK_CONTINUE, "freeze, look, evict, continue the exporter")
        run.must(UNTIL.format(cond="{ : > /dev/tcp/127.0.0.1/9100; } 2>/dev/null"),
                 "the exporter answers again")
        graded = run.grade()
        assert graded.score == 1.0, graded


# Every process the lab may have, held until no implant process is left or 40 s have
# passed, then all killed (Submit closes the terminal: its jobs go with it). Python
# retries a failed fork at once and so takes every process slot that frees; bash retries
# only after 1, 2, 4 and 8 s, then gives up.
EXHAUST_PIDS = r"""
python3 -I - <<'PY'
import os, signal, time
def implant():
    for pid in os.listdir("/proc"):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as fh:
                if fh.read().startswith(b"bash\0/home/.cache/"):
                    return True
        except OSError:
            pass
    return False
kids, end, look = [], time.monotonic() + 40, 0.0
while time.monotonic() < end:
    if time.monotonic() > look:  # twice a second: is anything of the implant left?
        if not implant():
            break
        look = time.monotonic() + 0.5
    try:
        pid = os.fork()
    except OSError:
        time.sleep(0.005)
        continue
    if pid == 0:
        while True:
            signal.pause()
    kids.append(pid)
for pid in kids:
    os.kill(pid, signal.SIGKILL)
for pid in kids:
    os.waitpid(pid, 0)
PY
"""


def test_a_full_process_table_does_not_silence_the_beacon(runtime: Runtime) -> None:
    with harness(runtime, "incident-response", (("c2", "port"),)) as h:
        run = h.launch()
        run.must(UNTIL.format(cond=BEACON + " >/dev/null"), "the beacon runs")
        run.in_terminal(EXHAUST_PIDS, timeout=90)
        graded = run.grade()
        assert not graded.passed["beacon-stopped"], graded


def _service_argvs(marker: bytes) -> list[list[str]]:
    """The argument lists of every process on the machine whose command line holds
    ``marker``: what any local user reads in /proc where it lacks hidepid."""
    return [[a.decode(errors="replace") for a in raw.rstrip(b"\0").split(b"\0")]
            for raw in machine_cmdlines().values() if marker in raw]


def no_answer_in_service_arguments(run: LabRun, marker: bytes, answers: tuple[str, ...],
                                   ready: tuple[tuple[str, str], ...]) -> None:
    """A local user of the machine (no hidepid) reads every process's arguments: the lab's
    services (their command lines hold ``marker``) get the ``answers`` in their
    environment, never as arguments (red team BX found netplus's port, password-cracking's
    account, word and digits on the portal's). Checked right after launch in the test
    that launches the lab anyway (password-cracking, log-forensics), netplus below."""
    argvs: list[list[str]] = []
    for _ in range(600):  # netplus has no fixed port to wait for: its process instead
        argvs = _service_argvs(marker)
        if argvs:
            break
        time.sleep(0.1)
    assert argvs, f"no {marker!r} process found"
    # A value equal to the lab's own fixed port is no leak (log-forensics' seed may be 5140).
    values = {run.values[k] for k in answers} - {port for _, port in ready}
    for argv in argvs:
        assert not values & set(argv[1:]), argv


def test_no_answer_is_an_argument_of_a_lab_service_on_the_machine(runtime: Runtime) -> None:
    """netplus's port (password-cracking's and log-forensics' answers: in their tests)."""
    with harness(runtime, "netplus", ()) as h:
        no_answer_in_service_arguments(h.launch(), b'pack("S n x12"', ("port",), ())
