#!/bin/bash
# bpf backend, socket LB only (cgroup sock_addr hooks), in the kernel:
#   one "node" netns (endpoints on its lo) and one "pod" netns behind a
#   veth; clients run in a child cgroup under the cgroup2 mount.
# Checks what a client observes: which endpoint answered, getpeername,
# the source of unconnected UDP replies, errno and latency of a refused
# connect, affinity, iTP=Local, terminating fallback, IPv6, ignored
# services, agent restart (links reused, live TCP and affinity kept, pins
# reconciled), and connected UDP re-balanced after its endpoint is deleted
# (bpf_sock_destroy through iter/udp, kernel 6.5+).
# One line per check: PASS name | FAIL name: why | SKIP name: reason.
# Exits 0 unless the harness itself broke.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
KPX=$ROOT/build/kpx
ID=$$
NODE=kpxslN$ID
POD=kpxslP$ID
CGROOT=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
CG=""
BR=/sys/fs/bpf/kpxsl$ID
AGENT_PID=""
SRV_PID=""
# shellcheck source=lib/check.sh
. tests/integration/lib/check.sh
CHECK_PREFIX=bpf_socklb

need_root all
if [ ! -x "$KPX" ]; then
	fail all "build/kpx not built"
	exit 0
fi
need_tools all python3 bpftool nsenter
if [ -z "$CGROOT" ]; then
	skip all "no cgroup2 mount"
	exit 0
fi
CG=$CGROOT/kpxsl$ID
# Every name carries $ID (netns, cgroup, pins, /tmp dir): the sweep removes
# what a run killed with SIGKILL left, never what a live run uses.
kpx_sweep_stale
TMP=$(mktemp -d /tmp/kpx-socklb-$ID.XXXXXX)
M=$TMP/manifests

cleanup() {
	stop_pid "$AGENT_PID" 5
	stop_pid "$SRV_PID" 2
	timeout -k 2 "$T_CALL" "$KPX" cleanup --backend bpf --bpf-root "$BR" >/dev/null 2>&1
	rm -rf "$BR"
	if [ -d "$CG" ]; then
		for p in $(cat "$CG/cgroup.procs" 2>/dev/null); do kill "$p" 2>/dev/null; done
		for _ in $(seq 20); do rmdir "$CG" 2>/dev/null && break; sleep 0.1; done
	fi
	ip netns del $POD 2>/dev/null
	ip netns del $NODE 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
snapshot KPX "$TMP" || { fail all "build/kpx kept changing for 20 s"; exit 0; }

# ---- helpers (python: stdlib sockets, errno names, timings) ----
cat >"$TMP/srv.py" <<'EOF'
# Answers "<bound address>" on TCP (after the first read) and UDP, on
# every address given; the TCP connection stays open until the peer closes.
import socket, sys, threading, selectors
port = int(sys.argv[1]); sel = selectors.DefaultSelector()
for a in sys.argv[2:]:
    fam = socket.AF_INET6 if ':' in a else socket.AF_INET
    t = socket.socket(fam, socket.SOCK_STREAM)
    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    t.bind((a, port)); t.listen(128); sel.register(t, selectors.EVENT_READ, ('t', a))
    u = socket.socket(fam, socket.SOCK_DGRAM); u.bind((a, port))
    sel.register(u, selectors.EVENT_READ, ('u', a))
def serve(c, a):
    try:
        c.recv(100); c.sendall(f"{a}\n".encode())
        while c.recv(100): pass
    except OSError: pass
    c.close()
while True:
    for k, _ in sel.select():
        kind, a = k.data
        if kind == 't':
            c, _ = k.fileobj.accept()
            threading.Thread(target=serve, args=(c, a), daemon=True).start()
        else:
            d, peer = k.fileobj.recvfrom(100); k.fileobj.sendto(f"{a}\n".encode(), peer)
EOF
cat >"$TMP/cli.py" <<'EOF'
# cli.py MODE HOST PORT [N]: one line per attempt
#   tcp:  "BE <endpoint> PEER <getpeername addr> <port>" | "ERR <errno> <ms>"
#   udpc: connected UDP, same output; udpu: "BE <ep> SRC <reply source> <port>"
import socket, sys, errno, time
mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
n = int(sys.argv[4]) if len(sys.argv) > 4 else 1
fam = socket.AF_INET6 if ':' in host else socket.AF_INET
def en(e): return errno.errorcode.get(e.errno, 'TIMEOUT') if e.errno else 'TIMEOUT'
for _ in range(min(n, 1000)):
    t = time.time()
    try:
        if mode == 'tcp':
            s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(2)
            s.connect((host, port)); s.sendall(b"x")
            be = s.recv(100).decode().strip(); p = s.getpeername()
            print("BE", be, "PEER", p[0], p[1])
        elif mode == 'udpc':
            s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(2)
            s.connect((host, port)); s.send(b"x")
            be = s.recv(100).decode().strip(); p = s.getpeername()
            print("BE", be, "PEER", p[0], p[1])
        else:
            s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(2)
            s.sendto(b"x", (host, port)); d, src = s.recvfrom(100)
            print("BE", d.decode().strip(), "SRC", src[0], src[1])
    except OSError as e:
        print("ERR", en(e), int((time.time() - t) * 1000))
    s.close()
    sys.stdout.flush()
EOF
cat >"$TMP/hold.py" <<'EOF'
# hold.py HOST PORT SECS: one TCP connection, a write every 0.2 s;
# prints "ALIVE <endpoint>" if it is still open at the end, else "DEAD ..."
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
s.sendall(b"x"); be = s.recv(100).decode().strip()
print("BE", be, flush=True)
end = time.time() + float(sys.argv[3])
try:
    while time.time() < end:
        s.sendall(b"y"); time.sleep(0.2)
    s.setblocking(False)
    try:
        print("DEAD eof" if s.recv(10) == b"" else "DEAD data", flush=True)
    except BlockingIOError:
        print("ALIVE", be, flush=True)
except OSError as e:
    print("DEAD", e, flush=True)
EOF
cat >"$TMP/udphold.py" <<'EOF'
# udphold.py HOST PORT SECS: one connected UDP socket, a request every
# 0.2 s. A timeout is retried on the same socket (a stale socket keeps
# timing out); a socket error (the socket was destroyed) is printed and
# the socket reconnected. Prints "BE x" on every change of endpoint.
import socket, sys, time, errno
host, port, dur = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
fam = socket.AF_INET6 if ':' in host else socket.AF_INET
def mk():
    s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(0.3)
    s.connect((host, port)); return s
s = mk(); last = None; end = time.time() + dur
while time.time() < end:
    try:
        s.send(b"q"); be = s.recv(100).decode().strip()
        if be != last: print("BE", be, flush=True); last = be
    except socket.timeout:
        print("TIMEOUT", flush=True)
    except OSError as e:
        print("ERR", errno.errorcode.get(e.errno, e.errno), flush=True)
        s.close(); s = mk()
    time.sleep(0.2)
EOF

# ---- manifests ----
svc() { # name clusterIP family extra-spec-lines
	cat <<Y
apiVersion: v1
kind: Service
metadata: {name: $1, namespace: t$4}
spec:
  clusterIP: $2
  clusterIPs: [$2]
  ipFamilies: [$3]
$5
  ports:
  - {name: tcp, protocol: TCP, port: 80, targetPort: 8080}
  - {name: udp, protocol: UDP, port: 53, targetPort: 8080}
---
Y
}
slice() { # name addressType endpoint... (addr,node[,term])
	local name=$1 at=$2 a n c cond
	shift 2
	cat <<Y
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: $name-x, namespace: t, labels: {kubernetes.io/service-name: $name}}
addressType: $at
ports:
- {name: tcp, protocol: TCP, port: 8080}
- {name: udp, protocol: UDP, port: 8080}
endpoints:
Y
	for e in "$@"; do
		IFS=, read -r a n c <<<"$e"
		cond="{ready: true}"
		[ "$c" = term ] && cond="{ready: false, serving: true, terminating: true}"
		echo "- {addresses: [\"$a\"], nodeName: $n, conditions: $cond}"
	done
	echo ---
}
mkdir -p "$M"
{
	svc echo 198.18.100.10 IPv4 "" ""
	slice echo IPv4 198.19.1.10,node-a 198.19.1.11,node-a 198.19.1.12,node-a
} >"$M/echo.yaml"
{
	svc empty 198.18.100.50 IPv4 "" ""
	slice empty IPv4
	svc sticky 198.18.100.40 IPv4 "" "  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}"
	slice sticky IPv4 198.19.1.10,node-a 198.19.1.11,node-a 198.19.1.12,node-a
	svc loc 198.18.100.20 IPv4 "" "  internalTrafficPolicy: Local"
	slice loc IPv4 198.19.1.10,node-a 198.19.2.10,node-b
	svc locnone 198.18.100.21 IPv4 "" "  internalTrafficPolicy: Local"
	slice locnone IPv4 198.19.2.10,node-b
	svc term 198.18.100.30 IPv4 "" ""
	slice term IPv4 198.19.1.12,node-a,term
	svc v6 fd00:100::10 IPv6 "" ""
	slice v6 IPv6 fd00:1::10,node-a fd00:1::11,node-a
	svc ignored 198.18.100.60 IPv4 \
		", labels: {service.kubernetes.io/service-proxy-name: other}" ""
	slice ignored IPv4 198.19.1.10,node-a
} >"$M/more.yaml"

# ---- rig ----
setup() {
	ip netns add $NODE && ip netns add $POD || return 1
	ip -n $NODE link set lo up && ip -n $POD link set lo up || return 1
	for a in 198.19.1.10 198.19.1.11 198.19.1.12 198.19.2.10; do
		ip -n $NODE addr add $a/32 dev lo || return 1
	done
	ip -n $NODE addr add fd00:1::10/128 dev lo nodad &&
		ip -n $NODE addr add fd00:1::11/128 dev lo nodad || return 1
	ip -n $NODE link add v$ID type veth peer name p0 netns $POD || return 1
	ip -n $NODE addr add 198.18.5.1/24 dev v$ID &&
		ip -n $NODE -6 addr add fd00:5::1/64 dev v$ID nodad &&
		ip -n $NODE link set v$ID up || return 1
	ip -n $POD addr add 198.18.5.2/24 dev p0 &&
		ip -n $POD -6 addr add fd00:5::2/64 dev p0 nodad &&
		ip -n $POD link set p0 up || return 1
	ip -n $POD route add 198.19.0.0/16 via 198.18.5.1 &&
		ip -n $POD -6 route add fd00:1::/64 via fd00:5::1 || return 1
	mkdir -p "$CG" || return 1
	nsenter --net=/run/netns/$NODE python3 "$TMP/srv.py" 8080 198.19.1.10 \
		198.19.1.11 198.19.1.12 198.19.2.10 fd00:1::10 fd00:1::11 \
		2>"$TMP/srv.err" &
	SRV_PID=$!
	return 0
}
# Clients: in the test cgroup, in the node netns or the pod netns.
node() { nsenter --net=/run/netns/$NODE sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$CG" "$@"; }
pod() { nsenter --net=/run/netns/$POD sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$CG" "$@"; }
# at most 1000 attempts of <= 2 s each in cli.py; bounded here as well
cli() { local w=$1; shift; $w timeout -k 2 120 python3 "$TMP/cli.py" "$@"; }

# "sync: full" lines so far: agent_start waits for one more (the log is
# appended across restarts, an old line must not count)
nfull() { grep -c "sync: full" "$TMP/agent.log" 2>/dev/null; }
agent_start() {
	local full0
	full0=$(nfull)
	nsenter --net=/run/netns/$NODE "$KPX" run --backend bpf --manifests "$M" \
		--hostname-override node-a --cgroup-path "$CG" --bpf-root "$BR" \
		--state-socket "$TMP/kpx.sock" --healthz-bind-address "" \
		--metrics-bind-address "" --min-sync-period 100ms -v 2 \
		${AGENT_ARGS:-} >>"$TMP/agent.log" 2>&1 &
	AGENT_PID=$!
	# Synced: one more full sync logged (the manifests as they are now).
	wait_until 5 synced_full "${full0:-0}"
}
synced_full() {
	kill -0 "$AGENT_PID" 2>/dev/null || return 1
	[ "$(nfull)" -gt "$1" ]
}
agent_stop() {
	stop_pid "$AGENT_PID" 5
	AGENT_PID=""
}
nsyncs() { grep -c 'sync:' "$TMP/agent.log"; }
nsyncs_ge() { [ "$(nsyncs)" -ge "$1" ]; }
# Waits (<= 3 s) until a manifest change is programmed: N syncs logged.
wait_syncs() { wait_until 3 nsyncs_ge "$1"; }
distinct() { awk '$1 == "BE" { print $2 }' | sort -u | tr '\n' ' ' | sed 's/ $//'; }

if ! setup; then
	fail setup "could not build the netns/cgroup rig"
	exit 0
fi
sleep 0.5
if ! agent_start; then
	fail agent_start "agent did not sync: $(tail -3 "$TMP/agent.log" | tr '\n' ' ')"
	exit 0
fi
wait_syncs 2 # more.yaml is read in the same pass; be safe

# ---- attach ----
n_att=$(bpftool cgroup show "$CG" 2>/dev/null | grep -c ' kpx_')
n_links=$(ls "$BR/links" 2>/dev/null | wc -l)
hooks=$(bpftool cgroup show "$CG" | awk 'NR>1 { print $2 }' | sort | tr '\n' ' ')
if [ "$n_att" = 9 ] && [ "$n_links" = 9 ]; then
	pass attach_9_hooks
else
	fail attach_9_hooks "attached $n_att ($hooks), pinned links $n_links"
fi
# bpftool must answer: an empty listing from a failed call proves nothing.
if ! root_show=$(bpftool cgroup show "$CGROOT" 2>&1); then
	fail root_cgroup_untouched "bpftool cgroup show $CGROOT failed: $root_show"
elif grep -q ' kpx_' <<<"$root_show"; then
	fail root_cgroup_untouched "kpx programs on $CGROOT: $(grep ' kpx_' <<<"$root_show" | tr '\n' ' ')"
else
	pass root_cgroup_untouched
fi

# ---- one agent per --bpf-root ----
# A second agent on the same pin directory fails at start, naming the root
# and the running agent; `kpx cleanup` (another state socket, so only the
# lock can tell) refuses to remove a held root. The first agent goes on.
t0=$(date +%s%N)
out=$(nsenter --net=/run/netns/$NODE timeout -k 2 20 "$KPX" run --backend bpf --manifests "$M" \
	--hostname-override node-a --cgroup-path "$CG" --bpf-root "$BR" \
	--state-socket "$TMP/kpx2.sock" --healthz-bind-address "" \
	--metrics-bind-address "" 2>&1)
rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$ms" -lt 5000 ] &&
	grep -q "$BR is in use by another process (pid $AGENT_PID" <<<"$out" &&
	kill -0 "$AGENT_PID" 2>/dev/null; then
	pass bpf_root_second_agent_refused "exit $rc after $ms ms"
else
	fail bpf_root_second_agent_refused "exit $rc after $ms ms: $(grep -m1 -i "bpf root\|error\|E[0-9]" <<<"$out" | cut -c1-200)"
fi
out=$(timeout -k 2 "$T_CALL" "$KPX" cleanup --backend bpf --bpf-root "$BR" \
	--state-socket "$TMP/none.sock" 2>&1)
rc=$?
n_att=$(bpftool cgroup show "$CG" 2>/dev/null | grep -c ' kpx_')
if [ "$rc" -ne 0 ] && grep -q "held by a running agent (pid $AGENT_PID)" <<<"$out" &&
	[ -e "$BR/kpx_svc" ] && [ "$n_att" = 9 ]; then
	pass bpf_root_cleanup_refused_while_held
else
	fail bpf_root_cleanup_refused_while_held "exit $rc, pins $(ls "$BR" 2>/dev/null | wc -l), attached $n_att: $(head -1 <<<"$out")"
fi

# ---- ClusterIP TCP/UDP, node and pod netns ----
for w in node pod; do
	out=$(cli $w tcp 198.18.100.10 80 30)
	d=$(echo "$out" | distinct)
	if [ "$d" = "198.19.1.10 198.19.1.11 198.19.1.12" ]; then
		pass "tcp_all_endpoints_$w"
	else
		fail "tcp_all_endpoints_$w" "reached [$d]; $(echo "$out" | grep ERR | head -1)"
	fi
	peers=$(echo "$out" | awk '$1 == "BE" { print $4 ":" $5 }' | sort -u)
	[ "$peers" = "198.18.100.10:80" ] && pass "getpeername_service_$w" ||
		fail "getpeername_service_$w" "getpeername gave [$peers]"
	out=$(cli $w udpc 198.18.100.10 53 30)
	d=$(echo "$out" | distinct)
	peers=$(echo "$out" | awk '$1 == "BE" { print $4 ":" $5 }' | sort -u)
	if [ "$d" = "198.19.1.10 198.19.1.11 198.19.1.12" ] &&
		[ "$peers" = "198.18.100.10:53" ]; then
		pass "udp_connected_$w"
	else
		fail "udp_connected_$w" "reached [$d] peers [$peers]"
	fi
	out=$(cli $w udpu 198.18.100.10 53 30)
	d=$(echo "$out" | distinct)
	srcs=$(echo "$out" | awk '$1 == "BE" { print $4 ":" $5 }' | sort -u)
	if [ "$d" = "198.19.1.10 198.19.1.11 198.19.1.12" ] &&
		[ "$srcs" = "198.18.100.10:53" ]; then
		pass "udp_unconnected_reply_source_$w"
	else
		fail "udp_unconnected_reply_source_$w" "reached [$d] reply sources [$srcs]"
	fi
done

# ---- no endpoints: refused at once ----
for mode in tcp udpc udpu; do
	out=$(cli node $mode 198.18.100.50 $([ $mode = tcp ] && echo 80 || echo 53))
	read -r k e ms <<<"$out"
	if [ "$k" = ERR ] && [ "$e" = ECONNREFUSED ] && [ "${ms:-9999}" -lt 200 ]; then
		pass "no_endpoints_refused_$mode"
	else
		fail "no_endpoints_refused_$mode" "got '$out' (want ERR ECONNREFUSED < 200 ms)"
	fi
done

# ---- affinity ----
for w in node pod; do
	d=$(cli $w tcp 198.18.100.40 80 20 | distinct)
	case "$d" in
	198.19.1.1[012]) pass "affinity_clientip_$w" ;;
	*) fail "affinity_clientip_$w" "20 connects reached [$d]" ;;
	esac
done
AFF_BEFORE=$(cli node tcp 198.18.100.40 80 1 | distinct)
# compared after the restart; empty would make that comparison vacuous
[ -n "$AFF_BEFORE" ] || fail affinity_before_restart "no answer from 198.18.100.40"

# ---- internalTrafficPolicy=Local ----
d=$(cli node tcp 198.18.100.20 80 20 | distinct)
[ "$d" = 198.19.1.10 ] && pass itp_local_only_local ||
	fail itp_local_only_local "reached [$d], want only 198.19.1.10"
out=$(cli node tcp 198.18.100.21 80)
read -r k e ms <<<"$out"
# kube-proxy drops here (the client times out); the socket hook cannot
# drop a connect(), it fails it at once with EPERM. Either way no remote
# endpoint may be reached. ENETUNREACH would mean the connect was not
# translated at all (the service is not programmed).
if [ "$k" = ERR ] && { [ "$e" = EPERM ] || [ "$e" = TIMEOUT ]; }; then
	pass itp_local_no_local_endpoint_fails "$e after ${ms} ms"
else
	fail itp_local_no_local_endpoint_fails "got '$out'"
fi

# ---- terminating fallback ----
d=$(cli node tcp 198.18.100.30 80 5 | distinct)
[ "$d" = 198.19.1.12 ] && pass terminating_fallback ||
	fail terminating_fallback "reached [$d], want the serving+terminating 198.19.1.12"

# ---- IPv6 ----
for w in node pod; do
	out=$(cli $w tcp fd00:100::10 80 20)
	d=$(echo "$out" | distinct)
	peers=$(echo "$out" | awk '$1 == "BE" { print $4 ":" $5 }' | sort -u)
	if [ "$d" = "fd00:1::10 fd00:1::11" ] && [ "$peers" = "fd00:100::10:80" ]; then
		pass "ipv6_tcp_$w"
	else
		fail "ipv6_tcp_$w" "reached [$d] peers [$peers]"
	fi
	srcs=$(cli $w udpu fd00:100::10 53 10 | awk '$1 == "BE" { print $4 ":" $5 }' | sort -u)
	[ "$srcs" = "fd00:100::10:53" ] && pass "ipv6_udp_reply_source_$w" ||
		fail "ipv6_udp_reply_source_$w" "reply sources [$srcs]"
done

# ---- service-proxy-name: not ours ----
# Not ours: the connect goes out untranslated, and the node has no route
# to the service range (ECONNREFUSED would mean "programmed, no endpoints").
out=$(cli node tcp 198.18.100.60 80)
case "$out" in
"ERR ENETUNREACH "*) pass ignored_service_proxy_name ;;
*) fail ignored_service_proxy_name "got '$out' (want ERR ENETUNREACH: not translated)" ;;
esac

# ---- connected UDP re-balanced after its endpoint is deleted ----
for w in node pod; do
	$w timeout -k 2 20 python3 "$TMP/udphold.py" 198.18.100.10 53 4 >"$TMP/udp.$w" 2>&1 &
	hp=$!
	wait_until 2 grep -q ^BE "$TMP/udp.$w"
	be=$(awk '$1 == "BE" { print $2; exit }' "$TMP/udp.$w")
	n=$(nsyncs)
	if [ -z "$be" ]; then
		kill $hp 2>/dev/null
		wait $hp
		fail "udp_rebalanced_after_delete_$w" "client got no answer"
		continue
	fi
	sed -i "/\"$be\"/d" "$M/echo.yaml"
	wait_syncs $((n + 1))
	wait $hp
	if grep -q "udp socket iterator unavailable" "$TMP/agent.log"; then
		skip "udp_rebalanced_after_delete_$w" "kernel lacks iter/udp or bpf_sock_destroy"
	else
		after=$(awk -v b="$be" '$1 == "BE" && $2 != b { print $2 }' "$TMP/udp.$w" | head -1)
		err=$(awk '$1 == "ERR" { print $2; exit }' "$TMP/udp.$w")
		if [ -n "$after" ] && [ -n "$err" ]; then
			pass "udp_rebalanced_after_delete_$w" "$be -> $after, socket error $err"
		else
			fail "udp_rebalanced_after_delete_$w" "was on $be; $(tr '\n' ' ' <"$TMP/udp.$w" | cut -c1-200)"
			grep -E "destroy|sync:|manifests" "$TMP/agent.log" | tail -4 | sed 's/^/#   /'
		fi
	fi
	# Put the endpoint back for what follows.
	{
		svc echo 198.18.100.10 IPv4 "" ""
		slice echo IPv4 198.19.1.10,node-a 198.19.1.11,node-a 198.19.1.12,node-a
	} >"$M/echo.yaml"
	wait_syncs $(($(nsyncs) + 1))
done

# ---- restart: links reused, live TCP kept, pins reconciled ----
links_before=$(for l in "$BR"/links/*; do bpftool link show pinned "$l" 2>/dev/null | head -1 | cut -d: -f1; done | sort | tr '\n' ' ')
node timeout -k 2 20 python3 "$TMP/hold.py" 198.18.100.10 80 4 >"$TMP/hold.out" 2>&1 &
hold=$!
sleep 0.5
agent_stop
# While the agent is down: the hooks keep working, the manifests change.
out=$(cli node tcp 198.18.100.10 80)
case "$out" in
BE*) pass datapath_survives_agent_stop ;;
*) fail datapath_survives_agent_stop "connect with the agent stopped: $out" ;;
esac
sed -i '/^apiVersion: v1$/,$d' "$M/more.yaml" # drops every service of more.yaml
{
	svc late 198.18.100.70 IPv4 "" ""
	slice late IPv4 198.19.1.11,node-a
	svc sticky 198.18.100.40 IPv4 "" "  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}"
	slice sticky IPv4 198.19.1.10,node-a 198.19.1.11,node-a 198.19.1.12,node-a
} >"$M/more.yaml"
if ! agent_start; then
	fail agent_restart "agent did not sync after restart"
	fail bpf_root_free_after_agent_exit "$(grep -m1 'bpf root' "$TMP/agent.log")"
	wait $hold
	exit 0
fi
# the first agent exited: its lock went with it
pass bpf_root_free_after_agent_exit
wait $hold
links_after=$(for l in "$BR"/links/*; do bpftool link show pinned "$l" 2>/dev/null | head -1 | cut -d: -f1; done | sort | tr '\n' ' ')
n_att=$(bpftool cgroup show "$CG" | grep -c ' kpx_')
# links_before empty (no pinned links read) would equal an empty "after"
if [ "$n_att" = 9 ] && [ -n "$links_before" ] && [ "$links_before" = "$links_after" ]; then
	pass restart_links_reused
else
	fail restart_links_reused "attachments $n_att, links [$links_before] -> [$links_after]"
fi
grep -q ^ALIVE "$TMP/hold.out" && pass restart_live_tcp_kept ||
	fail restart_live_tcp_kept "$(tr '\n' ' ' <"$TMP/hold.out")"
d=$(cli node tcp 198.18.100.40 80 5 | distinct)
[ -n "$d" ] && [ "$d" = "$AFF_BEFORE" ] && pass restart_affinity_kept ||
	fail restart_affinity_kept "before [$AFF_BEFORE] after [$d]"
# Removed while the agent was down: no longer refused by the hook but sent
# out untranslated, and the node has no route to the service range.
out=$(cli node tcp 198.18.100.50 80)
case "$out" in
"ERR ENETUNREACH "*) pass restart_reconciled_removed ;;
*) fail restart_reconciled_removed "got '$out' (want ERR ENETUNREACH: service gone)" ;;
esac
d=$(cli node tcp 198.18.100.70 80 3 | distinct)
[ "$d" = 198.19.1.11 ] && pass restart_reconciled_added ||
	fail restart_reconciled_added "new service reached [$d]"
d=$(cli node tcp 198.18.100.10 80 20 | distinct)
[ "$d" = "198.19.1.10 198.19.1.11 198.19.1.12" ] && pass restart_kept_service ||
	fail restart_kept_service "reached [$d]"

# ---- cleanup removes the hooks ----
agent_stop
timeout -k 2 "$T_CALL" "$KPX" cleanup --backend bpf --bpf-root "$BR" >/dev/null 2>&1
if ! cg_show=$(bpftool cgroup show "$CG" 2>&1); then
	fail cleanup_detaches "bpftool cgroup show $CG failed: $cg_show"
else
	n_att=$(grep -c ' kpx_' <<<"$cg_show")
	[ "$n_att" = 0 ] && [ ! -e "$BR" ] && pass cleanup_detaches ||
		fail cleanup_detaches "$n_att programs still attached, pins: $(ls "$BR" 2>/dev/null | wc -l)"
fi

# ---- Maglev selection (fresh pins) ----
: >"$TMP/agent.log"
AGENT_ARGS="--lb-algorithm maglev --maglev-table-size 1021"
if agent_start; then
	d=$(cli node tcp 198.18.100.10 80 30 | distinct)
	[ "$d" = "198.19.1.10 198.19.1.11 198.19.1.12" ] && pass maglev_all_endpoints ||
		fail maglev_all_endpoints "reached [$d]"
	srcs=$(cli node udpu 198.18.100.10 53 5 | awk '$1 == "BE" { print $4 ":" $5 }' | sort -u)
	[ "$srcs" = "198.18.100.10:53" ] && pass maglev_udp_reply_source ||
		fail maglev_udp_reply_source "reply sources [$srcs]"
else
	fail maglev_all_endpoints "agent with --lb-algorithm maglev did not sync: $(grep -E '^[EW]' "$TMP/agent.log" | head -2)"
fi
exit 0
