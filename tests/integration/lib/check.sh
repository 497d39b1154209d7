# shellcheck shell=bash
# Shared helpers of tests/integration/t_*.sh (rig.sh sources this file too).
# The names below are stable: test files rely on them.
#
# Check lines, one per check (run.sh and tests/run.sh count them; the names
# are compared across runs, so a check keeps its name):
#   CHECK_PREFIX           prefix of every check name ("nft", "bpf_socklb",
#                          "np-tc"...); empty: bare names
#   pass NAME [NOTE]       "PASS PREFIX/NAME", NOTE on a "#   " line below
#   fail NAME WHY          "FAIL PREFIX/NAME: WHY"
#   skip NAME WHY          "SKIP PREFIX/NAME: WHY"
#                          (pass/fail/skip are left alone when the sourcing
#                          file defined its own before)
#   check_rc NAME RC WHY   pass when RC is 0, else fail with WHY
#   check_why NAME WHY     pass when WHY is empty, else fail with WHY
#   is_uint V...           every V is a non-negative integer; guard for
#                          numeric comparisons, so that an empty value (a
#                          failed call) fails a check instead of making
#                          `[ "" -gt N ]` error out into the pass branch
# Preconditions (print one line for the whole file and exit 0):
#   need_root NAME         SKIP NAME when not root
#   need_tools NAME TOOL.. SKIP NAME when a tool is not installed
#   need_files NAME FILE.. FAIL NAME when a build product is missing
# Bounded waiting and processes:
#   T_CALL                 seconds one client call may take (default 20)
#   tcall CMD...           CMD under `timeout -k 2 $T_CALL` (rc 124: timeout)
#   wait_until SECS CMD... polls CMD (output discarded) every 0.1 s; 0 when
#                          it succeeded within SECS. A timeout is a failure.
#   stop_pid PID [SECS]    SIGTERM, up to SECS (5) for it to exit, SIGKILL,
#                          reap; never blocks longer than SECS + 1
#   snapshot VAR DIR       copies the binary named by $VAR into DIR and
#                          points VAR at the copy: others rebuild build/
#                          while tests run, and a file being linked fails
#                          to exec (EACCES/ETXTBSY) or is half written.
#                          Waits (<= 20 s) for a file not written for 1 s.
# Leftovers of runs that were killed (SIGKILL skips the EXIT trap):
#   kpx_sweep_stale [PID]  removes what earlier test runs left behind:
#                          processes, network namespaces, bpffs pin dirs,
#                          child cgroups and /tmp dirs whose name carries an
#                          owner PID that is no longer running (see
#                          _sweep_owner for the names). With PID: only that
#                          (dead) owner's objects. Objects of live owners
#                          (tests of other people running right now) are
#                          never touched. Sets SWEPT to what it removed.
#                          Runs once per test process unless PID is given.

CHECK_PREFIX=${CHECK_PREFIX:-}
T_CALL=${T_CALL:-20}

_check_name() { echo "${CHECK_PREFIX:+$CHECK_PREFIX/}$1"; }
# A file that defined its own pass/fail/skip before sourcing this one (or
# rig.sh) keeps them.
declare -F pass >/dev/null || pass() {
	echo "PASS $(_check_name "$1")"
	[ -n "${2:-}" ] && echo "#   $2"
	return 0
}
declare -F fail >/dev/null || fail() { echo "FAIL $(_check_name "$1"): ${2:-}"; }
declare -F skip >/dev/null || skip() { echo "SKIP $(_check_name "$1"): ${2:-}"; }
check_rc() { if [ "$2" -eq 0 ] 2>/dev/null; then pass "$1"; else fail "$1" "$3"; fi; }
check_why() { if [ -z "$2" ]; then pass "$1"; else fail "$1" "$2"; fi; }

is_uint() {
	local v
	[ $# -gt 0 ] || return 1
	for v in "$@"; do
		[[ $v =~ ^[0-9]+$ ]] || return 1
	done
}

need_root() {
	[ "$(id -u)" -eq 0 ] && return 0
	skip "$1" "needs root (network namespaces)"
	exit 0
}
need_tools() {
	local name=$1 t
	shift
	for t in "$@"; do
		command -v "$t" >/dev/null && continue
		skip "$name" "$t not installed"
		exit 0
	done
}
need_files() {
	local name=$1 f
	shift
	for f in "$@"; do
		[ -e "$f" ] && continue
		fail "$name" "$f missing (make all)"
		exit 0
	done
}

tcall() { timeout -k 2 "$T_CALL" "$@"; }

wait_until() {
	local t=$1 end
	shift
	end=$(($(date +%s%N) + t * 1000000000))
	while [ "$(date +%s%N)" -lt "$end" ]; do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}

stop_pid() {
	local pid=$1 t=${2:-5} i
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
	for ((i = 0; i < t * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null
	# wait only reaps our own children; a stray PID returns at once
	wait "$pid" 2>/dev/null
	return 0
}

snapshot() {
	local var=$1 dir=$2 src=${!1} dst i m0 m1
	dst=$dir/$(basename "$src")
	for ((i = 0; i < 200; i++)); do
		m0=$(stat -c %Y "$src" 2>/dev/null)
		if [ -x "$src" ] && [ -n "$m0" ] && [ $(($(date +%s) - m0)) -ge 1 ] &&
			cp "$src" "$dst" 2>/dev/null && m1=$(stat -c %Y "$src" 2>/dev/null) &&
			[ "$m0" = "$m1" ]; then
			printf -v "$var" '%s' "$dst"
			return 0
		fi
		sleep 0.1
	done
	echo "# snapshot: $src not stable for 20 s" >&2
	return 1
}

# ---- sweeping leftovers of killed runs --------------------------------

# _sweep_owner KIND NAME: prints the owner PID encoded in NAME when NAME is
# one of the test object names below, else fails. KIND: netns | pin |
# cgroup | tmp. Names (P is the owner's $$; rig.sh: RIG_P = k<P>[letter],
# t_operate.sh: ko<P><letter>):
#   rig.sh         netns <RIG_P>{f,x,n<i>,n<i>p<j>}; pins <RIG_P>-n<i>;
#                  cgroup <RIG_P>/ (node subdirs); tmp kpx-rig-<RIG_P>.*
#   t_bpf_socklb   netns kpxslN<P>, kpxslP<P>; pins and cgroup kpxsl<P>;
#                  tmp kpx-socklb-<P>.*
#   t_deploy       netns kpx-deploy-<P>; pins kpx-deploy-<P>;
#                  tmp kpx-deploy-<P>.*
#   t_api_client   tmp kpx-api-<P>.* (its server and probe are found by it)
# The patterns are anchored so that other tools' names (perf/: kpxcb<P>,
# kpxcr?<P>, kfr<P>, kpxnb<P>) never match.
_sweep_owner() {
	local kind=$1 name=$2 re
	case $kind in
	netns) re='^(ko?([0-9]+)[a-z]?(f|x|n[0-9]|n[0-9]p[0-9])|kpxsl[NP]([0-9]+)|kpx-deploy-([0-9]+))$' ;;
	pin) re='^(ko?([0-9]+)[a-z]?-n[0-9]|kpxsl([0-9]+)|kpx-deploy-([0-9]+))$' ;;
	cgroup) re='^(ko?([0-9]+)[a-z]?|kpxsl([0-9]+))$' ;;
	tmp) re='^kpx-(rig-ko?([0-9]+)[a-z]?|socklb-([0-9]+)|deploy-([0-9]+)|api-([0-9]+))\.[A-Za-z0-9]+$' ;;
	*) return 1 ;;
	esac
	[[ $name =~ $re ]] || return 1
	local m
	for m in "${BASH_REMATCH[@]:2}"; do
		[[ $m =~ ^[0-9]+$ ]] && { echo "$m"; return 0; }
	done
	return 1
}

# _sweep_stale_owner PID [ONLY]: PID is no longer running (and is ONLY when
# that is given). /proc/PID existing (also a zombie, or a PID we may not
# signal) counts as running: when in doubt, leave it.
_sweep_stale_owner() {
	[ -n "$1" ] && [ "$1" -gt 1 ] 2>/dev/null || return 1
	[ -z "${2:-}" ] || [ "$1" = "$2" ] || return 1
	[ ! -d "/proc/$1" ]
}

# _sweep_cg_procs DIR: PIDs in cgroup DIR and its descendants
_sweep_cg_procs() { find "$1" -name cgroup.procs -exec cat {} + 2>/dev/null; }

SWEPT=""
_KPX_SWEPT_BY=""
kpx_sweep_stale() {
	local only=${1:-} ns pid owner d name markers=() kill_pids=() ns_list=() cg_list=() pin_list=() tmp_list=()
	local cgmnt=/sys/fs/cgroup/unified
	SWEPT=""
	if [ -z "$only" ]; then
		[ "$_KPX_SWEPT_BY" = "$BASHPID" ] && return 0
		_KPX_SWEPT_BY=$BASHPID
	fi
	if [ "$(id -u)" -eq 0 ]; then
		for ns in $(ip netns list 2>/dev/null | awk '{ print $1 }'); do
			owner=$(_sweep_owner netns "$ns") || continue
			_sweep_stale_owner "$owner" "$only" || continue
			ns_list+=("$ns")
			# shellcheck disable=SC2207 # PIDs: one word each
			kill_pids+=($(ip netns pids "$ns" 2>/dev/null))
		done
		for d in /sys/fs/bpf/*/; do
			[ -d "$d" ] || continue
			name=$(basename "$d")
			owner=$(_sweep_owner pin "$name") || continue
			_sweep_stale_owner "$owner" "$only" || continue
			pin_list+=("${d%/}")
			markers+=("/sys/fs/bpf/$name")
		done
		for d in "$cgmnt"/*/; do
			[ -d "$d" ] || continue
			name=$(basename "$d")
			owner=$(_sweep_owner cgroup "$name") || continue
			_sweep_stale_owner "$owner" "$only" || continue
			cg_list+=("${d%/}")
			# shellcheck disable=SC2207 # PIDs: one word each
			kill_pids+=($(_sweep_cg_procs "$d"))
		done
	fi
	for d in /tmp/kpx-*/; do
		[ -d "$d" ] || continue
		name=$(basename "$d")
		owner=$(_sweep_owner tmp "$name") || continue
		_sweep_stale_owner "$owner" "$only" || continue
		tmp_list+=("${d%/}")
		markers+=("${d%/}")
	done
	# Processes outside those netns/cgroups that still use a stale path
	# (an agent whose netns was already deleted, the fake API server).
	if [ ${#markers[@]} -gt 0 ]; then
		local p comm cmd mk
		for p in /proc/[0-9]*; do
			pid=${p#/proc/}
			comm=$(cat "$p/comm" 2>/dev/null) || continue
			case $comm in kpx | kpx_* | python3 | nft | nsenter | socat | node) ;; *) continue ;; esac
			cmd=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) || continue
			for mk in "${markers[@]}"; do
				# "$mk" then a separator: kpxsl12 must not match kpxsl123
				[[ $cmd == *"$mk"[\ /]* ]] && { kill_pids+=("$pid"); break; }
			done
		done
	fi
	[ ${#ns_list[@]} -eq 0 ] && [ ${#cg_list[@]} -eq 0 ] && [ ${#pin_list[@]} -eq 0 ] &&
		[ ${#tmp_list[@]} -eq 0 ] && return 0
	for pid in "${kill_pids[@]}"; do
		[ "$pid" != "$$" ] && [ "$pid" != "$BASHPID" ] && kill -KILL "$pid" 2>/dev/null
	done
	[ ${#kill_pids[@]} -gt 0 ] && sleep 0.2
	for ns in "${ns_list[@]}"; do ip netns del "$ns" 2>/dev/null && SWEPT+=" netns:$ns"; done
	for d in "${cg_list[@]}"; do
		# children first; a cgroup with live processes stays (reported)
		find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
		[ -d "$d" ] && echo "# sweep: cannot remove cgroup $d: $(_sweep_cg_procs "$d" | tr '\n' ' ')" >&2
		[ -d "$d" ] || SWEPT+=" cgroup:$d"
	done
	for d in "${pin_list[@]}"; do rm -rf "$d" 2>/dev/null && SWEPT+=" pins:$d"; done
	for d in "${tmp_list[@]}"; do rm -rf "$d" 2>/dev/null && SWEPT+=" tmp:$d"; done
	[ ${#kill_pids[@]} -gt 0 ] && SWEPT+=" killed:$(printf "%s\n" "${kill_pids[@]}" | sort -u | wc -l)"
	[ -n "$SWEPT" ] && echo "# sweep: leftovers of dead test runs removed:$SWEPT" >&2
	return 0
}
