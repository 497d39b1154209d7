#!/bin/bash
# Where the nft ClusterIP connection rate goes (issue 3 target: within 80 %
# of direct): the same client loop as perf/clusterip_rate.sh through four
# node netns that differ only in their nftables content:
#   none   no table: direct to the 10 endpoints (random per connection);
#   ct     one output filter chain with `ct state new accept`: conntrack
#          runs, nothing is translated; direct to the 10 endpoints;
#   dnat   the smallest DNAT a Service can be: one nat output rule, `dnat
#          ip to numgen random mod 10 map { N : addr . port }`; ClusterIP;
#   kpx    the kpx table for ${NFT_FLOOR_SERVICES:-1000} services x 10 endpoints
#          (build/kpx_nft_bench --keep, svc 0 = 198.18.128.1:80); ClusterIP.
# none -> ct is the price of conntrack, ct -> dnat the price of NAT, dnat ->
# kpx what kpx's ruleset adds on top of the floor netfilter allows.
# The node addresses are inside the bench plan's cluster CIDR (no masquerade).
# Same 10 server processes, pinned client and servers, interleaved rounds and
# quiet gate as clusterip_rate.sh (perf/lib/rate.sh).
# Writes perf/results/nft-floor-<date>.md (or NFT_FLOOR_OUT).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
[ "$(id -u)" -eq 0 ] || { echo "SKIP nft_floor: needs root"; exit 0; }
# (make may fail on someone else's half-written file: use what is built)
make -s build/kpx_echo build/kpx_nft_bench >/dev/null 2>&1
[ -x build/kpx_nft_bench ] || { echo "nft_floor: build/kpx_nft_bench missing"; exit 1; }
build/kpx_echo client --targets 198.18.0.1:1 -n 1 --timeout-ms 1 --time 2>/dev/null | grep -q '^rate ' ||
	{ echo "nft_floor: build/kpx_echo missing or without --targets/--time"; exit 1; }
QUIET_WAIT=${NFT_FLOOR_QUIET_WAIT:-20} QUIET_PCT=${NFT_FLOOR_QUIET_PCT:-25}
# shellcheck source=perf/lib/rate.sh
. perf/lib/rate.sh	# quiet, stats, pct, paired, round_order, echo_rate
NSVC=${NFT_FLOOR_SERVICES:-1000}
CONNS=${NFT_FLOOR_CONNS:-5000}
ROUNDS=${NFT_FLOOR_ROUNDS:-11}
PIN=${NFT_FLOOR_PIN-1}
NICE=${NFT_FLOOR_NICE:--10}
RUNAS="nice -n $NICE"
[ -n "$PIN" ] && RUNAS+=" taskset -c $PIN"
ID=$$
SRV=kpxnfs$ID
CONFS="none ct dnat kpx"
OUT=${NFT_FLOOR_OUT:-perf/results/nft-floor-$(date -u +%F).md}
TMP=$(mktemp -d /tmp/kpx-nftfloor.XXXX)
cp build/kpx_echo build/kpx_nft_bench "$TMP/"
SRVPIDS=""
cleanup() {
	for p in $SRVPIDS; do kill "$p" 2>/dev/null; done
	for p in $SRVPIDS; do wait "$p" 2>/dev/null; done
	for c in $CONFS; do ip netns del "kpxnf$c$ID" 2>/dev/null; done
	ip netns del "$SRV" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

ip netns add "$SRV" || exit 1
ip -n "$SRV" link set lo up
for i in $(seq 1 10); do ip -n "$SRV" addr add "198.19.0.$i/32" dev lo || exit 1; done
k=0
for c in $CONFS; do
	n=kpxnf$c$ID
	ip netns add "$n" || exit 1
	ip -n "$n" link set lo up
	ip -n "$n" link add v0 type veth peer name e$k netns "$SRV" || exit 1
	ip -n "$n" addr add "198.19.250.$((4 * k + 1))/30" dev v0
	ip -n "$n" link set v0 up
	ip -n "$SRV" addr add "198.19.250.$((4 * k + 2))/30" dev e$k
	ip -n "$SRV" link set e$k up
	ip -n "$n" route add 198.19.0.0/24 via "198.19.250.$((4 * k + 2))"
	# local sockets need a route to the service range to reach the output hook
	ip -n "$n" route add 198.18.128.0/17 via "198.19.250.$((4 * k + 2))"
	# 10^5 sequential connections: reuse TIME_WAIT ports
	nsenter --net=/run/netns/"$n" sysctl -qw net.ipv4.tcp_tw_reuse=1 \
		"net.ipv4.ip_local_port_range=10000 65000" || exit 1
	k=$((k + 1))
done
MAP=$(for i in $(seq 0 9); do printf '%s : 198.19.0.%s . 8000, ' "$i" $((i + 1)); done)
ip netns exec "kpxnfct$ID" nft -f - <<EOF || exit 1
table ip floor {
	chain out { type filter hook output priority 0; policy accept; ct state new accept; }
}
EOF
ip netns exec "kpxnfdnat$ID" nft -f - <<EOF || exit 1
table ip floor {
	chain out {
		type nat hook output priority -100; policy accept;
		ip daddr 198.18.128.1 tcp dport 80 dnat ip to numgen random mod 10 map { ${MAP%, } }
	}
}
EOF
nsenter --net=/run/netns/"kpxnfkpx$ID" "$TMP/kpx_nft_bench" "$NSVC" 10 --changes 0 --keep >/dev/null 2>&1 ||
	{ echo "nft_floor: kpx_nft_bench $NSVC failed"; exit 1; }
for n in "kpxnfct$ID" "kpxnfdnat$ID" "kpxnfkpx$ID"; do
	# the conntrack entries of 10^5 connections stay far below the
	# machine-wide nf_conntrack_max
	nsenter --net=/run/netns/"$n" sysctl -qw net.netfilter.nf_conntrack_tcp_timeout_time_wait=10 || exit 1
done
for i in $(seq 1 10); do
	# shellcheck disable=SC2086
	nsenter --net=/run/netns/"$SRV" $RUNAS "$TMP/kpx_echo" server --id ep$i --port 8000 \
		--bind 198.19.0.$i >/dev/null 2>&1 &
	SRVPIDS+=" $!"
done
sleep 0.5
TARGETS=$(for i in $(seq 1 10); do printf '198.19.0.%s:8000,' "$i"; done)
TARGETS=${TARGETS%,}

run() {	# CONF -> conn/s (0 when a connection failed or an endpoint never answered)
	case $1 in
	none | ct) echo_rate "kpxnf$1$ID" --targets "$TARGETS" ;;
	*) echo_rate "kpxnf$1$ID" --addr 198.18.128.1 --port 80 ;;
	esac
}

declare -A R=()
NOISY=0
for r in $(seq "$ROUNDS"); do
	order=$(round_order "$r" "$CONFS")
	line="round $r:"
	quiet || { NOISY=$((NOISY + 1)); line+=" (not quiet)"; }
	for c in $order; do
		x=$(run "$c")
		R[$c]+=" $x"
		line+=" $c $x"
	done
	echo "$line"
done

commit=$(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD -- nft perf tests/tools 2>/dev/null || echo -dirty)
cpu=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)
{
	echo "# nft ClusterIP connection rate: where it goes ($(date -u +%Y-%m-%dT%H:%MZ))"
	echo
	echo "- machine: $cpu, $(nproc) CPUs, kernel $(uname -r), $(nft --version), shared with other jobs"
	echo "- commit: $commit"
	echo "- command: \`NFT_FLOOR_SERVICES=$NSVC NFT_FLOOR_ROUNDS=$ROUNDS NFT_FLOOR_CONNS=$CONNS bash perf/nft_floor.sh\`"
	echo "- one connection = socket + connect + one-line answer + close, sequential,"
	echo "  \`kpx_echo client -n $CONNS --time\`; the same 10 server processes (one per"
	echo "  endpoint) for every configuration; client and servers on CPU ${PIN:-any} at nice $NICE."
	echo "- none: node netns without any table, direct to the 10 endpoints (random per"
	echo "  connection); ct: one filter output chain \`ct state new accept\` (conntrack on),"
	echo "  direct; dnat: one nat output rule \`dnat ip to numgen random mod 10 map { N :"
	echo "  addr . port }\`, to the service address; kpx: the kpx table for $NSVC services x 10"
	echo "  endpoints (kpx_nft_bench --keep), to svc 0. No masquerade anywhere."
	echo "- $ROUNDS interleaved rounds, order reversed every other round; each round first"
	echo "  waited (at most $QUIET_WAIT s) for the CPUs to be at most $QUIET_PCT % busy: $NOISY of"
	echo "  $ROUNDS rounds started without."
	echo
	echo "| configuration | median conn/s | best | min - max | % of none (medians / bests / paired) | % of the previous line (paired) | rounds (in order) |"
	echo "|---|---|---|---|---|---|---|"
	prev=""
	for c in $CONFS; do
		# shellcheck disable=SC2086
		read -r m b lo hi < <(stats ${R[$c]})
		# shellcheck disable=SC2086
		read -r nm nb _ _ < <(stats ${R[none]})
		step=-
		[ -n "$prev" ] && step=$(paired "${R[$c]}" "${R[$prev]}")
		echo "| $c | $m | $b | $lo - $hi | $(pct "$m" "$nm") / $(pct "$b" "$nb") / $(paired "${R[$c]}" "${R[none]}") | $step |${R[$c]} |"
		prev=$c
	done
} >"$OUT"
echo "wrote $OUT"
cat "$OUT"
