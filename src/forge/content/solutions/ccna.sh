#!/bin/bash
# Reference solution for the ccna lab, typed in R1's shell (the learner host).
# The next hop is discovered on the transit link, not taken from the template.
set -euo pipefail

# 1. What is attached to R1? Two connected networks: LAN A and the transit link.
ip -4 -br addr
ip -4 route
lan_a=$(ip -4 -o addr show | awk '$4 ~ /^10\.62\.1\./ {print $2; exit}')
transit=$(ip -4 -o addr show | awk -v a="$lan_a" '$2 != "lo" && $2 != a {print $4; exit}')
echo "transit link: $transit"

# 2. Who else is on the transit link? A device that exists refuses a closed port at once.
me=${transit%/*}
r2=$(for h in $(python3 -c 'import ipaddress, sys
for h in ipaddress.ip_interface(sys.argv[1]).network.hosts(): print(h)' "$transit"); do
  [ "$h" = "$me" ] && continue
  ( answer=$(timeout 2 bash -c "echo > /dev/tcp/$h/1" 2>&1 || true)
    if [[ $answer == *refused* ]]; then echo "$h"; fi ) &
done; wait)
echo "R2 on the transit link: $r2"
ip neigh show dev "$(ip -4 -o addr show | awk -v m="$me" '$4 ~ "^"m"/" {print $2}')"

# 3. The static route for LAN B via R2 (replace: also fine if a wrong one was added before).
ip route replace 10.62.2.0/24 via "$r2"
ip -4 route show 10.62.2.0/24

# 4. Test: pc-b answers from LAN B.
curl -sS --max-time 3 --retry 3 --retry-connrefused http://10.62.2.10:8080/
