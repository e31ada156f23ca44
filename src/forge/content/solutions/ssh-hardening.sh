#!/bin/bash
# Reference solution for the ssh-hardening lab, typed in srv01's shell (host "learner").
# The port and the ops address come from the ticket, the key from ops itself.
set -euo pipefail
cat /workspace/TICKET.txt
port=$(sed -n 's/^ *4\. SSH port: *\([0-9]*\).*/\1/p' /workspace/TICKET.txt)
ops=$(grep -o 'ops ([0-9.]*)' /workspace/TICKET.txt | tr -d '()' | awk '{print $2}')
conf=/etc/ssh/sshd_config

# 1. The ops team's key in this account's authorized_keys, with the permissions sshd wants.
mkdir -p ~/.ssh && chmod 700 ~/.ssh
timeout 5 bash -c "cat < /dev/tcp/$ops/7022" > /tmp/ops.pub
ssh-keygen -l -f /tmp/ops.pub
cat /tmp/ops.pub >> ~/.ssh/authorized_keys
chmod 600 ~/.ssh/authorized_keys

# 2-4. Keys only, no root, the ticket's port. The file is this account's but /etc/ssh is
#      root's (no `sed -i`, which writes a new file there): rewrite the file in place.
cp "$conf" /tmp/sshd_config.before
sed -E -e "s/^#?Port .*/Port $port/" \
  -e 's/^#?PasswordAuthentication .*/PasswordAuthentication no/' \
  -e 's/^#?KbdInteractiveAuthentication .*/KbdInteractiveAuthentication no/' \
  -e 's/^#?PermitRootLogin .*/PermitRootLogin no/' /tmp/sshd_config.before > /tmp/sshd_config.new
cat /tmp/sshd_config.new > "$conf"
diff /tmp/sshd_config.before "$conf" || true

# Check before reloading; then reload the running daemon (SIGHUP: it rereads the file).
/usr/sbin/sshd -t -f "$conf"
/usr/sbin/sshd -T -f "$conf" -C user=root,host=ops,addr="$ops" | grep -E '^(port|passwordauthentication|permitrootlogin) '
kill -HUP "$(cat /srv/ssh/sshd.pid)"
for _ in $(seq 100); do { : > "/dev/tcp/127.0.0.1/$port"; } 2>/dev/null && break; sleep 0.1; done

# What a client sees now: publickey only.
{ ssh -p "$port" -o PreferredAuthentications=none -o BatchMode=yes -o StrictHostKeyChecking=no \
    -o UserKnownHostsFile=/dev/null 127.0.0.1 true 2>&1 || true; } | grep 'Permission denied (publickey)'
