#!/bin/bash
# Reference solution for the ccna lab, typed in the routers' own terminals (R1 is the host
# "learner", R2 the host "r2"). Everything before the first "# host:" line is common to
# every section; each "# host: NAME" section is typed in NAME's terminal, in file order.
# Each next hop is discovered on the transit link, not taken from the template.
set -euo pipefail

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
find_peer 10.62.2.
echo "R1 on the transit link: $peer"
ip route replace 10.62.1.0/24 via "$peer"
ip -4 route show 10.62.1.0/24

# host: learner
# R1: LAN A is attached; the static route for LAN B goes via R2 (replace: also fine if a
# wrong one was added before).
find_peer 10.62.1.
echo "R2 on the transit link: $peer"
ip route replace 10.62.2.0/24 via "$peer"
ip -4 route show 10.62.2.0/24
# Test end to end: pc-b answers from LAN B (R2 already routes the reply back).
curl -sS --max-time 3 --retry 3 --retry-connrefused http://10.62.2.10:8080/
