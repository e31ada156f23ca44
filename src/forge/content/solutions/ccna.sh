#!/bin/bash
# Reference solution for the ccna lab, typed in the routers' own terminals (R1 is the host
# "learner", R2 the host "r2"). Everything before the first "# host:" line is common to
# every section; each "# host: NAME" section is typed in NAME's terminal, in file order.
# Each next hop is discovered on the transit link, and the office LANs' prefixes (this
# lab's own) are read from the router's README, not taken from the template.
set -euo pipefail

# This lab's prefix of office LAN A or B, e.g. 10.123.45.0/24 (the README wraps lines).
lan() { tr '\n' ' ' </workspace/README.txt | grep -o "LAN $1 ([0-9./]*)" | head -1 | tr -d '()' | awk '{print $3}'; }
lan_a=$(lan A)
lan_b=$(lan B)
echo "LAN A: $lan_a, LAN B: $lan_b"

# The other device on this router's transit link: a device that exists refuses a closed
# port at once (no ping in the lab).
find_peer() {
  local lan_prefix=$1 lan transit me
  ip -4 -br addr
  ip -4 route
  lan=$(ip -4 -o addr show | awk -v p="$lan_prefix" 'index($4, p) == 1 {print $2; exit}')
  transit=$(ip -4 -o addr show | awk -v a="$lan" '$2 != "lo" && $2 != a {print $4; exit}')
  echo "transit link: $transit"
  me=${transit%/*}
  peer=$(for h in $(python3 -c 'import ipaddress, sys
for h in ipaddress.ip_interface(sys.argv[1]).network.hosts(): print(h)' "$transit"); do
    [ "$h" = "$me" ] && continue
    ( answer=$(timeout 2 bash -c "echo > /dev/tcp/$h/1" 2>&1 || true)
      if [[ $answer == *refused* ]]; then echo "$h"; fi ) &
  done; wait)
  ip neigh show dev "$(ip -4 -o addr show | awk -v m="$me" '$4 ~ "^"m"/" {print $2}')"
}

# host: r2
# R2: LAN B is attached; the route back to LAN A goes via R1.
find_peer "${lan_b%0/24}"
echo "R1 on the transit link: $peer"
ip route replace "$lan_a" via "$peer"
ip -4 route show "$lan_a"

# host: learner
# R1: LAN A is attached; the static route for LAN B goes via R2 (replace: also fine if a
# wrong one was added before).
find_peer "${lan_a%0/24}"
echo "R2 on the transit link: $peer"
ip route replace "$lan_b" via "$peer"
ip -4 route show "$lan_b"
# Test end to end, asking from R1's address in LAN A as pc-a would (from the transit address
# pc-b's answer would come back without R2's route): pc-b answers, R2 routes the reply back.
curl -sS --max-time 3 --retry 3 --retry-connrefused --interface "${lan_a%0/24}1" \
  "http://${lan_b%0/24}10:8080/"
