#!/bin/bash
# Runs every tests/integration/t_*.sh. Each prints one line per test:
#   PASS name | FAIL name: why | SKIP name: reason
# KPX_TESTS=glob restricts which files run; KPX_BACKENDS="nft bpf" selects
# backends for the scenario files that take one.
set -uo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" -ne 0 ]; then
	echo "SKIP integration: needs root (network namespaces)"
	exit 0
fi
for t in tests/integration/${KPX_TESTS:-t_*.sh}; do
	[ -f "$t" ] || continue
	echo "# $t"
	start=$(date +%s)
	if ! timeout -k 10 900 bash "$t"; then
		echo "FAIL $(basename "$t" .sh): exited non-zero"
	fi
	echo "# $t took $(( $(date +%s) - start ))s"
done
