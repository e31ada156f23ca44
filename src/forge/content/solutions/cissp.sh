#!/bin/bash
# Reference solution for the cissp lab, typed in the analyst's shell.
# Every value comes from the evidence files, none from the template.
set -euo pipefail
cd /srv/incident/web01
ls -l

# 1. The intrusion: a run of failed passwords, then a successful password login from
#    outside the company network (10.63.0.0/16 is internal).
grep -E 'Failed password|Accepted password' auth.log | grep -v ' from 10\.63\.' | tail -n 3
intruder=$(awk '/Accepted password for/ {for (i = 1; i < NF; i++) if ($i == "from") print $(i + 1)}' auth.log \
  | grep -v '^10\.63\.' | sort -u | head -n 1)
account=$(awk -v ip="$intruder" '/Accepted password for/ && $0 ~ ip {for (i = 1; i < NF; i++) if ($i == "for") print $(i + 1)}' auth.log \
  | head -n 1)
grep "sudo: *$account" auth.log
echo "intrusion: $account from $intruder"

# 2. The exposed credential: the access key id (never the secret).
key_id=$(grep '^STORAGE_ACCESS_KEY_ID=' billing-api.env | cut -d= -f2)
echo "exposed key id: $key_id"

# 3. The weak sshd settings: root and password logins, and how many password guesses
#    one connection gets (a hardened server allows 3 or 4).
weak=$(grep -E '^(PermitRootLogin|PasswordAuthentication) yes|^MaxAuthTries ' sshd_config | paste -sd ';' -)
echo "weak settings: $weak"

# 4. The register.
jq -n --arg ip "$intruder" --arg acct "$account" --arg key "$key_id" --arg weak "$weak" '
{system: "web01", risks: [
  {id: "R1", title: "SSH password guessing led to a root-level compromise",
   category: "unauthorized-access",
   evidence: ("auth.log: repeated failed passwords then Accepted password for " + $acct + " from " + $ip + "; sudo to root by " + $acct),
   likelihood: 5, impact: 5, risk_score: 25, treatment: "mitigate", owner: "infrastructure team",
   action: ("block " + $ip + ", disable and reset account " + $acct + ", rebuild web01 from a clean image")},
  {id: "R2", title: "Cloud storage access key published in a public repository",
   category: "credential-exposure",
   evidence: ("billing-api.env: STORAGE_ACCESS_KEY_ID " + $key + " with its secret committed to acme/billing-api"),
   likelihood: 5, impact: 4, risk_score: 20, treatment: "mitigate", owner: "billing-api developers",
   action: ("revoke key " + $key + ", issue a new one from the secret manager, review bucket access logs")},
  {id: "R3", title: "SSH server allows root and password logins, with many guesses per connection",
   category: "misconfiguration",
   evidence: ("sshd_config: " + $weak),
   likelihood: 4, impact: 4, risk_score: 16, treatment: "mitigate", owner: "infrastructure team",
   action: "set PermitRootLogin no, PasswordAuthentication no and MaxAuthTries 3, use keys only, add fail2ban"}
]}' > /workspace/risk_register.json
jq . /workspace/risk_register.json
