#!/bin/bash
# How long the agent's sync loop is blocked by the bpf backend's UDP flow
# cleanup (issue 11): one agent (bpf) on the rig's node n1, a UDP Service
# with two endpoints, N extra network namespaces (each like a pod: a
# process in n1's cgroup holding S UDP sockets connected to the Service),
# then one endpoint removed. Prints the duration of that sync as the agent
# logs it (the time its loop could not answer /healthz or the status
# socket) and, with the worker, the cleanup run's own duration.
# KPX_BIN picks the binary (default build/kpx); N (100) and S (50).
# Safety: everything inside the rig's network namespaces and cgroups,
# removed on exit.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
export KPX_BACKEND=bpf
. tests/integration/lib/rig.sh
N=${N:-100} S=${S:-50}
rig_up || exit 1
cleanup_extra() {
	local i
	for i in $(seq 1 "$N"); do ip netns del "${RIG_P}n9p$i" 2>/dev/null; done
	rig_down
}
trap cleanup_extra EXIT
svc() {
	cat <<-YAML
	apiVersion: v1
	kind: Service
	metadata: {name: u, namespace: p}
	spec: {clusterIP: 198.18.100.90, clusterIPs: [198.18.100.90], ports: [{name: u, protocol: UDP, port: 80, targetPort: 8080}]}
	---
	apiVersion: discovery.k8s.io/v1
	kind: EndpointSlice
	metadata: {name: u-a, namespace: p, labels: {kubernetes.io/service-name: u}}
	addressType: IPv4
	ports: [{name: u, protocol: UDP, port: 8080}]
	endpoints:
	YAML
	local ip
	for ip in "$@"; do echo "- {addresses: [\"$ip\"], conditions: {ready: true}, nodeName: n1}"; done
}
svc 198.19.1.11 198.19.1.12 | rig_manifest_write u.yaml
rig_agent_start n1
rig_agent_wait_synced n1 15 || { echo "agent did not start"; exit 1; }
for i in $(seq 1 "$N"); do
	ns=${RIG_P}n9p$i
	ip netns add "$ns"
	nsenter --net=/run/netns/"$ns" ip link set lo up
	nsenter --net=/run/netns/"$ns" ip route add default dev lo
	rig_node_bg n1 n9p$i "$RIG_DIR/holder-$i.log" python3 -c "
import socket, time
s = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range($S)]
for x in s: x.connect(('198.18.100.90', 80))
print('held', flush=True)
time.sleep(120)"
done
for i in $(seq 1 "$N"); do wait_until 10 grep -q held "$RIG_DIR/holder-$i.log" || { echo "holder $i: $(cat "$RIG_DIR/holder-$i.log")"; exit 1; }; done
n0=$(rig_agent_field n1 syncs_total)
svc 198.19.1.12 | rig_manifest_write u.yaml
rig_sync_all 30
sleep 2
echo "binary: $KPX_BIN; $N netns x $S connected UDP sockets; processes on the machine: $(ls -d /proc/[0-9]* | wc -l)"
grep -E "sync: partial" "$RIG_DIR/agent-n1.log" | tail -1 | sed 's/^.*sync:/sync:/'
grep -E "destroyed connected UDP sockets" "$RIG_DIR/agent-n1.log" | tail -1 | sed 's/^.*bpf:/bpf:/'
