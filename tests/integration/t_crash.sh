#!/bin/bash
# Crash consistency: an agent killed with SIGKILL at random points of a
# 5,000-service first sync (while it reads the manifests, while it
# programs, right after) leaves the kernel in a state the next agent
# takes over: after the restart the datapath equals the plan (`kpx
# services --verify`), sampled Services answer from pods, and the agent
# logged no sync error. Per backend in ${KPX_BACKENDS:-nft bpf}; the kill
# points come from a seed printed in the output (KPX_CRASH_SEED repeats a
# run), KPX_CRASH_KILLS (default 4) kills before the final start.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
# shellcheck source=lib/check.sh
. tests/integration/lib/check.sh
need_root crash
need_files crash build/kpx build/kpx_echo
need_tools crash python3 jq
N_SVC=${KPX_CRASH_SERVICES:-5000}
KILLS=${KPX_CRASH_KILLS:-4}
SEED=${KPX_CRASH_SEED:-$(( $(date +%s) % 100000 ))}
echo "# crash: seed $SEED, $N_SVC services, $KILLS kills per backend"

# gen DIR: N_SVC ClusterIP Services (198.18.128.0/17), each with two of
# the rig's pods as endpoints, in files of 500 Services each.
gen() {
	python3 - "$1" "$N_SVC" <<'PY'
import ipaddress, sys
d, n = sys.argv[1], int(sys.argv[2])
pods = [("198.19.1.11", "n1"), ("198.19.1.12", "n1"), ("198.19.2.11", "n2"), ("198.19.2.12", "n2")]
base = int(ipaddress.IPv4Address("198.18.128.1"))
for f in range(0, n, 500):
    with open(f"{d}/crash-{f // 500:03d}.yaml", "w") as out:
        for i in range(f, min(n, f + 500)):
            ip = ipaddress.IPv4Address(base + i)
            a, b = pods[i % 4], pods[(i + 1) % 4]
            out.write(f"""---
apiVersion: v1
kind: Service
metadata: {{name: c{i}, namespace: crash}}
spec: {{clusterIP: {ip}, ports: [{{name: p, protocol: TCP, port: 80, targetPort: 8080}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: c{i}-a, namespace: crash, labels: {{kubernetes.io/service-name: c{i}}}}}
addressType: IPv4
ports: [{{name: p, protocol: TCP, port: 8080}}]
endpoints:
- {{addresses: [{a[0]}], conditions: {{ready: true}}, nodeName: {a[1]}}}
- {{addresses: [{b[0]}], conditions: {{ready: true}}, nodeName: {b[1]}}}
""")
PY
}

run_backend() {
	BK=$1
	(
		CHECK_PREFIX=crash-$BK
		export KPX_BACKEND=$BK
		export RIG_P="c$$${BK:0:1}"
		# shellcheck source=lib/rig.sh
		source tests/integration/lib/rig.sh
		rig_up || { fail rig "rig_up failed"; exit 1; }
		rig_pod_servers 8080
		gen "$RIG_MANIFESTS"
		RANDOM=$SEED
		local why="" k ms last out bad=0 i ip
		for k in $(seq "$KILLS"); do
			# from the middle of the manifests load to just after
			# the first sync (which take ~0.3-2 s here)
			ms=$(( 50 + RANDOM % 2500 ))
			rig_agent_start n1
			sleep "$(printf '0.%03d' "$ms")"
			[ "$ms" -ge 1000 ] && sleep $(( ms / 1000 ))
			kill -9 "$(rig_agent_pid n1)" 2>/dev/null
			sleep 0.2
			last=$(grep -v '^\s*$' "$RIG_DIR/agent-n1.log" | tail -1 | cut -c1-100)
			echo "#   kill $k after ${ms} ms; last log line: $last"
		done
		rig_agent_start n1
		if ! rig_agent_wait_synced n1 60; then
			fail after-restart "agent did not sync within 60 s: $(tail -3 "$RIG_DIR/agent-n1.log" | tr '\n' ' ')"
			exit 0
		fi
		out=$(rig_exec n1 timeout -k 2 60 "$KPX_BIN" services --verify --state-socket "$RIG_DIR/n1.sock" \
			--bpf-root "/sys/fs/bpf/$RIG_P-n1" 2>&1)
		[ $? -eq 0 ] || why="$why verify after restart: $(grep -v "^ *OK" <<<"$out" | tail -4 | tr '\n' ' ');"
		# 20 sampled Services answer from a pod of n1
		for i in $(seq 20); do
			ip=$(python3 -c "import ipaddress; print(ipaddress.IPv4Address(int(ipaddress.IPv4Address('198.18.128.1')) + $(( RANDOM % N_SVC ))))")
			out=$(rig_node_exec n1 n1p3 "$KPX_ECHO" client --addr "$ip" --port 80 -n 1 --timeout-ms 1000)
			[ "$(echo_get "$out" ok)" = 1 ] || bad=$((bad + 1))
		done
		[ "$bad" = 0 ] || why="$why $bad of 20 sampled Services did not answer;"
		grep -q "sync: .*failed" "$RIG_DIR/agent-n1.log" && why="$why the restarted agent logged a failed sync: $(grep 'sync: .*failed' "$RIG_DIR/agent-n1.log" | tail -1);"
		check_why first-sync-killed-then-restarted-matches-the-plan "$why"
		exit 0
	)
}

for BK in ${KPX_BACKENDS:-nft bpf}; do
	run_backend "$BK"
done
exit 0
