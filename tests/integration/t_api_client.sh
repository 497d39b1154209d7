#!/bin/bash
# The Kubernetes API client (userspace/k8s/client.c, run by
# build/kpx_k8s_probe) against tests/fixtures/fake_apiserver.py over TLS with
# a test CA on 127.0.0.1. After every fault the probe's store must converge
# to the server's state (minus objects the label selector excludes and
# objects the test made invalid on purpose). No network namespace needed:
# nothing here touches the kernel's datapath.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
PROBE=${KPX_PROBE:-$ROOT/build/kpx_k8s_probe}
SERVER=$ROOT/tests/fixtures/fake_apiserver.py
STALL_MS=3000

# shellcheck source=lib/check.sh
. tests/integration/lib/check.sh
need_tools api_client python3 openssl curl jq
[ -x "$PROBE" ] || timeout 300 make -s build/kpx_k8s_probe >/dev/null || {
	echo "FAIL api_client: cannot build $PROBE"; exit 1; }
kpx_sweep_stale

# $$ in the name: kpx_sweep_stale finds the server and probe of a killed run
# by this directory in their command lines
T=$(mktemp -d /tmp/kpx-api-$$.XXXXXX)
SRV_PID= PROBE_PID= PROXY_PID=
cleanup() {
	stop_pid "$PROBE_PID" 3
	stop_pid "$PROXY_PID" 3
	stop_pid "$SRV_PID" 3
	if [ -n "${KPX_TEST_KEEP:-}" ]; then echo "# kept $T" >&2; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM
snapshot PROBE "$T" || { echo "FAIL api_client: $PROBE kept changing for 20 s"; exit 1; }

tests/fixtures/make_test_ca.sh "$T/pki" || { echo "FAIL api_client: test CA"; exit 1; }
TOKEN=tok-$RANDOM$RANDOM
printf '%s\n' "$TOKEN" >"$T/token"

start_server() { # [extra args]
	rm -f "$T/srv.out"
	python3 "$SERVER" --cert "$T/pki/server.crt" --key "$T/pki/server.key" \
		--client-ca "$T/pki/ca.crt" --token "$1" ${PORT:+--port $PORT} "${@:2}" >"$T/srv.out" 2>"$T/srv.err" &
	SRV_PID=$!
	wait_until 5 grep -q '^PORT ' "$T/srv.out"
	PORT=$(awk '/^PORT /{print $2}' "$T/srv.out")
	[ -n "$PORT" ]
}

if ! start_server "$TOKEN"; then
	echo "FAIL api_client: fake API server did not start: $(tail -3 "$T/srv.err")"
	exit 1
fi
URL=https://127.0.0.1:$PORT

ctl() { # op [json]
	curl -sS --max-time 5 --cacert "$T/pki/ca.crt" -X POST \
		-H 'Content-Type: application/json' -d "${2:-{\}}" "$URL/control/$1" >/dev/null
}
get() { curl -sS --max-time 5 --cacert "$T/pki/ca.crt" "$URL/control/$1"; }

svc() { # ns name port [extra-json-for-metadata]
	printf '{"resource":"services","object":{"metadata":{"namespace":"%s","name":"%s"%s},"spec":{"type":"ClusterIP","clusterIP":"198.18.100.%d","clusterIPs":["198.18.100.%d"],"ports":[{"name":"http","protocol":"TCP","port":%d,"targetPort":8080}]}}}' \
		"$1" "$2" "${4:-}" "$((${#2} + ${3} % 200))" "$((${#2} + ${3} % 200))" "$3"
}
slice() { # ns name service ip
	printf '{"resource":"endpointslices","object":{"metadata":{"namespace":"%s","name":"%s","labels":{"kubernetes.io/service-name":"%s"}},"addressType":"IPv4","ports":[{"name":"http","protocol":"TCP","port":8080}],"endpoints":[{"addresses":["%s"],"conditions":{"ready":true},"nodeName":"node-a"}]}}' \
		"$1" "$2" "$3" "$4"
}
node() { # zone
	printf '{"resource":"nodes","object":{"metadata":{"name":"node-a","labels":{"topology.kubernetes.io/zone":"%s"}},"status":{"addresses":[{"type":"InternalIP","address":"198.18.0.10"}]}}}' "$1"
}
del() { ctl delete "{\"resource\":\"$1\",\"namespace\":\"$2\",\"name\":\"$3\"}"; }

# Compares the probe's dump with the server's state; prints why not.
# DUMP: the probe's dump file ($T/dump unless set).
compare() {
	get state >"$T/state.json" 2>/dev/null || { echo "server state unavailable"; return 1; }
	python3 - "$T/state.json" "${DUMP:-$T/dump}" <<'EOF'
import json, sys
EXCL = ("service.kubernetes.io/service-proxy-name",
        "service.kubernetes.io/headless")
state = json.load(open(sys.argv[1]))
def want(o):
    md = o.get("metadata", {})
    if any(k in (md.get("labels") or {}) for k in EXCL):
        return False
    return (md.get("annotations") or {}).get("kpx-test/invalid") != "true"
exp = set()
for res, kind in (("services", "Service"), ("endpointslices", "EndpointSlice")):
    for o in state["objects"].get(res, []):
        if want(o):
            md = o["metadata"]
            exp.add((kind, md["namespace"], md["name"], md["resourceVersion"]))
for o in state["objects"].get("nodes", []):
    if o["metadata"]["name"] == "node-a":
        exp.add(("Node", "", "node-a",
                 o["metadata"]["labels"].get("topology.kubernetes.io/zone", "")))
got, status = set(), None
try:
    for line in open(sys.argv[2]):
        o = json.loads(line)
        if o["kind"] == "Status":
            status = o
        elif o["kind"] == "Node":
            got.add(("Node", "", o["name"], o["zone"]))
        else:
            got.add((o["kind"], o["ns"], o["name"], o["rv"]))
except (OSError, ValueError) as e:
    print("no probe dump (%s)" % e); sys.exit(1)
if not status or not all(status["synced"].values()):
    print("not synced: %s" % (status or {}).get("synced")); sys.exit(1)
if exp != got:
    print("missing %s extra %s" % (sorted(exp - got)[:4], sorted(got - exp)[:4]))
    sys.exit(1)
EOF
}
# converge SECONDS: waits until the probe's store equals the server's.
converge() {
	local end=$((SECONDS + $1)) why
	while :; do
		why=$(compare) && return 0
		if [ $SECONDS -ge $end ]; then
			echo "$why"
			return 1
		fi
		sleep 0.2
	done
}
pstat() { # jq filter over the probe's Status line
	grep '"kind": *"Status"' "${DUMP:-$T/dump}" 2>/dev/null | jq -r "$1" 2>/dev/null
}
sstat() { get stats | jq -r "${1} // 0"; }
result() { check_rc "$@"; } # name ok-cmd-status why
probe_alive() { kill -0 "$PROBE_PID" 2>/dev/null; }

# ---- initial state: 7 services, 7 slices, 2 excluded by label, node --------
for i in 1 2 3 4 5 6 7; do
	ctl put "$(svc demo svc$i $((8000 + i)))"
	ctl put "$(slice demo svc$i-abc svc$i 198.18.1.$i)"
done
ctl put "$(svc demo headless 80 ',"labels":{"service.kubernetes.io/headless":""}')"
ctl put "$(svc demo other-proxy 80 ',"labels":{"service.kubernetes.io/service-proxy-name":"foo"}')"
ctl put "$(slice demo other-proxy-x other-proxy 198.18.1.99 | sed 's/"labels":{/"labels":{"service.kubernetes.io\/service-proxy-name":"foo",/')"
ctl put "$(node zone-a)"
ctl put '{"resource":"nodes","object":{"metadata":{"name":"node-b"}}}'

cat >"$T/kubeconfig" <<EOF
apiVersion: v1
kind: Config
current-context: test
clusters:
- name: fake
  cluster:
    server: $URL
    certificate-authority-data: $(base64 -w0 "$T/pki/ca.crt")
users:
- name: tester
  user:
    tokenFile: $T/token
contexts:
- name: test
  context: {cluster: fake, user: tester}
EOF

# A. A server that refuses the streaming list (HTTP 422, as without the
#    WatchList feature): paginated LIST, 7 objects in pages of 2.
ctl config '{"watchlist":"refuse"}'
DUMP=$T/dumpA
"$PROBE" --kubeconfig "$T/kubeconfig" --node node-a --dump "$DUMP" \
	--interval 100 --stall-ms $STALL_MS --backoff-min-ms 100 \
	--backoff-max-ms 1000 --page-limit 2 -v 1 2>"$T/probeA.log" &
PROBE_PID=$!
why=$(converge 15); rc=$?
if [ $rc -eq 0 ]; then
	pages=$(sstat '.services_lists_limit_2'); conts=$(sstat '.services_lists_continue')
	refused=$(sstat '.services_watchlist_refuse')
	if ! is_uint "$pages" "$conts" "$refused"; then rc=1; why="no server stats"
	elif [ "$refused" -lt 1 ]; then rc=1; why="no streaming list was tried first"
	elif [ "$pages" -lt 4 ] || [ "$conts" -lt 3 ]; then
		rc=1; why="expected >=4 pages of limit=2 (got $pages, $conts continues)"
	elif [ "$(pstat '.watches.services.initial_list')" != paginated ]; then
		rc=1; why="status does not say paginated: $(pstat '.watches.services.initial_list')"
	elif ! grep -q 'falling back to a paginated LIST' "$T/probeA.log"; then
		rc=1; why="fallback not logged"
	fi
fi
result list_paginated_when_watchlist_refused $rc "$why"

# A2. 410 on a LIST continue token: the list starts over.
ctl config '{"fail_continue":1}'
ctl expire '{"silent_deletes":[{"resource":"endpointslices","namespace":"demo","name":"svc7-abc"}]}'
why=$(converge 10); rc=$?
c410=$(sstat '(.services_continue_410 // 0) + (.endpointslices_continue_410 // 0) + (.nodes_continue_410 // 0)')
if [ $rc -eq 0 ] && { ! is_uint "$c410" || [ "$c410" -lt 1 ]; }; then
	rc=1; why="the server never answered a continue with 410 ('$c410')"
fi
ctl config '{"fail_continue":0}'
result list_continue_410 $rc "$why"
stop_pid "$PROBE_PID" 3; PROBE_PID=

# B. A server that ignores sendInitialEvents (a plain watch: the current
#    state as ADDED, then bookmarks without the end marker): the events are
#    not taken for a complete list; paginated LIST instead.
ctl config '{"watchlist":"ignore"}'
DUMP=$T/dumpB
l0=$(sstat '.services_lists')
"$PROBE" --kubeconfig "$T/kubeconfig" --node node-a --dump "$DUMP" \
	--interval 100 --stall-ms $STALL_MS --backoff-min-ms 100 \
	--backoff-max-ms 1000 2>"$T/probeB.log" &
PROBE_PID=$!
why=$(converge 10); rc=$?
l1=$(sstat '.services_lists')
if [ $rc -eq 0 ]; then
	if ! is_uint "$l0" "$l1" || [ "$l1" -le "$l0" ]; then rc=1; why="no LIST after the ignored streaming list ($l0 -> $l1)"
	elif [ "$(pstat '.watches.services.initial_list')" != paginated ]; then rc=1; why="status does not say paginated"
	elif ! grep -q 'ignored sendInitialEvents' "$T/probeB.log"; then rc=1; why="reason not logged"
	fi
fi
result watchlist_ignored_falls_back $rc "$why"
stop_pid "$PROBE_PID" 3; PROBE_PID=

# B2. ... and one that sends no bookmark at all: no end marker within the
#     stall bound, paginated LIST.
ctl config '{"bookmarks":false}'
DUMP=$T/dumpC
l0=$(sstat '.services_lists')
"$PROBE" --kubeconfig "$T/kubeconfig" --node node-a --dump "$DUMP" \
	--interval 100 --stall-ms 1500 --backoff-min-ms 100 \
	--backoff-max-ms 1000 2>"$T/probeC.log" &
PROBE_PID=$!
why=$(converge 10); rc=$?
l1=$(sstat '.services_lists')
if [ $rc -eq 0 ]; then
	if ! is_uint "$l0" "$l1" || [ "$l1" -le "$l0" ]; then rc=1; why="no LIST ($l0 -> $l1)"
	elif ! grep -q 'no initial-events-end bookmark' "$T/probeC.log"; then rc=1; why="reason not logged"
	fi
fi
result watchlist_without_end_marker_falls_back $rc "$why"
stop_pid "$PROBE_PID" 3; PROBE_PID=
ctl config '{"bookmarks":true,"watchlist":"ok"}'

# 1. The streaming list (client-go's reflector since v1.35): the initial
#    state from one watch with sendInitialEvents, no LIST at all.
DUMP=$T/dump
l0=$(sstat '.services_lists')
"$PROBE" --kubeconfig "$T/kubeconfig" --node node-a --dump "$DUMP" \
	--interval 100 --stall-ms $STALL_MS --backoff-min-ms 100 \
	--backoff-max-ms 4000 --backoff-reset-ms 2000 --metrics "$T/metrics" \
	-v 1 2>"$T/probe.log" &
PROBE_PID=$!
why=$(converge 10); rc=$?
if [ $rc -eq 0 ]; then
	l1=$(sstat '.services_lists'); ends=$(sstat '.services_initial_events_end')
	if ! is_uint "$l0" "$l1" "$ends"; then rc=1; why="no server stats"
	elif [ "$l1" != "$l0" ]; then rc=1; why="listed ($l0 -> $l1 LISTs)"
	elif [ "$ends" -lt 1 ]; then rc=1; why="no initial-events-end bookmark sent"
	elif [ "$(pstat '.watches.services.initial_list')" != streaming ] ||
		[ "$(pstat '.watches.services.lists')" != 0 ]; then
		rc=1; why="probe status: $(pstat '.watches.services | [.initial_list, .lists] | @text')"
	fi
fi
result initial_list_streaming $rc "$why"

# 2. Watch: add, modify, delete (services, slices, node zone).
lists0=$(pstat '.watches.services | .lists + .watch_lists')
ctl put "$(svc demo svc8 8008)"
ctl put "$(slice demo svc8-abc svc8 198.18.1.8)"
ctl put "$(svc demo svc2 9002)"
ctl put "$(slice demo svc3-abc svc3 198.18.1.33)"
del services demo svc4
del endpointslices demo svc4-abc
ctl put "$(node zone-b)"
why=$(converge 10); rc=$?
if [ $rc -eq 0 ] && ! is_uint "$lists0"; then
	rc=1; why="no list count in the probe's status before the changes ('$lists0')"
elif [ $rc -eq 0 ] && [ "$(pstat '.watches.services | .lists + .watch_lists')" != "$lists0" ]; then
	rc=1; why="relisted instead of watching"
fi
result watch_add_modify_delete $rc "$why"

# 2a. Events arriving in 7-byte pieces are reassembled (incremental parse).
ctl config '{"split_events":true}'
ctl put "$(svc demo svc3 9003 ',"annotations":{"long":"'"$(printf 'x%.0s' $(seq 3000))"'"}')"
ctl put "$(slice demo svc8-abc svc8 198.18.1.88)"
why=$(converge 10); rc=$?
ctl config '{"split_events":false}'
result watch_events_split $rc "$why"

# 2b. Bookmarks move an idle informer's resourceVersion forward.
ctl config '{"bookmark_ms":200}'
ctl put "$(svc demo svc8 8108)"
want_rv=$(get state | jq -r .rv)
node_at_rv() { [ "$(pstat '.watches.node.resource_version')" = "$1" ]; }
# an empty or null rv (server state unreadable) would equal a missing one
rc=1
is_uint "$want_rv" && wait_until 10 node_at_rv "$want_rv" && rc=0
result watch_bookmarks $rc "node informer at rv $(pstat '.watches.node.resource_version'), server at $want_rv"
ctl config '{"bookmark_ms":1000}'

# 3. 410 Gone: deletions the client never saw as events vanish on relist.
rel0=$(pstat '.watches.services.relists')
ctl expire '{"silent_deletes":[{"resource":"services","namespace":"demo","name":"svc5"},{"resource":"endpointslices","namespace":"demo","name":"svc5-abc"},{"resource":"services","namespace":"demo","name":"svc6"}]}'
ctl put "$(svc demo svc9 8009)"
why=$(converge 10); rc=$?
rel1=$(pstat '.watches.services.relists')
if [ $rc -eq 0 ] && { ! is_uint "$rel0" "$rel1" || [ "$rel1" -le "$rel0" ]; }; then
	rc=1; why="no relist counted ($rel0 -> $rel1)"
fi
result relist_on_410 $rc "$why"

# 5. Disconnect: resume from the last resourceVersion, no relist.
# Count lists only once every informer is past its relist from case 3.
all_watching() { [ "$(pstat '[.watches[].state] | unique | join(",")')" = watching ]; }
wait_until 10 all_watching
lists0=$(pstat '[.watches[] | .lists + .watch_lists] | add')
ctl disconnect
ctl put "$(svc demo svc10 8010)"
ctl put "$(slice demo svc10-abc svc10 198.18.1.10)"
why=$(converge 10); rc=$?
if [ $rc -eq 0 ] && ! is_uint "$lists0"; then
	rc=1; why="no list count in the probe's status before the disconnect ('$lists0')"
elif [ $rc -eq 0 ] && [ "$(pstat '[.watches[] | .lists + .watch_lists] | add')" != "$lists0" ]; then
	rc=1; why="relisted after a disconnect ($lists0 -> $(pstat '[.watches[] | .lists + .watch_lists] | add') lists)"
fi
result disconnect_resume $rc "$why"

# 6. Garbage line in the stream and invalid objects: skipped, rest applies.
err0=$(pstat '.watches.services.errors')
ctl garbage
ctl put "$(svc demo bad-port 70000 ',"annotations":{"kpx-test/invalid":"true"}')"
ctl put "$(svc demo svc11 8011)"
ctl put "$(svc demo svc1 8001 ',"annotations":{"kpx-test/invalid":"true"}' | sed 's/"port":8001/"port":"x"/')"
ctl put "$(slice demo svc11-abc svc11 198.18.1.300 | sed 's/svc11-abc/bad-ip/')"
ctl put "$(slice demo svc11-abc svc11 198.18.1.11)"
# The invalid slice must not be expected either.
ctl put "$(slice demo bad-ip svc11 not-an-ip | sed 's/"labels"/"annotations":{"kpx-test\/invalid":"true"},"labels"/')"
why=$(converge 10); rc=$?
if [ $rc -eq 0 ]; then
	if ! probe_alive; then rc=1; why="probe died"
	elif err1=$(pstat '.watches.services.errors'); ! is_uint "$err0" "$err1" || [ "$err1" -le "$err0" ]; then
		rc=1; why="errors not counted ($err0 -> $err1)"
	elif ! grep -q 'demo/bad-port' "$T/probe.log"; then rc=1; why="bad object not named in the log"
	fi
fi
result garbage_and_invalid_skipped $rc "$why"

# 7. Stalled watch: no bytes, no end; restarted within the stall bound
#    (--stall-ms; the server sent bookmarks every second before), not
#    before it (the last byte came at most one bookmark interval earlier).
now_ms() { echo $(($(date +%s%N) / 1000000)); }
w0=$(sstat '.services_watches')
ctl stall
t0=$(now_ms)
ctl put "$(svc demo svc12 8012)"
restarted() { [ "$(sstat '.services_watches')" -gt "$w0" ]; }
rc=0; why=
if ! is_uint "$w0"; then rc=1; why="no watch count from the server"
elif ! wait_until $((STALL_MS / 1000 + 5)) restarted; then rc=1; why="watch not restarted"
else
	took=$(($(now_ms) - t0))
	if [ $took -gt $((STALL_MS + 1500)) ] || [ $took -lt $((STALL_MS - 1200)) ]; then
		rc=1; why="restarted after $took ms, stall bound $STALL_MS ms"
	fi
fi
[ $rc -ne 0 ] || { why=$(converge 8); rc=$?; }
if [ $rc -eq 0 ] && ! grep -q 'stalled' "$T/probe.log"; then
	rc=1; why="converged without a stall being detected"
fi
result stalled_watch_restarted_within_bound $rc "$why"

# 8. Token rotated on the server: 401s with backoff, then the new token from
#    the token file is picked up.
NEW=tok2-$RANDOM$RANDOM
ctl token "{\"token\":\"$NEW\"}"
ctl disconnect
ctl put "$(svc demo svc13 8013)"
six_401s() { [ "$(sstat '.unauthorized')" -ge 6 ]; }
wait_until 10 six_401s
u1=$(sstat '.unauthorized'); sleep 1; u2=$(sstat '.unauthorized')
# a long error streak: the backoff reaches its 4 s maximum
sleep 6
rc=0; why=
if ! is_uint "$u1" "$u2"; then rc=1; why="no 401 count from the server ('$u1', '$u2')"
elif [ "$u1" -lt 6 ]; then rc=1; why="client did not retry after 401 ($u1)"
elif [ $((u2 - u1)) -gt 20 ]; then rc=1; why="no backoff: $((u2 - u1)) 401s in 1s"
elif compare >/dev/null; then rc=1; why="converged with a wrong token?"
fi
printf '%s\n' "$NEW" >"$T/token.new" && mv "$T/token.new" "$T/token"
if [ $rc -eq 0 ]; then why=$(converge 10); rc=$?; fi
result token_rotation $rc "$why"

# 8b. Then the watches stay healthy for longer than --backoff-reset-ms:
#     the streak is over, the next error is retried after the minimum
#     backoff, not after the streak's 4 s.
wait_until 10 all_watching
sleep 2.5
w0=$(sstat '.services_watches')
ctl disconnect
t0=$(now_ms)
rc=0; why=
if ! is_uint "$w0"; then rc=1; why="no watch count from the server"
elif ! wait_until 8 restarted; then rc=1; why="watch not restarted"
else
	took=$(($(now_ms) - t0))
	[ $took -le 1500 ] || { rc=1; why="retried after $took ms: the old error streak still slows it"; }
fi
[ $rc -ne 0 ] || { why=$(converge 10); rc=$?; }
result backoff_reset_after_healthy_watch $rc "$why"

# 8c. /metrics has client-go's rest_client_* families: the 200s and the
#     401s of (8) by code, method and host, and a latency histogram
#     counting every request.
sleep 0.3
mval() { awk -v k="$1" '$1 == k { print $2 }' "$T/metrics" 2>/dev/null; }
lbl="host=\"127.0.0.1:$PORT\",method=\"GET\""
ok200=$(mval "rest_client_requests_total{code=\"200\",$lbl}")
n401=$(mval "rest_client_requests_total{code=\"401\",$lbl}")
hcount=$(mval "rest_client_request_duration_seconds_count{host=\"127.0.0.1:$PORT\",verb=\"GET\"}")
hinf=$(mval "rest_client_request_duration_seconds_bucket{host=\"127.0.0.1:$PORT\",verb=\"GET\",le=\"+Inf\"}")
s401=$(sstat '.unauthorized')
rc=0; why=
if ! is_uint "$ok200" "$n401" "$hcount" "$hinf"; then
	rc=1; why="families missing: 200='$ok200' 401='$n401' count='$hcount' inf='$hinf'"
elif [ "$ok200" -lt 3 ] || [ "$n401" -lt 6 ]; then rc=1; why="200: $ok200, 401: $n401"
elif is_uint "$s401" && [ "$n401" -gt "$s401" ]; then rc=1; why="more 401s ($n401) than the server sent ($s401)"
elif [ "$hcount" != "$hinf" ] || [ "$hcount" -lt $((ok200 + n401)) ]; then
	rc=1; why="histogram count $hcount (+Inf $hinf) < requests $((ok200 + n401))"
elif ! grep -q '^# TYPE rest_client_request_duration_seconds histogram' "$T/metrics"; then
	rc=1; why="no histogram TYPE line"
fi
result rest_client_metrics $rc "$why"

# 9. API server down, then back with the same state: resume.
get state >"$T/saved.json"
stop_pid "$SRV_PID" 3; SRV_PID=
sleep 2
rc=0; why=
probe_alive || { rc=1; why="probe died while the server was down"; }
if [ $rc -eq 0 ] && ! start_server "$NEW" --load "$T/saved.json"; then
	rc=1; why="server restart failed"
fi
if [ $rc -eq 0 ]; then
	ctl put "$(svc demo svc14 8014)"
	del services demo svc2
	why=$(converge 15); rc=$?
fi
result server_restart $rc "$why"

probe_alive; result api_client_alive $? "probe exited"

# 10. TLS: a client certificate instead of a token; a wrong CA is refused.
kubeconfig2() { # file ca-file
	cat >"$1" <<EOF
apiVersion: v1
kind: Config
current-context: c
clusters:
- name: fake
  cluster: {server: "$URL", certificate-authority: "$2"}
users:
- name: u
  user:
    client-certificate-data: $(base64 -w0 "$T/pki/client.crt")
    client-key-data: $(base64 -w0 "$T/pki/client.key")
contexts:
- name: c
  context: {cluster: fake, user: u}
EOF
}
stop_pid "$PROBE_PID" 3; PROBE_PID=
rm -f "$T/dump"
kubeconfig2 "$T/kc-cert" "$T/pki/ca.crt"
"$PROBE" --kubeconfig "$T/kc-cert" --node node-a --dump "$T/dump" \
	--interval 100 --page-limit 3 2>"$T/probe2.log" &
PROBE_PID=$!
why=$(converge 10); rc=$?
cca=$(sstat '.client_cert_auth')
if [ $rc -eq 0 ] && { ! is_uint "$cca" || [ "$cca" -lt 1 ]; }; then
	rc=1; why="server saw no client certificate ('$cca')"
fi
result tls_client_certificate $rc "$why"
stop_pid "$PROBE_PID" 3; PROBE_PID=

tests/fixtures/make_test_ca.sh "$T/pki2" >/dev/null
kubeconfig2 "$T/kc-badca" "$T/pki2/ca.crt"
rm -f "$T/dump"
"$PROBE" --kubeconfig "$T/kc-badca" --node node-a --dump "$T/dump" \
	--interval 100 --backoff-min-ms 100 --backoff-max-ms 500 2>"$T/probe3.log" &
PROBE_PID=$!
sleep 2
rc=0; why=
if ! probe_alive; then rc=1; why="probe died"
elif [ "$(pstat '.synced.services')" != false ]; then rc=1; why="synced through an untrusted CA"
elif ! grep -qi 'certificate' "$T/probe3.log"; then rc=1; why="no certificate error logged"
fi
result tls_wrong_ca_refused $rc "$why"
stop_pid "$PROBE_PID" 3; PROBE_PID=

# 11. In-cluster config; the token rotates the way the kubelet does it (the
#     ..data symlink swapped to a new directory).
SA=$T/sa
mkdir -p "$SA/v1" "$SA/v2"
printf '%s' "$NEW" >"$SA/v1/token"
cp "$T/pki/ca.crt" "$SA/v1/ca.crt"
ln -s v1 "$SA/..data"
ln -s ..data/token "$SA/token"
ln -s ..data/ca.crt "$SA/ca.crt"
rm -f "$T/dump"
KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT=$PORT KPX_SA_DIR=$SA \
	"$PROBE" --in-cluster --node node-a --dump "$T/dump" --interval 100 \
	--stall-ms $STALL_MS --backoff-min-ms 100 --backoff-max-ms 1000 \
	2>"$T/probe4.log" &
PROBE_PID=$!
why=$(converge 10); rc=$?
if [ $rc -eq 0 ]; then
	ROT=tok3-$RANDOM$RANDOM
	ctl token "{\"token\":\"$ROT\"}"
	ctl disconnect
	ctl put "$(svc demo svc15 8015)"
	sleep 1
	printf '%s' "$ROT" >"$SA/v2/token"
	cp "$T/pki/ca.crt" "$SA/v2/ca.crt"
	ln -s v2 "$SA/..data_tmp" && mv -T "$SA/..data_tmp" "$SA/..data"
	why=$(converge 10); rc=$?
	[ $rc -ne 0 ] || grep -q 'changed, using the new token' "$T/probe4.log" ||
		{ rc=1; why="rotation not noticed in the log"; }
fi
result in_cluster_token_rotation $rc "$why"
# 12. users[].user.exec (client.authentication.k8s.io/v1), run as client-go
#     runs it: the test plugin prints the token of $EX/token, expiring after
#     $EX/expiry seconds, and logs its args and KUBERNETES_EXEC_INFO.
stop_pid "$PROBE_PID" 3; PROBE_PID=
EX=$T/exec
mkdir -p "$EX"
kubeconfig_exec() { # file [extra exec env yaml lines] [interactiveMode]
	cat >"$1" <<EOF
apiVersion: v1
kind: Config
current-context: c
clusters:
- name: fake
  cluster:
    server: $URL
    certificate-authority: $T/pki/ca.crt
    extensions:
    - name: client.authentication.k8s.io/exec
      extension: {audience: kpx-test}
users:
- name: u
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: $ROOT/tests/fixtures/exec_credential.sh
      args: [--cluster, fake]
      env:
      - {name: KPX_EXEC_TOKEN_FILE, value: $EX/token}
      - {name: KPX_EXEC_EXPIRY_FILE, value: $EX/expiry}
      - {name: KPX_EXEC_LOG, value: $EX/log}
${2:-}
      interactiveMode: ${3:-Never}
      provideClusterInfo: true
contexts:
- name: c
  context: {cluster: fake, user: u}
EOF
}
runs() { [ -f "$EX/log" ] && wc -l <"$EX/log" || echo 0; }
XT=xtok1-$RANDOM$RANDOM
printf '%s' "$XT" >"$EX/token"
echo 3 >"$EX/expiry"
ctl token "{\"token\":\"$XT\"}"
kubeconfig_exec "$EX/kubeconfig"
DUMP=$T/dumpX
"$PROBE" --kubeconfig "$EX/kubeconfig" --node node-a --dump "$DUMP" \
	--interval 100 --stall-ms $STALL_MS --backoff-min-ms 100 \
	--backoff-max-ms 1000 2>"$T/probeX.log" &
PROBE_PID=$!
why=$(converge 10); rc=$?
if [ $rc -eq 0 ]; then
	first=$(head -1 "$EX/log" 2>/dev/null)
	chk() { [ "$(jq -r "$1" <<<"$first" 2>/dev/null)" = "$2" ]; }
	if [ -z "$first" ]; then rc=1; why="the plugin never ran"
	elif ! chk '.info.kind + " " + .info.apiVersion' "ExecCredential client.authentication.k8s.io/v1"; then rc=1; why="KUBERNETES_EXEC_INFO: $first"
	elif ! chk '.info.spec.interactive' false; then rc=1; why="spec.interactive is not false: $first"
	elif ! chk '.info.spec.cluster.server' "$URL"; then rc=1; why="no spec.cluster.server (provideClusterInfo): $first"
	elif ! chk '.info.spec.cluster.config.audience' kpx-test; then rc=1; why="no spec.cluster.config (exec extension): $first"
	elif ! chk '.info.spec.cluster["certificate-authority-data"] | @base64d | startswith("-----BEGIN")' true; then rc=1; why="no CA data in spec.cluster"
	elif ! chk '.args | join(",")' "--cluster,fake"; then rc=1; why="args: $first"
	elif ! chk '.stdin_tty' false; then rc=1; why="the plugin got a terminal"
	elif ! grep -q 'exec plugin .*: test plugin: issued a token' "$T/probeX.log"; then rc=1; why="plugin stderr not in the log"
	fi
fi
result exec_plugin_token $rc "$why"

# 12b. The credential expired (3 s): the next request runs the plugin again
#      first, so the new token is used without a single 401.
sleep 3
r0=$(runs); u0=$(sstat '.unauthorized')
XT=xtok2-$RANDOM$RANDOM
printf '%s' "$XT" >"$EX/token"
echo 3600 >"$EX/expiry"
ctl token "{\"token\":\"$XT\"}"
ctl disconnect
ctl put "$(svc demo svc16 8016)"
why=$(converge 10); rc=$?
r1=$(runs); u1=$(sstat '.unauthorized')
if [ $rc -eq 0 ]; then
	if [ "$r1" -le "$r0" ]; then rc=1; why="the plugin did not run again ($r0 -> $r1 runs)"
	elif ! is_uint "$u0" "$u1" || [ "$u1" != "$u0" ]; then rc=1; why="401s with the expired credential ($u0 -> $u1)"
	fi
fi
result exec_plugin_rerun_on_expiry $rc "$why"

# 12c. The credential (valid for an hour) is refused: a 401 runs the plugin
#      again at once, and the new token is used.
r0=$(runs); u0=$(sstat '.unauthorized')
XT=xtok3-$RANDOM$RANDOM
printf '%s' "$XT" >"$EX/token"
ctl token "{\"token\":\"$XT\"}"
ctl disconnect
ctl put "$(svc demo svc17 8017)"
why=$(converge 6); rc=$?
r1=$(runs); u1=$(sstat '.unauthorized')
if [ $rc -eq 0 ]; then
	if [ "$r1" -le "$r0" ]; then rc=1; why="the plugin did not run again ($r0 -> $r1 runs)"
	elif ! is_uint "$u0" "$u1" || [ "$u1" -le "$u0" ]; then rc=1; why="no 401 seen ($u0 -> $u1): the test did not test"
	elif [ $((r1 - r0)) -gt 3 ]; then rc=1; why="the plugin ran $((r1 - r0)) times for one rotation"
	fi
fi
result exec_plugin_rerun_on_401 $rc "$why"
stop_pid "$PROBE_PID" 3; PROBE_PID=

# 12d. A failing plugin: its stderr is logged, and no request goes out
#      without a credential.
kubeconfig_exec "$EX/kc-fail" "      - {name: KPX_EXEC_FAIL, value: cannot reach the identity provider}"
reqs() { sstat '[.unauthorized, .services_watches, .services_lists, .endpointslices_watches, .endpointslices_lists, .nodes_watches, .nodes_lists] | map(. // 0) | add'; }
q0=$(reqs)
"$PROBE" --kubeconfig "$EX/kc-fail" --node node-a --dump "$T/dumpXF" \
	--interval 100 --backoff-min-ms 100 --backoff-max-ms 500 2>"$T/probeXF.log" &
PROBE_PID=$!
sleep 2
q1=$(reqs)
rc=0; why=
if ! probe_alive; then rc=1; why="probe died"
elif ! is_uint "$q0" "$q1" || [ "$q1" != "$q0" ]; then rc=1; why="requests reached the server without a credential ($q0 -> $q1)"
elif ! grep -q 'cannot reach the identity provider' "$T/probeXF.log"; then rc=1; why="plugin stderr not logged"
elif ! grep -q 'exited with status 1' "$T/probeXF.log"; then rc=1; why="failure not logged"
fi
result exec_plugin_failure_sends_no_request $rc "$why"
stop_pid "$PROBE_PID" 3; PROBE_PID=

# 12e. interactiveMode Always: kpx never has a terminal, a clear error at
#      start (and the plugin never runs).
kubeconfig_exec "$EX/kc-always" "" Always
r0=$(runs)
out=$(timeout 10 "$PROBE" --kubeconfig "$EX/kc-always" --node node-a --dump "$T/dumpXA" 2>&1); prc=$?
rc=0; why=
if [ $prc -eq 0 ] || [ $prc -eq 124 ]; then rc=1; why="probe started (rc $prc)"
elif ! grep -q 'interactiveMode: Always' <<<"$out"; then rc=1; why="error does not name interactiveMode: $out"
elif [ "$(runs)" != "$r0" ]; then rc=1; why="the plugin ran"
fi
result exec_interactive_always_refused_at_start $rc "$why"

# 13. proxy-url, HTTPS_PROXY as client-go reads it, and tls-server-name,
#     through a CONNECT proxy on loopback (it logs each CONNECT target and
#     maps the name apiserver.kpx.test to 127.0.0.1; nothing else).
cat >"$T/proxy.py" <<'EOF'
import socket, sys, threading
MAP = {"apiserver.kpx.test": "127.0.0.1"}
LOOP = ("127.0.0.1", "::1", "localhost")
log = open(sys.argv[1], "a", buffering=1)
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(64)
print("PORT %d" % srv.getsockname()[1], flush=True)
def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
def handle(c):
    try:
        buf = b""
        while b"\r\n\r\n" not in buf and len(buf) < 65536:
            d = c.recv(4096)
            if not d:
                return c.close()
            buf += d
        method, target = buf.split(b"\r\n")[0].decode().split(" ")[:2]
        host, port = target.rsplit(":", 1)
        dst = MAP.get(host.strip("[]"), host.strip("[]"))
        log.write(target + "\n")
        if method != "CONNECT" or dst not in LOOP:
            c.sendall(b"HTTP/1.1 403 Forbidden\r\n\r\n")
            return c.close()
        u = socket.create_connection((dst, int(port)), timeout=5)
        u.settimeout(None)
        c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        rest = buf.split(b"\r\n\r\n", 1)[1]
        if rest:
            u.sendall(rest)
        threading.Thread(target=pipe, args=(u, c), daemon=True).start()
        pipe(c, u)
    except Exception:
        c.close()
while True:
    c, _ = srv.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
EOF
python3 "$T/proxy.py" "$T/proxy.log" >"$T/proxy.out" 2>"$T/proxy.err" &
PROXY_PID=$!
wait_until 5 grep -q '^PORT ' "$T/proxy.out"
PP=$(awk '/^PORT /{print $2}' "$T/proxy.out")
touch "$T/proxy.log"
ctl token "{\"token\":\"$NEW\"}"
printf '%s\n' "$NEW" >"$T/token"
kubeconfig_net() { # file server [cluster yaml lines]
	cat >"$1" <<EOF
apiVersion: v1
kind: Config
current-context: c
clusters:
- name: fake
  cluster:
    server: $2
    certificate-authority: $T/pki/ca.crt
${3:-}
users:
- name: u
  user: {tokenFile: $T/token}
contexts:
- name: c
  context: {cluster: fake, user: u}
EOF
}
proxied() { grep -c "^$1\$" "$T/proxy.log"; }
# run_probe NAME [env...]: a probe with that kubeconfig, $DUMP
run_probe() {
	local kc=$1
	shift
	rm -f "$DUMP"
	env "$@" "$PROBE" --kubeconfig "$kc" --node node-a --dump "$DUMP" \
		--interval 100 --backoff-min-ms 100 --backoff-max-ms 500 -v 1 \
		2>"$DUMP.log" &
	PROBE_PID=$!
}
if ! is_uint "$PP"; then
	for c in proxy_url_through_connect_proxy https_proxy_env_not_for_loopback https_proxy_env_with_tls_server_name tls_server_name_mismatch_refused; do
		result $c 1 "CONNECT proxy did not start: $(tail -2 "$T/proxy.err")"
	done
else
	# 13a. proxy-url: every request through it, loopback included
	#      (http.ProxyURL has no exception).
	DUMP=$T/dumpP1
	kubeconfig_net "$T/kc-proxy" "$URL" "    proxy-url: http://127.0.0.1:$PP"
	run_probe "$T/kc-proxy"
	why=$(converge 10); rc=$?
	n=$(proxied "127.0.0.1:$PORT")
	[ $rc -ne 0 ] || [ "$n" -ge 1 ] || { rc=1; why="no CONNECT 127.0.0.1:$PORT at the proxy"; }
	result proxy_url_through_connect_proxy $rc "$why"
	stop_pid "$PROBE_PID" 3; PROBE_PID=

	# 13b. HTTPS_PROXY from the environment is not used for a loopback
	#      server (Go's httpproxy rule).
	DUMP=$T/dumpP2
	n0=$(wc -l <"$T/proxy.log")
	kubeconfig_net "$T/kc-plain" "$URL"
	run_probe "$T/kc-plain" HTTPS_PROXY=http://127.0.0.1:$PP
	why=$(converge 10); rc=$?
	[ $rc -ne 0 ] || [ "$(wc -l <"$T/proxy.log")" = "$n0" ] || { rc=1; why="the proxy saw: $(tail -1 "$T/proxy.log")"; }
	result https_proxy_env_not_for_loopback $rc "$why"
	stop_pid "$PROBE_PID" 3; PROBE_PID=

	# 13c. A server by name (apiserver.kpx.test, which only the proxy
	#      resolves) with tls-server-name: localhost: https_proxy from the
	#      environment is used, the CONNECT names the server's real host,
	#      and the certificate (IP:127.0.0.1, DNS:localhost) is verified
	#      against localhost.
	DUMP=$T/dumpP3
	kubeconfig_net "$T/kc-sni" "https://apiserver.kpx.test:$PORT" "    tls-server-name: localhost"
	run_probe "$T/kc-sni" https_proxy=http://127.0.0.1:$PP NO_PROXY=198.18.0.0/15,.other.test
	why=$(converge 10); rc=$?
	n=$(proxied "apiserver.kpx.test:$PORT")
	[ $rc -ne 0 ] || [ "$n" -ge 1 ] || { rc=1; why="no CONNECT apiserver.kpx.test:$PORT at the proxy"; }
	result https_proxy_env_with_tls_server_name $rc "$why"
	stop_pid "$PROBE_PID" 3; PROBE_PID=

	# 13d. tls-server-name is what the certificate is checked against: a
	#      name the certificate does not carry is refused.
	DUMP=$T/dumpP4
	kubeconfig_net "$T/kc-badsni" "$URL" "    tls-server-name: wrong.kpx.test"
	run_probe "$T/kc-badsni"
	sleep 2
	rc=0; why=
	if ! probe_alive; then rc=1; why="probe died"
	elif [ "$(pstat '.synced.services')" != false ]; then rc=1; why="synced with a certificate that does not name wrong.kpx.test"
	elif ! grep -qi 'certificate\|subject' "$DUMP.log"; then rc=1; why="no certificate error logged"
	fi
	result tls_server_name_mismatch_refused $rc "$why"
	stop_pid "$PROBE_PID" 3; PROBE_PID=
fi
stop_pid "$PROXY_PID" 3; PROXY_PID=
# 14. username/password: HTTP basic auth, as client-go sends it.
ctl config '{"basic":"kpx-user:pa:ss word"}'
cat >"$T/kc-basic" <<EOF
apiVersion: v1
kind: Config
current-context: c
clusters:
- name: fake
  cluster: {server: "$URL", certificate-authority: "$T/pki/ca.crt"}
users:
- name: u
  user: {username: kpx-user, password: "pa:ss word"}
contexts:
- name: c
  context: {cluster: fake, user: u}
EOF
DUMP=$T/dumpBA
b0=$(sstat '.basic_auth')
"$PROBE" --kubeconfig "$T/kc-basic" --node node-a --dump "$DUMP" \
	--interval 100 --backoff-min-ms 100 --backoff-max-ms 500 2>"$T/probeBA.log" &
PROBE_PID=$!
why=$(converge 10); rc=$?
b1=$(sstat '.basic_auth')
if [ $rc -eq 0 ] && { ! is_uint "$b0" "$b1" || [ "$b1" -le "$b0" ]; }; then
	rc=1; why="the server saw no basic auth ($b0 -> $b1)"
fi
result basic_auth $rc "$why"
stop_pid "$PROBE_PID" 3; PROBE_PID=
ctl config '{"basic":""}'
exit 0
