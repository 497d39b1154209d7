/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The map writer: makes the pinned service maps equal to a plan.
 * Stable ids (backend per (family, addr, port, proto), service per frontend
 * key), reused from the pinned maps after a restart; atomic per-service
 * updates (backends, inactive-generation slots, flip kpx_svc, delete old
 * slots, then unused backends); deletes in reverse order; a sync touches
 * only svcports whose plan hash changed. A service that
 * cannot be written completely (map full) keeps its previous state.
 * Map access goes through struct kpx_map_ops, so the writer is testable
 * without root against a fake.
 * Owns: kpx_svc, kpx_slots, kpx_backends, kpx_maglev, kpx_svc_meta,
 * kpx_src_range, kpx_cluster_cidr entries. Must not: touch kpx_ct/kpx_config or attachments.
 */
#ifndef KPX_BPF_MAP_WRITER_H
#define KPX_BPF_MAP_WRITER_H

#include <stdbool.h>
#include <stdint.h>

#include "agent/config.h"
#include "bpf/kpx_abi.h"
#include "plan/plan.h"

/* Capacities used when the config leaves them at 0 (and by config.c's
 * defaults). Sized for 30,000 dual-stack services x 10 endpoints (or
 * single-stack with 2 ports): a service entry per frontend and scope
 * (30k x 2 families x 2 scopes = 120k of 256k, room for NodePorts and
 * external IPs), a backend per endpoint address, port and protocol (600k
 * of 1M), a slot per backend of every entry (1.2M of 2M, see
 * kpx_map_writer_slots_capacity). The LRU maps (conntrack, reverse NAT,
 * affinity) keep their earlier sizes: the pinned ones are reused as they
 * are across an upgrade. */
#define KPX_DEF_SERVICES_MAX 262144
#define KPX_DEF_BACKENDS_MAX 1048576
#define KPX_DEF_CT_MAX 262144
#define KPX_DEF_AFFINITY_MAX 65536
/* Per-CPU counter arrays (kpx_svc_stats, kpx_backend_stats) cost
 * ids x 24 bytes x CPUs each; they are capped at this many bytes, and the
 * writer hands out ids below that cap first (see stats_ids). */
#define KPX_STATS_BYTES_MAX (8u << 20)

enum kpx_map_id {
	KPX_MAP_SVC,
	KPX_MAP_SLOTS,
	KPX_MAP_BACKENDS,
	KPX_MAP_MAGLEV,
	KPX_MAP_SVC_META,
	KPX_MAP_SRC_RANGE,
	KPX_MAP_AFFINITY,
	KPX_MAP_CLUSTER_CIDR,
	KPX_MAP_N,
};

extern const char *const kpx_map_names[KPX_MAP_N];

/* Map access. All return 0 or a negative errno (-ENOENT: no such key;
 * -E2BIG/-ENOSPC/-ENOMEM: map full). next_key(key == NULL) gives the
 * first key. */
struct kpx_map_ops {
	int (*lookup)(void *ctx, enum kpx_map_id m, const void *key, void *val);
	int (*update)(void *ctx, enum kpx_map_id m, const void *key,
		      const void *val);
	int (*del)(void *ctx, enum kpx_map_id m, const void *key);
	int (*next_key)(void *ctx, enum kpx_map_id m, const void *key,
			void *next);
	/* Called after a backend of a UDP service was removed from it (and
	 * the service entry no longer points at it); may be NULL. */
	void (*udp_backend_gone)(void *ctx, const struct kpx_backend_value *be);
	void *ctx;
	/* Called after backend be was removed from the local-client (scope
	 * INTERNAL) UDP frontend fe, whether or not other services still use
	 * it: connected sockets of fe toward be are stale. May be NULL. */
	void (*udp_backend_removed)(void *ctx, const struct kpx_svc_key *fe,
				    const struct kpx_backend_value *be);
	/* Optional (NULL: next_key + lookup): bpf_map_lookup_batch()
	 * semantics. in == NULL starts; *count is in/out; -ENOENT ends the
	 * walk (with *count entries still returned); -ENOSPC with
	 * *count == 0: buffers too small for one bucket. */
	int (*lookup_batch)(void *ctx, enum kpx_map_id m, void *in, void *out,
			    void *keys, void *vals, uint32_t *count);
};

/* kpx_map_ops over map fds (index enum kpx_map_id); ctx is the fd array,
 * which must outlive the writer. */
extern const struct kpx_map_ops kpx_map_fd_ops;

struct kpx_map_writer_opts {
	uint32_t services_max; /* svc ids are < this */
	uint32_t backends_max; /* backend ids are < this */
	uint32_t slots_max;
	uint32_t maglev_size;  /* prime */
	uint32_t maglev_seed;
	enum kpx_lb_alg alg;
	/* Ids below these are handed out first (the counter arrays cover
	 * them); 0: the whole range. */
	uint32_t svc_ids_soft;
	uint32_t be_ids_soft;
};

struct kpx_map_writer_stats {
	uint64_t syncs;
	uint64_t errors;	 /* failed service writes */
	uint64_t full;		 /* of which: a map was full */
	uint32_t entries;	 /* kpx_svc entries programmed */
	uint32_t backends;	 /* kpx_backends entries programmed */
	uint32_t slots;
	/* svcports the last sync processed (new, changed, retried; all of
	 * them when it was a full sync) */
	uint32_t last_svcports;
	bool last_sync_full;
	/* svcports of the last sync with an entry that could not be
	 * written (map full, too many endpoints for the ABI, ...): skipped,
	 * their previous state kept, retried by the next sync; the others
	 * were written */
	uint32_t last_skipped;
	/* the last sync failed as a whole, not per object (out of memory,
	 * kpx_cluster_cidr) */
	bool last_sync_failed;
	char last_error[256];
};

/* Capacity of kpx_slots for the given service/backend capacities. */
uint32_t kpx_map_writer_slots_capacity(uint32_t services_max,
				       uint32_t backends_max);
/* Entries of a per-CPU counter array for ids < ids: all of them, or as
 * many as KPX_STATS_BYTES_MAX holds on this machine's possible CPUs. */
uint32_t kpx_map_writer_stats_capacity(uint32_t ids);
void kpx_map_writer_opts_from_config(const struct kpx_config *cfg,
				     struct kpx_map_writer_opts *o);

struct kpx_map_writer;

/* Reads the current (pinned) state through ops; nothing is written until
 * the first sync, which reconciles (removes what the plan lacks). */
int kpx_map_writer_new(const struct kpx_map_ops *ops,
		       const struct kpx_map_writer_opts *opts,
		       struct kpx_map_writer **out);
/* 0, or the first negative errno of a service that could not be written
 * (every other service is still written; failed ones keep old state and
 * are retried by the next sync). Incremental: only svcports whose id is
 * new, whose plan hash differs from the one last programmed, or whose
 * last write failed are computed and written, and only entries of those
 * and of removed svcports deleted; the first sync (and the one after
 * kpx_map_writer_verify) reconciles every entry. So svcport hashes must
 * change with their content and cover the id (kpx_plan_build's do: an
 * equal hash is taken as the same, unchanged svcport). */
int kpx_map_writer_sync(struct kpx_map_writer *w, const struct kpx_plan *plan);
/* Periodic resync: compares every pinned map with what the writer
 * programmed (batched reads, no re-allocation of its state), repairs
 * backends at once and marks differing service entries so that the next
 * sync rewrites them and removes keys nobody owns. 0, or a negative errno
 * when the maps could not be read (then re-open the writer instead). */
int kpx_map_writer_verify(struct kpx_map_writer *w);
void kpx_map_writer_get_stats(const struct kpx_map_writer *w,
			      struct kpx_map_writer_stats *out);
void kpx_map_writer_free(struct kpx_map_writer *w);

#endif
