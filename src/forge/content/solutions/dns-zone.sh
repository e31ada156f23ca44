#!/bin/bash
# Reference solution for the dns-zone lab, typed in ns1's terminal (host "learner").
# Every record value comes from the legacy server's zone transfer, not from the template.
set -euo pipefail
cd /srv/dns

# 1. The legacy server leaks the whole zone to anybody: transfer it and read every record.
#    (Retried for a few seconds: the lab may have just started.)
for _ in $(seq 40); do
  dig +time=2 +tries=1 @10.64.1.53 acme.lab AXFR > legacy.axfr || true
  grep -q 'XFR size' legacy.axfr && break
  sleep 0.25
done
cat legacy.axfr
grep -q 'XFR size' legacy.axfr
# The record that should not be in DNS: a TXT record on a "backup-…" name.
secret_name=$(awk '$4 == "TXT" && $1 ~ /^backup-/ {print $1; exit}' legacy.axfr)
awk '$4 == "TXT" && $1 ~ /^backup-/ {print $5; exit}' legacy.axfr | tr -d '"' > /workspace/leak.txt
echo "leaked: $secret_name = $(cat /workspace/leak.txt)"

# 2. The new zone: ns1 and ns2 as name servers, the legacy zone's www and mail addresses,
#    the other records as they were, and not the leaked one.
rr() { awk -v n="$1" -v t="$2" '$1 == n && $4 == t {print $5; exit}' legacy.axfr; }
www=$(rr www.acme.lab. A)
mail=$(rr mail.acme.lab. A)
intranet=$(rr intranet.acme.lab. CNAME)
cat > acme.lab.zone <<ZONE
\$TTL 300
@        IN SOA   ns1.acme.lab. hostmaster.acme.lab. ( $(date +%Y%m%d)01 3600 600 86400 300 )
         IN NS    ns1.acme.lab.
         IN NS    ns2.acme.lab.
         IN MX    10 mail.acme.lab.
ns1      IN A     10.64.1.10
ns2      IN A     10.64.1.11
www      IN A     $www
mail     IN A     $mail
intranet IN CNAME $intranet
ZONE
named-checkzone acme.lab acme.lab.zone

# 3. The zone in named.conf, with transfers to the secondary ns2 only.
cat >> named.conf <<'CONF'
zone "acme.lab" {
    type primary;
    file "/srv/dns/acme.lab.zone";
    allow-transfer { 10.64.1.11; };
};
CONF
named-checkconf named.conf

# BIND runs under the lab's supervisor: reload it and wait until it answers.
kill -HUP "$(cat named.pid)"
for _ in $(seq 50); do
  [ "$(dig +short +time=1 +tries=1 @10.64.1.10 www.acme.lab A)" = "$www" ] && break
  sleep 0.2
done
dig +norec @10.64.1.10 www.acme.lab A | grep -E 'flags|^www'
# ns1 itself is not ns2: its own transfer request is refused now.
dig @10.64.1.10 acme.lab AXFR | tail -n 2
