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
	struct kpx_cidr nodeport_cidrs[16]; /* n == 0: "primary" */
	size_t n_nodeport_cidrs;
	char devices[KPX_MAX_DEVICES][KPX_IFNAME_MAX];
	size_t n_devices;
	enum kpx_nodeport_accel nodeport_accel;
	enum kpx_nodeport_mode nodeport_mode;
	enum kpx_lb_alg lb_algorithm;
	bool masquerade_all;
	uint64_t min_sync_ms;
	uint64_t sync_ms;
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
	uint32_t maglev_seed;
	uint16_t snat_port_min, snat_port_max;

	/* conntrack timeouts for the bpf datapath, seconds. */
	uint32_t ct_tcp_timeout, ct_tcp_close_timeout, ct_udp_timeout;
};

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
/* Parses "1s", "500ms", "2m", "1h30m" (Go durations subset) into ms. */
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
