# shellcheck shell=bash
# Shared helpers of the packet-rate benchmarks (perf/fwd_rate.sh,
# perf/lib/kp_datapath.sh): sourced, not run. Owns only these functions.
# This kernel has no pktgen (/proc/net/pktgen): the generator is trafgen
# (netsniff-ng, PF_PACKET TX ring).
#
#   pkt_tg_udp DMAC SMAC SADDR DADDR SPORT-EXPR DPORT
#       trafgen config of one 64-byte UDP/IPv4 frame (SPORT-EXPR: a port,
#       or dinc(A, B) for a source port counting over A..B: new flows)
#   pkt_cpu_snap
#       per CPU "busy:total:softirq:kernel " jiffies from /proc/stat (busy =
#       user nice system irq softirq; kernel = system irq softirq)
#   pkt_cpu_use SNAP0 SNAP1
#       "BUSY SOFTIRQ P0 P1 ...": CPUs busy and CPUs in softirq between the
#       snapshots (sums of per-CPU fractions, so 2.0 = both CPUs all the
#       time) and each CPU's busy percent
#   pkt_cpu_kernel SNAP0 SNAP1 CPU
#       "KERNEL SOFTIRQ": fractions of CPU number CPU spent in the kernel
#       (system+irq+softirq) and in softirq between the snapshots. With the
#       sender pinned there, veth delivers every frame on that CPU (netif_rx
#       / NAPI of the xmitting CPU): its kernel time is the whole path's
#       cost, while other jobs' user time on it is left out
#   pkt_cpu_hw
#       "yes" when `perf stat -e cycles` counts cycles, else why not (a VM
#       often has no hardware counters: then CPU time is all there is)

pkt_tg_udp() {
	cat <<EOF
{
  eth(da=$1, sa=$2),
  ipv4(sa=$3, da=$4, ttl=64, df),
  udp(sp=$5, dp=$6),
  fill(0x41, 18)
}
EOF
}

pkt_cpu_snap() {
	awk '/^cpu[0-9]/ {b = $2 + $3 + $4 + $7 + $8; t = b + $5 + $6; printf "%d:%d:%d:%d ", b, t, $8, $4 + $7 + $8}' /proc/stat
}

pkt_cpu_use() {
	awk -v b0="$1" -v b1="$2" 'BEGIN {
		n = split(b0, x, " "); split(b1, y, " "); busy = 0; si = 0; pct = ""
		for (i = 1; i <= n; i++) {
			split(x[i], p, ":"); split(y[i], q, ":")
			t = q[2] - p[2]
			u = t > 0 ? (q[1] - p[1]) / t : 0
			busy += u; si += t > 0 ? (q[3] - p[3]) / t : 0
			pct = pct sprintf(" %.0f%%", 100 * u)
		}
		printf "%.3f %.3f%s\n", busy, si, pct }'
}

pkt_cpu_kernel() {
	awk -v b0="$1" -v b1="$2" -v c="$3" 'BEGIN {
		split(b0, x, " "); split(b1, y, " "); split(x[c + 1], p, ":"); split(y[c + 1], q, ":")
		t = q[2] - p[2]
		printf "%.3f %.3f\n", (t > 0 ? (q[4] - p[4]) / t : 0), (t > 0 ? (q[3] - p[3]) / t : 0) }'
}

pkt_cpu_hw() {
	local o
	command -v perf >/dev/null || { echo "perf not installed"; return; }
	o=$(perf stat -x, -e cycles true 2>&1 | grep cycles)
	case $o in
	"" | *"not supported"* | *"not counted"*) echo "perf stat -e cycles: not supported (no hardware cycle counters in this VM)" ;;
	*) echo yes ;;
	esac
}
