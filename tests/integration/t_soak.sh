#!/bin/bash
# Churn soak: an agent serving 1,000 Services while one EndpointSlice file
# after another is rewritten (endpoints flip ready/not ready, endpoints
# added and removed, a Service's ports renumbered) for SOAK_SECONDS
# (default 20; `make soak` runs 600). RSS is sampled every second and
# printed as a curve; the check fails when it keeps growing after the
# warm-up (last sample more than 8 MiB + 5 % above the sample at 25 % of
# the run) or a sync failed. Per backend in ${KPX_BACKENDS:-nft bpf}.
# KPX_BIN=build-san/kpx (make BUILD=build-san SANITIZE=1) runs the same
# under AddressSanitizer: the agent is stopped at the end and any
# LeakSanitizer or sanitizer report in its log fails the check (set
# KPX_SOAK_SANITIZED=1: ASan's quarantine makes RSS meaningless, so the
# RSS bound is not checked then).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
# shellcheck source=lib/check.sh
. tests/integration/lib/check.sh
need_root soak
need_files soak build/kpx build/kpx_echo
need_tools soak python3
SECS=${SOAK_SECONDS:-20}
N_SVC=1000
N_FILES=20

# churn DIR SECS [ROUNDS]: writes the 20 files of 50 Services each, then
# (SECS > 0) rewrites one file every 50 ms for SECS seconds, each round
# changing its Services; prints the number of Service changes.
churn() {
	python3 - "$1" "$2" "$N_SVC" "$N_FILES" <<'PY'
import ipaddress, os, sys, time
d, secs, n, nf = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
per = n // nf
base = int(ipaddress.IPv4Address("198.18.128.1"))
pods = ["198.19.1.11", "198.19.1.12", "198.19.2.11", "198.19.2.12", "198.19.1.13", "198.19.2.13"]
def write(f, rnd):
    parts = []
    for i in range(f * per, (f + 1) * per):
        port = 80 + (rnd + i) % 3
        eps = "".join(
            f"- {{addresses: [{pods[(i + rnd + k) % 6]}], conditions: {{ready: {'true' if (rnd + k) % 4 else 'false'}}}, nodeName: n{1 + (i + rnd + k) % 2}}}\n"
            for k in range(1 + (rnd + i) % 4))
        parts.append(f"""---
apiVersion: v1
kind: Service
metadata: {{name: s{i}, namespace: soak}}
spec: {{clusterIP: {ipaddress.IPv4Address(base + i)}, ports: [{{name: p, protocol: TCP, port: {port}, targetPort: 8080}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: s{i}-a, namespace: soak, labels: {{kubernetes.io/service-name: s{i}}}}}
addressType: IPv4
ports: [{{name: p, protocol: TCP, port: 8080}}]
endpoints:
{eps}""")
    tmp = f"{d}/.soak-{f:02d}.tmp"
    with open(tmp, "w") as out:
        out.write("".join(parts))
    os.rename(tmp, f"{d}/soak-{f:02d}.yaml")
if secs <= 0:
    for f in range(nf):
        write(f, 0)
    sys.exit(0)
end, rnd = time.time() + secs, 0
while time.time() < end:
    rnd += 1
    write(rnd % nf, rnd)
    time.sleep(0.05)
print(rnd * per)
PY
}

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null; }

run_backend() {
	BK=$1
	(
		CHECK_PREFIX=soak-$BK
		export KPX_BACKEND=$BK
		export RIG_P="s$$${BK:0:1}"
		# shellcheck source=lib/rig.sh
		source tests/integration/lib/rig.sh
		rig_up || { fail rig "rig_up failed"; exit 1; }
		rig_pod_servers 8080
		local pid samples=() why="" warm last changes=0
		churn "$RIG_MANIFESTS" 0
		rig_agent_start n1
		rig_agent_wait_synced n1 30 || { fail churn-rss-bounded "agent did not sync"; exit 0; }
		pid=$(rig_agent_pid n1)
		churn "$RIG_MANIFESTS" "$SECS" >"$RIG_DIR/churn.out" &
		local cpid=$!
		while kill -0 "$cpid" 2>/dev/null; do
			samples+=("$(rss_kb "$pid")")
			rig_agent_alive n1 || { why="agent died: $(tail -2 "$RIG_DIR/agent-n1.log" | tr '\n' ' ')"; break; }
			sleep 1
		done
		wait "$cpid"
		changes=$(cat "$RIG_DIR/churn.out")
		rig_sync_all 30 || why="$why not synced after the churn;"
		rig_agent_stop n1
		grep -q "ERROR: LeakSanitizer\|ERROR: AddressSanitizer\|runtime error:" "$RIG_DIR/agent-n1.log" &&
			why="$why sanitizer report: $(grep -m1 -A3 'ERROR: \|runtime error:' "$RIG_DIR/agent-n1.log" | tr '\n' ' ' | cut -c1-300);"
		echo "#   $BK: $changes Service changes in ${SECS}s; RSS KiB per second: ${samples[*]}"
		if [ "${KPX_SOAK_SANITIZED:-0}" = 1 ]; then
			:
		elif [ ${#samples[@]} -ge 4 ]; then
			warm=${samples[$(( ${#samples[@]} / 4 ))]}
			last=${samples[$(( ${#samples[@]} - 1 ))]}
			is_uint "$warm" "$last" || why="$why RSS not readable;"
			is_uint "$warm" "$last" && [ "$last" -gt $(( warm + 8192 + warm / 20 )) ] &&
				why="$why RSS grew from $warm KiB (25 %) to $last KiB;"
		else
			why="$why too few samples;"
		fi
		grep -q "sync: .*failed" "$RIG_DIR/agent-n1.log" && why="$why a sync failed: $(grep 'sync: .*failed' "$RIG_DIR/agent-n1.log" | tail -1);"
		check_why churn-rss-bounded "$why"
		exit 0
	)
}

for BK in ${KPX_BACKENDS:-nft bpf}; do
	run_backend "$BK"
done
exit 0
