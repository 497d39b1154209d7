#!/bin/bash
# Hostile and mistaken files around a running agent, on node n1 of the rig
# (nft; the manifests source and the status socket are the same on both
# backends):
#   a FIFO named *.yaml (and a symlink to one) in the manifests directory,
#   present at start and created while the agent runs: the agent keeps
#   answering `kpx status` and serves the services of the other files; the
#   error names the file;
#   a YAML alias bomb next to a normal object in one file: only the bomb is
#   skipped, the agent's memory stays small;
#   --state-socket pointing at a regular file: the file is left as it was,
#   the error names it.
# One line per check: PASS hostile/name | FAIL hostile/name: why | SKIP ...
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
ROOT=$PWD
KPX_BIN=${KPX_BIN:-$ROOT/build/kpx}
KPX_ECHO=${KPX_ECHO:-$ROOT/build/kpx_echo}
KPX_BACKEND=nft
# shellcheck source=lib/check.sh
. tests/integration/lib/check.sh
CHECK_PREFIX=hostile
need_root all
need_files all "$KPX_BIN" "$KPX_ECHO" tests/fuzz/corpus/yaml/alias-bomb.yaml
need_tools all nft jq
# shellcheck source=lib/rig.sh
. tests/integration/lib/rig.sh

rig_up || { fail rig "rig_up failed"; exit 0; }

web_yaml() {	# NAME CLUSTER_IP: a service with one endpoint, pod 1 of n1
	cat <<EOF2
apiVersion: v1
kind: Service
metadata: {name: $1, namespace: default}
spec:
  clusterIP: $2
  clusterIPs: [$2]
  ports: [{name: http, port: 80, protocol: TCP, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: $1-1
  namespace: default
  labels: {kubernetes.io/service-name: $1}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
  - addresses: [$(rig_pod_ip4 n1 1)]
    conditions: {ready: true}
    nodeName: n1
EOF2
}
# serves IP: 3 connections to IP:80 from node n1 all answered
serves() {
	local seen
	seen=$(rig_node_exec n1 n1 timeout -k 1 10 "$KPX_ECHO" client --addr "$1" --port 80 -n 3 --timeout-ms 1000)
	[ "$(echo_get "$seen" ok)" = 3 ]
}
status_ok() { timeout -k 1 3 "$KPX_BIN" status --state-socket "$RIG_DIR/n1.sock" -o json >/dev/null 2>&1; }
log_has() { grep -qF -- "$1" "$RIG_DIR/agent-n1.log.tmp"; }
agent_rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$(rig_agent_pid n1)/status" 2>/dev/null; }

rig_pod_servers 8080
web_yaml web 198.18.100.1 | rig_manifest_write web.yaml
mkfifo "$RIG_MANIFESTS/fifo.yaml"
mkfifo "$RIG_DIR/elsewhere-fifo"
ln -s "$RIG_DIR/elsewhere-fifo" "$RIG_MANIFESTS/link-to-fifo.yml"

# ---- a FIFO in the directory at start ---------------------------------------
rig_agent_start n1
if rig_agent_wait_synced n1 15; then
	pass fifo-at-start-agent-syncs-and-answers-status
else
	fail fifo-at-start-agent-syncs-and-answers-status \
		"no answer on the status socket: $(tail -3 "$RIG_DIR/agent-n1.log.tmp" | tr '\n' ' ')"
fi
check_why fifo-at-start-other-files-served \
	"$(serves 198.18.100.1 || echo "198.18.100.1:80 not served")"
check_why fifo-error-names-the-file \
	"$(log_has "fifo.yaml: a FIFO, not a regular file" && log_has "link-to-fifo.yml: a FIFO" ||
		echo "no error naming fifo.yaml and link-to-fifo.yml in the log")"

# ---- a FIFO created while the agent runs, then a new service ----------------
mkfifo "$RIG_MANIFESTS/late.yaml"
web_yaml api 198.18.100.2 | rig_manifest_write api.yaml
if rig_wait_until 10 serves 198.18.100.2 && status_ok; then
	pass fifo-created-at-run-time-agent-keeps-serving-new-files
else
	fail fifo-created-at-run-time-agent-keeps-serving-new-files \
		"198.18.100.2 not served or status silent: $(tail -3 "$RIG_DIR/agent-n1.log.tmp" | tr '\n' ' ')"
fi
rm -f "$RIG_MANIFESTS/late.yaml" "$RIG_MANIFESTS/fifo.yaml" "$RIG_MANIFESTS/link-to-fifo.yml"

# ---- an alias bomb next to a normal object in one file ----------------------
rss0=$(agent_rss_kb)
{ cat tests/fuzz/corpus/yaml/alias-bomb.yaml; echo ---; web_yaml db 198.18.100.3; } |
	rig_manifest_write bomb.yaml
if rig_wait_until 10 serves 198.18.100.3 && status_ok; then
	pass alias-bomb-file-rest-of-file-served
else
	fail alias-bomb-file-rest-of-file-served "198.18.100.3 not served within 10 s"
fi
rss1=$(agent_rss_kb)
check_why alias-bomb-agent-rss-grows-less-than-16MB \
	"$([ -n "$rss0" ] && [ -n "$rss1" ] && [ $((rss1 - rss0)) -lt 16384 ] ||
		echo "VmRSS ${rss0:-?} kB -> ${rss1:-?} kB")"
check_why alias-bomb-error-names-file-and-object \
	"$(log_has "bomb.yaml: document 1 (default/bomb)" || echo "no error naming bomb.yaml and default/bomb")"
rig_agent_stop n1

# ---- --state-socket at a regular file ---------------------------------------
echo "precious" >"$RIG_DIR/not-a-socket"
rig_node_bg n1 n1 "$RIG_DIR/agent-sock.log" "$KPX_BIN" run --manifests "$RIG_MANIFESTS" \
	--backend nft --hostname-override n1 --state-socket "$RIG_DIR/not-a-socket" \
	--healthz-bind-address 198.18.0.11:10256 --metrics-bind-address 198.18.0.11:10249 \
	--min-sync-period 100ms
pid=$RIG_LAST_PID
rig_wait_until 10 grep -q "not-a-socket" "$RIG_DIR/agent-sock.log"
stop_pid "$pid" 5
if [ "$(cat "$RIG_DIR/not-a-socket" 2>/dev/null)" = precious ] && [ -f "$RIG_DIR/not-a-socket" ]; then
	pass state-socket-regular-file-is-kept
else
	fail state-socket-regular-file-is-kept "$RIG_DIR/not-a-socket was replaced or removed"
fi
check_why state-socket-regular-file-error-names-it \
	"$(grep -qF "status socket $RIG_DIR/not-a-socket: exists and is not a socket" "$RIG_DIR/agent-sock.log" ||
		echo "no error naming it: $(head -3 "$RIG_DIR/agent-sock.log" | tr '\n' ' ')")"
exit 0
