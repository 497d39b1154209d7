# shellcheck shell=bash
# Integration rig: two kpx "nodes" with "pods" and an external client, all in
# network namespaces this library creates (no link to host interfaces, no
# route out of the machine). Source it, then rig_up; rig_down runs from the
# EXIT trap that rig_up installs (idempotent, also after failures).
#
# Addressing (prefix P = "k<pid>", netns names <= 15 chars):
#
#   ${P}f    fabric: bridge br0; ports n1, n2, x (veth peers of the others)
#   ${P}n1   node n1: eth0 198.18.0.11/24 fd00:18::11/64
#   ${P}n2   node n2: eth0 198.18.0.12/24 fd00:18::12/64
#   ${P}x    external client: eth0 198.18.0.100/24 fd00:18::100/64
#   ${P}n1p1..p3  pods of n1: 198.19.1.11-13/32, fd00:19:1::11-13/128
#   ${P}n2p1..p3  pods of n2: 198.19.2.11-13/32, fd00:19:2::11-13/128
#
# Pods are routed (no bridge): each pod's eth0 pairs with node iface p<i>;
# the node side carries the gateway 198.19.<n>.1/32 and fd00:19:<n>::1/128,
# pods default-route via it (onlink). Nodes route the other node's pod CIDR
# (198.19.<m>.0/24, fd00:19:<m>::/64) via its node IP. Agents get
# --cluster-cidr 198.19.0.0/16,fd00:19::/32 (a /48 would not cover
# fd00:19:1::). Nodes also have on-link routes for the ClusterIP range 198.18.100.0/24 / fd00:18:100::/64 and the
# external/LB range 198.18.200.0/24 / fd00:18:200::/64 so that local
# sockets reach the output hook. EXT routes those two ranges via n1
# (rig_ext_via n2 switches). Forwarding on, rp_filter off.
#
# bpf: every process of a node (agent, pod servers, pod clients) runs in the
# child cgroup /sys/fs/cgroup/unified/$P/<node>, entered by writing the PID
# to cgroup.procs before exec'ing `nsenter --net=/run/netns/NS`; never
# `ip netns exec` (private /sys, no cgroup2/bpffs). Pins: /sys/fs/bpf/$P-<node>.
#
# Environment: KPX_BACKEND=nft|bpf (default nft), KPX_BIN (build/kpx),
# KPX_ECHO (build/kpx_echo). State: $RIG_DIR (logs, manifests, sockets).
# rig_up snapshots KPX_BIN and KPX_ECHO into $RIG_DIR (use those variables,
# not build/, after it) and first sweeps what killed runs left (every name
# above carries the owner's PID: lib/check.sh kpx_sweep_stale). Sourcing
# this file sources lib/check.sh (wait_until, stop_pid, pass/fail/skip).

RIG_ROOT=${RIG_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)}
# shellcheck source=check.sh
. "$(dirname "${BASH_SOURCE[0]}")/check.sh"
KPX_BIN=${KPX_BIN:-$RIG_ROOT/build/kpx}
KPX_ECHO=${KPX_ECHO:-$RIG_ROOT/build/kpx_echo}
KPX_BACKEND=${KPX_BACKEND:-nft}
RIG_P=${RIG_P:-k$$}
RIG_CG_MNT=/sys/fs/cgroup/unified
RIG_CG=$RIG_CG_MNT/$RIG_P
RIG_NODES="n1 n2"
RIG_PODS_PER_NODE=3
RIG_DIR=""
RIG_MANIFESTS=""
RIG_UP=0
RIG_OWNER=""

# rig_alive: the rig's namespaces and state dir still exist
rig_alive() { [ -d "$RIG_DIR" ] && [ -e "/run/netns/${RIG_P}n1" ] && [ -e "/run/netns/${RIG_P}f" ]; }

rig_log() { echo "# rig: $*" >&2; }

rig_ns() { echo "${RIG_P}$1"; }		# rig_ns n1 | x | f | n1p2

rig_node_ip4() { case $1 in n1) echo 198.18.0.11 ;; n2) echo 198.18.0.12 ;; esac; }
rig_node_ip6() { case $1 in n1) echo fd00:18::11 ;; n2) echo fd00:18::12 ;; esac; }
rig_node_idx() { echo "${1#n}"; }
rig_pod_ip4() { echo "198.19.$(rig_node_idx "$1").$((10 + $2))"; }	# NODE IDX
rig_pod_ip6() { echo "fd00:19:$(rig_node_idx "$1")::$((10 + $2))"; }
RIG_EXT_IP4=198.18.0.100
RIG_EXT_IP6=fd00:18::100

# Runs CMD in netns NS (no cgroup change). For quick one-shot commands.
rig_exec() {
	local ns=$1
	shift
	nsenter --net=/run/netns/"$(rig_ns "$ns")" "$@"
}

# Runs CMD in NODE's cgroup and netns NETNS (default: the node's), foreground.
rig_node_exec() {
	local node=$1 netns=$2
	shift 2
	local cg=$RIG_CG/$node
	[ -d "$cg" ] || cg=""
	RIG_CGP=$cg RIG_NSP=/run/netns/$(rig_ns "$netns") \
		bash -c '[ -n "$RIG_CGP" ] && echo $$ > "$RIG_CGP/cgroup.procs"; exec nsenter --net="$RIG_NSP" "$@"' rig "$@"
}

# Background variant; prints nothing, records the PID; $RIG_LAST_PID is it.
rig_node_bg() {
	local node=$1 netns=$2 log=$3
	shift 3
	local cg=$RIG_CG/$node
	[ -d "$cg" ] || cg=""
	RIG_CGP=$cg RIG_NSP=/run/netns/$(rig_ns "$netns") \
		bash -c '[ -n "$RIG_CGP" ] && echo $$ > "$RIG_CGP/cgroup.procs"; exec nsenter --net="$RIG_NSP" "$@"' rig "$@" >"$log" 2>&1 &
	disown $! 2>/dev/null
	RIG_LAST_PID=$!
	echo "$RIG_LAST_PID" >>"$RIG_DIR/pids"
}

# rig_pod_run NODE POD CMD...: background process in pod POD (1..3) of NODE.
rig_pod_run() {
	local node=$1 pod=$2
	shift 2
	rig_node_bg "$node" "${node}p$pod" "$RIG_DIR/pod-$node-p$pod.$(date +%s%N).log" "$@"
}

# rig_pod_exec NODE POD CMD...: foreground in the pod (in the node cgroup).
rig_pod_exec() {
	local node=$1 pod=$2
	shift 2
	rig_node_exec "$node" "${node}p$pod" "$@"
}

# rig_ext_exec CMD...: foreground in the external client netns.
rig_ext_exec() { rig_exec x "$@"; }

# Starts a kpx_echo server in every pod (identity NODE-pIDX) on PORTS.
rig_pod_servers() {
	local ports=$1 node i
	for node in $RIG_NODES; do
		for i in $(seq 1 $RIG_PODS_PER_NODE); do
			rig_pod_run "$node" "$i" "$KPX_ECHO" server --id "$node-p$i" --port "$ports"
		done
	done
}

rig_wait_until() { wait_until "$@"; }	# TIMEOUT_S CMD...: lib/check.sh

# rig_manifest_write FILE <<YAML : atomically (rename) into the manifests dir.
rig_manifest_write() {
	local f=$1
	cat >"$RIG_DIR/.tmp.$f"
	mv -f "$RIG_DIR/.tmp.$f" "$RIG_MANIFESTS/$f"
}
rig_manifest_rm() { rm -f "$RIG_MANIFESTS/$1"; }
rig_manifest_clear() { rm -f "$RIG_MANIFESTS"/*; }

rig_agent_start() {	# NODE [extra flags]
	local node=$1
	shift
	rig_node_bg "$node" "$node" "$RIG_DIR/agent-$node.log.tmp" \
		"$KPX_BIN" run --manifests "$RIG_MANIFESTS" --backend "$KPX_BACKEND" \
		--hostname-override "$node" \
		--node-ip "$(rig_node_ip4 "$node"),$(rig_node_ip6 "$node")" \
		--cluster-cidr 198.19.0.0/16,fd00:19::/32 \
		--state-socket "$RIG_DIR/$node.sock" \
		--bpf-root "/sys/fs/bpf/$RIG_P-$node" \
		--cgroup-path "$RIG_CG/$node" \
		--devices eth0 \
		--healthz-bind-address "$(rig_node_ip4 "$node"):10256" \
		--metrics-bind-address "$(rig_node_ip4 "$node"):10249" \
		--min-sync-period 100ms -v 1 "$@"
	echo "$RIG_LAST_PID" >"$RIG_DIR/agent-$node.pid"
	# keep every run's log: append the tmp log on stop
	ln -sf "agent-$node.log.tmp" "$RIG_DIR/agent-$node.log"
}

rig_agent_pid() { cat "$RIG_DIR/agent-$1.pid" 2>/dev/null; }

rig_agent_stop() {	# NODE: SIGTERM, wait up to 5 s
	local pid
	pid=$(rig_agent_pid "$1") || return 0
	[ -n "$pid" ] || return 0
	stop_pid "$pid" 5
	cat "$RIG_DIR/agent-$1.log.tmp" >>"$RIG_DIR/agent-$1.all.log" 2>/dev/null
	rm -f "$RIG_DIR/agent-$1.pid"
}

rig_agent_kill9() {
	local pid
	pid=$(rig_agent_pid "$1") || return 0
	[ -n "$pid" ] || return 0
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	cat "$RIG_DIR/agent-$1.log.tmp" >>"$RIG_DIR/agent-$1.all.log" 2>/dev/null
	rm -f "$RIG_DIR/agent-$1.pid"
}

rig_agent_alive() { local p; p=$(rig_agent_pid "$1") && [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

# Waits until the agent answers on its state socket and has synced once.
rig_agent_wait_synced() {	# NODE [TIMEOUT]
	local node=$1 t=${2:-10}
	rig_wait_until "$t" _rig_synced "$node"
}
_rig_synced() {
	rig_agent_alive "$1" || return 1
	[ "$(rig_agent_field "$1" syncs_total)" -ge "${2:-1}" ] 2>/dev/null &&
		[ "$(rig_agent_field "$1" pending_service_changes)" = 0 ] &&
		[ "$(rig_agent_field "$1" pending_endpoint_changes)" = 0 ]
}
# rig_agent_field NODE KEY: a top-level field of `kpx status -o json`
rig_agent_field() {
	timeout -k 1 5 "$KPX_BIN" status --state-socket "$RIG_DIR/$1.sock" -o json 2>/dev/null |
		jq -r ".agent.$2" 2>/dev/null
}
# rig_sync_all [TIMEOUT]: after a manifest change, waits until every running
# agent has synced again (min-sync-period is 100 ms) and nothing is pending.
rig_sync_all() {
	local t=${1:-10} node n
	sleep 0.3
	for node in $RIG_NODES; do
		rig_agent_alive "$node" || continue
		n=$(rig_agent_field "$node" syncs_total)
		rig_wait_until "$t" _rig_synced "$node" "${n:-1}" || return 1
	done
}

rig_ext_via() {	# NODE: EXT's ClusterIP/external routes via NODE
	local gw4 gw6
	gw4=$(rig_node_ip4 "$1")
	gw6=$(rig_node_ip6 "$1")
	rig_exec x ip route replace 198.18.100.0/24 via "$gw4"
	rig_exec x ip route replace 198.18.200.0/24 via "$gw4"
	rig_exec x ip -6 route replace fd00:18:100::/64 via "$gw6"
	rig_exec x ip -6 route replace fd00:18:200::/64 via "$gw6"
}

_rig_sysctls() {	# NS
	local ns
	ns=$(rig_ns "$1")
	ip netns exec "$ns" sh -c '
		sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
		sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
		sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
		sysctl -qw net.ipv6.conf.default.accept_ra=0 2>/dev/null
		ip link set lo up' >/dev/null 2>&1
}

rig_up() {
	local node n i other ns pns
	if [ "$(id -u)" -ne 0 ]; then
		rig_log "needs root"
		return 1
	fi
	# an earlier run killed with SIGKILL (no EXIT trap) left its namespaces,
	# cgroups, pins and processes: remove those of dead owners first
	kpx_sweep_stale
	RIG_DIR=$(mktemp -d "/tmp/kpx-rig-$RIG_P.XXXX")
	RIG_MANIFESTS=$RIG_DIR/manifests
	mkdir -p "$RIG_MANIFESTS"
	: >"$RIG_DIR/pids"
	# Snapshot the binaries: others rebuild build/ while tests run, and an
	# agent restart must not pick up a half-linked file.
	snapshot KPX_BIN "$RIG_DIR" && snapshot KPX_ECHO "$RIG_DIR" || return 1
	"$KPX_BIN" version >/dev/null 2>&1 || { rig_log "$KPX_BIN version failed"; return 1; }
	RIG_UP=1
	RIG_OWNER=$BASHPID
	trap 'rig_down' EXIT
	trap 'exit 130' INT TERM
	modprobe nf_conntrack 2>/dev/null
	for ns in f n1 n2 x; do ip netns add "$(rig_ns $ns)" || return 1; done
	for ns in f n1 n2 x; do _rig_sysctls $ns; done
	rig_exec f ip link add br0 type bridge || return 1
	rig_exec f ip link set br0 up
	for n in n1 n2 x; do
		rig_exec f ip link add "$n" type veth peer name eth0 netns "$(rig_ns "$n")" || return 1
		rig_exec f ip link set "$n" master br0 up
		rig_exec "$n" ip link set eth0 up
	done
	for node in $RIG_NODES; do
		n=$(rig_node_idx "$node")
		rig_exec "$node" ip addr add "$(rig_node_ip4 "$node")/24" dev eth0
		rig_exec "$node" ip addr add "$(rig_node_ip6 "$node")/64" dev eth0 nodad
		for other in $RIG_NODES; do
			[ "$other" = "$node" ] && continue
			rig_exec "$node" ip route add "198.19.$(rig_node_idx "$other").0/24" via "$(rig_node_ip4 "$other")"
			rig_exec "$node" ip -6 route add "fd00:19:$(rig_node_idx "$other")::/64" via "$(rig_node_ip6 "$other")"
		done
		rig_exec "$node" ip route add 198.18.100.0/24 dev eth0
		rig_exec "$node" ip route add 198.18.200.0/24 dev eth0
		rig_exec "$node" ip -6 route add fd00:18:100::/64 dev eth0
		rig_exec "$node" ip -6 route add fd00:18:200::/64 dev eth0
		for i in $(seq 1 $RIG_PODS_PER_NODE); do
			pns=$(rig_ns "${node}p$i")
			ip netns add "$pns" || return 1
			_rig_sysctls "${node}p$i"
			rig_exec "$node" ip link add "p$i" type veth peer name eth0 netns "$pns" || return 1
			rig_exec "$node" ip addr add "198.19.$n.1/32" dev "p$i"
			rig_exec "$node" ip addr add "fd00:19:$n::1/128" dev "p$i" nodad
			rig_exec "$node" ip link set "p$i" up
			rig_exec "${node}p$i" ip link set eth0 up
			rig_exec "${node}p$i" ip addr add "$(rig_pod_ip4 "$node" "$i")/32" dev eth0
			rig_exec "${node}p$i" ip addr add "$(rig_pod_ip6 "$node" "$i")/128" dev eth0 nodad
			rig_exec "${node}p$i" ip route add default via "198.19.$n.1" dev eth0 onlink
			rig_exec "${node}p$i" ip -6 route add default via "fd00:19:$n::1" dev eth0 onlink
			rig_exec "$node" ip route add "$(rig_pod_ip4 "$node" "$i")/32" dev "p$i"
			rig_exec "$node" ip -6 route add "$(rig_pod_ip6 "$node" "$i")/128" dev "p$i"
		done
	done
	rig_exec x ip addr add "$RIG_EXT_IP4/24" dev eth0
	rig_exec x ip addr add "$RIG_EXT_IP6/64" dev eth0 nodad
	rig_ext_via n1
	if [ "$KPX_BACKEND" = bpf ]; then
		if ! grep -q "^cgroup2 $RIG_CG_MNT " /proc/mounts; then
			rig_log "cgroup2 not mounted at $RIG_CG_MNT"
			return 1
		fi
		grep -q " /sys/fs/bpf bpf " /proc/mounts || mount -t bpf bpf /sys/fs/bpf
	fi
	if [ -d "$RIG_CG_MNT" ] && grep -q "^cgroup2 $RIG_CG_MNT " /proc/mounts; then
		mkdir -p "$RIG_CG"
		for node in $RIG_NODES; do mkdir -p "$RIG_CG/$node"; done
	fi
	rig_log "up: prefix $RIG_P dir $RIG_DIR backend $KPX_BACKEND"
}

rig_down() {
	local pid ns node d
	[ "$RIG_UP" = 1 ] || return 0
	RIG_UP=0
	# who tore the rig down (a stray EXIT trap in a child would show here)
	[ "$BASHPID" = "$RIG_OWNER" ] || rig_log "rig_down from pid $BASHPID, not the owner $RIG_OWNER (${FUNCNAME[*]})"
	for node in $RIG_NODES; do rig_agent_stop "$node" 2>/dev/null; done
	if [ -f "$RIG_DIR/pids" ]; then
		while read -r pid; do kill -KILL "$pid" 2>/dev/null; done <"$RIG_DIR/pids"
	fi
	# anything else still living in our namespaces was started by us
	for ns in $(ip netns list | awk '{print $1}' | grep "^${RIG_P}[fxn]"); do
		for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
	done
	sleep 0.2
	for ns in $(ip netns list | awk '{print $1}' | grep "^${RIG_P}[fxn]"); do
		ip netns del "$ns" 2>/dev/null
	done
	if [ -d "$RIG_CG" ]; then
		for d in "$RIG_CG"/*/; do
			[ -d "$d" ] || continue
			for pid in $(cat "$d/cgroup.procs" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
		done
		sleep 0.1
		for d in "$RIG_CG"/*/; do rmdir "$d" 2>/dev/null; done
		rmdir "$RIG_CG" 2>/dev/null
	fi
	rm -rf /sys/fs/bpf/"$RIG_P"-* 2>/dev/null
	if [ -n "${KPX_KEEP_RIG:-}" ]; then
		rig_log "kept $RIG_DIR"
	else
		rm -rf "$RIG_DIR"
	fi
}

# --- helpers for reading kpx_echo client output ------------------------
# echo_get OUT KEY [NAME]: value of "KEY N" or "KEY NAME N" (0 if absent)
echo_get() {
	local out=$1 key=$2 name=${3:-}
	if [ -z "$name" ]; then
		awk -v k="$key" '$1==k {print $2; f=1} END {if (!f) print 0}' <<<"$out"
	else
		awk -v k="$key" -v n="$name" '$1==k && $2==n {print $3; f=1} END {if (!f) print 0}' <<<"$out"
	fi
}
# echo_names OUT KEY: the NAMEs of "KEY NAME N" lines, space separated
echo_names() { awk -v k="$1" '$1==k {printf "%s ", $2}' <<<"$2"; }

# rig_bg_log LOG NETNS CMD...: background in NETNS (n1, n2, x, n1p2, ...),
# in the owning node's cgroup, output to LOG; $RIG_LAST_PID is its PID.
rig_bg_log() {
	local log=$1 netns=$2 node
	shift 2
	node=${netns%%p*}
	rig_node_bg "$node" "$netns" "$log" "$@"
}
