#!/bin/bash
# The agent's HTTP endpoints under hostile clients, and readiness, per
# backend, on node n1 of the shared rig (lib/rig.sh):
#   - 200 slow connections (silent, or one byte per second) to the healthz
#     port and to a healthCheckNodePort, from one source address and from
#     ten: /healthz and the healthCheckNodePort still answer another client
#     within 1 s, the agent closes each slow connection within 5 s, and a
#     Service change still takes effect (the sync loop is not held up);
#   - /readyz: 503 (with /livez 200) while the API server cannot be
#     reached or refuses the credentials, 200 after the first sync;
#   - with a low open-files limit, slow clients do not starve syncing; /metrics carries kube-proxy's
#     names (ip_family labels) and the process_* metrics.
# One line per check: PASS BACKEND/name | FAIL BACKEND/name: why | SKIP ...
# KPX_BACKENDS="nft bpf" selects backends. Exits 0 unless the rig broke.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
ROOT=$PWD
KPX=${KPX_BIN:-$ROOT/build/kpx}
ECHO=$ROOT/build/kpx_echo
SLOW=$ROOT/tests/integration/lib/slow_clients.py
NODE_IP=198.18.0.11
HEALTHZ=http://$NODE_IP:10256
METRICS=http://$NODE_IP:10249
HC_PORT=32001
HCNP=http://$NODE_IP:$HC_PORT/
PROBE_SRC=198.18.0.120 # the well-behaved client (a load balancer, kubelet)
ONE_SRC=198.18.0.101
MANY_SRCS=198.18.0.101,198.18.0.102,198.18.0.103,198.18.0.104,198.18.0.105,198.18.0.106,198.18.0.107,198.18.0.108,198.18.0.109,198.18.0.110
HOLD=10     # seconds the slow clients hold on
MAX_S=1.0   # a probe must answer within this
B=http
# shellcheck source=lib/check.sh
. tests/integration/lib/check.sh
CHECK_PREFIX=$B

need_root all
need_files all "$KPX" "$ECHO" "$SLOW" tests/integration/lib/rig.sh
need_tools all curl python3 jq
# shellcheck source=lib/rig.sh
. tests/integration/lib/rig.sh
kpx_sweep_stale

write_web() { # RV NODE:POD...: ClusterIP 198.18.100.1:80 -> pods :8080
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

write_lb() { # eTP=Local LoadBalancer, healthCheckNodePort $HC_PORT, endpoint n1 pod 2
	rig_manifest_write lb.yaml <<EOF
apiVersion: v1
kind: Service
metadata: {name: lb, namespace: shop, resourceVersion: "1"}
spec:
  type: LoadBalancer
  clusterIP: 198.18.100.2
  clusterIPs: [198.18.100.2]
  externalTrafficPolicy: Local
  healthCheckNodePort: $HC_PORT
  ports: [{name: http, port: 80, protocol: TCP, targetPort: 8080, nodePort: 30080}]
status:
  loadBalancer: {ingress: [{ip: 198.18.200.1}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: lb-1
  namespace: shop
  resourceVersion: "1"
  labels: {kubernetes.io/service-name: lb}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- {addresses: ["$(rig_pod_ip4 n1 2)"], conditions: {ready: true}, nodeName: n1}
EOF
}

kflags() {
	echo --state-socket "$RIG_DIR/n1.sock" --bpf-root "/sys/fs/bpf/$RIG_P-n1" \
		--cgroup-path "$RIG_CG/n1" --backend "$B"
}
kpx() { rig_exec n1 timeout -k 2 "$T_CALL" "$KPX_BIN" "$@"; }
# backends_of ADDR PORT -> sorted "ip:port" list, as programmed
backends_of() {
	# shellcheck disable=SC2046 # flags, split on purpose
	kpx services -o json $(kflags) | jq -r --arg a "$1" --argjson p "$2" \
		'[(if type == "object" then .frontends else . end)[] | select(.address == $a and (.port | tonumber) == $p) | .backends[]? | "\(.address):\(.port)"] | sort | join(" ")'
}
backends_are() { [ "$(backends_of "$1" "$2")" = "$3" ]; }

# probe URL -> "CODE SECONDS" from the well-behaved client address
probe() {
	rig_ext_exec curl -s -o /dev/null -m 3 --interface "$PROBE_SRC" \
		-w '%{http_code} %{time_total}' "$1" 2>/dev/null || true
}
code_of() { rig_exec n1 curl -s -o /dev/null -m 2 -w '%{http_code}' "$1"; }
code_is() { [ "$(code_of "$1")" = "$2" ]; }

# probe_series URL N -> "ok WORST" or "bad CODE@SECONDS ...": N probes
# 0.4 s apart; ok when every one was 200 within $MAX_S.
probe_series() {
	local url=$1 n=$2 i out code t worst=0 bad=""
	for ((i = 0; i < n; i++)); do
		out=$(probe "$url")
		code=${out%% *}
		t=${out##* }
		[ -n "$t" ] || t=9
		worst=$(awk -v a="$worst" -v b="$t" 'BEGIN { print (b > a ? b : a) }')
		if [ "$code" != 200 ] || awk -v t="$t" -v m="$MAX_S" 'BEGIN { exit !(t >= m) }'; then
			bad="$bad ${code:-none}@${t}s"
		fi
		sleep 0.4
	done
	if [ -z "$bad" ]; then echo "ok $worst"; else echo "bad$bad (worst ${worst}s)"; fi
}

# slow_start NAME PORT SRCS MODE COUNT: slow clients in EXT, in the background
slow_start() {
	local name=$1
	rm -f "$RIG_DIR/$name.ready"
	rig_node_bg x x "$RIG_DIR/$name.out" python3 "$SLOW" --addr "$NODE_IP" \
		--port "$2" --src "$3" --mode "$4" --count "$5" --hold "$HOLD" \
		--ready-file "$RIG_DIR/$name.ready"
	echo "$RIG_LAST_PID" >"$RIG_DIR/$name.pid"
}
slow_ready() { [ -s "$RIG_DIR/$1.ready" ]; }
slow_wait() { # NAME: waits for it to end, prints its summary
	local pid
	pid=$(cat "$RIG_DIR/$1.pid")
	wait_until $((HOLD + 10)) eval "! kill -0 $pid 2>/dev/null"
	stop_pid "$pid" 1
	tail -1 "$RIG_DIR/$1.out"
}
field() { awk -v k="$2" '{ for (i = 1; i < NF; i++) if ($i == k) print $(i + 1) }' <<<"$1"; }

# load_phase LABEL SRCS: 100 silent + 100 trickling clients on each of
# the healthz port and the healthCheckNodePort, from SRCS.
load_phase() {
	local label=$1 srcs=$2 h hc why s out held sync_why=""
	slow_start "$label-hz-silent" 10256 "$srcs" silent 100
	slow_start "$label-hz-trickle" 10256 "$srcs" trickle 100
	slow_start "$label-hc-silent" $HC_PORT "$srcs" silent 100
	slow_start "$label-hc-trickle" $HC_PORT "$srcs" trickle 100
	for s in hz-silent hz-trickle hc-silent hc-trickle; do
		wait_until 10 slow_ready "$label-$s" || echo "# $B: $label-$s did not start: $(cat "$RIG_DIR/$label-$s.out")" >&2
	done
	sleep 1 # let them take their slots
	h=$(probe_series "$HEALTHZ/healthz" 6)
	hc=$(probe_series "$HCNP" 6)
	if [ "$label" = many ]; then
		# the sync loop keeps going: a Service change is programmed
		write_web 2 n1:1 n1:3
		wait_until 5 backends_are 198.18.100.1 80 "198.19.1.11:8080 198.19.1.13:8080" ||
			sync_why="web not reprogrammed within 5 s under slow clients: [$(backends_of 198.18.100.1 80)]"
	fi
	h="$h / $(probe_series "$HEALTHZ/healthz" 4)"
	hc="$hc / $(probe_series "$HCNP" 4)"
	why=""
	held=0
	for s in hz-silent hz-trickle hc-silent hc-trickle; do
		out=$(slow_wait "$label-$s")
		echo "# $B: $label $s: $out" >&2
		[ -n "$out" ] || { why="$why $s: no summary ($(tail -2 "$RIG_DIR/$label-$s.out" | tr '\n' ' '));"; continue; }
		s=$(field "$out" max_held_s)
		held=$(awk -v a="$held" -v b="$s" 'BEGIN { print (b > a ? b : a) }')
		awk -v t="$s" 'BEGIN { exit !(t > 5.0) }' &&
			why="$why $(tr ' ' '_' <<<"${out%% max*}") held ${s}s;"
	done
	case $h in ok*) pass "$label-source-healthz-answers-under-slow-clients" "worst ${h#ok }" ;;
	*) fail "$label-source-healthz-answers-under-slow-clients" "/healthz from $PROBE_SRC while 200 slow clients hold the port: $h" ;; esac
	case $hc in ok*) pass "$label-source-hcnp-answers-under-slow-clients" "worst ${hc#ok }" ;;
	*) fail "$label-source-hcnp-answers-under-slow-clients" "healthCheckNodePort from $PROBE_SRC while 200 slow clients hold it: $hc" ;; esac
	check_why "$label-source-slow-connections-closed-within-5s" "${why:+slow connections held longer than 5 s:$why}"
	echo "#   longest slow connection held: ${held}s" >&2
	[ "$label" = many ] && check_why sync-continues-under-slow-clients "$sync_why"
	return 0
}

metric_names_check() {
	local m why="" n
	m=$(rig_exec n1 curl -s -m 3 "$METRICS/metrics")
	for n in process_cpu_seconds_total process_resident_memory_bytes \
		process_virtual_memory_bytes process_open_fds process_max_fds \
		process_start_time_seconds; do
		grep -qE "^$n [0-9.e+]+$" <<<"$m" || why="$why no $n;"
	done
	for n in 'kubeproxy_sync_proxy_rules_duration_seconds_count{ip_family="IPv4"}' \
		'kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family="IPv4"}' \
		'kubeproxy_sync_proxy_rules_no_local_endpoints_total{ip_family="IPv4",traffic_policy="external"}' \
		'kubeproxy_network_programming_duration_seconds_count{ip_family="IPv4"}' \
		kubeproxy_sync_proxy_rules_endpoint_changes_total \
		kubeproxy_sync_proxy_rules_service_changes_total \
		kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds \
		'kubeproxy_proxy_healthz_total{code="200"}'; do
		awk -v k="$n" '$1 == k { f = 1 } END { exit !f }' <<<"$m" || why="$why no $n;"
	done
	# the counts are those of the agent's own process
	n=$(awk '$1 == "process_open_fds" { print $2 }' <<<"$m")
	is_uint "$n" && [ "$n" -ge 5 ] || why="$why process_open_fds '$n';"
	check_why metrics-kube-proxy-names "$why"
}

# An API server in n1 that refuses every request (expired credentials).
API401_PORT=18401
api401_start() {
	rig_node_bg n1 n1 "$RIG_DIR/api401.log" python3 -c '
import http.server, sys
B = b"{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\",\"message\":\"Unauthorized\",\"reason\":\"Unauthorized\",\"code\":401}"
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(B)))
        self.end_headers()
        self.wfile.write(B)
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()' "$API401_PORT"
	API401_PID=$RIG_LAST_PID
}

# noapi_agent MASTER LOG: the rig's agent flags with an API server
# instead of the manifests directory
noapi_agent() {
	rig_node_bg n1 n1 "$2" "$KPX_BIN" run \
		--master "$1" --backend "$B" --hostname-override n1 \
		--node-ip "$(rig_node_ip4 n1),$(rig_node_ip6 n1)" \
		--cluster-cidr 198.19.0.0/16,fd00:19::/32 \
		--state-socket "$RIG_DIR/n1.sock" \
		--bpf-root "/sys/fs/bpf/$RIG_P-n1" --cgroup-path "$RIG_CG/n1" \
		--devices eth0 --healthz-bind-address "$NODE_IP:10256" \
		--metrics-bind-address "$NODE_IP:10249" -v 1
	echo "$RIG_LAST_PID" >"$RIG_DIR/agent-n1.pid"
}

readyz_says() { rig_exec n1 curl -s -m 2 "$HEALTHZ/readyz" | grep -q "$1"; }

# readiness: an agent that cannot reach its API server, or is refused by
# it, is alive, not ready
readiness_checks() {
	local out why=""
	api401_start
	wait_until 5 rig_exec n1 curl -s -o /dev/null -m 1 "http://127.0.0.1:$API401_PORT/" ||
		echo "# $B: the 401 server did not start: $(cat "$RIG_DIR/api401.log")" >&2
	noapi_agent "http://127.0.0.1:$API401_PORT" "$RIG_DIR/agent-401.log"
	if ! wait_until 10 code_is "$HEALTHZ/livez" 200; then
		fail readyz-503-api-unauthorized "/livez never answered 200: $(tail -3 "$RIG_DIR/agent-401.log" | tr '\n' ' ')"
	else
		# the reason is published at the agent's next tick (5 s)
		wait_until 8 readyz_says "HTTP 401"
		out=$(rig_exec n1 curl -s -m 2 -w ' %{http_code}' "$HEALTHZ/readyz")
		[ "${out##* }" = 503 ] || why="$why /readyz ${out##* } (want 503): ${out% *};"
		grep -q "HTTP 401" <<<"${out% *}" || why="$why the reason does not name the refusal: ${out% *};"
		code_is "$HEALTHZ/livez" 200 || why="$why /livez $(code_of "$HEALTHZ/livez");"
		check_why readyz-503-api-unauthorized "$why"
		echo "#   /readyz: ${out% *}" >&2
	fi
	rig_agent_stop n1
	stop_pid "$API401_PID" 2
	why=""
	noapi_agent http://127.0.0.1:1 "$RIG_DIR/agent-noapi.log"
	if ! wait_until 10 code_is "$HEALTHZ/livez" 200; then
		fail readyz-503-api-unreachable "/livez never answered 200: $(tail -3 "$RIG_DIR/agent-noapi.log" | tr '\n' ' ')"
	else
		wait_until 8 readyz_says "API server"
		out=$(rig_exec n1 curl -s -m 2 -w ' %{http_code}' "$HEALTHZ/readyz")
		[ "${out##* }" = 503 ] || why="$why /readyz ${out##* } (want 503): ${out% *};"
		grep -q "API server" <<<"${out% *}" || why="$why the reason does not name the API server: ${out% *};"
		code_is "$HEALTHZ/livez" 200 || why="$why /livez $(code_of "$HEALTHZ/livez");"
		# kube-proxy's /healthz is 200 while starting (load balancers)
		code_is "$HEALTHZ/healthz" 200 || why="$why /healthz $(code_of "$HEALTHZ/healthz");"
		check_why readyz-503-api-unreachable "$why"
		echo "#   /readyz: ${out% *}" >&2
	fi
	rig_agent_stop n1
	rig_agent_start n1
	if wait_until 15 code_is "$HEALTHZ/readyz" 200; then
		out=$(rig_agent_field n1 syncs_total)
		if is_uint "$out" && [ "$out" -ge 1 ]; then
			pass readyz-200-after-first-sync
		else
			fail readyz-200-after-first-sync "/readyz 200 with syncs_total '$out'"
		fi
	else
		fail readyz-200-after-first-sync "/readyz $(code_of "$HEALTHZ/readyz") 15 s after start with manifests: $(grep -m3 '^E' "$RIG_DIR/agent-n1.log" | tr '\n' ' ')"
	fi
}

# With few descriptors (here 256), slow clients must not take the ones
# syncs need (reading a changed manifest, netlink sockets): connections
# past half the limit are closed at once. 400 slow connections from ten
# sources would otherwise hold 320 descriptors.
LOWFD=256
lowfd_checks() {
	local why="" s out
	rig_agent_stop n1
	rig_node_bg n1 n1 "$RIG_DIR/agent-lowfd.log" prlimit --nofile=$LOWFD:$LOWFD \
		"$KPX_BIN" run --manifests "$RIG_MANIFESTS" --backend "$B" \
		--hostname-override n1 --node-ip "$(rig_node_ip4 n1),$(rig_node_ip6 n1)" \
		--cluster-cidr 198.19.0.0/16,fd00:19::/32 \
		--state-socket "$RIG_DIR/n1.sock" \
		--bpf-root "/sys/fs/bpf/$RIG_P-n1" --cgroup-path "$RIG_CG/n1" \
		--devices eth0 --healthz-bind-address "$NODE_IP:10256" \
		--metrics-bind-address "$NODE_IP:10249" --min-sync-period 100ms -v 1
	echo "$RIG_LAST_PID" >"$RIG_DIR/agent-n1.pid"
	if ! wait_until 15 code_is "$HEALTHZ/readyz" 200; then
		fail sync-continues-with-few-descriptors "agent with nofile $LOWFD not ready: $(grep -m3 '^E' "$RIG_DIR/agent-lowfd.log" | tr '\n' ' ')"
		return
	fi
	slow_start lowfd-hz 10256 "$MANY_SRCS" silent 200
	slow_start lowfd-hc $HC_PORT "$MANY_SRCS" silent 200
	for s in lowfd-hz lowfd-hc; do
		wait_until 10 slow_ready "$s" || echo "# $B: $s did not start" >&2
	done
	sleep 1
	write_web 4 n1:2
	wait_until 8 backends_are 198.18.100.1 80 "198.19.1.12:8080" ||
		why="$why web not reprogrammed within 8 s: [$(backends_of 198.18.100.1 80)], last error: $(grep '^[EW]' "$RIG_DIR/agent-lowfd.log" | tail -1);"
	rig_agent_alive n1 || why="$why the agent died: $(tail -2 "$RIG_DIR/agent-lowfd.log" | tr '\n' ' ');"
	for s in lowfd-hz lowfd-hc; do
		out=$(slow_wait "$s")
		echo "# $B: nofile $LOWFD $s: $out" >&2
	done
	check_why sync-continues-with-few-descriptors "$why"
	rig_agent_stop n1
}

run_backend() {
	local out a
	B=$1
	CHECK_PREFIX=$B
	KPX_BACKEND=$B
	RIG_P=k$$${B:0:1}
	RIG_CG=$RIG_CG_MNT/$RIG_P
	KPX_BIN=$KPX
	KPX_ECHO=$ECHO
	if ! rig_up; then
		fail rig "rig_up failed"
		rig_down
		return 1
	fi
	rig_pod_servers 8080
	for a in ${MANY_SRCS//,/ } $PROBE_SRC; do
		rig_exec x ip addr add "$a/24" dev eth0
	done
	write_web 1 n1:1
	write_lb

	readiness_checks
	if ! rig_agent_wait_synced n1 15; then
		fail agent "no sync within 15 s: $(grep -m3 '^E' "$RIG_DIR/agent-n1.log" | tr '\n' ' ')"
		rig_down
		return 0
	fi
	out=$(probe "$HCNP")
	if [ "${out%% *}" != 200 ] || [ "$(probe "$HEALTHZ/healthz" | cut -d' ' -f1)" != 200 ]; then
		fail agent "before any load: healthCheckNodePort ${out%% *}, /healthz $(probe "$HEALTHZ/healthz")"
		rig_down
		return 0
	fi
	metric_names_check
	load_phase one "$ONE_SRC"
	load_phase many "$MANY_SRCS"
	rig_agent_alive n1 || fail agent "the agent died under load: $(tail -3 "$RIG_DIR/agent-n1.log" | tr '\n' ' ')"
	lowfd_checks
	rig_down
}

for b in ${KPX_BACKENDS:-nft bpf}; do
	case $b in
	nft | bpf) ;;
	*) continue ;;
	esac
	run_backend "$b" || exit 1
done
exit 0
