// SPDX-License-Identifier: Apache-2.0
/*
 * The map writer (see map_writer.h), the diff: merges the plan with what
 * each svcport got last time (both sorted by id) and processes only new,
 * changed or failed svcports; wanted entries are matched against the
 * mirror, and only those that differ are written; entries of changed or
 * removed svcports that nobody wants any more are deleted. The first sync
 * after a (re)start and the one after kpx_map_writer_verify() go over
 * every svcport and every entry (the full reconcile).
 *
 * The other jobs live next to it: mw_ids.c (ids, references, ownership),
 * mw_translate.c (plan rows -> ABI values), mw_write.c (ordered writes),
 * mw_mirror.c (the pins read back, verify); map_ops.c (fd access).
 * Owns: the sync's order of work. Must not: encode ABI values itself.
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

/* ---- public ---- */

int kpx_map_writer_new(const struct kpx_map_ops *ops,
		       const struct kpx_map_writer_opts *opts,
		       struct kpx_map_writer **out)
{
	struct kpx_map_writer *w = calloc(1, sizeof(*w));
	int err;

	if (!w)
		return -ENOMEM;
	w->ops = *ops;
	w->o = *opts;
	if (!kpx_maglev_size_valid(w->o.maglev_size)) {
		kpx_err("bpf: maglev table size %u is not a prime > 2",
			w->o.maglev_size);
		free(w);
		return -EINVAL;
	}
	w->be_by_id = calloc(w->o.backends_max, sizeof(*w->be_by_id));
	w->svc_by_id = calloc(w->o.services_max, sizeof(*w->svc_by_id));
	w->prune = calloc(w->o.services_max, 1);
	mw_ids_init(&w->svc_ids, w->o.svc_ids_soft, w->o.services_max);
	mw_ids_init(&w->be_ids, w->o.be_ids_soft, w->o.backends_max);
	if (!w->be_by_id || !w->svc_by_id || !w->prune) {
		kpx_map_writer_free(w);
		return -ENOMEM;
	}
	err = mw_load_state(w);
	if (err) {
		kpx_err("bpf: reading pinned maps: %s", strerror(-err));
		kpx_map_writer_free(w);
		return err;
	}
	*out = w;
	return 0;
}

/* A svcport this sync processes: new, changed, failed last time, or
 * every one in a full sync. */
struct todo {
	const struct kpx_plan_svcport *sp;
	struct sp_rec *rec;
	bool fresh; /* rec allocated by this sync */
};

struct diff {
	struct todo *todo;
	size_t n_todo;
	struct sp_rec **next; /* the records after this sync, by id */
	size_t n_next;
	struct sp_rec **gone; /* svcports the plan no longer has */
	size_t n_gone;
};

static void diff_free(struct diff *d, bool undo)
{
	for (size_t i = 0; undo && i < d->n_todo; i++)
		if (d->todo[i].fresh)
			free(d->todo[i].rec);
	free(d->todo);
	free(d->next);
	free(d->gone);
}

static struct sp_rec *rec_new(const char *id)
{
	size_t len = strlen(id);
	struct sp_rec *r = calloc(1, sizeof(*r) + len + 1);

	if (r)
		memcpy(r->id, id, len + 1);
	return r;
}

/*
 * One merge walk of the plan and the records, both sorted by id. A plan
 * out of order (kpx_plan_build never gives one) costs work, not
 * correctness: its svcports look new, their records removed, and a
 * processed svcport takes over the entries of a removed one.
 */
static int diff_plan(struct kpx_map_writer *w, const struct kpx_plan *plan,
		     bool full, struct diff *d)
{
	size_t i = 0, j = 0, n = plan->n_svcports, cap = 0;

	memset(d, 0, sizeof(*d));
	while (i < n || j < w->n_recs) {
		const struct kpx_plan_svcport *sp =
			i < n ? &plan->svcports[i] : NULL;
		struct sp_rec *r = j < w->n_recs ? w->recs[j] : NULL;
		/* The plan's hash covers the id: an equal hash is the same
		 * svcport, unchanged, without reading its id (the common
		 * case; one cache line less per svcport). */
		int c = !sp ? -1 : !r ? 1 : r->hash == sp->hash ? 0 :
			strcmp(r->id, sp->id);
		bool fresh = false;

		/* The records array is rebuilt only from the first svcport
		 * added or removed on: a change in place allocates none. */
		if (c && !d->next) {
			d->next = malloc((n + 1) * sizeof(*d->next));
			d->gone = malloc((w->n_recs + 1) * sizeof(*d->gone));
			if (!d->next || !d->gone)
				return -ENOMEM;
			if (i)
				memcpy(d->next, w->recs, i * sizeof(*d->next));
			d->n_next = i;
		}
		if (c < 0) {
			d->gone[d->n_gone++] = r;
			j++;
			continue;
		}
		if (c > 0) {
			r = rec_new(sp->id);
			if (!r)
				return -ENOMEM;
			fresh = true;
		}
		if (fresh || full || r->retry || r->hash != sp->hash) {
			if (d->n_todo == cap) {
				size_t nc = cap ? 2 * cap : 64;
				void *p = realloc(d->todo, nc * sizeof(*d->todo));

				if (!p) {
					if (fresh)
						free(r);
					return -ENOMEM;
				}
				d->todo = p;
				cap = nc;
			}
			d->todo[d->n_todo++] = (struct todo){ sp, r, fresh };
		}
		if (d->next)
			d->next[d->n_next++] = r;
		i++;
		j += c == 0;
	}
	return 0;
}

/* The kpx_svc entries the svcports to process want, by key. */
static struct want *wants_build(struct kpx_map_writer *w,
				const struct diff *d, size_t *n_out)
{
	size_t n = 0, cap = 0;
	struct want *v = NULL;

	for (size_t t = 0; t < d->n_todo; t++) {
		const struct kpx_plan_svcport *sp = d->todo[t].sp;

		for (size_t f = 0; f < sp->n_frontends; f++) {
			for (uint8_t scope = 0; scope < 2; scope++) {
				if (n == cap) {
					void *p = realloc(
						v, (cap = cap ? 2 * cap : 256) *
							   sizeof(*v));
					if (!p) {
						free(v);
						return NULL;
					}
					v = p;
				}
				mw_want_fill(w, &v[n], sp, &sp->frontends[f],
					  scope);
				v[n].rec = d->todo[t].rec;
				v[n].ord = t;
				n++;
			}
		}
	}
	if (n)
		qsort(v, n, sizeof(*v), mw_want_sort_cmp);
	*n_out = n;
	return v ? v : calloc(1, sizeof(*v));
}

/* x lost its frontend to another svcport's entry. */
static void want_conflict(struct want *x)
{
	char ks[96];

	mw_svc_key_str(&x->key, ks, sizeof(ks));
	/* Retried every sync until the frontend is free: said once. */
	if (x->rec->retry)
		kpx_dbg(2, "bpf: frontend %s of %s still taken by another "
			   "service", ks, x->meta.name);
	else
		kpx_warn("bpf: frontend %s of %s duplicates one of another "
			 "service; ignored",
			 ks, x->meta.name);
	x->rec->failed = true;
}

/* Entries of r that no svcport wanted in this sync. */
static void delete_unwanted(struct kpx_map_writer *w, struct sp_rec *r)
{
	struct svc_entry *e, *next;

	for (e = r->ents; e; e = next) {
		next = e->onext;
		if (e->epoch != w->epoch)
			mw_entry_delete(w, e);
	}
}

struct stale {
	struct svc_entry **v;
	size_t n;
	uint64_t epoch;
};

static void collect_stale(const void *node, VISIT which, void *arg)
{
	struct svc_entry *e = *(struct svc_entry *const *)node;
	struct stale *st = arg;

	if (which != postorder && which != leaf)
		return;
	if (e->epoch != st->epoch)
		st->v[st->n++] = e;
}

/* Full sync: every entry no svcport wanted, including the ones read from
 * the pins that nobody owns. */
static int delete_stale(struct kpx_map_writer *w)
{
	struct stale stale = { .epoch = w->epoch };

	stale.v = calloc(w->n_entries + 1, sizeof(*stale.v));
	if (!stale.v)
		return -ENOMEM;
	twalk_r(w->entries, collect_stale, &stale);
	for (size_t i = 0; i < stale.n; i++)
		mw_entry_delete(w, stale.v[i]);
	free(stale.v);
	return 0;
}

int kpx_map_writer_sync(struct kpx_map_writer *w, const struct kpx_plan *plan)
{
	bool full = !w->reconciled;
	struct want *v = NULL;
	struct diff d;
	size_t n = 0;
	int first_err = 0, err;

	first_err = mw_cidrs_sync(w, plan);
	w->st.last_sync_failed = first_err != 0;
	err = diff_plan(w, plan, full, &d);
	if (!err && !(v = wants_build(w, &d, &n)))
		err = -ENOMEM;
	if (err) {
		diff_free(&d, true);
		kpx_err("bpf: map writer: out of memory computing the sync");
		w->st.last_sync_failed = true;
		return err;
	}
	w->epoch++;
	w->st.syncs++;
	for (size_t t = 0; t < d.n_todo; t++) {
		d.todo[t].rec->epoch = w->epoch;
		d.todo[t].rec->failed = false;
		d.todo[t].rec->write_failed = false;
	}
	for (size_t g = 0; g < d.n_gone; g++)
		d.gone[g]->epoch = w->epoch;
	for (size_t i = 0, j; i < n; i = j) {
		struct svc_entry q = { .key = v[i].key }, *e;
		size_t win = SIZE_MAX;
		void *p;

		for (j = i + 1; j < n && !mw_want_cmp(&v[i], &v[j]); j++)
			;
		p = tfind(&q, &w->entries, mw_entry_cmp);
		e = p ? *(struct svc_entry **)p : NULL;
		/* The entry of a svcport this sync leaves alone stays its
		 * own; else its owner (if it still wants it) keeps it, or
		 * the first svcport in plan order gets it. */
		if (!e || !e->owner || e->owner->epoch == w->epoch) {
			win = i;
			for (size_t k = i; e && k < j; k++)
				if (v[k].rec == e->owner) {
					win = k;
					break;
				}
		}
		for (size_t k = i; k < j; k++)
			if (k != win)
				want_conflict(&v[k]);
		if (win == SIZE_MAX)
			continue;
		if (e && mw_entry_matches(w, e, &v[win])) {
			e->epoch = w->epoch;
			mw_owner_set(e, v[win].rec);
			continue;
		}
		err = mw_entry_write(w, e, &v[win]);
		if (err) {
			v[win].rec->failed = true;
			v[win].rec->write_failed = true;
			if (!first_err)
				first_err = err;
		}
	}
	/* Deletes after writes: a frontend moving between services never
	 * disappears in between. */
	if (full) {
		err = delete_stale(w);
		if (err && !first_err)
			first_err = err;
		if (err)
			w->st.last_sync_failed = true;
	} else {
		for (size_t t = 0; t < d.n_todo; t++)
			delete_unwanted(w, d.todo[t].rec);
		for (size_t g = 0; g < d.n_gone; g++)
			delete_unwanted(w, d.gone[g]);
	}
	for (size_t g = 0; g < d.n_gone; g++) {
		/* Empty by now (taken over or deleted); never dangling. */
		while (d.gone[g]->ents)
			mw_owner_set(d.gone[g]->ents, NULL);
		free(d.gone[g]);
	}
	w->st.last_skipped = 0;
	for (size_t t = 0; t < d.n_todo; t++) {
		w->st.last_skipped += d.todo[t].rec->write_failed;
		d.todo[t].rec->hash = d.todo[t].sp->hash;
		d.todo[t].rec->retry = d.todo[t].rec->failed;
	}
	if (d.next) {
		free(w->recs);
		w->recs = d.next;
		w->n_recs = d.n_next;
		d.next = NULL;
	}
	w->st.last_svcports = (uint32_t)d.n_todo;
	w->st.last_sync_full = full;
	diff_free(&d, false);
	mw_affinity_prune(w);
	if (!w->reconciled) {
		/* First sync after (re)start: remove what no entry uses. */
		mw_reconcile(w, KPX_MAP_SLOTS, sizeof(struct kpx_slot_key),
			  mw_keep_slot);
		mw_reconcile(w, KPX_MAP_MAGLEV, sizeof(struct kpx_maglev_key),
			  mw_keep_maglev);
		mw_reconcile(w, KPX_MAP_SVC_META, sizeof(uint32_t), mw_keep_meta);
		mw_reconcile(w, KPX_MAP_SRC_RANGE,
			  sizeof(struct kpx_src_range_key), mw_keep_range);
		for (uint32_t id = 1; id < w->o.backends_max; id++) {
			struct be_node *b = w->be_by_id[id];

			if (b && b->refs == 0) {
				w->ops.del(w->ops.ctx, KPX_MAP_BACKENDS, &id);
				mw_be_forget(w, b);
			}
		}
		mw_reconcile(w, KPX_MAP_BACKENDS, sizeof(uint32_t), mw_keep_backend);
		w->reconciled = true;
	}
	free(v);
	w->st.entries = w->n_entries;
	w->st.backends = w->n_backends;
	w->st.slots = w->n_slots;
	if (!first_err)
		w->st.last_error[0] = '\0';
	return first_err;
}

void kpx_map_writer_get_stats(const struct kpx_map_writer *w,
			      struct kpx_map_writer_stats *out)
{
	*out = w->st;
}

static void free_entry(void *p)
{
	struct svc_entry *e = p;

	free(e->ids);
	free(e->ranges);
	free(e);
}

void kpx_map_writer_free(struct kpx_map_writer *w)
{
	if (!w)
		return;
	tdestroy(w->entries, free_entry);
	tdestroy(w->backends, free);
	for (size_t i = 0; i < w->n_recs; i++)
		free(w->recs[i]);
	free(w->recs);
	free(w->be_by_id);
	free(w->svc_by_id);
	free(w->prune);
	free(w->cidrs);
	for (int m = 0; m < KPX_MAP_N; m++)
		free(w->stale[m].v);
	free(w);
}
