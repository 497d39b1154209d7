#!/bin/bash
# Control-plane scale: time of `kpx plan` (load manifests + decode + store +
# plan + JSON) on generated clusters, and the plan alone for a one-endpoint
# change (full build vs incremental update); no kernel access.
# Records perf/results/plan-<date>.md.
set -euo pipefail
cd "$(dirname "$0")/.."
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
out=perf/results/plan-$(date +%Y-%m-%d).md
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
{
	echo "# kpx plan scale benchmark"
	echo
	echo "- date: $(date -u +%FT%TZ)"
	echo "- cpu: $cpu ($(nproc) cores)"
	echo "- commit: $commit"
	echo "- command: bash perf/plan_bench.sh (best of 3 runs of"
	echo "  \`build/kpx plan --manifests DIR --hostname-override node-1 --node-ip 198.18.0.11 -o json\`)"
	echo
	echo "| services | endpoints/service | objects | wall s (best of 3) | max RSS MiB |"
	echo "|---:|---:|---:|---:|---:|"
} >"$out"
for n in 1000 10000; do
	dir="$TMP/m$n"
	python3 perf/tools/gen_manifests.py --services "$n" --endpoints 10 --out "$dir" >/dev/null
	best=""
	rss=0
	for _ in 1 2 3; do
		/usr/bin/time -f '%e %M' -o "$TMP/time" build/kpx plan --manifests "$dir" \
			--hostname-override node-1 --node-ip 198.18.0.11 -o json >/dev/null 2>"$TMP/err"
		read -r s kb <"$TMP/time"
		if [ -z "$best" ] || awk "BEGIN{exit !($s < $best)}"; then best=$s; fi
		rss=$((kb / 1024))
	done
	echo "| $n | 10 | $((n * 2)) | $best | $rss |" >>"$out"
	echo "plan: $n services x 10 endpoints: ${best}s"
done

# The plan alone, in process: a full build vs the incremental update after
# a one-endpoint change (build/kpx_plan_bench; also checks they agree).
make -s build/kpx_plan_bench >/dev/null || exit 1
{
	echo
	echo "One-endpoint change, plan only (\`build/kpx_plan_bench DIR --changes 20\`:"
	echo "kpx_plan_update + commit vs kpx_plan_build, min / median / max ms of 20):"
	echo
	echo "| services | endpoints/service | full build ms | incremental update ms |"
	echo "|---:|---:|---:|---:|"
} >>"$out"
for n in ${PLAN_BENCH_INC_SIZES:-1000 10000 30000}; do
	dir="$TMP/i$n"
	python3 perf/tools/gen_manifests.py --services "$n" --endpoints 10 --out "$dir" >/dev/null
	build/kpx_plan_bench "$dir" --changes 20 >"$TMP/pb" || exit 1
	full=$(awk '$1 == "full_build" { printf "%s / %s / %s", $2, $3, $4 }' "$TMP/pb")
	inc=$(awk '$1 == "incremental_update" { printf "%s / %s / %s", $2, $3, $4 }' "$TMP/pb")
	echo "| $n | 10 | $full | $inc |" >>"$out"
	echo "plan: $n services x 10 endpoints: full $full ms, incremental $inc ms"
	rm -rf "$dir"
done
echo "recorded in $out"
