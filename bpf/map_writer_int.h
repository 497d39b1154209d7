/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internals shared by the map writer's files (bpf/map_writer.c, mw_*.c):
 * the writer's state and the functions one file calls in another. Not for
 * use outside the map writer.
 */
#ifndef KPX_BPF_MAP_WRITER_INT_H
#define KPX_BPF_MAP_WRITER_INT_H

#include <search.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bpf/kpx_abi.h"
#include "bpf/map_writer.h"
#include "plan/plan.h"

/* ---- state ---- */

/* Backend identity: what makes two endpoints the same backend. */
struct be_ident {
	uint8_t addr[16];
	uint16_t port; /* network order */
	uint8_t proto;
	uint8_t family;
};

struct be_node {
	struct be_ident ident;
	struct kpx_backend_value val;
	uint32_t id;
	uint32_t refs;
	bool seen; /* kpx_map_writer_verify() */
};

struct sp_rec;

struct svc_entry {
	struct kpx_svc_key key;
	/* The svcport that wants it (NULL: nobody yet, read from the pins),
	 * and the list of that svcport's entries. */
	struct sp_rec *owner;
	struct svc_entry *onext, **oprev;
	struct kpx_svc_value val; /* as programmed */
	uint32_t *ids;		  /* val.count backend ids, slot order */
	struct kpx_svc_meta meta;
	struct kpx_src_range_key *ranges;
	size_t n_ranges;
	uint64_t epoch; /* last sync that wanted it */
	/* The kernel differs from this mirror: rewrite at the next sync. */
	bool dirty;
	/* what kpx_map_writer_verify() found of it in the kernel */
	bool seen, seen_meta, seen_maglev;
	uint32_t seen_slots, seen_ranges;
};

/*
 * What the writer programmed for one plan svcport: the plan's hash of it
 * and the kpx_svc entries it owns. An entry has one owner; a frontend two
 * svcports claim stays with its owner while that one wants it.
 */
struct sp_rec {
	uint64_t hash;
	uint64_t epoch; /* last sync that processed or removed it */
	/* A write failed or a frontend was taken by another svcport: the
	 * next sync processes it again even if its hash is unchanged. */
	bool retry, failed;
	/* An entry of it could not be written in this sync (not a
	 * conflict): it keeps its previous state, counted as skipped. */
	bool write_failed;
	struct svc_entry *ents;
	char id[];
};

/* One desired kpx_svc entry, pointing into the plan. */
struct want {
	struct kpx_svc_key key;
	struct sp_rec *rec;
	size_t ord; /* plan order: ties between svcports break the same way */
	uint8_t flags, kind;
	uint32_t affinity_timeout;
	const struct kpx_plan_svcport *sp;
	const uint32_t *set; /* indices into sp->endpoints */
	size_t n;
	struct kpx_svc_meta meta;
};

/* Keys found stale while reading the pins, deleted by the first sync if
 * still stale then (that sync may have rewritten some of them). */
struct keyvec {
	uint8_t *v;
	size_t n, cap;
};

/* Id allocation: a cursor in each of the two ranges [1, soft) and
 * [soft, max), and whether a range was found full (reset when one of its
 * ids is freed), so that allocating stays O(1) once a range is full. */
struct id_alloc {
	uint32_t soft, max;
	uint32_t cur[2];
	bool full[2];
};

struct kpx_map_writer {
	struct kpx_map_ops ops;
	struct kpx_map_writer_opts o;
	void *entries;	 /* tsearch root of struct svc_entry *, by key */
	void *backends;	 /* tsearch root of struct be_node *, by ident */
	struct be_node **be_by_id;
	struct svc_entry **svc_by_id;
	/* svc ids whose affinity entries need pruning at the end of this
	 * sync (backends removed, or the entry deleted) */
	uint8_t *prune;
	size_t n_prune;
	struct id_alloc svc_ids, be_ids;
	uint64_t epoch;
	bool reconciled;
	/* Sorted by id (the plan's order): what each svcport got. */
	struct sp_rec **recs;
	size_t n_recs;
	struct keyvec stale[KPX_MAP_N];
	int load_err;
	/* kpx_cluster_cidr as programmed */
	struct kpx_cidr_key *cidrs;
	size_t n_cidrs;
	/* kept up to date on every change, so a sync costs nothing per id */
	uint32_t n_entries, n_backends, n_slots;
	struct kpx_map_writer_stats st;
};

typedef void (*dump_fn)(struct kpx_map_writer *w, const void *k,
			const void *v, void *arg);

/* mw_ids.c */
uint32_t mw_alloc_id(void **by_id, struct id_alloc *a);
struct be_node *mw_be_find(struct kpx_map_writer *w,
			       const struct be_ident *id);
void mw_be_forget(struct kpx_map_writer *w, struct be_node *n);
int mw_be_get(struct kpx_map_writer *w, const struct kpx_backend_value *v,
		  uint32_t *out);
void mw_be_ident_of(struct be_ident *id, const struct kpx_backend_value *v);
int mw_be_insert(struct kpx_map_writer *w, struct be_node *n);
void mw_be_put(struct kpx_map_writer *w, uint32_t id);
int mw_entry_cmp(const void *a, const void *b);
void mw_id_freed(struct id_alloc *a, uint32_t id);
void mw_id_taken(struct id_alloc *a, uint32_t id);
void mw_ids_init(struct id_alloc *a, uint32_t soft, uint32_t max);
bool mw_is_full(int err);
void mw_notify_removed(struct kpx_map_writer *w, const struct kpx_svc_key *k,
			   uint32_t id, const uint32_t *ids, size_t n);
void mw_owner_set(struct svc_entry *e, struct sp_rec *r);

/* mw_translate.c */
void mw_backend_value_of(struct kpx_backend_value *v,
			     const struct kpx_plan_svcport *sp,
			     const struct kpx_plan_endpoint *ep);
bool mw_entry_matches(struct kpx_map_writer *w, const struct svc_entry *e,
			  const struct want *x);
bool mw_range_in(const struct kpx_src_range_key *r,
		     const struct kpx_src_range_key *set, size_t n);
int mw_want_cmp(const void *a, const void *b);
void mw_want_fill(struct kpx_map_writer *w, struct want *x,
		      const struct kpx_plan_svcport *sp,
		      const struct kpx_plan_frontend *fe, uint8_t scope);
size_t mw_want_ranges(const struct want *x, uint32_t svc_id,
			  struct kpx_src_range_key *out);
int mw_want_sort_cmp(const void *a, const void *b);

/* mw_write.c */
void mw_affinity_prune(struct kpx_map_writer *w);
int mw_cidrs_sync(struct kpx_map_writer *w, const struct kpx_plan *plan);
void mw_entry_delete(struct kpx_map_writer *w, struct svc_entry *e);
int mw_entry_write(struct kpx_map_writer *w, struct svc_entry *e,
		       const struct want *x);
void mw_svc_key_str(const struct kpx_svc_key *k, char *buf, size_t len);

/* mw_mirror.c */
bool mw_keep_backend(struct kpx_map_writer *w, const void *key);
bool mw_keep_maglev(struct kpx_map_writer *w, const void *key);
bool mw_keep_meta(struct kpx_map_writer *w, const void *key);
bool mw_keep_range(struct kpx_map_writer *w, const void *key);
bool mw_keep_slot(struct kpx_map_writer *w, const void *key);
int mw_keyvec_add(struct keyvec *kv, const void *k, size_t ksz);
int mw_load_state(struct kpx_map_writer *w);
int mw_map_dump(struct kpx_map_writer *w, enum kpx_map_id m, size_t ksz,
		    size_t vsz, dump_fn fn, void *arg);
void mw_reconcile(struct kpx_map_writer *w, enum kpx_map_id m, size_t ksz,
		      bool (*keep)(struct kpx_map_writer *, const void *));

#endif
