#!/bin/bash
# Service behaviour as a client sees it, for each
# backend in ${KPX_BACKENDS:-nft bpf}; one rig (tests/integration/lib/rig.sh)
# per backend, reused across scenarios. Prints PASS/FAIL/SKIP
# <backend>/<scenario>; exits non-zero only when the harness itself broke.
# KPX_SCENARIOS="1 3 5" picks scenarios.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
# pass/fail/skip, need_root: lib/check.sh; names are CHECK_PREFIX/name,
# CHECK_PREFIX is the backend (set in run_backend), "services" before that.
# shellcheck source=lib/check.sh
. tests/integration/lib/check.sh
CHECK_PREFIX=""
need_root services
for b in build/kpx build/kpx_echo; do
	[ -x "$b" ] || { skip services "$b not built"; exit 0; }
done

# 12 (cleanup, stops n2's agent) runs last.
SCEN=${KPX_SCENARIOS:-1 2 3 4 5 6 7 8 9 10 11 13 14 15 16 17 18 12}

# eps NAME FAMILY SVC ENTRY... ; ENTRY = ip@node[@r|@t|@n[@zones[@nodes]]]
# (r ready, t serving+terminating, n not ready; zones, nodes: topology
# hints forZones and forNodes, names joined by "+", empty for none): an
# EndpointSlice with TCP port "p" and UDP port "u" at 8080.
eps() {
	local name=$1 fam=$2 svc=$3 e ip node st
	shift 3
	echo "---"
	echo "apiVersion: discovery.k8s.io/v1"
	echo "kind: EndpointSlice"
	echo "metadata: {name: $name, namespace: t, labels: {kubernetes.io/service-name: $svc}}"
	echo "addressType: $fam"
	echo "ports: [{name: p, protocol: TCP, port: 8080}, {name: u, protocol: UDP, port: 8080}]"
	if [ $# -eq 0 ]; then echo "endpoints: []"; return; fi
	echo "endpoints:"
	for e in "$@"; do
		local zones="" nodes="" hint=""
		IFS=@ read -r ip node st zones nodes <<<"$e"
		case ${st:-r} in
		r) st="{ready: true, serving: true, terminating: false}" ;;
		t) st="{ready: false, serving: true, terminating: true}" ;;
		n) st="{ready: false, serving: false, terminating: false}" ;;
		esac
		[ -n "$zones" ] && hint="forZones: [{name: ${zones//+/\}, {name: }}]"
		[ -n "$nodes" ] && hint="$hint${hint:+, }forNodes: [{name: ${nodes//+/\}, {name: }}]"
		[ -n "$hint" ] && hint=", hints: {$hint}"
		echo "- {addresses: [\"$ip\"], conditions: $st, nodeName: $node$hint}"
	done
}

# svc NAME IP[,IP6] [extra spec yaml lines...]: Service with TCP port p
# (80) and UDP port u (80), targetPort 8080.
svc() {
	local name=$1 ips=$2 fams=""
	shift 2
	local ip
	for ip in ${ips//,/ }; do
		case $ip in *:*) fams="$fams${fams:+, }IPv6" ;; *) fams="$fams${fams:+, }IPv4" ;; esac
	done
	echo "apiVersion: v1"
	echo "kind: Service"
	local lab=""
	[ -n "${SVC_LABELS:-}" ] && lab=", labels: {$SVC_LABELS}"
	echo "metadata: {name: $name, namespace: t$lab}"
	echo "spec:"
	echo "  clusterIP: ${ips%%,*}"
	echo "  clusterIPs: [${ips//,/, }]"
	echo "  ipFamilies: [$fams]"
	[ "${ips#*,}" != "$ips" ] && echo "  ipFamilyPolicy: RequireDualStack"
	echo "  ports: [{name: p, protocol: TCP, port: 80, targetPort: 8080${NP_TCP:+, nodePort: $NP_TCP}}, {name: u, protocol: UDP, port: 80, targetPort: 8080${NP_UDP:+, nodePort: $NP_UDP}}]"
	local l
	for l in "$@"; do echo "  $l"; done
	[ -n "${SVC_STATUS:-}" ] && printf 'status:\n  %s\n' "$SVC_STATUS"
	return 0
}

P1=198.19.1.11 P2=198.19.1.12 P3=198.19.1.13
Q1=198.19.2.11 Q2=198.19.2.12 Q3=198.19.2.13

# cl NETNS ARGS...: kpx_echo client in NETNS (pods in their node's cgroup)
cl() {
	local ns=$1
	shift
	case $ns in
	x) rig_ext_exec "$E" client --max-fail "${MAXF:-3}" "$@" ;;
	*) rig_node_exec "${ns%%p*}" "$ns" "$E" client --max-fail "${MAXF:-3}" "$@" ;;
	esac
}

# ok_all OUT N: N ok, 0 fail
ok_all() { [ "$(echo_get "$1" ok)" = "$2" ] && [ "$(echo_get "$1" fail)" = 0 ]; }
ids() { echo_names id "$1"; }
srcs() { echo_names src "$1"; }
brief() { tr '\n' ' ' <<<"$1"; }

# ---------------------------------------------------------------- 1
s1() {
	{ svc s1 198.18.100.1; eps s1-a IPv4 s1 $P1@n1 $P2@n1 $Q1@n2 $Q2@n2; } | rig_manifest_write s1.yaml
	rig_sync_all || { fail clusterip-spreads-and-keeps-pod-source "agents did not sync"; return; }
	local from proto out id why=""
	for from in n1p3 n2p3; do
		for proto in tcp udp; do
			out=$(cl $from --addr 198.18.100.1 --port 80 --proto $proto -n 80 --timeout-ms 1000)
			if ! ok_all "$out" 80; then why="$why $from/$proto: $(brief "$out");"; continue; fi
			for id in n1-p1 n1-p2 n2-p1 n2-p2; do
				[ "$(echo_get "$out" id $id)" -ge 8 ] || why="$why $from/$proto uneven: $(ids "$out");"
			done
			# pod -> ClusterIP: the server sees the pod's own address
			local me
			me=$(rig_pod_ip4 "${from%%p*}" 3)
			[ "$(srcs "$out")" = "$me " ] || why="$why $from/$proto source seen $(srcs "$out") not $me;"
		done
	done
	[ -z "$why" ] && pass clusterip-spreads-and-keeps-pod-source || fail clusterip-spreads-and-keeps-pod-source "$why"
}

# ---------------------------------------------------------------- 2
s2() {
	{ svc s2 198.18.100.2; eps s2-a IPv4 s2 $P1@n1 $P2@n1 $Q1@n2; } | rig_manifest_write s2.yaml
	rig_sync_all || { fail endpoint-changes-keep-established-and-fall-back-to-terminating "agents did not sync"; return; }
	local log=$RIG_DIR/s2-hold.log held out why="" other
	rig_bg_log "$log" n1p3 "$E" hold --addr 198.18.100.2 --port 80 -d 4
	local hpid=$RIG_LAST_PID
	rig_wait_until 3 grep -q "hold connected" "$log" || { fail endpoint-changes-keep-established-and-fall-back-to-terminating "hold did not connect: $(cat "$log")"; return; }
	held=$(sed -n 's/.*id=\([^ ]*\).*/\1/p' "$log" | head -1)
	# unrelated change: another endpoint terminating, a new one added
	case $held in n1-p1) other=$P2 ;; *) other=$P1 ;; esac
	local eps_new=() e
	for e in $P1@n1 $P2@n1 $Q1@n2; do
		[ "${e%@*}" = "$other" ] && e="$e@t"
		eps_new+=("$e")
	done
	{ svc s2 198.18.100.2; eps s2-a IPv4 s2 "${eps_new[@]}" $Q3@n2; } | rig_manifest_write s2.yaml
	rig_sync_all || { fail endpoint-changes-keep-established-and-fall-back-to-terminating "agents did not sync"; return; }
	out=$(cl n2p2 --addr 198.18.100.2 --port 80 -n 60 --timeout-ms 1000)
	ok_all "$out" 60 || why="$why new conns failed: $(brief "$out");"
	local term_id
	case $other in "$P1") term_id=n1-p1 ;; *) term_id=n1-p2 ;; esac
	[ "$(echo_get "$out" id $term_id)" = 0 ] || why="$why terminating endpoint $term_id still chosen;"
	[ "$(echo_get "$out" id n2-p3)" -gt 0 ] || why="$why added endpoint n2-p3 never chosen;"
	# removal: only n2-p3 left
	{ svc s2 198.18.100.2; eps s2-a IPv4 s2 $Q3@n2; } | rig_manifest_write s2.yaml
	rig_sync_all
	out=$(cl n1p2 --addr 198.18.100.2 --port 80 -n 20 --timeout-ms 1000)
	[ "$(ids "$out")" = "n2-p3 " ] && ok_all "$out" 20 || why="$why after removal: $(brief "$out");"
	# only serving+terminating endpoints left: they still serve (fallback)
	{ svc s2 198.18.100.2; eps s2-a IPv4 s2 $Q3@n2@t $Q2@n2@n; } | rig_manifest_write s2.yaml
	rig_sync_all
	out=$(cl n1p2 --addr 198.18.100.2 --port 80 -n 10 --timeout-ms 1000)
	[ "$(ids "$out")" = "n2-p3 " ] && ok_all "$out" 10 || why="$why terminating fallback: $(brief "$out");"
	# the held connection's endpoint is gone now; it only had to survive
	# the unrelated change, so judge the log up to here
	rig_wait_until 6 grep -q "^hold \(ok\|fail\)" "$log"
	if grep -q "^hold fail" "$log"; then
		why="$why established connection to $held broke ($(cat "$log" | tr '\n' ' '));"
	fi
	kill "$hpid" 2>/dev/null
	[ -z "$why" ] && pass endpoint-changes-keep-established-and-fall-back-to-terminating || fail endpoint-changes-keep-established-and-fall-back-to-terminating "$why"
}

# ---------------------------------------------------------------- 3
s3() {
	{ svc s3 198.18.100.3; eps s3-a IPv4 s3; } | rig_manifest_write s3.yaml
	rig_sync_all || { fail no-endpoints-refused-at-once "agents did not sync"; return; }
	local out why="" proto
	for proto in tcp udp; do
		out=$(cl n1p3 --addr 198.18.100.3 --port 80 --proto $proto -n 3 --timeout-ms 3000)
		if [ "$(echo_get "$out" err ECONNREFUSED)" != 3 ]; then
			why="$why $proto: not refused: $(brief "$out");"
		else
			local ms
			ms=$(awk '$1=="err" && $2=="ECONNREFUSED" {print $4}' <<<"$out")
			[ "$ms" -lt 500 ] || why="$why $proto: refusal took ${ms} ms;"
		fi
	done
	[ -z "$why" ] && pass no-endpoints-refused-at-once || fail no-endpoints-refused-at-once "$why"
}

# ---------------------------------------------------------------- 4
s4() {
	local aff='sessionAffinity: ClientIP' why="" out distinct
	{ svc s4 198.18.100.4 "$aff" "sessionAffinityConfig: {clientIP: {timeoutSeconds: 1}}"
	  eps s4-a IPv4 s4 $P1@n1 $P2@n1 $Q1@n2 $Q2@n2; } | rig_manifest_write s4.yaml
	rig_sync_all || { fail session-affinity-clientip-with-timeout "agents did not sync"; return; }
	for from in n1p3 n2p3; do
		out=$(cl $from --addr 198.18.100.4 --port 80 -n 20 --timeout-ms 1000)
		ok_all "$out" 20 && [ "$(ids "$out" | wc -w)" = 1 ] || why="$why $from not sticky: $(ids "$out");"
	done
	# after the timeout the choice is random again
	distinct=""
	for _ in 1 2 3 4 5 6; do
		sleep 1.3
		out=$(cl n1p3 --addr 198.18.100.4 --port 80 -n 1 --timeout-ms 1000)
		distinct="$distinct $(ids "$out")"
	done
	[ "$(tr ' ' '\n' <<<"$distinct" | sort -u | grep -c .)" -ge 2 ] || why="$why never re-balanced after timeout:$distinct;"
	# off
	{ svc s4 198.18.100.4; eps s4-a IPv4 s4 $P1@n1 $P2@n1 $Q1@n2 $Q2@n2; } | rig_manifest_write s4.yaml
	rig_sync_all
	out=$(cl n1p3 --addr 198.18.100.4 --port 80 -n 30 --timeout-ms 1000)
	[ "$(ids "$out" | wc -w)" -ge 3 ] || why="$why affinity off still sticky: $(ids "$out");"
	# on again (default timeout)
	{ svc s4 198.18.100.4 "$aff"; eps s4-a IPv4 s4 $P1@n1 $P2@n1 $Q1@n2 $Q2@n2; } | rig_manifest_write s4.yaml
	rig_sync_all
	out=$(cl n1p3 --addr 198.18.100.4 --port 80 -n 20 --timeout-ms 1000)
	ok_all "$out" 20 && [ "$(ids "$out" | wc -w)" = 1 ] || why="$why affinity back on not sticky: $(ids "$out");"
	[ -z "$why" ] && pass session-affinity-clientip-with-timeout || fail session-affinity-clientip-with-timeout "$why"
}

# ---------------------------------------------------------------- 5
s5() {
	local why="" out node nip
	{ NP_TCP=30080 NP_UDP=30080 svc s5c 198.18.100.50 "type: NodePort" "externalTrafficPolicy: Cluster"
	  eps s5c-a IPv4 s5c $P1@n1 $Q1@n2; } | rig_manifest_write s5c.yaml
	{ NP_TCP=30081 NP_UDP=30081 svc s5l 198.18.100.51 "type: NodePort" "externalTrafficPolicy: Local" "healthCheckNodePort: 30181"
	  eps s5l-a IPv4 s5l $P1@n1; } | rig_manifest_write s5l.yaml
	rig_sync_all || { fail nodeport-external-traffic-policy "agents did not sync"; return; }
	for node in n1 n2; do
		nip=$(rig_node_ip4 $node)
		for proto in tcp udp; do
			out=$(cl x --addr "$nip" --port 30080 --proto $proto -n 40 --timeout-ms 1000)
			ok_all "$out" 40 || { why="$why Cluster via $node/$proto: $(brief "$out");"; continue; }
			[ "$(echo_get "$out" id n1-p1)" -gt 0 ] && [ "$(echo_get "$out" id n2-p1)" -gt 0 ] ||
				why="$why Cluster via $node/$proto: not both endpoints: $(ids "$out");"
			[ "$(echo_get "$out" src $RIG_EXT_IP4)" = 0 ] ||
				why="$why Cluster via $node/$proto: client address not masqueraded ($(srcs "$out"));"
		done
	done
	for proto in tcp udp; do
		out=$(cl x --addr 198.18.0.11 --port 30081 --proto $proto -n 20 --timeout-ms 1000)
		ok_all "$out" 20 && [ "$(ids "$out")" = "n1-p1 " ] && [ "$(srcs "$out")" = "$RIG_EXT_IP4 " ] ||
			why="$why Local via n1/$proto (want n1-p1 seeing $RIG_EXT_IP4): $(brief "$out");"
		out=$(cl x --addr 198.18.0.12 --port 30081 --proto $proto -n 3 --timeout-ms 400)
		[ "$(echo_get "$out" err TIMEOUT)" = 3 ] ||
			why="$why Local via n2 (no local endpoint) not dropped: $(brief "$out");"
	done
	[ -z "$why" ] && pass nodeport-external-traffic-policy || fail nodeport-external-traffic-policy "$why"
}

# ---------------------------------------------------------------- 6
s6() {
	local why="" out
	{ svc s6e 198.18.100.60 "externalIPs: [198.18.200.6]"; eps s6e-a IPv4 s6e $P1@n1 $Q1@n2; } | rig_manifest_write s6e.yaml
	{ SVC_STATUS="loadBalancer: {ingress: [{ip: 198.18.200.7}]}" NP_TCP=30060 NP_UDP=30060 \
		svc s6l 198.18.100.61 "type: LoadBalancer" "loadBalancerSourceRanges: [198.18.0.100/32]"
	  eps s6l-a IPv4 s6l $P1@n1 $Q1@n2; } | rig_manifest_write s6l.yaml
	rig_sync_all || { fail external-ip-and-lb-source-ranges "agents did not sync"; return; }
	out=$(cl x --addr 198.18.200.6 --port 80 -n 20 --timeout-ms 1000)
	ok_all "$out" 20 || why="$why externalIP: $(brief "$out");"
	out=$(cl x --addr 198.18.200.7 --port 80 -n 20 --timeout-ms 1000)
	ok_all "$out" 20 || why="$why LB IP allowed source: $(brief "$out");"
	{ SVC_STATUS="loadBalancer: {ingress: [{ip: 198.18.200.7}]}" NP_TCP=30060 NP_UDP=30060 \
		svc s6l 198.18.100.61 "type: LoadBalancer" "loadBalancerSourceRanges: [198.18.5.0/24]"
	  eps s6l-a IPv4 s6l $P1@n1 $Q1@n2; } | rig_manifest_write s6l.yaml
	rig_sync_all
	out=$(cl x --addr 198.18.200.7 --port 80 -n 3 --timeout-ms 400)
	[ "$(echo_get "$out" ok)" = 0 ] || why="$why LB IP reachable from a source outside loadBalancerSourceRanges: $(brief "$out");"
	# the ClusterIP is not subject to the source ranges
	out=$(cl n1p3 --addr 198.18.100.61 --port 80 -n 5 --timeout-ms 1000)
	ok_all "$out" 5 || why="$why ClusterIP of LB service from pod: $(brief "$out");"
	[ -z "$why" ] && pass external-ip-and-lb-source-ranges || fail external-ip-and-lb-source-ranges "$why"
}

# ---------------------------------------------------------------- 7
s7() {
	local why="" out
	{ svc s7 198.18.100.70 "internalTrafficPolicy: Local"; eps s7-a IPv4 s7 $P1@n1 $Q1@n2; } | rig_manifest_write s7.yaml
	{ svc s7h 198.18.100.71; eps s7h-a IPv4 s7h $P1@n1; } | rig_manifest_write s7h.yaml
	rig_sync_all || { fail internal-traffic-policy-local "agents did not sync"; return; }
	out=$(cl n1p3 --addr 198.18.100.70 --port 80 -n 20 --timeout-ms 1000)
	ok_all "$out" 20 && [ "$(ids "$out")" = "n1-p1 " ] || why="$why iTP=Local from n1: $(brief "$out");"
	out=$(cl n2p3 --addr 198.18.100.70 --port 80 -n 20 --timeout-ms 1000)
	ok_all "$out" 20 && [ "$(ids "$out")" = "n2-p1 " ] || why="$why iTP=Local from n2: $(brief "$out");"
	# hairpin: the only endpoint reaches itself through its service
	for proto in tcp udp; do
		out=$(cl n1p1 --addr 198.18.100.71 --port 80 --proto $proto -n 5 --timeout-ms 1000)
		ok_all "$out" 5 && [ "$(ids "$out")" = "n1-p1 " ] || why="$why hairpin/$proto: $(brief "$out");"
	done
	[ -z "$why" ] && pass internal-traffic-policy-local || fail internal-traffic-policy-local "$why"
	# topology hints (nodes: n1 in zone za, n2 in zb; see run_backend):
	# n2-p2 is hinted for za, so n1 uses n1-p1 and n2-p2, n2 only n2-p1
	why=""
	{ svc s7t 198.18.100.72; eps s7t-a IPv4 s7t $P1@n1@r@za $Q1@n2@r@zb $Q2@n2@r@za; } | rig_manifest_write s7t.yaml
	rig_sync_all
	out=$(cl n1p3 --addr 198.18.100.72 --port 80 -n 30 --timeout-ms 1000)
	ok_all "$out" 30 && [ "$(ids "$out" | tr ' ' '\n' | sort | xargs)" = "n1-p1 n2-p2" ] ||
		why="$why from n1 (zone za, want n1-p1 n2-p2): $(brief "$out");"
	out=$(cl n2p3 --addr 198.18.100.72 --port 80 -n 20 --timeout-ms 1000)
	ok_all "$out" 20 && [ "$(ids "$out")" = "n2-p1 " ] || why="$why from n2 (zone zb, want n2-p1): $(brief "$out");"
	[ -z "$why" ] && pass topology-zone-hints || fail topology-zone-hints "$why"
}

# ---------------------------------------------------------------- 8
s8() {
	local why="" out proto
	{ NP_TCP=30082 NP_UDP=30082 svc s8 fd00:18:100::8 "type: NodePort"
	  eps s8-a IPv6 s8 fd00:19:1::11@n1 fd00:19:2::11@n2; } | rig_manifest_write s8.yaml
	{ svc s8d 198.18.100.80,fd00:18:100::80
	  eps s8d-4 IPv4 s8d $P2@n1; eps s8d-6 IPv6 s8d fd00:19:2::12@n2; } | rig_manifest_write s8d.yaml
	rig_sync_all || { fail ipv6-nodeport "agents did not sync"; return; }
	for proto in tcp udp; do
		out=$(cl n1p3 --addr fd00:18:100::8 --port 80 --proto $proto -n 30 --timeout-ms 1000)
		ok_all "$out" 30 && [ "$(echo_get "$out" id n1-p1)" -gt 0 ] && [ "$(echo_get "$out" id n2-p1)" -gt 0 ] &&
			[ "$(srcs "$out")" = "fd00:19:1::13 " ] || why="$why v6 ClusterIP/$proto: $(brief "$out");"
		out=$(cl x --addr fd00:18::12 --port 30082 --proto $proto -n 30 --timeout-ms 1000)
		ok_all "$out" 30 && [ "$(echo_get "$out" id n1-p1)" -gt 0 ] && [ "$(echo_get "$out" id n2-p1)" -gt 0 ] ||
			why="$why v6 NodePort/$proto: $(brief "$out");"
	done
	out=$(cl n1p3 --addr 198.18.100.80 --port 80 -n 5 --timeout-ms 1000)
	ok_all "$out" 5 && [ "$(ids "$out")" = "n1-p2 " ] || why="$why dual-stack v4: $(brief "$out");"
	out=$(cl n1p3 --addr fd00:18:100::80 --port 80 -n 5 --timeout-ms 1000)
	ok_all "$out" 5 && [ "$(ids "$out")" = "n2-p2 " ] || why="$why dual-stack v6: $(brief "$out");"
	[ -z "$why" ] && pass ipv6-nodeport || fail ipv6-nodeport "$why"
}

# ---------------------------------------------------------------- 9
s9() {
	local why="" out
	{ SVC_LABELS="service.kubernetes.io/service-proxy-name: other" svc s9 198.18.100.90
	  eps s9-a IPv4 s9 $P1@n1; } | rig_manifest_write s9.yaml
	{ SVC_LABELS="service.kubernetes.io/headless: \"\"" svc s9h 198.18.100.91
	  eps s9h-a IPv4 s9h $P1@n1; } | rig_manifest_write s9h.yaml
	rig_sync_all || { fail service-proxy-name-ignored "agents did not sync"; return; }
	out=$(cl n1p3 --addr 198.18.100.90 --port 80 -n 2 --timeout-ms 300)
	[ "$(echo_get "$out" ok)" = 0 ] || why="$why service-proxy-name service was served;"
	out=$(cl n1p3 --addr 198.18.100.91 --port 80 -n 2 --timeout-ms 300)
	[ "$(echo_get "$out" ok)" = 0 ] || why="$why headless-labelled service was served;"
	[ -z "$why" ] && pass service-proxy-name-ignored || fail service-proxy-name-ignored "$why"
}

# ---------------------------------------------------------------- 10
s10() {
	local why="" out
	{ svc s10 198.18.100.100; eps s10-a IPv4 s10 $P1@n1; } | rig_manifest_write s10.yaml
	rig_sync_all || { fail udp-flows-rebalanced-after-endpoint-change "agents did not sync"; return; }
	out=$(cl n1p3 --addr 198.18.100.100 --port 80 --proto udp --one-socket --sport 40100 -n 3 --timeout-ms 1000)
	ok_all "$out" 3 && [ "$(ids "$out")" = "n1-p1 " ] || { fail udp-flows-rebalanced-after-endpoint-change "before: $(brief "$out")"; return; }
	{ svc s10 198.18.100.100; eps s10-a IPv4 s10 $Q1@n2; } | rig_manifest_write s10.yaml
	rig_sync_all
	out=$(cl n1p3 --addr 198.18.100.100 --port 80 --proto udp --one-socket --sport 40100 -n 3 --timeout-ms 1000)
	ok_all "$out" 3 && [ "$(ids "$out")" = "n2-p1 " ] || why="same 5-tuple after endpoint change: $(brief "$out")"
	[ -z "$why" ] && pass udp-flows-rebalanced-after-endpoint-change || fail udp-flows-rebalanced-after-endpoint-change "$why"
}

# ---------------------------------------------------------------- 11
s11() {
	local why="" out i from affwhy="" affc="n1 n1p1 n1p2 n1p3"
	local -A sticky=()
	{ svc s11 198.18.100.110; eps s11-a IPv4 s11 $P1@n1 $P2@n1 $Q1@n2 $Q2@n2; } | rig_manifest_write s11.yaml
	{ svc s11a 198.18.100.111 "sessionAffinity: ClientIP"
	  eps s11a-a IPv4 s11a $P1@n1 $P2@n1 $P3@n1 $Q1@n2 $Q2@n2 $Q3@n2; } | rig_manifest_write s11a.yaml
	rig_sync_all || { fail agent-restart-keeps-established-connections "agents did not sync"; return; }
	# ClientIP affinity: the endpoint each of 4 clients of n1 (own
	# addresses) sticks to before the restart; 6 endpoints, so a restart
	# that re-balances keeps all four by chance 6^-4
	for from in $affc; do
		out=$(cl $from --addr 198.18.100.111 --port 80 -n 6 --timeout-ms 1000)
		sticky[$from]=$(ids "$out")
		ok_all "$out" 6 && [ "$(wc -w <<<"${sticky[$from]}")" = 1 ] ||
			affwhy="$affwhy $from not sticky before the restart: $(brief "$out");"
	done
	for i in 1 2 3; do
		rig_bg_log "$RIG_DIR/s11-hold$i.log" n1p3 "$E" hold --addr 198.18.100.110 --port 80 -d 5
	done
	rig_bg_log "$RIG_DIR/s11-new.log" n1p3 "$E" client --addr 198.18.100.110 --port 80 -n 40 --interval-ms 100 --timeout-ms 1000
	rig_bg_log "$RIG_DIR/s11-udp.log" n1p2 "$E" client --addr 198.18.100.110 --port 80 --proto udp -n 40 --interval-ms 100 --timeout-ms 1000
	sleep 1
	rig_agent_kill9 n1
	# while n1's agent is down, the endpoint client n1 sticks to goes
	# away: after the restart n1 must get another one, the others keep
	# theirs (an upgrade restarts the agent while the cluster changes)
	local gone="" e eps11=()
	[ -z "$affwhy" ] && gone=${sticky[n1]% }
	for e in n1-p1 n1-p2 n1-p3 n2-p1 n2-p2 n2-p3; do
		[ "$e" = "$gone" ] || eps11+=("198.19.${e:1:1}.1${e:4:1}@${e%%-*}")
	done
	{ svc s11a 198.18.100.111 "sessionAffinity: ClientIP"
	  eps s11a-a IPv4 s11a "${eps11[@]}"; } | rig_manifest_write s11a.yaml
	sleep 0.5
	rig_agent_start n1
	rig_agent_wait_synced n1 10 || why="$why agent did not come back;"
	# every hold's verdict (they end a few ms apart, in any order)
	rig_wait_until 10 bash -c "for i in 1 2 3; do grep -q '^hold \(ok\|fail\)' $RIG_DIR/s11-hold\$i.log || exit 1; done; grep -q '^fail' $RIG_DIR/s11-new.log && grep -q '^fail' $RIG_DIR/s11-udp.log"
	for i in 1 2 3; do
		grep -q "^hold ok" "$RIG_DIR/s11-hold$i.log" || why="$why established connection $i: $(tr '\n' ' ' <"$RIG_DIR/s11-hold$i.log");"
	done
	out=$(cat "$RIG_DIR/s11-new.log")
	ok_all "$out" 40 || why="$why new TCP connections failed: $(brief "$out");"
	out=$(cat "$RIG_DIR/s11-udp.log")
	ok_all "$out" 40 || why="$why UDP failed: $(brief "$out");"
	[ -z "$why" ] && pass agent-restart-keeps-established-connections || fail agent-restart-keeps-established-connections "$why"
	# a restart of the agent must not re-balance clients with affinity
	if [ -z "$affwhy" ]; then
		rig_sync_all
		for from in $affc; do
			out=$(cl $from --addr 198.18.100.111 --port 80 -n 6 --timeout-ms 1000)
			if [ "${sticky[$from]}" = "$gone " ]; then
				ok_all "$out" 6 && [ "$(ids "$out" | wc -w)" = 1 ] && [ "$(ids "$out")" != "$gone " ] ||
					affwhy="$affwhy $from: its endpoint $gone was removed during the restart, after it: $(brief "$out");"
			else
				ok_all "$out" 6 && [ "$(ids "$out")" = "${sticky[$from]}" ] ||
					affwhy="$affwhy $from stuck to ${sticky[$from]}before the restart, after it: $(brief "$out");"
			fi
		done
	fi
	[ -z "$affwhy" ] && pass affinity-survives-agent-restart || fail affinity-survives-agent-restart "$affwhy"
}

# ---------------------------------------------------------------- 12
s12() {
	local why="" left
	rig_agent_stop n2
	if [ "$BK" = nft ]; then
		rig_exec n2 nft add table inet other-user
		rig_node_exec n2 n2 "$KPX_BIN" cleanup --backend nft >"$RIG_DIR/cleanup.log" 2>&1 ||
			why="$why cleanup failed: $(tail -3 "$RIG_DIR/cleanup.log" | tr '\n' ' ');"
		left=$(rig_exec n2 nft list tables)
		grep -q "kpx" <<<"$left" && why="$why kpx table left: $left;"
		grep -q "other-user" <<<"$left" || why="$why cleanup removed a foreign table;"
	else
		rig_node_exec n2 n2 "$KPX_BIN" cleanup --backend bpf --bpf-root "/sys/fs/bpf/$RIG_P-n2" \
			--cgroup-path "$RIG_CG/n2" >"$RIG_DIR/cleanup.log" 2>&1 ||
			why="$why cleanup failed: $(tail -3 "$RIG_DIR/cleanup.log" | tr '\n' ' ');"
		left=$(ls -A "/sys/fs/bpf/$RIG_P-n2" 2>/dev/null)
		[ -z "$left" ] || why="$why pins left: $(tr '\n' ' ' <<<"$left");"
		left=$(bpftool cgroup show "$RIG_CG/n2" 2>/dev/null | tail -n +2)
		[ -z "$left" ] || why="$why cgroup programs left: $(tr '\n' ' ' <<<"$left");"
		left=$(rig_exec n2 tc filter show dev eth0 ingress 2>/dev/null)
		[ -z "$left" ] || why="$why tc filters left;"
	fi
	[ -z "$why" ] && pass cleanup-removes-only-kpx-state || fail cleanup-removes-only-kpx-state "$why"
}

# ---------------------------------------------------------------- 13
# nft only (the bpf backend's map repair is tested elsewhere): a frontend
# element deleted behind the agent's back is put back by the periodic
# resync, and a resync without drift does not rebuild the table.
s13() {
	[ "$BK" = nft ] || return 0
	local why="" out key="198.18.100.130 . tcp . 80"
	{ svc s13 198.18.100.130; eps s13-a IPv4 s13 $P1@n1 $Q1@n2; } | rig_manifest_write s13.yaml
	rig_agent_stop n1
	rig_agent_start n1 --sync-period 1s
	rig_agent_wait_synced n1 10 || { fail nft-resync-repairs-drift "agent did not start: $(tail -2 "$RIG_DIR/agent-n1.log" | tr '\n' ' ')"; return; }
	rig_sync_all
	out=$(cl n1p3 --addr 198.18.100.130 --port 80 -n 5 --timeout-ms 1000)
	ok_all "$out" 5 || why="$why before: $(brief "$out");"
	# resyncs without drift: first nobody else commits, then another
	# nftables user does (the table is compared then, and matches)
	sleep 2.5
	rig_exec n1 nft add table inet other-user
	sleep 1.5
	grep -q "resync:.*comparing table" "$RIG_DIR/agent-n1.log" ||
		why="$why the table was not compared after another nftables user committed;"
	grep -q "resync:.*rebuilding" "$RIG_DIR/agent-n1.log" &&
		why="$why rebuilt without drift: $(grep -m1 "resync:" "$RIG_DIR/agent-n1.log");"
	rig_exec n1 nft delete table inet other-user
	if ! rig_exec n1 nft delete element inet kpx fe4 "{ $key }"; then
		why="$why could not delete the fe4 element;"
	else
		# the deletion took effect: without the element nothing is
		# DNATed (unless a resync already repaired it, rarely)
		out=$(cl n1p3 --addr 198.18.100.130 --port 80 -n 1 --timeout-ms 300)
		[ "$(echo_get "$out" ok)" = 0 ] || rig_exec n1 nft list map inet kpx fe4 | grep -q "198.18.100.130" ||
			why="$why served without its fe4 element: $(brief "$out");"
		rig_wait_until 5 bash -c "nsenter --net=/run/netns/$(rig_ns n1) nft list map inet kpx fe4 | grep -q '198.18.100.130 . tcp . 80'" ||
			why="$why fe4 element not restored within 5 s (sync period 1 s);"
		out=$(cl n1p3 --addr 198.18.100.130 --port 80 -n 5 --timeout-ms 1000)
		ok_all "$out" 5 || why="$why after the resync: $(brief "$out");"
		grep -q "resync: map fe4 has" "$RIG_DIR/agent-n1.log" || why="$why no drift reported in the agent log;"
	fi
	rig_agent_stop n1
	rig_agent_start n1
	rig_agent_wait_synced n1 10
	[ -z "$why" ] && pass nft-resync-repairs-drift || fail nft-resync-repairs-drift "$why"
}

# ---------------------------------------------------------------- 14
# Topology hints for nodes (PreferSameNode; n1 is in zone za, n2 in zb):
# when every ready endpoint has hints.forNodes and one names this node,
# the node uses only the endpoints hinted for it, wherever they run; else
# zone hints when every ready endpoint has them and one names the node's
# zone; else every ready endpoint.

# id_set OUT: the ids that answered, sorted, space separated
id_set() { ids "$1" | tr ' ' '\n' | sort | xargs; }

# topo_case WHAT WANT_N1 WANT_N2 ENTRY...: s14's NodePort service with
# these endpoints (eps ENTRY syntax); exactly the WANT endpoints of a node
# answer 30 connections from a pod of that node to the ClusterIP and 30
# from the external client to the node's NodePort (eTP=Cluster: topology
# applies to external traffic too). Adds to the caller's $why.
topo_case() {
	local what=$1 want1=$2 want2=$3 out from want
	shift 3
	{ NP_TCP=30140 NP_UDP=30140 svc s14 198.18.100.140 "type: NodePort"
	  eps s14-a IPv4 s14 "$@"; } | rig_manifest_write s14.yaml
	rig_sync_all || { why="$why $what: agents did not sync;"; return; }
	for from in n1 n2; do
		want=$want1
		[ $from = n2 ] && want=$want2
		out=$(cl ${from}p3 --addr 198.18.100.140 --port 80 -n 30 --timeout-ms 1000)
		ok_all "$out" 30 && [ "$(id_set "$out")" = "$want" ] ||
			why="$why $what, pod of $from (want $want): $(brief "$out");"
		out=$(cl x --addr "$(rig_node_ip4 $from)" --port 30140 -n 30 --timeout-ms 1000)
		ok_all "$out" 30 && [ "$(id_set "$out")" = "$want" ] ||
			why="$why $what, external via $from's NodePort (want $want): $(brief "$out");"
	done
}

s14() {
	local why=""
	# node hints win over zone hints (which would give n1 its own n1-p1),
	# also toward another node; a not-ready endpoint without hints does
	# not count
	topo_case "node hints" "n2-p1" "n1-p1 n2-p2" \
		$P1@n1@r@za@n2 $Q1@n2@r@zb@n1 $Q2@n2@r@zb@n2 $Q3@n2@n
	[ -z "$why" ] && pass topology-node-hints || fail topology-node-hints "$why"
	why=""
	# one ready endpoint without node hints: zone hints decide
	topo_case "node hints incomplete" "n2-p1" "n1-p1 n2-p2" \
		$P1@n1@r@zb@n1 $Q1@n2@r@za $Q2@n2@r@zb@n1
	# complete node hints, none for n1: n1 falls back to its zone za
	topo_case "no node hint for n1" "n2-p1" "n1-p1 n2-p1" \
		$P1@n1@r@zb@n2 $Q1@n2@r@za@n2 $Q2@n2@r@zb@n3
	# ... and without complete zone hints to every endpoint
	topo_case "no node hint for n1, zone hints incomplete" "n1-p1 n2-p1 n2-p2" "n1-p1 n2-p1" \
		$P1@n1@r@zb@n2 $Q1@n2@r@@n2 $Q2@n2@r@zb@n3
	[ -z "$why" ] && pass topology-node-hints-fallback || fail topology-node-hints-fallback "$why"
}

# ---------------------------------------------------------------- 15
# LoadBalancer ingress with ipMode Proxy: the load balancer proxies to the
# nodes itself, so kube-proxy programs nothing for that IP; the service's
# VIP-mode (and mode-less) ingress IPs are served as usual.
s15() {
	local why="" out proto ip
	{ SVC_STATUS="loadBalancer: {ingress: [{ip: 198.18.200.15, ipMode: VIP}, {ip: 198.18.200.16, ipMode: Proxy}, {ip: 198.18.200.17}]}" \
		NP_TCP=30150 NP_UDP=30150 svc s15 198.18.100.150 "type: LoadBalancer"
	  eps s15-a IPv4 s15 $P1@n1 $Q1@n2; } | rig_manifest_write s15.yaml
	rig_sync_all || { fail lb-ipmode-proxy-not-programmed "agents did not sync"; return; }
	for proto in tcp udp; do
		for ip in 198.18.200.15 198.18.200.17; do
			out=$(cl x --addr $ip --port 80 --proto $proto -n 10 --timeout-ms 1000)
			ok_all "$out" 10 || why="$why external client to VIP-mode $ip/$proto: $(brief "$out");"
		done
		# how it fails depends on the rig's routes (n1 forwards it
		# on-link, nobody has the address): no endpoint may answer
		out=$(cl x --addr 198.18.200.16 --port 80 --proto $proto -n 3 --timeout-ms 400)
		[ "$(echo_get "$out" ok)" = 0 ] && [ -z "$(ids "$out")" ] ||
			why="$why external client to Proxy-mode 198.18.200.16/$proto was served: $(brief "$out");"
	done
	# pods: the VIP is short-circuited in the node, the Proxy-mode IP not
	out=$(cl n1p3 --addr 198.18.200.15 --port 80 -n 5 --timeout-ms 1000)
	ok_all "$out" 5 || why="$why pod to VIP-mode 198.18.200.15: $(brief "$out");"
	out=$(cl n1p3 --addr 198.18.200.16 --port 80 -n 3 --timeout-ms 400)
	[ "$(echo_get "$out" ok)" = 0 ] && [ -z "$(ids "$out")" ] ||
		why="$why pod to Proxy-mode 198.18.200.16 was served: $(brief "$out");"
	# the modes swap in the status of the running service: .15 goes
	# unprogrammed, .16 gets served
	{ SVC_STATUS="loadBalancer: {ingress: [{ip: 198.18.200.15, ipMode: Proxy}, {ip: 198.18.200.16, ipMode: VIP}, {ip: 198.18.200.17}]}" \
		NP_TCP=30150 NP_UDP=30150 svc s15 198.18.100.150 "type: LoadBalancer"
	  eps s15-a IPv4 s15 $P1@n1 $Q1@n2; } | rig_manifest_write s15.yaml
	rig_sync_all || why="$why agents did not sync after the ipMode change;"
	out=$(cl x --addr 198.18.200.16 --port 80 -n 10 --timeout-ms 1000)
	ok_all "$out" 10 || why="$why external client to 198.18.200.16 after it became VIP-mode: $(brief "$out");"
	out=$(cl x --addr 198.18.200.15 --port 80 -n 3 --timeout-ms 400)
	[ "$(echo_get "$out" ok)" = 0 ] && [ -z "$(ids "$out")" ] ||
		why="$why external client to 198.18.200.15 served after it became Proxy-mode: $(brief "$out");"
	[ -z "$why" ] && pass lb-ipmode-proxy-not-programmed || fail lb-ipmode-proxy-not-programmed "$why"
}

s16_served() { [ "$(echo_get "$(cl x --addr "$1" --port 30160 -n 1 --timeout-ms 300)" ok)" = 1 ]; }

# 16: a node address added at run time serves NodePorts within the sync
# period (rtnetlink tells the agent; no resync needed), and stops when
# it is removed.
s16() {
	local why="" out addr=198.18.0.111
	{ NP_TCP=30160 NP_UDP=30160 svc s16 198.18.100.160 "type: NodePort"
	  eps s16-a IPv4 s16 $P1@n1 $Q1@n2; } | rig_manifest_write s16.yaml
	rig_agent_stop n1
	rig_agent_start n1 --nodeport-addresses 198.18.0.0/24 --sync-period 1h
	rig_agent_wait_synced n1 10 || { fail node-address-added-serves-nodeports "agent did not start: $(tail -2 "$RIG_DIR/agent-n1.log" | tr '\n' ' ')"; return; }
	rig_sync_all
	out=$(cl x --addr 198.18.0.11 --port 30160 -n 5 --timeout-ms 1000)
	ok_all "$out" 5 || why="$why NodePort on 198.18.0.11 before: $(brief "$out");"
	out=$(cl x --addr $addr --port 30160 -n 2 --timeout-ms 300)
	[ "$(echo_get "$out" ok)" = 0 ] || why="$why $addr answered before it existed: $(brief "$out");"
	rig_exec n1 ip addr add $addr/24 dev eth0
	# --sync-period 1h: only the address event can make it appear
	if rig_wait_until 5 s16_served $addr; then
		out=$(cl x --addr $addr --port 30160 -n 10 --timeout-ms 1000)
		ok_all "$out" 10 || why="$why NodePort on the added $addr: $(brief "$out");"
	else
		why="$why NodePort on the added $addr not served within 5 s;"
	fi
	rig_exec n1 ip addr del $addr/24 dev eth0
	rig_agent_stop n1
	rig_agent_start n1
	rig_agent_wait_synced n1 10 || why="$why agent did not restart with the default flags;"
	rig_manifest_rm s16.yaml
	[ -z "$why" ] && pass node-address-added-serves-nodeports || fail node-address-added-serves-nodeports "$why"
}

# ---------------------------------------------------------------- 17
# An externalIP (or LB ingress IP) written by a tenant equal to another
# Service's ClusterIP never takes it over (CVE-2020-8554): the ClusterIP
# the API server allocated wins, whatever the names, for pods and for
# clients routed to it through a node; the refusal is in `kpx status`.
s17() {
	local why="" out from proto n st
	{ svc s17 198.18.100.170; eps s17-a IPv4 s17 $P1@n1 $Q1@n2
	  echo "---"
	  SVC_STATUS="loadBalancer: {ingress: [{ip: 198.18.100.170}]}" \
		svc a17 198.18.100.171 "type: LoadBalancer" "externalIPs: [198.18.100.170]"
	  eps a17-a IPv4 a17 $P2@n1 $Q2@n2; } | rig_manifest_write s17.yaml
	rig_sync_all || { fail external-ip-cannot-take-a-cluster-ip "agents did not sync"; return; }
	rig_ext_via n1
	for from in n1p3 n2p3 x; do
		for proto in tcp udp; do
			out=$(cl $from --addr 198.18.100.170 --port 80 --proto $proto -n 20 --timeout-ms 1000)
			# (an off-cluster client's reach of remote endpoints
			# is 11-offcluster-clusterip's business, not this one's)
			[ "$from" = x ] && [ "$(echo_get "$out" ok)" -gt 0 ] && [ -z "$(id_set "$out" | tr ' ' '\n' | grep -v -x -e n1-p1 -e n2-p1)" ] && continue
			ok_all "$out" 20 || { why="$why $from/$proto: $(brief "$out");"; continue; }
			[ "$(id_set "$out")" = "n1-p1 n2-p1" ] ||
				why="$why $from/$proto to the ClusterIP reached $(id_set "$out"), not only s17's endpoints;"
		done
	done
	# the attacker's own ClusterIP still works
	out=$(cl n1p3 --addr 198.18.100.171 --port 80 -n 10 --timeout-ms 1000)
	ok_all "$out" 10 || why="$why a17's own ClusterIP: $(brief "$out");"
	for n in n1 n2; do
		st=$(timeout -k 1 5 "$KPX_BIN" status --state-socket "$RIG_DIR/$n.sock" -o json 2>/dev/null)
		# one refusal per kind (externalIP, LB ingress) and port (p, u)
		[ "$(jq -r '[.agent.refused[] | select(.service == "t/a17" and .address == "198.18.100.170" and .owner == "t/s17") | .kind] | sort | unique | join(",")' <<<"$st"),$(jq -r '.agent.counts.refused_addresses' <<<"$st")" = "ExternalIP,LoadBalancer,4" ] ||
			why="$why $n: kpx status does not list the refused addresses of t/a17: $(jq -c .agent.refused <<<"$st");"
	done
	out=$(rig_exec n1 curl -s --max-time 5 "http://$(rig_node_ip4 n1):10249/metrics" 2>/dev/null | grep '^kpx_refused_addresses ')
	[ "$out" = "kpx_refused_addresses 4" ] || why="$why n1 /metrics: '$out', want kpx_refused_addresses 4;"
	grep -q 'service t/a17: ExternalIP 198.18.100.170 not served: is a ClusterIP of t/s17' "$RIG_DIR/agent-n1.log" ||
		why="$why no log line naming the refused externalIP;"
	rig_manifest_rm s17.yaml
	[ -z "$why" ] && pass external-ip-cannot-take-a-cluster-ip || fail external-ip-cannot-take-a-cluster-ip "$why"
}

# The check name of scenario N (its first check) for harness failures.
scen_name() {
	case $1 in
	1) echo clusterip-spreads-and-keeps-pod-source ;;
	2) echo endpoint-changes-keep-established-and-fall-back-to-terminating ;;
	3) echo no-endpoints-refused-at-once ;;
	4) echo session-affinity-clientip-with-timeout ;;
	5) echo nodeport-external-traffic-policy ;;
	6) echo external-ip-and-lb-source-ranges ;;
	7) echo internal-traffic-policy-local ;;
	8) echo ipv6-nodeport ;;
	9) echo service-proxy-name-ignored ;;
	10) echo udp-flows-rebalanced-after-endpoint-change ;;
	11) echo agent-restart-keeps-established-connections ;;
	12) echo cleanup-removes-only-kpx-state ;;
	13) echo nft-resync-repairs-drift ;;
	14) echo topology-node-hints ;;
	15) echo lb-ipmode-proxy-not-programmed ;;
	16) echo node-address-added-serves-nodeports ;;
	17) echo external-ip-cannot-take-a-cluster-ip ;;
	18) echo conntrack-lists-service-flows ;;
	*) echo "scenario-$1" ;;
	esac
}

# ---------------------------------------------------------------- 18
# kpx conntrack lists a held flow from outside through a NodePort with
# the client, the endpoint chosen and the source NAT (eTP=Cluster), and
# its NAME filter leaves other Services' flows out.
s18() {
	local why="" log=$RIG_DIR/s18-hold.log out n
	{ NP_TCP=30180 NP_UDP=30180 svc s18 198.18.100.180 "type: NodePort"
	  eps s18-a IPv4 s18 $P1@n1 $Q1@n2; } | rig_manifest_write s18.yaml
	rig_sync_all || { fail conntrack-lists-service-flows "agents did not sync"; return; }
	rig_bg_log "$log" x "$E" hold --addr "$(rig_node_ip4 n1)" --port 30180 -d 6
	local hpid=$RIG_LAST_PID
	rig_wait_until 3 grep -q "hold connected" "$log" || why="$why hold did not connect: $(cat "$log");"
	out=$(rig_exec n1 timeout -k 2 20 "$KPX_BIN" conntrack -o json s18 -n t \
		--state-socket "$RIG_DIR/n1.sock" --bpf-root "/sys/fs/bpf/$RIG_P-n1" 2>&1)
	n=$(jq -r --arg c "$RIG_EXT_IP4" --arg f "$(rig_node_ip4 n1):30180" \
		'[.flows[] | select((.client | startswith($c + ":")) and .frontend == $f and .protocol == "TCP"
			and (.backend == "198.19.1.11:8080" or .backend == "198.19.2.11:8080")
			and .source_nat != null and .service == "t/s18:p")] | length' <<<"$out" 2>/dev/null)
	[ "$n" = 1 ] || why="$why kpx conntrack s18 did not list the held flow once: $(tr '\n' ' ' <<<"$out" | cut -c1-400);"
	out=$(rig_exec n1 timeout -k 2 20 "$KPX_BIN" conntrack -o json s1 -n t \
		--state-socket "$RIG_DIR/n1.sock" --bpf-root "/sys/fs/bpf/$RIG_P-n1" 2>&1)
	[ "$(jq -r '[.flows[] | select(.service == "t/s18:p")] | length' <<<"$out" 2>/dev/null)" = 0 ] ||
		why="$why the NAME filter let s18's flow through;"
	kill "$hpid" 2>/dev/null
	rig_manifest_rm s18.yaml
	[ -z "$why" ] && pass conntrack-lists-service-flows || fail conntrack-lists-service-flows "$why"
}

run_backend() {
	BK=$1
	(
		# shellcheck disable=SC2034 # read by lib/check.sh pass/fail/skip
		CHECK_PREFIX=$BK
		export KPX_BACKEND=$BK
		export RIG_P="k$$${BK:0:1}"
		# shellcheck source=lib/rig.sh
		source tests/integration/lib/rig.sh
		if [ "$BK" = bpf ] && ! "$KPX_BIN" run --help >/dev/null 2>&1; then
			skip all "kpx not runnable"
			exit 0
		fi
		rig_up || { fail rig "rig_up failed"; exit 1; }
		E=$KPX_ECHO
		rig_pod_servers 8080
		rig_manifest_write nodes.yaml <<-EOF
		apiVersion: v1
		kind: Node
		metadata: {name: n1, labels: {topology.kubernetes.io/zone: za}}
		---
		apiVersion: v1
		kind: Node
		metadata: {name: n2, labels: {topology.kubernetes.io/zone: zb}}
		EOF
		rig_agent_start n1
		rig_agent_start n2
		if ! rig_agent_wait_synced n1 15 || ! rig_agent_wait_synced n2 15; then
			for s in $SCEN; do fail "$(scen_name "$s")" "agent did not start: $(tail -3 "$RIG_DIR/agent-n1.log" | tr '\n' ' ')"; done
			exit 0
		fi
		for s in $SCEN; do
			if ! rig_alive; then
				fail "$(scen_name "$s")" "the rig's namespaces or $RIG_DIR vanished (removed by another process?)"
				continue
			fi
			rig_agent_alive n1 && rig_agent_alive n2 || {
				fail "$(scen_name "$s")" "an agent died: $(tail -2 "$RIG_DIR"/agent-n*.log | tr '\n' ' ')"
				rig_agent_alive n1 || rig_agent_start n1
				rig_agent_alive n2 || rig_agent_start n2
				rig_agent_wait_synced n1 10; rig_agent_wait_synced n2 10
				continue
			}
			"s$s"
		done
		# Operators list the ruleset on a node: nft(8) must print the
		# whole kpx table (it aborted on some rule shapes before).
		if [ "$BK" = nft ] && rig_alive; then
			local lr lrc
			lr=$(rig_exec n1 nft list ruleset 2>&1)
			lrc=$?
			if [ $lrc -eq 0 ] && grep -q "^table inet kpx" <<<"$lr"; then
				pass nft-list-ruleset
			else
				fail nft-list-ruleset "exit $lrc: $(tail -2 <<<"$lr" | tr '\n' ' ')"
			fi
		fi
		exit 0
	)
}

rc=0
for BK in ${KPX_BACKENDS:-nft bpf}; do
	run_backend "$BK" || rc=1
done
exit $rc
