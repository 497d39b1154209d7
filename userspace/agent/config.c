// SPDX-License-Identifier: Apache-2.0
#include "agent/config.h"

#include <errno.h>
#include <getopt.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/backend.h"
#include "common/log.h"
#include "plan/plan.h"

void kpx_config_defaults(struct kpx_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->backend = KPX_BACKEND_AUTO;
	cfg->min_sync_ms = 1000;
	cfg->sync_ms = 30000;
	strcpy(cfg->healthz_addr, "0.0.0.0:10256");
	strcpy(cfg->metrics_addr, "127.0.0.1:10249");
	strcpy(cfg->bpf_root, "/sys/fs/bpf/kpx");
	strcpy(cfg->state_socket, KPX_STATE_SOCKET_DEFAULT);
	/* Same values as KPX_DEF_* in bpf/map_writer.h: 30,000 dual-stack
	 * services x 10 endpoints fit (service maps preallocate nothing, so
	 * unused capacity costs only hash buckets). */
	cfg->bpf_services_max = 262144;
	cfg->bpf_backends_max = 1048576;
	cfg->bpf_ct_max = 262144;
	cfg->bpf_affinity_max = 65536;
	cfg->maglev_table_size = 16381;
	cfg->maglev_seed = 0x6b7078; /* "kpx": identical on every node */
	cfg->snat_port_min = 32768;
	cfg->snat_port_max = 60999;
	/* kube-proxy's conntrack defaults for established TCP and UDP. */
	cfg->ct_tcp_timeout = 86400;
	cfg->ct_tcp_close_timeout = 10;
	cfg->ct_udp_timeout = 30;
}

int kpx_duration_parse(const char *s, uint64_t *ms)
{
	double total = 0;
	const char *p = s;

	if (!s || !*s)
		return -EINVAL;
	if (!strcmp(s, "0")) {
		*ms = 0;
		return 0;
	}
	while (*p) {
		char *end;
		double v = strtod(p, &end);
		double unit;

		if (end == p || v < 0)
			return -EINVAL;
		p = end;
		if (!strncmp(p, "ms", 2)) {
			unit = 1;
			p += 2;
		} else if (!strncmp(p, "us", 2)) {
			unit = 0.001;
			p += 2;
		} else if (*p == 's') {
			unit = 1000;
			p++;
		} else if (*p == 'm') {
			unit = 60000;
			p++;
		} else if (*p == 'h') {
			unit = 3600000;
			p++;
		} else {
			return -EINVAL;
		}
		total += v * unit;
	}
	*ms = (uint64_t)total;
	return 0;
}

static int parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

static int parse_node_ips(struct kpx_config *cfg, const char *s)
{
	struct kpx_cidr cidrs[2];
	size_t n;

	if (kpx_cidr_list_parse(s, cidrs, 2, &n) || n == 0)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		int bits = cidrs[i].addr.family == AF_INET ? 32 : 128;

		if (cidrs[i].prefix != bits)
			return -EINVAL;
		cfg->node_ips[i] = cidrs[i].addr;
	}
	if (n == 2 && cfg->node_ips[0].family == cfg->node_ips[1].family)
		return -EINVAL;
	cfg->n_node_ips = n;
	return 0;
}

static int parse_devices(struct kpx_config *cfg, const char *s)
{
	char buf[256];
	char *save = NULL, *tok;

	if (strlen(s) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, s);
	cfg->n_devices = 0;
	for (tok = strtok_r(buf, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		if (cfg->n_devices >= KPX_MAX_DEVICES ||
		    strlen(tok) >= KPX_IFNAME_MAX)
			return -EINVAL;
		strcpy(cfg->devices[cfg->n_devices++], tok);
	}
	return cfg->n_devices ? 0 : -EINVAL;
}

static int copy_str(char *dst, size_t len, const char *src)
{
	if (strlen(src) >= len)
		return -ENAMETOOLONG;
	strcpy(dst, src);
	return 0;
}

enum {
	OPT_KUBECONFIG = 256,
	OPT_MASTER,
	OPT_MANIFESTS,
	OPT_BACKEND,
	OPT_HOSTNAME,
	OPT_NODE_IP,
	OPT_CLUSTER_CIDR,
	OPT_NODEPORT_ADDRESSES,
	OPT_DEVICES,
	OPT_NODEPORT_ACCEL,
	OPT_NODEPORT_MODE,
	OPT_LB_ALGORITHM,
	OPT_MASQUERADE_ALL,
	OPT_MIN_SYNC,
	OPT_SYNC,
	OPT_HEALTHZ,
	OPT_METRICS,
	OPT_CGROUP,
	OPT_BPF_ROOT,
	OPT_STATE_SOCKET,
	OPT_CONFIG,
	OPT_MAGLEV_SIZE,
	OPT_MAGLEV_SEED,
	OPT_SNAT_RANGE,
	OPT_SERVICES_MAX,
	OPT_BACKENDS_MAX,
	OPT_CT_MAX,
	OPT_AFFINITY_MAX,
};

static const struct option run_options[] = {
	{ "kubeconfig", required_argument, NULL, OPT_KUBECONFIG },
	{ "master", required_argument, NULL, OPT_MASTER },
	{ "manifests", required_argument, NULL, OPT_MANIFESTS },
	{ "backend", required_argument, NULL, OPT_BACKEND },
	{ "proxy-mode", required_argument, NULL, OPT_BACKEND },
	{ "hostname-override", required_argument, NULL, OPT_HOSTNAME },
	{ "node-ip", required_argument, NULL, OPT_NODE_IP },
	{ "cluster-cidr", required_argument, NULL, OPT_CLUSTER_CIDR },
	{ "nodeport-addresses", required_argument, NULL,
	  OPT_NODEPORT_ADDRESSES },
	{ "devices", required_argument, NULL, OPT_DEVICES },
	{ "nodeport-accel", required_argument, NULL, OPT_NODEPORT_ACCEL },
	{ "nodeport-mode", required_argument, NULL, OPT_NODEPORT_MODE },
	{ "lb-algorithm", required_argument, NULL, OPT_LB_ALGORITHM },
	{ "masquerade-all", optional_argument, NULL, OPT_MASQUERADE_ALL },
	{ "min-sync-period", required_argument, NULL, OPT_MIN_SYNC },
	{ "sync-period", required_argument, NULL, OPT_SYNC },
	{ "healthz-bind-address", required_argument, NULL, OPT_HEALTHZ },
	{ "metrics-bind-address", required_argument, NULL, OPT_METRICS },
	{ "cgroup-path", required_argument, NULL, OPT_CGROUP },
	{ "bpf-root", required_argument, NULL, OPT_BPF_ROOT },
	{ "state-socket", required_argument, NULL, OPT_STATE_SOCKET },
	{ "config", required_argument, NULL, OPT_CONFIG },
	{ "maglev-table-size", required_argument, NULL, OPT_MAGLEV_SIZE },
	{ "maglev-seed", required_argument, NULL, OPT_MAGLEV_SEED },
	{ "snat-port-range", required_argument, NULL, OPT_SNAT_RANGE },
	{ "bpf-services-max", required_argument, NULL, OPT_SERVICES_MAX },
	{ "bpf-backends-max", required_argument, NULL, OPT_BACKENDS_MAX },
	{ "bpf-ct-max", required_argument, NULL, OPT_CT_MAX },
	{ "bpf-affinity-max", required_argument, NULL, OPT_AFFINITY_MAX },
	{ "verbosity", required_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static void run_usage(FILE *f)
{
	fprintf(f,
		"Usage: kpx run [flags]\n"
		"\n"
		"Sources (one of):\n"
		"  --manifests DIR              read Services/EndpointSlices from DIR\n"
		"  --kubeconfig PATH            API server access (in-cluster when absent)\n"
		"  --master URL                 override the API server address\n"
		"Node:\n"
		"  --hostname-override NAME     this node's name (default: hostname)\n"
		"  --node-ip IP[,IP6]           node addresses (default: from devices)\n"
		"  --cluster-cidr CIDR[,CIDR]   pod CIDRs, for masquerade decisions\n"
		"  --nodeport-addresses CIDRs|primary  where NodePorts are served\n"
		"  --masquerade-all             masquerade all service traffic\n"
		"Datapath:\n"
		"  --backend bpf|nft            (alias --proxy-mode; default: bpf if supported)\n"
		"  --devices IF[,IF]            bpf: tc/XDP devices (default: default-route dev)\n"
		"  --nodeport-accel none|xdp    bpf: XDP acceleration\n"
		"  --nodeport-mode snat|dsr     bpf: remote backends for external traffic\n"
		"  --lb-algorithm random|maglev bpf: backend selection\n"
		"  --maglev-table-size N        prime, default 16381\n"
		"  --maglev-seed N              same seed on every node\n"
		"  --snat-port-range MIN-MAX    bpf: SNAT source ports (32768-60999)\n"
		"  --bpf-services-max N         bpf: service entries, one per frontend\n"
		"                               and scope (262144)\n"
		"  --bpf-backends-max N         bpf: distinct endpoint addr:port/proto\n"
		"                               (1048576)\n"
		"  --bpf-ct-max N               bpf: NodePort conntrack entries (262144)\n"
		"  --bpf-affinity-max N         bpf: ClientIP affinity entries (65536)\n"
		"  --cgroup-path PATH           bpf: cgroup v2 dir for socket hooks\n"
		"  --bpf-root PATH              bpf: pin directory (/sys/fs/bpf/kpx)\n"
		"Sync:\n"
		"  --min-sync-period DUR        coalescing (1s)\n"
		"  --sync-period DUR            periodic full resync (30s)\n"
		"Serving:\n"
		"  --healthz-bind-address ADDR  /healthz, /livez (0.0.0.0:10256; \"\" off)\n"
		"  --metrics-bind-address ADDR  /metrics (127.0.0.1:10249; \"\" off)\n"
		"  --state-socket PATH          for kpx status (" KPX_STATE_SOCKET_DEFAULT ")\n"
		"Other:\n"
		"  --config FILE                KubeProxyConfiguration; flags override it\n"
		"  -v N                         log verbosity\n");
}

static int parse_snat_range(struct kpx_config *cfg, const char *s)
{
	uint32_t lo, hi;
	char buf[32];
	char *dash;

	if (strlen(s) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, s);
	dash = strchr(buf, '-');
	if (!dash)
		return -EINVAL;
	*dash = '\0';
	if (parse_u32(buf, 1, 65535, &lo) || parse_u32(dash + 1, lo, 65535, &hi))
		return -EINVAL;
	cfg->snat_port_min = (uint16_t)lo;
	cfg->snat_port_max = (uint16_t)hi;
	return 0;
}

static int apply_option(struct kpx_config *cfg, int opt, const char *arg)
{
	switch (opt) {
	case OPT_KUBECONFIG:
		return copy_str(cfg->kubeconfig, sizeof(cfg->kubeconfig), arg);
	case OPT_MASTER:
		return copy_str(cfg->master, sizeof(cfg->master), arg);
	case OPT_MANIFESTS:
		return copy_str(cfg->manifests, sizeof(cfg->manifests), arg);
	case OPT_BACKEND:
		return kpx_backend_parse(arg, &cfg->backend);
	case OPT_HOSTNAME:
		return copy_str(cfg->hostname, sizeof(cfg->hostname), arg);
	case OPT_NODE_IP:
		return parse_node_ips(cfg, arg);
	case OPT_CLUSTER_CIDR:
		return kpx_cidr_list_parse(arg, cfg->cluster_cidrs, 8,
					   &cfg->n_cluster_cidrs);
	case OPT_NODEPORT_ADDRESSES:
		if (!strcmp(arg, "primary") || !*arg) {
			cfg->n_nodeport_cidrs = 0;
			return 0;
		}
		return kpx_cidr_list_parse(arg, cfg->nodeport_cidrs, 16,
					   &cfg->n_nodeport_cidrs);
	case OPT_DEVICES:
		return parse_devices(cfg, arg);
	case OPT_NODEPORT_ACCEL:
		if (!strcmp(arg, "none"))
			cfg->nodeport_accel = KPX_ACCEL_NONE;
		else if (!strcmp(arg, "xdp"))
			cfg->nodeport_accel = KPX_ACCEL_XDP;
		else
			return -EINVAL;
		return 0;
	case OPT_NODEPORT_MODE:
		if (!strcmp(arg, "snat"))
			cfg->nodeport_mode = KPX_NP_SNAT;
		else if (!strcmp(arg, "dsr"))
			cfg->nodeport_mode = KPX_NP_DSR;
		else
			return -EINVAL;
		return 0;
	case OPT_LB_ALGORITHM:
		if (!strcmp(arg, "random"))
			cfg->lb_algorithm = KPX_LB_RANDOM;
		else if (!strcmp(arg, "maglev"))
			cfg->lb_algorithm = KPX_LB_MAGLEV;
		else
			return -EINVAL;
		return 0;
	case OPT_MASQUERADE_ALL:
		cfg->masquerade_all = !arg || !strcmp(arg, "true");
		return 0;
	case OPT_MIN_SYNC:
		return kpx_duration_parse(arg, &cfg->min_sync_ms);
	case OPT_SYNC:
		if (kpx_duration_parse(arg, &cfg->sync_ms) || !cfg->sync_ms)
			return -EINVAL;
		return 0;
	case OPT_HEALTHZ:
		return copy_str(cfg->healthz_addr, sizeof(cfg->healthz_addr),
				arg);
	case OPT_METRICS:
		return copy_str(cfg->metrics_addr, sizeof(cfg->metrics_addr),
				arg);
	case OPT_CGROUP:
		return copy_str(cfg->cgroup_path, sizeof(cfg->cgroup_path), arg);
	case OPT_BPF_ROOT:
		return copy_str(cfg->bpf_root, sizeof(cfg->bpf_root), arg);
	case OPT_STATE_SOCKET:
		return copy_str(cfg->state_socket, sizeof(cfg->state_socket),
				arg);
	case OPT_CONFIG:
		return 0; /* loaded in the first pass */
	case OPT_MAGLEV_SIZE:
		return parse_u32(arg, 7, 131071, &cfg->maglev_table_size);
	case OPT_MAGLEV_SEED:
		return parse_u32(arg, 0, UINT32_MAX, &cfg->maglev_seed);
	case OPT_SNAT_RANGE:
		return parse_snat_range(cfg, arg);
	case OPT_SERVICES_MAX:
		return parse_u32(arg, 16, 1 << 24, &cfg->bpf_services_max);
	case OPT_BACKENDS_MAX:
		return parse_u32(arg, 16, 1 << 24, &cfg->bpf_backends_max);
	case OPT_CT_MAX:
		return parse_u32(arg, 64, 1 << 26, &cfg->bpf_ct_max);
	case OPT_AFFINITY_MAX:
		return parse_u32(arg, 16, 1 << 24, &cfg->bpf_affinity_max);
	case 'v': {
		uint32_t v;

		if (parse_u32(arg, 0, 10, &v))
			return -EINVAL;
		cfg->verbosity = (int)v;
		return 0;
	}
	default:
		return -EINVAL;
	}
}

static bool is_prime(uint32_t n)
{
	if (n < 2)
		return false;
	for (uint32_t d = 2; d * d <= n; d++)
		if (n % d == 0)
			return false;
	return true;
}

int kpx_config_parse_run(struct kpx_config *cfg, int argc, char **argv)
{
	int opt, err;

	/* First pass: only --config, so that flags override the file. */
	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "v:h", run_options, NULL)) != -1) {
		if (opt == 'h') {
			run_usage(stdout);
			return 1;
		}
		if (opt == OPT_CONFIG) {
			if (copy_str(cfg->config_file, sizeof(cfg->config_file),
				     optarg))
				return -EINVAL;
			err = kpx_config_load_file(cfg, optarg);
			if (err) {
				fprintf(stderr, "kpx: --config %s: %s\n",
					optarg, strerror(-err));
				return -EINVAL;
			}
		}
	}
	opterr = 1;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "v:h", run_options, NULL)) != -1) {
		if (opt == '?')
			return -EINVAL;
		err = apply_option(cfg, opt, optarg);
		if (err) {
			const char *name = "-v";

			/* The first name of the flag: --backend, not its
			 * alias --proxy-mode. */
			for (const struct option *o = run_options; o->name; o++)
				if (o->val == opt) {
					name = o->name;
					break;
				}
			fprintf(stderr, "kpx: invalid value '%s' for --%s\n",
				optarg ? optarg : "", name);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "kpx: unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
	if (!is_prime(cfg->maglev_table_size)) {
		fprintf(stderr, "kpx: --maglev-table-size %u is not a prime\n",
			cfg->maglev_table_size);
		return -EINVAL;
	}
	if (!cfg->hostname[0]) {
		const char *env = getenv("NODE_NAME");

		if (env && *env)
			copy_str(cfg->hostname, sizeof(cfg->hostname), env);
		else
			gethostname(cfg->hostname, sizeof(cfg->hostname) - 1);
	}
	return 0;
}

int kpx_backend_parse(const char *s, enum kpx_backend_kind *out)
{
	if (!strcmp(s, "bpf") || !strcmp(s, "ebpf"))
		*out = KPX_BACKEND_BPF;
	else if (!strcmp(s, "nft") || !strcmp(s, "nftables"))
		*out = KPX_BACKEND_NFT;
	else if (!strcmp(s, "auto") || !*s)
		*out = KPX_BACKEND_AUTO;
	else
		return -EINVAL;
	return 0;
}

const char *kpx_backend_name(enum kpx_backend_kind kind)
{
	switch (kind) {
	case KPX_BACKEND_BPF:
		return "bpf";
	case KPX_BACKEND_NFT:
		return "nft";
	default:
		return "auto";
	}
}

const char *kpx_cgroup2_mount(char *buf, size_t len)
{
	FILE *f = fopen("/proc/mounts", "r");
	char dev[256], dir[PATH_MAX], type[64];
	const char *found = NULL;

	if (!f)
		return NULL;
	while (fscanf(f, "%255s %4095s %63s %*s %*d %*d", dev, dir, type) == 3) {
		if (!strcmp(type, "cgroup2") && strlen(dir) < len) {
			strcpy(buf, dir);
			found = buf;
			break;
		}
	}
	fclose(f);
	return found;
}

/* Name of the device holding the default route of family, or "". */
static void default_route_dev(int family, char *dev, size_t len)
{
	char line[512], ifname[64];
	FILE *f;

	dev[0] = '\0';
	if (family == AF_INET) {
		unsigned long dst, mask;

		f = fopen("/proc/net/route", "r");
		if (!f)
			return;
		while (fgets(line, sizeof(line), f)) {
			if (sscanf(line, "%63s %lx %*x %*x %*d %*d %*d %lx",
				   ifname, &dst, &mask) == 3 &&
			    dst == 0 && mask == 0 && strlen(ifname) < len) {
				strcpy(dev, ifname);
				break;
			}
		}
	} else {
		char d[40];
		unsigned int plen;

		f = fopen("/proc/net/ipv6_route", "r");
		if (!f)
			return;
		while (fgets(line, sizeof(line), f)) {
			if (sscanf(line, "%32s %x %*s %*s %*s %*s %*s %*s %*s %63s",
				   d, &plen, ifname) == 3 &&
			    plen == 0 && strcmp(ifname, "lo") &&
			    strspn(d, "0") == 32 && strlen(ifname) < len) {
				strcpy(dev, ifname);
				break;
			}
		}
	}
	fclose(f);
}

static bool addr_is_global(const struct kpx_addr *a)
{
	if (a->family == AF_INET)
		return a->bytes[0] != 127;
	return !IN6_IS_ADDR_LOOPBACK(&a->v6) && !IN6_IS_ADDR_LINKLOCAL(&a->v6);
}

int kpx_plan_input_from_config(const struct kpx_config *cfg,
			       const struct kpx_node *node,
			       struct kpx_plan_input *in)
{
	const struct kpx_backend_ops *ops;
	struct ifaddrs *ifas = NULL, *ifa;
	char defdev[2][IF_NAMESIZE];

	memset(in, 0, sizeof(*in));
	copy_str(in->node_name, sizeof(in->node_name), cfg->hostname);
	if (node)
		copy_str(in->node_zone, sizeof(in->node_zone), node->zone);
	memcpy(in->cluster_cidrs, cfg->cluster_cidrs,
	       cfg->n_cluster_cidrs * sizeof(cfg->cluster_cidrs[0]));
	in->n_cluster_cidrs = cfg->n_cluster_cidrs;
	memcpy(in->nodeport_cidrs, cfg->nodeport_cidrs,
	       cfg->n_nodeport_cidrs * sizeof(cfg->nodeport_cidrs[0]));
	in->n_nodeport_cidrs = cfg->n_nodeport_cidrs;
	in->masquerade_all = cfg->masquerade_all;
	ops = kpx_backend_ops(kpx_config_resolve_backend(cfg));
	if (ops)
		in->caps = ops->caps;
	for (size_t i = 0; i < cfg->n_node_ips; i++)
		in->node_ips[in->n_node_ips++] = cfg->node_ips[i];

	default_route_dev(AF_INET, defdev[0], sizeof(defdev[0]));
	default_route_dev(AF_INET6, defdev[1], sizeof(defdev[1]));
	if (getifaddrs(&ifas))
		return 0; /* no addresses: NodePorts only on --node-ip */
	for (ifa = ifas; ifa; ifa = ifa->ifa_next) {
		struct kpx_addr a = { 0 };

		if (!ifa->ifa_addr || !(ifa->ifa_flags & IFF_UP))
			continue;
		if (ifa->ifa_addr->sa_family == AF_INET) {
			a.family = AF_INET;
			a.v4 = ((struct sockaddr_in *)ifa->ifa_addr)->sin_addr;
		} else if (ifa->ifa_addr->sa_family == AF_INET6) {
			a.family = AF_INET6;
			a.v6 = ((struct sockaddr_in6 *)ifa->ifa_addr)->sin6_addr;
		} else {
			continue;
		}
		if (!addr_is_global(&a))
			continue;
		if (in->n_local_addrs < sizeof(in->local_addrs) /
						sizeof(in->local_addrs[0]))
			in->local_addrs[in->n_local_addrs++] = a;
	}
	/* Node IPs not given: the default-route device's first address per
	 * family, else the first global address per family. */
	for (int pass = 0; pass < 2 && cfg->n_node_ips == 0; pass++) {
		for (ifa = ifas; ifa; ifa = ifa->ifa_next) {
			int fam;
			struct kpx_addr a = { 0 };
			bool have = false;

			if (!ifa->ifa_addr || !(ifa->ifa_flags & IFF_UP) ||
			    (ifa->ifa_flags & IFF_LOOPBACK))
				continue;
			fam = ifa->ifa_addr->sa_family;
			if (fam != AF_INET && fam != AF_INET6)
				continue;
			if (pass == 0 &&
			    strcmp(ifa->ifa_name, defdev[fam == AF_INET6]))
				continue;
			a.family = (uint8_t)fam;
			if (fam == AF_INET)
				a.v4 = ((struct sockaddr_in *)ifa->ifa_addr)
					       ->sin_addr;
			else
				a.v6 = ((struct sockaddr_in6 *)ifa->ifa_addr)
					       ->sin6_addr;
			if (!addr_is_global(&a))
				continue;
			for (size_t i = 0; i < in->n_node_ips; i++)
				if (in->node_ips[i].family == fam)
					have = true;
			if (!have && in->n_node_ips < 2)
				in->node_ips[in->n_node_ips++] = a;
		}
	}
	freeifaddrs(ifas);
	return 0;
}

enum kpx_backend_kind kpx_config_resolve_backend(const struct kpx_config *cfg)
{
	if (cfg->backend != KPX_BACKEND_AUTO)
		return cfg->backend;
	/* Socket LB needs BTF and cgroup v2; otherwise fall back to nft. */
	if (access("/sys/kernel/btf/vmlinux", R_OK) == 0) {
		char buf[PATH_MAX];

		if (kpx_cgroup2_mount(buf, sizeof(buf)))
			return KPX_BACKEND_BPF;
	}
	return KPX_BACKEND_NFT;
}
