/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The external-traffic datapath of the bpf backend: tc (clsact) programs on
 * --devices, optional XDP, kpx's own conntrack/NAT maps and their GC.
 * The service/backend maps it reads are written by the map writer.
 * Owns: tc/XDP attachments, kpx_ct, kpx_config. Must not: write services.
 */
#ifndef KPX_BPF_NODEPORT_H
#define KPX_BPF_NODEPORT_H

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

#endif
