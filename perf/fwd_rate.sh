#!/bin/bash
# NodePort packet rate through a node namespace: bpf tc mode, bpf XDP mode
# (--nodeport-accel xdp) and the nft backend, side by side in one run.
#
#   gen (trafgen, CPU 0) --veth--> node n1 (kpx run) --veth--> sink
#   198.18.10.1    198.18.10.2 eth0 | eth1 198.18.20.1     198.18.20.2 s0
#                                                         backend 198.19.5.20
#
# The generator sends UDP to the NodePort 198.18.10.2:30090 (eTP=Cluster).
# The only endpoint is remote-style (nodeName n2, routed via the sink veth),
# so n1 DNATs to 198.19.5.20:8080, SNATs to its own address and forwards.
# The sink drops everything in an nftables prerouting chain; a rule matching
# dst 198.19.5.20:8080 counts the translated packets (what is reported),
# a counter behind it counts anything else (must stay ~0).
# /proc/net/pktgen is used for nothing: this kernel has no pktgen, so the
# generator is trafgen (PF_PACKET TX ring). Everything lives in namespaces
# created here (no link to the host, no route out) and is removed on exit.
# Writes perf/results/bpf-fwd-<date>.md.
# Env: KPX_FWD_SECS (send time per run, default 5), KPX_FWD_MAX (packet cap
# per run, default 20000000), KPX_FWD_FLOWS (source ports, default 4096),
# KPX_FWD_MODES (default "tc xdp nft").
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
	echo "SKIP fwd_rate: needs root (network namespaces)"
	exit 0
fi
TRAFGEN=$(command -v trafgen || echo /usr/sbin/trafgen)
[ -x build/kpx ] || { echo "SKIP fwd_rate: build/kpx not built"; exit 0; }
[ -x "$TRAFGEN" ] || { echo "SKIP fwd_rate: trafgen (netsniff-ng) not installed"; exit 0; }
CGMNT=$(awk '$3=="cgroup2" {print $2; exit}' /proc/mounts)
[ -n "$CGMNT" ] || { echo "SKIP fwd_rate: no cgroup2 mount"; exit 0; }

SECS=${KPX_FWD_SECS:-5}
MAX=${KPX_FWD_MAX:-20000000}
FLOWS=${KPX_FWD_FLOWS:-4096}
MODES=${KPX_FWD_MODES:-tc xdp nft}
P=kfr$$
GEN=$P-gen NODE=$P-n1 SINK=$P-sink
CG=$CGMNT/$P
BPFROOT=/sys/fs/bpf/$P
TMP=$(mktemp -d /tmp/kpx-fwd.XXXXXX)
AGENT_PID=""
NODE_IP=198.18.10.2 GEN_IP=198.18.10.1 SINK_IP=198.18.20.2 BACKEND=198.19.5.20
NP=30090
# trafgen's TX_RING builds skbs with only the Ethernet header linear (the
# rest in page frags): kpx's tc program pulls the headers in first, so they
# are translated like any frame. KPX_FWD_TG_IO=sendto uses sendto(2)
# (trafgen -t 0) instead, a slower sender.
TG_IO=""
[ "${KPX_FWD_TG_IO:-}" = sendto ] && TG_IO="-t 0"

cleanup() {
	if [ -n "$AGENT_PID" ] && kill -0 "$AGENT_PID" 2>/dev/null; then
		kill "$AGENT_PID" 2>/dev/null
		for _ in $(seq 50); do kill -0 "$AGENT_PID" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$AGENT_PID" 2>/dev/null
	fi
	AGENT_PID=""
	[ -e /run/netns/$NODE ] && nsenter --net=/run/netns/$NODE build/kpx cleanup --backend bpf \
		--bpf-root "$BPFROOT" --cgroup-path "$CG/n1" --state-socket "$TMP/n1.sock" >/dev/null 2>&1
	for ns in $GEN $NODE $SINK; do ip netns del "$ns" 2>/dev/null; done
	rm -rf "$BPFROOT" 2>/dev/null
	rmdir "$CG/n1" "$CG" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=perf/lib/pkt.sh
. perf/lib/pkt.sh	# pkt_tg_udp, pkt_cpu_snap, pkt_cpu_use
die() { echo "fwd_rate: $*" >&2; exit 1; }
nx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf || die "cannot mount bpffs"
mkdir -p "$CG/n1" || die "cannot create cgroup $CG/n1"

# --- topology ---
for ns in $GEN $NODE $SINK; do ip netns add "$ns" || die "netns $ns"; done
ip link add g0 netns $GEN type veth peer name eth0 netns $NODE || die "veth gen"
ip link add eth1 netns $NODE type veth peer name s0 netns $SINK || die "veth sink"
nx $GEN ip addr add $GEN_IP/24 dev g0
nx $NODE ip addr add $NODE_IP/24 dev eth0
nx $NODE ip addr add 198.18.20.1/24 dev eth1
nx $SINK ip addr add $SINK_IP/24 dev s0
nx $SINK ip addr add $BACKEND/32 dev s0
for ns in $GEN $NODE $SINK; do nx "$ns" ip link set lo up; done
nx $GEN ip link set g0 up
nx $NODE ip link set eth0 up
nx $NODE ip link set eth1 up
nx $SINK ip link set s0 up
nx $NODE sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 \
	net.ipv4.conf.default.rp_filter=0 net.ipv4.conf.eth0.rp_filter=0 net.ipv4.conf.eth1.rp_filter=0
nx $NODE ip route add 198.19.5.0/24 via $SINK_IP dev eth1
# Static neighbours: no ARP in the measured path, and bpf_fib_lookup in XDP
# finds the next hop at once.
G_MAC=$(nx $GEN cat /sys/class/net/g0/address)
N0_MAC=$(nx $NODE cat /sys/class/net/eth0/address)
S_MAC=$(nx $SINK cat /sys/class/net/s0/address)
N1_MAC=$(nx $NODE cat /sys/class/net/eth1/address)
nx $NODE ip neigh replace $SINK_IP lladdr "$S_MAC" dev eth1 nud permanent
nx $NODE ip neigh replace $GEN_IP lladdr "$G_MAC" dev eth0 nud permanent
nx $SINK ip neigh replace 198.18.20.1 lladdr "$N1_MAC" dev s0 nud permanent
# A veth only accepts XDP_REDIRECTed frames when its peer runs NAPI: GRO on
# the sink side gives it that without an XDP program there (same for all modes).
nx $SINK ethtool -K s0 gro on >/dev/null 2>&1 || true
# (no cls_flower/act_gact in this kernel: count with nftables in the sink netns)
nx $SINK nft -f - <<EOF || die "sink nft counters"
table ip kpxsink {
	chain pre {
		type filter hook prerouting priority -300; policy accept;
		ip saddr { $NODE_IP, 198.18.20.1 } ip daddr $BACKEND udp dport 8080 counter drop comment "dnat+snat"
		ip daddr $BACKEND udp dport 8080 counter drop comment "dnat only"
		counter drop comment "other"
	}
}
EOF

MAN=$TMP/manifests
mkdir -p "$MAN"
cat >"$MAN/fwd.yaml" <<EOF
apiVersion: v1
kind: Service
metadata: {name: fwd, namespace: perf}
spec:
  type: NodePort
  clusterIP: 198.18.100.90
  clusterIPs: [198.18.100.90]
  ipFamilies: [IPv4]
  externalTrafficPolicy: Cluster
  ports: [{name: u, protocol: UDP, port: 80, targetPort: 8080, nodePort: $NP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: fwd-a, namespace: perf, labels: {kubernetes.io/service-name: fwd}}
addressType: IPv4
ports: [{name: u, protocol: UDP, port: 8080}]
endpoints:
- {addresses: ["$BACKEND"], conditions: {ready: true}, nodeName: n2}
EOF

agent_start() {	# BACKEND [extra]
	local be=$1
	shift
	CGP=$CG/n1 NSP=/run/netns/$NODE bash -c 'echo $$ > "$CGP/cgroup.procs"; exec nsenter --net="$NSP" "$@"' x \
		build/kpx run --manifests "$MAN" --backend "$be" --hostname-override n1 \
		--node-ip $NODE_IP --devices eth0 --cgroup-path "$CG/n1" --bpf-root "$BPFROOT" \
		--state-socket "$TMP/n1.sock" --healthz-bind-address '' --metrics-bind-address '' \
		--cluster-cidr 198.19.0.0/16 "$@" >"$TMP/agent-$be.log" 2>&1 &
	AGENT_PID=$!
	local i
	for i in $(seq 100); do
		kill -0 "$AGENT_PID" 2>/dev/null || return 1
		[ "$(build/kpx status --state-socket "$TMP/n1.sock" -o json 2>/dev/null |
			sed -n 's/.*"syncs_total": *\([0-9]*\).*/\1/p')" -ge 1 ] 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

agent_stop() {
	[ -n "$AGENT_PID" ] || return 0
	kill "$AGENT_PID" 2>/dev/null
	for _ in $(seq 50); do kill -0 "$AGENT_PID" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$AGENT_PID" 2>/dev/null
	wait "$AGENT_PID" 2>/dev/null
	AGENT_PID=""
	nsenter --net=/run/netns/$NODE build/kpx cleanup --backend "$1" --bpf-root "$BPFROOT" \
		--cgroup-path "$CG/n1" --state-socket "$TMP/n1.sock" >/dev/null 2>&1
}

# translated and other packet counters at the sink
sink_counts() {
	nx $SINK nft list chain ip kpxsink pre | awk '
		/counter packets/ { for (i = 1; i <= NF; i++) if ($i == "packets") c[++n] = $(i + 1) }
		END { printf "%d %d %d\n", c[1] + c[2], c[3] + 0, c[1] + 0 }'
}
gen_tx() { nx $GEN cat /sys/class/net/g0/statistics/tx_packets; }

# trafgen config: UDP to the NodePort; source port fixed or counting over FLOWS
tg_conf() { pkt_tg_udp "$N0_MAC" "$G_MAC" $GEN_IP $NODE_IP "$1" $NP; }	# SPORT-EXPR

# run_load NAME SPORT-EXPR -> prints "pps_sink pps_gen other cpu0% cpu1%"
run_load() {
	local name=$1 expr=$2 c0 c1 t0 t1 g0 g1 b0 b1 secs
	tg_conf "$expr" >"$TMP/$name.cfg"
	b0=$(pkt_cpu_snap); read -r c0 o0 _ < <(sink_counts); g0=$(gen_tx); t0=$(date +%s.%N)
	timeout "$SECS" taskset -c 0 ip netns exec $GEN "$TRAFGEN" -o g0 -c "$TMP/$name.cfg" \
		--cpus 1 -n "$MAX" $TG_IO >"$TMP/tg-$name.log" 2>&1
	sleep 0.3	# let queued frames drain
	t1=$(date +%s.%N); b1=$(pkt_cpu_snap); read -r c1 o1 _ < <(sink_counts); g1=$(gen_tx)
	secs=$(echo "$t1 - $t0 - 0.3" | bc -l)
	read -r busy _ pcts < <(pkt_cpu_use "$b0" "$b1")
	awk -v c=$((c1 - c0)) -v o=$((o1 - o0)) -v g=$((g1 - g0)) -v s="$secs" -v busy="$busy" -v pct="$pcts" 'BEGIN {
		printf "%.0f %.0f %d %.0f %s\n", c / s, g / s, o, (busy > 0 ? c / s / busy : 0), pct }'
}

verify() {	# MODE: a short burst must reach the sink DNATed and SNATed
	local c0 o0 s0 c1 o1 s1
	read -r c0 o0 s0 < <(sink_counts)
	tg_conf 40000 >"$TMP/verify.cfg"
	timeout 5 ip netns exec $GEN "$TRAFGEN" -o g0 -c "$TMP/verify.cfg" --cpus 1 -n 1000 $TG_IO >"$TMP/tg-verify.log" 2>&1
	sleep 0.3
	read -r c1 o1 s1 < <(sink_counts)
	[ $((s1 - s0)) -ge 900 ] || {
		echo "only $((s1 - s0))/1000 arrived as ${$NODE_IP,198.18.20.1} -> $BACKEND:8080 ($((c1 - c0)) with dst $BACKEND:8080, $((o1 - o0)) other)"
		return 1
	}
	return 0
}

rows=()
for mode in $MODES; do
	case $mode in
	tc) be=bpf extra=() ;;
	xdp) be=bpf extra=(--nodeport-accel xdp) ;;
	nft) be=nft extra=() ;;
	*) echo "fwd_rate: unknown mode $mode"; continue ;;
	esac
	if ! agent_start $be "${extra[@]}"; then
		rows+=("| $mode | agent failed: $(tail -2 "$TMP/agent-$be.log" | tr '\n|' '  ') | | | | |")
		agent_stop $be
		continue
	fi
	sleep 0.5
	if [ "$mode" = xdp ] && ! nx $NODE ip link show eth0 | grep -q 'prog/xdp'; then
		rows+=("| $mode | no XDP program on eth0 | | | | |")
		agent_stop $be
		continue
	fi
	if ! why=$(verify); then
		rows+=("| $mode | not forwarded: $why | | | | |")
		agent_stop $be
		continue
	fi
	for load in "many:dinc(10000, $((10000 + FLOWS - 1)))" "one:40001"; do
		name=${load%%:*}
		read -r pps gpps other ppc p0 p1 < <(run_load "$mode-$name" "${load#*:}")
		label="$FLOWS src ports"
		[ "$name" = one ] && label="1 flow (5-tuple fixed)"
		rows+=("| $mode | $label | $pps | $gpps | $ppc | $p0 / $p1 | $other |")
		echo "$mode $label: sink $pps pps, sent $gpps pps, $ppc pps/busy-core, cpu $p0 $p1, untranslated $other"
	done
	agent_stop $be
done

out=perf/results/bpf-fwd-$(date -u +%Y-%m-%d).md
{
	echo "# NodePort forwarding rate through a node namespace (UDP, eTP=Cluster, remote backend: DNAT+SNAT+forward)"
	echo
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "- CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores; kernel $(uname -r)"
	echo "- commit: $(git rev-parse --short HEAD)$(git diff --quiet -- bpf nft perf userspace 2>/dev/null || echo ' (+ local changes)')"
	echo "- command: \`bash perf/fwd_rate.sh\` (KPX_FWD_SECS=$SECS KPX_FWD_MAX=$MAX KPX_FWD_FLOWS=$FLOWS)"
	echo "- generator: trafgen (no /proc/net/pktgen in this kernel), pinned to CPU 0, one process, I/O '${TG_IO:-TX_RING}',"
	echo "  no rate limit, at most $MAX frames, stopped after $SECS s; 64-byte UDP frames to"
	echo "  $NODE_IP:$NP; \"src ports\" = source port counting over $FLOWS values (new flows, then"
	echo "  established ones), \"1 flow\" = fixed 5-tuple (established only)"
	echo "- topology: gen netns -veth-> node netns (kpx run, --devices eth0) -veth-> sink netns;"
	echo "  the sink counts packets arriving with dst $BACKEND:8080 (nftables prerouting counter, then drop); each"
	echo "  mode is first checked with 1000 frames that must reach the sink as node address ->"
	echo "  $BACKEND:8080 (DNAT+SNAT, nftables counter on saddr/daddr/dport; bpf SNATs to"
	echo "  --node-ip $NODE_IP, nft masquerades to the outgoing device's 198.18.20.1)"
	echo "- columns: sink pps = translated packets/s received at the sink; sent pps = generator"
	echo "  veth tx; pps/busy core = sink pps divided by the busy fraction of both CPUs summed"
	echo "  (sender + node + sink all share the 2 CPUs); untranslated = packets the sink saw"
	echo "  that did not match the backend (whole run)"
	echo
	echo "| mode | traffic | sink pps | sent pps | pps / busy core | CPU0 / CPU1 busy | untranslated |"
	echo "|---|---|---|---|---|---|---|"
	printf '%s\n' "${rows[@]}"
	echo
	echo "Limits: veth is a software device. In tc and nft mode the sender's CPU also does the"
	echo "node's and the sink's receive work (veth xmit -> backlog/NAPI on the same CPU); in XDP"
	echo "mode XDP runs in veth's NAPI (native veth XDP, XDP_REDIRECT to the sink veth, which"
	echo "needs GRO/NAPI on the sink side), not on a NIC. All three namespaces and the generator"
	echo "share one 2-core VM, so absolute numbers are far below a NIC's and only the ratios"
	echo "between modes are meaningful. The sender is on the same CPU as the forwarding"
	echo "work, so sink pps is bounded by it; compare the pps / busy core column."
} >"$out"
cat "$out"
