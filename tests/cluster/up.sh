#!/bin/bash
# By hand: the integration rig (tests/integration/lib/rig.sh) with the real
# control plane (cluster.sh) on it, for SECS seconds (default 1800) or until
# Ctrl-C; everything is removed on exit. Prints how to reach it.
#   sudo bash tests/cluster/up.sh [SECS]
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
export KPX_BACKEND=${KPX_BACKEND:-bpf}
# shellcheck source=../integration/lib/rig.sh
source tests/integration/lib/rig.sh
# shellcheck source=cluster.sh
source tests/cluster/cluster.sh
rig_up || exit 1
cluster_up || exit 1
cat <<EOT
rig prefix $RIG_P, work dir $RIG_DIR (logs: $CL_DIR/*.log)
kubectl:  nsenter --net=/run/netns/$CL_NS $CL_K8S/kubectl --kubeconfig $CL_DIR/admin.kubeconfig get --raw /version
nodes' netns: $(rig_ns n1) $(rig_ns n2), client: $(rig_ns x)
EOT
sleep "${1:-1800}"
