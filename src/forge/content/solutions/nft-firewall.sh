#!/bin/bash
# Reference solution for the nft-firewall lab, typed in the router's terminal (fw1, host
# "learner"). The ports come from this lab's policy file, not from the template.
set -euo pipefail
policy=/workspace/policy.txt
cat "$policy"
port() { awk -v s="$1" '$1 == s {split($3, a, "/"); print a[2]}' "$policy"; }
web=$(port web)
ssh=$(port ssh)
echo "web tcp/$web, ssh tcp/$ssh"

# The server's banners, seen from the router itself (its own traffic is not forwarded).
nc -w 2 10.65.2.10 "$web" </dev/null || true

nft -f - <<NFT
table inet dmzfw
delete table inet dmzfw
table inet dmzfw {
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        ct state invalid drop
        ip saddr 10.65.1.0/24 ip daddr 10.65.2.10 tcp dport $web accept
        ip saddr 10.65.1.20 ip daddr 10.65.2.10 tcp dport $ssh accept
    }
}
NFT
nft list ruleset
