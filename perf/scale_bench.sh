#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# kpx's memory and first-sync time at N Services x 10 endpoints, without the
# real API server (loading 100,000 objects into kube-apiserver takes an hour
# here): perf/tools/scale_apiserver.py serves N Services and 2N
# EndpointSlices (two slices of 5 endpoints, as perf/kube_proxy_bench.sh
# writes them) over HTTPS inside node n1's network namespace of the
# integration rig, and one `kpx run` per backend and size starts against it
# (streaming list, sendInitialEvents). Per run, from kpx's own log (-v 1):
#   list    start -> the last of the Service/EndpointSlice listings arrived
#   sync    list arrived -> the first full sync finished (plan + kernel)
#   first   start -> first sync finished
# and the agent's RSS (VmHWM peak, VmRSS 3 s after the first sync), its
# memory cgroup (v1 memory.max_usage_in_bytes / usage_in_bytes: includes
# the kernel memory the agent allocates, bpf maps among it) and, for bpf,
# the memlock of the pinned maps. Writes perf/results/scale-DATE.md and,
# with gnuplot, scale-DATE-rss.png and scale-DATE-sync.png.
#
# Environment: SIZES (default "1000 10000 30000 100000"), BACKENDS
# ("bpf nft"), KPX_BIN (build/kpx), VARIANTS ("LABEL=BINARY ...": several
# kpx builds measured in the same run, size by size, e.g. before/after a
# change; default "kpx=$KPX_BIN"), TIMEOUT per run in s (300),
# EXTRA extra `kpx run` flags, KEEP_LOGS (a directory for the agents' logs), OUT (the results file), NOTE (one line for
# the results, e.g. "before: commit X").
# Needs root (network namespaces, nftables, bpf); everything stays in the
# rig's namespaces and is removed on exit.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
SIZES=${SIZES:-"1000 10000 30000 100000"}
BACKENDS=${BACKENDS:-"bpf nft"}
TIMEOUT=${TIMEOUT:-300}
EXTRA=${EXTRA:-}
DATE=$(date -u +%Y-%m-%d)
OUT=${OUT:-$ROOT/perf/results/scale-$DATE.md}
KPX_BACKEND=bpf	# the rig makes the cgroups the bpf backend needs
# shellcheck source=../tests/integration/lib/rig.sh
. "$ROOT/tests/integration/lib/rig.sh"

# plot_results ROWS BASE: BASE-rss.png and BASE-sync.png from the rows
# (also alone: PLOT_ONLY=perf/results/scale-DATE.dat perf/scale_bench.sh)
plot_results() {
	local rows=$1 base=$2 tmp l b plot_rss="" plot_sync=""
	command -v gnuplot >/dev/null || return 0
	tmp=$(mktemp -d /tmp/kpx-scale-plot.XXXX)
	for l in $(awk '{print $13}' "$rows" | awk '!seen[$0]++'); do
		for b in $(awk '{print $1}' "$rows" | awk '!seen[$0]++'); do
			awk -v b="$b" -v l="$l" '$1 == b && $13 == l && $5 !~ />/' "$rows" >"$tmp/$l-$b.dat"
			[ -s "$tmp/$l-$b.dat" ] || continue
			plot_rss="$plot_rss${plot_rss:+, }'$tmp/$l-$b.dat' using 2:7 with linespoints lw 2 title '$l $b RSS', '$tmp/$l-$b.dat' using 2:6 with linespoints dt 2 title '$l $b RSS peak'"
			plot_sync="$plot_sync${plot_sync:+, }'$tmp/$l-$b.dat' using 2:4 with linespoints lw 2 title '$l $b: list arrived -> synced (wall)'"
			grep -qv ' ? ? ' "$tmp/$l-$b.dat" &&
				plot_sync="$plot_sync, '$tmp/$l-$b.dat' using 2:12 with linespoints dt 2 title '$l $b: its CPU seconds'"
		done
	done
	gnuplot <<-EOF
	set terminal pngcairo size 900,560 font "sans,11"
	set grid
	set key top left
	set logscale x
	set xrange [700:150000]
	set datafile missing "?"
	set xlabel "Services (x 10 endpoints)"
	set output "$base-rss.png"
	set title "kpx agent memory vs N ($(date -u +%Y-%m-%d), $(git -C "$ROOT" rev-parse --short HEAD))"
	set ylabel "MiB"
	plot $plot_rss, 300 * 1000000 / 1048576 with lines dt 3 lw 2 lc rgb "red" title "target 300 MB"
	set output "$base-sync.png"
	set title "kpx first sync after the listing vs N ($(date -u +%Y-%m-%d), $(git -C "$ROOT" rev-parse --short HEAD); shared 2-core VM)"
	set ylabel "seconds"
	plot $plot_sync, 3 with lines dt 3 lw 2 lc rgb "red" title "target bpf 3 s", 5 with lines dt 3 lw 2 lc rgb "orange" title "target nft 5 s"
	EOF
	rm -rf "$tmp"
	echo "scale_bench: plots $base-rss.png $base-sync.png" >&2
}

if [ -n "${PLOT_ONLY:-}" ]; then
	plot_results "$PLOT_ONLY" "${PLOT_ONLY%.dat}"
	exit
fi

[ "$(id -u)" -eq 0 ] || { echo "scale_bench: needs root" >&2; exit 1; }
rig_up || exit 1
MEMCG=/sys/fs/cgroup/memory/kpx-scale-$$
SRV_PID=""
cleanup_scale() {
	[ -n "$SRV_PID" ] && stop_pid "$SRV_PID" 3
	rmdir "$MEMCG"/run-* "$MEMCG" 2>/dev/null
	rig_down
}
trap cleanup_scale EXIT
[ -d /sys/fs/cgroup/memory ] && mkdir -p "$MEMCG" 2>/dev/null || MEMCG=""
bash "$ROOT/tests/fixtures/make_test_ca.sh" "$RIG_DIR/pki" || exit 1
ROWS=$RIG_DIR/rows
: >"$ROWS"

# seconds of the day of a klog line ("I1207 04:40:00.123456 ...")
log_sec() { awk '{split($2, t, ":"); printf "%.6f\n", t[1] * 3600 + t[2] * 60 + t[3]}'; }
now_sec() { date +%H:%M:%S.%N | awk '{split($1, t, ":"); printf "%.6f\n", t[1] * 3600 + t[2] * 60 + t[3]}'; }
mib() { awk -v b="${1:-0}" 'BEGIN {printf "%.1f", b / 1048576}'; }

start_server() {	# N
	local n=$1 i
	# the PORT line of this server, not of the previous one: the shell
	# may look before the background job has truncated the file
	rm -f "$RIG_DIR/srv.out"
	# nsenter execs python: $! is the server itself, so stop_pid ends it
	nsenter --net="/run/netns/$(rig_ns n1)" python3 "$ROOT/perf/tools/scale_apiserver.py" --services "$n" \
		--cert "$RIG_DIR/pki/server.crt" --key "$RIG_DIR/pki/server.key" \
		>"$RIG_DIR/srv.out" 2>"$RIG_DIR/srv.err" &
	SRV_PID=$!
	echo "$SRV_PID" >>"$RIG_DIR/pids"
	for ((i = 0; i < 1200; i++)); do
		grep -q '^PORT ' "$RIG_DIR/srv.out" 2>/dev/null && break
		kill -0 "$SRV_PID" 2>/dev/null || break
		sleep 0.1
	done
	PORT=$(awk '/^PORT/ {print $2}' "$RIG_DIR/srv.out")
	[ -n "$PORT" ] || { echo "scale_bench: server did not start" >&2; cat "$RIG_DIR/srv.err" >&2; return 1; }
	cat "$RIG_DIR/srv.err" >&2
	echo tok >"$RIG_DIR/token"
	cat >"$RIG_DIR/kubeconfig" <<-EOF
	apiVersion: v1
	kind: Config
	current-context: bench
	clusters:
	- name: fake
	  cluster:
	    server: https://127.0.0.1:$PORT
	    certificate-authority-data: $(base64 -w0 "$RIG_DIR/pki/ca.crt")
	users:
	- name: bench
	  user:
	    tokenFile: $RIG_DIR/token
	contexts:
	- name: bench
	  context: {cluster: fake, user: bench}
	EOF
}

bpf_memlock() {	# N: sum of bytes_memlock of the maps pinned under the agent's root
	local f total=0 b line
	command -v bpftool >/dev/null || { echo 0; return; }
	: >"$RIG_DIR/maps-$1.txt"
	while IFS= read -r f; do
		line=$(bpftool -j map show pinned "$f" 2>/dev/null |
			jq -r '"\(.bytes_memlock // 0) \(.name) \(.type) \(.max_entries)"' 2>/dev/null)
		b=${line%% *}
		total=$((total + ${b:-0}))
		echo "$line" >>"$RIG_DIR/maps-$1.txt"
	done < <(find "/sys/fs/bpf/$RIG_P-n1" -type f 2>/dev/null)
	echo "$total"
}

run_one() {	# LABEL BINARY BACKEND N
	local label=$1 bin=$2
	shift 2
	local b=$1 n=$2 log=$RIG_DIR/agent-$label-$1-$2.log cg="" pid t0 t_list t_sync i
	local hwm rss cgpeak=0 cgcur=0 memlock=0 d_list d_sync d_first line
	local c_list="?" c_sync="?" c_end
	if [ -n "$MEMCG" ]; then
		cg=$MEMCG/run-$label-$b-$n
		mkdir -p "$cg"
	fi
	t0=$(now_sec)
	# shellcheck disable=SC2086
	rig_node_bg n1 n1 "$log" bash -c '[ -n "$1" ] && echo $$ >"$1/cgroup.procs"; shift; exec "$@"' memcg "$cg" \
		"$bin" run --kubeconfig "$RIG_DIR/kubeconfig" --backend "$b" \
		--hostname-override n1 --node-ip 198.18.0.11,fd00:18::11 \
		--cluster-cidr 198.19.0.0/16,fd00:19::/32 \
		--state-socket "$RIG_DIR/n1.sock" --bpf-root "/sys/fs/bpf/$RIG_P-n1" \
		--cgroup-path "$RIG_CG/n1" --devices eth0 \
		--healthz-bind-address 198.18.0.11:10256 \
		--metrics-bind-address 198.18.0.11:10249 -v 1 $EXTRA
	pid=$RIG_LAST_PID
	for ((i = 0; i < TIMEOUT * 10; i++)); do
		grep -q 'sync: full' "$log" 2>/dev/null && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	line=$(grep -m1 'sync: full' "$log")
	if [ -z "$line" ]; then
		echo "scale_bench: $label $b N=$n: no first sync in ${TIMEOUT}s" >&2
		tail -5 "$log" >&2
		d_first=">$TIMEOUT"
		d_list="?" d_sync="?"
	else
		t_sync=$(log_sec <<<"$line")
		t_list=$(grep -E 'k8s (services|endpointslices): listed' "$log" | log_sec | sort -n | tail -1)
		d_list=$(awk -v a="$t_list" -v b="$t0" 'BEGIN {printf "%.2f", a - b}')
		d_sync=$(awk -v a="$t_sync" -v b="$t_list" 'BEGIN {printf "%.2f", a - b}')
		d_first=$(awk -v a="$t_sync" -v b="$t0" 'BEGIN {printf "%.2f", a - b}')
		# CPU seconds of the agent: what the phases cost on a loaded
		# machine (the wall times include waiting for a core)
		c_list=$(grep -E 'k8s (services|endpointslices): listed' "$log" |
			sed -n 's/.*process cpu \([0-9.]*\) s.*/\1/p' | sort -n | tail -1)
		c_end=$(grep -m1 'sync: heap' "$log" | sed -n 's/.*process cpu \([0-9.]*\) s.*/\1/p')
		if [ -n "$c_list" ] && [ -n "$c_end" ]; then
			c_sync=$(awk -v a="$c_end" -v b="$c_list" 'BEGIN {printf "%.2f", a - b}')
		else
			c_list=${c_list:-?} c_sync="?"
		fi
	fi
	sleep 3
	hwm=$(awk '/^VmHWM/ {print $2 * 1024}' "/proc/$pid/status" 2>/dev/null)
	rss=$(awk '/^VmRSS/ {print $2 * 1024}' "/proc/$pid/status" 2>/dev/null)
	if [ -n "$cg" ]; then
		cgpeak=$(cat "$cg/memory.max_usage_in_bytes" 2>/dev/null || echo 0)
		cgcur=$(cat "$cg/memory.usage_in_bytes" 2>/dev/null || echo 0)
	fi
	[ "$b" = bpf ] && memlock=$(bpf_memlock "$n")
	printf '%s %s %s %s %s %s %s %s %s %s %s %s %s\n' "$b" "$n" "$d_list" "$d_sync" \
		"$d_first" "$(mib "$hwm")" "$(mib "$rss")" "$(mib "$cgpeak")" \
		"$(mib "$cgcur")" "$(mib "$memlock")" "$c_list" "$c_sync" "$label" | tee -a "$ROWS"
	[ -n "$line" ] && { echo "$line"; grep -m1 'sync: heap' "$log"; } | sed 's/^[^]]*] /#   /' >&2
	stop_pid "$pid" 10
	"$bin" cleanup --backend "$b" --bpf-root "/sys/fs/bpf/$RIG_P-n1" \
		--cgroup-path "$RIG_CG/n1" >/dev/null 2>&1 || true
	[ -n "$cg" ] && rmdir "$cg" 2>/dev/null
	[ -n "${KEEP_LOGS:-}" ] && mkdir -p "$KEEP_LOGS" && cp "$log" "$KEEP_LOGS/agent-$label-$b-$n.log"
}

# snapshot every variant's binary: others rebuild build/ while this runs
VARIANTS=${VARIANTS:-kpx=$KPX_BIN}
VBINS=""
for v in $VARIANTS; do
	cp "${v#*=}" "$RIG_DIR/kpx-${v%%=*}" || exit 1
	VBINS="$VBINS ${v%%=*}=$RIG_DIR/kpx-${v%%=*}"
done
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
T_BEGIN=$(date +%s)
for n in $SIZES; do
	start_server "$n" || exit 1
	for b in $BACKENDS; do
		for v in $VBINS; do
			echo "# scale_bench: ${v%%=*} $b N=$n" >&2
			run_one "${v%%=*}" "${v#*=}" "$b" "$n"
		done
	done
	stop_pid "$SRV_PID" 3
	SRV_PID=""
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- results --------------------------------------------------------------
mkdir -p "$(dirname "$OUT")"
{
	echo "# kpx control plane at scale: memory and first sync (N Services x 10 endpoints)"
	echo
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); host: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); kernel $(uname -r)"
	echo "- commit: $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- userspace bpf nft 2>/dev/null || echo ' (+ uncommitted changes)')"
	echo "- command: \`sudo SIZES=\"$SIZES\" BACKENDS=\"$BACKENDS\" VARIANTS=\"$VARIANTS\" perf/scale_bench.sh\`$([ -n "$EXTRA" ] && echo " with EXTRA=\"$EXTRA\"")"
	echo "- load average (1/5/15 min) before: $LOAD0, after: $LOAD1 (2 cores shared with other sessions); took $(( $(date +%s) - T_BEGIN )) s"
	echo "- source: perf/tools/scale_apiserver.py inside the node's netns over HTTPS (streaming list); per Service 2 EndpointSlices x 5 endpoints, one TCP port: 10 endpoints (5 pods x 2 target ports); ClusterIPs IPv4 up to 32,768 Services, IPv6 beyond"
	[ -n "${NOTE:-}" ] && echo "- note: $NOTE"
	echo
	echo "Times from kpx's log: list = start until the last of the Service/EndpointSlice listings has arrived (decoded into the store); sync = from then until the first full sync has programmed the kernel; first = the two together; the cpu columns are the agent's own CPU seconds in the same two phases (the wall times include waiting for a core on this shared machine, and the list includes the server's sending). Memory: VmHWM (peak) and VmRSS 3 s after the first sync; memcg = the agent's memory cgroup (includes kernel memory charged to it, such as bpf maps); maps = memlock of the pinned bpf maps (preallocated, sized by --bpf-*-max)."
	echo
	echo "| kpx | backend | N | list s | sync s | first s | list cpu s | sync cpu s | RSS peak MiB | RSS MiB | memcg peak MiB | memcg MiB | bpf maps MiB | RSS B/endpoint |"
	echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	awk '{printf "| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %.0f |\n", $13, $1, $2, $3, $4, $5, $11, $12, $6, $7, $8, $9, $10, $7 * 1048576 / ($2 * 10)}' "$ROWS"
	nmax=$(awk '$1 == "bpf" {print $2}' "$ROWS" | sort -n | tail -1)
	if [ -n "$nmax" ] && [ -s "$RIG_DIR/maps-$nmax.txt" ]; then
		echo
		echo "bpf maps at N=$nmax (bytes_memlock from bpftool; the preallocated ones are sized by --bpf-services-max, --bpf-backends-max, --bpf-ct-max, --bpf-affinity-max whatever N is):"
		echo
		echo "| map | type | max_entries | MiB |"
		echo "|---|---|---:|---:|"
		sort -rn "$RIG_DIR/maps-$nmax.txt" | awk '$1 > 0 {printf "| %s | %s | %s | %.1f |\n", $2, $3, $4, $1 / 1048576}'
	fi
} >"$OUT.tmp" && mv "$OUT.tmp" "$OUT"
cp "$ROWS" "${OUT%.md}.dat"
echo "scale_bench: wrote $OUT" >&2

plot_results "$ROWS" "${OUT%.md}"
