# shellcheck shell=bash
# Phase "latency" of perf/kube_proxy_bench.sh: network programming latency
# at steady state, measured as upstream measures it, under a background
# churn of other changes.
#
# Clock start: the endpoints.kubernetes.io/last-change-trigger-time
# annotation of the EndpointSlice, which the writer sets (RFC 3339 with
# nanoseconds, CLOCK_REALTIME) just before it sends the write, in the
# object itself (so kube-proxy's and kpx's own metric start from the same
# instant). Clock stop: the start (before connect()) of the first
# connection from a pod of node n1 (n1p3, in n1's cgroup for kpx-bpf's
# socket hooks) to the probe Service that the new endpoint answers. The
# prober connects in a tight loop (1 ms pause, 300 ms connect bound, RST on
# close so no TIME_WAIT piles up) and has made one attempt (answered by
# the old endpoint) before the writer starts the clock, so the stop is late
# by at most one step of that loop: the "probe step" (start of the answered
# attempt minus the start of the one before; ~1.5 ms, more when the loaded
# machine deschedules the prober) is in the raw samples and its p99 in the
# table. Writer and prober run on the same machine: one clock.
#
#   probe Service lat/lat (no selector, one slice lat-a, managed-by
#   kpx-bench) with ONE endpoint; each change replaces it by the next pod
#   of n1p1 n1p2 n2p1 n2p2 n2p3 (port 8080; each pod's kpx_echo answers
#   with its own identity), so "the new endpoint answers" means the
#   dataplane programmed the change. LAT_WARM changes first (not counted),
#   then LAT_N counted ones, each followed by a random pause in
#   [0, LAT_PAUSE) s (default 1 s, the longest default min-sync-period)
#   so that changes land at every phase of a sync period: right after
#   the previous change was seen is right after a sync.
#   Churn: LAT_CHURN writes/s (a thread with its own connection) to the
#   slices b<i>-a of random other Services of the size under test, each
#   marking a random one of the 5 endpoints not ready (and the trigger
#   annotation), for the whole phase.
#
# Writer: one long-lived python process in the control plane's netns, one
# keep-alive HTTPS connection per thread with the admin certificate, JSON
# merge patches (no kubectl process per write). Its write round trip is
# reported (write p50) so that one sees the writer is not the limit.
#
# Metrics: the dataplane's /metrics is scraped before and after the phase;
# the delta of kubeproxy_network_programming_duration_seconds (kube-proxy's
# buckets, lowest 0.25 s) and kpx_network_programming_duration_seconds
# (kpx only, from 1 ms) gives p50/p99 interpolated within buckets as
# histogram_quantile() does ("> B" past the last finite bucket). They count
# every change of the phase (probe, warm-up and churn), and their clock
# stops when the agent's sync ends, not when traffic uses it. A quantile in
# the lowest bucket shows as "<= bound" (interpolating from 0 would make
# up a value: all of kpx's changes fall below kube-proxy's 0.25 s).
#
# Raw samples (one line per counted change: size, dataplane, index,
# latency ms, probe attempts, write ms, probe step ms; "timeout" rows for changes not
# seen within LAT_BOUND s) go to perf/results/kube-proxy-DATE-latency-
# HHMMSS.tsv, named in the table's heading; perf/plot_kube_proxy.sh draws
# the CDF from it.
LAT_N=${LAT_N:-200}
LAT_WARM=${LAT_WARM:-5}
LAT_CHURN=${LAT_CHURN:-10}
LAT_PAUSE=${LAT_PAUSE:-1}
LAT_BOUND=${LAT_BOUND:-30}
KP_LAT_RAW=${out%.md}-latency-$(date -u +%H%M%S).tsv

kp_latency_header() {
	echo "### Network programming latency under churn"
	echo
	echo "- clock start: the slice's endpoints.kubernetes.io/last-change-trigger-time, set by the writer (RFC 3339, ns) just before it sends the write; stop: start of the first connection from pod n1p3 that the new endpoint answers (probe loop: 1 ms pause between connections; the prober is connecting before the clock starts; the stop is late by at most the probe step: start of that connection minus start of the previous one, whose p99 is shown)"
	echo "- per dataplane: $LAT_WARM warm-up + $LAT_N counted single-endpoint changes of a one-endpoint probe Service (the endpoint moves to the next of 5 pods on n1/n2), a random pause of 0-${LAT_PAUSE} s after each; background churn: $LAT_CHURN writes/s to the slices of random other Services of the size under test (one endpoint not ready, trigger annotation set); a change not seen within $LAT_BOUND s counts as a timeout (max shows \"> $LAT_BOUND s\")"
	echo "- writer: one python process with keep-alive HTTPS connections (admin cert), JSON merge patches; write = its request round trip. Defaults of each dataplane: kube-proxy min-sync-period 1 s; kpx $(kp_lat_kpx_min_sync)"
	echo "- metric columns: the dataplane's own histogram over the phase (probe, warm-up and churn changes; ends when its sync ends), quantiles interpolated in buckets (\"<= B\": in the lowest bucket); kube-proxy's buckets start at 0.25 s, kpx_network_programming_duration_seconds at 1 ms"
	echo "- raw samples: $(basename "$KP_LAT_RAW") (size, dataplane, change, latency ms, probe attempts, write ms, probe step ms)"
	echo
	echo "| services x 10 | dataplane | changes (timeouts) | p50 | p90 | p99 | max | probe step p99 | churn writes/s | write p50 | kubeproxy_network_programming p50 / p99 (n) | kpx_network_programming p50 / p99 (n) |"
	echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
}

# kpx's default --min-sync-period, as the binary under test describes it
kp_lat_kpx_min_sync() {
	"$KPX_BIN" run --help 2>&1 | awk '$1 == "--min-sync-period" {d = 1} d {sub(/^ *(--min-sync-period DUR)? */, ""); s = s " " $0} d && /\)/ {exit} END {print "--min-sync-period:" s}'
}

# Once per run (each kp_latency call runs in a pipeline's subshell: the
# state is in files of the rig's directory).
kp_lat_setup() {
	KP_LAT_VIP=$(cat "$RIG_DIR/lat-vip" 2>/dev/null)
	[ -n "$KP_LAT_VIP" ] && return 0
	kp_lat_py >"$RIG_DIR/kp_latency.py"
	kc create namespace lat >/dev/null 2>&1
	kc apply -f - >/dev/null <<-EOF || return 1
	{"apiVersion": "v1", "kind": "List", "items": [
	 {"apiVersion": "v1", "kind": "Service",
	  "metadata": {"name": "lat", "namespace": "lat"},
	  "spec": {"ports": [{"name": "p", "protocol": "TCP", "port": 80}]}},
	 {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
	  "metadata": {"name": "lat-a", "namespace": "lat", "labels": {
	    "kubernetes.io/service-name": "lat",
	    "endpointslice.kubernetes.io/managed-by": "kpx-bench"}},
	  "addressType": "IPv4",
	  "ports": [{"name": "p", "protocol": "TCP", "port": 8080}],
	  "endpoints": [{"addresses": ["198.19.1.11"], "conditions": {"ready": true}, "nodeName": "n1"}]}]}
	EOF
	KP_LAT_VIP=$(kc -n lat get svc lat -o jsonpath='{.spec.clusterIP}')
	[ -n "$KP_LAT_VIP" ] || return 1
	printf '# size\tdataplane\tchange\tlatency_ms\tattempts\twrite_ms\tstep_ms\n' >"$KP_LAT_RAW"
	echo "$KP_LAT_VIP" >"$RIG_DIR/lat-vip"
}

kp_lat_scrape() {	# FILE: the dataplane's /metrics (empty when it has none)
	# (60 s: at 10,000 services on the loaded 2-core VM kpx's scrapes gave
	# nothing within 10 s; its /metrics dumps the datapath per scrape)
	rig_exec n1 curl -s -m 60 "http://$(rig_node_ip4 n1):10249/metrics" >"$1" 2>/dev/null || : >"$1"
}

kp_latency() {	# PROXY N
	local p=$1 n=$2 d=$RIG_DIR/lat-$1-$2 res mk prober
	kp_lat_setup || { echo "| $n | $p | setup failed |"; return 0; }
	mkdir -p "$d"
	rm -f "$d/req" "$d/resp"
	mkfifo "$d/req" "$d/resp"
	kp_lat_scrape "$d/m0"
	rig_node_bg n1 n1p3 "$d/prober.log" python3 "$RIG_DIR/kp_latency.py" prober \
		"$KP_LAT_VIP" 80 "$d/req" "$d/resp"
	prober=$RIG_LAST_PID
	res=$(timeout -k 5 $(( (LAT_N + LAT_WARM) * (LAT_BOUND + 2) + 120 )) \
		nsenter --net="/run/netns/$CL_NS" python3 "$RIG_DIR/kp_latency.py" writer \
		--api "https://$CL_API_HOST:$CL_API_PORT" --ca "$CL_DIR/ca.crt" \
		--cert "$CL_DIR/admin.crt" --key "$CL_DIR/admin.key" \
		--req "$d/req" --resp "$d/resp" --raw "$KP_LAT_RAW" --proxy "$p" --size "$n" \
		--changes "$LAT_N" --warm "$LAT_WARM" --churn "$LAT_CHURN" \
		--pause "$LAT_PAUSE" --bound "$LAT_BOUND" 2>"$d/writer.log")
	kill "$prober" 2>/dev/null
	kp_lat_scrape "$d/m1"
	mk=$(python3 "$RIG_DIR/kp_latency.py" metrics "$d/m0" "$d/m1")
	[ -n "$res" ] || res="| writer failed: $(tail -1 "$d/writer.log") | | | | | | | |"
	echo "| $n | $p $res $mk"
}

kp_lat_py() {
	cat <<-'PY'
	import http.client, json, math, os, random, select, socket, ssl, struct
	import sys, threading, time
	from datetime import datetime, timezone

	PODS = [("198.19.1.11", "n1", "n1-p1"), ("198.19.1.12", "n1", "n1-p2"),
	        ("198.19.2.11", "n2", "n2-p1"), ("198.19.2.12", "n2", "n2-p2"),
	        ("198.19.2.13", "n2", "n2-p3")]
	TRIG = "endpoints.kubernetes.io/last-change-trigger-time"

	def rfc3339(ns):
	    s = datetime.fromtimestamp(ns // 10**9, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
	    return "%s.%09dZ" % (s, ns % 10**9)

	class Api:
	    """One keep-alive HTTPS connection to the API server."""
	    def __init__(self, a):
	        self.host = a.api.split("//")[1]
	        self.ctx = ssl.create_default_context(cafile=a.ca)
	        self.ctx.load_cert_chain(a.cert, a.key)
	        self.c = None

	    def patch(self, path, body):
	        for attempt in range(3):
	            try:
	                if self.c is None:
	                    h, p = self.host.rsplit(":", 1)
	                    self.c = http.client.HTTPSConnection(h, int(p), context=self.ctx, timeout=20)
	                self.c.request("PATCH", path, body=json.dumps(body),
	                               headers={"Content-Type": "application/merge-patch+json"})
	                r = self.c.getresponse()
	                r.read()
	                if r.status >= 300:
	                    raise RuntimeError("PATCH %s: HTTP %d" % (path, r.status))
	                return
	            except (OSError, http.client.HTTPException):
	                self.c = None
	                if attempt == 2:
	                    raise

	def slice_path(ns, name):
	    return "/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices/%s" % (ns, name)

	def churn(a, stop, stats):
	    api, rnd = Api(a), random.Random(7)
	    period, t0, k = 1.0 / a.churn, time.monotonic(), 0
	    while not stop.is_set():
	        i, down = rnd.randrange(a.size), rnd.randrange(5)
	        eps = [{"addresses": [ip], "conditions": {"ready": j != down}, "nodeName": node}
	               for j, (ip, node, _) in enumerate(PODS)]
	        try:
	            api.patch(slice_path("bench", "b%d-a" % i),
	                      {"metadata": {"annotations": {TRIG: rfc3339(time.time_ns())}},
	                       "endpoints": eps})
	            stats["writes"] += 1
	        except Exception as e:
	            stats["errors"] += 1
	            print("churn:", e, file=sys.stderr)
	        k += 1
	        delay = t0 + k * period - time.monotonic()
	        if delay > 0:
	            stop.wait(delay)
	    stats["seconds"] = time.monotonic() - t0

	def q(sorted_v, p):	# nearest rank
	    return sorted_v[max(0, math.ceil(p * len(sorted_v)) - 1)]

	def writer(a):
	    api = Api(a)
	    req = open(a.req, "w", buffering=1)
	    resp = open(a.resp, "r")
	    stats = {"writes": 0, "errors": 0, "seconds": 0.0}
	    stop = threading.Event()
	    th = None
	    if a.churn > 0:
	        th = threading.Thread(target=churn, args=(a, stop, stats), daemon=True)
	        th.start()
	        time.sleep(2)
	    rnd = random.Random(11)
	    lat, writes, steps, timeouts = [], [], [], 0
	    raw = open(a.raw, "a")
	    cur = 0
	    for k in range(a.warm + a.changes):
	        cur = (cur + 1) % len(PODS)
	        ip, node, ident = PODS[cur]
	        # the prober is connecting (one attempt done: the old endpoint
	        # answered) before the clock starts, so a prober that the
	        # loaded machine wakes late cannot add its wake-up to a sample
	        req.write("%s %d\n" % (ident, a.bound))
	        r, _, _ = select.select([resp], [], [], 15)
	        if not r or resp.readline().strip() != "ready":
	            raise SystemExit("prober not ready")
	        t = time.time_ns()
	        api.patch(slice_path("lat", "lat-a"),
	                  {"metadata": {"annotations": {TRIG: rfc3339(t)}},
	                   "endpoints": [{"addresses": [ip], "conditions": {"ready": True},
	                                  "nodeName": node}]})
	        wms = (time.time_ns() - t) / 1e6
	        r, _, _ = select.select([resp], [], [], a.bound + 10)
	        line = resp.readline().split() if r else []
	        if not line:
	            raise SystemExit("prober gone")
	        counted = k >= a.warm
	        if line[0] == "ok":
	            ms = (int(line[1]) - t) / 1e6
	            step = (int(line[1]) - int(line[3])) / 1e6
	            if counted:
	                lat.append(ms)
	                writes.append(wms)
	                steps.append(step)
	                raw.write("%d\t%s\t%d\t%.3f\t%s\t%.3f\t%.3f\n" % (a.size, a.proxy, k - a.warm, ms, line[2], wms, step))
	        elif counted:
	            timeouts += 1
	            raw.write("%d\t%s\t%d\ttimeout\t%s\t%.3f\t-\n" % (a.size, a.proxy, k - a.warm, line[1], wms))
	        raw.flush()
	        time.sleep(rnd.uniform(0, a.pause))
	    stop.set()
	    if th:
	        th.join(30)
	    lat.sort()
	    writes.sort()
	    steps.sort()
	    rate = stats["writes"] / stats["seconds"] if stats["seconds"] else 0
	    fmt = lambda v: "%.1f ms" % v if v < 1000 else "%.2f s" % (v / 1000)
	    if lat:
	        mx = "> %d s" % a.bound if timeouts else fmt(lat[-1])
	        cols = [fmt(q(lat, .5)), fmt(q(lat, .9)), fmt(q(lat, .99)), mx]
	    else:
	        cols = ["-"] * 4
	    print("| %d (%d) | %s | %.1f ms | %.1f (%d errors) | %.1f ms |" %
	          (len(lat) + timeouts, timeouts, " | ".join(cols),
	           q(steps, .99) if steps else 0, rate, stats["errors"],
	           q(writes, .5) if writes else 0))

	def prober(vip, port, reqp, respp):
	    """Waits for "IDENT BOUND" lines; connects until IDENT answers: after
	    the first attempt "ready", then "ok T_NS ATTEMPTS PREV_NS" (T: the
	    start of the answered attempt, PREV: of the one before it, which
	    IDENT did not answer) or "timeout ATTEMPTS"."""
	    req = open(reqp, "r")
	    resp = open(respp, "w", buffering=1)
	    linger = struct.pack("ii", 1, 0)
	    for line in req:
	        want, bound = line.split()
	        end = time.monotonic() + float(bound)
	        n, got, prev, t = 0, None, 0, 0
	        while time.monotonic() < end:
	            if n == 1:
	                resp.write("ready\n")
	            n += 1
	            prev, t = t, time.time_ns()
	            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
	            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
	            s.settimeout(0.3)
	            ident = ""
	            try:
	                s.connect((vip, port))
	                buf = b""
	                while b"\n" not in buf:
	                    c = s.recv(256)
	                    if not c:
	                        break
	                    buf += c
	                ident = buf.split(b" ", 1)[0].decode()
	            except OSError:
	                pass
	            finally:
	                s.close()
	            if ident == want:
	                got = t
	                break
	            time.sleep(0.001)
	        if n <= 1:
	            resp.write("ready\n")
	        resp.write("ok %d %d %d\n" % (got, n, prev) if got else "timeout %d\n" % n)

	def hist(path, name):
	    """{le: cumulative count} of NAME's series (the IPv4 one, or the
	    unlabelled one), from a Prometheus text file."""
	    b = {}
	    for line in open(path):
	        if not line.startswith(name + "_bucket{"):
	            continue
	        labels, v = line.rsplit(" ", 1)
	        if "ip_family" in labels and 'ip_family="IPv4"' not in labels:
	            continue
	        le = labels.split('le="')[1].split('"')[0]
	        b[float("inf") if le == "+Inf" else float(le)] = float(v)
	    return b

	def hq(b, p):
	    les = sorted(b)
	    tot = b[les[-1]]
	    rank, lo, prev = p * tot, 0.0, 0.0
	    for i, le in enumerate(les):
	        if b[le] >= rank:
	            if le == float("inf"):
	                return "> %g ms" % (lo * 1000) if lo < 1 else "> %g s" % lo
	            if i == 0:	# from 0: interpolating would invent a value
	                return "<= %g ms" % (le * 1000) if le < 1 else "<= %g s" % le
	            v = lo + (le - lo) * (rank - prev) / (b[le] - prev) if b[le] > prev else le
	            return "%.1f ms" % (v * 1000) if v < 1 else "%.2f s" % v
	        lo, prev = le, b[le]
	    return "-"

	def metrics(m0, m1):
	    cols = []
	    for name in ("kubeproxy_network_programming_duration_seconds",
	                 "kpx_network_programming_duration_seconds"):
	        a, b = hist(m0, name), hist(m1, name)
	        d = {le: b[le] - a.get(le, 0) for le in b}
	        if not d or d[max(d)] <= 0:
	            cols.append("-")
	            continue
	        cols.append("%s / %s (%d)" % (hq(d, .5), hq(d, .99), d[max(d)]))
	    print("%s | %s |" % tuple(cols))

	if __name__ == "__main__":
	    if sys.argv[1] == "prober":
	        prober(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
	    elif sys.argv[1] == "metrics":
	        metrics(sys.argv[2], sys.argv[3])
	    else:
	        import argparse
	        ap = argparse.ArgumentParser()
	        for o in ("api", "ca", "cert", "key", "req", "resp", "raw", "proxy"):
	            ap.add_argument("--" + o, required=True)
	        for o in ("size", "changes", "warm", "bound"):
	            ap.add_argument("--" + o, type=int, required=True)
	        for o in ("churn", "pause"):
	            ap.add_argument("--" + o, type=float, required=True)
	        writer(ap.parse_args(sys.argv[2:]))
	PY
}
