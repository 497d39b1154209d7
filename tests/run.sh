#!/bin/bash
# Runs every suite and prints one summary: "N passed, N failed, N skipped".
#   unit         Criterion, no root (build/tests/unit_tests)
#   bpf          BPF_PROG_TEST_RUN fixtures, root (build/tests/bpf_tests)
#   integration  network-namespace rig, root (tests/integration/run.sh)
# KPX_SUITES="unit bpf integration" selects suites.
set -uo pipefail
cd "$(dirname "$0")/.."
SUITES=${KPX_SUITES:-"unit bpf integration"}
passed=0 failed=0 skipped=0
LOG_DIR=${KPX_TEST_LOGS:-build/test-logs}
mkdir -p "$LOG_DIR"

# Criterion's "Synthesis: Tested: N | Passing: N | Failing: N | Crashing: N"
criterion_suite() {
	local name=$1 bin=$2 out line t p f c
	out="$LOG_DIR/$name.log"
	if [ ! -x "$bin" ]; then
		echo "FAIL $name: $bin not built"
		failed=$((failed + 1))
		return
	fi
	"$bin" -j1 >"$out" 2>&1
	line=$(grep -a 'Synthesis:' "$out" | tail -1)
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
		p=$(grep -c '^PASS ' "$out")
		f=$(grep -c '^FAIL ' "$out")
		s=$(grep -c '^SKIP ' "$out")
		passed=$((passed + p))
		failed=$((failed + f))
		skipped=$((skipped + s))
		;;
	*) echo "unknown suite $suite" >&2; exit 2 ;;
	esac
done

echo
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
