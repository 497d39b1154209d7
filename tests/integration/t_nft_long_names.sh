#!/bin/bash
# A Service with the longest names the API allows (namespace 63, name 63,
# port name 15) next to ordinary ones (issue 13, defect 1): with nft its
# chain userdata once went past the kernel's 256 bytes and every
# transaction was refused, freezing every Service on the node. Checks that
# the ordinary Services keep working and follow updates, the long one works
# too, /healthz stays 200, no sync error is counted, `kpx services` names
# it and --verify agrees with the wanted plan; and that `kpx services`
# shows affinity gone after ClientIP -> None (issue 15).
# Backends: ${KPX_BACKENDS:-nft bpf}. Prints PASS/FAIL/SKIP <backend>/<check>.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
# shellcheck source=lib/check.sh
. tests/integration/lib/check.sh
CHECK_PREFIX=long-names
need_root long-names
for b in build/kpx build/kpx_echo; do
	[ -x "$b" ] || { skip long-names "$b not built"; exit 0; }
done
need_tools long-names jq curl || exit 0

NS=$(printf 'n%.0s' $(seq 63))
NAME=$(printf 'm%.0s' $(seq 63))
PORT=$(printf 'p%.0s' $(seq 15))

P1=198.19.1.11 P2=198.19.1.12 Q1=198.19.2.11

web() {	# AFFINITY ENDPOINT...
	local aff=$1 e
	shift
	cat <<-EOF
	apiVersion: v1
	kind: Service
	metadata: {name: web, namespace: t}
	spec:
	  clusterIP: 198.18.100.1
	  sessionAffinity: $aff
	  ports: [{name: p, protocol: TCP, port: 80, targetPort: 8080}]
	---
	apiVersion: discovery.k8s.io/v1
	kind: EndpointSlice
	metadata: {name: web-1, namespace: t, labels: {kubernetes.io/service-name: web}}
	addressType: IPv4
	ports: [{name: p, protocol: TCP, port: 8080}]
	endpoints:
	EOF
	for e in "$@"; do
		echo "- {addresses: [\"${e%@*}\"], conditions: {ready: true}, nodeName: ${e#*@}}"
	done
}

long() {
	cat <<-EOF
	apiVersion: v1
	kind: Service
	metadata: {name: $NAME, namespace: $NS}
	spec:
	  clusterIP: 198.18.100.2
	  ports: [{name: $PORT, protocol: TCP, port: 80, targetPort: 8080}]
	---
	apiVersion: discovery.k8s.io/v1
	kind: EndpointSlice
	metadata: {name: long-1, namespace: $NS, labels: {kubernetes.io/service-name: $NAME}}
	addressType: IPv4
	ports: [{name: $PORT, protocol: TCP, port: 8080}]
	endpoints:
	- {addresses: ["$Q1"], conditions: {ready: true}, nodeName: n2}
	EOF
}

run_backend() {
	BK=$1
	(
		CHECK_PREFIX=long-names/$BK
		export KPX_BACKEND=$BK
		export RIG_P="k$$${BK:0:1}"
		# shellcheck source=lib/rig.sh
		source tests/integration/lib/rig.sh
		rig_up || { fail rig "rig_up failed"; exit 1; }
		E=$KPX_ECHO
		rig_pod_servers 8080
		cl() { rig_node_exec n1 n1p3 "$E" client --max-fail 3 "$@"; }
		kflags() { echo --backend "$BK" --state-socket "$RIG_DIR/n1.sock" --bpf-root "/sys/fs/bpf/$RIG_P-n1" --cgroup-path "$RIG_CG/n1"; }
		kn1() { rig_node_exec n1 n1 "$KPX_BIN" "$@"; }

		web None $P1@n1 $P2@n1 | rig_manifest_write web.yaml
		long | rig_manifest_write long.yaml
		rig_agent_start n1
		rig_agent_wait_synced n1 15 || true
		rig_sync_all 10 || true

		local out why
		out=$(cl --addr 198.18.100.1 --port 80 -n 20 --timeout-ms 1000)
		if [ "$(echo_get "$out" ok)" = 20 ]; then
			pass ordinary-service-works-next-to-longest-names
		else
			fail ordinary-service-works-next-to-longest-names "$(tr '\n' ' ' <<<"$out")"
		fi
		out=$(cl --addr 198.18.100.2 --port 80 -n 10 --timeout-ms 1000)
		if [ "$(echo_get "$out" ok)" = 10 ] && [ "$(echo_names id "$out")" = "n2-p1 " ]; then
			pass longest-names-service-works
		else
			fail longest-names-service-works "$(tr '\n' ' ' <<<"$out")"
		fi

		# an update of the ordinary Service takes effect
		web None $P2@n1 | rig_manifest_write web.yaml
		rig_sync_all 10 || true
		out=$(cl --addr 198.18.100.1 --port 80 -n 20 --timeout-ms 1000)
		if [ "$(echo_get "$out" ok)" = 20 ] && [ "$(echo_names id "$out")" = "n1-p2 " ]; then
			pass ordinary-service-follows-updates
		else
			fail ordinary-service-follows-updates "want only n1-p2: $(tr '\n' ' ' <<<"$out")"
		fi

		local code errs
		code=$(rig_exec n1 curl -s -o /dev/null -w '%{http_code}' --max-time 3 http://198.18.0.11:10256/healthz)
		[ "$code" = 200 ] && pass healthz-stays-200 || fail healthz-stays-200 "got $code"
		errs=$(rig_agent_field n1 sync_errors_total)
		[ "$errs" = 0 ] && pass no-sync-errors ||
			fail no-sync-errors "sync_errors_total $errs, last: $(rig_agent_field n1 last_error)"

		local j svc
		j=$(kn1 services -o json $(kflags) 2>&1)
		svc=$(jq -r --arg a 198.18.100.2 '.frontends[] | select(.address == $a) | "\(.service) \(.port_name)"' <<<"$j" 2>/dev/null)
		[ "$svc" = "$NS/$NAME $PORT" ] && pass services-names-the-longest-service ||
			fail services-names-the-longest-service "got '$svc'"
		out=$(kn1 services --verify $(kflags) 2>&1)
		[ $? -eq 0 ] && pass verify-matches-wanted-plan ||
			fail verify-matches-wanted-plan "$(tail -3 <<<"$out" | tr '\n' ' ')"

		# issue 15: the CLI shows what is programmed after ClientIP -> None
		web ClientIP $P2@n1 | rig_manifest_write web.yaml
		rig_sync_all 10 || true
		local a1 a2
		a1=$(kn1 services -o json $(kflags) | jq -r '.frontends[] | select(.address == "198.18.100.1") | .affinity_timeout')
		web None $P2@n1 | rig_manifest_write web.yaml
		rig_sync_all 10 || true
		a2=$(kn1 services -o json $(kflags) | jq -r '.frontends[] | select(.address == "198.18.100.1") | .affinity_timeout')
		if [ "$a1" = 10800 ] && [ "$a2" = 0 ]; then
			pass services-shows-affinity-removed
		else
			fail services-shows-affinity-removed "ClientIP: '$a1' (want 10800), then None: '$a2' (want 0)"
		fi
		exit 0
	)
}

rc=0
for BK in ${KPX_BACKENDS:-nft bpf}; do
	run_backend "$BK" || rc=1
done
exit $rc
