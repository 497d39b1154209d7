/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared loading rules for every kpx BPF object: maps are pinned by name
 * under --bpf-root (bpffs mounted when absent) and sized from the config,
 * so the socket-LB and the NodePort objects share one set of maps and a
 * restarted agent reuses them.
 * One agent per pin directory: an exclusive lock on it for the agent's
 * lifetime, so that two agents (or an agent and `kpx cleanup`) never
 * share one --bpf-root by mistake.
 * Owns: bpffs mount, pin directory and its lock, map sizing. Must not:
 * write entries.
 */
#ifndef KPX_BPF_LOADER_H
#define KPX_BPF_LOADER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent/config.h"

struct bpf_object;

/* Mounts bpffs at /sys/fs/bpf if needed and creates cfg->bpf_root. */
int kpx_bpf_prepare_root(const struct kpx_config *cfg);
/*
 * Takes the exclusive lock of cfg's pin directory (flock on the directory
 * itself: bpffs holds no regular files) and returns its fd in *fd; the
 * lock lives as long as that fd. -EBUSY when another process holds it,
 * with its pid in *holder (0 if not found); -ENOENT when the directory
 * does not exist. Does not create the directory and logs nothing.
 */
int kpx_bpf_lock_root(const struct kpx_config *cfg, int *fd, pid_t *holder);
/* Before load: sets max_entries (and maglev value size) of every shared
 * map present in obj from cfg, so all objects agree with the pins. */
int kpx_bpf_size_maps(struct bpf_object *obj, const struct kpx_config *cfg);

/*
 * KPX_ABI_VERSION of the pins (map "kpx_abi_version"): before the first
 * object is loaded, removes the pins of maps whose layout changed since
 * the version that wrote them (all of them for an unknown version), so
 * that loading recreates them instead of reusing them blindly; logs which
 * maps were reused and which recreated. Pins without a version are of
 * version 1. After loading, kpx_bpf_abi_store records this build's.
 */
int kpx_bpf_abi_check(const struct kpx_config *cfg);
int kpx_bpf_abi_store(int version_map_fd);
/* Pure: whether map (by pin name) pinned by ABI version pinned is reused. */
bool kpx_bpf_abi_keep(const char *map, uint32_t pinned);

#endif
