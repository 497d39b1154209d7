#!/bin/bash
# `make demo`: two kpx nodes with pods running real TCP/UDP servers and an
# external client, all inside network namespaces created here (addresses
# from 198.18.0.0/15 and fd00::/8, no route out); one `kpx run --manifests`
# agent per node; shows load-balanced traffic and `kpx status`. Everything
# is removed on exit, also on failure or Ctrl-C.
# KPX_BACKEND=nft|bpf picks the datapath (default nft).
set -uo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=../tests/integration/lib/rig.sh
source tests/integration/lib/rig.sh

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

if [ "$(id -u)" -ne 0 ]; then
	echo "demo: run as root (network namespaces, nftables/BPF)" >&2
	exit 1
fi
# the rig defaults KPX_BACKEND to nft; KPX_BACKEND=bpf make demo for eBPF
rig_up || { echo "demo: could not build the namespaces" >&2; exit 1; }

say "manifests: the embedded default (no cluster): $RIG_MANIFESTS"
rig_manifest_write demo.yaml <<'YAML'
apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec:
  type: ClusterIP
  clusterIP: 198.18.100.10
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: demo
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- {addresses: [198.19.1.11], nodeName: n1, conditions: {ready: true}}
- {addresses: [198.19.1.12], nodeName: n1, conditions: {ready: true}}
- {addresses: [198.19.2.11], nodeName: n2, conditions: {ready: true}}
---
apiVersion: v1
kind: Service
metadata: {name: dns, namespace: demo}
spec:
  clusterIP: 198.18.100.53
  ports: [{name: dns, port: 53, targetPort: 5353, protocol: UDP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: dns-1
  namespace: demo
  labels: {kubernetes.io/service-name: dns}
addressType: IPv4
ports: [{name: dns, port: 5353, protocol: UDP}]
endpoints:
- {addresses: [198.19.1.13], nodeName: n1}
- {addresses: [198.19.2.13], nodeName: n2}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: demo}
spec:
  type: NodePort
  clusterIP: 198.18.100.20
  ports: [{name: http, port: 8080, nodePort: 30080, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: api-1
  namespace: demo
  labels: {kubernetes.io/service-name: api}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- {addresses: [198.19.1.11], nodeName: n1}
- {addresses: [198.19.2.12], nodeName: n2}
---
apiVersion: v1
kind: Service
metadata: {name: empty, namespace: demo}
spec:
  clusterIP: 198.18.100.50
  ports: [{name: http, port: 80, protocol: TCP}]
YAML
cat "$RIG_MANIFESTS/demo.yaml" | grep -E '^  (name|clusterIP|type):' | sed 's/^/   /'

say "pods: kpx_echo servers answer '<pod> <source address they saw>'"
rig_pod_servers 8080,5353

say "agents: one 'kpx run --backend $KPX_BACKEND' per node"
for node in $RIG_NODES; do rig_agent_start "$node"; done
for node in $RIG_NODES; do
	if ! rig_agent_wait_synced "$node" 15; then
		echo "demo: agent on $node did not sync; its log:" >&2
		tail -20 "$RIG_DIR/agent-$node.log" >&2
		exit 1
	fi
done
echo "agents synced"

say "ClusterIP 198.18.100.10:80 (web) from pod n2p2: 30 TCP connections"
run rig_pod_exec n2 2 "$KPX_ECHO" client --addr 198.18.100.10 --port 80 -n 30

say "ClusterIP 198.18.100.53:53/UDP (dns) from pod n1p2: 20 datagrams"
run rig_pod_exec n1 2 "$KPX_ECHO" client --addr 198.18.100.53 --port 53 --proto udpu -n 20

say "NodePort 198.18.0.12:30080 (api) from the external client: 20 connections"
run rig_ext_exec "$KPX_ECHO" client --addr 198.18.0.12 --port 30080 -n 20

say "Service without endpoints (empty, 198.18.100.50:80): refused at once"
run rig_pod_exec n1 2 "$KPX_ECHO" client --addr 198.18.100.50 --port 80 -n 1 --timeout-ms 2000

say "kpx status (node n1)"
run "$KPX_BIN" status --state-socket "$RIG_DIR/n1.sock" --bpf-root "/sys/fs/bpf/$RIG_P-n1"

say "kpx services (node n1, read from the kernel)"
rig_node_exec n1 n1 "$KPX_BIN" services --state-socket "$RIG_DIR/n1.sock" \
	--bpf-root "/sys/fs/bpf/$RIG_P-n1" --backend "$KPX_BACKEND"

say "done: removing namespaces, cgroups and pins"
