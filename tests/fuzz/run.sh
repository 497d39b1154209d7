#!/bin/bash
# Runs every libFuzzer target (build-fuzz/fuzz_*, `make fuzz-build`) over
# its corpus for FUZZ_SECONDS each (default 60), or FUZZ_RUNS inputs each
# when set. ASan and UBSan abort on the first error; a leak, a crash, an
# input slower than FUZZ_TIMEOUT s (default 10) or an RSS above
# FUZZ_RSS_MB (default 1024) fails the target.
#
# The committed seeds (tests/fuzz/corpus/<target>/, read only: every past
# crash is one of them, so each run replays them first) are joined by the
# inputs earlier runs found (build-fuzz/corpus/<target>/, not committed).
# A failing input is saved as build-fuzz/artifacts/<target>/crash-* (or
# timeout-*, oom-*, leak-*): fix the code, then commit the input into the
# seed corpus under a name saying what it broke.
#
# One line per target: PASS fuzz/<target>: N execs in S s (N/s), corpus N
# | FAIL fuzz/<target>: why. FUZZ_TARGETS="objects yaml" selects targets.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
B=build-fuzz
SECONDS_EACH=${FUZZ_SECONDS:-60}
rc=0
targets=${FUZZ_TARGETS:-$(for f in tests/fuzz/fuzz_*.c; do t=${f##*/fuzz_}; echo "${t%.c}"; done)}
for t in $targets; do
	bin=$B/fuzz_$t
	seeds=tests/fuzz/corpus/$t
	work=$B/corpus/$t
	art=$B/artifacts/$t
	log=$B/logs/$t.log
	mkdir -p "$work" "$art" "$B/logs"
	if [ ! -x "$bin" ]; then
		echo "FAIL fuzz/$t: $bin not built (make fuzz-build)"
		rc=1
		continue
	fi
	if [ -n "${FUZZ_RUNS:-}" ]; then
		limit=(-runs="$FUZZ_RUNS")
	else
		limit=(-max_total_time="$SECONDS_EACH")
	fi
	start=$(date +%s%N)
	# -close_fd_mask=3: the targets' own output is noise; libFuzzer and
	# the sanitizers keep a private copy of stderr for their reports.
	# Hard bound on the whole run in case the process itself wedges.
	timeout -k 10 $((SECONDS_EACH * 3 + 120)) \
		"$bin" "${limit[@]}" -timeout="${FUZZ_TIMEOUT:-10}" \
		-rss_limit_mb="${FUZZ_RSS_MB:-1024}" -malloc_limit_mb="${FUZZ_RSS_MB:-1024}" \
		-max_len=65536 -close_fd_mask=3 -print_final_stats=1 \
		-artifact_prefix="$art/" "$work" "$seeds" >"$log" 2>&1 </dev/null
	r=$?
	took_ms=$((($(date +%s%N) - start) / 1000000))
	execs=$(awk '/^stat::number_of_executed_units:/ { print $2 }' "$log" | tail -1)
	corpus=$(ls "$work" | wc -l)
	if [ $r -ne 0 ]; then
		why=$(grep -m1 -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|SUMMARY' "$log")
		saved=$(grep -o "Test unit written to [^ ]*" "$log" | tail -1)
		echo "FAIL fuzz/$t: exit $r after ${execs:-?} execs: ${why:-see $log}; ${saved:-no input saved} (log $log)"
		rc=1
	else
		printf 'PASS fuzz/%s: %s execs in %d s (%d/s), corpus %s\n' \
			"$t" "${execs:-0}" $((took_ms / 1000)) \
			$((${execs:-0} * 1000 / (took_ms + 1))) "$corpus"
	fi
done
exit $rc
