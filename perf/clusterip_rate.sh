#!/bin/bash
# ClusterIP connection rate (issue 4 benchmark, issue 3 conn/s target):
# TCP connections per second (connect + one answer + close, sequential,
# build/kpx_echo client) from a client process to
#   direct: one endpoint, no kpx on the path (own node netns, no agent),
#   nft:    a ClusterIP with 10 endpoints, `kpx run --backend nft`,
#   bpf:    the same ClusterIP, `kpx run --backend bpf` (socket LB, client in
#           the agent's child cgroup),
# with ${KPX_CR_SIZES:-1000 10000 30000} services x 10 endpoints programmed
# from perf/tools/gen_manifests.py manifests. Runs alternate (direct, nft,
# bpf) and the best of ${KPX_CR_ROUNDS:-3} is kept: the VM is shared and
# interference only ever lowers a rate.
#
# Topology (all netns created here, no link to the host, 198.18.0.0/15):
#   pod netns: lo holds the 10 endpoint addresses of svc-00001
#     (198.18.0.10-19), one kpx_echo server per address on :8080;
#   three node netns (direct / nft / bpf), each joined to the pod netns by
#   its own veth (/30 from 198.19.150.0/24), each with its own agent.
# gen_manifests.py stops at 10,649 services x 10 endpoints (address space):
# sizes above 10,000 are the 10,000-service set plus copies of it on service
# ports 81, 82, ... (same cluster IPs and endpoints, ClusterIP only), which
# gives the datapath the same number of service frontends.
# Writes perf/results/clusterip-rate-<date>.md.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
KPX=$ROOT/build/kpx
ECHO=$ROOT/build/kpx_echo
SIZES=${KPX_CR_SIZES:-1000 10000 30000}
ROUNDS=${KPX_CR_ROUNDS:-3}
CONNS=${KPX_CR_CONNS:-20000}
SYNC_TIMEOUT=${KPX_CR_SYNC_TIMEOUT:-600}
ID=$$
POD=kpxcrp$ID
NSD=kpxcrd$ID
NSN=kpxcrn$ID
NSB=kpxcrb$ID
CGROOT=/sys/fs/cgroup/unified
CGD=$CGROOT/kpxcrd$ID
CGN=$CGROOT/kpxcrn$ID
CGB=$CGROOT/kpxcrb$ID
BRN=/sys/fs/bpf/kpxcrn$ID
BRB=/sys/fs/bpf/kpxcrb$ID
SVC=198.19.160.1	# svc-00001: 10 ready endpoints 198.18.0.10-19:8080
OUT=perf/results/clusterip-rate-$(date -u +%Y-%m-%d).md

[ "$(id -u)" -eq 0 ] || { echo "SKIP clusterip_rate: needs root"; exit 0; }
grep -q " $CGROOT cgroup2 " /proc/mounts || { echo "SKIP clusterip_rate: no cgroup2 at $CGROOT"; exit 0; }
command -v jq >/dev/null || { echo "SKIP clusterip_rate: jq missing"; exit 0; }
make -s build/kpx build/kpx_echo >/dev/null 2>&1
[ -x "$KPX" ] && [ -x "$ECHO" ] || { echo "clusterip_rate: build/kpx or build/kpx_echo missing"; exit 1; }
grep -q " /sys/fs/bpf bpf " /proc/mounts || mount -t bpf bpf /sys/fs/bpf || exit 1
TMP=$(mktemp -d /tmp/kpx-crate.XXXXXX)
cp "$KPX" "$ECHO" "$TMP/"
KPX=$TMP/kpx
ECHO=$TMP/kpx_echo
SRV_PIDS=""
APID_N=""
APID_B=""

agent_stop() {	# PID: SIGTERM, wait up to 10 s, then SIGKILL
	local p=$1
	[ -n "$p" ] || return 0
	kill -TERM "$p" 2>/dev/null
	for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$p" 2>/dev/null
	wait "$p" 2>/dev/null
}
agents_stop() {
	agent_stop "$APID_N"
	agent_stop "$APID_B"
	APID_N="" APID_B=""
	[ -e /run/netns/$NSN ] && nsenter --net=/run/netns/$NSN "$KPX" cleanup --backend nft \
		--state-socket "$TMP/n.sock" >/dev/null 2>&1
	[ -e /run/netns/$NSB ] && nsenter --net=/run/netns/$NSB "$KPX" cleanup --backend bpf \
		--bpf-root "$BRB" --cgroup-path "$CGB" --state-socket "$TMP/b.sock" >/dev/null 2>&1
	rm -rf "$BRB" "$BRN"
}
cleanup() {
	agents_stop
	for p in $SRV_PIDS; do kill "$p" 2>/dev/null; done
	for p in $SRV_PIDS; do wait "$p" 2>/dev/null; done
	for n in $NSD $NSN $NSB $POD; do ip netns del $n 2>/dev/null; done
	rmdir "$CGD" "$CGN" "$CGB" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# --- topology
ip netns add $POD || exit 1
ip -n $POD link set lo up
# (no dummy module on every kernel: the endpoint addresses live on lo)
for i in $(seq 10 19); do ip -n $POD addr add 198.18.0.$i/32 dev lo || exit 1; done
k=0
for n in $NSD $NSN $NSB; do
	a=$((k * 4))
	ip netns add $n || exit 1
	ip -n $n link set lo up
	ip -n $n link add v0 type veth peer name e$k netns $POD || exit 1
	ip -n $n addr add 198.19.150.$((a + 1))/30 dev v0
	ip -n $n link set v0 up
	ip -n $POD addr add 198.19.150.$((a + 2))/30 dev e$k
	ip -n $POD link set e$k up
	ip -n $n route add 198.18.0.0/24 via 198.19.150.$((a + 2))
	# thousands of sequential connections: reuse TIME_WAIT ports
	nsenter --net=/run/netns/$n sysctl -qw net.ipv4.tcp_tw_reuse=1 \
		"net.ipv4.ip_local_port_range=10000 65000"
	k=$((k + 1))
done
# nft rewrites in the output hook, after routing: the service range must
# route. bpf rewrites at connect(): no route, so a miss fails at once.
ip -n $NSN route add 198.19.160.0/19 via 198.19.150.6
mkdir -p "$CGD" "$CGN" "$CGB" || exit 1
# KPX_CR_ONE_SERVER=1: one wildcard server process for all 10 addresses
# (control: separates the cost of waking 10 server processes in turn from
# the datapath's).
if [ "${KPX_CR_ONE_SERVER:-0}" = 1 ]; then
	nsenter --net=/run/netns/$POD "$ECHO" server --id ep --port 8080 >/dev/null 2>&1 &
	SRV_PIDS+=" $!"
else
	for i in $(seq 10 19); do
		nsenter --net=/run/netns/$POD "$ECHO" server --id ep$i --port 8080 \
			--bind 198.18.0.$i >/dev/null 2>&1 &
		SRV_PIDS+=" $!"
	done
fi
sleep 0.5

# --- manifests: DIR per size
gen() {	# N DIR
	local n=$1 d=$2 base=$1 c
	[ "$n" -gt 10000 ] && base=10000
	python3 perf/tools/gen_manifests.py --services "$base" --endpoints 10 --out "$d" || return 1
	c=1
	while [ $((base * (c + 1))) -le "$n" ]; do
		for f in "$d"/svc-*.yaml; do
			sed -e "s/svc-\([0-9]\)/svc-c$c-\1/g" -e "s/^    port: 80\$/    port: $((80 + c))/" \
				-e '/type: NodePort/d' -e '/externalTrafficPolicy/d' -e '/nodePort:/d' \
				"$f" >"$d/c$c-$(basename "$f")"
		done
		c=$((c + 1))
	done
	[ $((base * c)) -eq "$n" ] || { echo "clusterip_rate: size $n is not a multiple of $base"; return 1; }
}

synced() {	# SOCK
	local j
	j=$("$KPX" status --state-socket "$1" -o json 2>/dev/null) || return 1
	[ "$(jq -r '.agent.syncs_total' <<<"$j")" -ge 1 ] 2>/dev/null &&
		[ "$(jq -r '.agent.pending_service_changes' <<<"$j")" = 0 ] &&
		[ "$(jq -r '.agent.pending_endpoint_changes' <<<"$j")" = 0 ]
}
wait_synced() {	# SOCK PID NAME -> prints seconds
	local t0 end
	t0=$(date +%s%N)
	end=$((t0 + SYNC_TIMEOUT * 1000000000))
	while [ "$(date +%s%N)" -lt "$end" ]; do
		kill -0 "$2" 2>/dev/null || { echo "clusterip_rate: $3 agent died" >&2; return 1; }
		synced "$1" && { awk -v d=$(($(date +%s%N) - t0)) 'BEGIN { printf "%.1f", d / 1e9 }'; return 0; }
		sleep 0.2
	done
	echo "clusterip_rate: $3 agent not synced in ${SYNC_TIMEOUT}s" >&2
	return 1
}

agent_start() {	# NS BACKEND SOCK BPFROOT CGROUP MANIFESTS LOG -> pid in AGENT_PID
	nsenter --net=/run/netns/$1 "$KPX" run --manifests "$6" --backend "$2" \
		--hostname-override node-0 --state-socket "$3" --bpf-root "$4" \
		--cgroup-path "$5" --healthz-bind-address '' --metrics-bind-address '' \
		--bpf-services-max 131072 --bpf-backends-max 524288 \
		--sync-period 1h -v 1 >>"$7" 2>&1 &
	AGENT_PID=$!
}

# incg NS CGROUP ARGS...: ARGS in netns NS and cgroup CGROUP.
incg() {
	local ns=$1 cg=$2
	shift 2
	nsenter --net=/run/netns/$ns sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$cg" "$@"
}
rate() {	# NS CGROUP ADDR PORT -> "conn/s endpoints_answering" (stderr: failures)
	local t0 t1 out ok nid
	t0=$(date +%s%N)
	out=$(incg "$1" "$2" "$ECHO" client --addr "$3" --port "$4" -n "$CONNS" \
		--timeout-ms 1000 --max-fail 20 2>&1)
	t1=$(date +%s%N)
	ok=$(awk '$1 == "ok" { print $2 }' <<<"$out")
	nid=$(grep -c '^id ' <<<"$out")
	[ "${ok:-0}" = "$CONNS" ] || echo "clusterip_rate: $1 $3:$4: $(grep -v '^id\|^src' <<<"$out" | tr '\n' ' ' | cut -c1-200)" >&2
	echo "$(( ${ok:-0} * 1000000000 / (t1 - t0) )) $nid"
}
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.0f %%", 100 * a / b; else print "-" }'; }

rows=""
notes=""
for n in $SIZES; do
	M=$TMP/m$n
	gen "$n" "$M" || exit 1
	agent_start $NSN nft "$TMP/n.sock" "$BRN" "$CGN" "$M" "$TMP/agent-nft.log"
	APID_N=$AGENT_PID
	agent_start $NSB bpf "$TMP/b.sock" "$BRB" "$CGB" "$M" "$TMP/agent-bpf.log"
	APID_B=$AGENT_PID
	sn=$(wait_synced "$TMP/n.sock" "$APID_N" nft) || { tail -5 "$TMP/agent-nft.log"; exit 1; }
	sb=$(wait_synced "$TMP/b.sock" "$APID_B" bpf) || { tail -5 "$TMP/agent-bpf.log"; exit 1; }
	echo "== $n services x 10: nft synced after ${sn}s, bpf after ${sb}s (both started together)"
	d=0 nf=0 bp=0 idn=0 idb=0
	for r in $(seq "$ROUNDS"); do
		read -r x _ < <(rate $NSD "$CGD" 198.18.0.10 8080)
		[ "$x" -gt "$d" ] && d=$x
		read -r y i < <(rate $NSN "$CGN" $SVC 80)
		[ "$y" -gt "$nf" ] && nf=$y
		[ "$i" -gt "$idn" ] && idn=$i
		read -r z j < <(rate $NSB "$CGB" $SVC 80)
		[ "$z" -gt "$bp" ] && bp=$z
		[ "$j" -gt "$idb" ] && idb=$j
		echo "round $r: direct $x nft $y ($i endpoints answered) bpf $z ($j endpoints answered)"
	done
	[ "${KPX_CR_ONE_SERVER:-0}" = 1 ] || { [ "$idn" -eq 10 ] && [ "$idb" -eq 10 ]; } ||
		notes+="- at $n services not every endpoint answered (nft $idn, bpf $idb of 10)"$'\n'
	echo "conn/s at $n services: direct $d nft $nf ($(pct $nf $d)) bpf $bp ($(pct $bp $d))"
	rows+="| $n | $d | $nf | $(pct $nf $d) | $bp | $(pct $bp $d) | ${sn} s / ${sb} s |"$'\n'
	agents_stop
done

commit=$(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet -- bpf nft userspace perf 2>/dev/null || echo -dirty)
cpu=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)
{
	echo "# ClusterIP connection rate: direct vs nft vs bpf ($(date -u +%Y-%m-%dT%H:%MZ))"
	echo
	echo "- machine: $cpu, $(nproc) CPUs, kernel $(uname -r)"
	echo "- commit: $commit"
	echo "- command: \`bash perf/clusterip_rate.sh\` (KPX_CR_SIZES=\"$SIZES\", $CONNS sequential connections per run, best of $ROUNDS alternating rounds)"
	echo "- one connection = socket + connect + read the server's one-line answer + close"
	echo "  (\`kpx_echo client -n $CONNS\`), one client process, timed from start to exit."
	echo "- direct: to endpoint 198.18.0.10:8080 from a node netns with no agent."
	echo "  nft / bpf: to ClusterIP $SVC:80 (svc-00001, 10 endpoints, each a kpx_echo"
	echo "  server in one pod netns) from a node netns running \`kpx run --backend nft|bpf"
	echo "  --manifests DIR --sync-period 1h\`; the bpf client runs in the agent's --cgroup-path."
	[ "${KPX_CR_ONE_SERVER:-0}" = 1 ] && echo "  KPX_CR_ONE_SERVER=1: one wildcard kpx_echo server process answers all 10 addresses."
	echo "  Every node netns reaches the pod netns over its own veth; the same pod"
	echo "  netns serves all three."
	echo "- manifests: perf/tools/gen_manifests.py --services N --endpoints 10; above 10,000"
	echo "  services (the generator's address-space limit at 10 endpoints) the 10,000 set"
	echo "  plus copies on service ports 81, 82 (same cluster IPs and endpoints)."
	echo "- sync: seconds from both agents' start until \`kpx status\` showed a sync with"
	echo "  nothing pending (both agents syncing at the same time on 2 cores)."
	echo
	echo "| services x 10 endpoints | direct conn/s | nft conn/s | nft % of direct | bpf conn/s | bpf % of direct | sync nft / bpf |"
	echo "|---|---|---|---|---|---|---|"
	printf "%s" "$rows"
	[ -z "$notes" ] || { echo; printf "%s" "$notes"; }
} >"$OUT"
echo "wrote $OUT"
cat "$OUT"
