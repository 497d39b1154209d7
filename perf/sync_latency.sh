#!/bin/bash
# End-to-end latency of a one-endpoint change in a running agent: in a
# throwaway network namespace, `kpx run --manifests DIR` on generated
# clusters (${SIZES:-1000 10000 30000} services x 10 endpoints), then N
# times (${N:-10}) one endpoint's readiness flips in one manifest file. Per
# change it reads the agent's own log (-v 1):
#   source  the manifests re-read (inotify -> "manifests: DIR: ..." line;
#           the source re-reads the whole directory, after a 100 ms
#           coalescing delay that is not counted here),
#           (since the per-file manifests source, c020b92, only the
#           changed file is re-read; the results header below predates it),
#   sync    "sync: partial ... in X ms (plan Y ms ...)": node input
#           (interface addresses) + plan + backend,
#   plan    the plan part of it (kpx_plan_update).
# Backends: ${BACKENDS:-nft bpf} (bpf: socket LB hooks on a child cgroup
# under the cgroup2 mount, pins under a private --bpf-root).
# KEEP_LOGS=DIR keeps the agent logs there.
# KPX=path picks another binary (e.g. a build of an older commit, for a
# before/after table); LABEL names it in the results.
# Appends to perf/results/sync-latency-DATE.md (date, CPU, commit, command).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
[ "$(id -u)" -eq 0 ] || { echo "SKIP sync_latency: needs root"; exit 0; }
KPX=${KPX:-$ROOT/build/kpx}
[ -x "$KPX" ] || { echo "sync_latency: $KPX not built"; exit 1; }
SIZES=${SIZES:-1000 10000 30000}
BACKENDS=${BACKENDS:-nft bpf}
N=${N:-10}
LABEL=${LABEL:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
ID=$$
NS=kpxlat$ID
CGROOT=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
CG=${CGROOT:+$CGROOT/kpxlat$ID}
BR=/sys/fs/bpf/kpxlat$ID
TMP=$(mktemp -d /tmp/kpx-synclat-$ID.XXXXXX)
AGENT_PID=""
out=perf/results/sync-latency-$(date +%Y-%m-%d).md

stop_agent() {
	[ -n "$AGENT_PID" ] || return 0
	kill "$AGENT_PID" 2>/dev/null
	for _ in $(seq 50); do kill -0 "$AGENT_PID" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$AGENT_PID" 2>/dev/null
	wait "$AGENT_PID" 2>/dev/null
	AGENT_PID=""
}
cleanup() {
	stop_agent
	timeout -k 2 60 "$KPX" cleanup --backend bpf --bpf-root "$BR" >/dev/null 2>&1
	rm -rf "$BR"
	if [ -n "$CG" ] && [ -d "$CG" ]; then
		for _ in $(seq 20); do rmdir "$CG" 2>/dev/null && break; sleep 0.1; done
	fi
	ip netns del "$NS" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

ip netns add "$NS" || exit 1
ip -n "$NS" link set lo up
ip -n "$NS" addr add 198.18.0.11/32 dev lo
if [ -n "$CG" ]; then mkdir -p "$CG" || CG=""; fi

# Flips the readiness of the first endpoint of svc-00001's slice in the file
# that holds it (written aside, renamed in: one inotify event) and bumps the
# slice's resourceVersion; prints the wall time of the rename.
cat >"$TMP/flip.py" <<'EOF'
import os, re, sys, time
d, k = sys.argv[1], int(sys.argv[2])
path = os.path.join(d, "svc-000.yaml")
docs = open(path).read().split("---\n")
for i, doc in enumerate(docs):
    if "kind: EndpointSlice" in doc and "name: svc-00001-abcde" in doc:
        doc = re.sub(r'resourceVersion: "\d+"', 'resourceVersion: "%d"' % (10**7 + k), doc, 1)
        ready = "{ready: false, serving: false, terminating: false}" if k % 2 \
            else "{ready: true, serving: true, terminating: false}"
        doc = re.sub(r"conditions: \{[^}]*\}", "conditions: " + ready, doc, 1)
        docs[i] = doc
        break
else:
    sys.exit("svc-00001's slice not found")
tmp = os.path.join(d, ".flip.tmp")
with open(tmp, "w") as f:
    f.write("---\n".join(docs))
t = time.time()
os.rename(tmp, path)
print("%.6f" % t)
EOF

# Reads the agent log: per change, the wall time of the manifests re-read
# line and the partial sync line after it.
cat >"$TMP/parse.py" <<'EOF'
import re, sys, time, datetime
log, since = sys.argv[1], int(sys.argv[2])
day = datetime.datetime.now().replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
rx = re.compile(r"^[IWE]\d{4} (\d\d):(\d\d):(\d\d\.\d+)\s+\d+ [^\]]*\] (.*)$")
lines = open(log, errors="replace").read().splitlines()[since:]
src = None
for l in lines:
    m = rx.match(l)
    if not m:
        continue
    t = day + int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    msg = m.group(4)
    if msg.startswith("manifests: ") and " files, " in msg:
        src = t
    # Older binaries print no "(plan ...)" part.
    s = re.match(r"sync: partial.* in ([\d.]+) ms(?: \(plan ([\d.]+) ms)?", msg)
    if s:
        print("%.6f %.6f %s %s" % (src or 0, t, s.group(1), s.group(2) or "-"))
        sys.exit(0)
sys.exit(1)
EOF

stats() { # label values... -> "min / median / max"
	python3 -c 'import sys,statistics as s; v=sorted(float(x) for x in sys.argv[1:] if x != "-"); print("%.2f / %.2f / %.2f" % (v[0], s.median(v), v[-1]) if v else "-")' "$@"
}

if [ ! -s "$out" ]; then
	{
		echo "# kpx sync latency: one-endpoint change in a running agent"
		echo
		echo "Per change (one endpoint's readiness in one manifest file):"
		echo "source = manifests directory re-read (the source re-reads every"
		echo "file, after 100 ms of inotify coalescing not counted), sync = the"
		echo "agent's sync (node input + plan + backend) from its -v 1 log line,"
		echo "plan = the plan part (older binaries do not log it). min / median /"
		echo "max over N changes; 2 shared cores, noisy."
	} >"$out"
fi
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
{
	echo
	echo "## $LABEL"
	echo
	echo "- date: $(date -u +%FT%TZ)"
	echo "- cpu: $cpu ($(nproc) cores), kernel $(uname -r)"
	echo "- commit: $(git rev-parse --short HEAD 2>/dev/null) (binary: $KPX, $("$KPX" version 2>/dev/null | head -1))"
	echo "- command: SIZES=\"$SIZES\" BACKENDS=\"$BACKENDS\" N=$N LABEL=$LABEL bash perf/sync_latency.sh"
	echo
	echo "| backend | services x 10 | cold full sync ms | source re-read ms | sync ms | plan ms | changes |"
	echo "|---|---:|---:|---:|---:|---:|---:|"
} >>"$out"

for n in $SIZES; do
	M=$TMP/m$n
	rm -rf "$M"
	python3 perf/tools/gen_manifests.py --services "$n" --endpoints 10 --out "$M" >/dev/null || exit 1
	for be in $BACKENDS; do
		extra=()
		if [ "$be" = bpf ]; then
			if [ -z "$CG" ]; then
				echo "SKIP bpf: no cgroup2 mount"
				continue
			fi
			extra=(--cgroup-path "$CG" --bpf-root "$BR")
		fi
		LOG=$TMP/agent-$be-$n.log
		: >"$LOG"
		nsenter --net=/run/netns/"$NS" "$KPX" run --backend "$be" --manifests "$M" \
			--hostname-override node-1 --node-ip 198.18.0.11 \
			--state-socket "$TMP/kpx.sock" --healthz-bind-address "" \
			--metrics-bind-address "" --min-sync-period 100ms \
			--sync-period 1h -v 1 "${extra[@]}" >>"$LOG" 2>&1 &
		AGENT_PID=$!
		ok=""
		for _ in $(seq 1200); do # <= 120 s for the first full sync
			grep -q "sync: full" "$LOG" && { ok=1; break; }
			kill -0 "$AGENT_PID" 2>/dev/null || break
			sleep 0.1
		done
		if [ -z "$ok" ]; then
			echo "sync_latency: $be $n: agent did not sync:"; tail -5 "$LOG"
			stop_agent
			continue
		fi
		cold=$(sed -n 's/.*sync: full.* in \([0-9.]*\) ms.*/\1/p' "$LOG" | head -1)
		srcs=() syncs=() plans=()
		for k in $(seq "$N"); do
			sleep 0.3
			since=$(wc -l <"$LOG")
			tw=$(python3 "$TMP/flip.py" "$M" "$k") || break
			line=""
			for _ in $(seq 600); do # <= 60 s per change
				line=$(python3 "$TMP/parse.py" "$LOG" "$since") && break
				sleep 0.1
			done
			[ -n "$line" ] || { echo "sync_latency: $be $n: change $k not synced"; break; }
			read -r ts tsync ms pms <<<"$line"
			srcs+=("$(python3 -c "print(max(0.0, ($ts - $tw) * 1000 - 100))")")
			syncs+=("$ms")
			plans+=("$pms")
		done
		stop_agent
		[ -n "${KEEP_LOGS:-}" ] && cp "$LOG" "$KEEP_LOGS/"
		[ "$be" = bpf ] && timeout -k 2 60 "$KPX" cleanup --backend bpf --bpf-root "$BR" >/dev/null 2>&1
		# shellcheck disable=SC2016
		row="| $be | $n | $cold | $(stats "${srcs[@]}") | $(stats "${syncs[@]}") | $(stats "${plans[@]}") | ${#syncs[@]} |"
		echo "$row" | tee -a "$out"
	done
done
echo "recorded in $out"
