/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The external-traffic datapath of the bpf backend: tc (clsact) programs on
 * --devices, optional XDP, kpx's own conntrack/NAT maps and their GC.
 * The service/backend maps it reads are written by the map writer.
 * Owns: tc/XDP attachments, kpx_ct, kpx_config. Must not: write services.
 */
#ifndef KPX_BPF_NODEPORT_H
#define KPX_BPF_NODEPORT_H

#include <stdint.h>

#include "agent/config.h"

struct json_object;
struct kpx_nodeport;

/* Loads and attaches on cfg->devices (reusing pinned maps). */
int kpx_nodeport_open(const struct kpx_config *cfg, struct kpx_nodeport **out);
/* Conntrack GC: expires idle and closed flows. */
void kpx_nodeport_tick(struct kpx_nodeport *np);
/* Userspace only; attachments and maps stay. */
void kpx_nodeport_close(struct kpx_nodeport *np);
/* Detaches from cfg->devices and removes its pins. */
int kpx_nodeport_cleanup(const struct kpx_config *cfg);
/* {"devices":[...],"mode":"tc"|"xdp","ct_entries":N,...} */
int kpx_nodeport_dump(const struct kpx_config *cfg, struct json_object **out);

/*
 * Internals exposed for tests and benchmarks (additive).
 */
struct kpx_dp_config;
/* The kpx_config map value from cfg (node IPs: cfg->node_ips, else the
 * first global address of the first device). */
void kpx_nodeport_dp_config(const struct kpx_config *cfg,
			    struct kpx_dp_config *out);
/* One GC pass over the kpx_ct map fd: deletes both entries of flows idle
 * longer than their timeout (TCP after FIN/RST: the close timeout) at
 * monotonic time now_ns. Scans at most max_scan entries; returns the
 * number of entries deleted or a negative errno. */
int kpx_nodeport_ct_gc(int ct_fd, const struct kpx_config *cfg,
		       uint64_t now_ns, unsigned int max_scan);
/* Devices to attach to: cfg->devices, else auto-detected (the device of
 * the IPv4/IPv6 default route, else the devices holding cfg->node_ips). */
int kpx_nodeport_devices(const struct kpx_config *cfg,
			 char out[][KPX_IFNAME_MAX], size_t max, size_t *n);

#endif
