# shellcheck shell=bash
# Phase "datapath" of perf/kube_proxy_bench.sh: what traffic sees through
# the dataplane under test (node n1, N Services x 10 endpoints programmed),
# measured for every dataplane at every size in the same run.
#
# Service dp/dp (created on the first call, type NodePort, no selector; the
# server allocates the ClusterIP and the NodePorts; slices written here
# with the bench's managed-by label):
#   port t  TCP 80   -> 8080 on pods n1p1 n1p2 n2p1 n2p2 (kpx_echo servers;
#                       2 local, 2 remote; the clients n1p3 and n2p3 are
#                       not endpoints, so no hairpin)
#   port u  UDP 9    -> 198.19.2.200:9 (nodeName n2): a sink address that
#                       node n2 drops and counts in its prerouting hook
#                       (n2 runs no dataplane in this bench)
#
# 1. New connections (perf/tools/kpx_connect_bench conn: sequential TCP
#    connections, each connect timed until writable = the first packet's
#    round trip through the dataplane, the server's answer read, RST close):
#      ClusterIP    pod n1p3 (in n1's cgroup: kpx bpf's socket hooks) to
#                   the ClusterIP:80
#      direct n1    pod n1p3 straight to the 4 endpoints, one at random
#                   per connection: the floor of the ClusterIP row
#      NodePort     pod n2p3 (another node) to n1's address:NodePort
#      direct n2    pod n2p3 straight to the 4 endpoints: its floor
#    KP_DP_ROUNDS rounds of KP_DP_CONNS connections each, every path once
#    per round, the order reversed every other round (perf/lib/rate.sh);
#    each round waits (at most KP_DP_QUIET s) for a quiet machine.
#    Reported: median conn/s, the median of the per-round ratios to the
#    floor, and the medians of the rounds' connect p50 / p99.
# 2. NodePort packet rate: trafgen (no pktgen in this kernel) in the
#    external client netns x, pinned to CPU 0, 64-byte UDP frames from
#    KP_DP_FLOWS source ports to n1:NodePort(u), KP_DP_PKT_SECS s per run;
#    the dataplane DNATs to 198.19.2.200:9, SNATs and forwards to n2,
#    which counts what arrives. The generator's ceiling, in the same round:
#    the same trafgen to n2's own address, dropped and counted the same way
#    (no dataplane on that path). kpx bpf runs twice: tc (as the bench
#    started it) and XDP (restarted with --nodeport-accel xdp; the
#    fabric's port facing n1 gets GRO so that a veth accepts XDP_TX
#    frames), then the tc agent is restored. CPU per forwarded packet:
#    veth delivers a frame on the CPU that transmits it, so the sender's
#    CPU 0 does all of it (trafgen's send, the bridge, n1's dataplane and
#    forwarding, n2's drop): the kernel time (system+irq+softirq,
#    /proc/stat) of CPU 0 over the packets counted at n2, and that minus
#    the ceiling run's (what n1's forwarding adds). Other jobs' user time
#    on CPU 0 is left out, their kernel time is not.
# Rows of the packet table go to $RIG_DIR/table-datapath-pkt; the header
# function prints that table whole, then the connection table's header
# (the bench appends the connection rows printed by kp_datapath).
# shellcheck source=perf/lib/rate.sh
. perf/lib/rate.sh	# quiet, stats, paired, round_order
# shellcheck source=perf/lib/pkt.sh
. perf/lib/pkt.sh	# pkt_tg_udp, pkt_cpu_snap, pkt_cpu_use, pkt_cpu_hw
KP_DP_ROUNDS=${KP_DP_ROUNDS:-5}
KP_DP_CONNS=${KP_DP_CONNS:-2000}
KP_DP_QUIET=${KP_DP_QUIET:-3}
KP_DP_PKT_ROUNDS=${KP_DP_PKT_ROUNDS:-3}
KP_DP_PKT_SECS=${KP_DP_PKT_SECS:-3}
KP_DP_FLOWS=${KP_DP_FLOWS:-1024}
KP_DP_SINK=198.19.2.200
KP_DP_EPS="198.19.1.11:8080,198.19.1.12:8080,198.19.2.11:8080,198.19.2.12:8080"
KP_DP_READY=0
KP_DP_CIP="" KP_DP_NPT="" KP_DP_NPU="" KP_DP_TOOL="" KP_DP_HW=""

kp_datapath_header() {
	echo "### Datapath: NodePort packet rate (trafgen)"
	echo
	echo "- trafgen (no pktgen in this kernel) in the external netns x, CPU 0, no rate limit, ${KP_DP_PKT_SECS} s per run, 64-byte UDP from $KP_DP_FLOWS source ports to n1:NodePort; the dataplane DNATs to $KP_DP_SINK:9 (a sink on n2, eTP=Cluster: SNAT), n2 counts and drops in prerouting. forwarded = packets/s counted at n2; ceiling = the same trafgen to n2's own address in the same round (no dataplane on the path: the generator and the veth/bridge path are the limit); $KP_DP_PKT_ROUNDS rounds, medians; % of ceiling = median of per-round ratios"
	echo "- where sent pps = forwarded pps nothing was lost on the way and the generator is the limit (veth delivers a frame on the CPU that sends it, so trafgen's CPU 0 also does the bridge, n1's dataplane and forwarding, and n2's drop); forwarded vs ceiling is then the dataplane's cost on that one CPU. CPU ns / fwd pkt: CPU 0's kernel time (/proc/stat system+irq+softirq; softirq alone in parentheses) over the packets counted at n2; above ceiling: minus the ceiling run's (what forwarding through n1 adds), median of per-round differences. Hardware cycles: ${KP_DP_HW:-$(pkt_cpu_hw)}, so CPU time, not cycles. Other jobs' kernel time on CPU 0 adds to it: compare rows of one run"
	echo "- kpx bpf: tc = the agent as started (tc on eth0); xdp = restarted with --nodeport-accel xdp (native XDP on n1's veth eth0, XDP_TX back to the fabric, whose port has GRO on so that a veth accepts XDP frames)"
	echo
	echo "| services x 10 | dataplane | mode | forwarded pps | % of ceiling | generator ceiling pps | sent pps | CPU ns / fwd pkt (softirq) | above ceiling ns / pkt |"
	echo "|---|---|---|---|---|---|---|---|---|"
	cat "$RIG_DIR/table-datapath-pkt" 2>/dev/null
	echo
	echo "### Datapath: new connections through a ClusterIP and a NodePort"
	echo
	echo "- perf/tools/kpx_connect_bench conn: sequential TCP connections to kpx_echo servers, each: connect timed until writable (the first packet's round trip: SYN through the dataplane, SYN-ACK back), the server's line read, RST close; $KP_DP_CONNS per path per round, $KP_DP_ROUNDS rounds, every path once per round (order reversed every other round), each round after waiting up to ${KP_DP_QUIET} s for a quiet machine"
	echo "- Service dp/dp (NodePort, eTP=Cluster) with 4 endpoints: pods n1p1 n1p2 (local) n2p1 n2p2 (remote). ClusterIP: from pod n1p3 (n1's cgroup); NodePort: from pod n2p3 (node n2, no dataplane) to n1's address; direct = the same client to the 4 endpoints, one at random per connection (pod to pod through the same nodes, no Service): each row's floor"
	echo "- conn/s: median of rounds; vs direct: median of per-round ratios (min - max); connect p50 / p99: medians of the rounds' percentiles"
	echo
	echo "| services x 10 | dataplane | path | conn/s | vs direct | connect p50 µs | connect p99 µs | rounds on a busy machine |"
	echo "|---|---|---|---|---|---|---|---|"
}

kp_dp_log() { echo "# datapath: $*" >&2; }

# once per run: the Service, its slices, the sink on n2, the tool
kp_dp_setup() {
	[ "$KP_DP_READY" = 1 ] && return 0
	local eps="" a
	KP_DP_TOOL=$RIG_DIR/kpx_connect_bench
	cp "$ROOT/build/kpx_connect_bench" "$KP_DP_TOOL" 2>/dev/null ||
		{ kp_dp_log "build/kpx_connect_bench missing (make)"; return 1; }
	case $("$KP_DP_TOOL" 2>&1) in *" conn A:P"*) ;; *) false ;; esac ||
		{ kp_dp_log "build/kpx_connect_bench has no conn mode (make)"; return 1; }
	command -v trafgen >/dev/null || { kp_dp_log "trafgen (netsniff-ng) not installed"; return 1; }
	for a in ${KP_DP_EPS//,/ }; do
		eps="$eps${eps:+, }{\"addresses\": [\"${a%:*}\"], \"conditions\": {\"ready\": true}, \"nodeName\": \"$(case $a in 198.19.1.*) echo n1 ;; *) echo n2 ;; esac)\"}"
	done
	kc create namespace dp >/dev/null 2>&1
	kc apply -f - >/dev/null <<-EOF || return 1
	{"apiVersion": "v1", "kind": "List", "items": [
	 {"apiVersion": "v1", "kind": "Service",
	  "metadata": {"name": "dp", "namespace": "dp"},
	  "spec": {"type": "NodePort", "externalTrafficPolicy": "Cluster",
	    "ports": [{"name": "t", "protocol": "TCP", "port": 80, "targetPort": 8080},
	              {"name": "u", "protocol": "UDP", "port": 9, "targetPort": 9}]}},
	 {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
	  "metadata": {"name": "dp-t", "namespace": "dp", "labels": {
	    "kubernetes.io/service-name": "dp", "endpointslice.kubernetes.io/managed-by": "kpx-bench"}},
	  "addressType": "IPv4", "ports": [{"name": "t", "protocol": "TCP", "port": 8080}],
	  "endpoints": [$eps]},
	 {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
	  "metadata": {"name": "dp-u", "namespace": "dp", "labels": {
	    "kubernetes.io/service-name": "dp", "endpointslice.kubernetes.io/managed-by": "kpx-bench"}},
	  "addressType": "IPv4", "ports": [{"name": "u", "protocol": "UDP", "port": 9}],
	  "endpoints": [{"addresses": ["$KP_DP_SINK"], "conditions": {"ready": true}, "nodeName": "n2"}]}]}
	EOF
	read -r KP_DP_CIP KP_DP_NPT KP_DP_NPU < <(kc -n dp get svc dp -o \
		jsonpath='{.spec.clusterIP} {.spec.ports[?(@.name=="t")].nodePort} {.spec.ports[?(@.name=="u")].nodePort}')
	[ -n "$KP_DP_NPU" ] || { kp_dp_log "Service dp/dp has no NodePorts"; return 1; }
	# n2 runs no dataplane here: its prerouting counts and drops the
	# forwarded packets (rule 1) and the ceiling's (rule 2)
	rig_exec n2 nft -f - <<-EOF || return 1
	table ip kpxdpsink {
		chain pre {
			type filter hook prerouting priority -300; policy accept;
			ip daddr $KP_DP_SINK udp dport 9 counter drop
			ip daddr $(rig_node_ip4 n2) udp dport 9 counter drop
		}
	}
	EOF
	# a veth takes XDP_TX'd frames only when its peer runs NAPI (GRO)
	rig_exec f ethtool -K n1 gro on >/dev/null 2>&1
	KP_DP_HW=$(pkt_cpu_hw)
	KP_DP_READY=1
	kp_dp_log "Service dp/dp: ClusterIP $KP_DP_CIP, NodePorts tcp $KP_DP_NPT udp $KP_DP_NPU"
}

# kp_dp_conn CLIENT-NODE TARGETS ITERS -> the tool's "conn ..." line
kp_dp_conn() {
	rig_node_exec "$1" "${1}p3" nice -n -5 "$KP_DP_TOOL" conn "$2" "$3" 1000 2>&1 | grep '^conn '
}
kp_dp_field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

# the dataplane serves dp/dp: ClusterIP from n1p3 and NodePort from n2p3
kp_dp_served() {
	local o
	o=$(kp_dp_conn n1 "$KP_DP_CIP:80" 8)
	[ "$(kp_dp_field ok "$o")" = 8 ] || return 1
	o=$(kp_dp_conn n2 "$(rig_node_ip4 n1):$KP_DP_NPT" 8)
	[ "$(kp_dp_field ok "$o")" = 8 ]
}
kp_dp_wait() { wait_until "${1:-60}" kp_dp_served; }

kp_dp_target() {	# PATH -> "CLIENT-NODE TARGETS"
	case $1 in
	clusterip) echo "n1 $KP_DP_CIP:80" ;;
	direct-n1) echo "n1 $KP_DP_EPS" ;;
	nodeport) echo "n2 $(rig_node_ip4 n1):$KP_DP_NPT" ;;
	direct-n2) echo "n2 $KP_DP_EPS" ;;
	esac
}

# new connections: rows of the connection table
kp_dp_conns() {	# PROXY N
	local p=$1 n=$2 r path order o node tg busy=0 line
	local -A RATE=() P50=() P99=() SRV=()
	local paths="clusterip direct-n1 nodeport direct-n2"
	for r in $(seq "$KP_DP_ROUNDS"); do
		QUIET_WAIT=$KP_DP_QUIET quiet || busy=$((busy + 1))
		order=$(round_order "$r" "$paths")
		line="round $r:"
		for path in $order; do
			read -r node tg < <(kp_dp_target "$path")
			o=$(kp_dp_conn "$node" "$tg" "$KP_DP_CONNS")
			if [ "$(kp_dp_field fails "$o")" != 0 ] || [ -z "$o" ]; then
				kp_dp_log "$p $path: ${o:-no output}"
				RATE[$path]+=" 0"
			else
				RATE[$path]+=" $(kp_dp_field rate "$o")"
			fi
			P50[$path]+=" $(kp_dp_field p50_us "$o")"
			P99[$path]+=" $(kp_dp_field p99_us "$o")"
			SRV[$path]=$(kp_dp_field servers "$o")
			line+=" $path $(kp_dp_field rate "$o")/s p50 $(kp_dp_field p50_us "$o") us"
		done
		kp_dp_log "$p $n $line"
	done
	local label base m p50 p99 vs
	for path in $paths; do
		case $path in
		clusterip) label="ClusterIP (pod n1p3)" base=direct-n1 ;;
		direct-n1) label="direct pod n1p3 to endpoints" base="" ;;
		nodeport) label="NodePort (pod n2p3 to n1)" base=direct-n2 ;;
		direct-n2) label="direct pod n2p3 to endpoints" base="" ;;
		esac
		# shellcheck disable=SC2086
		read -r m _ < <(stats ${RATE[$path]})
		# shellcheck disable=SC2086
		read -r p50 _ < <(stats ${P50[$path]})
		# shellcheck disable=SC2086
		read -r p99 _ < <(stats ${P99[$path]})
		vs="floor"
		[ -n "$base" ] && vs=$(paired "${RATE[$path]}" "${RATE[$base]}")
		[ "${SRV[$path]:-0}" = 4 ] || vs="$vs; ${SRV[$path]:-0} of 4 endpoints answered"
		echo "| $n | $p | $label | $m | $vs | $p50 | $p99 | $busy of $KP_DP_ROUNDS |"
	done
}

# counters at n2: "forwarded ceiling"
kp_dp_sink() {
	rig_exec n2 nft list chain ip kpxdpsink pre | awk '
		/counter packets/ { for (i = 1; i <= NF; i++) if ($i == "packets") c[++n] = $(i + 1) }
		END { printf "%d %d\n", c[1], c[2] }'
}

# kp_dp_sys NETNS FILE: /sys/class/net/eth0/FILE of a rig netns (ip netns
# exec mounts that netns's sysfs; nsenter --net would read the host's)
kp_dp_sys() { ip netns exec "$(rig_ns "$1")" cat "/sys/class/net/eth0/$2"; }

# kp_dp_tg fwd|ceiling -> "pps_counted pps_sent kernel_ns_per_pkt softirq_ns_per_pkt"
# (kernel time of CPU 0, the sender's, over the packets counted at n2)
kp_dp_tg() {
	local what=$1 dmac dip dport col cfg=$RIG_DIR/dp-tg-$1.cfg
	local s0 s1 g0 g1 b0 b1 t0 t1 f0 c0 f1 c1 busy si
	if [ "$what" = fwd ]; then
		dmac=$(kp_dp_sys n1 address) dip=$(rig_node_ip4 n1) dport=$KP_DP_NPU col=1
	else
		dmac=$(kp_dp_sys n2 address) dip=$(rig_node_ip4 n2) dport=9 col=2
	fi
	pkt_tg_udp "$dmac" "$(kp_dp_sys x address)" "$RIG_EXT_IP4" "$dip" \
		"dinc(10000, $((10000 + KP_DP_FLOWS - 1)))" "$dport" >"$cfg"
	read -r f0 c0 < <(kp_dp_sink)
	g0=$(kp_dp_sys x statistics/tx_packets)
	b0=$(pkt_cpu_snap)
	t0=$(date +%s%N)
	timeout -k 2 "$KP_DP_PKT_SECS" taskset -c 0 nsenter --net="/run/netns/$(rig_ns x)" \
		trafgen -o eth0 -c "$cfg" --cpus 1 -n 50000000 >"$RIG_DIR/dp-tg.log" 2>&1
	sleep 0.2	# queued frames drain
	t1=$(date +%s%N)
	b1=$(pkt_cpu_snap)
	g1=$(kp_dp_sys x statistics/tx_packets)
	read -r f1 c1 < <(kp_dp_sink)
	read -r busy si < <(pkt_cpu_kernel "$b0" "$b1" 0)
	[ $((g1 - g0)) -gt 0 ] || kp_dp_log "trafgen sent nothing: $(tail -3 "$RIG_DIR/dp-tg.log" | tr '\n' ' ')"
	s0=$f0 s1=$f1
	[ "$col" = 2 ] && s0=$c0 s1=$c1
	awk -v c=$((s1 - s0)) -v g=$((g1 - g0)) -v ns=$((t1 - t0 - 200000000)) -v w=$((t1 - t0)) \
		-v busy="$busy" -v si="$si" 'BEGIN {
		s = ns / 1e9
		printf "%.0f %.0f %.0f %.0f\n", c / s, g / s, (c > 0 ? busy * w / c : 0), (c > 0 ? si * w / c : 0) }'
}

# packet rate rows of one mode (dataplane as it runs now)
kp_dp_pkts() {	# PROXY N MODE
	local p=$1 n=$2 mode=$3 r fwd cei sent cpu si cc x
	local F="" C="" S="" CPU="" SI="" CCPU=""
	rig_exec n1 ping -c 1 -W 1 "$(rig_node_ip4 n2)" >/dev/null 2>&1	# n2's neighbour entry (XDP FIB lookup)
	for r in $(seq "$KP_DP_PKT_ROUNDS"); do
		for x in $(round_order "$r" "fwd ceiling"); do
			if [ "$x" = fwd ]; then
				read -r fwd sent cpu si < <(kp_dp_tg fwd)
				F+=" $fwd" S+=" $sent" CPU+=" $cpu" SI+=" $si"
			else
				read -r cei _ cc _ < <(kp_dp_tg ceiling)
				C+=" $cei" CCPU+=" $cc"
			fi
		done
		kp_dp_log "$p $n $mode round $r: forwarded $fwd pps (sent $sent) ceiling $cei pps, CPU $cpu ns/pkt (ceiling $cc)"
	done
	local mf mc ms mcpu msi above
	# shellcheck disable=SC2086
	read -r mf _ < <(stats $F)
	# shellcheck disable=SC2086
	read -r mc _ < <(stats $C)
	# shellcheck disable=SC2086
	read -r ms _ < <(stats $S)
	# shellcheck disable=SC2086
	read -r mcpu _ < <(stats $CPU)
	# shellcheck disable=SC2086
	read -r msi _ < <(stats $SI)
	# per round: this run's ns/pkt minus the adjacent ceiling run's
	above=$(awk -v a="$CPU" -v b="$CCPU" 'BEGIN { n = split(a, x, " "); split(b, y, " ")
		for (i = 1; i <= n; i++) d[i] = x[i] - y[i]
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (d[j] < d[i]) { t = d[i]; d[i] = d[j]; d[j] = t }
		printf "%.0f", n % 2 ? d[(n + 1) / 2] : (d[n / 2] + d[n / 2 + 1]) / 2 }')
	[ "$mf" -gt 0 ] 2>/dev/null || above="-"
	echo "| $n | $p | $mode | $mf | $(paired "$F" "$C") | $mc | $ms | $mcpu ($msi) | $above |" >>"$RIG_DIR/table-datapath-pkt"
}

kp_datapath() {	# PROXY N
	local p=$1 n=$2
	if ! kp_dp_setup; then
		echo "| $n | $p | setup failed: see the log | | | | | |"
		return 0
	fi
	if ! kp_dp_wait 60; then
		echo "| $n | $p | Service dp/dp not served in 60 s | | | | | |"
		return 0
	fi
	case $p in
	kpx-bpf)
		kp_dp_pkts "$p" "$n" tc
		kp_dp_conns "$p" "$n"
		# XDP: the same agent restarted with the accelerator, then back
		dp_stop
		clean_proxy "$p"
		start_proxy "$p" --nodeport-accel xdp
		if kp_dp_wait 120 && rig_exec n1 ip link show eth0 | grep -q 'prog/xdp'; then
			kp_dp_pkts "$p" "$n" xdp
		else
			echo "| $n | $p | xdp | not served / no XDP program on eth0 | | | | | |" >>"$RIG_DIR/table-datapath-pkt"
		fi
		dp_stop
		clean_proxy "$p"
		start_proxy "$p"
		kp_dp_wait 120 || kp_dp_log "kpx-bpf (tc) did not serve dp/dp again within 120 s"
		;;
	kpx-nft)
		kp_dp_pkts "$p" "$n" nft
		kp_dp_conns "$p" "$n"
		;;
	kube-proxy-*)
		kp_dp_pkts "$p" "$n" "${p#kube-proxy-}"
		kp_dp_conns "$p" "$n"
		;;
	esac
}
