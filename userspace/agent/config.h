/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The agent's configuration: defaults, then the --config file
 * (KubeProxyConfiguration subset), then flags; flags win.
 * Owns: struct kpx_config and flag parsing. Must not: act on the config.
 */
#ifndef KPX_CONFIG_H
#define KPX_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/addr.h"
#include "k8s/objects.h"

#define KPX_STATE_SOCKET_DEFAULT "/run/kpx/kpx.sock"

#define KPX_MAX_DEVICES 8
#define KPX_IFNAME_MAX 16

enum kpx_backend_kind { KPX_BACKEND_AUTO, KPX_BACKEND_BPF, KPX_BACKEND_NFT };
enum kpx_nodeport_accel { KPX_ACCEL_NONE, KPX_ACCEL_XDP };
enum kpx_nodeport_mode { KPX_NP_SNAT, KPX_NP_DSR };
enum kpx_lb_alg { KPX_LB_RANDOM, KPX_LB_MAGLEV };

struct kpx_config {
	char kubeconfig[PATH_MAX];
	char master[256];
	char manifests[PATH_MAX];
	enum kpx_backend_kind backend;
	char hostname[KPX_NAME_MAX];
	struct kpx_addr node_ips[2];
	size_t n_node_ips;
	struct kpx_cidr cluster_cidrs[8];
	size_t n_cluster_cidrs;
	/* --external-ip-cidrs: externalIPs allowed (none: all). */
	struct kpx_cidr external_ip_cidrs[16];
	size_t n_external_ip_cidrs;
	struct kpx_cidr nodeport_cidrs[16]; /* n == 0: "primary" */
	size_t n_nodeport_cidrs;
	char devices[KPX_MAX_DEVICES][KPX_IFNAME_MAX];
	size_t n_devices;
	enum kpx_nodeport_accel nodeport_accel;
	enum kpx_nodeport_mode nodeport_mode;
	enum kpx_lb_alg lb_algorithm;
	bool masquerade_all;
	/* With min_sync_set (--min-sync-period or minSyncPeriod given) syncs
	 * start at least min_sync_ms apart, kube-proxy's meaning; without it
	 * the period adapts to the cost of a sync, min_sync_ms at most
	 * (kpx_sync_period_ms). */
	uint64_t min_sync_ms;
	bool min_sync_set;
	uint64_t sync_ms;
	/* API watch silent this long after bookmarks: restarted (k8s/client.h) */
	uint64_t watch_stall_ms;
	char healthz_addr[128]; /* "" disables */
	char metrics_addr[128]; /* "" disables */
	char cgroup_path[PATH_MAX];
	char bpf_root[PATH_MAX];
	char state_socket[PATH_MAX];
	char config_file[PATH_MAX];
	int verbosity;

	/* bpf capacities (--bpf-*-max flags). */
	uint32_t bpf_services_max;
	uint32_t bpf_backends_max;
	uint32_t bpf_ct_max;
	uint32_t bpf_affinity_max;
	uint32_t maglev_table_size; /* prime */
	/* --bpf-new-flow-rate: new flows per second per CPU above which the
	 * tc/XDP path stops creating state (flood guard); 0: off. */
	uint32_t bpf_new_flow_rate;
	uint32_t maglev_seed;
	uint16_t snat_port_min, snat_port_max;

	/* conntrack timeouts for the bpf datapath, seconds. */
	uint32_t ct_tcp_timeout, ct_tcp_close_timeout, ct_udp_timeout;

	/* What to do instead of running (kube-proxy's flags of these names). */
	bool cleanup_and_exit;		/* --cleanup */
	bool init_only;			/* --init-only: kpx has no init step */
	bool print_version;		/* --version */
	char write_config_to[PATH_MAX];	/* --write-config-to FILE */
	/* Where cfg->kubeconfig came from, for the error when it is missing. */
	bool kubeconfig_from_file;
	/* FNV-1a of the --config file's bytes as loaded: the agent exits when
	 * the file's content changes (as kube-proxy does). */
	uint64_t config_hash;
};

/*
 * The one flag table of `kpx run`, `kpx cleanup`, `kpx status` and
 * `kpx services`: kpx's flags and every flag of kube-proxy (v1.37,
 * cmd/kube-proxy/app/options.go, component-base logging and feature gates).
 * Flags parse as pflag does: --name=value or --name value; booleans only
 * take a value after '=' (ParseBool), so `--cleanup --x` never swallows
 * --x; -v N / -vN / -v=N; -h; "--" ends the flags.
 */
enum kpx_flag_type {
	KPX_FT_STRING,
	KPX_FT_BOOL,
	KPX_FT_INT,	 /* a Go int32 */
	KPX_FT_FLOAT,	 /* a Go float32 */
	KPX_FT_DURATION, /* time.ParseDuration */
	KPX_FT_VERSION,	 /* --version[=true|false|raw] */
};

struct kpx_flag {
	const char *name;
	char shorthand; /* 0, or the one-letter form (-v, -h, -o) */
	uint8_t type;	/* enum kpx_flag_type */
	int id;		/* >= 0: kpx acts on it; KPX_FLAG_IGNORED: warned */
	/* ignored flags: why kpx has no use for it (the warning says it) */
	const char *why;
};

#define KPX_FLAG_IGNORED (-1)

extern const struct kpx_flag kpx_flags[];
extern const size_t kpx_n_flags;
const struct kpx_flag *kpx_flag_lookup(const char *name);

/*
 * A command's own flags (cleanup's --kube-proxy, status's -o) on top of
 * the shared table: extra (NULL-name terminated) is looked up first, and
 * fn gets each with its value (booleans: "true" or "false", already
 * parsed). fn returns 0 or a negative errno (the parser then names the
 * flag). Positional arguments go to pos (at most max_pos, else an error).
 */
struct kpx_flag_cmd {
	const char *cmd;   /* "run", "cleanup": for messages */
	const char *usage; /* printed for -h/--help */
	const struct kpx_flag *extra;
	int (*fn)(void *arg, const struct kpx_flag *f, const char *value);
	void *arg;
	char **pos;
	size_t max_pos, n_pos;
	/* kube-proxy's flags that kpx ignores are warned about on stderr,
	 * once per name; quiet: not at all (the inspect commands). */
	bool quiet;
};

/*
 * Parses argv (argv[0] is the subcommand) into cfg: --config first, so
 * that flags override the file, then every flag in order. Returns 0, 1
 * when --help or --version was printed, or -EINVAL with a message on
 * stderr naming the flag.
 */
int kpx_config_parse(struct kpx_config *cfg, int argc, char **argv,
		     struct kpx_flag_cmd *cmd);
/* Go's strconv.ParseBool. 0 or -EINVAL. */
int kpx_bool_parse(const char *s, bool *out);
/* Go's time.ParseDuration, nanoseconds; -EINVAL on bad syntax, -ERANGE
 * when it does not fit an int64 of nanoseconds. */
int kpx_duration_parse_ns(const char *s, int64_t *ns);
/* Go's time.Duration.String() of ms (e.g. "1m30s", "250ms", "24h0m0s"). */
void kpx_duration_format(uint64_t ms, char *buf, size_t len);
/*
 * The effective configuration as kube-proxy's /configz serves it:
 * {"kubeproxy.config.k8s.io": {...}} (KubeProxyConfiguration field names,
 * plus kpx's own section). backend is the resolved one. malloc'd.
 */
char *kpx_config_render(const struct kpx_config *cfg,
			enum kpx_backend_kind backend);
/* "IP" -> "IP:port", "IPv6" -> "[IPv6]:port"; anything else unchanged
 * (kube-proxy's AppendPortIfNeeded). 0 or -ENAMETOOLONG. */
int kpx_addr_append_port(char *addr, size_t len, unsigned int port);

void kpx_config_defaults(struct kpx_config *cfg);
/*
 * Parses `kpx run` flags (argv[0] is "run"). Loads --config first, so flags
 * override it. Returns 0, 1 when --help was printed, or -EINVAL with a
 * message on stderr.
 */
int kpx_config_parse_run(struct kpx_config *cfg, int argc, char **argv);
/*
 * Reads a KubeProxyConfiguration (YAML or JSON) into cfg. Unknown fields
 * are warned about, not fatal. Returns 0 or a negative errno.
 */
int kpx_config_load_file(struct kpx_config *cfg, const char *path);
/* FNV-1a of a configuration file's bytes (cfg->config_hash), and of the
 * file at path now: 0 or a negative errno (logged). */
uint64_t kpx_config_hash_bytes(const char *buf, size_t len);
int kpx_config_file_hash(const char *path, uint64_t *out);
/* A non-negative Go duration ("1m30s", "250ms", "1.5h") in ms, truncated;
 * negative, NaN-like, overflowing or malformed input: -EINVAL. */
int kpx_duration_parse(const char *s, uint64_t *ms);
/* Resolves the auto backend to bpf or nft for this kernel. */
enum kpx_backend_kind kpx_config_resolve_backend(const struct kpx_config *cfg);
const char *kpx_backend_name(enum kpx_backend_kind kind);
/* "bpf"/"ebpf", "nft"/"nftables", "auto"/"" into *out: 0 or -EINVAL. */
int kpx_backend_parse(const char *s, enum kpx_backend_kind *out);
struct kpx_plan_input;
struct kpx_node;
/*
 * Node-level plan inputs from the config, the own Node (may be NULL: no
 * zone) and this network namespace's addresses (node IPs default to the
 * default-route device's, else the first global address per family).
 */
int kpx_plan_input_from_config(const struct kpx_config *cfg,
			       const struct kpx_node *node,
			       struct kpx_plan_input *out);
/* The cgroup2 mount point from /proc/mounts, or NULL. */
const char *kpx_cgroup2_mount(char *buf, size_t len);

#endif
