#!/bin/bash
# Migrating an operator's kube-proxy setup, on node n1 of the rig (nft):
#   kubeadm's kube-proxy ConfigMap, unchanged, gives a running agent with
#   kube-proxy's defaults (healthz on 0.0.0.0:10256, metrics and /configz
#   on 127.0.0.1:10249); the effective configuration shows in `kpx status`
#   and /configz; a kubeconfig named by the config but not mounted is an
#   error at start naming it; a change of the config file (a ConfigMap
#   update: its ..data symlink swapped) makes the agent exit for a
#   restart, the same content does not; kube-proxy's flags (--cleanup,
#   --write-config-to, --init-only, the whole run flag list for `kpx
#   cleanup`) do what kube-proxy's do.
# One line per check: PASS config/name | FAIL config/name: why | SKIP ...
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
ROOT=$PWD
KPX_BIN=${KPX_BIN:-$ROOT/build/kpx}
KPX_ECHO=${KPX_ECHO:-$ROOT/build/kpx_echo}
KPX_BACKEND=nft
FIXTURE=tests/fixtures/kubeadm/kube-proxy-configmap.yaml
# shellcheck source=lib/check.sh
. tests/integration/lib/check.sh
CHECK_PREFIX=config
need_root all
need_files all "$KPX_BIN" "$KPX_ECHO" "$FIXTURE"
need_tools all curl nft python3 jq
# shellcheck source=lib/rig.sh
. tests/integration/lib/rig.sh

rig_up || { fail rig "rig_up failed"; exit 0; }
in_n1() { rig_exec n1 "$@"; }

# The ConfigMap as the kubelet mounts it: data keys are symlinks through
# ..data to a timestamped directory, swapped atomically on update.
CM=$RIG_DIR/var-lib-kube-proxy
write_cm_version() {	# NAME: a new version dir from $RIG_DIR/cm-src/*
	mkdir -p "$CM/$1"
	cp "$RIG_DIR"/cm-src/*.conf "$CM/$1/"
	ln -sfn "$1" "$CM/..data_tmp"
	mv -T "$CM/..data_tmp" "$CM/..data"
}
mkdir -p "$RIG_DIR/cm-src" "$CM"
python3 - "$FIXTURE" "$RIG_DIR/cm-src" "$CM" <<'PY' || { fail fixture "cannot read $FIXTURE"; exit 0; }
import sys, yaml
cm = yaml.safe_load(open(sys.argv[1]))
for k, v in cm["data"].items():
    # kubeadm's path, mounted here instead of /var/lib/kube-proxy
    open(sys.argv[2] + "/" + k, "w").write(v.replace("/var/lib/kube-proxy", sys.argv[3]))
PY
write_cm_version ..2026_01_01_00_00_00.1
for k in config.conf kubeconfig.conf; do ln -sfn "..data/$k" "$CM/$k"; done
sed "s#$CM/kubeconfig.conf#$RIG_DIR/not-mounted/kubeconfig.conf#" "$CM/config.conf" >"$RIG_DIR/nokubeconfig.yaml"

# ---- a kubeconfig named in the config but not mounted ----------------------
out=$(rig_node_exec n1 n1 timeout -k 1 10 "$KPX_BIN" run --config "$RIG_DIR/nokubeconfig.yaml" \
	--state-socket "$RIG_DIR/nk.sock" --healthz-port 0 --metrics-port 0 2>&1)
rc=$?
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "$RIG_DIR/not-mounted/kubeconfig.conf" <<<"$out"; then
	pass missing-kubeconfig-is-an-error-naming-it
else
	fail missing-kubeconfig-is-an-error-naming-it "exit $rc: $(tail -2 <<<"$out" | tr '\n' ' ')"
fi

# ---- kubeadm's config, unchanged: a running agent with kube-proxy's defaults
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
  - addresses: [198.19.1.11]
    conditions: {ready: true}
    nodeName: n1
YAML
rig_pod_servers 8080
start_agent() {
	rig_node_bg n1 n1 "$RIG_DIR/agent-n1.log.tmp" "$KPX_BIN" run \
		--config "$CM/config.conf" --manifests "$RIG_MANIFESTS" --backend nft \
		--hostname-override n1 --state-socket "$RIG_DIR/n1.sock" \
		--min-sync-period 100ms "$@"
	echo "$RIG_LAST_PID" >"$RIG_DIR/agent-n1.pid"
}
start_agent
if rig_agent_wait_synced n1 15; then
	pass kubeadm-config-gives-a-running-agent
else
	fail kubeadm-config-gives-a-running-agent "not synced: $(tail -3 "$RIG_DIR/agent-n1.log.tmp" | tr '\n' ' ')"
fi
code=$(in_n1 curl -s -o /dev/null -w '%{http_code}' -m 3 http://198.18.0.11:10256/healthz)
check_why kubeadm-empty-healthz-address-defaults-to-10256 \
	"$([ "$code" = 200 ] || echo "GET 198.18.0.11:10256/healthz: $code")"
seen=$(rig_node_exec n1 n1 "$KPX_ECHO" client --addr 198.18.100.1 --port 80 -n 5 --timeout-ms 1000)
check_why kubeadm-config-serves-services \
	"$([ "$(echo_get "$seen" ok)" = 5 ] || echo "5 connections: $(tr '\n' ' ' <<<"$seen")")"
cz=$(in_n1 curl -sf -m 3 http://127.0.0.1:10249/configz)
if [ -z "$cz" ]; then
	why="/configz did not answer"
else
	why=$(jq -r '."kubeproxy.config.k8s.io" as $c |
	if $c == null then "no kubeproxy.config.k8s.io"
	elif $c.healthzBindAddress != "0.0.0.0:10256" then "healthzBindAddress \($c.healthzBindAddress)"
	elif $c.metricsBindAddress != "127.0.0.1:10249" then "metricsBindAddress \($c.metricsBindAddress)"
	elif $c.syncPeriod != "30s" or $c.minSyncPeriod != "100ms" then "periods \($c.syncPeriod) \($c.minSyncPeriod)"
	elif $c.clusterCIDR != "10.244.0.0/16" then "clusterCIDR \($c.clusterCIDR)"
	elif $c.mode != "nftables" then "mode \($c.mode)"
	else "" end' <<<"$cz" 2>&1)
fi
check_why configz-serves-the-effective-configuration "$why"
st=$("$KPX_BIN" status --state-socket "$RIG_DIR/n1.sock" 2>&1)
js=$("$KPX_BIN" status --state-socket "$RIG_DIR/n1.sock" -o json 2>&1 | jq -r '.agent.config.clusterCIDR' 2>&1)
if grep -q '^Configuration:' <<<"$st" && grep -q 'clusterCIDR:  10.244.0.0/16' <<<"$st" &&
	grep -q 'healthz:      0.0.0.0:10256' <<<"$st" && [ "$js" = 10.244.0.0/16 ]; then
	pass status-shows-the-effective-configuration
else
	fail status-shows-the-effective-configuration "json: $js; text: $(grep -A3 Configuration <<<"$st" | tr '\n' ' ')"
fi
grep -q 'mode "" (kube-proxy' "$RIG_DIR/agent-n1.log.tmp" &&
	! grep -q 'unknown field' "$RIG_DIR/agent-n1.log.tmp"
check_rc kubeadm-config-mode-explained-nothing-unknown $? "$(grep -E 'mode|unknown' "$RIG_DIR/agent-n1.log.tmp" | head -3 | tr '\n' ' ')"

# ---- config file changes: same bytes keep it, a ConfigMap update ends it ---
write_cm_version ..2026_01_01_00_00_00.2 # same content, new version
sleep 1.5
check_why config-same-content-keeps-running "$(rig_agent_alive n1 || echo "agent exited: $(tail -2 "$RIG_DIR/agent-n1.log.tmp" | tr '\n' ' ')")"
sed -i 's#^clusterCIDR: .*#clusterCIDR: 10.245.0.0/16#' "$RIG_DIR/cm-src/config.conf"
pid=$(rig_agent_pid n1)
t0=$(date +%s%N)
write_cm_version ..2026_01_01_00_00_00.3
wait_until 5 sh -c "! kill -0 $pid 2>/dev/null"
gone=$?
ms=$((($(date +%s%N) - t0) / 1000000))
if [ $gone -eq 0 ] && grep -q "configuration file .* changed; exiting" "$RIG_DIR/agent-n1.log.tmp"; then
	pass config-change-exits-for-a-restart "exited ${ms} ms after the ConfigMap update"
else
	fail config-change-exits-for-a-restart "gone=$gone log: $(tail -2 "$RIG_DIR/agent-n1.log.tmp" | tr '\n' ' ')"
fi
rig_agent_stop n1
# the restarted agent runs with the new file
start_agent
rig_agent_wait_synced n1 15
js=$("$KPX_BIN" status --state-socket "$RIG_DIR/n1.sock" -o json 2>/dev/null | jq -r '.agent.config.clusterCIDR' 2>&1)
check_why config-restart-takes-the-new-file "$([ "$js" = 10.245.0.0/16 ] || echo "clusterCIDR $js")"
rig_agent_stop n1

# ---- kube-proxy's other flags -----------------------------------------------
out=$(rig_node_exec n1 n1 timeout -k 1 10 "$KPX_BIN" run --config "$CM/config.conf" --manifests "$RIG_MANIFESTS" \
	--write-config-to "$RIG_DIR/written.json" 2>&1)
rc=$?
v=$(jq -r '."kubeproxy.config.k8s.io".syncPeriod' "$RIG_DIR/written.json" 2>&1)
check_why write-config-to-writes-and-exits "$([ $rc -eq 0 ] && [ "$v" = 30s ] || echo "exit $rc, syncPeriod '$v': $(tail -1 <<<"$out")")"
out=$(rig_node_exec n1 n1 timeout -k 1 10 "$KPX_BIN" run --init-only --config "$CM/config.conf" 2>&1)
check_rc init-only-exits-0 $? "$(tail -1 <<<"$out")"

# The agent's whole argument list, kube-proxy's flags included, works for
# `kpx cleanup` and for `kpx run --cleanup` (kube-proxy's --cleanup).
RUNARGS=(--config "$CM/config.conf" --manifests "$RIG_MANIFESTS" --backend nft --hostname-override n1
	--state-socket "$RIG_DIR/n1.sock" --devices eth0 --cluster-cidr 198.19.0.0/16 --masquerade-all=0
	--conntrack-max-per-core 0 --iptables-sync-period=30s --feature-gates A=true -v 2
	--bpf-root "/sys/fs/bpf/$RIG_P-n1" --cgroup-path "$RIG_CG/n1")
if ! in_n1 nft list table inet kpx >/dev/null 2>&1; then
	start_agent
	rig_agent_wait_synced n1 15
	rig_agent_stop n1
fi
out=$(rig_node_exec n1 n1 timeout -k 1 20 "$KPX_BIN" cleanup "${RUNARGS[@]}" 2>&1)
rc=$?
if [ $rc -eq 0 ] && ! in_n1 nft list table inet kpx >/dev/null 2>&1; then
	pass cleanup-accepts-the-run-flags
else
	fail cleanup-accepts-the-run-flags "exit $rc: $(tail -2 <<<"$out" | tr '\n' ' ')"
fi
start_agent
rig_agent_wait_synced n1 15
rig_agent_stop n1
in_n1 nft list table inet kpx >/dev/null 2>&1 || fail run-cleanup-flag-cleans-and-exits "no table inet kpx to clean up"
out=$(rig_node_exec n1 n1 timeout -k 1 20 "$KPX_BIN" run "${RUNARGS[@]}" --cleanup 2>&1)
rc=$?
if [ $rc -eq 0 ] && ! in_n1 nft list table inet kpx >/dev/null 2>&1 && grep -q 'removed everything' <<<"$out"; then
	pass run-cleanup-flag-cleans-and-exits
else
	fail run-cleanup-flag-cleans-and-exits "exit $rc: $(tail -2 <<<"$out" | tr '\n' ' ')"
fi
exit 0
