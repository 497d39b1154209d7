#!/bin/bash
# Plots the last run of perf/kube_proxy_bench.sh in a results file:
# first-sync time and memory per dataplane and size, as PNG next to it,
# and when that run had the latency phase (perf/lib/kp_latency.sh), the
# CDF of the network programming latency, one PNG per size with one curve
# per dataplane, from the raw samples file its table names.
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
	set title 'Network programming latency, $n services x 10, churn of other changes (trigger time to first answer of the new endpoint)'
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
