#!/bin/bash
# `kpx explain` on plans computed from manifests (no root, no kernel):
# each check asks about one packet and asserts the origin, endpoint set,
# verdict and source NAT that the plan's rows give it. The same code
# explains a running agent's plan (t_services.sh uses it on both
# backends against the kernel).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
# shellcheck source=lib/check.sh
. tests/integration/lib/check.sh
KPX=${KPX_BIN:-build/kpx}
need_files explain "$KPX"
need_tools explain jq
tmp=$(mktemp -d /tmp/kpx-explain.$$.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
snapshot KPX "$tmp" || { fail explain "$KPX kept changing"; exit 0; }

cat >"$tmp/m.yaml" <<'Y'
apiVersion: v1
kind: Service
metadata: {name: web, namespace: t}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  clusterIP: 198.18.100.20
  ports: [{name: http, protocol: TCP, port: 80, targetPort: 8080, nodePort: 30080}]
  loadBalancerSourceRanges: [198.19.0.0/16]
status: {loadBalancer: {ingress: [{ip: 198.18.200.20}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: t, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, protocol: TCP, port: 8080}]
endpoints:
- {addresses: [198.18.8.11], conditions: {ready: true}, nodeName: n1}
- {addresses: [198.18.9.11], conditions: {ready: true}, nodeName: n2}
---
apiVersion: v1
kind: Service
metadata: {name: a-evil, namespace: t}
spec:
  clusterIP: 198.18.100.21
  externalIPs: [198.18.100.20]
  ports: [{name: http, protocol: TCP, port: 81, targetPort: 8080}]
Y
FLAGS=(--manifests "$tmp" --backend nft --hostname-override n1 --node-ip 198.18.0.1
       --local-addresses 198.18.0.1 --cluster-cidr 198.18.8.0/21)

# ex NAME EXPECTED-JQ-RESULT JQ ARGS...: explain -o json, compare a jq view
ex() {
	local name=$1 want=$2 q=$3 got
	shift 3
	got=$(tcall "$KPX" explain "${FLAGS[@]}" -o json "$@" 2>"$tmp/err" | jq -c "$q" 2>&1)
	[ "$got" = "$want" ] && pass "explain/$name" ||
		fail "explain/$name" "got $got want $want ($(tail -1 "$tmp/err"))"
}

ex clusterip-from-a-pod-keeps-its-source '["pod","internal",false]' '[.origin,.set,.source_nat]' \
	--src 198.18.8.50 --dst 198.18.100.20 --port 80
ex clusterip-from-the-node-is-masqueraded '["node",true]' '[.origin,.source_nat]' \
	--src 198.18.0.1 --dst 198.18.100.20 --port 80
ex clusterip-from-off-cluster-is-masqueraded '["remote","off-cluster",true]' '[.origin,.masquerade,.source_nat]' \
	--src 198.19.1.1 --dst 198.18.100.20 --port 80
ex etp-local-lb-from-outside-keeps-client-and-local-set '["external",["198.18.8.11:8080"],false]' '[.set,.endpoints,.source_nat]' \
	--src 198.19.1.1 --dst 198.18.200.20 --port 80
ex etp-local-lb-from-the-node-gets-the-cluster-set '["cluster",2]' '[.set,(.endpoints|length)]' \
	--src 198.18.0.1 --dst 198.18.200.20 --port 80
ex lb-source-ranges-drop-others '"dropped: the source is outside loadBalancerSourceRanges"' '.verdict' \
	--src 198.20.1.1 --dst 198.18.200.20 --port 80
ex udp-to-a-tcp-service-is-not-kpx-business '"no Service frontend: kpx leaves the packet alone"' '.verdict' \
	--src 198.19.1.1 --dst 198.18.100.20 --port 80 --proto udp
ex refused-external-ip-says-why '"ExternalIP 198.18.100.20 of t/a-evil is not served: is a ClusterIP of t/web"' '.verdict' \
	--src 198.19.1.1 --dst 198.18.100.20 --port 81 --proto tcp
# bpf: the same packet from a pod, as the socket hooks serve it
FLAGS[3]=bpf
ex bpf-rows-say-what-a-socket-hook-cannot-do '["no-source-ranges"]' '.degraded' \
	--src 198.18.8.50 --dst 198.18.200.20 --port 80 --from pod
exit 0
