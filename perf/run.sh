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
# kpx's memory and first sync at N Services x 10 endpoints from a fake API
# server (perf/tools/scale_apiserver.py): quick profile 1,000 and 10,000
# (about 1 minute), BENCH=full adds 30,000 and 100,000 (about 5 minutes
# more here, longer on a loaded machine).
echo "== perf/scale_bench.sh"
ssizes="1000 10000"
[ "${BENCH:-quick}" = full ] && ssizes="1000 10000 30000 100000"
SIZES=$ssizes bash perf/scale_bench.sh || { echo "benchmark perf/scale_bench.sh failed"; rc=1; }
# kpx against the real kube-proxy (tests/cluster's control plane, make k8s):
# quick profile 1,000 and 10,000 Services (about 15 minutes here),
# BENCH=full adds 30,000 (about 40 minutes more: the API server writes
# 30-100 objects a second on 2 cores).
echo "== perf/kube_proxy_bench.sh"
if make -s k8s; then
	sizes="1000 10000"
	[ "${BENCH:-quick}" = full ] && sizes="1000 10000 30000"
	SIZES=$sizes bash perf/kube_proxy_bench.sh &&
		bash perf/plot_kube_proxy.sh "perf/results/kube-proxy-$(date +%Y-%m-%d).md" ||
		{ echo "benchmark perf/kube_proxy_bench.sh failed"; rc=1; }
else
	echo "benchmark perf/kube_proxy_bench.sh: make k8s failed"
	rc=1
fi
exit $rc
