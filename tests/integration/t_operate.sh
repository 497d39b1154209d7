#!/bin/bash
# Operating kpx, per backend, in a network namespace of its own:
#   kpx status / kpx services -o json against what the test programmed,
#   /metrics counters moving with syncs and traffic, /healthz and /livez
#   turning 503 when syncs stall (made to fail for real in the kernel),
#   healthCheckNodePort answering 200/503 as local endpoints come and go,
#   `kpx services --verify` catching state changed behind the agent's back,
#   and `kpx status` reporting the datapath with the agent stopped.
# One line per check: PASS name | FAIL name: why | SKIP name: reason.
# KPX_BACKENDS="nft bpf" selects backends. Exits 0.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
KPX=$ROOT/build/kpx
ID=$$
TMP=$(mktemp -d /tmp/kpx-operate.XXXXXX)
NS=""
CG=""
BPFROOT=""
AGENT_PID=""
HOLDER_PID=""
SERVER_PIDS=()
SYNC_PERIOD=2 # seconds; /healthz goes 503 after 2 x this

pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }
skip() { echo "SKIP $1: $2"; }

if [ "$(id -u)" -ne 0 ]; then
	skip operate "needs root (network namespaces)"
	exit 0
fi
if [ ! -x "$KPX" ]; then
	fail operate "build/kpx not built"
	exit 0
fi
for tool in curl socat nft python3; do
	if ! command -v $tool >/dev/null; then
		skip operate "$tool not installed"
		exit 0
	fi
done

in_ns() { nsenter --net=/run/netns/$NS "$@"; }
# Clients run in the test's child cgroup, where the bpf socket hooks are.
client() {
	nsenter --net=/run/netns/$NS sh -c 'echo $$ > "$0/cgroup.procs" && shift && exec "$@"' "$CG" _ "$@"
}

teardown_backend() {
	local b=$1
	if [ -n "$HOLDER_PID" ]; then
		exec 4>&-
		wait "$HOLDER_PID" 2>/dev/null
		HOLDER_PID=""
	fi
	if [ -n "$AGENT_PID" ]; then
		kill "$AGENT_PID" 2>/dev/null
		wait "$AGENT_PID" 2>/dev/null
		AGENT_PID=""
	fi
	for p in "${SERVER_PIDS[@]}"; do kill "$p" 2>/dev/null; done
	SERVER_PIDS=()
	if [ -n "$NS" ] && [ -e /run/netns/$NS ]; then
		in_ns "$KPX" cleanup --backend "$b" --bpf-root "$BPFROOT" \
			--cgroup-path "$CG" >/dev/null 2>&1
		ip netns del $NS 2>/dev/null
	fi
	[ -n "$BPFROOT" ] && rm -rf "$BPFROOT" 2>/dev/null
	if [ -n "$CG" ] && [ -d "$CG" ]; then
		# Move stragglers out before removing the child cgroup.
		for p in $(cat "$CG/cgroup.procs" 2>/dev/null); do
			echo "$p" >"$(dirname "$CG")/cgroup.procs" 2>/dev/null
		done
		rmdir "$CG" 2>/dev/null
	fi
	NS=""
	CG=""
	BPFROOT=""
}

cleanup() {
	teardown_backend "${CUR_BACKEND:-nft}"
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# ---- manifests ----

write_web() { # $1 resourceVersion, $2.. endpoint IPs
	local rv=$1
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
		for ip in "$@"; do
			echo "- {addresses: [\"$ip\"], conditions: {ready: true}, nodeName: node-a}"
		done
	} >"$TMP/m/web.yaml.tmp"
	mv "$TMP/m/web.yaml.tmp" "$TMP/m/web.yaml"
}

write_lb() { # $1 resourceVersion, $2 nodeName of the one endpoint
	cat >"$TMP/m/lb.yaml.tmp" <<EOF
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
- {addresses: ["198.18.1.2"], conditions: {ready: true}, nodeName: $2}
EOF
	mv "$TMP/m/lb.yaml.tmp" "$TMP/m/lb.yaml"
}

write_extra() { # $1 resourceVersion: a change for the stalled agent to miss
	cat >"$TMP/m/extra.yaml.tmp" <<EOF
apiVersion: v1
kind: Service
metadata: {name: extra, namespace: default, resourceVersion: "$1"}
spec:
  type: ClusterIP
  clusterIP: 198.18.100.$((10 + $1))
  clusterIPs: [198.18.100.$((10 + $1))]
  ports: [{name: p, port: 81, protocol: TCP}]
EOF
	mv "$TMP/m/extra.yaml.tmp" "$TMP/m/extra.yaml"
}

# ---- helpers ----

# wait_for SECONDS CMD...: polls CMD every 0.2 s; bounded.
wait_for() {
	local t=$1 i
	shift
	for ((i = 0; i < t * 5; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	return 1
}

http_code() { # URL
	in_ns curl -s -o /dev/null -m 2 -w '%{http_code}' "$1"
}

metric() { # NAME{labels} exact series -> value (empty when absent)
	in_ns curl -s -m 2 http://127.0.0.1:10249/metrics |
		awk -v k="$1" '$1 == k { print $2 }'
}

kflags() { echo --state-socket "$TMP/kpx.sock" --bpf-root "$BPFROOT" --cgroup-path "$CG"; }

svc_json() { in_ns "$KPX" services -o json --backend "$1" $(kflags); }

# backends_of BACKEND ADDR PORT -> sorted "ip:port" list of that frontend
backends_of() {
	svc_json "$1" | python3 -c '
import json, sys
d = json.load(sys.stdin)
for fe in d.get("frontends", []):
    if fe.get("address") == sys.argv[1] and int(fe.get("port", 0)) == int(sys.argv[2]):
        print(" ".join(sorted("%s:%s" % (b["address"], b["port"]) for b in fe.get("backends", []))))
        break
' "$2" "$3"
}

backends_are() { [ "$(backends_of "$1" "$2" "$3")" = "$4" ]; }

agent_synced() {
	[ "$(metric kpx_syncs_total)" != "" ] && [ "$(metric kpx_syncs_total)" != "0" ]
}

# ---- drift and stall, per backend ----

# Removes the frontend 198.18.100.1:80/TCP from the kernel behind the
# agent's back. Prints what it did; non-zero when it could not.
drift_nft() {
	in_ns nft -j list ruleset | python3 -c '
import json, sys
rs = json.load(sys.stdin)["nftables"]
for o in rs:
    m = o.get("map") or o.get("set")
    if not m or "kpx" not in m.get("table", ""):
        continue
    for e in m.get("elem", []):
        k = e.get("elem", {}).get("val", e) if isinstance(e, dict) else e
        parts = k.get("concat", [k]) if isinstance(k, dict) else [k]
        if "198.18.100.1" in [str(p) for p in parts] and 80 in parts:
            print("%s %s %s { %s }" % (m["family"], m["table"], m["name"],
                  " . ".join(str(p) for p in parts)))
            sys.exit(0)
sys.exit(1)' >"$TMP/drift" || return 1
	read -r fam table map rest <"$TMP/drift"
	in_ns nft delete element "$fam" "$table" "$map" "$rest" || return 1
	echo "deleted element $rest from $fam $table $map"
}

drift_bpf() {
	local m=$BPFROOT/kpx_svc
	[ -e "$m" ] || m=$(find "$BPFROOT" -name kpx_svc | head -1)
	[ -n "$m" ] && [ -e "$m" ] || return 1
	bpftool -j map dump pinned "$m" | python3 -c '
import json, sys
for e in json.load(sys.stdin):
    k = [int(x, 16) for x in e["key"]]
    # kpx_svc_key: addr[16] (IPv4 in the first 4 bytes), port (BE), proto
    if k[0:4] == [198, 18, 100, 1] and k[16:18] == [0, 80]:
        print(" ".join("%02x" % b for b in k))
        sys.exit(0)
sys.exit(1)' >"$TMP/drift" || return 1
	bpftool map delete pinned "$m" key hex $(cat "$TMP/drift") || return 1
	echo "deleted kpx_svc entry $(cat "$TMP/drift")"
}

# Makes every following sync fail in the kernel: nft: the kpx table is
# replaced by one owned (NFT_TABLE_F_OWNER) by another process, which the
# agent may not modify; bpf: the service map is frozen read-only.
stall_nft() {
	local t fam name
	t=$(in_ns nft list tables | awk '$3 ~ /kpx/ { print $2, $3; exit }')
	[ -n "$t" ] || return 1
	read -r fam name <<<"$t"
	rm -f "$TMP/holder"
	mkfifo "$TMP/holder"
	# nft -i applies each line as it comes and keeps its netlink socket,
	# the table's owner, until its stdin closes.
	in_ns nft -i <"$TMP/holder" >"$TMP/holder.log" 2>&1 &
	HOLDER_PID=$!
	exec 4>"$TMP/holder"
	echo "delete table $fam $name" >&4
	echo "add table $fam $name { flags owner; }" >&4
	sleep 0.5
	in_ns nft list table "$fam" "$name" 2>/dev/null | grep -q owner
}

unstall_nft() {
	exec 4>&-
	wait "$HOLDER_PID" 2>/dev/null
	HOLDER_PID=""
}

stall_bpf() {
	local m=$BPFROOT/kpx_svc
	[ -e "$m" ] || m=$(find "$BPFROOT" -name kpx_svc | head -1)
	[ -n "$m" ] && [ -e "$m" ] && bpftool map freeze pinned "$m"
}

unstall_bpf() { return 1; } # freezing is permanent

# ---- scenario ----

run_backend() {
	local b=$1 p="operate_$1" out rc v0 v1 e0 e1 hdr code
	CUR_BACKEND=$b

	NS=kpxop$ID$b
	ip netns add $NS || {
		fail "${p}_setup" "ip netns add failed"
		return
	}
	in_ns ip link set lo up
	in_ns ip link add kpx0 type dummy
	in_ns ip link set kpx0 up
	in_ns ip addr add 198.18.0.1/24 dev kpx0
	in_ns ip addr add 198.18.1.1/24 dev kpx0
	in_ns ip addr add 198.18.1.2/24 dev kpx0
	in_ns ip addr add 198.18.1.3/24 dev kpx0
	CG=/sys/fs/cgroup/unified/kpxop$ID$b
	mkdir -p "$CG"
	if [ "$b" = bpf ]; then
		mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
	fi
	BPFROOT=/sys/fs/bpf/kpxop$ID$b
	for ip in 198.18.1.1 198.18.1.2 198.18.1.3; do
		in_ns socat -T 2 TCP-LISTEN:8080,bind=$ip,reuseaddr,fork \
			SYSTEM:"echo $ip" >/dev/null 2>&1 &
		SERVER_PIDS+=($!)
	done
	mkdir -p "$TMP/m"
	rm -f "$TMP"/m/*
	write_web 1 198.18.1.1
	write_lb 1 node-a

	in_ns "$KPX" run --manifests "$TMP/m" --backend "$b" \
		--hostname-override node-a --node-ip 198.18.0.1 \
		--devices kpx0 --cluster-cidr 198.18.1.0/24 \
		--healthz-bind-address 127.0.0.1:10256 \
		--metrics-bind-address 127.0.0.1:10249 \
		--state-socket "$TMP/kpx.sock" --bpf-root "$BPFROOT" \
		--cgroup-path "$CG" --sync-period ${SYNC_PERIOD}s \
		--min-sync-period 100ms -v 1 2>"$TMP/agent-$b.log" &
	AGENT_PID=$!
	if ! wait_for 15 agent_synced; then
		if ! kill -0 "$AGENT_PID" 2>/dev/null &&
			grep -qiE 'not supported|not implemented|ENOSYS|EOPNOTSUPP' "$TMP/agent-$b.log"; then
			skip "${p}" "the $b backend is not available: $(grep -m1 '^E' "$TMP/agent-$b.log")"
			teardown_backend "$b"
			return
		fi
		fail "${p}_agent" "no successful sync within 15 s: $(grep -m3 '^E' "$TMP/agent-$b.log" | tr '\n' ' ')"
		teardown_backend "$b"
		return
	fi
	pass "${p}_agent"

	# kpx status -o json: agent section and counts as programmed.
	out=$(in_ns "$KPX" status -o json $(kflags))
	rc=$?
	if [ $rc -eq 0 ] && python3 -c '
import json, sys
d = json.loads(sys.argv[1])
assert d["agent_running"] is True, "agent_running"
assert d["agent"]["backend"] == sys.argv[2], "backend %s" % d["agent"]["backend"]
assert d["agent"]["node"] == "node-a", "node"
assert d["agent"]["healthy"] is True, "healthy"
assert d["datapath"], "no datapath section"
c = d["counts"]
assert c["services"] == 2, "services %s" % c["services"]
# web: 1 ClusterIP; lb: ClusterIP + NodePort on 198.18.0.1 + LB IP.
assert c["frontends"] == 4, "frontends %s" % c["frontends"]
' "$out" "$b" 2>"$TMP/err"; then
		pass "${p}_status_json"
	else
		fail "${p}_status_json" "rc=$rc $(tail -1 "$TMP/err")"
	fi

	# kpx services -o json: frontends and backends read from the kernel.
	if backends_are "$b" 198.18.100.1 80 "198.18.1.1:8080" &&
		backends_are "$b" 198.18.200.1 80 "198.18.1.2:8080" &&
		backends_are "$b" 198.18.100.2 80 "198.18.1.2:8080"; then
		pass "${p}_services_json"
	else
		fail "${p}_services_json" "web=[$(backends_of "$b" 198.18.100.1 80)] lb=[$(backends_of "$b" 198.18.200.1 80)]"
	fi
	out=$(in_ns "$KPX" services $(kflags) --backend "$b")
	if [ -n "$out" ] && ! awk 'length > 80 { exit 1 }' <<<"$out"; then
		fail "${p}_services_text" "lines wider than 80 columns"
	elif grep -q 'default/web' <<<"$out" && grep -q '198.18.100.1:80/TCP' <<<"$out"; then
		pass "${p}_services_text"
	else
		fail "${p}_services_text" "no row for default/web: $out"
	fi

	# /metrics: syncs and endpoint changes move with a change.
	v0=$(metric kubeproxy_sync_proxy_rules_duration_seconds_count)
	e0=$(metric kubeproxy_sync_proxy_rules_endpoint_changes_total)
	write_web 2 198.18.1.1 198.18.1.3
	if wait_for 10 backends_are "$b" 198.18.100.1 80 "198.18.1.1:8080 198.18.1.3:8080"; then
		v1=$(metric kubeproxy_sync_proxy_rules_duration_seconds_count)
		e1=$(metric kubeproxy_sync_proxy_rules_endpoint_changes_total)
		if [ -n "$v0" ] && [ -n "$v1" ] && [ "$v1" -gt "$v0" ] &&
			[ -n "$e1" ] && [ "$e1" -gt "${e0:-0}" ]; then
			pass "${p}_metrics_syncs"
		else
			fail "${p}_metrics_syncs" "sync count $v0 -> $v1, endpoint changes $e0 -> $e1"
		fi
	else
		fail "${p}_metrics_syncs" "new endpoint not programmed within 10 s"
	fi

	# Traffic through the ClusterIP reaches both backends; per-service
	# counters (where the backend keeps them) move with it.
	v0=$(in_ns curl -s -m 2 http://127.0.0.1:10249/metrics | awk '/^kpx_service_(packets|connections)_total\{service="default\/web",frontend="198.18.100.1:80\/TCP"\}/ { s += $2 } END { print s + 0 }')
	local seen="" i
	for ((i = 0; i < 20; i++)); do
		seen+=" $(client socat -T 2 - TCP:198.18.100.1:80 </dev/null 2>/dev/null)"
	done
	v1=$(in_ns curl -s -m 2 http://127.0.0.1:10249/metrics | awk '/^kpx_service_(packets|connections)_total\{service="default\/web",frontend="198.18.100.1:80\/TCP"\}/ { s += $2; n++ } END { print (n ? s : "none") }')
	if grep -q 198.18.1.1 <<<"$seen" && grep -q 198.18.1.3 <<<"$seen"; then
		pass "${p}_traffic"
	else
		fail "${p}_traffic" "20 connections to 198.18.100.1:80 answered by:$(tr ' ' '\n' <<<"$seen" | sort | uniq -c | tr '\n' ' ')"
	fi
	if [ "$v1" = none ]; then
		skip "${p}_metrics_traffic" "the $b backend reports no per-backend counters"
	elif [ "$v1" -gt "$v0" ]; then
		pass "${p}_metrics_traffic"
	else
		fail "${p}_metrics_traffic" "per-service counters $v0 -> $v1 after 20 connections"
	fi

	# healthCheckNodePort: 200 with the local endpoint count, 503 without.
	hdr=$(in_ns curl -s -D - -o "$TMP/hc" -m 2 http://198.18.0.1:32001/)
	if grep -q '^HTTP/1.1 200' <<<"$hdr" &&
		grep -qi '^X-Load-Balancing-Endpoint-Weight: 1' <<<"$hdr" &&
		python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d == {"service": {"namespace": "shop", "name": "lb"}, "localEndpoints": 1, "serviceProxyHealthy": True}, d
' "$TMP/hc" 2>"$TMP/err"; then
		pass "${p}_hcnp_200"
	else
		fail "${p}_hcnp_200" "$(head -1 <<<"$hdr") $(tail -1 "$TMP/err")"
	fi
	write_lb 2 node-b
	if wait_for 10 test "$(http_code http://198.18.0.1:32001/)" = 503; then
		hdr=$(in_ns curl -s -D - -o /dev/null -m 2 http://198.18.0.1:32001/)
		if grep -qi '^X-Load-Balancing-Endpoint-Weight: 0' <<<"$hdr"; then
			pass "${p}_hcnp_503"
		else
			fail "${p}_hcnp_503" "no weight 0 header"
		fi
	else
		fail "${p}_hcnp_503" "still $(http_code http://198.18.0.1:32001/) after the local endpoint left"
	fi
	write_lb 3 node-a
	if wait_for 10 test "$(http_code http://198.18.0.1:32001/)" = 200; then
		pass "${p}_hcnp_back"
	else
		fail "${p}_hcnp_back" "$(http_code http://198.18.0.1:32001/) after the local endpoint came back"
	fi

	# --verify: equal first, then a frontend removed behind the agent.
	out=$(in_ns "$KPX" services --verify --backend "$b" $(kflags))
	rc=$?
	if [ $rc -eq 0 ]; then
		pass "${p}_verify_clean"
	else
		fail "${p}_verify_clean" "rc=$rc: $(head -3 <<<"$out" | tr '\n' ' ')"
	fi
	if drift_$b >"$TMP/drift.log" 2>&1; then
		out=$(in_ns "$KPX" services --verify --backend "$b" $(kflags))
		rc=$?
		if [ $rc -eq 1 ] && grep -q '198.18.100.1:80/TCP' <<<"$out"; then
			pass "${p}_verify_drift"
		else
			fail "${p}_verify_drift" "rc=$rc after $(cat "$TMP/drift.log"): $(head -3 <<<"$out" | tr '\n' ' ')"
		fi
	else
		skip "${p}_verify_drift" "could not find the frontend to change in the kernel: $(tail -1 "$TMP/drift.log")"
	fi

	# /healthz, /livez: 503 once a queued change waits > 2 x sync period.
	if [ "$(http_code http://127.0.0.1:10256/healthz)" != 200 ] ||
		[ "$(http_code http://127.0.0.1:10256/livez)" != 200 ]; then
		fail "${p}_healthz_200" "healthz $(http_code http://127.0.0.1:10256/healthz) livez $(http_code http://127.0.0.1:10256/livez) before the stall"
	else
		pass "${p}_healthz_200"
	fi
	if stall_$b >"$TMP/stall.log" 2>&1; then
		e0=$(metric kpx_sync_errors_total)
		write_extra 1
		if wait_for $((3 * SYNC_PERIOD + 3)) test "$(http_code http://127.0.0.1:10256/healthz)" = 503; then
			e1=$(metric kpx_sync_errors_total)
			code=$(http_code http://127.0.0.1:10256/livez)
			v1=$(metric 'kubeproxy_proxy_healthz_total{code="503"}')
			if [ "$code" = 503 ] && [ "${v1:-0}" -ge 1 ] &&
				[ "${e1:-0}" -gt "${e0:-0}" ]; then
				pass "${p}_healthz_stall"
			else
				fail "${p}_healthz_stall" "livez $code, healthz 503 count ${v1:-none}, sync errors $e0 -> $e1"
			fi
			out=$(in_ns "$KPX" status $(kflags))
			if grep -q 'UNHEALTHY' <<<"$out" && grep -q 'last error' <<<"$out"; then
				pass "${p}_status_unhealthy"
			else
				fail "${p}_status_unhealthy" "kpx status does not show the failing syncs"
			fi
		else
			fail "${p}_healthz_stall" "still $(http_code http://127.0.0.1:10256/healthz) $((3 * SYNC_PERIOD + 3)) s after the stall; $(grep -c '^E' "$TMP/agent-$b.log") errors logged"
		fi
		if unstall_$b; then
			if wait_for $((3 * SYNC_PERIOD + 5)) test "$(http_code http://127.0.0.1:10256/healthz)" = 200; then
				pass "${p}_healthz_recovers"
			else
				fail "${p}_healthz_recovers" "healthz $(http_code http://127.0.0.1:10256/healthz) after the kernel accepts syncs again"
			fi
		else
			skip "${p}_healthz_recovers" "the $b stall cannot be undone"
		fi
	else
		skip "${p}_healthz_stall" "could not make $b syncs fail: $(tail -1 "$TMP/stall.log")"
	fi

	# Agent stopped: status still reports the programmed datapath.
	kill "$AGENT_PID" 2>/dev/null
	wait "$AGENT_PID" 2>/dev/null
	AGENT_PID=""
	out=$(in_ns "$KPX" status $(kflags) --backend "$b")
	rc=$?
	if [ $rc -eq 0 ] && grep -q 'not running' <<<"$out" && grep -q "Datapath ($b)" <<<"$out"; then
		pass "${p}_status_agent_down"
	else
		fail "${p}_status_agent_down" "rc=$rc: $(head -2 <<<"$out" | tr '\n' ' ')"
	fi
	out=$(in_ns "$KPX" status -o json $(kflags))
	if python3 -c '
import json, sys
d = json.loads(sys.argv[1])
assert d["agent_running"] is False and d["datapath"] and d["backend"] == sys.argv[2]
' "$out" "$b" 2>/dev/null; then
		pass "${p}_status_json_agent_down"
	else
		fail "${p}_status_json_agent_down" "$(head -c 200 <<<"$out")"
	fi

	teardown_backend "$b"
}

for b in ${KPX_BACKENDS:-nft bpf}; do
	case $b in
	nft | bpf) ;;
	*) continue ;;
	esac
	run_backend "$b"
done
exit 0
