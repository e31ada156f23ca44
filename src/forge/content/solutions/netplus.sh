#!/bin/bash
# Reference solution for the netplus lab, typed in the learner's shell.
# It discovers everything from the network: no address, port or code is taken from the
# template.
set -euo pipefail
cd /workspace

# 1. Which network are the servers on? My routing table says, and through which gateway.
ip -4 route
net=$(ip -4 route | awk '$1 != "default" && / via / {print $1; exit}')
echo "server network: $net"

# 2. Which hosts answer there? A live host refuses a connection to a closed port at once;
#    an empty address stays silent until `timeout` gives up. Probe all of them at once.
hosts=$(python3 -c 'import ipaddress, sys
for h in ipaddress.ip_network(sys.argv[1]).hosts(): print(h)' "$net")
live=$(for h in $hosts; do
  ( answer=$(timeout 2 bash -c "echo > /dev/tcp/$h/1" 2>&1 || true)
    if [[ $answer == *refused* ]]; then echo "$h"; fi ) &
done; wait)
echo "live hosts:" $live

# 3. Scan the high ports (20000-29999) of each live host; the first open one wins.
target="" port=""
for h in $live; do
  for p in $(seq 20000 29999); do
    if { : > "/dev/tcp/$h/$p"; } 2>/dev/null; then target=$h port=$p; break 2; fi
  done
done
[ -n "$port" ] || { echo "no web server found" >&2; exit 1; }
echo "web server: $target:$port"
echo "$target:$port" > target.txt

# 4. Save the page exactly as served.
curl -sS --fail -o page.html "http://$target:$port/"
grep -o 'Proof code[^<]*<code>[^<]*' page.html

# 5. Follow the link to the inventory and take the serial number of host "intranet".
link=$(grep -o 'href="[^"]*"' page.html | head -n1 | cut -d'"' -f2)
curl -sS --fail "http://$target:$port$link" | awk '$1 == "intranet" {print $NF}' > serial.txt
cat target.txt serial.txt
