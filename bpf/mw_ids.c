// SPDX-License-Identifier: Apache-2.0
/*
 * Map writer, ids and references: stable svc and backend ids (a cursor per
 * id range, the ranges the per-CPU counters cover first), one backend per
 * (family, address, port, protocol) with a reference per slot that names
 * it (the last reference deletes it from kpx_backends), and which svcport
 * owns each kpx_svc entry.
 * Owns: the backend tree and the id tables of struct kpx_map_writer.
 * Must not: write kpx_svc, kpx_slots or any map but kpx_backends.
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

void mw_ids_init(struct id_alloc *a, uint32_t soft, uint32_t max)
{
	memset(a, 0, sizeof(*a));
	a->max = max;
	a->soft = soft && soft < max ? soft : max;
	a->cur[0] = 1;
	a->cur[1] = a->soft;
}

static int id_range(const struct id_alloc *a, uint32_t id)
{
	return id >= a->soft;
}

/* An id found in the pins: the cursor of its range continues after it. */
void mw_id_taken(struct id_alloc *a, uint32_t id)
{
	int r = id_range(a, id);

	if (id >= a->cur[r])
		a->cur[r] = id + 1;
}

void mw_id_freed(struct id_alloc *a, uint32_t id)
{
	a->full[id_range(a, id)] = false;
}

int mw_entry_cmp(const void *a, const void *b)
{
	return memcmp(&((const struct svc_entry *)a)->key,
		      &((const struct svc_entry *)b)->key,
		      sizeof(struct kpx_svc_key));
}

static int be_cmp(const void *a, const void *b)
{
	return memcmp(&((const struct be_node *)a)->ident,
		      &((const struct be_node *)b)->ident,
		      sizeof(struct be_ident));
}

void mw_owner_set(struct svc_entry *e, struct sp_rec *r)
{
	if (e->owner == r)
		return;
	if (e->owner) {
		*e->oprev = e->onext;
		if (e->onext)
			e->onext->oprev = e->oprev;
	}
	e->owner = r;
	e->onext = NULL;
	e->oprev = NULL;
	if (r) {
		e->onext = r->ents;
		if (r->ents)
			r->ents->oprev = &e->onext;
		r->ents = e;
		e->oprev = &r->ents;
	}
}

bool mw_is_full(int err)
{
	return err == -E2BIG || err == -ENOSPC || err == -ENOMEM;
}

void mw_be_ident_of(struct be_ident *id, const struct kpx_backend_value *v)
{
	memset(id, 0, sizeof(*id));
	memcpy(id->addr, v->addr, 16);
	id->port = v->port;
	id->proto = v->proto;
	id->family = v->family;
}

struct be_node *mw_be_find(struct kpx_map_writer *w,
			       const struct be_ident *id)
{
	struct be_node q = { .ident = *id };
	void *p = tfind(&q, &w->backends, be_cmp);

	return p ? *(struct be_node **)p : NULL;
}

int mw_be_insert(struct kpx_map_writer *w, struct be_node *n)
{
	if (!tsearch(n, &w->backends, be_cmp))
		return -ENOMEM;
	w->be_by_id[n->id] = n;
	w->n_backends++;
	return 0;
}

void mw_be_forget(struct kpx_map_writer *w, struct be_node *n)
{
	tdelete(n, &w->backends, be_cmp);
	w->be_by_id[n->id] = NULL;
	w->n_backends--;
	mw_id_freed(&w->be_ids, n->id);
	free(n);
}

/* Drops one reference; the last one removes the backend from the map.
 * Callers drop references only after no kpx_svc value points at them. */
void mw_be_put(struct kpx_map_writer *w, uint32_t id)
{
	struct be_node *n = id < w->o.backends_max ? w->be_by_id[id] : NULL;
	int err;

	if (!n || !n->refs || --n->refs)
		return;
	err = w->ops.del(w->ops.ctx, KPX_MAP_BACKENDS, &id);
	if (err && err != -ENOENT)
		kpx_warn("kpx_backends: delete id %u: %s", id, strerror(-err));
	if (n->val.proto == IPPROTO_UDP && w->ops.udp_backend_gone)
		w->ops.udp_backend_gone(w->ops.ctx, &n->val);
	mw_be_forget(w, n);
}

/* Tells the backend about connected UDP sockets gone stale: id was in
 * the old set of e and is not among the n new ids. Before mw_be_put(). */
void mw_notify_removed(struct kpx_map_writer *w, const struct kpx_svc_key *k,
			   uint32_t id, const uint32_t *ids, size_t n)
{
	struct be_node *b = id < w->o.backends_max ? w->be_by_id[id] : NULL;

	if (!b || !w->ops.udp_backend_removed || k->proto != IPPROTO_UDP ||
	    k->scope != KPX_SCOPE_INTERNAL)
		return;
	for (size_t i = 0; i < n; i++)
		if (ids[i] == id)
			return;
	w->ops.udp_backend_removed(w->ops.ctx, k, &b->val);
}

uint32_t mw_alloc_id(void **by_id, struct id_alloc *a)
{
	/* Monotonic cursor with wrap-around: an id is reused only after
	 * every other one was handed out, so stale references (affinity
	 * entries, counters) rarely meet a recycled id. Ids below soft
	 * (the ones the per-CPU counter arrays cover) come first; ids above
	 * it only when every one below is taken. */
	uint32_t lo[2] = { 1, a->soft }, hi[2] = { a->soft, a->max };

	for (int r = 0; r < 2; r++) {
		uint32_t n = hi[r] > lo[r] ? hi[r] - lo[r] : 0;
		uint32_t start = a->cur[r] >= lo[r] && a->cur[r] < hi[r]
					 ? a->cur[r]
					 : lo[r];

		if (a->full[r])
			continue;
		for (uint32_t i = 0; i < n; i++) {
			uint32_t id = lo[r] + (start - lo[r] + i) % n;

			if (by_id[id])
				continue;
			a->cur[r] = id + 1;
			return id;
		}
		a->full[r] = true;
	}
	return 0;
}

/* Takes a reference on the backend for ep, creating it (map first). */
int mw_be_get(struct kpx_map_writer *w, const struct kpx_backend_value *v,
		  uint32_t *out)
{
	struct be_ident ident;
	struct be_node *n;
	int err;

	mw_be_ident_of(&ident, v);
	n = mw_be_find(w, &ident);
	if (n) {
		if (n->val.flags != v->flags) {
			/* Same endpoint, new state (local/terminating):
			 * in place, no slot refers to a different backend. */
			err = w->ops.update(w->ops.ctx, KPX_MAP_BACKENDS,
					    &n->id, v);
			if (err)
				return err;
			n->val.flags = v->flags;
		}
		n->refs++;
		*out = n->id;
		return 0;
	}
	n = calloc(1, sizeof(*n));
	if (!n)
		return -ENOMEM;
	n->ident = ident;
	n->val = *v;
	n->id = mw_alloc_id((void **)w->be_by_id, &w->be_ids);
	if (!n->id) {
		free(n);
		return -ENOSPC;
	}
	err = w->ops.update(w->ops.ctx, KPX_MAP_BACKENDS, &n->id, v);
	if (!err)
		err = mw_be_insert(w, n);
	if (err) {
		free(n);
		return err;
	}
	n->refs = 1;
	*out = n->id;
	return 0;
}
