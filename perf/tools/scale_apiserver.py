#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A read-only fake Kubernetes API server for kpx's control-plane scale
benchmark (perf/scale_bench.sh), stdlib only.

Loading 100,000 Services into the real kube-apiserver takes about an hour
on a 2-core machine; this serves N Services and 2N EndpointSlices (two
slices of 5 endpoints per Service, shaped as perf/kube_proxy_bench.sh
writes them: pods 198.19.1.11-13 on node n1 and 198.19.2.11-12 on n2,
target ports 8080 and 8081) plus the Nodes n1 and n2, generated in memory
and encoded once at start, so that the time kpx takes to receive them is
bounded by kpx (decoding), not by this server. The objects carry the
metadata a real server sends (uid, creationTimestamp, managedFields,
generation), so the bytes per object are of the real order.

ClusterIPs: the first 32,768 Services get IPv4 ones from 198.18.128.0/17,
the rest IPv6 ones from fd00:18:8000::/64 (their slices are IPv6:
fd00:19:1::11-13, fd00:19:2::11-12), as the 100,000 point of issue 16
needs.

Serves over HTTPS (certificate from tests/fixtures/make_test_ca.sh) on
--addr (loopback, or an address inside a test network namespace), any
bearer token:
  GET /api/v1/services, /apis/discovery.k8s.io/v1/endpointslices,
      /api/v1/nodes   streaming list (watch=1&sendInitialEvents=true):
                      every object as ADDED, then the initial-events-end
                      BOOKMARK, then bookmarks until timeoutSeconds;
                      a plain watch (resourceVersion set): bookmarks only;
                      LIST with limit/continue (--watchlist refuse makes
                      the streaming list answer 422 as an old server).
Label selectors are ignored (no object is proxy-ignored); the Node
fieldSelector metadata.name=X is honoured.

Usage: scale_apiserver.py --services N --cert C --key K [--addr A]
                          [--port P] [--watchlist ok|refuse]
Prints "PORT <n>" on stdout once listening.
"""
import argparse
import base64
import ipaddress
import json
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

RV = 1000
RESOURCES = {
    "/api/v1/services": ("services", "Service", "v1"),
    "/apis/discovery.k8s.io/v1/endpointslices":
        ("endpointslices", "EndpointSlice", "discovery.k8s.io/v1"),
    "/api/v1/nodes": ("nodes", "Node", "v1"),
}
V4_SVC = int(ipaddress.IPv4Address("198.18.128.0"))
V4_ROOM = 32768
V6_SVC = int(ipaddress.IPv6Address("fd00:18:8000::"))
PODS4 = ["198.19.1.11", "198.19.1.12", "198.19.1.13", "198.19.2.11",
         "198.19.2.12"]
PODS6 = ["fd00:19:1::11", "fd00:19:1::12", "fd00:19:1::13", "fd00:19:2::11",
         "fd00:19:2::12"]
TS = "2026-12-07T00:00:00Z"


def managed(manager, api):
    return [{"manager": manager, "operation": "Update", "apiVersion": api,
             "time": TS, "fieldsType": "FieldsV1",
             "fieldsV1": {"f:metadata": {"f:labels": {".": {}}},
                          "f:spec": {}}}]


def service(i):
    if i < V4_ROOM:
        cip, fam = str(ipaddress.IPv4Address(V4_SVC + i)), "IPv4"
    else:
        cip, fam = str(ipaddress.IPv6Address(V6_SVC + i)), "IPv6"
    return {"kind": "Service", "apiVersion": "v1",
            "metadata": {"name": "b%d" % i, "namespace": "bench",
                         "uid": "00000000-0000-4000-8000-%012d" % i,
                         "resourceVersion": str(RV + 3 * i),
                         "creationTimestamp": TS,
                         "managedFields": managed("kubectl-create", "v1")},
            "spec": {"ports": [{"name": "p", "protocol": "TCP", "port": 80,
                                "targetPort": 80}],
                     "clusterIP": cip, "clusterIPs": [cip],
                     "type": "ClusterIP", "sessionAffinity": "None",
                     "ipFamilies": [fam], "ipFamilyPolicy": "SingleStack",
                     "internalTrafficPolicy": "Cluster"},
            "status": {"loadBalancer": {}}}


def slice_(i, half):
    pods, fam = (PODS4, "IPv4") if i < V4_ROOM else (PODS6, "IPv6")
    return {"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
            "metadata": {"name": "b%d-%s" % (i, "ab"[half]),
                         "namespace": "bench",
                         "uid": "00000000-0000-4000-9000-%011d%d" % (i, half),
                         "resourceVersion": str(RV + 3 * i + 1 + half),
                         "generation": 1, "creationTimestamp": TS,
                         "labels": {
                             "kubernetes.io/service-name": "b%d" % i,
                             "endpointslice.kubernetes.io/managed-by":
                                 "kpx-bench"},
                         "managedFields": managed("kubectl-create",
                                                  "discovery.k8s.io/v1")},
            "addressType": fam,
            "ports": [{"name": "p", "protocol": "TCP", "port": 8080 + half}],
            "endpoints": [{"addresses": [p],
                           "conditions": {"ready": True, "serving": True,
                                          "terminating": False},
                           "nodeName": "n1" if j < 3 else "n2"}
                          for j, p in enumerate(pods)]}


def node(name, ip):
    return {"kind": "Node", "apiVersion": "v1",
            "metadata": {"name": name, "resourceVersion": "10",
                         "labels": {"kubernetes.io/hostname": name}},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}]}}


class Data:
    """Every object encoded once: (name, bytes) per resource."""

    def __init__(self, n):
        self.rv = str(RV + 3 * n + 10)
        enc = json.JSONEncoder(separators=(",", ":")).encode
        self.items = {"services": [], "endpointslices": [], "nodes": []}
        for i in range(n):
            self.items["services"].append(("b%d" % i,
                                           enc(service(i)).encode()))
            for h in (0, 1):
                self.items["endpointslices"].append(
                    ("b%d" % i, enc(slice_(i, h)).encode()))
        for nm, ip in (("n1", "198.18.0.11"), ("n2", "198.18.0.12")):
            self.items["nodes"].append((nm, enc(node(nm, ip)).encode()))
        self.bytes = sum(len(b) for v in self.items.values() for _, b in v)


DATA = None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kpx-scale-apiserver"

    def log_message(self, fmt, *args):
        pass

    def send_json(self, code, body):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def bookmark(self, kind, api, end=False):
        md = {"resourceVersion": DATA.rv}
        if end:
            md["annotations"] = {"k8s.io/initial-events-end": "true"}
        return json.dumps({"type": "BOOKMARK", "object": {
            "kind": kind, "apiVersion": api, "metadata": md}}).encode() + b"\n"

    def do_GET(self):
        u = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(u.query).items()}
        res = RESOURCES.get(u.path)
        if not res:
            return self.send_json(404, b'{"kind":"Status","code":404}')
        resource, kind, api = res
        items = DATA.items[resource]
        fs = q.get("fieldSelector", "")
        if fs.startswith("metadata.name="):
            want = fs[len("metadata.name="):]
            items = [it for it in items if it[0] == want]
        if q.get("watch") in ("1", "true"):
            return self.watch(q, items, kind, api)
        limit = int(q.get("limit") or 0)
        off = int(base64.urlsafe_b64decode(q["continue"]).decode()) \
            if q.get("continue") else 0
        page = items[off:off + limit] if limit else items[off:]
        md = {"resourceVersion": DATA.rv}
        if limit and off + limit < len(items):
            md["continue"] = base64.urlsafe_b64encode(
                str(off + limit).encode()).decode()
            md["remainingItemCount"] = len(items) - off - limit
        body = (b'{"kind":"%sList","apiVersion":"%s","metadata":%s,"items":['
                % (kind.encode(), api.encode(), json.dumps(md).encode()) +
                b",".join(b for _, b in page) + b"]}\n")
        self.send_json(200, body)

    def watch(self, q, items, kind, api):
        initial = q.get("sendInitialEvents") in ("1", "true")
        if initial and self.server.watchlist == "refuse":
            return self.send_json(422, b'{"kind":"Status","code":422,'
                                  b'"reason":"Invalid"}')
        timeout = float(q.get("timeoutSeconds") or 1800)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            if initial:
                pre = b'{"type":"ADDED","object":'
                buf = []
                size = 0
                for _, b in items:
                    buf.append(pre + b + b"}\n")
                    size += len(b) + 30
                    if size >= 1 << 20:
                        self.chunk(b"".join(buf))
                        buf, size = [], 0
                buf.append(self.bookmark(kind, api, end=True))
                self.chunk(b"".join(buf))
            self.wfile.flush()
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                time.sleep(min(1.0, max(0.0, end - time.monotonic())))
                if int(time.monotonic()) % 30 == 0:
                    self.chunk(self.bookmark(kind, api))
                    self.wfile.flush()
            self.chunk(b"")
            self.wfile.flush()
        except (OSError, ssl.SSLError):
            self.close_connection = True


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass


def main():
    global DATA
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--services", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--addr", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--watchlist", choices=("ok", "refuse"), default="ok")
    a = ap.parse_args()
    if a.services > 1 << 20:
        sys.exit("--services: at most 1048576")
    t0 = time.monotonic()
    DATA = Data(a.services)
    sys.stderr.write("scale-apiserver: %d services, %d slices, %.1f MB of "
                     "JSON encoded in %.1f s\n" %
                     (a.services, 2 * a.services, DATA.bytes / 1e6,
                      time.monotonic() - t0))
    srv = Server((a.addr, a.port), Handler)
    srv.watchlist = a.watchlist
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print("PORT %d" % srv.server_address[1], flush=True)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2},
                     daemon=True).start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
