#!/bin/bash
# bpf backend, NodePort datapath from the external client's point of view,
# in tc mode and in XDP mode (--nodeport-accel xdp): eTP=Cluster to local
# and remote endpoints (masqueraded), eTP=Local (client address kept; no
# local endpoint: dropped), no endpoints (refused at once), IPv6, and a
# long-lived NodePort connection that survives an agent restart.
# Modes dsr and dsr-xdp (agents with --nodeport-mode dsr, without and with
# --nodeport-accel xdp, which leaves DSR flows to tc): an external client
# reaches a NodePort through n1 whose only endpoint is on n2; the pod sees
# the client's address, the reply leaves n2 straight to the client as
# n1:nodePort, n1 keeps only the forward entry (no SNAT/reply state);
# the same for IPv6 (Destination Options header instead of the option),
# and full-size uploads through both (MSS lowered by 8 resp. 24 bytes).
# Every mode: a 3000-byte UDP datagram (MTU 1500: fragmented both ways)
# to a NodePort whose endpoint is on n2 comes back whole (frag-udp4/6).
# Prints PASS/FAIL/SKIP np-<mode>/<check>. KPX_NP_MODES="tc xdp dsr dsr-xdp"
# picks modes.
set -uo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=lib/check.sh
. tests/integration/lib/check.sh
need_root bpf_nodeport
need_files bpf_nodeport build/kpx build/kpx_echo
kpx_sweep_stale

P1=198.19.1.11 Q1=198.19.2.11 Q6=fd00:19:2::11

eps() {	# NAME FAMILY SVC ip@node...
	local name=$1 fam=$2 svc=$3 e
	shift 3
	echo "---"
	echo "apiVersion: discovery.k8s.io/v1"
	echo "kind: EndpointSlice"
	echo "metadata: {name: $name, namespace: np, labels: {kubernetes.io/service-name: $svc}}"
	echo "addressType: $fam"
	echo "ports: [{name: p, protocol: TCP, port: 8080}, {name: u, protocol: UDP, port: 8080}]"
	if [ $# -eq 0 ]; then echo "endpoints: []"; return; fi
	echo "endpoints:"
	for e in "$@"; do
		echo "- {addresses: [\"${e%@*}\"], conditions: {ready: true}, nodeName: ${e#*@}}"
	done
}

svc() {	# NAME CLUSTERIP NODEPORT FAMILY [spec lines]
	local name=$1 ip=$2 np=$3 fam=$4
	shift 4
	echo "apiVersion: v1"
	echo "kind: Service"
	echo "metadata: {name: $name, namespace: np}"
	echo "spec:"
	echo "  type: NodePort"
	echo "  clusterIP: $ip"
	echo "  clusterIPs: [$ip]"
	echo "  ipFamilies: [$fam]"
	echo "  ports: [{name: p, protocol: TCP, port: 80, targetPort: 8080, nodePort: $np}, {name: u, protocol: UDP, port: 80, targetPort: 8080, nodePort: $np}]"
	local l
	for l in "$@"; do echo "  $l"; done
}

cl() { rig_ext_exec "$KPX_ECHO" client "$@"; }	# the rig's snapshot
ok_all() { [ "$(echo_get "$1" ok)" = "$2" ] && [ "$(echo_get "$1" fail)" = 0 ]; }
# tc_empty NETNS DEV DIR: tc answered and listed no filter (a failed tc
# call prints nothing too, and must not count as "removed")
tc_empty() {
	local o
	o=$(rig_exec "$1" tc filter show dev "$2" "$3" 2>&1) && [ -z "$o" ]
}
brief() { tr '\n' ' ' <<<"$1"; }
# ct_count NODE DIR SADDR DPORT FLAG: kpx_ct entries of NODE's pinned map
# with that direction, key source address (or "-"), key destination port
# (or 0) and value flag bit (or 0); prints nothing when bpftool fails.
ct_count() {
	bpftool -j map dump pinned "/sys/fs/bpf/$RIG_P-$1/kpx_ct" 2>/dev/null |
		python3 -c '
import ipaddress, json, sys
d, sa, dp, fl = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
n = 0
for e in json.load(sys.stdin):
    k = bytes(int(x, 16) for x in e["key"])
    v = bytes(int(x, 16) for x in e["value"])
    if k[38] != d or (dp and int.from_bytes(k[34:36], "big") != dp):
        continue
    if sa != "-":
        pk = ipaddress.ip_address(sa).packed
        if k[0:len(pk)] != pk:
            continue
    if fl and not v[57] & fl:
        continue
    n += 1
print(n)' "$2" "$3" "$4" "$5"
}

# dsr_checks 4|6: the --nodeport-mode dsr checks of one family through
# n1 to the eTP=Cluster service whose only endpoint is on n2 (IPv4:
# 30094, option; IPv6: 30096, Destination Options header the pod's
# stack skips), and a bulk upload to n2-p1's socat sink (30095 -> 9000,
# 30097 -> 9001). Check names: dsr-* (IPv4), dsr6-* (IPv6).
dsr_checks() {
	local fam=$1 pre fe cli be port bport sinkport listen dst bulk c out why proto
	if [ "$fam" = 4 ]; then
		pre=dsr fe=$(rig_node_ip4 n1) cli=$RIG_EXT_IP4 be=$Q1 port=30094
		bport=30095 sinkport=9000 listen=TCP-LISTEN dst="TCP:$fe:30095"
		bulk=$RIG_DIR/bulk.txt
	else
		pre=dsr6 fe=$(rig_node_ip6 n1) cli=$RIG_EXT_IP6 be=$Q6 port=30096
		bport=30097 sinkport=9001 listen=TCP6-LISTEN
		dst="TCP6:[$fe]:$bport" bulk=$RIG_DIR/bulk6.txt
	fi

	# TCP and connected UDP sockets accept only answers from the
	# address they sent to: every ok reply came from n1:$port, though
	# it was n2 that sent it.
	why=""
	for proto in tcp udp; do
		out=$(cl --addr "$fe" --port $port --proto $proto -n 20 --timeout-ms 1000)
		ok_all "$out" 20 && [ "$(echo_names id "$out")" = "n2-p1 " ] &&
			[ "$(echo_names src "$out")" = "$cli " ] ||
			why="$why via n1/$proto (want n2-p1 seeing $cli): $(brief "$out");"
	done
	check_why $pre-client-address "$why"

	# n1: one forward entry per flow, flagged DSR, and no reply/SNAT
	# entry from the backend; n2: the learnt reply entries (backend ->
	# client as n1:$port). The client may pick a source port twice in
	# 40 flows (same tuple, one entry): >= 36 of 40.
	why=""
	if ! command -v bpftool >/dev/null || ! command -v python3 >/dev/null; then
		skip $pre-state "bpftool or python3 not installed"
	else
		c=$(ct_count n1 0 "$cli" $port 4)
		is_uint "$c" && [ "$c" -ge 36 ] || why="$why n1 DSR forward entries: '$c' (want >= 36);"
		c=$(ct_count n1 1 "$be" 0 0)
		[ "$c" = 0 ] || why="$why n1 has '$c' reply entries from $be (SNAT state);"
		c=$(ct_count n2 1 "$be" 0 8)
		is_uint "$c" && [ "$c" -ge 36 ] || why="$why n2 learnt reply entries: '$c' (want >= 36);"
		check_why $pre-state "$why"
	fi

	# Full-size segments: every client segment gets the option (8
	# bytes, IPv6: 24) on n1; n2 announces an MSS that much smaller in
	# the backend's SYN-ACK, else 1500-byte packets would grow past the
	# MTU and be dropped. The client sends without GSO so the segments
	# really are MSS-sized on the wire.
	why=""
	if ! command -v socat >/dev/null; then
		skip $pre-full-size "socat not installed"
	else
		rig_exec x ip link set eth0 gso_max_segs 1 || why="gso_max_segs not settable;"
		rig_pod_run n2 1 socat -u $listen:$sinkport,reuseaddr SYSTEM:"wc -c > $bulk"
		sleep 0.5
		head -c 300000 /dev/zero | rig_ext_exec timeout 8 socat -u - "$dst" ||
			why="$why upload failed or timed out;"
		wait_until 5 test -s "$bulk"
		c=$(tr -d ' \n' <"$bulk" 2>/dev/null)
		[ "$c" = 300000 ] || why="$why sink got '$c' of 300000 bytes;"
		rig_exec x ip link set eth0 gso_max_segs 65535
		check_why $pre-full-size "$why"
	fi
}

# udp_svc NAME CLUSTERIP NODEPORT FAMILY TARGETPORT IP@NODE: a UDP-only
# eTP=Cluster NodePort service with one endpoint.
udp_svc() {
	echo "apiVersion: v1"; echo "kind: Service"
	echo "metadata: {name: $1, namespace: np}"
	echo "spec: {type: NodePort, clusterIP: $2, clusterIPs: [$2], ipFamilies: [$4], externalTrafficPolicy: Cluster, ports: [{name: u, protocol: UDP, port: 80, targetPort: $5, nodePort: $3}]}"
	echo "---"; echo "apiVersion: discovery.k8s.io/v1"; echo "kind: EndpointSlice"
	echo "metadata: {name: $1-a, namespace: np, labels: {kubernetes.io/service-name: $1}}"
	echo "addressType: $4"; echo "ports: [{name: u, protocol: UDP, port: $5}]"
	echo "endpoints: [{addresses: [\"${6%@*}\"], conditions: {ready: true}, nodeName: ${6#*@}}]"
}

# frag_checks: a 3000-byte UDP datagram from the external client to
# n1:30098 (IPv4) / n1:30099 (IPv6), whose only endpoint is a socat echo
# in n2-p2: three fragments each way at MTU 1500, the first fragment
# creates the flow on n1 (SNAT, or the SNAT path in DSR mode), the later
# ones follow it, and the backend's fragmented reply takes the SNAT
# reverse path on n1. The client must get all 3000 bytes back.
frag_checks() {
	local fam addr port out in=$RIG_DIR/frag.in
	if ! command -v socat >/dev/null; then
		skip frag-udp4 "socat not installed"
		skip frag-udp6 "socat not installed"
		return
	fi
	head -c 3000 /dev/urandom >"$in"
	rig_pod_run n2 2 socat UDP4-RECVFROM:9002,fork PIPE
	rig_pod_run n2 2 socat UDP6-RECVFROM:9003,fork PIPE
	sleep 0.5
	for fam in 4 6; do
		if [ "$fam" = 4 ]; then
			addr=UDP4:$(rig_node_ip4 n1):30098
		else
			addr="UDP6:[$(rig_node_ip6 n1)]:30099"
		fi
		out=$RIG_DIR/frag.out$fam
		# one datagram of 3000 bytes (-b: read the file in one go);
		# -t: wait for the echo after our EOF
		rig_ext_exec timeout 6 socat -b 65536 -t 2 - "$addr" <"$in" >"$out" 2>"$out.err"
		if cmp -s "$in" "$out"; then
			pass frag-udp$fam
		else
			fail frag-udp$fam "got $(stat -c %s "$out" 2>/dev/null) of 3000 bytes back ($(head -c 200 "$out.err" | tr '\n' ' '))"
		fi
	done
}

run_mode() {
	MODE=$1
	(
		export KPX_BACKEND=bpf
		local pc=${MODE:0:1}
		[ "$MODE" = dsr-xdp ] && pc=y
		export RIG_P="k$$$pc"
		# shellcheck source=lib/rig.sh
		source tests/integration/lib/rig.sh
		CHECK_PREFIX=np-$MODE
		local extra=() out why node proto
		case $MODE in
		xdp) extra=(--nodeport-accel xdp) ;;
		dsr) extra=(--nodeport-mode dsr) ;;
		dsr-xdp) extra=(--nodeport-mode dsr --nodeport-accel xdp) ;;
		esac
		rig_up || { fail rig "rig_up failed"; exit 1; }
		{ svc npc 198.18.100.150 30090 IPv4 "externalTrafficPolicy: Cluster"
		  eps npc-a IPv4 npc $P1@n1 $Q1@n2; } | rig_manifest_write npc.yaml
		{ svc npl 198.18.100.151 30091 IPv4 "externalTrafficPolicy: Local" "healthCheckNodePort: 30191"
		  eps npl-a IPv4 npl $P1@n1; } | rig_manifest_write npl.yaml
		{ svc npe 198.18.100.152 30092 IPv4; eps npe-a IPv4 npe; } | rig_manifest_write npe.yaml
		{ svc npd 198.18.100.153 30094 IPv4 "externalTrafficPolicy: Cluster"
		  eps npd-a IPv4 npd $Q1@n2; } | rig_manifest_write npd.yaml
		# dsr: a bulk TCP upload to a socat sink in n2-p1 (port 9000)
		{ echo "apiVersion: v1"; echo "kind: Service"
		  echo "metadata: {name: npm, namespace: np}"
		  echo "spec: {type: NodePort, clusterIP: 198.18.100.154, clusterIPs: [198.18.100.154], ipFamilies: [IPv4], externalTrafficPolicy: Cluster, ports: [{name: p, protocol: TCP, port: 80, targetPort: 9000, nodePort: 30095}]}"
		  echo "---"; echo "apiVersion: discovery.k8s.io/v1"; echo "kind: EndpointSlice"
		  echo "metadata: {name: npm-a, namespace: np, labels: {kubernetes.io/service-name: npm}}"
		  echo "addressType: IPv4"; echo "ports: [{name: p, protocol: TCP, port: 9000}]"
		  echo "endpoints: [{addresses: [\"$Q1\"], conditions: {ready: true}, nodeName: n2}]"
		} | rig_manifest_write npm.yaml
		{ svc np6 fd00:18:100::15 30093 IPv6
		  eps np6-a IPv6 np6 fd00:19:1::11@n1 $Q6@n2; } | rig_manifest_write np6.yaml
		{ svc np6d fd00:18:100::16 30096 IPv6 "externalTrafficPolicy: Cluster"
		  eps np6d-a IPv6 np6d $Q6@n2; } | rig_manifest_write np6d.yaml
		# dsr, IPv6: a bulk TCP upload to a socat sink in n2-p1 (port 9001)
		{ echo "apiVersion: v1"; echo "kind: Service"
		  echo "metadata: {name: npm6, namespace: np}"
		  echo "spec: {type: NodePort, clusterIP: fd00:18:100::17, clusterIPs: [fd00:18:100::17], ipFamilies: [IPv6], externalTrafficPolicy: Cluster, ports: [{name: p, protocol: TCP, port: 80, targetPort: 9001, nodePort: 30097}]}"
		  echo "---"; echo "apiVersion: discovery.k8s.io/v1"; echo "kind: EndpointSlice"
		  echo "metadata: {name: npm6-a, namespace: np, labels: {kubernetes.io/service-name: npm6}}"
		  echo "addressType: IPv6"; echo "ports: [{name: p, protocol: TCP, port: 9001}]"
		  echo "endpoints: [{addresses: [\"$Q6\"], conditions: {ready: true}, nodeName: n2}]"
		} | rig_manifest_write npm6.yaml
		# fragmented UDP (frag_checks): socat echoes in n2-p2
		udp_svc npf 198.18.100.156 30098 IPv4 9002 198.19.2.12@n2 | rig_manifest_write npf.yaml
		udp_svc npf6 fd00:18:100::18 30099 IPv6 9003 fd00:19:2::12@n2 | rig_manifest_write npf6.yaml
		rig_pod_servers 8080
		rig_agent_start n1 "${extra[@]}"
		rig_agent_start n2 "${extra[@]}"
		if ! rig_agent_wait_synced n1 15 || ! rig_agent_wait_synced n2 15; then
			fail all "agent did not start: $(tail -3 "$RIG_DIR/agent-n1.log" | tr '\n' ' ')"
			exit 0
		fi
		sleep 0.5

		why=""
		if [ "$MODE" = xdp ] || [ "$MODE" = dsr-xdp ]; then
			rig_exec n1 ip link show eth0 | grep -q "prog/xdp.*kpx_np_xdp" || why="no XDP program on n1 eth0;"
		fi
		rig_exec n1 tc filter show dev eth0 ingress | grep -q kpx_np_tc_in || why="$why no tc ingress filter on n1 eth0;"
		check_why attached "$why"

		why=""
		for node in n1 n2; do
			[[ $MODE == dsr* ]] && break	# DSR keeps the client address
			for proto in tcp udp; do
				out=$(cl --addr "$(rig_node_ip4 $node)" --port 30090 --proto $proto -n 40 --timeout-ms 1000)
				if ! ok_all "$out" 40; then why="$why via $node/$proto: $(brief "$out");"; continue; fi
				[ "$(echo_get "$out" id n1-p1)" -gt 0 ] && [ "$(echo_get "$out" id n2-p1)" -gt 0 ] ||
					why="$why via $node/$proto: not both endpoints: $(echo_names id "$out");"
				# no src lines at all would hide the client address too
				[ -n "$(echo_names src "$out")" ] && [ "$(echo_get "$out" src "$RIG_EXT_IP4")" = 0 ] ||
					why="$why via $node/$proto: client address reached a pod or no source reported ($(echo_names src "$out"));"
			done
		done
		[[ $MODE == dsr* ]] || check_why cluster "$why"

		if [[ $MODE == dsr* ]]; then
			dsr_checks 4
			dsr_checks 6
		fi

		why=""
		for proto in tcp udp; do
			out=$(cl --addr 198.18.0.11 --port 30091 --proto $proto -n 20 --timeout-ms 1000)
			ok_all "$out" 20 && [ "$(echo_names id "$out")" = "n1-p1 " ] &&
				[ "$(echo_names src "$out")" = "$RIG_EXT_IP4 " ] ||
				why="$why via n1/$proto (want n1-p1 seeing $RIG_EXT_IP4): $(brief "$out");"
			out=$(cl --addr 198.18.0.12 --port 30091 --proto $proto -n 3 --timeout-ms 400)
			[ "$(echo_get "$out" err TIMEOUT)" = 3 ] || why="$why via n2/$proto not dropped: $(brief "$out");"
		done
		check_why local "$why"

		why=""
		for proto in tcp udp; do
			out=$(cl --addr 198.18.0.12 --port 30092 --proto $proto -n 5 --timeout-ms 3000)
			if [ "$(echo_get "$out" err ECONNREFUSED)" != 5 ]; then
				why="$why $proto: not refused: $(brief "$out");"
			else
				local ms
				ms=$(awk '$1=="err" && $2=="ECONNREFUSED" {print $4}' <<<"$out")
				is_uint "$ms" && [ "$ms" -lt 500 ] || why="$why $proto: refusal took '${ms}' ms;"
			fi
		done
		check_why no-endpoints "$why"

		why=""
		for node in n1 n2; do
			for proto in tcp udp; do
				out=$(cl --addr "$(rig_node_ip6 $node)" --port 30093 --proto $proto -n 30 --timeout-ms 1000)
				ok_all "$out" 30 && [ "$(echo_get "$out" id n1-p1)" -gt 0 ] && [ "$(echo_get "$out" id n2-p1)" -gt 0 ] ||
					why="$why via $node/$proto: $(brief "$out");"
			done
		done
		check_why ipv6 "$why"

		frag_checks

		# long-lived connections through both nodes survive a kill -9 and
		# restart of n1's agent (state lives in pinned maps)
		why=""
		local logs=() i=0
		for node in n1 n2; do
			for _ in 1 2; do
				i=$((i + 1))
				rig_bg_log "$RIG_DIR/hold$i.log" x "$KPX_ECHO" hold --addr "$(rig_node_ip4 $node)" --port 30090 -d 4
				logs+=("$RIG_DIR/hold$i.log")
			done
		done
		sleep 1
		rig_agent_kill9 n1
		sleep 0.3
		rig_agent_start n1 "${extra[@]}"
		rig_agent_wait_synced n1 10 || why="$why agent did not come back;"
		for l in "${logs[@]}"; do
			wait_until 8 grep -q '^hold \(ok\|fail\)' "$l"
			grep -q '^hold ok' "$l" || why="$why $(basename "$l"): $(tr '\n' ' ' <"$l");"
		done
		out=$(cl --addr 198.18.0.11 --port 30090 -n 10 --timeout-ms 1000)
		ok_all "$out" 10 || why="$why new connections after restart: $(brief "$out");"
		check_why restart "$why"

		# cleanup removes every hook this backend put on the node
		rig_agent_stop n2
		why=""
		rig_node_exec n2 n2 timeout -k 2 "$T_CALL" "$KPX_BIN" cleanup --backend bpf --bpf-root "/sys/fs/bpf/$RIG_P-n2" \
			--cgroup-path "$RIG_CG/n2" >"$RIG_DIR/cleanup.log" 2>&1 ||
			why="cleanup failed: $(tail -3 "$RIG_DIR/cleanup.log" | tr '\n' ' ');"
		for dev in eth0 p1; do
			tc_empty n2 $dev ingress || why="$why tc filter left on $dev (or tc failed);"
		done
		tc_empty n2 eth0 egress || why="$why tc egress filter left (or tc failed);"
		if ! out=$(rig_exec n2 ip link show eth0 2>&1); then
			why="$why ip link show eth0 failed: $out;"
		elif grep -q "prog/xdp" <<<"$out"; then
			why="$why XDP left on eth0;"
		fi
		check_why cleanup "$why"
		exit 0
	)
}

rc=0
for m in ${KPX_NP_MODES:-tc xdp dsr dsr-xdp}; do
	run_mode "$m" || rc=1
done
exit $rc
