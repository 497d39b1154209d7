#!/bin/bash
# nft backend programming time (issue 3 benchmark), inside a throwaway
# network namespace: cold full sync and one-endpoint change at
# ${NFT_BENCH_SIZES:-1000 10000 30000} services x 10 endpoints through
# build/kpx_nft_bench (the backend's sync, no agent), side by side with
# loading a kube-proxy-shaped ruleset (per-service chain with an inline
# `numgen random mod N vmap`, one chain per endpoint) as text via `nft -f`
# at ${NFT_BENCH_KP_SIZES:-1000} services; the same with every service on
# sessionAffinity ClientIP (timeout 10800 s) at ${NFT_BENCH_AFF_SIZES:-30000}
# services. Each kpx row is the best of ${NFT_BENCH_REPS:-3} runs (per column).
# Then the connection rate (skipped with NFT_BENCH_CONN=0).
# Writes perf/results/nft-DATE.md (or NFT_BENCH_OUT).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
[ "$(id -u)" -eq 0 ] || { echo "SKIP nft_bench: needs root"; exit 0; }
make -s build/kpx_nft_bench >/dev/null || exit 1
NS=kpxnb$$
TMP=$(mktemp -d /tmp/kpx-nftbench.XXXX)
cleanup() { ip netns del "$NS" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT
ip netns add "$NS" || exit 1
cp build/kpx_nft_bench "$TMP/"
in_ns() { nsenter --net=/run/netns/"$NS" "$@"; }

# kube-proxy nftables-mode shape for N services x E endpoints (ClusterIP).
kp_ruleset() {
	python3 - "$1" "$2" <<'EOF'
import sys
n, e = int(sys.argv[1]), int(sys.argv[2])
o = []
els = []
w = o.append
w("table ip kube-proxy {")
w(" map service-ips { type ipv4_addr . inet_proto . inet_service : verdict; }")
w(" chain services { ip daddr . meta l4proto . th dport vmap @service-ips; }")
w(" chain nat-prerouting { type nat hook prerouting priority dstnat; policy accept; jump services; }")
w(" chain nat-output { type nat hook output priority -100; policy accept; jump services; }")
w(" chain mark-for-masquerade { meta mark set meta mark or 0x4000; }")
w(" chain masquerading { meta mark & 0x4000 == 0 return; meta mark set meta mark xor 0x4000; masquerade fully-random; }")
w(" chain nat-postrouting { type nat hook postrouting priority srcnat; policy accept; jump masquerading; }")
for i in range(n):
    ip = "198.18.%d.%d" % (128 + (i + 1) // 256, (i + 1) % 256)
    s = "service-%06d-bench/svc%06d/tcp/http" % (i, i)
    eps = []
    for j in range(e):
        k = i * e + j
        ea = "198.19.%d.%d" % ((k % 65000 + 1) // 256, (k % 65000 + 1) % 256)
        ep = "endpoint-%06d-%d" % (i, j)
        eps.append(ep)
        w(" chain %s { ip saddr %s jump mark-for-masquerade; meta l4proto tcp dnat to %s:%d; }" % (ep, ea, ea, 8000 + k // 65000))
    vm = ", ".join("%d : goto %s" % (j, ep) for j, ep in enumerate(eps))
    w(" chain %s { ip daddr %s tcp dport 80 ip saddr != 198.19.0.0/16 jump mark-for-masquerade; numgen random mod %d vmap { %s }; }" % (s, ip, e, vm))
    els.append("%s . tcp . 80 : goto %s" % (ip, s))
w("}")
w("add element ip kube-proxy service-ips { %s }" % ", ".join(els))
print("\n".join(o))
EOF
}

OUT=${NFT_BENCH_OUT:-perf/results/nft-$(date -u +%F).md}
REPS=${NFT_BENCH_REPS:-3}
CPU=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
COMMIT=$(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet -- nft perf 2>/dev/null || echo -dirty)
{
	echo "# nft backend programming time, $(date -u '+%F %T UTC')"
	echo
	echo "- machine: $CPU, $(nproc) cores, kernel $(uname -r)"
	echo "- commit: $COMMIT"
	echo "- command: \`bash perf/nft_bench.sh\` (NFT_BENCH_SIZES=\"${NFT_BENCH_SIZES:-1000 10000 30000}\", NFT_BENCH_AFF_SIZES=\"${NFT_BENCH_AFF_SIZES:-30000}\")"
	echo "- kpx: \`kpx_nft_bench N 10 --changes 5 [--affinity 10800]\` in a fresh netns,"
	echo "  best of $REPS runs per column (the machine is shared: 2 cores, other jobs);"
	echo "  one-endpoint change = remove one endpoint of one service, then add it"
	echo "  back (mean/max of 10 syncs, each one netlink transaction; the selection"
	echo "  tables of the counts next to one in use come with the full sync, so no"
	echo "  change adds one; the max is mostly the first sync after the full sync);"
	echo "  replaced = one endpoint address swapped for another; affinity rows: every"
	echo "  service with sessionAffinity ClientIP"
	echo "- kube-proxy shape: same services as text (per-service chain with inline"
	echo "  numgen vmap, per-endpoint chains) loaded with \`nft -f\` ($(nft --version)), one transaction"
	echo
	echo "| services x endpoints | kpx cold full sync | kpx one-endpoint change (mean / max) | kpx endpoint replaced (mean / max) | kpx restart full sync | nft -f kube-proxy shape |"
	echo "|---|---|---|---|---|---|"
} >"$OUT.tmp"
TICKS=""
# smallest number on stdin, "" when none
best() { sort -g | head -n1; }
# kpx_nft_bench N 10 EXTRA... REPS times: best cold, change, replaced, restart
kpx_rows() {
	local n=$1 res all=""
	shift
	for _ in $(seq "$REPS"); do
		in_ns nft flush ruleset
		res=$(in_ns timeout 600 "$TMP/kpx_nft_bench" "$n" 10 --changes 5 "$@" 2>&1)
		grep -v '^I' <<<"$res"
		all+="$res"$'\n'
	done
	cold=$(sed -n 's/^cold_full_sync.* ms=\([0-9.]*\).*/\1/p' <<<"$all" | best)
	chg="$(sed -n 's/^one_endpoint_\(change\|remove_add\).*mean_ms=\([0-9.]*\).*/\2/p' <<<"$all" | best) / $(sed -n 's/^one_endpoint_\(change\|remove_add\).*max_ms=\([0-9.]*\).*/\2/p' <<<"$all" | best)"
	rpl="$(sed -n 's/^one_endpoint_replace.*mean_ms=\([0-9.]*\).*/\1/p' <<<"$all" | best) / $(sed -n 's/^one_endpoint_replace.*max_ms=\([0-9.]*\).*/\1/p' <<<"$all" | best)"
	rst=$(sed -n 's/^restart_full_sync.* ms=\([0-9.]*\).*/\1/p' <<<"$all" | best)
	TICKS+="- $n services${*:+ ($*)}: $(sed -n 's/^ticks.* total_ms=\([0-9.]*\).*/\1/p' <<<"$all" | best) ms in all,"
	TICKS+=" $(sed -n 's/^ticks.* max_ms=\([0-9.]*\).*/\1/p' <<<"$all" | best) ms the longest tick"$'\n'
	[ "$chg" = " / " ] && chg=""
	[ "$rpl" = " / " ] && rpl=""
}
for n in ${NFT_BENCH_SIZES:-1000 10000 30000}; do
	kpx_rows "$n"
	kp="-"
	for k in ${NFT_BENCH_KP_SIZES:-1000}; do
		[ "$k" = "$n" ] || continue
		kp_ruleset "$n" 10 >"$TMP/kp.nft"
		in_ns nft flush ruleset
		t0=$(date +%s%N)
		if in_ns timeout 900 nft -f "$TMP/kp.nft"; then
			kp="$(( ($(date +%s%N) - t0) / 1000000 )) ms"
		else
			kp="failed"
		fi
		echo "nft -f kube-proxy shape $n x 10: $kp"
	done
	echo "| $n x 10 | ${cold:-failed} ms | ${chg:-failed} ms | ${rpl:--} ms | ${rst:-failed} ms | $kp |" >>"$OUT.tmp"
done
for n in ${NFT_BENCH_AFF_SIZES:-30000}; do
	kpx_rows "$n" --affinity 10800
	echo "| $n x 10, ClientIP affinity | ${cold:-failed} ms | ${chg:-failed} ms | ${rpl:--} ms | ${rst:-failed} ms | - |" >>"$OUT.tmp"
done
in_ns nft flush ruleset
{
	echo
	echo "Backend ticks after the changes (40 calls, as the agent's 5 s tick timer"
	echo "makes them; each adds one missing selection table of the counts 1..16 in"
	echo "its own transaction, best of $REPS):"
	echo
	printf '%s' "$TICKS"
	echo
	echo "nft -f of the kube-proxy shape is measured at ${NFT_BENCH_KP_SIZES:-1000} services only: its cost"
	echo "grows with the square of the services in one transaction (one anonymous"
	echo "vmap bind per service), ~350 s at 10,000 on this class of machine, which"
	echo "does not fit the benchmark budget."
} >>"$OUT.tmp"
if [ "${NFT_BENCH_CONN:-1}" = 0 ]; then
	mv "$OUT.tmp" "$OUT"
	echo "wrote $OUT"
	cat "$OUT"
	exit 0
fi

# Connection rate through a ClusterIP vs a direct connection, same run
# (issue 3 target: within 80 % of direct, flat with services). Fair pair:
# the same client binary, options and connection count, the same 10 server
# processes (one per endpoint address of svc 0, 198.19.0.1-10:8000, in a
# server netns behind a veth), interleaved rounds:
#   direct       from a second node netns with no rules at all; the client
#                picks one of the 10 endpoints at random per connection
#                (kpx_echo --targets), like the service does;
#   direct-table from the node netns holding the kpx table (nat hooks and
#                conntrack run, no service rule matches);
#   clusterip    svc 0 = 198.18.128.1:80 from the node netns: nat OUTPUT
#                hook (a host-network client; the node address is inside
#                the bench plan's cluster CIDR, so no masquerade).
# Client and servers pinned to one CPU at nice -10 (NFT_BENCH_PIN=CPU,
# NFT_BENCH_NICE), the same for all three. perf/clusterip_rate.sh measures
# the same through real agents, also from a pod netns (PREROUTING).
SRV=kpxnbs$$
PLAIN=kpxnbp$$
# (make may fail on someone else's half-written file: use what is built)
make -s build/kpx_echo >/dev/null 2>&1
"build/kpx_echo" client --targets 198.18.0.1:1 -n 1 --timeout-ms 1 --time 2>/dev/null | grep -q '^rate ' ||
	{ echo "nft_bench: build/kpx_echo missing or without --targets/--time"; exit 1; }
cp build/kpx_echo "$TMP/"
SRVPIDS=""
conn_cleanup() {
	for p in $SRVPIDS; do kill "$p" 2>/dev/null; done
	for p in $SRVPIDS; do wait "$p" 2>/dev/null; done
	ip netns del "$SRV" 2>/dev/null
	ip netns del "$PLAIN" 2>/dev/null
	cleanup
}
trap conn_cleanup EXIT
ip netns add "$SRV" || exit 1
ip netns add "$PLAIN" || exit 1
ip -n "$SRV" link set lo up
ip -n "$NS" link set lo up
ip -n "$PLAIN" link set lo up
# node netns: 198.19.255.254/16 on veth0 (inside the plan's cluster CIDR)
ip -n "$NS" link add veth0 type veth peer name eth0 netns "$SRV"
ip -n "$NS" addr add 198.19.255.254/16 dev veth0
ip -n "$NS" link set veth0 up
# local sockets need a route to the service range to reach the output hook
ip -n "$NS" route add 198.18.128.0/17 dev veth0
ip -n "$SRV" link set eth0 up
for i in $(seq 1 10); do ip -n "$SRV" addr add "198.19.0.$i/32" dev eth0; done
ip -n "$SRV" route add 198.19.255.254/32 dev eth0
# plain node netns: its own veth into the server netns, no rules
ip -n "$PLAIN" link add veth0 type veth peer name eth1 netns "$SRV"
ip -n "$PLAIN" addr add 198.18.255.254/30 dev veth0
ip -n "$PLAIN" link set veth0 up
ip -n "$PLAIN" route add 198.19.0.0/24 dev veth0
ip -n "$SRV" link set eth1 up
ip -n "$SRV" route add 198.18.255.254/32 dev eth1
for n in "$NS" "$PLAIN"; do
	# 10^5 sequential connections: reuse TIME_WAIT ports
	nsenter --net=/run/netns/"$n" sysctl -qw net.ipv4.tcp_tw_reuse=1 \
		"net.ipv4.ip_local_port_range=10000 65000" || exit 1
done
PIN=${NFT_BENCH_PIN-1}
NICE=${NFT_BENCH_NICE:--10}
RUNAS="nice -n $NICE"
[ -n "$PIN" ] && RUNAS+=" taskset -c $PIN"
for i in $(seq 1 10); do
	# shellcheck disable=SC2086
	nsenter --net=/run/netns/"$SRV" $RUNAS "$TMP/kpx_echo" server --id ep$i --port 8000 \
		--bind 198.19.0.$i >/dev/null 2>&1 &
	SRVPIDS+=" $!"
done
sleep 0.5
CONNS=${NFT_BENCH_CONNS:-5000}
ROUNDS=${NFT_BENCH_ROUNDS:-11}
TARGETS=$(for i in $(seq 1 10); do printf '198.19.0.%s:8000,' "$i"; done)
TARGETS=${TARGETS%,}
# shellcheck source=perf/lib/rate.sh
QUIET_WAIT=${NFT_BENCH_QUIET_WAIT:-20} QUIET_PCT=${NFT_BENCH_QUIET_PCT:-25}
. perf/lib/rate.sh	# quiet, stats, pct, paired, echo_rate
{
	echo
	echo "Connection rate (sequential TCP connect + one-line answer + close, one"
	echo "\`kpx_echo client -n $CONNS --time\` per run, $ROUNDS interleaved rounds, order"
	echo "reversed every other round). direct = a node netns with no rules, picking one"
	echo "of svc 0's 10 endpoints at random per connection; direct-table = the same from"
	echo "the node netns holding the kpx table (hooks and conntrack run, no match);"
	echo "ClusterIP = svc 0 (10 endpoints) from that node netns (nat OUTPUT hook). The"
	echo "same 10 server processes (one per endpoint) answer all three. Client and"
	echo "servers on CPU ${PIN:-any} at nice $NICE. Median (best, min - max) conn/s;"
	echo "paired = median of the per-round ratios (min - max). The machine is shared"
	echo "with other jobs: each round first waited (at most $QUIET_WAIT s) for the CPUs to be"
	echo "at most $QUIET_PCT % busy; the last column counts rounds that started without."
	echo
	echo "| services programmed | direct | direct-table | ClusterIP | ClusterIP / direct (medians) | (bests) | (paired) | ClusterIP / direct-table (paired) | rounds started on a busy machine |"
	echo "|---|---|---|---|---|---|---|---|---|"
} >>"$OUT.tmp"
for n in ${NFT_BENCH_CONN_SIZES:-${NFT_BENCH_SIZES:-1000 10000 30000}}; do
	in_ns nft flush ruleset
	in_ns "$TMP/kpx_nft_bench" "$n" 10 --changes 0 --keep >/dev/null 2>&1 || {
		echo "| $n | kpx_nft_bench failed | | | | | | | |" >>"$OUT.tmp"; continue; }
	D="" T="" C="" NOISY=0
	for r in $(seq "$ROUNDS"); do
		quiet || NOISY=$((NOISY + 1))
		order="d t c"
		[ $((r % 2)) -eq 0 ] && order="c t d"
		for k in $order; do
			case $k in
			d) x=$(echo_rate "$PLAIN" --targets "$TARGETS"); D+=" $x" ;;
			t) y=$(echo_rate "$NS" --targets "$TARGETS"); T+=" $y" ;;
			c) z=$(echo_rate "$NS" --addr 198.18.128.1 --port 80); C+=" $z" ;;
			esac
		done
		echo "round $r at $n services: direct $x direct-table $y clusterip $z (busy rounds so far: $NOISY)"
	done
	# shellcheck disable=SC2086
	read -r dm db dlo dhi < <(stats $D)
	# shellcheck disable=SC2086
	read -r tm tb tlo thi < <(stats $T)
	# shellcheck disable=SC2086
	read -r cm cb clo chi < <(stats $C)
	echo "conn/s medians at $n services: direct $dm direct-table $tm ClusterIP $cm ($(pct "$cm" "$dm") of direct; paired $(paired "$C" "$D"))"
	echo "| $n | $dm ($db, $dlo - $dhi) | $tm ($tb, $tlo - $thi) | $cm ($cb, $clo - $chi) | $(pct "$cm" "$dm") | $(pct "$cb" "$db") | $(paired "$C" "$D") | $(paired "$C" "$T") | $NOISY of $ROUNDS |" >>"$OUT.tmp"
done
in_ns nft flush ruleset
mv "$OUT.tmp" "$OUT"
echo "wrote $OUT"
cat "$OUT"
