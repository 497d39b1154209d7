# shellcheck shell=bash
# Shared helpers of the connection-rate benchmarks (perf/clusterip_rate.sh,
# perf/nft_bench.sh, perf/nft_floor.sh): sourced, not run. Owns only these
# functions and the QUIET_WAIT / QUIET_PCT settings.
#
# The VM is shared: another job's CPU burst during a run halves its rate.
# quiet waits (at most QUIET_WAIT s) until all CPUs were at most QUIET_PCT %
# busy over 300 ms before a run; it returns 1 when they never were, so a
# caller can count runs that started on a busy machine.
QUIET_WAIT=${QUIET_WAIT:-10}
QUIET_PCT=${QUIET_PCT:-20}

cpu_busy() {	# -> busy percent of all CPUs over 300 ms
	local a b
	a=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $5 + $6 }' /proc/stat)
	sleep 0.3
	b=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $5 + $6 }' /proc/stat)
	awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ")
		bu = y[1] - x[1]; id = y[2] - x[2]
		printf "%d", (bu + id > 0) ? 100 * bu / (bu + id) : 0 }'
}
quiet() {
	local end=$(($(date +%s) + QUIET_WAIT))
	while :; do
		[ "$(cpu_busy)" -le "$QUIET_PCT" ] && return 0
		[ "$(date +%s)" -ge "$end" ] && return 1
	done
}
# stats V... -> "median best min max" (integers)
stats() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END {
	m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
	printf "%d %d %d %d", m, v[NR], v[1], v[NR] }'; }
# pct A B -> "NN %" (A as a percentage of B)
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.0f %%", 100 * a / b; else print "-" }'; }
# paired "A1 A2..." "B1 B2..." -> "M % (MIN % - MAX %)": the median of the
# per-round ratios Ai/Bi, each taken within one round so drift cancels.
paired() {
	awk -v a="$1" -v b="$2" 'BEGIN { n = split(a, x, " "); split(b, y, " ")
		for (i = 1; i <= n; i++) r[i] = y[i] > 0 ? x[i] / y[i] : 0
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (r[j] < r[i]) { t = r[i]; r[i] = r[j]; r[j] = t }
		m = n % 2 ? r[(n + 1) / 2] : (r[n / 2] + r[n / 2 + 1]) / 2
		printf "%.0f %% (%.0f %% - %.0f %%)", 100 * m, 100 * r[1], 100 * r[n] }'
}
# round_order ROUND "A B C" -> the list, reversed on even rounds, so no
# configuration always runs first (or last) after the quiet gate.
round_order() {
	if [ $(($1 % 2)) -eq 0 ]; then tr ' ' '\n' <<<"$2" | tac | tr '\n' ' '
	else printf '%s' "$2"; fi
}
# echo_rate NETNS CLIENT-ARGS... -> connections/s of "$TMP/kpx_echo client
# -n $CONNS" run (under $RUNAS) in NETNS; 0, and the client's output on
# stderr, when a connection failed or not all 10 endpoints answered.
echo_rate() {
	local ns=$1 out ok r
	shift
	# shellcheck disable=SC2086
	out=$(nsenter --net=/run/netns/"$ns" $RUNAS "$TMP/kpx_echo" client "$@" -n "$CONNS" \
		--time --timeout-ms 1000 --max-fail 20 2>&1)
	ok=$(awk '$1 == "ok" { print $2 }' <<<"$out")
	r=$(awk '$1 == "rate" { print $2 }' <<<"$out")
	if [ "${ok:-0}" != "$CONNS" ] || [ "$(grep -c '^id ' <<<"$out")" != 10 ]; then
		echo "rate $ns $*: $(grep -v '^src' <<<"$out" | tr '\n' ' ' | cut -c1-200)" >&2
		r=0
	fi
	echo "${r:-0}"
}
