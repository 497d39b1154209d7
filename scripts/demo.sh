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
# svc NAME CLUSTERIP TYPE|- PORT: a Service in namespace demo.
svc() {
	printf -- '---\napiVersion: v1\nkind: Service\n'
	printf 'metadata: {name: %s, namespace: demo}\nspec:\n' "$1"
	[ "$3" = - ] || printf '  type: %s\n' "$3"
	printf '  clusterIP: %s\n  ports: [%s]\n' "$2" "$4"
}
# slice SERVICE PORT ENDPOINT...: its IPv4 EndpointSlice.
slice() {
	local name=$1 port=$2
	shift 2
	printf -- '---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n'
	printf 'metadata:\n  name: %s-1\n  namespace: demo\n' "$name"
	printf '  labels: {kubernetes.io/service-name: %s}\n' "$name"
	printf 'addressType: IPv4\nports: [%s]\nendpoints:\n' "$port"
	printf -- '- %s\n' "$@"
}
{
	svc web 198.18.100.10 ClusterIP \
		'{name: http, port: 80, targetPort: 8080, protocol: TCP}'
	slice web '{name: http, port: 8080, protocol: TCP}' \
		'{addresses: [198.19.1.11], nodeName: n1, conditions: {ready: true}}' \
		'{addresses: [198.19.1.12], nodeName: n1, conditions: {ready: true}}' \
		'{addresses: [198.19.2.11], nodeName: n2, conditions: {ready: true}}'
	svc dns 198.18.100.53 - \
		'{name: dns, port: 53, targetPort: 5353, protocol: UDP}'
	slice dns '{name: dns, port: 5353, protocol: UDP}' \
		'{addresses: [198.19.1.13], nodeName: n1}' \
		'{addresses: [198.19.2.13], nodeName: n2}'
	svc api 198.18.100.20 NodePort \
		'{name: http, port: 8080, nodePort: 30080, protocol: TCP}'
	slice api '{name: http, port: 8080, protocol: TCP}' \
		'{addresses: [198.19.1.11], nodeName: n1}' \
		'{addresses: [198.19.2.12], nodeName: n2}'
	svc empty 198.18.100.50 - '{name: http, port: 80, protocol: TCP}'
} | rig_manifest_write demo.yaml
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

say "kpx explain: what node n1 does with the external client's NodePort packet, and why"
rig_node_exec n1 n1 "$KPX_BIN" explain --state-socket "$RIG_DIR/n1.sock" \
	--src "$RIG_EXT_IP4" --dst "$(rig_node_ip4 n1)" --port 30080

say "done: removing namespaces, cgroups and pins"
