#!/bin/bash
# Reference solution for the tls-ca lab, typed in the learner's shell (the web server).
# The host name and port come from the change ticket, the certificates from the lab CA.
set -euo pipefail
ca=http://10.65.1.5:8080
cat /workspace/TICKET.txt
name=$(sed -n 's/^Host name: *//p' /workspace/TICKET.txt)
port=$(sed -n 's/^Port: *//p' /workspace/TICKET.txt)
mkdir -p /workspace/tls && cd /workspace/tls
curl -sS --fail "$ca/"

# 1. A key that stays here and a request naming the host in its subject alternative name.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout site.key \
  -out site.csr -subj "/O=Acme/CN=$name" -addext "subjectAltName=DNS:$name"
chmod 600 site.key
curl -sS --fail --data-binary @site.csr "$ca/sign" -o site.crt
curl -sS --fail "$ca/intermediate.crt" -o intermediate.crt
curl -sS --fail "$ca/root.crt" -o root.crt
openssl x509 -in site.crt -noout -subject -issuer -ext subjectAltName -enddate
openssl verify -CAfile root.crt -untrusted intermediate.crt site.crt

# 2 and 3. Serve it with the issuing CA's certificate as the chain, detached from this shell.
setsid nohup openssl s_server -quiet -www -accept "$port" -cert site.crt -key site.key \
  -cert_chain intermediate.crt > s_server.log 2>&1 < /dev/null &
for _ in $(seq 100); do { : > "/dev/tcp/127.0.0.1/$port"; } 2>/dev/null && break; sleep 0.1; done

# Verify as a company client does: the root is the only trust anchor.
openssl s_client -connect "127.0.0.1:$port" -servername "$name" -verify_hostname "$name" \
  -CAfile root.crt -no-CApath -no-CAstore -verify_return_error < /dev/null 2>&1 \
  | grep 'Verify return code: 0 (ok)'
