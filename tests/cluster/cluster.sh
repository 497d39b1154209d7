# shellcheck shell=bash
# A real Kubernetes control plane on the integration rig: etcd,
# kube-apiserver and kube-controller-manager (build/k8s/, `make k8s`) in the
# rig's control-plane namespace. Source it after tests/integration/lib/rig.sh
# and rig_up; cluster_up starts everything, rig_down (the rig's EXIT trap)
# removes it with the rig, also after a failure: the processes live in a
# netns of the rig and their PIDs are in $RIG_DIR/pids, the data, keys and
# logs under $RIG_DIR/cluster.
#
#   ${RIG_P}n0   the control-plane "node" (named like the rig's nodes so
#                that rig_down and the sweep of killed runs remove it):
#                eth0 198.18.0.10/24 fd00:18::10/64 on the fabric bridge,
#                no route out. etcd on its loopback (127.0.0.1:2379),
#                kube-apiserver on 198.18.0.10:6443 (TLS).
#
# Per run: a CA made with openssl, the API server's serving certificate
# (SANs: its addresses, the `kubernetes` ClusterIPs, kubernetes.default.svc
# names), client certificates (admin in system:masters,
# system:kube-controller-manager, system:kube-proxy), the ServiceAccount
# signing key. Authorization Node,RBAC. Service CIDRs 198.18.100.0/24 and
# fd00:18:100::/112 (the rig routes 198.18.100.0/24 and fd00:18:100::/64 to
# the nodes' eth0). NodePorts 30000-32767 (the default).
#
# Controllers: endpointslice, endpointslicemirroring, serviceaccount,
# serviceaccount-token, namespace, garbagecollector; each with its own
# ServiceAccount credentials. No scheduler, no kubelet, no node lifecycle
# controller: tests create Node objects and Pods with nodeName set and
# patch their status themselves (cluster_node_add, cluster_pod_add).
#
# Functions:
#   cluster_up                 certs, etcd, apiserver, controller-manager;
#                              waits (bounded) for /readyz and for the
#                              default ServiceAccount. 0 on success.
#   kc ARGS...                 kubectl as cluster admin (runs in n0's netns)
#   cluster_apiserver_stop / cluster_apiserver_start   (restart tests)
#   cluster_node_add NODE ZONE Node object, Ready, allocatable CPU, zone
#                              label, InternalIP v4+v6
#   cluster_pod_add NODE IDX [k=v,...]  Pod NODE-pIDX on NODE, Running and
#                              Ready with the rig pod's two IPs
#   cluster_pod_ready NODE IDX true|false
#   cluster_token SA NS POD [SECS]  TokenRequest bound to Pod POD
#   cluster_sa_dir DIR TOKEN   writes a kubelet-style projected SA volume
#                              (..data symlink swapped atomically)
# Variables: CL_DIR (work dir), CL_API_HOST, CL_API_PORT, CL_CA,
# CL_K8S (binaries), CL_NS (control-plane netns name).

CL_K8S=${CL_K8S:-$RIG_ROOT/build/k8s}
CL_API_HOST=198.18.0.10
CL_API_HOST6=fd00:18::10
CL_API_PORT=6443
CL_SVC_CIDRS=${CL_SVC_CIDRS:-198.18.100.0/24,fd00:18:100::/112}
CL_DIR=""
CL_NS=""
CL_WAIT=${CL_WAIT:-120}	# seconds for the API server to become ready

cl_log() { echo "# cluster: $*" >&2; }

# kc ARGS...: kubectl as the cluster admin, bounded (T_CALL of lib/check.sh)
kc() {
	timeout -k 2 "${T_CALL:-20}" nsenter --net="/run/netns/$CL_NS" \
		"$CL_K8S/kubectl" --kubeconfig "$CL_DIR/admin.kubeconfig" "$@"
}
# kc_as USER ARGS...: kubectl with a bearer token file (a ServiceAccount)
kc_token() {
	local tok=$1
	shift
	timeout -k 2 "${T_CALL:-20}" nsenter --net="/run/netns/$CL_NS" \
		"$CL_K8S/kubectl" --server "https://$CL_API_HOST:$CL_API_PORT" \
		--certificate-authority "$CL_DIR/ca.crt" --token "$(cat "$tok")" "$@"
}

_cl_cert() {	# NAME SUBJ [SANS]: key + cert signed by the run's CA
	local name=$1 subj=$2 sans=${3:-} ext=$CL_DIR/$1.ext
	{
		echo "basicConstraints=critical,CA:FALSE"
		echo "keyUsage=critical,digitalSignature,keyEncipherment"
		if [ -n "$sans" ]; then
			echo "extendedKeyUsage=serverAuth"
			echo "subjectAltName=$sans"
		else
			echo "extendedKeyUsage=clientAuth"
		fi
	} >"$ext"
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$CL_DIR/$name.key" -out "$CL_DIR/$name.csr" -subj "$subj" 2>/dev/null &&
		openssl x509 -req -in "$CL_DIR/$name.csr" -CA "$CL_DIR/ca.crt" \
			-CAkey "$CL_DIR/ca.key" -CAcreateserial -days 2 -sha256 \
			-extfile "$ext" -out "$CL_DIR/$name.crt" 2>/dev/null
}

_cl_kubeconfig() {	# NAME: $CL_DIR/NAME.kubeconfig with NAME.crt/.key
	local name=$1
	cat >"$CL_DIR/$name.kubeconfig" <<-EOF
	apiVersion: v1
	kind: Config
	clusters:
	- name: kpx-test
	  cluster:
	    server: https://$CL_API_HOST:$CL_API_PORT
	    certificate-authority: $CL_DIR/ca.crt
	users:
	- name: $name
	  user:
	    client-certificate: $CL_DIR/$name.crt
	    client-key: $CL_DIR/$name.key
	contexts:
	- name: $name
	  context: {cluster: kpx-test, user: $name}
	current-context: $name
	EOF
}

_cl_certs() {
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$CL_DIR/ca.key" -out "$CL_DIR/ca.crt" -days 2 -sha256 \
		-subj "/CN=kpx-test-ca-$RIG_P" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null || return 1
	_cl_cert apiserver "/CN=kube-apiserver" \
		"IP:$CL_API_HOST,IP:$CL_API_HOST6,IP:127.0.0.1,IP:198.18.100.1,IP:fd00:18:100::1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost" || return 1
	_cl_cert admin "/O=system:masters/CN=kpx-test-admin" || return 1
	_cl_cert controller-manager "/CN=system:kube-controller-manager" || return 1
	_cl_cert kube-proxy "/CN=system:kube-proxy" || return 1
	# the apiserver's client certificate for the kubelet API (unused: no
	# kubelet) is not needed; the SA key signs ServiceAccount tokens
	openssl genrsa -out "$CL_DIR/sa.key" 2048 2>/dev/null &&
		openssl rsa -in "$CL_DIR/sa.key" -pubout -out "$CL_DIR/sa.pub" 2>/dev/null || return 1
	_cl_kubeconfig admin
	_cl_kubeconfig controller-manager
	_cl_kubeconfig kube-proxy
}

# _cl_bg NAME CMD...: background in the control-plane netns, log NAME.log,
# PID in $CL_DIR/NAME.pid and the rig's pid list (rig_down kills it).
_cl_bg() {
	local name=$1
	shift
	nsenter --net="/run/netns/$CL_NS" "$@" >>"$CL_DIR/$name.log" 2>&1 </dev/null &
	echo $! >"$CL_DIR/$name.pid"
	echo $! >>"$RIG_DIR/pids"
	disown $! 2>/dev/null
}

_cl_stop() {	# NAME
	local pid
	pid=$(cat "$CL_DIR/$1.pid" 2>/dev/null) || return 0
	[ -n "$pid" ] && stop_pid "$pid" 10
	rm -f "$CL_DIR/$1.pid"
}

cl_alive() { local p; p=$(cat "$CL_DIR/$1.pid" 2>/dev/null) && kill -0 "$p" 2>/dev/null; }

cluster_etcd_start() {
	_cl_bg etcd "$CL_K8S/etcd" --name kpx-test --data-dir "$CL_DIR/etcd" \
		--listen-client-urls http://127.0.0.1:2379 \
		--advertise-client-urls http://127.0.0.1:2379 \
		--listen-peer-urls http://127.0.0.1:2380 \
		--initial-advertise-peer-urls http://127.0.0.1:2380 \
		--initial-cluster kpx-test=http://127.0.0.1:2380 \
		--listen-metrics-urls http://127.0.0.1:2381 \
		--unsafe-no-fsync --log-level warn ${CL_ETCD_FLAGS:-}
}

# Extra flags for a run: CL_APISERVER_FLAGS (e.g. --watch-cache-sizes).
cluster_apiserver_start() {
	# shellcheck disable=SC2086 # word splitting of the extra flags
	_cl_bg apiserver "$CL_K8S/kube-apiserver" \
		--etcd-servers http://127.0.0.1:2379 \
		--bind-address 0.0.0.0 --secure-port "$CL_API_PORT" \
		--advertise-address "$CL_API_HOST" \
		--tls-cert-file "$CL_DIR/apiserver.crt" \
		--tls-private-key-file "$CL_DIR/apiserver.key" \
		--client-ca-file "$CL_DIR/ca.crt" \
		--authorization-mode Node,RBAC \
		--service-account-issuer https://kubernetes.default.svc.cluster.local \
		--service-account-key-file "$CL_DIR/sa.pub" \
		--service-account-signing-key-file "$CL_DIR/sa.key" \
		--service-cluster-ip-range "$CL_SVC_CIDRS" \
		--service-node-port-range 30000-32767 \
		--allow-privileged=true \
		--profiling=false \
		--cert-dir "$CL_DIR/apiserver-certs" \
		${CL_APISERVER_FLAGS:-}
}

cluster_apiserver_stop() { _cl_stop apiserver; }

# ready: /readyz answers "ok" to the admin
cluster_api_ready() { [ "$(kc get --raw /readyz 2>/dev/null)" = ok ]; }

cluster_controller_manager_start() {
	_cl_bg controller-manager "$CL_K8S/kube-controller-manager" \
		--kubeconfig "$CL_DIR/controller-manager.kubeconfig" \
		--secure-port 0 --leader-elect=false \
		--controllers endpointslice,endpointslicemirroring,serviceaccount,serviceaccount-token,namespace,garbagecollector \
		--use-service-account-credentials=true \
		--service-account-private-key-file "$CL_DIR/sa.key" \
		--root-ca-file "$CL_DIR/ca.crt" \
		--kube-api-qps 200 --kube-api-burst 400 \
		--concurrent-service-endpoint-syncs 10
}

# cluster_up: everything, bounded; on failure the logs' tails go to stderr.
cluster_up() {
	local b t0
	for b in etcd kube-apiserver kube-controller-manager kubectl; do
		[ -x "$CL_K8S/$b" ] || { cl_log "$CL_K8S/$b not built (make k8s)"; return 1; }
	done
	CL_NS=$(rig_ns n0)
	CL_DIR=$RIG_DIR/cluster
	mkdir -p "$CL_DIR"
	t0=$(date +%s%N)
	ip netns add "$CL_NS" || return 1
	nsenter --net="/run/netns/$CL_NS" ip link set lo up
	rig_exec f ip link add n0 type veth peer name eth0 netns "$CL_NS" || return 1
	rig_exec f ip link set n0 master br0 up
	nsenter --net="/run/netns/$CL_NS" sh -c "
		ip link set eth0 up &&
		ip addr add $CL_API_HOST/24 dev eth0 &&
		ip addr add $CL_API_HOST6/64 dev eth0 nodad" || return 1
	_cl_certs || { cl_log "certificates failed"; return 1; }
	cluster_etcd_start
	cluster_apiserver_start
	if ! wait_until "$CL_WAIT" cluster_api_ready; then
		cl_log "kube-apiserver not ready in ${CL_WAIT}s"
		tail -5 "$CL_DIR/etcd.log" "$CL_DIR/apiserver.log" >&2
		return 1
	fi
	cluster_controller_manager_start
	# the serviceaccount controller makes default/default; Pods need it
	if ! wait_until 60 kc -n default get serviceaccount default; then
		cl_log "no default ServiceAccount after 60 s"
		tail -5 "$CL_DIR/controller-manager.log" >&2
		return 1
	fi
	CL_UP_MS=$((($(date +%s%N) - t0) / 1000000))
	cl_log "up in ${CL_UP_MS} ms: https://$CL_API_HOST:$CL_API_PORT, dir $CL_DIR"
}

# cluster_node_add NODE ZONE: the Node object of a rig node, as a kubelet
# would register it: Ready, allocatable CPU (the EndpointSlice controller
# writes topology hints only with it), zone label, InternalIPs.
cluster_node_add() {
	local node=$1 zone=$2
	kc apply -f - >/dev/null <<-EOF || return 1
	apiVersion: v1
	kind: Node
	metadata:
	  name: $node
	  labels:
	    kubernetes.io/hostname: $node
	    kubernetes.io/os: linux
	    topology.kubernetes.io/zone: $zone
	EOF
	kc patch node "$node" --subresource=status --type=merge -p "$(cat <<-EOF
	{"status": {
	  "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
	    "lastHeartbeatTime": "$(date -u +%FT%TZ)", "lastTransitionTime": "$(date -u +%FT%TZ)"}],
	  "addresses": [{"type": "InternalIP", "address": "$(rig_node_ip4 "$node")"},
	    {"type": "InternalIP", "address": "$(rig_node_ip6 "$node")"},
	    {"type": "Hostname", "address": "$node"}],
	  "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
	  "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"}}}
	EOF
	)" >/dev/null
}

# cluster_pod_add NODE IDX [LABELS]: Pod NODE-pIDX in namespace t bound to
# NODE, then Running/Ready with the rig pod's IPv4 and IPv6 addresses (what
# a kubelet would report). LABELS: "k=v,k2=v2".
cluster_pod_add() {
	local node=$1 i=$2 labels=${3:-} name=$1-p$2 l lab=""
	for l in ${labels//,/ }; do lab="$lab, \"${l%%=*}\": \"${l#*=}\""; done
	kc apply -f - >/dev/null <<-EOF || return 1
	{"apiVersion": "v1", "kind": "Pod",
	 "metadata": {"name": "$name", "namespace": "t",
	   "labels": {"kpx.test/pod": "$name", "kpx.test/node": "$node"$lab}},
	 "spec": {"nodeName": "$node", "automountServiceAccountToken": false,
	   "terminationGracePeriodSeconds": 300,
	   "containers": [{"name": "echo", "image": "kpx-echo:none",
	     "ports": [{"containerPort": 8080, "protocol": "TCP"},
	               {"containerPort": 8080, "protocol": "UDP"}]}]}}
	EOF
	cluster_pod_ready "$node" "$i" true
}

cluster_pod_ready() {	# NODE IDX true|false
	local node=$1 i=$2 st=True
	[ "$3" = true ] || st=False
	kc -n t patch pod "$node-p$i" --subresource=status --type=merge -p "$(cat <<-EOF
	{"status": {"phase": "Running", "hostIP": "$(rig_node_ip4 "$node")",
	  "hostIPs": [{"ip": "$(rig_node_ip4 "$node")"}, {"ip": "$(rig_node_ip6 "$node")"}],
	  "podIP": "$(rig_pod_ip4 "$node" "$i")",
	  "podIPs": [{"ip": "$(rig_pod_ip4 "$node" "$i")"}, {"ip": "$(rig_pod_ip6 "$node" "$i")"}],
	  "startTime": "$(date -u +%FT%TZ)",
	  "conditions": [{"type": "PodScheduled", "status": "True"},
	    {"type": "Initialized", "status": "True"},
	    {"type": "ContainersReady", "status": "$st"},
	    {"type": "Ready", "status": "$st", "lastTransitionTime": "$(date -u +%FT%TZ)"}]}}
	EOF
	)" >/dev/null
}

# cluster_token SA NS POD [SECS]: prints a TokenRequest token for NS/SA
# bound to Pod NS/POD (deleting the Pod revokes it), as kubelet gets one
# for a projected volume. The server's minimum expiry is 10 minutes.
cluster_token() {
	kc -n "$2" create token "$1" --bound-object-kind Pod \
		--bound-object-name "$3" --duration "${4:-3600}s"
}

# cluster_sa_dir DIR TOKENFILE: DIR as kubelet lays out a projected
# service-account volume: timestamped dir, ..data -> it, token, ca.crt and
# namespace -> ..data/*. A second call swaps ..data atomically (rename of
# a new symlink over the old one), which is how kubelet rotates the token.
cluster_sa_dir() {
	local dir=$1 tok=$2 ts old
	ts=..$(date -u +%Y_%m_%d_%H_%M_%S.%N)
	mkdir -p "$dir/$ts"
	cp "$tok" "$dir/$ts/token"
	cp "$CL_DIR/ca.crt" "$dir/$ts/ca.crt"
	printf kube-system >"$dir/$ts/namespace"
	old=$(readlink "$dir/..data" 2>/dev/null)
	ln -s "$ts" "$dir/..data_tmp"
	mv -T "$dir/..data_tmp" "$dir/..data"
	local f
	for f in token ca.crt namespace; do
		[ -L "$dir/$f" ] || ln -s "..data/$f" "$dir/$f"
	done
	[ -n "$old" ] && [ "$old" != "$ts" ] && rm -rf "${dir:?}/$old"
	return 0
}
