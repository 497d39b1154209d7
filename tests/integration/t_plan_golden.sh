#!/bin/bash
# Golden tests of `kpx plan`: for each tests/golden/NAME/ it runs
#   build/kpx plan --manifests NAME/manifests $(cat NAME/args) -o json
# and compares the output with NAME/expected.json. No root, no kernel state.
# KPX_GOLDEN_UPDATE=1 rewrites expected.json from the current output (review
# the diff before committing it).
set -uo pipefail
cd "$(dirname "$0")/../.."
KPX=${KPX:-build/kpx}
GOLDEN=tests/golden
# shellcheck source=lib/check.sh
. tests/integration/lib/check.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ ! -x "$KPX" ]; then
	echo "FAIL plan_golden: $KPX not built"
	exit 0
fi
snapshot KPX "$tmp" || { echo "FAIL plan_golden: $KPX kept changing for 20 s"; exit 0; }
ncases=0
for dir in "$GOLDEN"/*/; do
	name=$(basename "$dir")
	[ -d "$dir/manifests" ] || continue
	ncases=$((ncases + 1))
	args=""
	[ -f "$dir/args" ] && args=$(cat "$dir/args")
	# shellcheck disable=SC2086 # args is a flag list
	tcall "$KPX" plan --manifests "$dir/manifests" $args -o json \
		>"$tmp/$name.json" 2>"$tmp/$name.err"
	rc=$?
	if [ "$rc" -ne 0 ]; then
		echo "FAIL plan_golden_$name: kpx plan exited $rc: $(tail -1 "$tmp/$name.err")"
		continue
	fi
	if [ "${KPX_GOLDEN_UPDATE:-0}" = 1 ]; then
		cp "$tmp/$name.json" "$dir/expected.json"
		echo "SKIP plan_golden_$name: expected.json rewritten (update mode)"
		continue
	fi
	if [ ! -f "$dir/expected.json" ]; then
		echo "FAIL plan_golden_$name: no expected.json"
		continue
	fi
	if diff -u "$dir/expected.json" "$tmp/$name.json" >"$tmp/$name.diff"; then
		echo "PASS plan_golden_$name"
	else
		echo "FAIL plan_golden_$name: output differs from expected.json:"
		head -40 "$tmp/$name.diff" | sed 's/^/    /'
	fi
	# Cases with bad objects must name them on stderr and still succeed.
	if [ -f "$dir/expect_stderr" ]; then
		while IFS= read -r pat; do
			[ -n "$pat" ] || continue
			if ! grep -qF -- "$pat" "$tmp/$name.err"; then
				echo "FAIL plan_golden_${name}_stderr: no '$pat' on stderr"
				continue 2
			fi
		done <"$dir/expect_stderr"
		echo "PASS plan_golden_${name}_stderr"
	fi
done
# no case found (moved, renamed) must not look like "nothing failed"
[ "$ncases" -gt 0 ] || echo "FAIL plan_golden: no $GOLDEN/*/manifests cases"
exit 0
