#!/bin/bash
# NodePort datapath cost per packet: build/kpx_pkt_bench runs the tc and
# XDP programs under BPF_PROG_TEST_RUN (repeat >= 1,000,000) for an
# established flow, and for new flows (a distinct 5-tuple each) into a
# conntrack table filled before to 90 % and to 100 % of its entries, at
# 1 / 10,000 / 100,000 services, next to an XDP_PASS floor, inside its own
# network namespace; then established flows through a burst of new ones
# with and without the flood guard. Writes perf/results/bpf-pkt-<date>.md
# (date, CPU, commit, command, load).
# Packets/s through a node namespace (trafgen; tc, XDP, nft): perf/fwd_rate.sh.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
	echo "SKIP pktrate: needs root (BPF_PROG_TEST_RUN, network namespace)"
	exit 0
fi
[ -x build/kpx_pkt_bench ] || { echo "SKIP pktrate: build/kpx_pkt_bench not built"; exit 0; }
REPEAT=${KPX_PKT_REPEAT:-1000000}
SERVICES=${KPX_PKT_SERVICES:-1,10000,100000}
out=perf/results/bpf-pkt-$(date -u +%Y-%m-%d).md
cmd="build/kpx_pkt_bench -n $REPEAT -s $SERVICES"
table=$(timeout 900 $cmd) || { echo "kpx_pkt_bench failed"; exit 1; }
{
	echo "# NodePort datapath, ns/packet (BPF_PROG_TEST_RUN)"
	echo
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "- CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores; kernel $(uname -r)"
	echo "- commit: $(git rev-parse --short HEAD)$(git diff --quiet -- bpf perf 2>/dev/null || echo ' (+ local changes in bpf/ or perf/)')"
	echo "- command: \`$cmd\` (via perf/pktrate.sh)"
	echo "- load: $(uptime | sed 's/.*load average/load average/')"
	echo
	echo "$table"
} >"$out"
cat "$out"
