#!/bin/bash
# connect() cost through kpx's socket-LB hook (bpf backend) at 10 / 10,000 /
# 100,000 services versus the floor: the same connect() from a cgroup with
# no program, straight to the endpoint. Per size: UDP connect() (no
# handshake: the syscall plus the hook) and TCP connect+accept+RST over lo
# (a full connection), and the connect4 program's own run time per call
# from bpf_stats (enabled through BPF_ENABLE_STATS for the run only).
# Everything runs in a network namespace and child cgroups this script
# creates; results go to perf/results/bpf-connect-<date>.md.
# KPX_CB_SIZES, KPX_CB_TCP_ITERS, KPX_CB_UDP_ITERS, KPX_CB_REPEAT override.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TOOL=$ROOT/build/kpx_connect_bench
SIZES=${KPX_CB_SIZES:-10 10000 100000}
TCP_ITERS=${KPX_CB_TCP_ITERS:-20000}
UDP_ITERS=${KPX_CB_UDP_ITERS:-200000}
REPEAT=${KPX_CB_REPEAT:-3}
ID=$$
NS=kpxcb$ID
CGROOT=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
CG=$CGROOT/kpxcb$ID
CG0=$CGROOT/kpxcb0$ID
BR=/sys/fs/bpf/kpxcb$ID
OUT=perf/results/bpf-connect-$(date -u +%Y-%m-%d).md
LOG=$(mktemp /tmp/kpx-cb.XXXXXX)

[ "$(id -u)" -eq 0 ] || { echo "connect_bench: needs root"; exit 0; }
[ -n "$CGROOT" ] || { echo "connect_bench: no cgroup2 mount"; exit 0; }
make -s build/kpx build/kpx_connect_bench || exit 1

cleanup() {
	"$ROOT/build/kpx" cleanup --backend bpf --bpf-root "$BR" >/dev/null 2>&1
	rm -rf "$BR"
	rmdir "$CG" "$CG0" 2>/dev/null
	ip netns del $NS 2>/dev/null
	rm -f "$LOG"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

ip netns add $NS || exit 1
ip -n $NS link set lo up
ip -n $NS addr add 198.19.250.1/32 dev lo
mkdir -p "$CG" "$CG0" || exit 1

# incg CGROUP ARGS...: the tool in the namespace and the given cgroup.
incg() {
	local cg=$1
	shift
	nsenter --net=/run/netns/$NS sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$cg" "$@"
}
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }
median() { sort -n | awk '{ a[NR] = $1 } END { print (NR ? a[int((NR + 1) / 2)] : "-") }'; }

rows=""
for n in $SIZES; do
	"$ROOT/build/kpx" cleanup --backend bpf --bpf-root "$BR" >/dev/null 2>&1
	rm -rf "$BR"
	load=$(nsenter --net=/run/netns/$NS "$TOOL" load "$n" "$CG" "$BR" 2>>"$LOG") || {
		echo "connect_bench: load $n failed: $(tail -3 "$LOG")"
		exit 1
	}
	echo "$load"
	sync_ms=$(echo "$load" | field sync_ms)
	idle_ms=$(echo "$load" | field idle_cpu_ms)
	resync_ms=$(echo "$load" | field resync_cpu_ms)
	: >"$LOG.r"
	for r in $(seq "$REPEAT"); do
		# Interleaved so that drift hits every variant alike.
		incg "$CG0" "$TOOL" run 198.19.250.1 8080 "$UDP_ITERS" udp | sed 's/^/udp_floor /' >>"$LOG.r"
		incg "$CG" "$TOOL" run 198.18.0.1 80 "$UDP_ITERS" udp "$BR" | sed 's/^/udp_hook /' >>"$LOG.r"
		incg "$CG0" "$TOOL" run 198.19.250.1 8080 "$TCP_ITERS" tcp | sed 's/^/tcp_floor /' >>"$LOG.r"
		incg "$CG" "$TOOL" run 198.18.0.1 80 "$TCP_ITERS" tcp "$BR" | sed 's/^/tcp_hook /' >>"$LOG.r"
	done
	cat "$LOG.r"
	if grep -q 'fails=[1-9]' "$LOG.r"; then
		echo "connect_bench: connects failed at $n services"
		exit 1
	fi
	uf=$(grep ^udp_floor "$LOG.r" | field ns_per_op | median)
	uh=$(grep ^udp_hook "$LOG.r" | field ns_per_op | median)
	tf=$(grep ^tcp_floor "$LOG.r" | field ns_per_op | median)
	th=$(grep ^tcp_hook "$LOG.r" | field ns_per_op | median)
	pu=$(grep ^udp_hook "$LOG.r" | field prog_ns_per_run | median)
	pt=$(grep ^tcp_hook "$LOG.r" | field prog_ns_per_run | median)
	rate_f=$(awk -v x="$tf" 'BEGIN { printf "%.0f", 1e9 / x }')
	rate_h=$(awk -v x="$th" 'BEGIN { printf "%.0f", 1e9 / x }')
	pct=$(awk -v f="$tf" -v h="$th" 'BEGIN { printf "%.1f", 100 * f / h }')
	rows+="| $n | $sync_ms | $idle_ms | $resync_ms | $uf | $uh | $pu | $tf | $th | $pt | $rate_f | $rate_h | $pct % |"$'\n'
	rm -f "$LOG.r"
done

commit=$(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet -- bpf perf 2>/dev/null || echo -dirty)
cpu=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)
{
	echo "# bpf socket LB: connect() cost ($(date -u +%Y-%m-%dT%H:%MZ))"
	echo
	echo "- machine: $cpu, $(nproc) CPUs, kernel $(uname -r)"
	echo "- commit: $commit"
	echo "- command: \`bash perf/connect_bench.sh\` (sizes: $SIZES; UDP $UDP_ITERS, TCP $TCP_ITERS iterations; median of $REPEAT interleaved runs)"
	echo "- floor: same loop from a cgroup without programs, straight to the endpoint 198.19.250.1:8080."
	echo "  hook: from the attached cgroup to ClusterIP 198.18.0.1:80 (rewritten by connect4)."
	echo "- prog ns/run: connect4's own run time per call (bpf_stats run_time_ns / run_cnt)."
	echo "- TCP = socket + connect (handshake over lo, accept in the same process) + RST close."
	echo "- sync ms: first sync (wall); unchanged sync and full resync (compares every pinned map with the writer): CPU ms of the agent's process."
	echo
	echo "| services | sync ms | unchanged sync CPU ms | full resync CPU ms | UDP floor ns/op | UDP hook ns/op | prog ns/run (UDP) | TCP floor ns/op | TCP hook ns/op | prog ns/run (TCP) | conn/s floor | conn/s hook | hook rate vs floor |"
	echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
	printf "%s" "$rows"
} >"$OUT"
cat "$OUT"
