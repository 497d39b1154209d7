/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared loading rules for every kpx BPF object: maps are pinned by name
 * under --bpf-root (bpffs mounted when absent) and sized from the config,
 * so the socket-LB and the NodePort objects share one set of maps and a
 * restarted agent reuses them.
 * Owns: bpffs mount, pin directory, map sizing. Must not: write entries.
 */
#ifndef KPX_BPF_LOADER_H
#define KPX_BPF_LOADER_H

#include "agent/config.h"

struct bpf_object;

/* Mounts bpffs at /sys/fs/bpf if needed and creates cfg->bpf_root. */
int kpx_bpf_prepare_root(const struct kpx_config *cfg);
/* Before load: sets max_entries (and maglev value size) of every shared
 * map present in obj from cfg, so all objects agree with the pins. */
int kpx_bpf_size_maps(struct bpf_object *obj, const struct kpx_config *cfg);

#endif
