#!/bin/bash
# kpx against the real kube-proxy, side by side in one run, fed by the same
# real API server (tests/cluster: etcd, kube-apiserver and
# kube-controller-manager of the pinned release, `make k8s`):
#
#   for N in ${SIZES:-1000} Services x 10 endpoints (ClusterIPs allocated
#   by the server; EndpointSlices written by this script with its own
#   managed-by label, so that the load itself is fast; endpoints are the
#   rig's pods, 5 pods x 2 ports), then for each dataplane in
#   ${PROXIES:-kpx-bpf kpx-nft kube-proxy-nftables kube-proxy-iptables},
#   started alone on node n1:
#     first sync   from the dataplane's start until 20 sampled Services
#                  answer from a pod of n1 (bounded by ${SYNC_BOUND:-600} s;
#                  "> T" when not reached)
#     memory       the dataplane's memory cgroup (v1 here: usage and rss,
#                  so kube-proxy's nft / iptables-restore children count)
#                  after the sync, and its peak
#     CPU          user+system seconds of the dataplane's cgroup to the sync
#
#   then, with the dataplane still running, each phase named in
#   ${PHASES:-latency datapath} whose perf/lib/kp_PHASE.sh exists: the file
#   defines kp_PHASE_header (its Markdown table's heading and header rows)
#   and kp_PHASE PROXY N (prints one or more table rows for that dataplane
#   at that size). Each phase's table follows the first-sync table. A
#   phase runs in this shell: it may restart the dataplane (dp_stop,
#   clean_proxy, start_proxy PROXY [extra kpx flags]) if it leaves the same
#   dataplane running, synced, when it returns.
#
# This machine has no IP_VS: kube-proxy's ipvs mode cannot run and is not
# measured. Results are appended to perf/results/kube-proxy-DATE.md with
# the machine, kernel, commit, release and command.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
[ "$(id -u)" -eq 0 ] || { echo "SKIP kube_proxy_bench: needs root"; exit 0; }
SIZES=${SIZES:-1000}
PROXIES=${PROXIES:-kpx-bpf kpx-nft kube-proxy-nftables kube-proxy-iptables}
SYNC_BOUND=${SYNC_BOUND:-600}
WRITERS=${WRITERS:-4}
out=$ROOT/perf/results/kube-proxy-$(date +%Y-%m-%d).md

# shellcheck source=../tests/integration/lib/check.sh
. tests/integration/lib/check.sh
export KPX_BACKEND=nft
export RIG_P="kb$$"
# shellcheck source=../tests/integration/lib/rig.sh
. tests/integration/lib/rig.sh
# Service CIDRs wide enough for the sizes (the rig routes none of it: the
# clients are pods of the node under test).
export CL_SVC_CIDRS=198.18.128.0/17,fd00:18:128::/108
# shellcheck source=../tests/cluster/cluster.sh
. tests/cluster/cluster.sh
PHASES=${PHASES:-latency datapath}
phases=""
for ph in $PHASES; do
	# shellcheck source=/dev/null
	[ -f "perf/lib/kp_$ph.sh" ] && . "perf/lib/kp_$ph.sh" && phases="$phases $ph"
done
MEMCG=/sys/fs/cgroup/memory/kpxbench$$
CPUCG=/sys/fs/cgroup/cpuacct/kpxbench$$
DP_PID=""

bench_down() {
	dp_stop
	rmdir "$MEMCG" "$CPUCG" 2>/dev/null
	rig_down
}
for b in kube-apiserver kube-proxy kubectl etcd; do
	[ -x "$CL_K8S/$b" ] || { echo "kube_proxy_bench: $CL_K8S/$b missing (make k8s)"; exit 1; }
done
rig_up || { echo "kube_proxy_bench: rig_up failed"; exit 1; }
trap bench_down EXIT
trap 'exit 1' INT TERM
cluster_up || { echo "kube_proxy_bench: control plane did not start"; exit 1; }
rig_pod_servers 8080
rig_pod_servers 8081
mkdir -p "$MEMCG" "$CPUCG"

# ---- load -----------------------------------------------------------------

# load FROM TO: Services bFROM..b(TO-1) in namespace bench, each with two
# slices of 5 endpoints (5 pods x ports 8080, 8081), written by WRITERS
# kubectl processes in parallel. Sizes grow, so each size loads only the
# Services the previous one did not have.
load() {
	local from=$1 n=$2 w
	kc create namespace bench >/dev/null 2>&1
	for w in $(seq 0 $((WRITERS - 1))); do
		python3 - "$from" "$n" "$w" "$WRITERS" >"$RIG_DIR/load-$w.json" <<-'PY'
		import json, sys
		f, n, w, nw = (int(a) for a in sys.argv[1:5])
		pods = ["198.19.1.11", "198.19.1.12", "198.19.1.13", "198.19.2.11", "198.19.2.12"]
		items = []
		for i in range(f + w, n, nw):
		    items.append({"apiVersion": "v1", "kind": "Service",
		        "metadata": {"name": f"b{i}", "namespace": "bench"},
		        "spec": {"ports": [{"name": "p", "protocol": "TCP", "port": 80}]}})
		    for suffix, port in (("a", 8080), ("b", 8081)):
		        items.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
		            "metadata": {"name": f"b{i}-{suffix}", "namespace": "bench", "labels": {
		                "kubernetes.io/service-name": f"b{i}",
		                "endpointslice.kubernetes.io/managed-by": "kpx-bench"}},
		            "addressType": "IPv4",
		            "ports": [{"name": "p", "protocol": "TCP", "port": port}],
		            "endpoints": [{"addresses": [p], "conditions": {"ready": True},
		                           "nodeName": "n1" if p.startswith("198.19.1.") else "n2"}
		                          for p in pods]})
		json.dump({"apiVersion": "v1", "kind": "List", "items": items}, sys.stdout)
		PY
	done
	for w in $(seq 0 $((WRITERS - 1))); do
		T_CALL=3600 kc create -f "$RIG_DIR/load-$w.json" >/dev/null 2>"$RIG_DIR/load-$w.err" &
	done
	wait
	kc -n bench get svc --no-headers 2>/dev/null | wc -l
}

# ---- dataplanes -----------------------------------------------------------

# Runs CMD in node n1's netns, in the bench's memory and cpuacct cgroups.
dp_start() {
	local log=$RIG_DIR/dp.log
	echo 0 >"$MEMCG/memory.max_usage_in_bytes" 2>/dev/null
	MEMCG=$MEMCG CPUCG=$CPUCG NSP=/run/netns/$(rig_ns n1) \
		bash -c 'echo $$ >"$MEMCG/cgroup.procs"; echo $$ >"$CPUCG/cgroup.procs";
			exec nsenter --net="$NSP" "$@"' dp "$@" >"$log" 2>&1 &
	DP_PID=$!
	echo "$DP_PID" >>"$RIG_DIR/pids"
}

dp_stop() {
	[ -n "$DP_PID" ] || return 0
	kill "$DP_PID" 2>/dev/null
	for _ in $(seq 100); do kill -0 "$DP_PID" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$DP_PID" 2>/dev/null
	wait "$DP_PID" 2>/dev/null
	DP_PID=""
}

start_proxy() {	# PROXY [extra kpx flags]
	case $1 in
	kpx-bpf | kpx-nft)
		dp_start "$KPX_BIN" run --kubeconfig "$CL_DIR/kube-proxy.kubeconfig" \
			--backend "${1#kpx-}" --hostname-override n1 \
			--node-ip "$(rig_node_ip4 n1)" --cluster-cidr 198.19.0.0/16 \
			--cgroup-path "$RIG_CG/n1" --bpf-root "/sys/fs/bpf/$RIG_P-n1" \
			--state-socket "$RIG_DIR/n1.sock" --devices eth0 \
			--healthz-bind-address "$(rig_node_ip4 n1):10256" \
			--metrics-bind-address "$(rig_node_ip4 n1):10249" "${@:2}"
		;;
	kube-proxy-*)
		dp_start "$CL_K8S/kube-proxy" --kubeconfig "$CL_DIR/kube-proxy.kubeconfig" \
			--proxy-mode "${1#kube-proxy-}" --hostname-override n1 \
			--cluster-cidr 198.19.0.0/16 --nodeport-addresses primary \
			--healthz-bind-address "$(rig_node_ip4 n1):10256" \
			--metrics-bind-address "$(rig_node_ip4 n1):10249" \
			--conntrack-max-per-core 0 \
			--conntrack-tcp-timeout-established 0 --conntrack-tcp-timeout-close-wait 0
		;;
	esac
}

clean_proxy() {	# PROXY: what it left in n1's kernel
	case $1 in
	kpx-*) rig_node_exec n1 n1 "$KPX_BIN" cleanup --backend "${1#kpx-}" \
		--bpf-root "/sys/fs/bpf/$RIG_P-n1" --cgroup-path "$RIG_CG/n1" >/dev/null 2>&1 ;;
	kube-proxy-*) rig_exec n1 "$CL_K8S/kube-proxy" --cleanup >/dev/null 2>&1
		rig_exec n1 nft flush ruleset 2>/dev/null ;;
	esac
}

# all_answer IP...: each ClusterIP answers from pod n1p3
all_answer() {
	local ip o
	for ip in "$@"; do
		o=$(rig_node_exec n1 n1p3 "$KPX_ECHO" client --addr "$ip" --port 80 -n 1 --timeout-ms 300 2>/dev/null)
		[ "$(echo_get "$o" ok)" = 1 ] || return 1
	done
}

cpu_s() { awk '{printf "%.1f", $1 / 1e9}' "$CPUCG/cpuacct.usage"; }
mem_mib() { awk '{printf "%.0f", $1 / 1048576}' "$MEMCG/$1"; }
rss_mib() { awk '$1 == "total_rss" || $1 == "rss" {s = $2} END {printf "%.0f", s / 1048576}' "$MEMCG/memory.stat"; }

{
	echo
	echo "## $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD) ($(git describe --always --dirty))"
	echo
	echo "- machine: $(nproc) CPUs, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), kernel $(uname -r)"
	echo "- kube-proxy and control plane: $("$CL_K8S/kube-proxy" --version 2>/dev/null) (tests/cluster, make k8s); no IP_VS in this kernel: ipvs mode not measured"
	echo "- command: SIZES=\"$SIZES\" PROXIES=\"$PROXIES\" PHASES=\"$PHASES\" bash perf/kube_proxy_bench.sh"
	echo "- first sync: dataplane start until 20 sampled Services answer from a pod of the node (bound ${SYNC_BOUND} s); memory: the dataplane's memory cgroup (children included) after the sync, and its peak; CPU: the cgroup's CPU seconds to the sync. Defaults of each: kube-proxy min-sync-period 1 s, kpx adaptive (5x the last change-driven sync, at most 1 s)"
	echo
	echo "| services x 10 | dataplane | first sync | memory after sync (rss) | peak memory | CPU to sync |"
	echo "|---|---|---|---|---|---|"
} >>"$out"

cluster_node_add n1 za >/dev/null
cluster_node_add n2 zb >/dev/null
prev=0
for n in $SIZES; do
	t0=$(date +%s)
	got=$(load "$prev" "$n")
	prev=$n
	echo "# loaded $got Services ($n asked) in $(( $(date +%s) - t0 )) s"
	mapfile -t sample < <(kc -n bench get svc -o jsonpath='{range .items[*]}{.spec.clusterIP}{"\n"}{end}' | shuf -n 20 --random-source=<(yes))
	for p in $PROXIES; do
		clean_proxy "$p"
		echo 0 >"$CPUCG/cpuacct.usage"
		start_proxy "$p"
		t0=$(date +%s%N)
		res="> ${SYNC_BOUND} s"
		while [ $(( ($(date +%s%N) - t0) / 1000000000 )) -lt "$SYNC_BOUND" ]; do
			kill -0 "$DP_PID" 2>/dev/null || { res="exited: $(tail -1 "$RIG_DIR/dp.log")"; break; }
			if all_answer "${sample[@]}"; then
				res=$(awk -v ns=$(( $(date +%s%N) - t0 )) 'BEGIN {printf "%.1f s", ns / 1e9}')
				break
			fi
			sleep 0.2
		done
		cpu=$(cpu_s)
		sleep 2
		line="| $n | $p | $res | $(mem_mib memory.usage_in_bytes) MiB ($(rss_mib) MiB) | $(mem_mib memory.max_usage_in_bytes) MiB | $cpu s |"
		echo "$line" | tee -a "$out"
		case $res in ">"* | exited*) synced=0 ;; *" s") synced=1 ;; *) synced=0 ;; esac
		for ph in $phases; do
			[ "$synced" = 1 ] || { echo "| $n | $p | not synced |" >>"$RIG_DIR/table-$ph"; continue; }
			# (not in a pipe: a phase may restart the dataplane, DP_PID)
			"kp_$ph" "$p" "$n" >"$RIG_DIR/rows-$ph"
			tee -a "$RIG_DIR/table-$ph" <"$RIG_DIR/rows-$ph"
		done
		dp_stop
		clean_proxy "$p"
	done
done
for ph in $phases; do
	{ echo; "kp_${ph}_header"; cat "$RIG_DIR/table-$ph" 2>/dev/null; } >>"$out"
done
echo "results appended to $out"
