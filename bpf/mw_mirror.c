// SPDX-License-Identifier: Apache-2.0
/*
 * Map writer, the mirror: reads the pinned maps back (batched where the
 * kernel can) into the writer's view of what is programmed at start, keeps
 * the keys nobody owns for the first sync's reconcile, and compares every
 * map with the mirror for the periodic resync (kpx_map_writer_verify).
 * Owns: loading and verifying. Must not: write service entries (it only
 * deletes keys nobody owns and repairs backends in place).
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

static int cidrs_load(struct kpx_map_writer *w);

/* ---- reading whole maps ---- */

int mw_keyvec_add(struct keyvec *kv, const void *k, size_t ksz)
{
	if (kv->n == kv->cap) {
		size_t cap = kv->cap ? 2 * kv->cap : 64;
		void *p = realloc(kv->v, cap * ksz);

		if (!p)
			return -ENOMEM;
		kv->v = p;
		kv->cap = cap;
	}
	memcpy(kv->v + kv->n++ * ksz, k, ksz);
	return 0;
}

/* Remembers key of map m for the first sync's mw_reconcile. */
static void stale_add(struct kpx_map_writer *w, enum kpx_map_id m,
		      const void *key, size_t ksz)
{
	if (mw_keyvec_add(&w->stale[m], key, ksz))
		w->load_err = -ENOMEM;
}

/* Key by key: next_key, and lookup when the values are wanted. */
static int dump_keys(struct kpx_map_writer *w, enum kpx_map_id m, size_t ksz,
		     size_t vsz, dump_fn fn, void *arg)
{
	uint8_t k[64], nk[64], *v = vsz ? malloc(vsz) : NULL;
	const void *prev = NULL;

	if (ksz > sizeof(k) || (vsz && !v)) {
		free(v);
		return -ENOMEM;
	}
	while (w->ops.next_key(w->ops.ctx, m, prev, nk) == 0) {
		memcpy(k, nk, ksz);
		prev = k;
		if (vsz && w->ops.lookup(w->ops.ctx, m, k, v))
			continue; /* deleted meanwhile */
		fn(w, k, v, arg);
	}
	free(v);
	return 0;
}

struct dump {
	struct kpx_map_writer *w;
	enum kpx_map_id m;
	size_t ksz, vsz;
	dump_fn fn;
	void *arg;
};

static int dump_batch(void *ctx, void *in, void *out, void *keys,
		      void *vals, uint32_t *count)
{
	struct dump *d = ctx;

	return d->w->ops.lookup_batch(d->w->ops.ctx, d->m, in, out, keys, vals,
				      count);
}

static int dump_chunk(const void *keys, const void *vals, uint32_t n,
		      void *arg)
{
	struct dump *d = arg;

	for (uint32_t i = 0; i < n; i++)
		d->fn(d->w, (const uint8_t *)keys + (size_t)i * d->ksz,
		      (const uint8_t *)vals + (size_t)i * d->vsz, d->arg);
	return 0;
}

/*
 * Calls fn for every entry of map m. Batched (bpf_map_lookup_batch: a few
 * thousand entries per syscall instead of two syscalls per entry) where
 * ops and map support it, which is what makes re-reading the pins for a
 * full resync cheap. fn must not change map m.
 */
int mw_map_dump(struct kpx_map_writer *w, enum kpx_map_id m, size_t ksz,
		    size_t vsz, dump_fn fn, void *arg)
{
	struct dump d = { w, m, ksz, vsz, fn, arg };
	struct kpx_map_walk mw = { .lookup_batch = dump_batch,
				   .ctx = &d,
				   .key_size = ksz,
				   .value_size = vsz,
				   .chunk = 4096 };
	int err;

	if (!w->ops.lookup_batch || !vsz)
		return dump_keys(w, m, ksz, vsz, fn, arg);
	err = kpx_map_walk(&mw, dump_chunk, &d);
	if (err && kpx_map_no_batch(mw.first_err))
		return dump_keys(w, m, ksz, vsz, fn, arg);
	if (err)
		kpx_warn("bpf: reading map %s: %s", kpx_map_names[m],
			 strerror(-err));
	return err;
}

/* ---- reading the pinned state ---- */

static void load_backend(struct kpx_map_writer *w, const void *key,
			 const void *val, void *arg)
{
	uint32_t id = *(const uint32_t *)key;
	struct be_node *n;

	(void)arg;
	if (id == 0 || id >= w->o.backends_max)
		goto stale;
	n = calloc(1, sizeof(*n));
	if (!n) {
		w->load_err = -ENOMEM;
		return;
	}
	memcpy(&n->val, val, sizeof(n->val));
	n->id = id;
	mw_be_ident_of(&n->ident, &n->val);
	if (mw_be_find(w, &n->ident)) {
		free(n); /* duplicate identity: an orphan */
		goto stale;
	}
	if (mw_be_insert(w, n)) {
		free(n);
		w->load_err = -ENOMEM;
		return;
	}
	mw_id_taken(&w->be_ids, id);
	return;
stale:
	stale_add(w, KPX_MAP_BACKENDS, &id, sizeof(id));
}

static void load_svc(struct kpx_map_writer *w, const void *key,
		     const void *val, void *arg)
{
	struct svc_entry *e = calloc(1, sizeof(*e));

	(void)arg;
	if (!e) {
		w->load_err = -ENOMEM;
		return;
	}
	memcpy(&e->key, key, sizeof(e->key));
	memcpy(&e->val, val, sizeof(e->val));
	if (e->val.svc_id == 0 || e->val.svc_id >= w->o.services_max ||
	    w->svc_by_id[e->val.svc_id]) {
		/* Unusable: its key is deleted once the walk is done. */
		stale_add(w, KPX_MAP_SVC, key, sizeof(e->key));
		free(e);
		return;
	}
	/* Slots are filled from the kpx_slots walk; 0 (none) forces a
	 * rewrite of the entry. */
	e->ids = calloc(e->val.count + 1, sizeof(*e->ids));
	if (!e->ids || !tsearch(e, &w->entries, mw_entry_cmp)) {
		free(e->ids);
		free(e);
		w->load_err = -ENOMEM;
		return;
	}
	w->svc_by_id[e->val.svc_id] = e;
	w->n_entries++;
	mw_id_taken(&w->svc_ids, e->val.svc_id);
}

static struct svc_entry *entry_by_id(struct kpx_map_writer *w, uint32_t id)
{
	return id < w->o.services_max ? w->svc_by_id[id] : NULL;
}

static void load_slot(struct kpx_map_writer *w, const void *key,
		      const void *val, void *arg)
{
	const struct kpx_slot_key *k = key;
	struct svc_entry *e = entry_by_id(w, k->svc_id);

	(void)arg;
	if (e && k->gen == e->val.gen && k->slot < e->val.count) {
		memcpy(&e->ids[k->slot], val, sizeof(uint32_t));
		return;
	}
	stale_add(w, KPX_MAP_SLOTS, k, sizeof(*k));
}

static void load_meta(struct kpx_map_writer *w, const void *key,
		      const void *val, void *arg)
{
	struct svc_entry *e = entry_by_id(w, *(const uint32_t *)key);

	(void)arg;
	if (e)
		memcpy(&e->meta, val, sizeof(e->meta));
	else
		stale_add(w, KPX_MAP_SVC_META, key, sizeof(uint32_t));
}

static void load_range(struct kpx_map_writer *w, const void *key,
		       const void *val, void *arg)
{
	const struct kpx_src_range_key *rk = key;
	struct svc_entry *e = entry_by_id(w, rk->svc_id);
	void *p;

	(void)val;
	(void)arg;
	if (!e) {
		stale_add(w, KPX_MAP_SRC_RANGE, rk, sizeof(*rk));
		return;
	}
	p = realloc(e->ranges, (e->n_ranges + 1) * sizeof(*e->ranges));
	if (!p) {
		w->load_err = -ENOMEM;
		return;
	}
	e->ranges = p;
	e->ranges[e->n_ranges++] = *rk;
}


static void load_maglev(struct kpx_map_writer *w, const void *key,
			const void *val, void *arg)
{
	(void)val;
	(void)arg;
	if (!mw_keep_maglev(w, key))
		stale_add(w, KPX_MAP_MAGLEV, key, sizeof(struct kpx_maglev_key));
}

/*
 * One pass over each pinned map (batched): backends, entries, their
 * slots and names, source ranges, maglev keys (keys only: values are
 * whole tables). What belongs to nothing is remembered for the first
 * sync's mw_reconcile instead of a second walk then.
 */
int mw_load_state(struct kpx_map_writer *w)
{
	struct keyvec *bad = &w->stale[KPX_MAP_SVC];
	int err;

	/* Backends first: entries take references on them. */
	err = mw_map_dump(w, KPX_MAP_BACKENDS, sizeof(uint32_t),
		       sizeof(struct kpx_backend_value), load_backend, NULL);
	if (!err)
		err = mw_map_dump(w, KPX_MAP_SVC, sizeof(struct kpx_svc_key),
			       sizeof(struct kpx_svc_value), load_svc, NULL);
	for (size_t i = 0; i < bad->n; i++)
		w->ops.del(w->ops.ctx, KPX_MAP_SVC,
			   bad->v + i * sizeof(struct kpx_svc_key));
	bad->n = 0;
	if (!err)
		err = mw_map_dump(w, KPX_MAP_SLOTS, sizeof(struct kpx_slot_key),
			       sizeof(uint32_t), load_slot, NULL);
	for (uint32_t id = 1; !err && id < w->o.services_max; id++) {
		struct svc_entry *e = w->svc_by_id[id];

		for (uint32_t i = 0; e && i < e->val.count; i++) {
			struct be_node *n = e->ids[i] < w->o.backends_max
						    ? w->be_by_id[e->ids[i]]
						    : NULL;

			if (n)
				n->refs++;
			else
				e->ids[i] = 0; /* forces a rewrite */
		}
		if (e)
			w->n_slots += e->val.count;
	}
	if (!err)
		err = mw_map_dump(w, KPX_MAP_SVC_META, sizeof(uint32_t),
			       sizeof(struct kpx_svc_meta), load_meta, NULL);
	/* Source ranges belong to their entry by svc id. */
	if (!err)
		err = mw_map_dump(w, KPX_MAP_SRC_RANGE,
			       sizeof(struct kpx_src_range_key), 1, load_range,
			       NULL);
	if (!err)
		err = mw_map_dump(w, KPX_MAP_MAGLEV, sizeof(struct kpx_maglev_key),
			       0, load_maglev, NULL);
	if (!err)
		err = cidrs_load(w);
	return err ? err : w->load_err;
}

/* Deletes the remembered stale keys of map m that keep() still rejects. */
void mw_reconcile(struct kpx_map_writer *w, enum kpx_map_id m, size_t ksz,
		      bool (*keep)(struct kpx_map_writer *, const void *))
{
	struct keyvec *kv = &w->stale[m];
	size_t n = 0;

	for (size_t i = 0; i < kv->n; i++) {
		const void *k = kv->v + i * ksz;

		if (keep(w, k))
			continue;
		if (w->ops.del(w->ops.ctx, m, k) == 0)
			n++;
	}
	if (n)
		kpx_info("bpf: mw_reconcile removed %zu stale %s entries", n,
			 kpx_map_names[m]);
	free(kv->v);
	memset(kv, 0, sizeof(*kv));
}

bool mw_keep_slot(struct kpx_map_writer *w, const void *key)
{
	const struct kpx_slot_key *k = key;
	struct svc_entry *e = entry_by_id(w, k->svc_id);

	return e && k->gen == e->val.gen && k->slot < e->val.count;
}

bool mw_keep_maglev(struct kpx_map_writer *w, const void *key)
{
	const struct kpx_maglev_key *k = key;
	struct svc_entry *e = entry_by_id(w, k->svc_id);

	return e && k->gen == e->val.gen && (e->val.flags & KPX_SVC_F_MAGLEV);
}

bool mw_keep_meta(struct kpx_map_writer *w, const void *key)
{
	uint32_t id = *(const uint32_t *)key;

	return id < w->o.services_max && w->svc_by_id[id];
}

bool mw_keep_range(struct kpx_map_writer *w, const void *key)
{
	const struct kpx_src_range_key *k = key;
	struct svc_entry *e = entry_by_id(w, k->svc_id);

	return e && mw_range_in(k, e->ranges, e->n_ranges);
}

bool mw_keep_backend(struct kpx_map_writer *w, const void *key)
{
	uint32_t id = *(const uint32_t *)key;

	return id < w->o.backends_max && w->be_by_id[id] &&
	       w->be_by_id[id]->id == id;
}

/* ---- verifying the maps against the mirror (periodic resync) ---- */

static void ver_svc(struct kpx_map_writer *w, const void *key, const void *val,
		    void *arg)
{
	struct svc_entry q, *e;
	void *p;

	(void)arg;
	/* By the id in the value first: no tree search when it is right. */
	e = entry_by_id(w, ((const struct kpx_svc_value *)val)->svc_id);
	if (!e || memcmp(&e->key, key, sizeof(e->key))) {
		memcpy(&q.key, key, sizeof(q.key));
		p = tfind(&q, &w->entries, mw_entry_cmp);
		e = p ? *(struct svc_entry **)p : NULL;
	}
	if (!e) {
		stale_add(w, KPX_MAP_SVC, key, sizeof(q.key));
		return;
	}
	e->seen = true;
	if (memcmp(val, &e->val, sizeof(e->val)))
		e->dirty = true;
}

static void ver_slot(struct kpx_map_writer *w, const void *key,
		     const void *val, void *arg)
{
	const struct kpx_slot_key *k = key;
	struct svc_entry *e = entry_by_id(w, k->svc_id);

	(void)arg;
	if (e && k->gen == e->val.gen && k->slot < e->val.count) {
		if (memcmp(&e->ids[k->slot], val, sizeof(uint32_t)))
			e->dirty = true;
		e->seen_slots++;
		return;
	}
	stale_add(w, KPX_MAP_SLOTS, k, sizeof(*k));
}

static void ver_backend(struct kpx_map_writer *w, const void *key,
			const void *val, void *arg)
{
	uint32_t id = *(const uint32_t *)key;
	struct be_node *b = id < w->o.backends_max ? w->be_by_id[id] : NULL;

	if (!b) {
		stale_add(w, KPX_MAP_BACKENDS, &id, sizeof(id));
		return;
	}
	b->seen = true;
	if (memcmp(val, &b->val, sizeof(b->val))) {
		/* In place: every slot that names id means this backend. */
		w->ops.update(w->ops.ctx, KPX_MAP_BACKENDS, &id, &b->val);
		(*(size_t *)arg)++;
	}
}

static void ver_meta(struct kpx_map_writer *w, const void *key,
		     const void *val, void *arg)
{
	struct svc_entry *e = entry_by_id(w, *(const uint32_t *)key);

	(void)arg;
	if (!e) {
		stale_add(w, KPX_MAP_SVC_META, key, sizeof(uint32_t));
		return;
	}
	e->seen_meta = true;
	if (memcmp(val, &e->meta, sizeof(e->meta)))
		e->dirty = true;
}

static void ver_range(struct kpx_map_writer *w, const void *key,
		      const void *val, void *arg)
{
	const struct kpx_src_range_key *rk = key;
	struct svc_entry *e = entry_by_id(w, rk->svc_id);

	(void)val;
	(void)arg;
	if (e && mw_range_in(rk, e->ranges, e->n_ranges)) {
		e->seen_ranges++;
		return;
	}
	stale_add(w, KPX_MAP_SRC_RANGE, rk, sizeof(*rk));
}

static void ver_maglev(struct kpx_map_writer *w, const void *key,
		       const void *val, void *arg)
{
	const struct kpx_maglev_key *k = key;

	(void)val;
	(void)arg;
	if (mw_keep_maglev(w, key))
		entry_by_id(w, k->svc_id)->seen_maglev = true;
	else
		stale_add(w, KPX_MAP_MAGLEV, key, sizeof(*k));
}

int kpx_map_writer_verify(struct kpx_map_writer *w)
{
	struct keyvec *bad = &w->stale[KPX_MAP_SVC];
	size_t be_fixed = 0, dirty = 0;
	int err;

	w->load_err = 0;
	err = mw_map_dump(w, KPX_MAP_SVC, sizeof(struct kpx_svc_key),
		       sizeof(struct kpx_svc_value), ver_svc, NULL);
	if (!err)
		err = mw_map_dump(w, KPX_MAP_SLOTS, sizeof(struct kpx_slot_key),
			       sizeof(uint32_t), ver_slot, NULL);
	if (!err)
		err = mw_map_dump(w, KPX_MAP_BACKENDS, sizeof(uint32_t),
			       sizeof(struct kpx_backend_value), ver_backend,
			       &be_fixed);
	if (!err)
		err = mw_map_dump(w, KPX_MAP_SVC_META, sizeof(uint32_t),
			       sizeof(struct kpx_svc_meta), ver_meta, NULL);
	if (!err)
		err = mw_map_dump(w, KPX_MAP_SRC_RANGE,
			       sizeof(struct kpx_src_range_key), 1, ver_range,
			       NULL);
	if (!err)
		err = mw_map_dump(w, KPX_MAP_MAGLEV, sizeof(struct kpx_maglev_key),
			       0, ver_maglev, NULL);
	/* the next sync repairs what differs from the plan */
	if (!err)
		err = cidrs_load(w);
	if (!err)
		err = w->load_err;
	/* Keys no entry of the mirror has: deleted now, before the sync
	 * that may write the same frontend again under a fresh id. */
	for (size_t i = 0; !err && i < bad->n; i++)
		w->ops.del(w->ops.ctx, KPX_MAP_SVC,
			   bad->v + i * sizeof(struct kpx_svc_key));
	bad->n = 0;
	for (uint32_t id = 1; id < w->o.services_max; id++) {
		struct svc_entry *e = w->svc_by_id[id];

		if (!e)
			continue;
		if (!err && (!e->seen || e->seen_slots != e->val.count ||
			     !e->seen_meta || e->seen_ranges != e->n_ranges ||
			     ((e->val.flags & KPX_SVC_F_MAGLEV) && e->val.count &&
			      !e->seen_maglev)))
			e->dirty = true;
		dirty += e->dirty;
		e->seen = e->seen_meta = e->seen_maglev = false;
		e->seen_slots = e->seen_ranges = 0;
	}
	for (uint32_t id = 1; id < w->o.backends_max; id++) {
		struct be_node *b = w->be_by_id[id];

		if (!b)
			continue;
		if (!err && !b->seen) {
			w->ops.update(w->ops.ctx, KPX_MAP_BACKENDS, &id, &b->val);
			be_fixed++;
		}
		b->seen = false;
	}
	if (err) {
		kpx_warn("bpf: verifying the maps: %s", strerror(-err));
		return err;
	}
	if (dirty || be_fixed)
		kpx_warn("bpf: resync: %zu service entries and %zu backends "
			 "differed from what kpx programmed; repairing",
			 dirty, be_fixed);
	/* The next sync rewrites dirty entries and deletes stale keys. */
	w->reconciled = false;
	return 0;
}

/* ---- kpx_cluster_cidr: the operand of KPX_SVC_F_SNAT_OFF_CLUSTER ---- */

static void load_cidr(struct kpx_map_writer *w, const void *key,
		      const void *val, void *arg)
{
	void *p = realloc(w->cidrs, (w->n_cidrs + 1) * sizeof(*w->cidrs));

	(void)val;
	(void)arg;
	if (!p) {
		w->load_err = -ENOMEM;
		return;
	}
	w->cidrs = p;
	memcpy(&w->cidrs[w->n_cidrs++], key, sizeof(*w->cidrs));
}

static int cidrs_load(struct kpx_map_writer *w)
{
	free(w->cidrs);
	w->cidrs = NULL;
	w->n_cidrs = 0;
	return mw_map_dump(w, KPX_MAP_CLUSTER_CIDR, sizeof(struct kpx_cidr_key),
			0, load_cidr, NULL);
}
