// SPDX-License-Identifier: Apache-2.0
/*
 * Map access for the map writer: kpx_map_ops over map fds, the map names,
 * and the capacities the loader and the writer agree on.
 * Owns: nothing but these tables. Must not: keep state.
 */
#include <errno.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "bpf/maglev.h"
#include "bpf/map_walk.h"
#include "bpf/map_writer.h"
#include "bpf/map_writer_int.h"
#include "common/log.h"

const char *const kpx_map_names[KPX_MAP_N] = {
	[KPX_MAP_SVC] = "kpx_svc",
	[KPX_MAP_SLOTS] = "kpx_slots",
	[KPX_MAP_BACKENDS] = "kpx_backends",
	[KPX_MAP_MAGLEV] = "kpx_maglev",
	[KPX_MAP_SVC_META] = "kpx_svc_meta",
	[KPX_MAP_SRC_RANGE] = "kpx_src_range",
	[KPX_MAP_AFFINITY] = "kpx_affinity",
	[KPX_MAP_CLUSTER_CIDR] = "kpx_cluster_cidr",
};

uint32_t kpx_map_writer_slots_capacity(uint32_t services_max,
				       uint32_t backends_max)
{
	/* One slot per backend of every entry, plus the inactive generation
	 * of the one service being rewritten: 8 per entry covers services
	 * of 10 endpoints at 80 % of the entries, 2 per backend a backend
	 * shared by both scopes of its frontend. kpx_slots preallocates
	 * nothing, but its bucket array (16 bytes per power-of-two entry)
	 * exists from creation on, so no more than that. */
	uint64_t a = 8ull * services_max, b = 2ull * backends_max;
	uint64_t n = a > b ? a : b;

	return n > (1u << 24) ? (1u << 24) : (uint32_t)n;
}

uint32_t kpx_map_writer_stats_capacity(uint32_t ids)
{
	int ncpu = libbpf_num_possible_cpus();
	uint64_t cap;

	if (ncpu < 1)
		ncpu = 1;
	cap = KPX_STATS_BYTES_MAX /
	      ((uint64_t)sizeof(struct kpx_counter) * (uint64_t)ncpu);
	return ids < cap ? ids : (uint32_t)cap;
}

void kpx_map_writer_opts_from_config(const struct kpx_config *cfg,
				     struct kpx_map_writer_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->services_max = cfg->bpf_services_max ? cfg->bpf_services_max
						: KPX_DEF_SERVICES_MAX;
	o->backends_max = cfg->bpf_backends_max ? cfg->bpf_backends_max
						: KPX_DEF_BACKENDS_MAX;
	o->slots_max = kpx_map_writer_slots_capacity(o->services_max,
						     o->backends_max);
	o->maglev_size = cfg->maglev_table_size ? cfg->maglev_table_size
						: KPX_MAGLEV_DEFAULT_SIZE;
	o->maglev_seed = cfg->maglev_seed;
	o->alg = cfg->lb_algorithm;
	o->svc_ids_soft = kpx_map_writer_stats_capacity(o->services_max);
	o->be_ids_soft = kpx_map_writer_stats_capacity(o->backends_max);
}

/* ---- map ops over fds ---- */

static int fd_lookup(void *ctx, enum kpx_map_id m, const void *k, void *v)
{
	int r = bpf_map_lookup_elem(((int *)ctx)[m], k, v);

	return r < 0 ? -errno : 0;
}

static int fd_update(void *ctx, enum kpx_map_id m, const void *k,
		     const void *v)
{
	int r = bpf_map_update_elem(((int *)ctx)[m], k, v, BPF_ANY);

	return r < 0 ? -errno : 0;
}

static int fd_del(void *ctx, enum kpx_map_id m, const void *k)
{
	int r = bpf_map_delete_elem(((int *)ctx)[m], k);

	return r < 0 ? -errno : 0;
}

static int fd_next(void *ctx, enum kpx_map_id m, const void *k, void *n)
{
	int r = bpf_map_get_next_key(((int *)ctx)[m], k, n);

	return r < 0 ? -errno : 0;
}

static int fd_lookup_batch(void *ctx, enum kpx_map_id m, void *in, void *out,
			   void *keys, void *vals, uint32_t *count)
{
	__u32 n = *count;
	int r = bpf_map_lookup_batch(((int *)ctx)[m], in, out, keys, vals, &n,
				     NULL);

	*count = n;
	return r < 0 ? -errno : 0;
}

const struct kpx_map_ops kpx_map_fd_ops = {
	.lookup = fd_lookup,
	.update = fd_update,
	.del = fd_del,
	.next_key = fd_next,
	.lookup_batch = fd_lookup_batch,
};
