#!/bin/bash
# Runs every suite and prints one summary: "N passed, N failed, N skipped".
#   unit         Criterion, no root (build/tests/unit_tests)
#   bpf          BPF_PROG_TEST_RUN fixtures, root (build/tests/bpf_tests)
#   integration  network-namespace rig, root (tests/integration/run.sh)
#   fuzz         every libFuzzer target (tests/fuzz) replays its corpus and
#                fuzzes for KPX_FUZZ_SECONDS (default 10) s; built here
#                (clang, ASan+UBSan, build-fuzz/)
#   sanitize     the unit tests and the API fault tests (t_api_client.sh)
#                built with SANITIZE=1 (gcc ASan+UBSan, build-san/): any
#                sanitizer report fails the test that caused it
# KPX_SUITES="unit bpf integration fuzz sanitize" selects suites.
# Nothing can hang CI: each Criterion binary is bounded by
# KPX_SUITE_TIMEOUT seconds (default 900), each integration file by
# KPX_TEST_TIMEOUT (tests/integration/run.sh); a timeout is a FAIL.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
SUITES=${KPX_SUITES:-"unit bpf fuzz sanitize integration"}
passed=0 failed=0 skipped=0
LOG_DIR=${KPX_TEST_LOGS:-build/test-logs}
mkdir -p "$LOG_DIR"

# Counts the PASS/FAIL/SKIP lines of a suite's log.
count_lines() {
	local p f s
	p=$(grep -c '^PASS ' "$1")
	f=$(grep -c '^FAIL ' "$1")
	s=$(grep -c '^SKIP ' "$1")
	passed=$((passed + p))
	failed=$((failed + f))
	skipped=$((skipped + s))
}

# Builds make targets (quietly, into the log); a FAIL line when it fails.
build_for() {
	local name=$1 out=$2
	shift 2
	if ! timeout -k 10 1800 make -s "$@" >>"$out" 2>&1 </dev/null; then
		echo "FAIL $name: build failed: make $* (see $out)" | tee -a "$out"
		tail -20 "$out"
		return 1
	fi
}

# Criterion's "Synthesis: Tested: N | Passing: N | Failing: N | Crashing: N"
criterion_suite() {
	local name=$1 bin=$2 out line t p f c rc limit=${KPX_SUITE_TIMEOUT:-900}
	out="$LOG_DIR/$name.log"
	if [ ! -x "$bin" ]; then
		echo "FAIL $name: $bin not built"
		failed=$((failed + 1))
		return
	fi
	timeout -k 10 "$limit" "$bin" -j1 >"$out" 2>&1 </dev/null
	rc=$?
	line=$(grep -a 'Synthesis:' "$out" | tail -1)
	if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
		echo "FAIL $name: timed out after ${limit}s (see $out)"
		tail -5 "$out"
		failed=$((failed + 1))
		return
	fi
	if [ -z "$line" ]; then
		echo "FAIL $name: no Criterion synthesis (see $out)"
		tail -20 "$out"
		failed=$((failed + 1))
		return
	fi
	t=$(sed -E 's/.*Tested: ([0-9]+).*/\1/' <<<"$line")
	p=$(sed -E 's/.*Passing: ([0-9]+).*/\1/' <<<"$line")
	f=$(sed -E 's/.*Failing: ([0-9]+).*/\1/' <<<"$line")
	c=$(sed -E 's/.*Crashing: ([0-9]+).*/\1/' <<<"$line")
	grep -a -E '^\[(----|FAIL)\]|Skipping|SKIP' "$out" | head -50
	# Criterion counts skipped tests as neither passing nor failing.
	passed=$((passed + p))
	failed=$((failed + f + c))
	skipped=$((skipped + t - p - f - c))
	echo "$name: $line"
}

for suite in $SUITES; do
	case $suite in
	unit) criterion_suite unit build/tests/unit_tests ;;
	bpf) criterion_suite bpf build/tests/bpf_tests ;;
	integration)
		out="$LOG_DIR/integration.log"
		bash tests/integration/run.sh 2>&1 | tee "$out"
		rc=${PIPESTATUS[0]}
		[ "$rc" -eq 0 ] || echo "FAIL integration: tests/integration/run.sh exited $rc" | tee -a "$out"
		p=$(grep -c '^PASS ' "$out")
		f=$(grep -c '^FAIL ' "$out")
		s=$(grep -c '^SKIP ' "$out")
		passed=$((passed + p))
		failed=$((failed + f))
		skipped=$((skipped + s))
		;;
	fuzz)
		out="$LOG_DIR/fuzz.log"
		: >"$out"
		start=$(date +%s)
		if build_for fuzz "$out" fuzz-build; then
			FUZZ_SECONDS=${KPX_FUZZ_SECONDS:-10} bash tests/fuzz/run.sh 2>&1 |
				tee -a "$out"
		fi
		echo "# fuzz: $(($(date +%s) - start)) s" | tee -a "$out"
		count_lines "$out"
		;;
	sanitize)
		# Its own build dir: never mixed with build/'s objects.
		out="$LOG_DIR/sanitize.log"
		: >"$out"
		start=$(date +%s)
		if build_for sanitize "$out" BUILD=build-san SANITIZE=1 \
			build-san/tests/unit_tests build-san/kpx_k8s_probe; then
			ASAN_OPTIONS=abort_on_error=1:detect_leaks=1 \
				UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
				criterion_suite sanitize-unit build-san/tests/unit_tests
			# t_api_client.sh needs no root: a fake API server on
			# loopback, the probe built with the sanitizers.
			ASAN_OPTIONS=abort_on_error=1:detect_leaks=1 \
				UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
				KPX_PROBE=$PWD/build-san/kpx_k8s_probe \
				timeout -k 10 900 bash tests/integration/t_api_client.sh 2>&1 |
				sed -E 's/^(PASS|FAIL|SKIP) /\1 sanitize\//' |
				tee -a "$out"
			count_lines "$out"
		else
			failed=$((failed + 1))
		fi
		echo "# sanitize: $(($(date +%s) - start)) s" | tee -a "$out"
		;;
	*) echo "unknown suite $suite" >&2; exit 2 ;;
	esac
done

echo
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
