#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes the seed corpora of tests/fuzz from the repo's real objects.

Seeds are committed (tests/fuzz/corpus/<target>/); run this again after
adding fixtures. Inputs found by fuzzing that crashed kpx are committed
next to them by hand (named crash-<what>), so every run replays them.
"""
import glob
import hashlib
import json
import os
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fuzz", "corpus")
MANIFESTS = sorted(
    glob.glob(os.path.join(ROOT, "tests", "fixtures", "manifests", "*", "*"))
    + glob.glob(os.path.join(ROOT, "tests", "golden", "*", "manifests", "*"))
    + glob.glob(os.path.join(ROOT, "manifests", "examples", "*.yaml")))


def put(target, data, name=None):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    name = name or "seed-" + hashlib.sha1(data).hexdigest()[:12]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def objects():
    for path in MANIFESTS:
        try:
            docs = list(yaml.safe_load_all(open(path)))
        except Exception:
            continue
        for d in docs:
            if not isinstance(d, dict):
                continue
            for o in d.get("items") or [d]:
                if isinstance(o, dict) and o.get("kind") in (
                        "Service", "EndpointSlice", "Node"):
                    yield o


def main():
    seen = 0
    for path in MANIFESTS:
        put("yaml", open(path, "rb").read())
    kinds = {"Service": 0, "EndpointSlice": 1, "Node": 2}
    for o in objects():
        seen += 1
        put("objects", json.dumps(o, separators=(",", ":")))
        ev = json.dumps({"type": "ADDED", "object": o}) + "\n"
        mod = json.dumps({"type": "MODIFIED", "object": o}) + "\n"
        dele = json.dumps({"type": "DELETED", "object": o}) + "\n"
        bm = '{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"9"}}}\n'
        k = kinds[o["kind"]]
        # byte 0: kind, byte 1: piece size (0: whole body)
        put("watch", bytes([k, 0]) + (ev + mod + bm + dele).encode())
        put("watch", bytes([k, 7]) + (ev + dele).encode())
    put("watch", bytes([0, 0]) + b'{"type":"ERROR","object":{"kind":"Status","code":410,"message":"too old"}}\n')
    put("watch", bytes([1, 3]) + b'{"type":"ADDED","object":{}}\n\n  \n{"type":"DELETED","object":{"metadata":{"name":"x","namespace":"y"}}}\n')
    for path in glob.glob(os.path.join(ROOT, "tests", "unit", "test_kubeconfig.c")) + \
            glob.glob(os.path.join(ROOT, "tests", "unit", "test_config_file.c")):
        target = "kubeconfig" if "kubeconfig" in path else "config_file"
        # the YAML documents embedded in the unit tests as C strings
        text = open(path).read()
        for chunk in text.split("write_file(\"config\",")[1:] if target == "kubeconfig" \
                else text.split("load(")[1:]:
            lines = []
            for line in chunk.splitlines():
                s = line.strip()
                if s.startswith('"') and s.endswith('"'):
                    lines.append(s[1:-1])
                elif s.startswith('"') and s.endswith('",'):
                    lines.append(s[1:-2])
                elif s.startswith('"') and (s.endswith('");') or s.endswith('"),')):
                    lines.append(s[1:-3])
                    break
                elif lines:
                    break
            if lines:
                doc = "".join(lines).encode().decode("unicode_escape")
                put(target, doc)
    kc = open(os.path.join(ROOT, "tests", "unit", "test_config_file.c")).read()
    start = kc.index("static const char kubeadm_cfg[] =")
    body = kc[start:kc.index(";", start)]
    put("config_file", "".join(l.strip()[1:-1] for l in body.splitlines()[1:]
                               if l.strip().startswith('"')).encode().decode("unicode_escape"))
    for args in [
            "--manifests\n/tmp/m\n--backend\nnft\n--sync-period\n30s\n--min-sync-period=1s",
            "--proxy-mode=ipvs\n--cluster-cidr\n198.18.0.0/16,fd00:10::/56\n-v\n4",
            "--nodeport-addresses\nprimary\n--masquerade-all\n--iptables-sync-period\n1m30s",
            "--healthz-bind-address=0.0.0.0:10256\n--metrics-bind-address\n[::1]:10249",
            "--sync-period\nnans", "1.5h", "-3m", "2562047h47m16.854775807s",
            "true", "198.18.0.1", "fd00::1/64", "198.18.0.0/16, fd00::/8",
            "--conntrack-tcp-timeout-established\n24h\n--lb-algorithm\nmaglev\n--maglev-table-size\n16381"]:
        put("flags", args)
    print(f"{seen} objects", file=sys.stderr)


if __name__ == "__main__":
    main()
