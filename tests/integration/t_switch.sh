#!/bin/bash
# Switching backend on a node (rig node n1), both directions, and what
# `kpx cleanup` may remove:
#   bpf -> nft: the nft agent removes the bpf backend's pins and socket
#   hooks at start (bpftool cgroup show: nothing left), Services work;
#   nft -> bpf: the bpf agent removes table inet kpx, Services work;
#   neither happens while a live agent holds the other state (the bpf
#   root's lock; an agent on the state socket);
#   `kpx cleanup --bpf-root DIR` removes kpx's pins by name and leaves a
#   foreign pin (and so the directory) in place.
# One line per check: PASS switch/name | FAIL switch/name: why | SKIP ...
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
ROOT=$PWD
KPX_BIN=${KPX_BIN:-$ROOT/build/kpx}
KPX_ECHO=${KPX_ECHO:-$ROOT/build/kpx_echo}
KPX_BACKEND=bpf # the rig prepares cgroups and bpffs for both
# shellcheck source=lib/check.sh
. tests/integration/lib/check.sh
CHECK_PREFIX=switch
need_root all
need_files all "$KPX_BIN" "$KPX_ECHO"
need_tools all nft bpftool jq
if ! grep -q "^cgroup2 /sys/fs/cgroup/unified " /proc/mounts || [ ! -r /sys/kernel/btf/vmlinux ]; then
	skip all "needs cgroup2 at /sys/fs/cgroup/unified and BTF for the bpf backend"
	exit 0
fi
# shellcheck source=lib/rig.sh
. tests/integration/lib/rig.sh
rig_up || { fail rig "rig_up failed"; exit 0; }
in_n1() { rig_exec n1 "$@"; }
ROOTDIR=/sys/fs/bpf/$RIG_P-n1
CG=$RIG_CG/n1

rig_manifest_write web.yaml <<'YAML'
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: 198.18.100.1
  clusterIPs: [198.18.100.1]
  ports: [{name: http, port: 80, protocol: TCP, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: default
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
  - addresses: [198.19.1.11, 198.19.2.11]
    conditions: {ready: true}
    nodeName: n1
YAML
rig_pod_servers 8080

works() {	# "" when 10 connections from node n1 to the ClusterIP succeed
	local seen
	seen=$(rig_node_exec n1 n1 "$KPX_ECHO" client --addr 198.18.100.1 --port 80 -n 10 --timeout-ms 1000)
	[ "$(echo_get "$seen" ok)" = 10 ] || echo "10 connections: $(tr '\n' ' ' <<<"$seen")"
}
hooks() { bpftool cgroup show "$CG" 2>/dev/null | grep -c 'kpx\|sock' ; }
kpx_pins() { find "$ROOTDIR" -name 'kpx_*' 2>/dev/null | wc -l; }
has_table() { in_n1 nft list table inet kpx >/dev/null 2>&1; }
agent_log() { cat "$RIG_DIR/agent-n1.log.tmp" 2>/dev/null; }

# ---- bpf first --------------------------------------------------------------
rig_agent_start n1 --backend bpf
if ! rig_agent_wait_synced n1 20; then
	fail bpf-agent "not synced: $(agent_log | tail -3 | tr '\n' ' ')"
	exit 0
fi
bpftool map create "$ROOTDIR/foreign_map" type hash key 4 value 4 entries 1 name foreign ||
	fail foreign-pin "cannot create a foreign pin"
[ "$(hooks)" -gt 0 ] && [ "$(kpx_pins)" -gt 0 ] || fail bpf-agent "no hooks or pins to switch away from"
check_why bpf-serves "$(works)"

# an nft agent while the bpf agent lives: the bpf state is left alone
rig_node_bg n1 n1 "$RIG_DIR/nft-live.log" "$KPX_BIN" run --manifests "$RIG_MANIFESTS" --backend nft \
	--hostname-override n1 --state-socket "$RIG_DIR/n1-nft.sock" --bpf-root "$ROOTDIR" \
	--cgroup-path "$CG" --healthz-port 0 --metrics-port 0 --min-sync-period 100ms
NP=$RIG_LAST_PID
wait_until 10 grep -q 'sync\|programmed\|left in place' "$RIG_DIR/nft-live.log"
sleep 1
stop_pid "$NP" 5
if grep -q 'belongs to a running agent' "$RIG_DIR/nft-live.log" && [ "$(hooks)" -gt 0 ] && [ "$(kpx_pins)" -gt 0 ]; then
	pass bpf-state-kept-while-its-agent-runs
else
	fail bpf-state-kept-while-its-agent-runs "hooks $(hooks) pins $(kpx_pins): $(grep -i 'bpf\|switch' "$RIG_DIR/nft-live.log" | head -2 | tr '\n' ' ')"
fi
in_n1 "$KPX_BIN" cleanup --backend nft --state-socket "$RIG_DIR/n1-nft.sock" >/dev/null 2>&1

# ---- bpf -> nft ---------------------------------------------------------------
rig_agent_stop n1
rig_agent_start n1 --backend nft
rig_agent_wait_synced n1 20 || fail nft-agent "not synced: $(agent_log | tail -3 | tr '\n' ' ')"
why=""
[ "$(hooks)" = 0 ] || why+=" socket hooks left: $(bpftool cgroup show "$CG" | tr '\n' ' ');"
[ "$(kpx_pins)" = 0 ] || why+=" pins left: $(find "$ROOTDIR" -name 'kpx_*' | head -3 | tr '\n' ' ');"
[ -e "$ROOTDIR/foreign_map" ] || why+=" the foreign pin was removed;"
agent_log | grep -q 'switching to nft: removing' || why+=" no log line about the switch;"
check_why bpf-to-nft-removes-bpf-state "$why"
check_why bpf-to-nft-serves "$(works)"

# a bpf agent while the nft agent lives (same state socket): table stays
rig_node_bg n1 n1 "$RIG_DIR/bpf-live.log" "$KPX_BIN" run --manifests "$RIG_MANIFESTS" --backend bpf \
	--hostname-override n1 --state-socket "$RIG_DIR/n1.sock" --bpf-root "/sys/fs/bpf/$RIG_P-n2" \
	--cgroup-path "$CG" --healthz-port 0 --metrics-port 0 --devices eth0
BP=$RIG_LAST_PID
wait_until 10 grep -q 'left in place\|starting' "$RIG_DIR/bpf-live.log"
sleep 0.5
stop_pid "$BP" 5
if grep -q 'table inet kpx belongs to the agent' "$RIG_DIR/bpf-live.log" && has_table; then
	pass nft-state-kept-while-its-agent-runs
else
	fail nft-state-kept-while-its-agent-runs "table: $(has_table && echo yes || echo no): $(grep -i 'nft\|switch' "$RIG_DIR/bpf-live.log" | head -2 | tr '\n' ' ')"
fi
in_n1 "$KPX_BIN" cleanup --backend bpf --bpf-root "/sys/fs/bpf/$RIG_P-n2" --cgroup-path "$CG" --devices eth0 >/dev/null 2>&1
rm -rf "/sys/fs/bpf/$RIG_P-n2"
[ "$(hooks)" = 0 ] || bpftool cgroup show "$CG" >&2

# ---- nft -> bpf ---------------------------------------------------------------
rig_agent_stop n1
has_table || fail nft-to-bpf-removes-nft-state "no table inet kpx to switch away from"
rig_agent_start n1 --backend bpf
rig_agent_wait_synced n1 20 || fail bpf-agent-again "not synced: $(agent_log | tail -3 | tr '\n' ' ')"
why=""
has_table && why+=" table inet kpx left;"
agent_log | grep -q 'switching to bpf: removing' || why+=" no log line about the switch;"
check_why nft-to-bpf-removes-nft-state "$why"
check_why nft-to-bpf-serves "$(works)"

# ---- kpx cleanup --bpf-root: kpx's pins only ----------------------------------
rig_agent_stop n1
out=$(rig_node_exec n1 n1 "$KPX_BIN" cleanup --backend bpf --bpf-root "$ROOTDIR" --cgroup-path "$CG" \
	--devices eth0 --state-socket "$RIG_DIR/n1.sock" 2>&1)
rc=$?
why=""
[ $rc -eq 0 ] || why+=" exit $rc: $(tail -1 <<<"$out");"
[ "$(kpx_pins)" = 0 ] || why+=" kpx pins left: $(find "$ROOTDIR" -name 'kpx_*' | head -2 | tr '\n' ' ');"
[ -e "$ROOTDIR/foreign_map" ] || why+=" foreign pin removed;"
[ "$(hooks)" = 0 ] || why+=" hooks left;"
check_why cleanup-bpf-root-keeps-foreign-pins "$why"
rm -rf "$ROOTDIR"
exit 0
