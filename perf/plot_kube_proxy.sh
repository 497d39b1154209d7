#!/bin/bash
# Plots the last run of perf/kube_proxy_bench.sh in a results file:
# first-sync time and memory per dataplane and size, as PNG next to it,
# and when that run had the latency phase (perf/lib/kp_latency.sh), the
# CDF of the network programming latency, one PNG per size with one curve
# per dataplane, from the raw samples file its table names; when it had
# the datapath phase (perf/lib/kp_datapath.sh), connection rate vs N per
# dataplane (-conn-rate.png) and NodePort packet rate per dataplane
# (-packet-rate.png).
#   bash perf/plot_kube_proxy.sh perf/results/kube-proxy-DATE.md
set -euo pipefail
in=$1
# make bench's own dependency (the test suite does not need it)
if ! command -v gnuplot >/dev/null && [ "$(id -u)" -eq 0 ]; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gnuplot-nox >/dev/null ||
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gnuplot-nox >/dev/null; }
fi
command -v gnuplot >/dev/null || { echo "plot: gnuplot is not installed"; exit 1; }
base=${in%.md}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The last run's first table (the phases' tables follow it):
# | N | dataplane | sync | mem (rss) | peak | cpu |
awk '/^## /{rows=""; t=0; done=0} /^\| [0-9]/ && !done {rows = rows $0 "\n"; t=1}
	/^$/ && t {done=1} END {printf "%s", rows}' "$in" |
	awk -F'|' '{
		gsub(/ /, "", $2); gsub(/ /, "", $3)
		sync = $4; gsub(/[^0-9.]/, "", sync)	# "> 600 s": the bound
		mem = $5; sub(/MiB.*/, "", mem); gsub(/ /, "", mem)
		rss = $5; sub(/.*\(/, "", rss); sub(/MiB.*/, "", rss)
		print $2, $3, sync, mem, rss
	}' >"$tmp/rows"
for n in $(cut -d' ' -f1 "$tmp/rows" | sort -un); do
	awk -v n="$n" '$1 == n {print $2, $3, $4, $5}' "$tmp/rows" >"$tmp/n$n"
done
sizes=$(cut -d' ' -f1 "$tmp/rows" | sort -un | xargs)
plot_one() {	# COLUMN TITLE YLABEL OUT [LOG]
	local col=$1 title=$2 ylab=$3 png=$4 log=${5:-} cmd="" n
	for n in $sizes; do
		cmd="$cmd${cmd:+, }'$tmp/n$n' using $col:xtic(1) title '$n services x 10'"
	done
	gnuplot <<-GP
	set terminal pngcairo size 900,480 noenhanced
	set output '$png'
	set title '$title'
	set ylabel '$ylab'
	set style data histograms
	set style histogram clustered gap 1
	set style fill solid 0.8 border -1
	set grid ytics
	set key top left
	$( [ -n "$log" ] && echo "set logscale y; set yrange [0.5:*]" || echo "set yrange [0:*]" )
	plot $cmd
	GP
}
plot_one 2 "First sync from the dataplane start (real kube-apiserver; a bar at the bound: not synced by then)" "seconds (log)" "$base-first-sync.png" log
plot_one 3 "Memory after the first sync (dataplane cgroup, incl. BPF maps)" "MiB" "$base-memory.png"
plot_one 4 "RSS after the first sync (dataplane cgroup)" "MiB" "$base-rss.png"
echo "plots: $base-first-sync.png $base-memory.png $base-rss.png"

# Datapath phase (perf/lib/kp_datapath.sh), when the last run had it:
# connection rate vs N per dataplane (ClusterIP and NodePort, each with
# the direct floor), and NodePort packet rate per dataplane and mode.
# dp_rows HEADER-START: the last run's rows of the table whose header row
# starts with HEADER-START, as "|"-separated fields without spaces around
dp_rows() {
	awk -v h="$1" '/^## /{rows=""; t=0} index($0, h) == 1 {t=1; next}
		t && /^\| [0-9]/ {rows = rows $0 "\n"} t && /^$/ {t=0}
		END {printf "%s", rows}' "$in" |
		awk -F'|' -v OFS='|' '{for (i = 2; i < NF; i++) {gsub(/^ +| +$/, "", $i)}; print}'
}

plot_dp_conn() {
	local rows=$tmp/dpconn png=$base-conn-rate.png p cmd1="" cmd2="" i=0
	dp_rows "| services x 10 | dataplane | path | conn/s |" >"$rows"
	[ -s "$rows" ] || return 0
	for p in $(awk -F'|' '!s[$3]++ {print $3}' "$rows"); do
		i=$((i + 1))
		awk -F'|' -v p="$p" '$3 == p && $4 ~ /^ClusterIP/ {print $2, $5}' "$rows" | sort -n >"$tmp/dpc-c-$p"
		awk -F'|' -v p="$p" '$3 == p && $4 ~ /^NodePort/ {print $2, $5}' "$rows" | sort -n >"$tmp/dpc-n-$p"
		cmd1="$cmd1${cmd1:+, }'$tmp/dpc-c-$p' using 1:2 with linespoints lw 2 lt $i title '$p'"
		cmd2="$cmd2${cmd2:+, }'$tmp/dpc-n-$p' using 1:2 with linespoints lw 2 lt $i title '$p'"
	done
	# the floor: direct pod to pod, median over the dataplanes' rows
	for k in n1 n2; do
		awk -F'|' -v k="$k" '$4 ~ ("^direct pod " k "p3") {print $2, $5}' "$rows" | sort -n -k1,1 -k2,2 |
			awk '{v[$1] = v[$1] " " $2; c[$1]++} END {for (n in v) {split(v[n], a, " ");
				print n, a[int((c[n] + 1) / 2)]}}' | sort -n >"$tmp/dpc-d-$k"
	done
	cmd1="$cmd1, '$tmp/dpc-d-n1' using 1:2 with linespoints lw 1 dt 2 lc black title 'direct pod to pod (floor)'"
	cmd2="$cmd2, '$tmp/dpc-d-n2' using 1:2 with linespoints lw 1 dt 2 lc black title 'direct pod to pod (floor)'"
	gnuplot <<-GP
	set terminal pngcairo size 1000,520 noenhanced
	set output '$png'
	set multiplot layout 1,2 title 'New TCP connections per second (sequential, one client; median of rounds)'
	set logscale x
	set xlabel 'services x 10 endpoints (log)'
	set ylabel 'connections/s'
	set yrange [0:*]
	set grid xtics ytics
	set key bottom left
	set title 'ClusterIP, from a pod of the node'
	plot $cmd1
	set title 'NodePort, from a pod of another node'
	plot $cmd2
	unset multiplot
	GP
	echo "plot: $png"
}

plot_dp_pkt() {
	local rows=$tmp/dppkt png=$base-packet-rate.png n cmd1="" cmd2="" i=0
	dp_rows "| services x 10 | dataplane | mode | forwarded pps |" >"$rows"
	[ -s "$rows" ] || return 0
	for n in $(awk -F'|' '!s[$2]++ {print $2}' "$rows"); do
		i=$((i + 1))
		# label, forwarded, ceiling, kernel ns/pkt above the ceiling
		awk -F'|' -v n="$n" '$2 == n && $5 ~ /^[0-9]+$/ {a = $10; if (a !~ /^-?[0-9]+$/) a = 0
			l = $3 == "kpx-bpf" ? "kpx-bpf-" $4 : $3 == "kpx-nft" ? "kpx-nft" : "kube-proxy-" $4
			print l, $5, $7, a}' "$rows" >"$tmp/dpp-$n"
		cmd1="$cmd1${cmd1:+, }'$tmp/dpp-$n' using 2:xtic(1) lt $i title 'forwarded, $n services', '' using 3 lt $i fs pattern 4 title 'generator ceiling (same round), $n'"
		cmd2="$cmd2${cmd2:+, }'$tmp/dpp-$n' using 4:xtic(1) lt $i title '$n services x 10'"
	done
	gnuplot <<-GP
	set terminal pngcairo size 1000,820 noenhanced
	set output '$png'
	set multiplot layout 2,1 title 'NodePort UDP forwarding (trafgen, 64-byte frames, DNAT+SNAT to a remote sink)'
	set style data histograms
	set style histogram clustered gap 1
	set style fill solid 0.8 border -1
	set grid ytics
	set key below horizontal
	set xtics rotate by -15
	set yrange [0:*]
	set ylabel 'packets/s at the sink'
	set title 'packet rate (sender CPU does the whole path: generator-bound)'
	plot $cmd1
	set ylabel 'ns'
	set title 'kernel CPU per forwarded packet above the ceiling path (what forwarding through the node adds)'
	plot $cmd2
	unset multiplot
	GP
	echo "plot: $png"
}
plot_dp_conn
plot_dp_pkt

# Programming latency CDF: the raw samples of the last run's latency
# phase (size, dataplane, change, latency ms or "timeout", ...). A
# timeout counts in the denominator, so such a curve ends below 1.
raw=$(awk '/^## /{f=""} /^- raw samples: / {f=$4} END {print f}' "$in")
[ -n "$raw" ] || exit 0
raw=$(dirname "$in")/$raw
[ -s "$raw" ] || { echo "plot: $raw missing"; exit 0; }
for n in $(awk '!/^#/ {print $1}' "$raw" | sort -un); do
	cmd=""
	for p in $(awk -v n="$n" '!/^#/ && $1 == n && !s[$2]++ {print $2}' "$raw"); do
		awk -v n="$n" -v p="$p" '!/^#/ && $1 == n && $2 == p' "$raw" |
			awk '{if ($4 == "timeout") t++; else print $4} END {print "T", t + 0 > "/dev/stderr"}' \
			2>"$tmp/to" | sort -g >"$tmp/lat"
		tot=$(( $(wc -l <"$tmp/lat") + $(awk '{print $2}' "$tmp/to") ))
		awk -v tot="$tot" '{print $1, NR / tot}' "$tmp/lat" >"$tmp/cdf-$n-$p"
		cmd="$cmd${cmd:+, }'$tmp/cdf-$n-$p' using 1:2 with steps lw 2 title '$p'"
	done
	[ -n "$cmd" ] || continue
	gnuplot <<-GP
	set terminal pngcairo size 900,480 noenhanced
	set output '$base-latency-cdf-$n.png'
	set title 'Programming latency: trigger time to first answer of the new endpoint, $n services x 10, under churn'
	set xlabel 'milliseconds (log)'
	set ylabel 'fraction of changes'
	set logscale x
	set yrange [0:1.02]
	set grid xtics ytics mxtics
	set key bottom right
	plot $cmd
	GP
	echo "plot: $base-latency-cdf-$n.png"
done
