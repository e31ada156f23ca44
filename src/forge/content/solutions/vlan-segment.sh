#!/bin/bash
# Reference solution for the vlan-segment lab, typed in the switch's terminal (sw1, host
# "learner"). Departments come from the PCs' own banners and VLAN ids from this lab's
# plan file, not from the template.
set -euo pipefail
cat /workspace/vlan-plan.txt
vlan_of() { awk -v d="$1" '$1 == d {print $2}' /workspace/vlan-plan.txt; }

# 1. Who is behind each port? Ask the PC on each cable's management subnet (sw1 is .1,
#    the PC .2), before bridging changes the paths.
ip -4 -br addr
declare -A vid
ports=$(ip -o link show | awk -F': ' '$2 ~ /^eth[0-9]+/ {sub(/@.*/, "", $2); print $2}')
for dev in $ports; do
  mine=$(ip -4 -o addr show dev "$dev" | awk '{print $4}')
  pc=$(awk -F'[./]' '{print $1"."$2"."$3"."($4+1)}' <<<"$mine")
  banner=""
  for _ in $(seq 20); do
    banner=$(timeout 2 nc -w 2 "$pc" 7000 </dev/null || true)
    [ -n "$banner" ] && break
    sleep 0.25
  done
  dept=$(awk '{print $2}' <<<"$banner")
  vid[$dev]=$(vlan_of "$dept")
  echo "$dev: $banner -> VLAN ${vid[$dev]}"
  [ -n "${vid[$dev]}" ]
done

# 2. One bridge per VLAN ("vlanID": this kernel has no VLAN-aware bridge), up; each port
#    in its department's VLAN bridge.
for v in $(printf '%s\n' "${vid[@]}" | sort -u); do
  ip link add "vlan$v" type bridge
  ip link set dev "vlan$v" up
done
for dev in $ports; do
  ip link set dev "$dev" master "vlan${vid[$dev]}"
done
bridge link
