#!/bin/bash
# `make bench`: runs every benchmark in perf/ and records results under
# perf/results/ (each script writes its own dated file with CPU and commit).
# All traffic stays inside network namespaces the scripts create.
set -uo pipefail
cd "$(dirname "$0")/.."
rc=0
for b in perf/plan_bench.sh perf/nft_bench.sh perf/connect_bench.sh perf/pktrate.sh perf/clusterip_rate.sh perf/nft_floor.sh perf/fwd_rate.sh perf/sync_latency.sh; do
	[ -f "$b" ] || continue
	echo "== $b"
	bash "$b" || { echo "benchmark $b failed"; rc=1; }
done
exit $rc
