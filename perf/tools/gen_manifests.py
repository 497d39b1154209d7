#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes a directory of Service + EndpointSlice manifests for kpx benchmarks.

Shaped like a real cluster: mostly ClusterIP services, every 10th a NodePort
(every 20th of those with externalTrafficPolicy Local), endpoints spread over
--nodes nodes (node-0 .. node-N-1), every 25th endpoint terminating. Only
addresses from 198.18.0.0/15 are used. Deterministic for a given input.

Sizes that do not fit the /15 with one address per endpoint (more than
24,576 services or about 100,000 endpoints) use a second layout: ClusterIPs
from 198.19.128.0/17 (up to 32,768 services) and endpoint addresses from
198.18.0.0-198.19.127.255 reused round after round, each round with its own
target port (8080 + round), so every address:port stays unique. Smaller
sizes are generated exactly as before.
"""
import argparse
import ipaddress
import os
import sys

EP_BASE = int(ipaddress.IPv4Address("198.18.0.0"))
EP_LIMIT = int(ipaddress.IPv4Address("198.19.159.255"))
SVC_BASE = int(ipaddress.IPv4Address("198.19.160.0"))  # up to 198.19.255.255
# Large layout (address reuse).
SVC_BASE_L = int(ipaddress.IPv4Address("198.19.128.0"))  # up to 198.19.255.255
EP_POOL_L = SVC_BASE_L - EP_BASE


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--services", type=int, default=10000)
    ap.add_argument("--endpoints", type=int, default=10)
    ap.add_argument("--nodes", type=int, default=50)
    ap.add_argument("--files", type=int, default=100)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    reuse = a.services > 24576 or a.services * a.endpoints > EP_LIMIT - EP_BASE
    svc_base = SVC_BASE_L if reuse else SVC_BASE
    if reuse and (a.services > 32768 or a.endpoints > EP_POOL_L):
        sys.exit("too many services/endpoints for 198.18.0.0/15")
    os.makedirs(a.out, exist_ok=True)
    per_file = (a.services + a.files - 1) // a.files
    ep = 0
    for f in range(a.files):
        lo, hi = f * per_file, min(a.services, (f + 1) * per_file)
        if lo >= hi:
            break
        docs = []
        for i in range(lo, hi):
            ns = "ns-%d" % (i % 20)
            name = "svc-%05d" % i
            cip = str(ipaddress.IPv4Address(svc_base + i))
            nodeport = i % 10 == 0
            spec = ["  clusterIP: %s" % cip, "  clusterIPs: [%s]" % cip]
            if nodeport:
                spec.append("  type: NodePort")
                if i % 200 == 0:
                    spec.append("  externalTrafficPolicy: Local")
            port = "  - name: http\n    port: 80\n    protocol: TCP\n    targetPort: 8080"
            if nodeport:
                port += "\n    nodePort: %d" % (30000 + (i // 10) % 2768)
            docs.append(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: %s\n"
                "  namespace: %s\n  resourceVersion: \"%d\"\nspec:\n%s\n"
                "  ports:\n%s\n" % (name, ns, i + 1, "\n".join(spec), port))
            eps = []
            target = 8080
            if reuse:
                # A service's endpoints never straddle two rounds.
                if ep % EP_POOL_L + a.endpoints > EP_POOL_L:
                    ep += EP_POOL_L - ep % EP_POOL_L
                target = 8080 + ep // EP_POOL_L
            for e in range(a.endpoints):
                addr = str(ipaddress.IPv4Address(EP_BASE + ep % EP_POOL_L if reuse else EP_BASE + ep))
                term = ep % 25 == 0
                cond = ("{ready: false, serving: true, terminating: true}"
                        if term else "{ready: true, serving: true, terminating: false}")
                eps.append("- addresses: [%s]\n  conditions: %s\n  nodeName: node-%d\n"
                           "  zone: zone-%d" % (addr, cond, ep % a.nodes, ep % 3))
                ep += 1
            docs.append(
                "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
                "metadata:\n  name: %s-abcde\n  namespace: %s\n"
                "  resourceVersion: \"%d\"\n  labels:\n"
                "    kubernetes.io/service-name: %s\n"
                "addressType: IPv4\nports:\n- name: http\n  port: %d\n"
                "  protocol: TCP\nendpoints:\n%s\n"
                % (name, ns, i + 1, name, target, "\n".join(eps)))
        with open(os.path.join(a.out, "svc-%03d.yaml" % f), "w") as fh:
            fh.write("---\n".join(docs))


if __name__ == "__main__":
    main()
