#!/bin/bash
# Reference solution for the incident-response lab, typed in web01's shell.
# Every name, path and address comes from the running processes and the files they run.
set -euo pipefail
cd /workspace
ps -eo pid,ppid,args

# Scripts under /home that bash is running: the account's exporter and the implant's
# pieces, told apart by what they do: the watchdog restarts (pgrep), the beacon connects
# out (/dev/tcp/). Look again for a few seconds if one does not show yet: the lab may have
# just started.
watchdog="" beacon=""
for _ in $(seq 50); do
  for s in $(ps -eo args= | awk '$1 ~ /bash$/ && $2 ~ /^\/home\// {print $2}' | sort -u); do
    if grep -q pgrep "$s"; then watchdog=$s; elif grep -q /dev/tcp/ "$s"; then beacon=$s; fi
  done
  [ -n "$watchdog" ] && [ -n "$beacon" ] && break
  sleep 0.2
done
echo "watchdog: $watchdog"; echo "beacon: $beacon"
[ -n "$watchdog" ] && [ -n "$beacon" ]
c2=$(grep -o '/dev/tcp/[0-9.]*/[0-9]*' "$beacon" | head -n 1 | awk -F/ '{print $4 ":" $5}')
echo "C2: $c2"

# Freeze the watchdog so it restarts nothing, then kill it and the beacon; again twice,
# a moment apart: a helper the watchdog forked just before it froze may still restart one.
for _ in 1 2 3; do
  wd_pids=$(pgrep -f "^bash $watchdog" || true)
  kill -STOP $wd_pids 2>/dev/null || true
  kill -9 $wd_pids 2>/dev/null || true
  kill -9 $(pgrep -f "^bash $beacon") 2>/dev/null || true
  sleep 0.3
done

# What reinstalls the watchdog at login: startup files that name it.
{ grep -rl --exclude-dir=.cache -- "$watchdog" /home 2>/dev/null || true; } | grep -vx -- "$watchdog" | while read -r f; do
  echo "persistence in $f:"; grep -n -- "$watchdog" "$f"
  sed -i -e "\\#$watchdog#d" -e '/cache sync helper/d' "$f"
done
rm -f -- "$watchdog" "$beacon"
rmdir -- "$(dirname "$beacon")" 2>/dev/null || true

# Nothing may come back: watch for a few seconds.
sleep 2.5
if pgrep -fa "^bash ($watchdog|$beacon)\$"; then echo "something came back" >&2; exit 1; fi
grep -rl -e "$(basename "$watchdog")" -e "$(basename "$(dirname "$beacon")")" /home && exit 1

printf 'c2=%s\nwatchdog=%s\n' "$c2" "$watchdog" > incident.txt
cat incident.txt
