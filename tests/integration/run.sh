#!/bin/bash
# Runs every tests/integration/t_*.sh. Each prints one line per test:
#   PASS name | FAIL name: why | SKIP name: reason
# KPX_TESTS=glob restricts which files run; KPX_BACKENDS="nft bpf" selects
# backends for the scenario files that take one.
#
# Every file is bounded: after KPX_TEST_TIMEOUT seconds (default 600) it is
# sent SIGTERM (its EXIT trap cleans up), SIGKILL 10 s later. A file is
# reported as "FAIL <file>: why" when it timed out, died of a signal,
# exited non-zero or printed no check line at all. A file that needs more
# says so in a "# kpx-test-timeout: SECS" line (the larger bound wins).
# Afterwards whatever it left behind (netns, cgroups, pins, processes, /tmp
# dirs named after its PID) is swept; a file that was not killed and left
# something fails too (its trap missed it). KPX_KEEP_RIG / KPX_TEST_KEEP
# keep state on purpose and turn that check off.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
# shellcheck source=lib/check.sh
. tests/integration/lib/check.sh
if [ "$(id -u)" -ne 0 ]; then
	echo "SKIP integration: needs root (network namespaces)"
	exit 0
fi
LIMIT=${KPX_TEST_TIMEOUT:-600}
TP=""
trap '[ -n "$TP" ] && kill -TERM "$TP" 2>/dev/null; exit 130' INT TERM
for t in tests/integration/${KPX_TESTS:-t_*.sh}; do
	[ -f "$t" ] || continue
	name=$(basename "$t" .sh)
	echo "# $t"
	start=$(date +%s)
	out=$(mktemp /tmp/kpx-run.XXXXXX)
	limit=$(sed -n 's/^# kpx-test-timeout: *\([0-9][0-9]*\).*/\1/p' "$t" | head -1)
	[ -n "$limit" ] && [ "$limit" -gt "$LIMIT" ] || limit=$LIMIT
	# Output goes to a file, not a pipe: a process the test leaves behind
	# would hold a pipe open and hang this loop. bash -c records the PID
	# the test runs as (it execs the test) for the sweep below.
	timeout -k 10 "$limit" bash -c 'echo $$ >"$0"; exec bash "$1"' "$out.pid" "$t" \
		>"$out" 2>&1 </dev/null &
	TP=$!
	tail -n +1 -f --pid="$TP" "$out" 2>/dev/null
	wait "$TP"
	rc=$?
	TP=""
	took=$(($(date +%s) - start))
	killed=0
	if [ $rc -eq 124 ] || { [ $rc -eq 137 ] && [ $took -ge "$limit" ]; }; then
		echo "FAIL $name: timed out after ${limit}s (killed; checks after the last line above did not run)"
		killed=1
	elif [ $rc -gt 128 ]; then
		echo "FAIL $name: killed by signal $((rc - 128))"
		killed=1
	elif [ $rc -ne 0 ]; then
		echo "FAIL $name: exited $rc"
	elif ! grep -qE '^(PASS|FAIL|SKIP) ' "$out"; then
		echo "FAIL $name: printed no check result"
	fi
	tpid=$(cat "$out.pid" 2>/dev/null)
	if [ -n "$tpid" ]; then
		# the test is gone: what carries its PID is stale now
		kpx_sweep_stale "$tpid" 2>/dev/null
		if [ -n "$SWEPT" ] && [ $killed = 0 ] &&
			[ -z "${KPX_KEEP_RIG:-}${KPX_TEST_KEEP:-}" ]; then
			echo "FAIL $name: left behind after exiting:$SWEPT"
		elif [ -n "$SWEPT" ]; then
			echo "# swept what $name left:$SWEPT"
		fi
	fi
	rm -f "$out" "$out.pid"
	echo "# $t took ${took}s"
done
