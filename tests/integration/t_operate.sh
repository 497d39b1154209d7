#!/bin/bash
# Operating kpx, per backend, on node n1 of the shared rig (lib/rig.sh):
#   kpx status / kpx services -o json against what the test programmed,
#   /metrics counters moving with syncs and traffic, /healthz and /livez
#   turning 503 when syncs stall (made to fail for real in the kernel),
#   healthCheckNodePort answering 200/503 as local endpoints come and go,
#   `kpx services --verify` catching state changed behind the agent's back,
#   `kpx status` reporting the datapath with the agent stopped, and
#   agents without --state-socket in two node netns each answering
#   `kpx status` of their own netns (/run/kpx/kpx-netns-<inode>.sock).
# One line per check: PASS BACKEND/name | FAIL BACKEND/name: why | SKIP ...
# KPX_BACKENDS="nft bpf" selects backends. Exits 0 unless the rig broke.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
# shellcheck disable=SC2046 # $(kflags) is split into flags on purpose
ROOT=$PWD
KPX=${KPX_BIN:-$ROOT/build/kpx}
ECHO=$ROOT/build/kpx_echo
SYNC_PERIOD=2 # seconds; /healthz goes 503 after 2 x this
BPF_SERVICES_MAX=16 # small, so that the bpf stall can fill it
NODE_IP=198.18.0.11
METRICS=http://$NODE_IP:10249
HEALTHZ=http://$NODE_IP:10256
HCNP=http://$NODE_IP:32001/
HOLDER_FD_OPEN=0

B=operate
# shellcheck source=lib/check.sh
. tests/integration/lib/check.sh
CHECK_PREFIX=$B # pass/fail/skip print $B/name

need_root all
need_files all "$KPX" "$ECHO" tests/integration/lib/rig.sh
need_tools all curl nft python3 jq bpftool
# shellcheck source=lib/rig.sh
. tests/integration/lib/rig.sh
kpx_sweep_stale

# Everything the test starts runs in the rig's namespaces/cgroups, so
# rig_down (EXIT trap installed by rig_up) kills it; the nft stall holder
# is one of them and only needs its FIFO closed first.
teardown() {
	if [ -n "$RIG_DIR" ] && [ ! -d "$RIG_DIR" ]; then
		fail rig "$RIG_DIR was removed from outside during the run; failures above may come from that"
	fi
	if [ "$HOLDER_FD_OPEN" = 1 ]; then
		exec 4>&-
		HOLDER_FD_OPEN=0
	fi
	dflt_cleanup
	rig_down
}

# ---- manifests (single-stack IPv4; endpoints are rig pods) ----

# write_web RV NODE:POD...  web: ClusterIP 198.18.100.1:80 -> pods :8080
write_web() {
	local rv=$1 np
	shift
	{
		cat <<EOF
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default, resourceVersion: "1"}
spec:
  type: ClusterIP
  clusterIP: 198.18.100.1
  clusterIPs: [198.18.100.1]
  ports: [{name: http, port: 80, protocol: TCP, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: default
  resourceVersion: "$rv"
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
EOF
		for np in "$@"; do
			echo "- {addresses: [\"$(rig_pod_ip4 "${np%:*}" "${np#*:}")\"], conditions: {ready: true}, nodeName: ${np%:*}}"
		done
	} | rig_manifest_write web.yaml
}

# write_lb RV NODE: lb (eTP=Local, hcnp 32001), one endpoint on NODE pod 2
write_lb() {
	rig_manifest_write lb.yaml <<EOF
apiVersion: v1
kind: Service
metadata: {name: lb, namespace: shop, resourceVersion: "1"}
spec:
  type: LoadBalancer
  clusterIP: 198.18.100.2
  clusterIPs: [198.18.100.2]
  externalTrafficPolicy: Local
  healthCheckNodePort: 32001
  ports: [{name: http, port: 80, protocol: TCP, targetPort: 8080, nodePort: 30080}]
status:
  loadBalancer: {ingress: [{ip: 198.18.200.1}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: lb-1
  namespace: shop
  resourceVersion: "$1"
  labels: {kubernetes.io/service-name: lb}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- {addresses: ["$(rig_pod_ip4 "$2" 2)"], conditions: {ready: true}, nodeName: $2}
EOF
}

# write_extra N: N more ClusterIP services (a change for the stalled agent;
# for bpf, more than --bpf-services-max holds).
write_extra() {
	local i
	for ((i = 1; i <= $1; i++)); do
		cat <<EOF
---
apiVersion: v1
kind: Service
metadata: {name: extra-$i, namespace: default, resourceVersion: "1"}
spec:
  type: ClusterIP
  clusterIP: 198.18.101.$i
  clusterIPs: [198.18.101.$i]
  ports: [{name: p, port: 81, protocol: TCP, targetPort: 8080}]
EOF
	done | rig_manifest_write extra.yaml
}

# ---- helpers (wait_until, pass/fail/skip: lib/check.sh) ----

in_n1() { rig_exec n1 "$@"; }

http_code() { # URL, from the node itself
	in_n1 curl -s -o /dev/null -m 2 -w '%{http_code}' "$1"
}
code_is() { [ "$(http_code "$1")" = "$2" ]; }
# healthCheckNodePort probes come from the load balancer, i.e. outside.
hc_code() { rig_ext_exec curl -s -o /dev/null -m 2 -w '%{http_code}' "$HCNP"; }
hc_is() { [ "$(hc_code)" = "$1" ]; }

metric() { # exact series -> value (empty when absent)
	in_n1 curl -s -m 2 "$METRICS/metrics" | awk -v k="$1" '$1 == k { print $2 }'
}

kflags() {
	echo --state-socket "$RIG_DIR/n1.sock" --bpf-root "/sys/fs/bpf/$RIG_P-n1" \
		--cgroup-path "$RIG_CG/n1" --backend "$B"
}
# the rig's snapshot (build/kpx may be mid-link when others rebuild)
kpx() { in_n1 timeout -k 2 "$T_CALL" "$KPX_BIN" "$@"; }

# backends_of ADDR PORT -> sorted "ip:port" list of that frontend
backends_of() {
	kpx services -o json $(kflags) | python3 -c '
import json, sys
d = json.load(sys.stdin)
fes = d.get("frontends", []) if isinstance(d, dict) else d
for fe in fes:
    if fe.get("address") == sys.argv[1] and int(fe.get("port", 0)) == int(sys.argv[2]):
        print(" ".join(sorted("%s:%s" % (b["address"], b["port"]) for b in fe.get("backends") or [])))
        break
' "$1" "$2"
}
backends_are() { [ "$(backends_of "$1" "$2")" = "$3" ]; }

verify_ok() { kpx services --verify $(kflags) >/dev/null 2>&1; }
agent_synced() { [ "$(metric kpx_syncs_total)" -ge 1 ] 2>/dev/null; }

# ---- drift: frontend 198.18.100.1:80/TCP removed behind the agent ----

# `nft list maps`, not `list ruleset`: nft 1.0.6 aborts decoding kpx's
# rules (netlink_parse_concat_expr assertion), see the report.
drift_nft() {
	in_n1 nft -j list maps | python3 -c '
import json, sys
for o in json.load(sys.stdin)["nftables"]:
    m = o.get("map") or o.get("set")
    if not m or "kpx" not in m.get("table", ""):
        continue
    for e in m.get("elem", []):
        k = e[0] if isinstance(e, list) else e  # map elems are [key, value]
        if isinstance(k, dict) and "elem" in k:
            k = k["elem"]["val"]
        parts = k.get("concat", [k]) if isinstance(k, dict) else [k]
        if "198.18.100.1" in parts and 80 in parts:
            print(m["family"], m["table"], m["name"],
                  "{ %s }" % " . ".join(str(p) for p in parts))
            sys.exit(0)
sys.exit("no element for 198.18.100.1 . 80 in any kpx map/set")' >"$RIG_DIR/drift" || return 1
	local fam table map rest
	read -r fam table map rest <"$RIG_DIR/drift"
	in_n1 nft delete element "$fam" "$table" "$map" "$rest" || return 1
	echo "deleted element $rest from $fam $table $map"
}

# drift_bpf [SCOPE]: SCOPE 1 (internal: local sockets, the entry a
# ClusterIP's own traffic uses, default) or 0 (external: tc).
drift_bpf() {
	local scope=${1:-1} m=/sys/fs/bpf/$RIG_P-n1/kpx_svc
	[ -e "$m" ] || m=$(find "/sys/fs/bpf/$RIG_P-n1" -name kpx_svc | head -1)
	[ -n "$m" ] && [ -e "$m" ] || {
		echo "no pinned kpx_svc"
		return 1
	}
	bpftool -j map dump pinned "$m" | python3 -c '
import json, sys
for e in json.load(sys.stdin):
    k = [int(x, 16) for x in e["key"]]
    # struct kpx_svc_key: addr[16] (IPv4 first), port (BE), proto, ...
    if k[0:4] == [198, 18, 100, 1] and k[16:18] == [0, 80] and k[19] == int(sys.argv[1]):
        print(" ".join("%02x" % b for b in k))
        sys.exit(0)
sys.exit("no kpx_svc key for 198.18.100.1:80 scope " + sys.argv[1])' "$scope" >"$RIG_DIR/drift" || return 1
	bpftool map delete pinned "$m" key hex $(cat "$RIG_DIR/drift") || return 1
	echo "deleted kpx_svc entry $(cat "$RIG_DIR/drift")"
}

# ---- stall: every following sync fails in the kernel, reversibly ----
#
# nft: the kpx table is replaced by one with NFT_TABLE_F_OWNER held by
# another process (an `nft -i` reading a FIFO); the kernel refuses any
# change to an owned table from another socket (EPERM), so the agent's
# transactions fail. Closing the FIFO ends that process and the kernel
# removes its owned table, so the agent can create it again.
# bpf: the agent runs with --bpf-services-max 16; 20 extra services need
# more service ids than the maps hold, so the sync fails (capacity); the
# extra services going away lets it succeed again.
stall_nft() {
	local t fam name
	t=$(in_n1 nft list maps | awk '$1 == "table" && $3 ~ /kpx/ { print $2, $3; exit }')
	[ -n "$t" ] || {
		echo "no kpx table"
		return 1
	}
	read -r fam name <<<"$t"
	rm -f "$RIG_DIR/holder"
	mkfifo "$RIG_DIR/holder"
	rig_node_bg n1 n1 "$RIG_DIR/holder.log" sh -c 'exec nft -i <"$0"' "$RIG_DIR/holder"
	# read-write: opening a FIFO write-only blocks until a reader comes,
	# and would hang here if the holder failed to start
	exec 4<>"$RIG_DIR/holder"
	HOLDER_FD_OPEN=1
	echo "delete table $fam $name" >&4
	echo "add table $fam $name { flags owner; }" >&4
	wait_until 3 owned "$fam" "$name" || {
		echo "the owned table did not appear: $(cat "$RIG_DIR/holder.log")"
		return 1
	}
	write_extra 1
}
owned() { in_n1 nft list table "$1" "$2" | grep -q owner; }
unstall_nft() {
	exec 4>&-
	HOLDER_FD_OPEN=0
}
stall_bpf() { write_extra 20; }
unstall_bpf() { rig_manifest_rm extra.yaml; }

# When drift was not repaired, a restart (open = full reconcile) brings
# the kernel back to the plan so that later checks start from a known state.
resync_by_restart() {
	verify_ok && return 0
	echo "# $B: restarting the agent to undo the drift" >&2
	rig_agent_stop n1
	rig_agent_start n1 "${AGENT_FLAGS[@]}"
	wait_until 15 agent_synced && wait_until 10 verify_ok
}

# ---- the default state socket, one agent per netns ----
#
# Agents started without --state-socket listen on a twin of the default
# per network namespace, /run/kpx/kpx-netns-<netns inode>.sock, and on
# the default itself only when no live agent answers there (another
# person's agent may: /run/kpx is the host's). `kpx status` without
# --state-socket asks the agent of its own netns.
SOCK_DEFAULT=/run/kpx/kpx.sock
DFLT_SOCKS=() # twins of this test's netns, removed on exit

twin_of() { echo "/run/kpx/kpx-netns-$(stat -L -c %i "/run/netns/$(rig_ns "$1")").sock"; }
# sock_live PATH: something accepts on the unix socket PATH
sock_live() {
	python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])' "$1" 2>/dev/null
}
# dflags NODE: datapath flags of NODE's agent, no --state-socket
dflags() {
	echo --bpf-root "/sys/fs/bpf/$RIG_P-$1" --cgroup-path "$RIG_CG/$1" --backend "$B"
}
# dflt_status NODE: `kpx status -o json` in NODE's netns, default socket
dflt_status() {
	# shellcheck disable=SC2046
	rig_exec "$1" timeout -k 2 "$T_CALL" "$KPX_BIN" status -o json $(dflags "$1")
}
# dflt_node NODE: the node name the agent answering in NODE's netns reports
dflt_node() { dflt_status "$1" | jq -r 'if .agent_running then .agent.node else "down" end'; }
dflt_node_is() { [ "$(dflt_node "$1")" = "$2" ]; }

# dflt_start NODE: the rig's agent flags (rig_agent_start) without
# --state-socket; rig_agent_pid/stop/kill9 work on it
dflt_start() {
	local node=$1
	DFLT_SOCKS+=("$(twin_of "$node")")
	rig_node_bg "$node" "$node" "$RIG_DIR/dflt-$node.log" \
		"$KPX_BIN" run --manifests "$RIG_MANIFESTS" --backend "$B" \
		--hostname-override "$node" \
		--node-ip "$(rig_node_ip4 "$node"),$(rig_node_ip6 "$node")" \
		--cluster-cidr 198.19.0.0/16,fd00:19::/32 \
		--bpf-root "/sys/fs/bpf/$RIG_P-$node" \
		--cgroup-path "$RIG_CG/$node" \
		--devices eth0 \
		--healthz-bind-address "$(rig_node_ip4 "$node"):10256" \
		--metrics-bind-address "$(rig_node_ip4 "$node"):10249" \
		--min-sync-period 100ms -v 1
	echo "$RIG_LAST_PID" >"$RIG_DIR/agent-$node.pid"
}

# Stops this test's default-socket agents and removes their sockets:
# the twins of our netns, and the default only when nobody answers on it
# (ours was killed -9; a live one is someone else's).
dflt_cleanup() {
	local node f
	for node in $RIG_NODES; do
		[ -f "$RIG_DIR/dflt-$node.log" ] && rig_agent_stop "$node"
	done
	for f in "${DFLT_SOCKS[@]}"; do
		[ -S "$f" ] && rm -f "$f"
	done
	DFLT_SOCKS=()
	[ -S $SOCK_DEFAULT ] && ! sock_live $SOCK_DEFAULT && rm -f $SOCK_DEFAULT
	return 0
}

state_socket_checks() {
	local t1 t2 f why="" node out default_ours=0
	t1=$(twin_of n1)
	t2=$(twin_of n2)
	dflt_start n1
	if ! wait_until 15 dflt_node_is n1 n1; then
		fail state-socket-netns "agent 1 (n1, no --state-socket) not reporting n1 in its netns within 15 s: $(dflt_status n1 2>&1 | jq -c '{agent_running, node: .agent.node}' 2>&1) $(grep -m3 'status socket\|^E' "$RIG_DIR/dflt-n1.log" | tr '\n' ' ')"
		dflt_cleanup
		return
	fi
	# agent 1 takes the default unless a live agent (not ours) has it
	grep -q "status socket listening on $SOCK_DEFAULT\$" "$RIG_DIR/dflt-n1.log" && default_ours=1
	dflt_start n2
	wait_until 15 dflt_node_is n2 n2 || why="$why n2's netns reports '$(dflt_node n2)', not n2;"
	for node in n1 n2; do
		[ "$node" = n1 ] && f=$t1 || f=$t2
		[ -S "$f" ] || why="$why no socket $f for $node's netns;"
		grep -q "status socket listening on $f\$" "$RIG_DIR/dflt-$node.log" ||
			why="$why $node's agent does not log listening on $f;"
	done
	out=$(dflt_node n1)
	[ "$out" = n1 ] || why="$why n1's netns reports '$out' after agent 2 started;"
	check_why state-socket-netns "$why"

	why=""
	grep -q "status socket $SOCK_DEFAULT belongs to another agent" "$RIG_DIR/dflt-n2.log" ||
		why="$why agent 2's log does not say another agent serves $SOCK_DEFAULT: $(grep 'status socket' "$RIG_DIR/dflt-n2.log" | tr '\n' ' ');"
	if [ $default_ours = 1 ]; then
		# the default still answers for agent 1 (a link: the CLI resolves
		# only the default path itself to its netns's twin)
		ln -sf $SOCK_DEFAULT "$RIG_DIR/default.sock"
		# shellcheck disable=SC2046 # flags, split on purpose
		out=$(in_n1 timeout -k 2 "$T_CALL" "$KPX_BIN" status -o json --state-socket "$RIG_DIR/default.sock" $(dflags n1) | jq -r '.agent.node')
		[ "$out" = n1 ] || why="$why $SOCK_DEFAULT answers for '$out', not agent 1 (n1);"
	else
		echo "# $B: $SOCK_DEFAULT is served by an agent outside this test; checked agent 2's log only" >&2
	fi
	check_why state-socket-no-takeover "$why"

	why=""
	rig_agent_kill9 n1
	out=$(dflt_status n1)
	if ! jq -e '.agent_running == false' <<<"$out" >/dev/null; then
		why="$why n1's netns after kill -9 of its agent: $(jq -c '{agent_running, node: .agent.node}' <<<"$out" 2>&1);"
	fi
	# shellcheck disable=SC2046 # flags, split on purpose
	out=$(in_n1 timeout -k 2 "$T_CALL" "$KPX_BIN" status $(dflags n1))
	grep -q 'Agent: not running' <<<"$out" || why="$why text status in n1's netns: $(head -1 <<<"$out");"
	out=$(dflt_node n2)
	[ "$out" = n2 ] || why="$why n2's netns reports '$out' after agent 1 died;"
	check_why state-socket-dead-agent "$why"

	# A clean stop leaves the twin in place: the CLI in that netns must
	# see "not running", not fall back to the default another netns's
	# agent serves.
	why=""
	dflt_start n1
	wait_until 15 dflt_node_is n1 n1 || why="$why restarted agent 1 not reporting n1;"
	rig_agent_stop n2
	out=$(dflt_status n2)
	if ! jq -e '.agent_running == false' <<<"$out" >/dev/null; then
		why="$why n2's netns after a clean stop of its agent: $(jq -c '{agent_running, node: .agent.node}' <<<"$out" 2>&1);"
	fi
	check_why state-socket-clean-stop "$why"
	dflt_cleanup
}

# ---- scenario ----

run_backend() {
	local out rc v0 v1 e0 e1 hdr code seen
	B=$1
	CHECK_PREFIX=$B
	KPX_BACKEND=$B
	RIG_P=ko$$${B:0:1}
	RIG_CG=$RIG_CG_MNT/$RIG_P # rig.sh derives it from RIG_P once, at source time
	# rig_up snapshots the binaries into its RIG_DIR, which the previous
	# backend's rig_down removed: start again from build/.
	KPX_BIN=$KPX
	KPX_ECHO=$ECHO
	if ! rig_up; then
		fail rig "rig_up failed"
		teardown
		return 1
	fi
	# rig_up's trap, plus the sockets under /run/kpx the test creates
	trap 'dflt_cleanup; rig_down' EXIT
	rig_pod_servers 8080
	write_web 1 n1:1
	write_lb 1 n1
	AGENT_FLAGS=(--sync-period ${SYNC_PERIOD}s)
	[ "$B" = bpf ] && AGENT_FLAGS+=(--bpf-services-max $BPF_SERVICES_MAX)
	rig_agent_start n1 "${AGENT_FLAGS[@]}"
	if ! wait_until 15 agent_synced; then
		fail agent "no successful sync within 15 s: $(grep -m3 '^E' "$RIG_DIR/agent-n1.log" | tr '\n' ' ')"
		teardown
		return 0
	fi
	pass agent

	# kpx status -o json: agent section and counts as programmed.
	out=$(kpx status -o json $(kflags))
	rc=$?
	if [ $rc -eq 0 ] && python3 -c '
import json, sys
d = json.loads(sys.argv[1])
assert d["agent_running"] is True, "agent_running"
assert d["agent"]["backend"] == sys.argv[2], "backend %s" % d["agent"]["backend"]
assert d["agent"]["node"] == "n1", "node"
assert d["agent"]["healthy"] is True, "healthy"
assert d["datapath"], "no datapath section"
c = d["counts"]
assert c["services"] == 2, "services %s" % c["services"]
# web: ClusterIP; lb: ClusterIP + NodePort on the node IP + LB IP.
assert c["frontends"] == 4, "frontends %s" % c["frontends"]
' "$out" "$B" 2>"$RIG_DIR/err"; then
		pass status-json
	else
		fail status-json "rc=$rc $(tail -1 "$RIG_DIR/err")"
	fi

	# kpx status text: 80 columns, no colour into a pipe.
	out=$(kpx status $(kflags))
	# "Agent: running", not the "Agent: not running" of a dead agent
	if ! grep -q "Datapath ($B)" <<<"$out" || ! grep -q 'Agent: running' <<<"$out"; then
		fail status-text "no agent/datapath sections: $(head -2 <<<"$out" | tr '\n' ' ')"
	elif awk 'length > 80 { exit 1 }' <<<"$out" && ! grep -q $'\e\[' <<<"$out"; then
		pass status-text
	else
		fail status-text "wider than 80 columns or colour into a pipe: $(awk 'length > 80' <<<"$out" | head -1)"
	fi

	# kpx services -o json: frontends and backends read from the kernel.
	if backends_are 198.18.100.1 80 "198.19.1.11:8080" &&
		backends_are 198.18.200.1 80 "198.19.1.12:8080" &&
		backends_are 198.18.100.2 80 "198.19.1.12:8080"; then
		pass services-json
	else
		fail services-json "web=[$(backends_of 198.18.100.1 80)] lb=[$(backends_of 198.18.200.1 80)] lb-cip=[$(backends_of 198.18.100.2 80)]"
	fi
	out=$(kpx services $(kflags))
	if [ -z "$out" ] || ! awk 'length > 80 { exit 1 }' <<<"$out"; then
		fail services-text "empty or wider than 80 columns: $(awk 'length > 80' <<<"$out" | head -1)"
	elif grep -q $'\e\[' <<<"$out"; then
		fail services-text "colour escapes written to a pipe"
	elif grep -q 'default/web' <<<"$out" && grep -q '198.18.100.1:80/TCP' <<<"$out"; then
		pass services-text
	else
		fail services-text "no row for default/web: $out"
	fi

	# POLICY column: eTP=Local on lb's external frontends, not on ClusterIPs.
	# (the ClusterIP row must be there: a missing row has no eTP=Local either)
	if grep -E '^198\.18\.200\.1:80/TCP ' <<<"$out" | grep -q 'eTP=Local' &&
		grep -qE '^198\.18\.100\.2:80/TCP ' <<<"$out" &&
		! grep -E '^198\.18\.100\.2:80/TCP ' <<<"$out" | grep -q 'eTP=Local'; then
		pass services-policy
	else
		fail services-policy "LB row: '$(grep -E '^198\.18\.200\.1:80' <<<"$out")' (the $B frontends dump has etp_local=$(kpx services -o json $(kflags) | jq -c '[.frontends[] | select(.address == "198.18.200.1") | .etp_local]'))"
	fi

	# /metrics: syncs and endpoint changes move with a change.
	v0=$(metric 'kubeproxy_sync_proxy_rules_duration_seconds_count{ip_family="IPv4"}')
	e0=$(metric kubeproxy_sync_proxy_rules_endpoint_changes_total)
	write_web 2 n1:1 n1:3
	if wait_until 10 backends_are 198.18.100.1 80 "198.19.1.11:8080 198.19.1.13:8080"; then
		v1=$(metric 'kubeproxy_sync_proxy_rules_duration_seconds_count{ip_family="IPv4"}')
		e1=$(metric kubeproxy_sync_proxy_rules_endpoint_changes_total)
		if is_uint "${v0%.*}" "${v1%.*}" "${e0%.*}" "${e1%.*}" &&
			[ "${v1%.*}" -gt "${v0%.*}" ] && [ "${e1%.*}" -gt "${e0%.*}" ]; then
			pass metrics-syncs
		else
			fail metrics-syncs "sync count $v0 -> $v1, endpoint changes $e0 -> $e1"
		fi
	else
		fail metrics-syncs "new endpoint not programmed within 10 s: [$(backends_of 198.18.100.1 80)]"
	fi

	# kpx_* datapath gauges read from the kernel.
	if [ "$B" = nft ]; then
		v1=$(metric 'kpx_nft_set_elements{family="inet",table="kpx",set="fe4"}')
		e1=$(metric 'kpx_nft_table_chains{family="inet",table="kpx"}')
	else
		v1=$(metric 'kpx_map_entries{map="kpx_svc"}')
		e1=$(metric 'kpx_map_capacity{map="kpx_svc"}')
	fi
	if [ "${v1%.*}" -ge 1 ] 2>/dev/null && [ "${e1%.*}" -ge 1 ] 2>/dev/null; then
		pass metrics-datapath
	else
		fail metrics-datapath "datapath gauges missing or zero: '$v1' '$e1'"
	fi

	# Traffic from the node through the ClusterIP reaches both endpoints;
	# per-service counters (where the backend keeps them) move with it.
	local sel='/^kpx_service_(packets|connections)_total\{service="default\/web",frontend="198.18.100.1:80\/TCP"/'
	# a failed scrape prints "down", not a count of 0
	v0=$(in_n1 curl -sf -m 2 "$METRICS/metrics" | awk "$sel { s += \$2 } END { print (NR ? s + 0 : \"down\") }")
	seen=$(rig_node_exec n1 n1 "$KPX_ECHO" client --addr 198.18.100.1 --port 80 -n 20 --timeout-ms 1000)
	v1=$(in_n1 curl -sf -m 2 "$METRICS/metrics" | awk "$sel { s += \$2; n++ } END { print (!NR ? \"down\" : n ? s : \"none\") }")
	if [ "$(echo_get "$seen" id n1-p1)" -gt 0 ] && [ "$(echo_get "$seen" id n1-p3)" -gt 0 ] &&
		[ "$(echo_get "$seen" ok)" = 20 ]; then
		pass traffic
	else
		fail traffic "20 connections to 198.18.100.1:80: $(tr '\n' ' ' <<<"$seen")"
	fi
	if [ "$v0" = down ] || [ "$v1" = down ]; then
		fail metrics-traffic "/metrics did not answer (before: $v0, after: $v1)"
	elif [ "$v1" = none ]; then
		skip metrics-traffic "the $B backend exports no kpx_service_*_total for default/web"
	elif is_uint "${v0%.*}" "${v1%.*}" && [ "${v1%.*}" -gt "${v0%.*}" ]; then
		pass metrics-traffic
	else
		fail metrics-traffic "per-service counters $v0 -> $v1 after 20 connections"
	fi

	# healthCheckNodePort: 200 with the local endpoint count, 503 without.
	hdr=$(rig_ext_exec curl -s -D - -o "$RIG_DIR/hc" -m 2 "$HCNP")
	if grep -q '^HTTP/1.1 200' <<<"$hdr" &&
		grep -qi '^X-Load-Balancing-Endpoint-Weight: 1' <<<"$hdr" &&
		python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d == {"service": {"namespace": "shop", "name": "lb"}, "localEndpoints": 1, "serviceProxyHealthy": True}, d
' "$RIG_DIR/hc" 2>"$RIG_DIR/err"; then
		pass hcnp-200
	else
		fail hcnp-200 "$(head -1 <<<"$hdr" | tr -d '\r') $(tail -1 "$RIG_DIR/err")"
	fi
	write_lb 2 n2
	if wait_until 10 hc_is 503; then
		hdr=$(rig_ext_exec curl -s -D - -o /dev/null -m 2 "$HCNP")
		if grep -qi '^X-Load-Balancing-Endpoint-Weight: 0' <<<"$hdr"; then
			pass hcnp-503
		else
			fail hcnp-503 "503 without X-Load-Balancing-Endpoint-Weight: 0"
		fi
	else
		fail hcnp-503 "still $(hc_code) 10 s after the local endpoint left"
	fi
	# kube-proxy's gauge of Local-policy services without a local endpoint.
	v1=$(metric 'kubeproxy_sync_proxy_rules_no_local_endpoints_total{ip_family="IPv4",traffic_policy="external"}')
	write_lb 3 n1
	if wait_until 10 hc_is 200; then
		v0=$(metric 'kubeproxy_sync_proxy_rules_no_local_endpoints_total{ip_family="IPv4",traffic_policy="external"}')
		if [ "$v1" = 1 ] && [ "$v0" = 0 ]; then
			pass metrics-no-local-endpoints
		else
			fail metrics-no-local-endpoints "external gauge $v1 without the local endpoint, $v0 with it (want 1, 0)"
		fi
		pass hcnp-back
	else
		fail hcnp-back "$(hc_code) 10 s after the local endpoint came back"
	fi

	# --verify: equal first, then a frontend removed behind the agent.
	rig_sync_all 10
	out=$(kpx services --verify $(kflags) 2>&1)
	rc=$?
	if [ $rc -eq 0 ]; then
		pass verify-clean
	else
		fail verify-clean "rc=$rc: $(head -3 <<<"$out" | tr '\n' ' ')"
	fi
	if drift_$B >"$RIG_DIR/drift.log" 2>&1; then
		out=$(kpx services --verify $(kflags) 2>&1)
		rc=$?
		if [ $rc -ne 0 ] && grep -q '198.18.100.1:80/TCP' <<<"$out"; then
			pass verify-drift
		else
			fail verify-drift "rc=$rc after $(cat "$RIG_DIR/drift.log"): $(head -3 <<<"$out" | tr '\n' ' ')"
		fi
	else
		fail verify-drift "could not change the frontend in the kernel: $(tail -1 "$RIG_DIR/drift.log")"
	fi
	# kube-proxy's periodic full resync rewrites everything; kpx's must
	# repair the drift within a sync period too.
	if wait_until $((3 * SYNC_PERIOD)) verify_ok; then
		pass verify-repaired
	else
		fail verify-repaired "kpx services --verify still non-zero $((3 * SYNC_PERIOD)) s after the drift (the periodic resync does not rewrite what was changed behind the agent)"
	fi
	# bpf keeps a second kpx_svc entry per frontend (scope external, for
	# traffic entering through tc); --verify must see that one too.
	resync_by_restart
	if [ "$B" = bpf ]; then
		if drift_bpf 0 >"$RIG_DIR/drift.log" 2>&1; then
			out=$(kpx services --verify $(kflags) 2>&1)
			rc=$?
			if [ $rc -ne 0 ] && grep -q '198.18.100.1:80/TCP' <<<"$out"; then
				pass verify-drift-external
			else
				fail verify-drift-external "rc=$rc after $(cat "$RIG_DIR/drift.log"): $(head -3 <<<"$out" | tr '\n' ' ') (the bpf dump lists one scope per frontend, so --verify cannot see the other)"
			fi
		else
			fail verify-drift-external "$(tail -1 "$RIG_DIR/drift.log")"
		fi
		resync_by_restart
	fi

	# /healthz, /livez: 503 once a queued change waits > 2 x sync period.
	if code_is "$HEALTHZ/healthz" 200 && code_is "$HEALTHZ/livez" 200; then
		pass healthz-200
	else
		fail healthz-200 "healthz $(http_code "$HEALTHZ/healthz") livez $(http_code "$HEALTHZ/livez") before the stall"
	fi
	# /healthz (not /livez) is 503 while the own Node is tainted
	# ToBeDeletedByClusterAutoscaler (its Node object in the manifests dir).
	rig_manifest_write node.yaml <<EOF
apiVersion: v1
kind: Node
metadata: {name: n1, resourceVersion: "1"}
spec:
  taints: [{key: ToBeDeletedByClusterAutoscaler, value: "1", effect: NoSchedule}]
EOF
	if wait_until 5 code_is "$HEALTHZ/healthz" 503; then
		out=$(in_n1 curl -s -m 2 "$HEALTHZ/healthz")
		if code_is "$HEALTHZ/livez" 200 && grep -q '"nodeEligible": false' <<<"$out"; then
			pass healthz-node-tainted
		else
			fail healthz-node-tainted "livez $(http_code "$HEALTHZ/livez"), body $out"
		fi
	else
		fail healthz-node-tainted "healthz $(http_code "$HEALTHZ/healthz") 5 s after the own Node got the autoscaler taint"
	fi
	rig_manifest_rm node.yaml
	if wait_until 5 code_is "$HEALTHZ/healthz" 200; then
		pass healthz-node-untainted
	else
		fail healthz-node-untainted "healthz $(http_code "$HEALTHZ/healthz") after the Node object went away"
	fi

	e0=$(metric kpx_sync_errors_total)
	if stall_$B >"$RIG_DIR/stall.log" 2>&1; then
		if wait_until $((3 * SYNC_PERIOD + 3)) code_is "$HEALTHZ/healthz" 503; then
			e1=$(metric kpx_sync_errors_total)
			code=$(http_code "$HEALTHZ/livez")
			v1=$(metric 'kubeproxy_proxy_healthz_total{code="503"}')
			if [ "$code" = 503 ] && [ "${v1:-0}" -ge 1 ] &&
				[ "${e1:-0}" -gt "${e0:-0}" ]; then
				pass healthz-stall
			else
				fail healthz-stall "livez $code, healthz 503 count ${v1:-none}, sync errors $e0 -> $e1"
			fi
			out=$(kpx status $(kflags))
			if grep -q 'UNHEALTHY' <<<"$out" && grep -q 'last error' <<<"$out"; then
				pass status-unhealthy
			else
				fail status-unhealthy "kpx status does not show the failing syncs: $(tr '\n' '|' <<<"$out" | head -c 300)"
			fi
			if hc_is 503; then
				pass hcnp-unhealthy
			else
				fail hcnp-unhealthy "healthCheckNodePort $(hc_code) while the agent is unhealthy"
			fi
		else
			fail healthz-stall "healthz $(http_code "$HEALTHZ/healthz") $((3 * SYNC_PERIOD + 3)) s after the stall; sync errors $e0 -> $(metric kpx_sync_errors_total)"
		fi
		unstall_$B
		if wait_until $((3 * SYNC_PERIOD + 5)) code_is "$HEALTHZ/healthz" 200; then
			pass healthz-recovers
		else
			fail healthz-recovers "healthz $(http_code "$HEALTHZ/healthz") after the kernel accepts syncs again; last error: $(grep '^E' "$RIG_DIR/agent-n1.log" | tail -1)"
		fi
	else
		fail healthz-stall "could not make $B syncs fail: $(tail -1 "$RIG_DIR/stall.log")"
	fi

	# Back to web + lb only, for the counts below.
	rig_manifest_rm extra.yaml
	rig_sync_all 10

	# /proxyMode answers the backend name.
	out=$(in_n1 curl -s -m 2 "$METRICS/proxyMode")
	if [ "$out" = "$B" ]; then
		pass proxymode
	else
		fail proxymode "/proxyMode said '$out'"
	fi

	# Agent stopped: status still reports the programmed datapath.
	rig_agent_stop n1
	out=$(kpx status $(kflags))
	rc=$?
	if [ $rc -eq 0 ] && grep -q 'not running' <<<"$out" && grep -q "Datapath ($B)" <<<"$out"; then
		pass status-agent-down
	else
		fail status-agent-down "rc=$rc: $(head -3 <<<"$out" | tr '\n' ' ')"
	fi
	out=$(kpx status -o json $(kflags))
	if python3 -c '
import json, sys
d = json.loads(sys.argv[1])
assert d["agent_running"] is False, "agent_running"
assert d["datapath"] and d["backend"] == sys.argv[2], "datapath/backend"
c = d["counts"]  # read from the kernel: web (2 endpoints) and lb
assert (c["services"], c["frontends"], c["endpoints"]) == (2, 4, 3), c
' "$out" "$B" 2>"$RIG_DIR/err"; then
		pass status-json-agent-down
	else
		fail status-json-agent-down "$(tail -1 "$RIG_DIR/err"): $(head -c 200 <<<"$out" | tr '\n' ' ')"
	fi
	if backends_are 198.18.100.1 80 "198.19.1.11:8080 198.19.1.13:8080"; then
		pass services-agent-down
	else
		fail services-agent-down "kpx services without the agent: web=[$(backends_of 198.18.100.1 80)]"
	fi

	state_socket_checks

	teardown
}

for b in ${KPX_BACKENDS:-nft bpf}; do
	case $b in
	nft | bpf) ;;
	*) continue ;;
	esac
	run_backend "$b" || exit 1
done
exit 0
