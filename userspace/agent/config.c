// SPDX-License-Identifier: Apache-2.0
#include "agent/config.h"

#include <errno.h>
#include <ifaddrs.h>
#include <inttypes.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "agent/backend.h"
#include "common/log.h"
#include "plan/plan.h"

void kpx_config_defaults(struct kpx_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->backend = KPX_BACKEND_AUTO;
	cfg->min_sync_ms = 1000;
	cfg->sync_ms = 30000;
	cfg->watch_stall_ms = 120000;
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

int kpx_bool_parse(const char *s, bool *out)
{
	static const char *const yes[] = { "1", "t", "T", "TRUE", "true",
					   "True" };
	static const char *const no[] = { "0", "f", "F", "FALSE", "false",
					  "False" };

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (!strcmp(s, yes[i])) {
			*out = true;
			return 0;
		}
		if (!strcmp(s, no[i])) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

#define DUR_MAX ((uint64_t)1 << 63) /* one past INT64_MAX ns */

/*
 * time.ParseDuration: [-+]?([0-9]*(\.[0-9]*)?unit)+ or "0", units ns, us
 * (µs, μs), ms, s, m, h. Integer arithmetic with overflow checks: no
 * value (nan, inf, 1e400h) can reach an undefined conversion.
 */
int kpx_duration_parse_ns(const char *s, int64_t *ns)
{
	static const struct {
		const char *name;
		uint64_t ns;
	} units[] = {
		{ "ns", 1ULL },
		{ "us", 1000ULL },
		{ "\xc2\xb5s", 1000ULL }, /* U+00B5 micro sign */
		{ "\xce\xbcs", 1000ULL }, /* U+03BC Greek mu */
		{ "ms", 1000000ULL },
		{ "s", 1000000000ULL },
		{ "m", 60000000000ULL },
		{ "h", 3600000000000ULL },
	};
	uint64_t d = 0;
	bool neg = false;

	if (!s)
		return -EINVAL;
	if (*s == '-' || *s == '+')
		neg = *s++ == '-';
	if (!strcmp(s, "0")) {
		*ns = 0;
		return 0;
	}
	if (!*s)
		return -EINVAL;
	while (*s) {
		uint64_t v = 0, f = 0, scale = 1, unit = 0;
		bool pre = false, post = false, f_full = false;
		const char *u;
		size_t ulen, i;

		if (*s != '.' && (*s < '0' || *s > '9'))
			return -EINVAL;
		for (; *s >= '0' && *s <= '9'; s++) {
			pre = true;
			if (v > DUR_MAX / 10)
				return -ERANGE;
			v = v * 10 + (uint64_t)(*s - '0');
			if (v > DUR_MAX)
				return -ERANGE;
		}
		if (*s == '.') {
			for (s++; *s >= '0' && *s <= '9'; s++) {
				post = true;
				/* Digits past what fits only lose precision;
				 * leading zeros grow only scale, which must
				 * not wrap to 0 (found by tests/fuzz). */
				if (f_full || f > (DUR_MAX - 9) / 10 ||
				    scale > UINT64_MAX / 10) {
					f_full = true;
					continue;
				}
				f = f * 10 + (uint64_t)(*s - '0');
				scale *= 10;
			}
		}
		if (!pre && !post)
			return -EINVAL;
		for (u = s; *s && *s != '.' && (*s < '0' || *s > '9'); s++)
			;
		ulen = (size_t)(s - u);
		for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
			if (strlen(units[i].name) == ulen &&
			    !memcmp(units[i].name, u, ulen)) {
				unit = units[i].ns;
				break;
			}
		}
		if (!unit)
			return -EINVAL; /* missing or unknown unit */
		if (v > DUR_MAX / unit)
			return -ERANGE;
		v *= unit;
		if (f) {
			/* f / scale < 1, so the product stays below unit. */
			v += (uint64_t)((double)f * ((double)unit / (double)scale));
			if (v > DUR_MAX)
				return -ERANGE;
		}
		if (v > DUR_MAX - d)
			return -ERANGE;
		d += v;
	}
	if (neg) {
		*ns = d == DUR_MAX ? INT64_MIN : -(int64_t)d;
		return 0;
	}
	if (d > DUR_MAX - 1)
		return -ERANGE;
	*ns = (int64_t)d;
	return 0;
}

int kpx_duration_parse(const char *s, uint64_t *ms)
{
	int64_t ns;

	if (kpx_duration_parse_ns(s, &ns) || ns < 0)
		return -EINVAL;
	*ms = (uint64_t)ns / 1000000;
	return 0;
}

void kpx_duration_format(uint64_t ms, char *buf, size_t len)
{
	uint64_t h = ms / 3600000, m = ms / 60000 % 60, sec = ms / 1000 % 60;
	unsigned int frac = (unsigned int)(ms % 1000);
	char fs[8] = "";

	if (ms == 0) {
		snprintf(buf, len, "0s");
		return;
	}
	if (ms < 1000) {
		snprintf(buf, len, "%ums", frac);
		return;
	}
	if (frac) {
		/* ".5", ".25", ".125": trailing zeros dropped, as Go does. */
		snprintf(fs, sizeof(fs), ".%03u", frac);
		for (size_t i = strlen(fs) - 1; fs[i] == '0'; i--)
			fs[i] = '\0';
	}
	if (h)
		snprintf(buf, len, "%" PRIu64 "h%" PRIu64 "m%" PRIu64 "%ss", h, m,
			 sec, fs);
	else if (m)
		snprintf(buf, len, "%" PRIu64 "m%" PRIu64 "%ss", m, sec, fs);
	else
		snprintf(buf, len, "%" PRIu64 "%ss", sec, fs);
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
	OPT_KUBECONFIG,
	OPT_MASTER,
	OPT_MANIFESTS,
	OPT_BACKEND,
	OPT_HOSTNAME,
	OPT_NODE_IP,
	OPT_CLUSTER_CIDR,
	OPT_EXTERNAL_IP_CIDRS,
	OPT_NODEPORT_ADDRESSES,
	OPT_DEVICES,
	OPT_NODEPORT_ACCEL,
	OPT_NODEPORT_MODE,
	OPT_LB_ALGORITHM,
	OPT_MASQUERADE_ALL,
	OPT_MIN_SYNC,
	OPT_SYNC,
	OPT_WATCH_STALL,
	OPT_HEALTHZ,
	OPT_METRICS,
	OPT_CGROUP,
	OPT_BPF_ROOT,
	OPT_STATE_SOCKET,
	OPT_CONFIG,
	OPT_MAGLEV_SIZE,
	OPT_NEW_FLOW_RATE,
	OPT_MAGLEV_SEED,
	OPT_SNAT_RANGE,
	OPT_SERVICES_MAX,
	OPT_BACKENDS_MAX,
	OPT_CT_MAX,
	OPT_AFFINITY_MAX,
	OPT_VERBOSITY,
	OPT_HELP,
	/* kube-proxy's flags that mean something to kpx */
	OPT_CLEANUP,
	OPT_WRITE_CONFIG,
	OPT_INIT_ONLY,
	OPT_VERSION,
	OPT_BIND_ADDRESS,
	OPT_HEALTHZ_PORT,
	OPT_METRICS_PORT,
	OPT_CT_TCP_ESTABLISHED,
	OPT_CT_TCP_CLOSE_WAIT,
	OPT_CT_UDP,
	OPT_DETECT_LOCAL_MODE,
	OPT_PROXY_MODE,
};

#define KPX(n, t, id) { n, 0, t, id, NULL }
#define KP(n, t, why) { n, 0, t, KPX_FLAG_IGNORED, why }

/*
 * Every flag of `kpx run` (and so of cleanup, status, services). The
 * kube-proxy names come from cmd/kube-proxy/app/options.go (AddFlags),
 * component-base logs/api/v1 (AddFlags) and verflag; the unit test
 * every_kube_proxy_flag_is_accepted lists them again independently.
 */
const struct kpx_flag kpx_flags[] = {
	/* kpx's flags; kube-proxy's names where kube-proxy has the concept */
	KPX("kubeconfig", KPX_FT_STRING, OPT_KUBECONFIG),
	KPX("master", KPX_FT_STRING, OPT_MASTER),
	KPX("manifests", KPX_FT_STRING, OPT_MANIFESTS),
	KPX("backend", KPX_FT_STRING, OPT_BACKEND),
	KPX("proxy-mode", KPX_FT_STRING, OPT_PROXY_MODE),
	KPX("hostname-override", KPX_FT_STRING, OPT_HOSTNAME),
	KPX("node-ip", KPX_FT_STRING, OPT_NODE_IP),
	KPX("cluster-cidr", KPX_FT_STRING, OPT_CLUSTER_CIDR),
	KPX("external-ip-cidrs", KPX_FT_STRING, OPT_EXTERNAL_IP_CIDRS),
	KPX("nodeport-addresses", KPX_FT_STRING, OPT_NODEPORT_ADDRESSES),
	KPX("devices", KPX_FT_STRING, OPT_DEVICES),
	KPX("nodeport-accel", KPX_FT_STRING, OPT_NODEPORT_ACCEL),
	KPX("nodeport-mode", KPX_FT_STRING, OPT_NODEPORT_MODE),
	KPX("lb-algorithm", KPX_FT_STRING, OPT_LB_ALGORITHM),
	KPX("masquerade-all", KPX_FT_BOOL, OPT_MASQUERADE_ALL),
	KPX("min-sync-period", KPX_FT_DURATION, OPT_MIN_SYNC),
	KPX("sync-period", KPX_FT_DURATION, OPT_SYNC),
	KPX("api-watch-stall-timeout", KPX_FT_DURATION, OPT_WATCH_STALL),
	KPX("healthz-bind-address", KPX_FT_STRING, OPT_HEALTHZ),
	KPX("metrics-bind-address", KPX_FT_STRING, OPT_METRICS),
	KPX("cgroup-path", KPX_FT_STRING, OPT_CGROUP),
	KPX("bpf-root", KPX_FT_STRING, OPT_BPF_ROOT),
	KPX("state-socket", KPX_FT_STRING, OPT_STATE_SOCKET),
	KPX("config", KPX_FT_STRING, OPT_CONFIG),
	KPX("maglev-table-size", KPX_FT_STRING, OPT_MAGLEV_SIZE),
	KPX("bpf-new-flow-rate", KPX_FT_STRING, OPT_NEW_FLOW_RATE),
	KPX("maglev-seed", KPX_FT_STRING, OPT_MAGLEV_SEED),
	KPX("snat-port-range", KPX_FT_STRING, OPT_SNAT_RANGE),
	KPX("bpf-services-max", KPX_FT_STRING, OPT_SERVICES_MAX),
	KPX("bpf-backends-max", KPX_FT_STRING, OPT_BACKENDS_MAX),
	KPX("bpf-ct-max", KPX_FT_STRING, OPT_CT_MAX),
	KPX("bpf-affinity-max", KPX_FT_STRING, OPT_AFFINITY_MAX),
	{ "v", 'v', KPX_FT_STRING, OPT_VERBOSITY, NULL },
	{ "verbosity", 0, KPX_FT_STRING, OPT_VERBOSITY, NULL },
	{ "help", 'h', KPX_FT_BOOL, OPT_HELP, NULL },

	/* kube-proxy's, with a meaning in kpx */
	KPX("cleanup", KPX_FT_BOOL, OPT_CLEANUP),
	KPX("write-config-to", KPX_FT_STRING, OPT_WRITE_CONFIG),
	KPX("init-only", KPX_FT_BOOL, OPT_INIT_ONLY),
	KPX("version", KPX_FT_VERSION, OPT_VERSION),
	KPX("bind-address", KPX_FT_STRING, OPT_BIND_ADDRESS),
	KPX("healthz-port", KPX_FT_INT, OPT_HEALTHZ_PORT),
	KPX("metrics-port", KPX_FT_INT, OPT_METRICS_PORT),
	KPX("iptables-sync-period", KPX_FT_DURATION, OPT_SYNC),
	KPX("iptables-min-sync-period", KPX_FT_DURATION, OPT_MIN_SYNC),
	KPX("ipvs-sync-period", KPX_FT_DURATION, OPT_SYNC),
	KPX("ipvs-min-sync-period", KPX_FT_DURATION, OPT_MIN_SYNC),
	KPX("conntrack-tcp-timeout-established", KPX_FT_DURATION,
	    OPT_CT_TCP_ESTABLISHED),
	KPX("conntrack-tcp-timeout-close-wait", KPX_FT_DURATION,
	    OPT_CT_TCP_CLOSE_WAIT),
	KPX("conntrack-udp-timeout", KPX_FT_DURATION, OPT_CT_UDP),
	KPX("detect-local-mode", KPX_FT_STRING, OPT_DETECT_LOCAL_MODE),

	/* kube-proxy's, nothing for kpx to do: warned about, ignored */
	KP("feature-gates", KPX_FT_STRING, "kube-proxy's feature gates"),
	KP("kube-api-content-type", KPX_FT_STRING, "kpx always speaks JSON"),
	KP("kube-api-burst", KPX_FT_INT, "kpx watches, it does not poll"),
	KP("kube-api-qps", KPX_FT_FLOAT, "kpx watches, it does not poll"),
	KP("bind-address-hard-fail", KPX_FT_BOOL,
	   "a server that cannot bind is logged, the agent runs on"),
	KP("profiling", KPX_FT_BOOL, "no Go pprof in a C agent"),
	KP("show-hidden-metrics-for-version", KPX_FT_STRING,
	   "kpx hides no metrics"),
	KP("iptables-masquerade-bit", KPX_FT_INT,
	   "kpx marks with its own bit"),
	KP("iptables-localhost-nodeports", KPX_FT_BOOL,
	   "kpx never serves NodePorts on localhost"),
	KP("ipvs-scheduler", KPX_FT_STRING, "no IPVS in kpx (--lb-algorithm)"),
	KP("ipvs-exclude-cidrs", KPX_FT_STRING, "no IPVS in kpx"),
	KP("ipvs-strict-arp", KPX_FT_BOOL, "no IPVS in kpx"),
	KP("ipvs-tcp-timeout", KPX_FT_DURATION, "no IPVS in kpx"),
	KP("ipvs-tcpfin-timeout", KPX_FT_DURATION, "no IPVS in kpx"),
	KP("ipvs-udp-timeout", KPX_FT_DURATION, "no IPVS in kpx"),
	KP("pod-bridge-interface", KPX_FT_STRING,
	   "kpx decides locality by --cluster-cidr"),
	KP("pod-interface-name-prefix", KPX_FT_STRING,
	   "kpx decides locality by --cluster-cidr"),
	KP("oom-score-adj", KPX_FT_INT,
	   "kubelet sets it for system-node-critical pods"),
	KP("conntrack-max-per-core", KPX_FT_INT,
	   "the host's nf_conntrack size is left to the node's owner"),
	KP("conntrack-min", KPX_FT_INT,
	   "the host's nf_conntrack size is left to the node's owner"),
	KP("conntrack-tcp-be-liberal", KPX_FT_BOOL,
	   "the host's nf_conntrack sysctls are left to the node's owner"),
	KP("conntrack-udp-timeout-stream", KPX_FT_DURATION,
	   "the host's nf_conntrack sysctls are left to the node's owner"),
	KP("config-sync-period", KPX_FT_DURATION,
	   "kpx watches without periodic relists"),
	KP("logging-format", KPX_FT_STRING, "kpx logs klog text"),
	KP("log-flush-frequency", KPX_FT_DURATION, "kpx does not buffer logs"),
	KP("vmodule", KPX_FT_STRING, "kpx has one verbosity (-v)"),
	KP("log-text-split-stream", KPX_FT_BOOL, "kpx logs to stderr"),
	KP("log-text-info-buffer-size", KPX_FT_STRING,
	   "kpx does not buffer logs"),
	KP("log-json-split-stream", KPX_FT_BOOL, "kpx logs klog text"),
	KP("log-json-info-buffer-size", KPX_FT_STRING, "kpx logs klog text"),
};
const size_t kpx_n_flags = sizeof(kpx_flags) / sizeof(kpx_flags[0]);

#undef KPX
#undef KP

const struct kpx_flag *kpx_flag_lookup(const char *name)
{
	for (size_t i = 0; i < kpx_n_flags; i++)
		if (!strcmp(kpx_flags[i].name, name))
			return &kpx_flags[i];
	return NULL;
}

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
		"  --masquerade-all[=BOOL]      masquerade all service traffic\n"
		"  --external-ip-cidrs CIDRs    serve only externalIPs inside these, never\n"
		"                               a node address (default: any)\n"
		"Datapath:\n"
		"  --backend bpf|nft            (alias --proxy-mode; default: bpf if supported)\n"
		"  --devices IF[,IF]            bpf: tc/XDP devices (default: default-route dev)\n"
		"  --nodeport-accel none|xdp    bpf: XDP acceleration\n"
		"  --nodeport-mode snat|dsr     bpf: remote backends for external traffic\n"
		"  --lb-algorithm random|maglev bpf: backend selection\n"
		"  --maglev-table-size N        prime, default 16381\n"
		"  --bpf-new-flow-rate N        bpf: new flows/s per CPU above which no\n"
		"                               new NodePort flow state is made (0: off)\n"
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
		"  --min-sync-period DUR        syncs start at least DUR apart (default:\n"
		"                               5x the last change-driven sync's\n"
		"                               duration, at most 1s)\n"
		"  --sync-period DUR            periodic full resync (30s)\n"
		"  --api-watch-stall-timeout DUR  an API watch silent this long after\n"
		"                               bookmarks is restarted (2m)\n"
		"Serving:\n"
		"  --healthz-bind-address ADDR  /healthz, /livez (0.0.0.0:10256; \"\" off)\n"
		"  --metrics-bind-address ADDR  /metrics, /configz (127.0.0.1:10249; \"\" off)\n"
		"  --state-socket PATH          for kpx status (" KPX_STATE_SOCKET_DEFAULT ")\n"
		"Other:\n"
		"  --config FILE                KubeProxyConfiguration; flags override it;\n"
		"                               the agent exits when the file changes\n"
		"  --cleanup                    remove kpx's state (as `kpx cleanup`), exit\n"
		"  --write-config-to FILE       write the effective configuration, exit\n"
		"  -v N                         log verbosity\n"
		"\n"
		"Every kube-proxy flag is accepted. Those kpx acts on:\n"
		"  --iptables-sync-period, --ipvs-sync-period (as --sync-period),\n"
		"  --iptables-min-sync-period, --ipvs-min-sync-period (--min-sync-period),\n"
		"  --conntrack-tcp-timeout-established, --conntrack-tcp-timeout-close-wait,\n"
		"  --conntrack-udp-timeout (the bpf datapath's own conntrack),\n"
		"  --bind-address (a specific IP: the node IP), --healthz-port,\n"
		"  --metrics-port (0: server off), --init-only (nothing to do: exits 0),\n"
		"  --version; the others are warned about once and ignored.\n");
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

int kpx_addr_append_port(char *addr, size_t len, unsigned int port)
{
	struct in6_addr a6;
	struct in_addr a4;
	char buf[160];
	int n;

	if (inet_pton(AF_INET, addr, &a4) == 1)
		n = snprintf(buf, sizeof(buf), "%s:%u", addr, port);
	else if (inet_pton(AF_INET6, addr, &a6) == 1)
		n = snprintf(buf, sizeof(buf), "[%s]:%u", addr, port);
	else
		return 0;
	if (n < 0 || (size_t)n >= len || (size_t)n >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(addr, buf, (size_t)n + 1);
	return 0;
}

/* --healthz-port/--metrics-port: 0 turns the server off, else the port
 * of the bind address is replaced (a bare IP gets it appended). */
static int set_port(char *addr, size_t len, const char *arg,
		    const char *dflt_host)
{
	uint32_t port;
	char *colon;

	if (parse_u32(arg, 0, 65535, &port))
		return -EINVAL;
	if (!port) {
		addr[0] = '\0';
		return 0;
	}
	if (!addr[0])
		snprintf(addr, len, "%s", dflt_host);
	colon = strrchr(addr, ':');
	if (colon && (addr[0] != '[' || colon[-1] == ']'))
		*colon = '\0';
	if (addr[0] == '[') {
		/* "[::]" back to "::" so the append brackets it once */
		size_t l = strlen(addr);

		if (l >= 2 && addr[l - 1] == ']') {
			memmove(addr, addr + 1, l - 2);
			addr[l - 2] = '\0';
		}
	}
	if (!addr[0])
		snprintf(addr, len, "%s", dflt_host);
	return kpx_addr_append_port(addr, len, port);
}

static int set_ct_timeout(uint32_t *dst, const char *arg)
{
	uint64_t ms;

	if (kpx_duration_parse(arg, &ms))
		return -EINVAL;
	/* 0 means "leave as is" for kube-proxy: kpx's default stays. */
	if (ms) {
		uint64_t s = (ms + 999) / 1000;

		*dst = s > UINT32_MAX ? UINT32_MAX : (uint32_t)s;
	}
	return 0;
}

static int apply_option(struct kpx_config *cfg, int opt, const char *arg)
{
	switch (opt) {
	case OPT_KUBECONFIG:
		cfg->kubeconfig_from_file = false;
		return copy_str(cfg->kubeconfig, sizeof(cfg->kubeconfig), arg);
	case OPT_MASTER:
		return copy_str(cfg->master, sizeof(cfg->master), arg);
	case OPT_MANIFESTS:
		return copy_str(cfg->manifests, sizeof(cfg->manifests), arg);
	case OPT_BACKEND:
		return kpx_backend_parse(arg, &cfg->backend);
	case OPT_PROXY_MODE:
		if (!strcmp(arg, "iptables") || !strcmp(arg, "ipvs")) {
			/* kube-proxy's modes: kpx has neither datapath. */
			kpx_warn("--proxy-mode %s is a kube-proxy mode kpx does "
				 "not have; using the default backend (bpf "
				 "where the kernel supports it, else nft)",
				 arg);
			cfg->backend = KPX_BACKEND_AUTO;
			return 0;
		}
		return kpx_backend_parse(arg, &cfg->backend);
	case OPT_HOSTNAME:
		return copy_str(cfg->hostname, sizeof(cfg->hostname), arg);
	case OPT_NODE_IP:
		return parse_node_ips(cfg, arg);
	case OPT_CLUSTER_CIDR:
		return kpx_cidr_list_parse(arg, cfg->cluster_cidrs, 8,
					   &cfg->n_cluster_cidrs);
	case OPT_EXTERNAL_IP_CIDRS:
		return kpx_cidr_list_parse(arg, cfg->external_ip_cidrs, 16,
					   &cfg->n_external_ip_cidrs);
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
		return kpx_bool_parse(arg, &cfg->masquerade_all);
	case OPT_MIN_SYNC:
		if (kpx_duration_parse(arg, &cfg->min_sync_ms))
			return -EINVAL;
		cfg->min_sync_set = true;
		return 0;
	case OPT_SYNC: {
		uint64_t ms;

		/* kube-proxy: "Must be greater than 0". */
		if (kpx_duration_parse(arg, &ms) || !ms)
			return -EINVAL;
		cfg->sync_ms = ms;
		return 0;
	}
	case OPT_WATCH_STALL: {
		uint64_t ms;

		/* Below the watch cache's ~60 s bookmark interval every idle
		 * watch would be taken for a stalled one. */
		if (kpx_duration_parse(arg, &ms) || ms < 1000)
			return -EINVAL;
		cfg->watch_stall_ms = ms;
		return 0;
	}
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
	case OPT_NEW_FLOW_RATE:
		return parse_u32(arg, 0, UINT32_MAX, &cfg->bpf_new_flow_rate);
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
	case OPT_VERBOSITY: {
		uint32_t v;

		if (parse_u32(arg, 0, 10, &v))
			return -EINVAL;
		cfg->verbosity = (int)v;
		return 0;
	}
	case OPT_HELP:
		return 0; /* --help=false; --help was handled before */
	case OPT_CLEANUP:
		return kpx_bool_parse(arg, &cfg->cleanup_and_exit);
	case OPT_INIT_ONLY:
		return kpx_bool_parse(arg, &cfg->init_only);
	case OPT_WRITE_CONFIG:
		return copy_str(cfg->write_config_to,
				sizeof(cfg->write_config_to), arg);
	case OPT_BIND_ADDRESS: {
		struct kpx_addr a;

		if (kpx_addr_parse(arg, &a))
			return -EINVAL;
		/* kube-proxy: "Overrides kube-proxy's idea of what its node's
		 * primary IP is"; 0.0.0.0 and :: mean "not set". */
		if ((a.family == AF_INET && a.v4.s_addr == 0) ||
		    (a.family == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&a.v6)))
			return 0;
		return parse_node_ips(cfg, arg);
	}
	case OPT_HEALTHZ_PORT:
		return set_port(cfg->healthz_addr, sizeof(cfg->healthz_addr),
				arg, "0.0.0.0");
	case OPT_METRICS_PORT:
		return set_port(cfg->metrics_addr, sizeof(cfg->metrics_addr),
				arg, "127.0.0.1");
	case OPT_CT_TCP_ESTABLISHED:
		return set_ct_timeout(&cfg->ct_tcp_timeout, arg);
	case OPT_CT_TCP_CLOSE_WAIT:
		return set_ct_timeout(&cfg->ct_tcp_close_timeout, arg);
	case OPT_CT_UDP:
		return set_ct_timeout(&cfg->ct_udp_timeout, arg);
	case OPT_DETECT_LOCAL_MODE:
		if (*arg && strcmp(arg, "ClusterCIDR"))
			kpx_warn("--detect-local-mode %s is not supported; kpx "
				 "decides locality by --cluster-cidr",
				 arg);
		return 0;
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

/* A value of an ignored flag still has to be what kube-proxy accepts. */
static int check_type(uint8_t type, const char *v)
{
	char *end;
	bool b;
	int64_t ns;

	switch (type) {
	case KPX_FT_BOOL:
		return kpx_bool_parse(v, &b);
	case KPX_FT_INT: {
		long long n;

		errno = 0;
		n = strtoll(v, &end, 0);
		return errno || end == v || *end || n < INT32_MIN ||
				       n > INT32_MAX ?
			       -EINVAL :
			       0;
	}
	case KPX_FT_FLOAT: {
		double d;

		errno = 0;
		d = strtod(v, &end);
		return errno || end == v || *end || d != d ? -EINVAL : 0;
	}
	case KPX_FT_DURATION:
		return kpx_duration_parse_ns(v, &ns) ? -EINVAL : 0;
	default:
		return 0;
	}
}

struct flag_arg {
	const struct kpx_flag *f;
	const char *value; /* normalized: booleans "true"/"false" */
	bool extra;
};

/*
 * Reads argv[*i] (and maybe the next one) as a flag. Returns 1 with *out
 * set, 0 for a positional argument, 2 for "--", or -EINVAL (printed).
 */
static int next_flag(struct kpx_flag_cmd *c, int argc, char **argv, int *i,
		     struct flag_arg *out)
{
	const char *a = argv[*i], *val = NULL;
	char name[64];
	const struct kpx_flag *f = NULL;
	bool has_val = false;
	size_t nlen;

	if (!strcmp(a, "--"))
		return 2;
	if (a[0] != '-' || !a[1])
		return 0;
	if (a[1] == '-') {
		const char *eq = strchr(a + 2, '=');

		nlen = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
		if (!nlen || nlen >= sizeof(name)) {
			fprintf(stderr, "kpx %s: bad flag syntax: %s\n", c->cmd, a);
			return -EINVAL;
		}
		memcpy(name, a + 2, nlen);
		name[nlen] = '\0';
		if (eq) {
			val = eq + 1;
			has_val = true;
		}
		for (const struct kpx_flag *e = c->extra; e && e->name; e++)
			if (!strcmp(e->name, name))
				f = e;
		out->extra = f != NULL;
		if (!f)
			f = kpx_flag_lookup(name);
	} else {
		/* -v 2, -v=2, -v2, -h */
		for (const struct kpx_flag *e = c->extra; e && e->name; e++)
			if (e->shorthand == a[1])
				f = e;
		out->extra = f != NULL;
		for (size_t k = 0; !f && k < kpx_n_flags; k++)
			if (kpx_flags[k].shorthand == a[1])
				f = &kpx_flags[k];
		if (a[2]) {
			val = a + 2 + (a[2] == '=');
			has_val = true;
		}
		snprintf(name, sizeof(name), "%c", a[1]);
	}
	if (!f) {
		fprintf(stderr, "kpx %s: unknown flag: %s\n", c->cmd, a);
		return -EINVAL;
	}
	out->f = f;
	if (f->type == KPX_FT_BOOL || f->type == KPX_FT_VERSION) {
		bool b = true;

		/* Booleans never take the next argument (pflag's rule). */
		if (has_val && kpx_bool_parse(val, &b) &&
		    !(f->type == KPX_FT_VERSION && !strcmp(val, "raw"))) {
			fprintf(stderr,
				"kpx %s: invalid value '%s' for --%s: want "
				"true or false (1, t, T, TRUE, true, True, "
				"0, f, F, FALSE, false, False)\n",
				c->cmd, val, f->name);
			return -EINVAL;
		}
		out->value = b ? "true" : "false";
		return 1;
	}
	if (!has_val) {
		if (*i + 1 >= argc) {
			fprintf(stderr, "kpx %s: flag needs an argument: %s\n",
				c->cmd, a);
			return -EINVAL;
		}
		val = argv[++*i];
	}
	if (f->type != KPX_FT_STRING && check_type(f->type, val)) {
		fprintf(stderr, "kpx %s: invalid value '%s' for --%s%s\n",
			c->cmd, val, f->name,
			f->type == KPX_FT_DURATION ?
				" (want a duration such as 1m30s, 250ms, 1.5h)" :
				"");
		return -EINVAL;
	}
	out->value = val;
	return 1;
}

int kpx_config_parse(struct kpx_config *cfg, int argc, char **argv,
		     struct kpx_flag_cmd *c)
{
	bool warned[sizeof(kpx_flags) / sizeof(kpx_flags[0])] = { false };
	struct flag_arg fa;
	int i, r, err;

	c->n_pos = 0;
	/* First pass: --help, and --config so that flags override the file;
	 * a syntax error is reported here, before the file is read. */
	for (i = 1; i < argc; i++) {
		r = next_flag(c, argc, argv, &i, &fa);
		if (r < 0)
			return -EINVAL;
		if (r == 2)
			break;
		if (r == 0 || fa.extra)
			continue;
		if (fa.f->id == OPT_HELP && !strcmp(fa.value, "true")) {
			if (c->usage)
				fputs(c->usage, stdout);
			else
				run_usage(stdout);
			return 1;
		}
		if (fa.f->id == OPT_CONFIG) {
			if (copy_str(cfg->config_file, sizeof(cfg->config_file),
				     fa.value))
				return -EINVAL;
			err = kpx_config_load_file(cfg, fa.value);
			if (err) {
				fprintf(stderr, "kpx %s: --config %s: %s\n",
					c->cmd, fa.value, strerror(-err));
				return -EINVAL;
			}
		}
	}
	for (i = 1; i < argc; i++) {
		r = next_flag(c, argc, argv, &i, &fa);
		if (r < 0)
			return -EINVAL;
		if (r == 0 || r == 2) {
			int last = r == 2 ? argc : i + 1;

			for (i += r == 2; i < last; i++) {
				if (c->n_pos >= c->max_pos) {
					fprintf(stderr,
						"kpx %s: unexpected argument "
						"'%s'\n",
						c->cmd, argv[i]);
					return -EINVAL;
				}
				c->pos[c->n_pos++] = argv[i];
			}
			i = last - 1;
			continue;
		}
		if (fa.extra) {
			err = c->fn ? c->fn(c->arg, fa.f, fa.value) : -EINVAL;
		} else if (fa.f->id == KPX_FLAG_IGNORED) {
			size_t k = (size_t)(fa.f - kpx_flags);

			if (!c->quiet && !warned[k])
				fprintf(stderr,
					"kpx %s: warning: --%s is kube-proxy's "
					"and ignored (%s)\n",
					c->cmd, fa.f->name, fa.f->why);
			warned[k] = true;
			err = 0;
		} else if (fa.f->id == OPT_VERSION) {
			cfg->print_version |= !strcmp(fa.value, "true");
			err = 0;
		} else {
			err = apply_option(cfg, fa.f->id, fa.value);
		}
		if (err) {
			fprintf(stderr, "kpx %s: invalid value '%s' for --%s\n",
				c->cmd, fa.value, fa.f->name);
			return -EINVAL;
		}
	}
	if (cfg->print_version) {
		printf("kpx %s\n", KPX_VERSION);
		return 1;
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

int kpx_config_parse_run(struct kpx_config *cfg, int argc, char **argv)
{
	struct kpx_flag_cmd c = { .cmd = "run" };
	int ret = kpx_config_parse(cfg, argc, argv, &c);

	if (ret)
		return ret;
	/*
	 * A kubeconfig that is named but missing is an error now, naming
	 * where it came from: falling back to the in-cluster config would
	 * talk to another API server, or as another user, than asked.
	 */
	if (!cfg->manifests[0] && cfg->kubeconfig[0] && !cfg->cleanup_and_exit &&
	    !cfg->write_config_to[0] && !cfg->init_only &&
	    access(cfg->kubeconfig, R_OK)) {
		int e = errno;

		fprintf(stderr,
			"kpx run: kubeconfig %s (%s): %s%s\n", cfg->kubeconfig,
			cfg->kubeconfig_from_file ?
				"clientConnection.kubeconfig of --config" :
				"--kubeconfig",
			strerror(e),
			cfg->kubeconfig_from_file ?
				"; kubeadm's kube-proxy ConfigMap holds it as "
				"kubeconfig.conf: mount the ConfigMap at "
				"/var/lib/kube-proxy as manifests/kpx.yaml "
				"does" :
				"");
		return -ENOENT;
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
	memcpy(in->external_ip_cidrs, cfg->external_ip_cidrs,
	       cfg->n_external_ip_cidrs * sizeof(cfg->external_ip_cidrs[0]));
	in->n_external_ip_cidrs = cfg->n_external_ip_cidrs;
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

static void jadd_str(struct json_object *o, const char *k, const char *v)
{
	json_object_object_add(o, k, json_object_new_string(v));
}

static void jadd_dur(struct json_object *o, const char *k, uint64_t ms)
{
	char buf[64];

	kpx_duration_format(ms, buf, sizeof(buf));
	jadd_str(o, k, buf);
}

static void cidr_str(const struct kpx_cidr *c, char *buf, size_t len)
{
	char a[KPX_ADDR_STRLEN];

	snprintf(buf, len, "%s/%u", kpx_addr_str(&c->addr, a), c->prefix);
}

static struct json_object *cidr_list(const struct kpx_cidr *c, size_t n)
{
	struct json_object *a = json_object_new_array();
	char buf[KPX_ADDR_STRLEN + 8];

	for (size_t i = 0; i < n; i++) {
		cidr_str(&c[i], buf, sizeof(buf));
		json_object_array_add(a, json_object_new_string(buf));
	}
	return a;
}

char *kpx_config_render(const struct kpx_config *cfg,
			enum kpx_backend_kind backend)
{
	struct json_object *top = json_object_new_object();
	struct json_object *o = json_object_new_object();
	struct json_object *cc = json_object_new_object();
	struct json_object *ct = json_object_new_object();
	struct json_object *lin = json_object_new_object();
	struct json_object *lg = json_object_new_object();
	struct json_object *k = json_object_new_object();
	struct json_object *devs = json_object_new_array();
	char buf[512];
	char *out;

	/* KubeProxyConfiguration's names and shapes, effective values:
	 * what a tool reading kube-proxy's /configz expects to find. */
	jadd_str(o, "apiVersion", "kubeproxy.config.k8s.io/v1alpha1");
	jadd_str(o, "kind", "KubeProxyConfiguration");
	jadd_str(cc, "kubeconfig", cfg->kubeconfig);
	json_object_object_add(o, "clientConnection", cc);
	jadd_str(o, "hostnameOverride", cfg->hostname);
	buf[0] = '\0';
	for (size_t i = 0; i < cfg->n_cluster_cidrs; i++) {
		char c[KPX_ADDR_STRLEN + 8];

		cidr_str(&cfg->cluster_cidrs[i], c, sizeof(c));
		snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "%s%s",
			 i ? "," : "", c);
	}
	jadd_str(o, "clusterCIDR", buf);
	json_object_object_add(o, "nodePortAddresses",
			       cfg->n_nodeport_cidrs ?
				       cidr_list(cfg->nodeport_cidrs,
						 cfg->n_nodeport_cidrs) :
				       json_object_new_string("primary"));
	jadd_str(o, "healthzBindAddress", cfg->healthz_addr);
	jadd_str(o, "metricsBindAddress", cfg->metrics_addr);
	jadd_str(o, "mode", backend == KPX_BACKEND_NFT ? "nftables" :
			    backend == KPX_BACKEND_BPF ? "ebpf" : "");
	jadd_dur(o, "syncPeriod", cfg->sync_ms);
	jadd_dur(o, "minSyncPeriod", cfg->min_sync_ms);
	jadd_dur(ct, "tcpEstablishedTimeout", (uint64_t)cfg->ct_tcp_timeout * 1000);
	jadd_dur(ct, "tcpCloseWaitTimeout",
		 (uint64_t)cfg->ct_tcp_close_timeout * 1000);
	jadd_dur(ct, "udpTimeout", (uint64_t)cfg->ct_udp_timeout * 1000);
	json_object_object_add(lin, "masqueradeAll",
			       json_object_new_boolean(cfg->masquerade_all));
	json_object_object_add(lin, "conntrack", ct);
	json_object_object_add(o, "linux", lin);
	json_object_object_add(lg, "verbosity",
			       json_object_new_int(cfg->verbosity));
	json_object_object_add(o, "logging", lg);
	jadd_str(o, "detectLocalMode", "ClusterCIDR");

	jadd_str(k, "backend", kpx_backend_name(backend));
	for (size_t i = 0; i < cfg->n_devices; i++)
		json_object_array_add(devs,
				      json_object_new_string(cfg->devices[i]));
	json_object_object_add(k, "devices", devs);
	jadd_str(k, "nodePortAccel",
		 cfg->nodeport_accel == KPX_ACCEL_XDP ? "xdp" : "none");
	jadd_str(k, "nodePortMode",
		 cfg->nodeport_mode == KPX_NP_DSR ? "dsr" : "snat");
	jadd_str(k, "lbAlgorithm",
		 cfg->lb_algorithm == KPX_LB_MAGLEV ? "maglev" : "random");
	jadd_str(k, "cgroupPath", cfg->cgroup_path);
	jadd_str(k, "bpfRoot", cfg->bpf_root);
	jadd_str(k, "stateSocket", cfg->state_socket);
	jadd_str(k, "configFile", cfg->config_file);
	json_object_object_add(o, "kpx", k);

	json_object_object_add(top, "kubeproxy.config.k8s.io", o);
	out = strdup(json_object_to_json_string_ext(
		top, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(top);
	return out;
}
