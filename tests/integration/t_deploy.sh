#!/bin/bash
# Deploying kpx: manifests/ are valid Kubernetes objects with what a node
# agent needs, the ConfigMap's configuration is accepted by kpx, the
# Containerfile's runtime stage has every library build/kpx links, and
# `kpx cleanup --kube-proxy` takes a node over from kube-proxy (in a network
# namespace: only kube-proxy's tables and chains go).
# Prints PASS/FAIL/SKIP lines; exits 0.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
KPX=$ROOT/build/kpx
NS=kpx-deploy-$$
# shellcheck source=lib/check.sh
. tests/integration/lib/check.sh
kpx_sweep_stale
# names carry $$: kpx_sweep_stale removes them if this run is killed
TMP=$(mktemp -d /tmp/kpx-deploy-$$.XXXXXX)
# npm packages are cached across runs (build/ is not committed).
VALIDATOR_DIR=${KPX_VALIDATOR_DIR:-$ROOT/build/deploy-validator}

cleanup() {
	ip netns del "$NS" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# ---- manifests against the Kubernetes OpenAPI schemas --------------------

# kubernetes-models ships ajv validators compiled from the Kubernetes
# OpenAPI spec, one per kind; yaml parses the manifests independently of
# kpx's own YAML code.
install_validator() {
	[ -f "$VALIDATOR_DIR/node_modules/kubernetes-models/package.json" ] &&
		[ -f "$VALIDATOR_DIR/node_modules/yaml/package.json" ] && return 0
	command -v npm >/dev/null || { echo "npm not installed"; return 1; }
	mkdir -p "$VALIDATOR_DIR"
	echo '{"private":true}' >"$VALIDATOR_DIR/package.json"
	(cd "$VALIDATOR_DIR" && timeout 300 npm install --no-audit --no-fund \
		--loglevel=error kubernetes-models@5 yaml@2 >"$TMP/npm.log" 2>&1) ||
		{ echo "npm install failed: $(tail -3 "$TMP/npm.log" | tr '\n' ' ')"; return 1; }
}

cat >"$TMP/validate.mjs" <<'EOF'
// usage: node validate.mjs VALIDATOR_DIR FILE...   one line per problem
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const [dir, ...files] = process.argv.slice(2);
const req = createRequire(dir + "/package.json");
const YAML = req("yaml");
const modRoot = dir + "/node_modules/kubernetes-models/";
let problems = 0;
const bad = (m) => { console.log(m); problems++; };

async function modelFor(apiVersion, kind) {
	const [g, v] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
	const path = modRoot + (g ? g + "/" + v : v) + "/" + kind + ".js";
	try {
		return (await import(pathToFileURL(path)))[kind];
	} catch {
		return null;
	}
}

async function validate(where, obj) {
	if (!obj || typeof obj !== "object" || !obj.apiVersion || !obj.kind)
		return bad(`${where}: not a Kubernetes object (apiVersion/kind)`);
	const Model = await modelFor(obj.apiVersion, obj.kind);
	if (!Model)
		return bad(`${where}: unknown apiVersion/kind ${obj.apiVersion} ${obj.kind}`);
	try {
		new Model(obj).validate();
	} catch (e) {
		return bad(`${where}: ${obj.kind}/${obj.metadata?.name}: ${e.message}`);
	}
	if (!obj.metadata?.name)
		bad(`${where}: ${obj.kind} without metadata.name`);
	return true;
}

const objs = [];
for (const f of files) {
	const docs = YAML.parseAllDocuments(readFileSync(f, "utf8"));
	docs.forEach((d, i) => {
		if (d.errors.length) return bad(`${f}#${i}: ${d.errors[0].message}`);
		const o = d.toJS();
		if (o !== null) objs.push([`${f}#${i}`, o]);
	});
}
for (const [where, o] of objs) await validate(where, o);

// The validator must reject a broken object, or its "ok" means nothing.
const ds = objs.map((x) => x[1]).find((o) => o.kind === "DaemonSet");
if (ds) {
	const broken = structuredClone(ds);
	broken.spec.template.spec.containers[0].ports = [{ containerPort: "http" }];
	let rejected = false;
	try { new (await modelFor("apps/v1", "DaemonSet"))(broken).validate(); }
	catch { rejected = true; }
	if (!rejected) bad("validator accepted containerPort: \"http\"");
}
console.log(`objects: ${objs.map((x) => x[1].kind + "/" + x[1].metadata?.name).join(" ")}`);
process.exit(problems ? 1 : 0);
EOF

# What a cluster operator relies on, read from the parsed objects.
cat >"$TMP/requirements.mjs" <<'EOF'
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
const [dir, ...files] = process.argv.slice(2);
const YAML = createRequire(dir + "/package.json")("yaml");
const objs = files.flatMap((f) => YAML.parseAllDocuments(readFileSync(f, "utf8")).map((d) => d.toJS()).filter(Boolean));
const get = (kind) => objs.find((o) => o.kind === kind);
const problems = [];
const want = (cond, what) => { if (!cond) problems.push(what); };

for (const k of ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet"])
	want(get(k), `no ${k}`);
const ds = get("DaemonSet"), cr = get("ClusterRole"), crb = get("ClusterRoleBinding"), sa = get("ServiceAccount");
if (ds && cr && crb && sa) {
	const allows = (group, res, verb) => cr.rules.some((r) => r.apiGroups.includes(group) &&
		r.resources.includes(res) && r.verbs.includes(verb));
	for (const [g, r, v] of [["", "services", "list"], ["", "services", "watch"],
		["discovery.k8s.io", "endpointslices", "list"], ["discovery.k8s.io", "endpointslices", "watch"],
		["", "nodes", "list"], ["", "nodes", "watch"]])
		want(allows(g, r, v), `ClusterRole lacks ${v} ${g || "core"}/${r}`);
	// least privilege: read-only list/watch of exactly those three
	const verbs = new Set(cr.rules.flatMap((r) => r.verbs));
	for (const v of verbs)
		want(v === "list" || v === "watch", `ClusterRole grants ${v}, which kpx never uses`);
	const res = new Set(cr.rules.flatMap((r) => r.resources));
	for (const r of res)
		want(["services", "endpointslices", "nodes"].includes(r), `ClusterRole covers ${r}, which kpx never reads`);
	want(crb.roleRef.name === cr.metadata.name && crb.subjects.some((s) => s.name === sa.metadata.name &&
		s.namespace === sa.metadata.namespace), "ClusterRoleBinding does not bind the ServiceAccount");
	const ps = ds.spec.template.spec, c = ps.containers[0];
	want(ds.metadata.namespace === "kube-system", "DaemonSet not in kube-system");
	want(ps.serviceAccountName === sa.metadata.name, "DaemonSet does not use the ServiceAccount");
	want(ps.hostNetwork === true, "no hostNetwork");
	// kpx makes the cluster DNS reachable: it must not depend on it
	want(ps.dnsPolicy === "Default", "dnsPolicy (want Default)");
	want(ps.nodeSelector?.["kubernetes.io/os"] === "linux", "nodeSelector kubernetes.io/os: linux");
	want(ps.securityContext?.appArmorProfile?.type === "Unconfined" &&
		ds.spec.template.metadata.annotations?.["container.apparmor.security.beta.kubernetes.io/" + c.name] === "unconfined",
		"AppArmor unconfined (field and pre-1.30 annotation)");
	want(c.securityContext?.seLinuxOptions?.type === "spc_t", "SELinux type spc_t");
	want(ps.priorityClassName === "system-node-critical", "priorityClassName");
	want(ps.tolerations?.some((t) => t.operator === "Exists" && !t.key && !t.effect), "no toleration for every taint");
	want(ds.spec.updateStrategy?.type === "RollingUpdate" &&
		ds.spec.updateStrategy.rollingUpdate?.maxUnavailable === 1, "updateStrategy");
	want(c.readinessProbe?.httpGet?.path === "/readyz" && c.readinessProbe.httpGet.port === 10256, "readinessProbe");
	want(c.startupProbe?.httpGet?.path === "/readyz" && c.startupProbe.httpGet.port === 10256 &&
		c.startupProbe.periodSeconds * c.startupProbe.failureThreshold >= 300, "startupProbe (>= 5 min for a first sync)");
	want(c.livenessProbe?.httpGet?.path === "/livez" && c.livenessProbe.httpGet.port === 10256, "livenessProbe");
	want(c.resources?.requests?.cpu && c.resources?.requests?.memory, "resource requests");
	want(!c.securityContext?.privileged, "agent container is privileged");
	const caps = c.securityContext?.capabilities?.add || [];
	want(caps.includes("NET_ADMIN") && (caps.includes("SYS_ADMIN") || (caps.includes("BPF") && caps.includes("PERFMON"))),
		"capabilities");
	want(c.args?.includes("--config=/var/lib/kube-proxy/config.conf") && c.args[0] === "run", "args");
	want(c.args?.includes("--cgroup-path=/host/sys/fs/cgroup"), "--cgroup-path in args (a pasted config.conf has none)");
	want(c.args?.includes("--hostname-override=$(NODE_NAME)") &&
		c.env?.some((e) => e.name === "NODE_NAME" && e.valueFrom?.fieldRef?.fieldPath === "spec.nodeName"), "NODE_NAME");
	const vols = Object.fromEntries(ps.volumes.map((v) => [v.name, v]));
	const mount = (path) => c.volumeMounts.find((m) => vols[m.name]?.hostPath?.path === path);
	want(mount("/sys/fs/bpf"), "no bpffs mount");
	want(mount("/sys/fs/cgroup"), "no /sys/fs/cgroup mount");
	want(mount("/lib/modules")?.readOnly, "/lib/modules not read-only");
	want(mount("/run/kpx"), "no /run/kpx mount");
	want(ps.initContainers?.some((i) => i.command?.join(" ").includes("mount -t bpf") &&
		i.volumeMounts?.some((m) => vols[m.name]?.hostPath?.path === "/sys/fs/bpf" &&
			m.mountPropagation === "Bidirectional")), "no init step mounting bpffs");
	const cmv = ps.volumes.find((v) => v.configMap);
	want(cmv?.configMap.name === get("ConfigMap").metadata.name, "config volume is not the ConfigMap");
	// kube-proxy's layout: its ConfigMap's keys at /var/lib/kube-proxy
	want(c.volumeMounts.some((m) => m.name === cmv?.name && m.mountPath === "/var/lib/kube-proxy"),
		"ConfigMap not mounted at /var/lib/kube-proxy");
	const data = get("ConfigMap").data || {};
	want(data["config.conf"] && data["kubeconfig.conf"], "ConfigMap lacks kubeadm's keys config.conf, kubeconfig.conf");
}
if (problems.length) { console.log(problems.join("; ")); process.exit(1); }
EOF

test_manifests() {
	local files=(manifests/*.yaml) why out
	if [ ! -f "${files[0]}" ]; then
		fail deploy_manifests_schema "no manifests/*.yaml"
		return
	fi
	if ! why=$(install_validator); then
		skip deploy_manifests_schema "validator unavailable: $why"
		skip deploy_manifests_requirements "validator unavailable"
		return
	fi
	if out=$(tcall node "$TMP/validate.mjs" "$VALIDATOR_DIR" "${files[@]}" 2>&1); then
		pass deploy_manifests_schema
	else
		fail deploy_manifests_schema "$(echo "$out" | head -5 | tr '\n' ' ')"
	fi
	if out=$(tcall node "$TMP/requirements.mjs" "$VALIDATOR_DIR" "${files[@]}" 2>&1); then
		pass deploy_manifests_requirements
	else
		fail deploy_manifests_requirements "$out"
	fi
}

# ---- the ConfigMap's configuration is accepted ----------------------------

write_manifests_dir() {
	mkdir -p "$TMP/objs"
	cat >"$TMP/objs/svc.yaml" <<'EOF'
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: 198.18.100.10
  clusterIPs: [198.18.100.10]
  ports: [{name: http, port: 80, protocol: TCP, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: default
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
  - addresses: [198.18.1.2]
    conditions: {ready: true}
    nodeName: node-a
EOF
}

# data[config.yaml] of the ConfigMap in manifests/, with python3-yaml
# (a Debian package in scripts/deps.sh), independent of kpx's parser.
extract_config() {
	python3 - "$1" manifests/*.yaml <<'EOF'
import sys, yaml
out = sys.argv[1]
for f in sys.argv[2:]:
    for d in yaml.safe_load_all(open(f)):
        if d and d.get("kind") == "ConfigMap" and "config.conf" in (d.get("data") or {}):
            open(out, "w").write(d["data"]["config.conf"])
            sys.exit(0)
sys.exit(1)
EOF
}

test_config() {
	local cfg=$TMP/config.yaml out rc
	if ! extract_config "$cfg" 2>"$TMP/extract.err"; then
		fail deploy_config_accepted "no ConfigMap with data[config.conf] in manifests/ ($(head -1 "$TMP/extract.err"))"
		return
	fi
	write_manifests_dir
	out=$(tcall "$KPX" plan --config "$cfg" --manifests "$TMP/objs" \
		--hostname-override node-a 2>&1)
	rc=$?
	if [ $rc -ne 0 ]; then
		fail deploy_config_accepted "kpx plan --config exited $rc: $(echo "$out" | tail -3 | tr '\n' ' ')"
	elif echo "$out" | grep -qiE 'unknown field|^E'; then
		fail deploy_config_accepted "warnings/errors on the shipped config: $(echo "$out" | grep -iE 'unknown field|^E' | head -2)"
	elif ! echo "$out" | grep -q '198.18.100.10'; then
		fail deploy_config_accepted "plan does not show the service: $(echo "$out" | head -3 | tr '\n' ' ')"
	else
		pass deploy_config_accepted
	fi

	# A wrong value is refused, naming the field; an unknown field is not.
	sed 's/minSyncPeriod: .*/minSyncPeriod: soon/' "$cfg" >"$TMP/bad.yaml"
	# the shipped config must set it, or this check tests an unchanged file
	if cmp -s "$cfg" "$TMP/bad.yaml"; then
		fail deploy_config_bad_value "the ConfigMap's config.conf has no minSyncPeriod line to break"
		cfg=""
	fi
	out=$(tcall "$KPX" plan --config "$TMP/bad.yaml" --manifests "$TMP/objs" 2>&1)
	rc=$?
	if [ -z "$cfg" ]; then
		:
	elif [ $rc -eq 0 ] || ! echo "$out" | grep -q minSyncPeriod; then
		fail deploy_config_bad_value "exit $rc, output: $(echo "$out" | head -2 | tr '\n' ' ')"
	else
		pass deploy_config_bad_value
	fi
	# (kubeadm writes the key as a |- block: no newline at its end)
	{ cat "$cfg"; echo; echo "someFutureField: 1"; } >"$TMP/unknown.yaml"
	out=$(tcall "$KPX" plan --config "$TMP/unknown.yaml" --manifests "$TMP/objs" 2>&1)
	rc=$?
	if [ $rc -ne 0 ] || ! echo "$out" | grep -q 'unknown field someFutureField'; then
		fail deploy_config_unknown_field "exit $rc, output: $(echo "$out" | head -2 | tr '\n' ' ')"
	else
		pass deploy_config_unknown_field
	fi
}

# ---- Containerfile --------------------------------------------------------

# Package names between "# BEGIN NAME" and "# END NAME" of the Containerfile.
containerfile_pkgs() {
	sed -n "/^# BEGIN $1/,/^# END $1/p" Containerfile | grep -v '^#' |
		sed -n '/install/,$p' | tr ' \\' '\n\n' |
		grep -E '^[a-z0-9][a-z0-9.+-]+$' |
		grep -vxE 'apt-get|install|rm|run|update|&&|-y|-rf'
}

test_containerfile() {
	local runtime build missing="" lib path pkg p libs deps
	if [ ! -f Containerfile ]; then
		fail deploy_containerfile "no Containerfile"
		return
	fi
	if ! command -v dpkg >/dev/null || ! command -v apt-cache >/dev/null; then
		skip deploy_containerfile "needs dpkg and apt-cache (Debian)"
		return
	fi
	runtime=$(containerfile_pkgs runtime-packages)
	build=$(containerfile_pkgs build-packages)
	if [ -z "$runtime" ] || [ -z "$build" ]; then
		fail deploy_containerfile "could not read the package lists"
		return
	fi
	# Every library kpx links directly comes from a listed runtime package
	# or from the C library, which debian:12-slim has.
	# an empty list (readelf missing or failing) would check nothing
	libs=$(readelf -d "$KPX" | sed -n 's/.*NEEDED.*\[\(.*\)\]/\1/p')
	if [ -z "$libs" ]; then
		fail deploy_containerfile "readelf -d $KPX listed no NEEDED libraries"
		return
	fi
	for lib in $libs; do
		path=$(ldd "$KPX" | awk -v l="$lib" '$1 == l { print $3 }')
		pkg=$(dpkg -S "$(readlink -f "$path")" 2>/dev/null | head -1 | cut -d: -f1)
		[ -z "$pkg" ] && pkg=$(dpkg -S "$path" 2>/dev/null | head -1 | cut -d: -f1)
		case $pkg in libc6) continue ;; esac
		echo "$runtime" | grep -qx "$pkg" || missing+=" $lib($pkg)"
	done
	if [ -n "$missing" ]; then
		fail deploy_containerfile "runtime stage lacks:$missing"
		return
	fi
	# Every build dependency of scripts/deps.sh that is a -dev package or a
	# compiler is in the build stage.
	deps=$(sed -n '/^PKGS=(/,/)/p' scripts/deps.sh | tr '()' '  ' | tr ' ' '\n' |
		grep -E -- '-dev$|^(make|gcc|clang|llvm|pkg-config|bpftool)$' | grep -v criterion)
	if [ -z "$deps" ]; then
		fail deploy_containerfile "no build packages read from scripts/deps.sh PKGS=(...)"
		return
	fi
	for p in $deps; do
		echo "$build" | grep -qx "$p" || missing+=" $p"
	done
	if [ -n "$missing" ]; then
		fail deploy_containerfile "build stage lacks:$missing"
		return
	fi
	# Every named package exists in this Debian release's archive.
	for p in $runtime $build; do
		apt-cache show "$p" >/dev/null 2>&1 || missing+=" $p"
	done
	if [ -n "$missing" ]; then
		fail deploy_containerfile "unknown Debian packages:$missing"
		return
	fi
	if ! grep -q '^ENTRYPOINT \["/usr/local/sbin/kpx"\]' Containerfile ||
		! grep -q '^FROM debian:12-slim' Containerfile; then
		fail deploy_containerfile "runtime stage is not debian:12-slim with ENTRYPOINT /usr/local/sbin/kpx"
		return
	fi
	pass deploy_containerfile
}

# ---- migration: kpx cleanup --kube-proxy ----------------------------------

ipt_variants() {
	local v
	for v in legacy nft; do
		command -v "iptables-$v" >/dev/null && command -v "ip6tables-$v" >/dev/null &&
			ip netns exec "$NS" "iptables-$v-save" >/dev/null 2>&1 && echo "$v"
	done
}

test_cleanup() {
	local out rc v bad="" variants
	command -v nft >/dev/null || { skip deploy_cleanup_kube_proxy "nft binary not installed"; return; }
	ip netns add "$NS" || { fail deploy_cleanup_kube_proxy "cannot create netns"; return; }
	# kube-proxy's nftables mode tables, plus tables it does not own.
	if ! ip netns exec "$NS" nft -f - <<'EOF'
table ip kube-proxy {
	map service-ips { type ipv4_addr . inet_proto . inet_service : verdict; }
	chain nat-prerouting { type nat hook prerouting priority dstnat; policy accept; }
}
table ip6 kube-proxy {
	chain nat-prerouting { type nat hook prerouting priority dstnat; policy accept; }
}
table ip other-cni {
	chain input { type filter hook input priority 0; policy accept; }
}
table inet kube-proxy {
	chain input { type filter hook input priority 0; policy accept; }
}
EOF
	then
		fail deploy_cleanup_kube_proxy "cannot create nft tables"
		return
	fi
	variants=$(ipt_variants)
	# kube-proxy's iptables mode chains (and kubelet's, which stay).
	for v in $variants; do
		for fam in iptables ip6tables; do
			x="ip netns exec $NS $fam-$v -w"
			$x -t nat -N KUBE-SERVICES && $x -t nat -N KUBE-SVC-WEB &&
				$x -t nat -N KUBE-MARK-MASQ && $x -t nat -N KUBE-POSTROUTING &&
				$x -t nat -A KUBE-SERVICES -p tcp --dport 80 -m comment --comment "default/web:http cluster IP" -j KUBE-SVC-WEB &&
				$x -t nat -A KUBE-SVC-WEB -j KUBE-MARK-MASQ &&
				$x -t nat -A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES &&
				$x -t nat -A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES &&
				$x -t nat -A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING &&
				$x -t nat -N CNI-HOSTPORT && $x -t nat -A PREROUTING -j CNI-HOSTPORT &&
				$x -t nat -A POSTROUTING -p udp -j MASQUERADE &&
				$x -t filter -N KUBE-FORWARD && $x -t filter -A FORWARD -j KUBE-FORWARD &&
				$x -t filter -N KUBE-FIREWALL && $x -t filter -A INPUT -j KUBE-FIREWALL &&
				$x -t filter -N KUBE-PROXY-FIREWALL && $x -t filter -A INPUT -m conntrack --ctstate NEW -j KUBE-PROXY-FIREWALL ||
				{ fail deploy_cleanup_kube_proxy "cannot create $fam-$v chains"; return; }
		done
	done

	out=$(nsenter --net="/run/netns/$NS" timeout -k 2 "$T_CALL" "$KPX" cleanup --kube-proxy --backend nft \
		--state-socket "$TMP/none.sock" --bpf-root "/sys/fs/bpf/kpx-deploy-$$" 2>&1)
	rc=$?
	[ $rc -eq 0 ] || bad+=" exit $rc ($(echo "$out" | tail -2 | tr '\n' ' '));"
	tables=$(ip netns exec "$NS" nft list tables)
	echo "$tables" | grep -qx 'table ip kube-proxy' && bad+=" ip kube-proxy left;"
	echo "$tables" | grep -qx 'table ip6 kube-proxy' && bad+=" ip6 kube-proxy left;"
	echo "$tables" | grep -qx 'table ip other-cni' || bad+=" ip other-cni removed;"
	echo "$tables" | grep -qx 'table inet kube-proxy' || bad+=" inet kube-proxy removed;"
	for v in $variants; do
		for fam in iptables ip6tables; do
			s=$(ip netns exec "$NS" "$fam-$v-save" 2>/dev/null | grep -v '^#')
			echo "$s" | grep -E 'KUBE-' | grep -vE '^:KUBE-FIREWALL |^-A INPUT -j KUBE-FIREWALL$' |
				grep -q . && bad+=" $fam-$v kept: $(echo "$s" | grep KUBE- | grep -v KUBE-FIREWALL | head -2 | tr '\n' ' ');"
			echo "$s" | grep -q '^:KUBE-FIREWALL ' || bad+=" $fam-$v: kubelet's KUBE-FIREWALL removed;"
			echo "$s" | grep -q '^-A PREROUTING -j CNI-HOSTPORT$' || bad+=" $fam-$v: CNI-HOSTPORT jump removed;"
			echo "$s" | grep -q '^-A POSTROUTING -p udp -j MASQUERADE$' || bad+=" $fam-$v: MASQUERADE rule removed;"
		done
	done
	echo "$out" | grep -q 'removed nftables table ip kube-proxy' || bad+=" output does not say what was removed;"
	if [ -n "$bad" ]; then
		fail deploy_cleanup_kube_proxy "${bad% }"
	else
		pass deploy_cleanup_kube_proxy
	fi
	[ -n "$variants" ] || skip deploy_cleanup_kube_proxy_iptables "no usable iptables-legacy/iptables-nft"

	# Nothing left: a second run succeeds and says so.
	out=$(nsenter --net="/run/netns/$NS" timeout -k 2 "$T_CALL" "$KPX" cleanup --kube-proxy --backend nft \
		--state-socket "$TMP/none.sock" --bpf-root "/sys/fs/bpf/kpx-deploy-$$" 2>&1)
	rc=$?
	if [ $rc -eq 0 ] && echo "$out" | grep -q 'no nftables table ip kube-proxy'; then
		pass deploy_cleanup_idempotent
	else
		fail deploy_cleanup_idempotent "exit $rc: $(echo "$out" | head -3 | tr '\n' ' ')"
	fi
}

# ---- every manifest parses (python3-yaml, independent of node/npm) ---------

test_manifests_parse() {
	local out
	if out=$(python3 - manifests/*.yaml 2>&1 <<'PY'
import sys, yaml
bad = []
for f in sys.argv[1:]:
    try:
        docs = [d for d in yaml.safe_load_all(open(f)) if d is not None]
    except yaml.YAMLError as e:
        bad.append(f"{f}: {e}".replace("\n", " "))
        continue
    if not docs:
        bad.append(f"{f}: no objects")
    for d in docs:
        if not isinstance(d, dict) or not d.get("apiVersion") or not d.get("kind") or \
                not (d.get("metadata") or {}).get("name"):
            bad.append(f"{f}: an object without apiVersion/kind/metadata.name")
if bad:
    print("; ".join(bad))
    sys.exit(1)
PY
	); then
		pass deploy_manifests_parse
	else
		fail deploy_manifests_parse "$out"
	fi
}

# ---- BPF objects for arm64 (the image's other platform) --------------------

test_bpf_arm64() {
	local out objs o m
	command -v clang >/dev/null && [ -r /sys/kernel/btf/vmlinux ] ||
		{ skip deploy_bpf_arm64 "needs clang and /sys/kernel/btf/vmlinux"; return; }
	out=$(timeout 300 make -s --no-print-directory BUILD="$TMP/arm64" BPF_ARCH=arm64 bpf V=1 2>&1)
	if [ $? -ne 0 ]; then
		fail deploy_bpf_arm64 "make BPF_ARCH=arm64 bpf: $(tail -2 <<<"$out" | tr '\n' ' ')"
		return
	fi
	objs=$(ls "$TMP"/arm64/bpf/*.bpf.o 2>/dev/null)
	[ -n "$objs" ] || { fail deploy_bpf_arm64 "no .bpf.o built"; return; }
	for o in $objs; do
		m=$(readelf -h "$o" | sed -n 's/ *Machine: *//p')
		[ "$m" = "Linux BPF" ] || { fail deploy_bpf_arm64 "$o: machine '$m'"; return; }
	done
	# the define comes from BPF_ARCH, and ARCH (uname -m / TARGETARCH
	# spelling) maps to it
	# (make's output is read whole: grep -q in a pipe under pipefail
	# fails when make is cut off by SIGPIPE after the match)
	local a64 aa64 x86
	a64=$(make -n BUILD="$TMP/arm64-n" ARCH=arm64 "$TMP/arm64-n/bpf/sock_lb.bpf.o" 2>/dev/null)
	aa64=$(make -n BUILD="$TMP/arm64-n" ARCH=aarch64 "$TMP/arm64-n/bpf/sock_lb.bpf.o" 2>/dev/null)
	x86=$(make -n BUILD="$TMP/amd64-n" ARCH=amd64 "$TMP/amd64-n/bpf/sock_lb.bpf.o" 2>/dev/null)
	if ! grep -q -- '-D__TARGET_ARCH_arm64' <<<"$a64" ||
		! grep -q -- '-D__TARGET_ARCH_arm64' <<<"$aa64" ||
		! grep -q -- '-D__TARGET_ARCH_x86' <<<"$x86"; then
		fail deploy_bpf_arm64 "ARCH=arm64/aarch64/amd64 do not map to __TARGET_ARCH_arm64/x86"
		return
	fi
	grep -q 'ARCH=\$TARGETARCH' Containerfile ||
		{ fail deploy_bpf_arm64 "the Containerfile does not pass TARGETARCH to make"; return; }
	pass deploy_bpf_arm64 "$(echo "$objs" | wc -l) objects with -D__TARGET_ARCH_arm64"
}

# ---- rollback: the cleanup container of rollback-to-kube-proxy.yaml --------

# Its args, run as the pod would: nothing is removed while "kube-proxy"
# is not there, nor while its /metrics on 127.0.0.1:10249 shows no sync
# yet (kube-proxy's /healthz is 200 before its first sync, so that is not
# the signal), then kpx's state goes and the process stays up (Ready)
# until SIGTERM, which it exits 0 on.
test_rollback_pod() {
	local args pid srv why="" i
	args=$(python3 - <<'PY'
import yaml
for d in yaml.safe_load_all(open("manifests/rollback-to-kube-proxy.yaml")):
    if d and d.get("kind") == "DaemonSet":
        for c in d["spec"]["template"]["spec"]["containers"]:
            if c["name"] == "kpx-cleanup":
                print("\n".join(c["args"]))
PY
)
	if [ -z "$args" ]; then
		fail deploy_rollback_pod_stays_ready "no kpx-cleanup container in manifests/rollback-to-kube-proxy.yaml"
		return
	fi
	ip netns add "$NS" 2>/dev/null
	ip netns exec "$NS" ip link set lo up
	ip netns exec "$NS" nft add table inet kpx || { fail deploy_rollback_pod_stays_ready "cannot create table inet kpx"; return; }
	mkdir -p "$TMP/www"
	# kube-proxy's page: a gauge per IP family
	printf '# TYPE kubeproxy_sync_proxy_rules_last_timestamp_seconds gauge\nkubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family="IPv4"} 0\n' >"$TMP/www/metrics"
	# the pod's paths, here: config from the shipped ConfigMap, no bpf root
	extract_config "$TMP/rb-config.conf" 2>/dev/null
	mapfile -t argv < <(sed -e "s#^--config=.*#--config=$TMP/rb-config.conf#" \
		-e "s#^--cgroup-path=.*#--cgroup-path=$TMP#" <<<"$args")
	nsenter --net="/run/netns/$NS" "$KPX" "${argv[@]}" --wait-timeout 20s --backend nft \
		--state-socket "$TMP/rb.sock" >"$TMP/rb.log" 2>&1 &
	pid=$!
	sleep 2
	ip netns exec "$NS" nft list table inet kpx >/dev/null 2>&1 || why+=" removed before kube-proxy ran;"
	kill -0 "$pid" 2>/dev/null || why+=" exited while waiting: $(tail -1 "$TMP/rb.log");"
	(cd "$TMP/www" && exec nsenter --net="/run/netns/$NS" python3 -m http.server -b 127.0.0.1 10249) >/dev/null 2>&1 &
	srv=$!
	sleep 2
	ip netns exec "$NS" nft list table inet kpx >/dev/null 2>&1 || why+=" removed before kube-proxy's first sync;"
	sed -i 's/ 0$/ 1.7962e+09/' "$TMP/www/metrics"
	for i in $(seq 1 50); do
		ip netns exec "$NS" nft list table inet kpx >/dev/null 2>&1 || break
		sleep 0.2
	done
	ip netns exec "$NS" nft list table inet kpx >/dev/null 2>&1 && why+=" table inet kpx still there after kube-proxy's first sync;"
	sleep 0.5
	kill -0 "$pid" 2>/dev/null || why+=" did not stay up after the cleanup: $(tail -1 "$TMP/rb.log");"
	kill -TERM "$pid" 2>/dev/null
	for i in $(seq 1 25); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
	if kill -0 "$pid" 2>/dev/null; then
		why+=" still running 5 s after SIGTERM;"
		kill -KILL "$pid" 2>/dev/null
	else
		wait "$pid" || why+=" exit status $? on SIGTERM;"
	fi
	kill "$srv" 2>/dev/null
	wait "$srv" 2>/dev/null
	check_why deploy_rollback_pod_stays_ready "${why% }"
	ip netns del "$NS" 2>/dev/null
}

if [ ! -x "$KPX" ]; then
	fail deploy "build/kpx not built"
	exit 0
fi
snapshot KPX "$TMP" || { fail deploy "build/kpx kept changing for 20 s"; exit 0; }
test_manifests_parse
test_manifests
test_config
test_containerfile
test_bpf_arm64
test_rollback_pod
test_cleanup
exit 0
