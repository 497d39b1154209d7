// SPDX-License-Identifier: Apache-2.0
/*
 * Map writer, ordered writes: one kpx_svc entry at a time, atomically for
 * the datapath (backends, the inactive generation's slots and maglev
 * table, source ranges, names, then the flip of the kpx_svc value, then
 * the old generation and unused backends); deletes in reverse order; the
 * affinity entries of removed backends; kpx_cluster_cidr. A failed write
 * undoes only what it added: the entry keeps its previous state.
 * Owns: every map update and delete of a sync. Must not: decide which
 * entries a plan wants (mw_translate.c, map_writer.c).
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

/* ---- per-entry writes ---- */

static void slots_delete(struct kpx_map_writer *w, uint32_t svc_id,
			 uint16_t gen, uint32_t count, bool maglev)
{
	for (uint32_t i = 0; i < count; i++) {
		struct kpx_slot_key k = { svc_id, gen, (uint16_t)i };

		w->ops.del(w->ops.ctx, KPX_MAP_SLOTS, &k);
	}
	if (maglev) {
		struct kpx_maglev_key mk = { svc_id, gen };

		w->ops.del(w->ops.ctx, KPX_MAP_MAGLEV, &mk);
	}
}

struct ident_idx {
	struct be_ident ident;
	uint32_t id;
};

static int ident_idx_cmp(const void *a, const void *b)
{
	return memcmp(a, b, sizeof(struct be_ident));
}

static int maglev_write(struct kpx_map_writer *w, uint32_t svc_id,
			uint16_t gen, const uint32_t *ids, size_t n)
{
	struct kpx_maglev_key mk = { svc_id, gen };
	struct kpx_maglev_backend *mb = calloc(n, sizeof(*mb));
	struct ident_idx *ix = calloc(n, sizeof(*ix));
	uint32_t *table = calloc(w->o.maglev_size, sizeof(*table));
	int err = -ENOMEM;

	if (!mb || !ix || !table)
		goto out;
	/* Sorted by identity: the table depends on backends and seed only,
	 * not on the order the plan lists them in. */
	for (size_t i = 0; i < n; i++) {
		ix[i].ident = w->be_by_id[ids[i]]->ident;
		ix[i].id = ids[i];
	}
	qsort(ix, n, sizeof(*ix), ident_idx_cmp);
	for (size_t i = 0; i < n; i++) {
		mb[i].id = &ix[i].ident;
		mb[i].len = sizeof(ix[i].ident);
	}
	err = kpx_maglev_build(mb, n, w->o.maglev_size, w->o.maglev_seed,
			       table);
	if (err)
		goto out;
	for (uint32_t i = 0; i < w->o.maglev_size; i++)
		table[i] = ix[table[i]].id;
	err = w->ops.update(w->ops.ctx, KPX_MAP_MAGLEV, &mk, table);
out:
	free(mb);
	free(ix);
	free(table);
	return err;
}

static void affinity_mark(struct kpx_map_writer *w, uint32_t svc_id)
{
	if (!w->prune[svc_id]) {
		w->prune[svc_id] = 1;
		w->n_prune++;
	}
}

/* Affinity entries of a marked svc id that point at a backend its entry no
 * longer has (all of them when the entry is gone). One walk of kpx_affinity
 * per sync, however many services changed. */
static void affinity_stale(struct kpx_map_writer *w, const void *key,
			   const void *val, void *arg)
{
	const struct kpx_affinity_key *k = key;
	const struct kpx_affinity_value *v = val;
	const struct svc_entry *e;

	if (k->svc_id >= w->o.services_max || !w->prune[k->svc_id])
		return;
	e = w->svc_by_id[k->svc_id];
	for (size_t i = 0; e && i < e->val.count; i++)
		if (e->ids[i] == v->backend_id)
			return;
	mw_keyvec_add(arg, k, sizeof(*k));
}

void mw_affinity_prune(struct kpx_map_writer *w)
{
	struct keyvec del = {};

	if (!w->n_prune)
		return;
	mw_map_dump(w, KPX_MAP_AFFINITY, sizeof(struct kpx_affinity_key),
		 sizeof(struct kpx_affinity_value), affinity_stale, &del);
	for (size_t i = 0; i < del.n; i++)
		w->ops.del(w->ops.ctx, KPX_MAP_AFFINITY,
			   del.v + i * sizeof(struct kpx_affinity_key));
	free(del.v);
	memset(w->prune, 0, w->o.services_max);
	w->n_prune = 0;
}

void mw_svc_key_str(const struct kpx_svc_key *k, char *buf, size_t len)
{
	struct kpx_addr a = { .family = k->family == KPX_AF_INET ? AF_INET
								 : AF_INET6 };
	char s[KPX_ADDR_STRLEN];

	memcpy(a.bytes, k->addr, 16);
	snprintf(buf, len, "%s:%u/%u/%s", kpx_addr_str(&a, s), ntohs(k->port),
		 k->proto, k->scope == KPX_SCOPE_INTERNAL ? "internal"
							  : "external");
}

int mw_entry_write(struct kpx_map_writer *w, struct svc_entry *e,
		       const struct want *x)
{
	bool is_new = e == NULL;
	uint32_t *ids = calloc(x->n + 1, sizeof(*ids));
	struct kpx_src_range_key *ranges =
		calloc(x->sp->n_source_ranges + 1, sizeof(*ranges));
	struct kpx_svc_value val = {};
	size_t got = 0, slots = 0, nr = 0, added_r = 0;
	bool maglev = x->flags & KPX_SVC_F_MAGLEV, maglev_done = false;
	const char *step = "memory";
	char too_many[80];
	int err = -ENOMEM;

	if (!ids || !ranges)
		goto fail;
	if (x->n > UINT16_MAX) {
		/* kpx_svc_value.count and kpx_slot_key.slot are 16 bits */
		snprintf(too_many, sizeof(too_many),
			 "%zu endpoints, above the %u slots of the ABI", x->n,
			 UINT16_MAX);
		step = too_many;
		err = -ERANGE;
		goto fail;
	}
	if (is_new) {
		e = calloc(1, sizeof(*e));
		if (!e)
			goto fail;
		e->key = x->key;
		e->val.svc_id = mw_alloc_id((void **)w->svc_by_id, &w->svc_ids);
		if (!e->val.svc_id) {
			err = -ENOSPC;
			step = "service id";
			goto fail;
		}
		e->val.gen = 1; /* so the first write uses gen 0 */
	}
	val.svc_id = e->val.svc_id;
	val.gen = e->val.gen ^ 1;
	val.count = (uint16_t)x->n;
	val.flags = x->flags;
	val.kind = x->kind;
	val.affinity_timeout = x->affinity_timeout;

	step = "kpx_backends";
	for (got = 0; got < x->n; got++) {
		struct kpx_backend_value v;

		mw_backend_value_of(&v, x->sp, &x->sp->endpoints[x->set[got]]);
		err = mw_be_get(w, &v, &ids[got]);
		if (err)
			goto fail;
	}
	step = "kpx_slots";
	for (slots = 0; slots < x->n; slots++) {
		struct kpx_slot_key k = { val.svc_id, val.gen, (uint16_t)slots };

		err = w->ops.update(w->ops.ctx, KPX_MAP_SLOTS, &k, &ids[slots]);
		if (err)
			goto fail;
	}
	if (maglev && x->n) {
		step = "kpx_maglev";
		err = maglev_write(w, val.svc_id, val.gen, ids, x->n);
		if (err)
			goto fail;
		maglev_done = true;
	}
	step = "kpx_src_range";
	nr = mw_want_ranges(x, val.svc_id, ranges);
	for (added_r = 0; added_r < nr; added_r++) {
		uint8_t one = 1;

		err = w->ops.update(w->ops.ctx, KPX_MAP_SRC_RANGE,
				    &ranges[added_r], &one);
		if (err)
			goto fail;
	}
	step = "kpx_svc_meta";
	if (is_new || e->dirty || memcmp(&e->meta, &x->meta, sizeof(x->meta))) {
		err = w->ops.update(w->ops.ctx, KPX_MAP_SVC_META, &val.svc_id,
				    &x->meta);
		if (err)
			goto fail;
	}
	step = "kpx_svc";
	err = w->ops.update(w->ops.ctx, KPX_MAP_SVC, &x->key, &val);
	if (err)
		goto fail;

	/* Flipped: the old generation is unreachable from now on. */
	if (!is_new) {
		slots_delete(w, val.svc_id, e->val.gen, e->val.count,
			     e->val.flags & KPX_SVC_F_MAGLEV);
		for (size_t i = 0; i < e->n_ranges; i++)
			if (!mw_range_in(&e->ranges[i], ranges, nr))
				w->ops.del(w->ops.ctx, KPX_MAP_SRC_RANGE,
					   &e->ranges[i]);
		if (e->val.flags & KPX_SVC_F_AFFINITY)
			affinity_mark(w, val.svc_id);
		for (size_t i = 0; i < e->val.count; i++) {
			mw_notify_removed(w, &e->key, e->ids[i], ids, x->n);
			mw_be_put(w, e->ids[i]);
		}
		free(e->ids);
		free(e->ranges);
	} else {
		if (!tsearch(e, &w->entries, mw_entry_cmp)) {
			/* The kernel has it; only our mirror lacks it. The
			 * next start reconciles from the pins. */
			kpx_err("map writer: out of memory");
		}
		w->svc_by_id[val.svc_id] = e;
		w->n_entries++;
	}
	w->n_slots += val.count;
	w->n_slots -= is_new ? 0 : e->val.count;
	mw_owner_set(e, x->rec);
	e->dirty = false;
	e->val = val;
	e->ids = ids;
	e->ranges = ranges;
	e->n_ranges = nr;
	e->meta = x->meta;
	e->epoch = w->epoch;
	return 0;

fail:
	/* Undo only what this attempt added: the old generation and the
	 * kpx_svc value were not touched, so the service keeps its state. */
	if (ranges && e) {
		for (size_t i = 0; i < added_r; i++)
			if (is_new || !mw_range_in(&ranges[i], e->ranges,
						e->n_ranges))
				w->ops.del(w->ops.ctx, KPX_MAP_SRC_RANGE,
					   &ranges[i]);
	}
	if (e) {
		slots_delete(w, val.svc_id, val.gen, (uint32_t)slots,
			     maglev_done);
		if (is_new)
			w->ops.del(w->ops.ctx, KPX_MAP_SVC_META, &val.svc_id);
	}
	for (size_t i = 0; i < got; i++)
		mw_be_put(w, ids[i]);
	if (is_new && e) {
		free(e);
	} else if (e) {
		/* Keep the old state, owned by the svcport that retries. */
		e->epoch = w->epoch;
		mw_owner_set(e, x->rec);
	}
	free(ids);
	free(ranges);
	{
		char ks[96];

		mw_svc_key_str(&x->key, ks, sizeof(ks));
		snprintf(w->st.last_error, sizeof(w->st.last_error),
			 "service %s (%s): %s: %s", x->meta.name, ks, step,
			 mw_is_full(err) ? "map full" : strerror(-err));
		kpx_err("bpf: cannot write %s; keeping its previous state",
			w->st.last_error);
	}
	w->st.errors++;
	if (mw_is_full(err))
		w->st.full++;
	return err;
}

void mw_entry_delete(struct kpx_map_writer *w, struct svc_entry *e)
{
	int err = w->ops.del(w->ops.ctx, KPX_MAP_SVC, &e->key);

	if (err && err != -ENOENT)
		kpx_warn("kpx_svc: delete svc id %u: %s", e->val.svc_id,
			 strerror(-err));
	slots_delete(w, e->val.svc_id, e->val.gen, e->val.count,
		     e->val.flags & KPX_SVC_F_MAGLEV);
	for (size_t i = 0; i < e->n_ranges; i++)
		w->ops.del(w->ops.ctx, KPX_MAP_SRC_RANGE, &e->ranges[i]);
	w->ops.del(w->ops.ctx, KPX_MAP_SVC_META, &e->val.svc_id);
	if (e->val.flags & KPX_SVC_F_AFFINITY)
		affinity_mark(w, e->val.svc_id);
	for (size_t i = 0; i < e->val.count; i++) {
		mw_notify_removed(w, &e->key, e->ids[i], NULL, 0);
		mw_be_put(w, e->ids[i]);
	}
	mw_owner_set(e, NULL);
	tdelete(e, &w->entries, mw_entry_cmp);
	w->svc_by_id[e->val.svc_id] = NULL;
	w->n_entries--;
	mw_id_freed(&w->svc_ids, e->val.svc_id);
	w->n_slots -= e->val.count;
	free(e->ids);
	free(e->ranges);
	free(e);
}

static bool cidr_in(const struct kpx_cidr_key *k,
		    const struct kpx_cidr_key *set, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!memcmp(k, &set[i], sizeof(*k)))
			return true;
	return false;
}

/*
 * Makes kpx_cluster_cidr the set of source prefixes an OFF_CLUSTER row
 * exempts (the plan's input; the plan decided which rows use it). Before
 * the entries: a new entry must not SNAT pods for want of a prefix.
 */
int mw_cidrs_sync(struct kpx_map_writer *w, const struct kpx_plan *plan)
{
	struct kpx_cidr_key want[KPX_PLAN_MAX_CIDRS];
	size_t n = 0, kept = 0;
	int first_err = 0;

	for (size_t i = 0; i < plan->input.n_cluster_cidrs && n < KPX_PLAN_MAX_CIDRS;
	     i++) {
		const struct kpx_cidr *c = &plan->input.cluster_cidrs[i];

		memset(&want[n], 0, sizeof(want[n]));
		want[n].prefixlen = 32 + c->prefix;
		want[n].family = c->addr.family == AF_INET ? KPX_AF_INET
							   : KPX_AF_INET6;
		memcpy(want[n].addr, c->addr.bytes,
		       c->addr.family == AF_INET ? 4 : 16);
		n++;
	}
	for (size_t i = 0; i < n; i++) {
		uint8_t one = 1;
		int err;

		if (cidr_in(&want[i], w->cidrs, w->n_cidrs))
			continue;
		err = w->ops.update(w->ops.ctx, KPX_MAP_CLUSTER_CIDR, &want[i],
				    &one);
		if (err) {
			char s[KPX_ADDR_STRLEN];
			struct kpx_addr a = { .family = want[i].family ==
								KPX_AF_INET
							? AF_INET
							: AF_INET6 };

			memcpy(a.bytes, want[i].addr, 16);
			snprintf(w->st.last_error, sizeof(w->st.last_error),
				 "kpx_cluster_cidr %s/%u: %s",
				 kpx_addr_str(&a, s), want[i].prefixlen - 32,
				 strerror(-err));
			kpx_err("bpf: cannot write %s", w->st.last_error);
			w->st.errors++;
			if (!first_err)
				first_err = err;
			/* not in the mirror: retried by the next sync */
			want[i].prefixlen = 0;
		}
	}
	for (size_t i = 0; i < w->n_cidrs; i++)
		if (!cidr_in(&w->cidrs[i], want, n))
			w->ops.del(w->ops.ctx, KPX_MAP_CLUSTER_CIDR, &w->cidrs[i]);
	for (size_t i = 0; i < n; i++)
		if (want[i].prefixlen)
			want[kept++] = want[i];
	free(w->cidrs);
	w->cidrs = kept ? malloc(kept * sizeof(*w->cidrs)) : NULL;
	if (kept && !w->cidrs) {
		w->n_cidrs = 0;
		return -ENOMEM;
	}
	if (kept)
		memcpy(w->cidrs, want, kept * sizeof(*w->cidrs));
	w->n_cidrs = kept;
	return first_err;
}
