/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Backend selection shared by the socket-LB and tc/XDP programs: slot
 * (random) or Maglev lookup in the service's active generation, and the
 * backend entry it points to. Counters per service/backend.
 * Owns: nothing. Must not: write service maps.
 */
#ifndef KPX_BPF_LIB_LB_H
#define KPX_BPF_LIB_LB_H

#include "lib/maps.h"

/* Murmur3 finalizer: cheap and well mixed for 32-bit inputs. */
static __always_inline __u32 kpx_mix32(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

/*
 * Returns the backend id for hash in the service's active generation, or
 * 0 when the service has no usable slot (count 0, or a missing entry,
 * which the writer's ordering rules out and is counted when it happens).
 */
static __always_inline __u32 kpx_lb_pick(const struct kpx_svc_value *sv,
					 __u32 hash)
{
	if (sv->count == 0)
		return 0;
	if (sv->flags & KPX_SVC_F_MAGLEV) {
		struct kpx_maglev_key mk = { .svc_id = sv->svc_id,
					     .gen = sv->gen };
		__u32 *tbl = bpf_map_lookup_elem(&kpx_maglev, &mk);
		__u32 idx;

		if (!tbl)
			goto missing;
		idx = hash % kpx_maglev_size;
		/* Verifier workaround: clang folds "idx < size" after a
		 * modulo; the barrier keeps the explicit bound check that
		 * proves tbl[idx] within the value size (4 * size). */
		barrier_var(idx);
		if (idx >= kpx_maglev_size)
			goto missing;
		return tbl[idx];
	} else {
		struct kpx_slot_key k = { .svc_id = sv->svc_id,
					  .gen = sv->gen,
					  .slot = hash % sv->count };
		__u32 *id = bpf_map_lookup_elem(&kpx_slots, &k);

		if (!id)
			goto missing;
		return *id;
	}
missing:
	kpx_count_drop(KPX_DROP_BACKEND_MISSING);
	return 0;
}

static __always_inline void kpx_count_conn(__u32 svc_id, __u32 backend_id,
					   __u64 bytes, bool new_conn)
{
	struct kpx_counter *c;

	c = bpf_map_lookup_elem(&kpx_svc_stats, &svc_id);
	if (c) {
		c->packets += !new_conn;
		c->bytes += bytes;
		c->connections += new_conn;
	}
	c = bpf_map_lookup_elem(&kpx_backend_stats, &backend_id);
	if (c) {
		c->packets += !new_conn;
		c->bytes += bytes;
		c->connections += new_conn;
	}
}

#endif
