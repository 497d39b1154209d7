// SPDX-License-Identifier: Apache-2.0
/*
 * `--config FILE`: a KubeProxyConfiguration (kubeproxy.config.k8s.io/
 * v1alpha1) in YAML or JSON, so that the kube-proxy ConfigMap a cluster
 * already has can be pointed at kpx. The file may also be the ConfigMap
 * manifest itself (data["config.conf"] as kubeadm writes it, or
 * data["config.yaml"] as manifests/kpx.yaml does).
 *
 * Fields kube-proxy has and kpx maps: clusterCIDR, nodePortAddresses,
 * healthzBindAddress, metricsBindAddress, mode, hostnameOverride,
 * clientConnection.kubeconfig, [top-level|iptables|nftables].syncPeriod and
 * minSyncPeriod, *.masqueradeAll, conntrack (tcpEstablishedTimeout,
 * tcpCloseWaitTimeout, udpTimeout), logging.verbosity. Fields kube-proxy
 * has but that mean nothing to kpx are accepted silently (-v 1 lists
 * them); fields that would change behaviour kpx does not have are warned
 * about; fields nobody knows are warned about by name. None is fatal.
 * Wrong types and invalid values are: a config that says something kpx
 * cannot honour must not start an agent that silently does something else.
 *
 * The kpx-specific section `kpx:` carries the flags kube-proxy has no name
 * for (backend, devices, nodePortAccel, nodePortMode, lbAlgorithm,
 * cgroupPath, bpfRoot, stateSocket).
 *
 * Owns: reading the file into struct kpx_config. Must not: act on the
 * config, or parse flags (config.c applies flags afterwards).
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>

#include "agent/config.h"
#include "common/addr.h"
#include "common/log.h"
#include "k8s/manifests.h"

#define KPX_CONFIG_MAX_BYTES (1 << 20)
#define KUBE_PROXY_API "kubeproxy.config.k8s.io/v1alpha1"
#define KUBE_PROXY_KIND "KubeProxyConfiguration"

/*
 * Until k8s/manifests.c and agent/config.c land; their strong
 * definitions replace these.
 */
__attribute__((weak)) int kpx_yaml_to_json(const char *buf, size_t len,
					   struct json_object **docs, char *err,
					   size_t errlen)
{
	(void)buf;
	(void)len;
	(void)docs;
	snprintf(err, errlen, "YAML support not built in");
	return -ENOSYS;
}

__attribute__((weak)) int kpx_duration_parse(const char *s, uint64_t *ms)
{
	(void)s;
	(void)ms;
	return -ENOSYS;
}

struct cf_ctx {
	const char *path;
	struct kpx_config *cfg;
};

/* Every key of obj not in known (NULL-terminated) is warned about. */
static void warn_unknown(const struct cf_ctx *c, struct json_object *obj,
			 const char *prefix, const char *const *known)
{
	json_object_object_foreach(obj, key, val)
	{
		const char *const *k;

		(void)val;
		for (k = known; *k; k++)
			if (!strcmp(*k, key))
				break;
		if (!*k)
			kpx_warn("%s: unknown field %s%s ignored", c->path,
				 prefix, key);
	}
}

/* 1: present, 0: absent or null, -EINVAL: wrong type (logged). */
static int get_field(const struct cf_ctx *c, struct json_object *obj,
		     const char *prefix, const char *key, json_type want,
		     struct json_object **out)
{
	struct json_object *v;

	*out = NULL;
	if (!obj || !json_object_object_get_ex(obj, key, &v) || !v)
		return 0;
	if (json_object_is_type(v, want)) {
		*out = v;
		return 1;
	}
	kpx_err("%s: %s%s must be a%s %s, not %s", c->path, prefix, key,
		want == json_type_object || want == json_type_array ? "n" : "",
		json_type_to_name(want),
		json_type_to_name(json_object_get_type(v)));
	return -EINVAL;
}

static int get_string(const struct cf_ctx *c, struct json_object *obj,
		      const char *prefix, const char *key, const char **out)
{
	struct json_object *v;
	int ret;

	*out = NULL;
	if (!obj || !json_object_object_get_ex(obj, key, &v) || !v)
		return 0;
	/* A YAML parser may type a plain scalar like `1` or `true`; the
	 * text form is what the field means either way. */
	if (json_object_is_type(v, json_type_int) ||
	    json_object_is_type(v, json_type_boolean) ||
	    json_object_is_type(v, json_type_double)) {
		*out = json_object_get_string(v);
		return 1;
	}
	ret = get_field(c, obj, prefix, key, json_type_string, &v);
	if (ret > 0)
		*out = json_object_get_string(v);
	return ret;
}

static int copy_string(const struct cf_ctx *c, struct json_object *obj,
		       const char *prefix, const char *key, char *dst,
		       size_t len)
{
	const char *s;
	int ret = get_string(c, obj, prefix, key, &s);

	if (ret <= 0)
		return ret;
	if (strlen(s) >= len) {
		kpx_err("%s: %s%s is too long (%zu bytes, max %zu)", c->path,
			prefix, key, strlen(s), len - 1);
		return -EINVAL;
	}
	memcpy(dst, s, strlen(s) + 1);
	return 1;
}

static int get_bool(const struct cf_ctx *c, struct json_object *obj,
		    const char *prefix, const char *key, bool *out)
{
	struct json_object *v;

	if (!obj || !json_object_object_get_ex(obj, key, &v) || !v)
		return 0;
	if (json_object_is_type(v, json_type_boolean)) {
		*out = json_object_get_boolean(v);
		return 1;
	}
	if (json_object_is_type(v, json_type_string)) {
		const char *s = json_object_get_string(v);

		if (!strcasecmp(s, "true") || !strcasecmp(s, "false")) {
			*out = !strcasecmp(s, "true");
			return 1;
		}
	}
	kpx_err("%s: %s%s must be true or false, not '%s'", c->path, prefix,
		key, json_object_get_string(v));
	return -EINVAL;
}

/* 1 with *ms set when present and non-zero; 0 (unset) for absent or a zero
 * duration, which kube-proxy's defaulting also treats as "use default". */
static int get_duration(const struct cf_ctx *c, struct json_object *obj,
			const char *prefix, const char *key, uint64_t *ms)
{
	const char *s;
	uint64_t v = 0;
	int ret = get_string(c, obj, prefix, key, &s);

	if (ret <= 0)
		return ret;
	if (!*s || !strcmp(s, "0"))
		return 0;
	ret = kpx_duration_parse(s, &v);
	if (ret < 0) {
		kpx_err("%s: %s%s: invalid duration '%s'%s", c->path, prefix,
			key, s,
			ret == -ENOSYS ? " (duration parsing not built in)" :
					 " (want e.g. 1s, 500ms, 1h30m)");
		return ret == -ENOSYS ? ret : -EINVAL;
	}
	if (!v)
		return 0;
	*ms = v;
	return 1;
}

/* A list of strings, or one comma-separated string (as on the command
 * line); calls fn for each non-empty item. */
static int for_each_item(const struct cf_ctx *c, struct json_object *obj,
			 const char *prefix, const char *key,
			 int (*fn)(const struct cf_ctx *c, const char *item,
				   void *arg),
			 void *arg)
{
	struct json_object *v;
	char buf[1024], *save = NULL, *tok;
	size_t i;
	int ret;

	if (!obj || !json_object_object_get_ex(obj, key, &v) || !v)
		return 0;
	if (json_object_is_type(v, json_type_array)) {
		for (i = 0; i < json_object_array_length(v); i++) {
			struct json_object *it = json_object_array_get_idx(v, i);

			if (!json_object_is_type(it, json_type_string)) {
				kpx_err("%s: %s%s[%zu] must be a string",
					c->path, prefix, key, i);
				return -EINVAL;
			}
			ret = fn(c, json_object_get_string(it), arg);
			if (ret < 0)
				return ret;
		}
		return 1;
	}
	if (!json_object_is_type(v, json_type_string)) {
		kpx_err("%s: %s%s must be a list of strings", c->path, prefix,
			key);
		return -EINVAL;
	}
	if (snprintf(buf, sizeof(buf), "%s", json_object_get_string(v)) >=
	    (int)sizeof(buf)) {
		kpx_err("%s: %s%s is too long", c->path, prefix, key);
		return -EINVAL;
	}
	for (tok = strtok_r(buf, ", ", &save); tok;
	     tok = strtok_r(NULL, ", ", &save)) {
		ret = fn(c, tok, arg);
		if (ret < 0)
			return ret;
	}
	return 1;
}

struct cidr_acc {
	const char *field;
	struct kpx_cidr *out;
	size_t max, n;
	bool allow_primary, seen_primary;
};

static int add_cidr(const struct cf_ctx *c, const char *item, void *arg)
{
	struct cidr_acc *a = arg;

	if (!*item)
		return 0;
	if (a->allow_primary && !strcmp(item, "primary")) {
		a->seen_primary = true;
		return 0;
	}
	if (a->n >= a->max) {
		kpx_err("%s: %s: too many CIDRs (max %zu)", c->path, a->field,
			a->max);
		return -EINVAL;
	}
	if (kpx_cidr_parse(item, &a->out[a->n]) < 0) {
		struct kpx_addr ip;

		/* A bare address means that one address, as on the CLI. */
		if (kpx_addr_parse(item, &ip) < 0) {
			kpx_err("%s: %s: invalid CIDR '%s'", c->path, a->field,
				item);
			return -EINVAL;
		}
		a->out[a->n].addr = ip;
		a->out[a->n].prefix = ip.family == AF_INET ? 32 : 128;
	}
	a->n++;
	return 0;
}

struct dev_acc {
	char (*out)[KPX_IFNAME_MAX];
	size_t n;
};

static int add_device(const struct cf_ctx *c, const char *item, void *arg)
{
	struct dev_acc *a = arg;

	if (!*item)
		return 0;
	if (a->n >= KPX_MAX_DEVICES || strlen(item) >= KPX_IFNAME_MAX) {
		kpx_err("%s: kpx.devices: '%s': %s", c->path, item,
			a->n >= KPX_MAX_DEVICES ? "too many devices" :
						  "name too long");
		return -EINVAL;
	}
	snprintf(a->out[a->n++], KPX_IFNAME_MAX, "%s", item);
	return 0;
}

/* Maps s to one of names[] (NULL-terminated) -> values[]. */
static int pick(const struct cf_ctx *c, const char *field, const char *s,
		const char *const *names, const int *values, int *out)
{
	size_t i;

	for (i = 0; names[i]; i++) {
		if (!strcmp(names[i], s)) {
			*out = values[i];
			return 0;
		}
	}
	kpx_err("%s: %s: invalid value '%s'", c->path, field, s);
	return -EINVAL;
}

static int load_mode(const struct cf_ctx *c, struct json_object *root)
{
	const char *mode;
	int ret = get_string(c, root, "", "mode", &mode);

	if (ret < 0)
		return ret;
	if (ret == 0 || !*mode) {
		/* kube-proxy's default (iptables); kubeadm writes "". */
		kpx_info("%s: mode \"\" (kube-proxy's default): kpx uses its "
			 "bpf backend where the kernel supports it, else nft",
			 c->path);
		return ret;
	}
	if (!strcmp(mode, "nftables")) {
		kpx_info("%s: mode nftables: kpx's nft backend", c->path);
		c->cfg->backend = KPX_BACKEND_NFT;
	} else if (!strcmp(mode, "ebpf") || !strcmp(mode, "bpf") ||
		   !strcmp(mode, "kpx")) {
		c->cfg->backend = KPX_BACKEND_BPF;
	} else if (!strcmp(mode, "iptables") || !strcmp(mode, "ipvs") ||
		   !strcmp(mode, "kernelspace")) {
		/* An unchanged kube-proxy ConfigMap says this; kpx has no such
		 * datapath, and refusing would make migration harder. */
		kpx_warn("%s: mode \"%s\" is a kube-proxy mode kpx does not "
			 "have; using the default backend (bpf where the "
			 "kernel supports it, else nft)",
			 c->path, mode);
		c->cfg->backend = KPX_BACKEND_AUTO;
	} else {
		kpx_err("%s: mode: invalid value '%s' (want nftables, ebpf, "
			"or a kube-proxy mode)",
			c->path, mode);
		return -EINVAL;
	}
	return 1;
}

/*
 * syncPeriod/minSyncPeriod: the top-level fields (newer kube-proxy) win,
 * then the section of the configured mode, then the other one; the first
 * non-zero value is used.
 */
static int load_sync(const struct cf_ctx *c, struct json_object *root,
		     struct json_object *ipt, struct json_object *nft)
{
	static const char *const keys[2] = { "syncPeriod", "minSyncPeriod" };
	uint64_t *dst[2] = { &c->cfg->sync_ms, &c->cfg->min_sync_ms };
	bool nft_first = c->cfg->backend == KPX_BACKEND_NFT;
	struct {
		struct json_object *obj;
		const char *prefix;
	} order[3] = {
		{ root, "" },
		{ nft_first ? nft : ipt, nft_first ? "nftables." : "iptables." },
		{ nft_first ? ipt : nft, nft_first ? "iptables." : "nftables." },
	};
	int i, j, ret;

	for (i = 0; i < 2; i++) {
		bool set = false;

		/* Every present value is parsed, so a typo is reported even
		 * where another section wins. */
		for (j = 0; j < 3; j++) {
			uint64_t ms;

			ret = get_duration(c, order[j].obj, order[j].prefix,
					   keys[i], &ms);
			if (ret < 0)
				return ret;
			if (ret > 0 && !set) {
				*dst[i] = ms;
				set = true;
			}
		}
		if (set && dst[i] == &c->cfg->min_sync_ms)
			c->cfg->min_sync_set = true;
	}
	return 0;
}

static int load_section_masq(const struct cf_ctx *c, struct json_object *sec,
			     const char *prefix)
{
	bool b = false;
	int ret = get_bool(c, sec, prefix, "masqueradeAll", &b);

	if (ret > 0 && b)
		c->cfg->masquerade_all = true;
	return ret < 0 ? ret : 0;
}

static int load_iptables_like(const struct cf_ctx *c, struct json_object *root,
			      const char *key, struct json_object **out)
{
	static const char *const known[] = { "masqueradeAll", "masqueradeBit",
					     "localhostNodePorts", "syncPeriod",
					     "minSyncPeriod", NULL };
	char prefix[32];
	int ret = get_field(c, root, "", key, json_type_object, out);

	if (ret <= 0)
		return ret;
	snprintf(prefix, sizeof(prefix), "%s.", key);
	warn_unknown(c, *out, prefix, known);
	return load_section_masq(c, *out, prefix);
}

static int load_conntrack(const struct cf_ctx *c, struct json_object *ct,
			  const char *prefix)
{
	static const char *const known[] = {
		"maxPerCore",	       "min",		 "tcpEstablishedTimeout",
		"tcpCloseWaitTimeout", "tcpBeLiberal",	 "udpTimeout",
		"udpStreamTimeout",    NULL,
	};
	struct {
		const char *key;
		uint32_t *dst;
	} map[] = {
		{ "tcpEstablishedTimeout", &c->cfg->ct_tcp_timeout },
		{ "tcpCloseWaitTimeout", &c->cfg->ct_tcp_close_timeout },
		{ "udpTimeout", &c->cfg->ct_udp_timeout },
	};
	size_t i;
	int ret;

	if (!ct)
		return 0;
	warn_unknown(c, ct, prefix, known);
	/* maxPerCore/min/tcpBeLiberal tune the host's nf_conntrack, which
	 * kpx leaves to the node's owner; the bpf datapath has its own
	 * table sized by --bpf-ct-max. */
	for (i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		uint64_t ms;

		ret = get_duration(c, ct, prefix, map[i].key, &ms);
		if (ret < 0)
			return ret;
		if (ret > 0) {
			uint64_t s = (ms + 999) / 1000;

			*map[i].dst = s > UINT32_MAX ? UINT32_MAX : (uint32_t)s;
		}
	}
	return 0;
}

static int load_client(const struct cf_ctx *c, struct json_object *root)
{
	static const char *const known[] = { "kubeconfig", "acceptContentTypes",
					     "contentType", "qps", "burst",
					     NULL };
	struct json_object *cc;
	int ret = get_field(c, root, "", "clientConnection", json_type_object,
			    &cc);

	if (ret <= 0)
		return ret;
	warn_unknown(c, cc, "clientConnection.", known);
	ret = copy_string(c, cc, "clientConnection.", "kubeconfig",
			  c->cfg->kubeconfig, sizeof(c->cfg->kubeconfig));
	if (ret > 0 && c->cfg->kubeconfig[0])
		c->cfg->kubeconfig_from_file = true;
	return ret < 0 ? ret : 0;
}

static int load_nodeport_addresses(const struct cf_ctx *c,
				   struct json_object *root)
{
	struct cidr_acc a = {
		.field = "nodePortAddresses",
		.out = c->cfg->nodeport_cidrs,
		.max = sizeof(c->cfg->nodeport_cidrs) /
		       sizeof(c->cfg->nodeport_cidrs[0]),
		.allow_primary = true,
	};
	int ret = for_each_item(c, root, "", "nodePortAddresses", add_cidr, &a);

	if (ret <= 0)
		return ret;
	/* kube-proxy rejects the mix too: "primary" means only those. */
	if (a.seen_primary && a.n) {
		kpx_err("%s: nodePortAddresses: \"primary\" cannot be "
			"combined with CIDRs",
			c->path);
		return -EINVAL;
	}
	c->cfg->n_nodeport_cidrs = a.n;
	return 0;
}

static int load_cluster_cidr(const struct cf_ctx *c, struct json_object *root)
{
	struct cidr_acc a = {
		.field = "clusterCIDR",
		.out = c->cfg->cluster_cidrs,
		.max = sizeof(c->cfg->cluster_cidrs) /
		       sizeof(c->cfg->cluster_cidrs[0]),
	};
	int ret = for_each_item(c, root, "", "clusterCIDR", add_cidr, &a);

	if (ret <= 0)
		return ret;
	c->cfg->n_cluster_cidrs = a.n;
	return 0;
}

static int load_kpx(const struct cf_ctx *c, struct json_object *root)
{
	static const char *const known[] = {
		"backend",    "devices",     "nodePortAccel", "nodePortMode",
		"lbAlgorithm", "cgroupPath", "bpfRoot",	      "stateSocket",
		NULL,
	};
	static const char *const backends[] = { "auto", "bpf", "ebpf", "nft",
						"nftables", NULL };
	static const int backend_v[] = { KPX_BACKEND_AUTO, KPX_BACKEND_BPF,
					 KPX_BACKEND_BPF, KPX_BACKEND_NFT,
					 KPX_BACKEND_NFT };
	static const char *const accels[] = { "none", "xdp", NULL };
	static const int accel_v[] = { KPX_ACCEL_NONE, KPX_ACCEL_XDP };
	static const char *const npmodes[] = { "snat", "dsr", NULL };
	static const int npmode_v[] = { KPX_NP_SNAT, KPX_NP_DSR };
	static const char *const algs[] = { "random", "maglev", NULL };
	static const int alg_v[] = { KPX_LB_RANDOM, KPX_LB_MAGLEV };
	struct kpx_config *cfg = c->cfg;
	struct json_object *k;
	struct dev_acc devs = { .out = cfg->devices };
	const char *s;
	int ret, v;

	ret = get_field(c, root, "", "kpx", json_type_object, &k);
	if (ret <= 0)
		return ret;
	warn_unknown(c, k, "kpx.", known);

	if ((ret = get_string(c, k, "kpx.", "backend", &s)) < 0)
		return ret;
	if (ret > 0) {
		/* kpx.backend is more specific than mode, so it wins. */
		if (pick(c, "kpx.backend", s, backends, backend_v, &v) < 0)
			return -EINVAL;
		cfg->backend = v;
	}
	if ((ret = get_string(c, k, "kpx.", "nodePortAccel", &s)) < 0)
		return ret;
	if (ret > 0) {
		if (pick(c, "kpx.nodePortAccel", s, accels, accel_v, &v) < 0)
			return -EINVAL;
		cfg->nodeport_accel = v;
	}
	if ((ret = get_string(c, k, "kpx.", "nodePortMode", &s)) < 0)
		return ret;
	if (ret > 0) {
		if (pick(c, "kpx.nodePortMode", s, npmodes, npmode_v, &v) < 0)
			return -EINVAL;
		cfg->nodeport_mode = v;
	}
	if ((ret = get_string(c, k, "kpx.", "lbAlgorithm", &s)) < 0)
		return ret;
	if (ret > 0) {
		if (pick(c, "kpx.lbAlgorithm", s, algs, alg_v, &v) < 0)
			return -EINVAL;
		cfg->lb_algorithm = v;
	}
	ret = for_each_item(c, k, "kpx.", "devices", add_device, &devs);
	if (ret < 0)
		return ret;
	if (ret > 0)
		cfg->n_devices = devs.n;
	if ((ret = copy_string(c, k, "kpx.", "cgroupPath", cfg->cgroup_path,
			       sizeof(cfg->cgroup_path))) < 0 ||
	    (ret = copy_string(c, k, "kpx.", "bpfRoot", cfg->bpf_root,
			       sizeof(cfg->bpf_root))) < 0 ||
	    (ret = copy_string(c, k, "kpx.", "stateSocket", cfg->state_socket,
			       sizeof(cfg->state_socket))) < 0)
		return ret;
	return 0;
}

/* Fields that only change things kpx does not do: warn when set to
 * anything but their "off" value. */
static void load_unsupported(const struct cf_ctx *c, struct json_object *root)
{
	struct json_object *v;
	const char *s;

	if (get_string(c, root, "", "detectLocalMode", &s) > 0 && *s &&
	    strcmp(s, "ClusterCIDR"))
		kpx_warn("%s: detectLocalMode \"%s\" is not supported; kpx "
			 "decides locality by clusterCIDR",
			 c->path, s);
	if (json_object_object_get_ex(root, "featureGates", &v) &&
	    json_object_is_type(v, json_type_object) &&
	    json_object_object_length(v) > 0)
		kpx_warn("%s: featureGates are kube-proxy's and ignored by kpx",
			 c->path);
	if (json_object_object_get_ex(root, "ipvs", &v) &&
	    json_object_is_type(v, json_type_object))
		kpx_dbg(1, "%s: ipvs section ignored", c->path);
}

/*
 * bindAddress, healthzBindAddress, metricsBindAddress with kube-proxy's
 * defaulting (pkg/proxy/apis/config/v1alpha1/defaults.go): an empty or
 * absent server address is the default one (0.0.0.0:10256 and
 * 127.0.0.1:10249, or [::]:10256 and [::1]:10249 when bindAddress is
 * IPv6), never "off" -- kubeadm writes "" for both, and its DaemonSet
 * probes 10256. A bare IP gets the default port. A specific bindAddress
 * is kube-proxy's "node's primary IP": kpx's node IP.
 */
static int load_bind_addresses(const struct cf_ctx *c, struct json_object *root)
{
	static const struct {
		const char *key;
		size_t off;
		const char *v4, *v6;
		unsigned int port;
	} srv[] = {
		{ "healthzBindAddress", offsetof(struct kpx_config, healthz_addr),
		  "0.0.0.0", "[::]", 10256 },
		{ "metricsBindAddress", offsetof(struct kpx_config, metrics_addr),
		  "127.0.0.1", "[::1]", 10249 },
	};
	struct kpx_config *cfg = c->cfg;
	struct kpx_addr bind = { .family = AF_INET };
	const char *s;
	int ret;

	if ((ret = get_string(c, root, "", "bindAddress", &s)) < 0)
		return ret;
	if (ret > 0 && *s) {
		if (kpx_addr_parse(s, &bind) < 0) {
			kpx_err("%s: bindAddress: invalid IP '%s'", c->path, s);
			return -EINVAL;
		}
		if ((bind.family == AF_INET && bind.v4.s_addr) ||
		    (bind.family == AF_INET6 &&
		     !IN6_IS_ADDR_UNSPECIFIED(&bind.v6))) {
			cfg->node_ips[0] = bind;
			cfg->n_node_ips = 1;
		}
	}
	for (size_t i = 0; i < sizeof(srv) / sizeof(srv[0]); i++) {
		char *dst = (char *)cfg + srv[i].off;
		size_t len = sizeof(cfg->healthz_addr);

		ret = copy_string(c, root, "", srv[i].key, dst, len);
		if (ret < 0)
			return ret;
		if (ret == 0 || !dst[0])
			snprintf(dst, len, "%s:%u",
				 bind.family == AF_INET6 ? srv[i].v6 : srv[i].v4,
				 srv[i].port);
		else if (kpx_addr_append_port(dst, len, srv[i].port) < 0)
			return -EINVAL;
	}
	return 0;
}

static int load_root(const struct cf_ctx *c, struct json_object *root)
{
	static const char *const known[] = {
		/* mapped */
		"apiVersion", "kind", "clusterCIDR", "nodePortAddresses",
		"healthzBindAddress", "metricsBindAddress", "mode",
		"hostnameOverride", "clientConnection", "iptables", "nftables",
		"syncPeriod", "minSyncPeriod", "conntrack", "linux", "logging",
		"kpx",
		/* kube-proxy's, no meaning for kpx (logged at -v 1) */
		"bindAddress", "bindAddressHardFail", "enableProfiling",
		"showHiddenMetricsForVersion", "ipvs", "winkernel", "windows",
		"detectLocalMode", "detectLocal", "oomScoreAdj",
		"configSyncPeriod", "portRange", "featureGates",
		"windowsRunAsService", "udpIdleTimeout", NULL,
	};
	static const char *const linux_known[] = { "masqueradeAll",
						   "conntrack", "oomScoreAdj",
						   NULL };
	static const char *const log_known[] = { "format", "flushFrequency",
						 "verbosity", "vmodule",
						 "options", NULL };
	struct kpx_config *cfg = c->cfg;
	struct json_object *ipt = NULL, *nft = NULL, *lin = NULL, *ct = NULL,
			   *logging = NULL;
	const char *s;
	int ret;

	if ((ret = get_string(c, root, "", "apiVersion", &s)) < 0)
		return ret;
	if (ret == 0 || strcmp(s, KUBE_PROXY_API)) {
		kpx_err("%s: apiVersion must be %s, not '%s'", c->path,
			KUBE_PROXY_API, ret ? s : "");
		return -EINVAL;
	}
	if ((ret = get_string(c, root, "", "kind", &s)) < 0)
		return ret;
	if (ret == 0 || strcmp(s, KUBE_PROXY_KIND)) {
		kpx_err("%s: kind must be %s, not '%s'", c->path,
			KUBE_PROXY_KIND, ret ? s : "");
		return -EINVAL;
	}
	warn_unknown(c, root, "", known);

	/* mode first: it decides which section's sync periods win. */
	if ((ret = load_mode(c, root)) < 0 ||
	    (ret = load_iptables_like(c, root, "iptables", &ipt)) < 0 ||
	    (ret = load_iptables_like(c, root, "nftables", &nft)) < 0 ||
	    (ret = get_field(c, root, "", "linux", json_type_object, &lin)) < 0)
		return ret;
	if (lin) {
		warn_unknown(c, lin, "linux.", linux_known);
		if ((ret = load_section_masq(c, lin, "linux.")) < 0)
			return ret;
	}
	if ((ret = load_kpx(c, root)) < 0 ||
	    (ret = load_sync(c, root, ipt, nft)) < 0 ||
	    (ret = load_cluster_cidr(c, root)) < 0 ||
	    (ret = load_nodeport_addresses(c, root)) < 0 ||
	    (ret = load_client(c, root)) < 0)
		return ret;

	/* newer kube-proxy moved conntrack under linux:; the top-level one
	 * is read last so it wins where both exist. */
	if (lin && (ret = get_field(c, lin, "linux.", "conntrack",
				    json_type_object, &ct)) < 0)
		return ret;
	if ((ret = load_conntrack(c, ct, "linux.conntrack.")) < 0)
		return ret;
	if ((ret = get_field(c, root, "", "conntrack", json_type_object,
			     &ct)) < 0 ||
	    (ret = load_conntrack(c, ct, "conntrack.")) < 0)
		return ret;

	if ((ret = load_bind_addresses(c, root)) < 0)
		return ret;
	/* kube-proxy's own default; an empty value means "not given". */
	if ((ret = get_string(c, root, "", "hostnameOverride", &s)) < 0)
		return ret;
	if (ret > 0 && *s &&
	    (ret = copy_string(c, root, "", "hostnameOverride", cfg->hostname,
			       sizeof(cfg->hostname))) < 0)
		return ret;

	if ((ret = get_field(c, root, "", "logging", json_type_object,
			     &logging)) < 0)
		return ret;
	if (logging) {
		struct json_object *v;

		warn_unknown(c, logging, "logging.", log_known);
		if (json_object_object_get_ex(logging, "verbosity", &v) &&
		    (json_object_is_type(v, json_type_int) ||
		     json_object_is_type(v, json_type_string))) {
			int n = json_object_get_int(v);

			if (n > cfg->verbosity)
				cfg->verbosity = n;
		}
	}
	load_unsupported(c, root);
	return 0;
}

static int read_file(const char *path, char **out, size_t *len)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL;
	size_t n = 0;
	int ret = 0;

	if (!f) {
		ret = -errno;
		kpx_err("%s: cannot open: %s", path, strerror(errno));
		return ret;
	}
	buf = malloc(KPX_CONFIG_MAX_BYTES + 1);
	if (!buf) {
		ret = -ENOMEM;
		goto out;
	}
	n = fread(buf, 1, KPX_CONFIG_MAX_BYTES + 1, f);
	if (ferror(f)) {
		ret = -EIO;
		kpx_err("%s: read error", path);
		goto out;
	}
	if (n > KPX_CONFIG_MAX_BYTES) {
		ret = -EFBIG;
		kpx_err("%s: larger than %d bytes", path, KPX_CONFIG_MAX_BYTES);
		goto out;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	buf = NULL;
out:
	free(buf);
	fclose(f);
	return ret;
}

/* One document (object) from YAML or JSON text; *out is owned by caller. */
static int parse_doc(const char *path, const char *buf, size_t len,
		     struct json_object **out)
{
	struct json_object *docs = NULL;
	char err[256] = "";
	size_t i = 0;
	int ret;

	while (i < len && strchr(" \t\r\n", buf[i]))
		i++;
	/* JSON straight through json-c: its errors point at the offset. */
	if (i < len && buf[i] == '{') {
		struct json_tokener *tok = json_tokener_new();
		enum json_tokener_error jerr;

		if (!tok)
			return -ENOMEM;
		*out = json_tokener_parse_ex(tok, buf, (int)len);
		jerr = json_tokener_get_error(tok);
		if (!*out || jerr != json_tokener_success) {
			kpx_err("%s: invalid JSON at byte %zu: %s", path,
				json_tokener_get_parse_end(tok),
				json_tokener_error_desc(jerr == json_tokener_success ?
								json_tokener_continue :
								jerr));
			json_object_put(*out);
			*out = NULL;
			json_tokener_free(tok);
			return -EINVAL;
		}
		json_tokener_free(tok);
		goto check;
	}
	ret = kpx_yaml_to_json(buf, len, &docs, err, sizeof(err));
	if (ret < 0) {
		kpx_err("%s: %s", path, err[0] ? err : strerror(-ret));
		return ret;
	}
	if (!json_object_is_type(docs, json_type_array) ||
	    json_object_array_length(docs) != 1) {
		kpx_err("%s: want exactly one YAML document, found %zu", path,
			json_object_is_type(docs, json_type_array) ?
				json_object_array_length(docs) :
				(size_t)0);
		json_object_put(docs);
		return -EINVAL;
	}
	*out = json_object_get(json_object_array_get_idx(docs, 0));
	json_object_put(docs);
check:
	if (!json_object_is_type(*out, json_type_object)) {
		kpx_err("%s: the configuration must be a mapping", path);
		json_object_put(*out);
		*out = NULL;
		return -EINVAL;
	}
	return 0;
}

/*
 * A ConfigMap manifest holding the configuration: take the embedded text
 * (kubeadm's key is config.conf, manifests/kpx.yaml's config.yaml).
 */
static int unwrap_configmap(const char *path, struct json_object **root)
{
	static const char *const keys[] = { "config.yaml", "config.conf",
					    "config.yml", "config.json" };
	struct json_object *data, *v, *inner = NULL;
	size_t i;
	int ret;

	if (!json_object_object_get_ex(*root, "kind", &v) ||
	    !json_object_is_type(v, json_type_string) ||
	    strcmp(json_object_get_string(v), "ConfigMap"))
		return 0;
	if (!json_object_object_get_ex(*root, "data", &data) ||
	    !json_object_is_type(data, json_type_object)) {
		kpx_err("%s: ConfigMap has no data", path);
		return -EINVAL;
	}
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		if (json_object_object_get_ex(data, keys[i], &v) &&
		    json_object_is_type(v, json_type_string))
			break;
	}
	if (i == sizeof(keys) / sizeof(keys[0])) {
		kpx_err("%s: ConfigMap has none of data[config.yaml], "
			"data[config.conf]",
			path);
		return -EINVAL;
	}
	kpx_dbg(1, "%s: using ConfigMap data[%s]", path, keys[i]);
	ret = parse_doc(path, json_object_get_string(v),
			(size_t)json_object_get_string_len(v), &inner);
	if (ret < 0)
		return ret;
	json_object_put(*root);
	*root = inner;
	return 0;
}

uint64_t kpx_config_hash_bytes(const char *buf, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)buf[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

int kpx_config_file_hash(const char *path, uint64_t *out)
{
	char *buf = NULL;
	size_t len = 0;
	int ret = read_file(path, &buf, &len);

	if (ret < 0)
		return ret;
	*out = kpx_config_hash_bytes(buf, len);
	free(buf);
	return 0;
}

int kpx_config_load_file(struct kpx_config *cfg, const char *path)
{
	struct cf_ctx c = { .path = path, .cfg = cfg };
	struct json_object *root = NULL;
	char *buf = NULL;
	size_t len = 0;
	int ret;

	ret = read_file(path, &buf, &len);
	if (ret < 0)
		return ret;
	cfg->config_hash = kpx_config_hash_bytes(buf, len);
	ret = parse_doc(path, buf, len, &root);
	if (ret < 0)
		goto out;
	ret = unwrap_configmap(path, &root);
	if (ret < 0)
		goto out;
	ret = load_root(&c, root);
	if (ret < 0)
		goto out;
	if (cfg->config_file != path)
		snprintf(cfg->config_file, sizeof(cfg->config_file), "%s",
			 path);
out:
	json_object_put(root);
	free(buf);
	return ret;
}
