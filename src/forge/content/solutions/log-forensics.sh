#!/bin/bash
# Reference solution for the log-forensics lab, typed in the analyst's shell.
# Every value comes from the log the lab's log server hands out; none from the template.
set -euo pipefail
cd /workspace
# The log server's address and port, as the README gives them.
server=$(grep -o 'nc -d [0-9.]* [0-9]*' README.txt | awk '{print $3; exit}')
port=$(grep -o 'nc -d [0-9.]* [0-9]*' README.txt | awk '{print $4; exit}')
nc -d "$server" "$port" > auth.log
wc -l auth.log

# Logins from outside the office network (10.64.20.0/24): only the intruder's.
grep 'Accepted' auth.log | grep -v ' from 10\.64\.20\.'
source=$(awk '$6 == "Accepted" && $11 !~ /^10\.64\.20\./ {print $11}' auth.log | sort -u)
[ "$(echo "$source" | wc -l)" = 1 ] || { echo "more than one outside login: $source" >&2; exit 1; }
# Its account and the time of its first successful login (the log is in time order).
first=$(grep -m1 "Accepted password for [^ ]* from $source " auth.log)
account=$(echo "$first" | awk '{print $9}')
time=$(echo "$first" | awk '{print $3}')
# How loud was it before getting in?
grep -c "Failed password for $account from $source " auth.log

printf 'source=%s\naccount=%s\nfirst_login=%s\n' "$source" "$account" "$time" > findings.txt
cat findings.txt
