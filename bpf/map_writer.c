// SPDX-License-Identifier: Apache-2.0
/*
 * The map writer (see map_writer.h). Keeps a mirror of what is programmed
 * (read back from the pinned maps at start), computes the desired kpx_svc
 * entries from the plan and writes only the entries that differ, each one
 * atomically: backends, slots (and maglev table) of the inactive
 * generation, flip of the kpx_svc value, then removal of what the old
 * generation used.
 */
#include <errno.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "bpf/maglev.h"
#include "bpf/map_writer.h"
#include "common/log.h"

const char *const kpx_map_names[KPX_MAP_N] = {
	[KPX_MAP_SVC] = "kpx_svc",
	[KPX_MAP_SLOTS] = "kpx_slots",
	[KPX_MAP_BACKENDS] = "kpx_backends",
	[KPX_MAP_MAGLEV] = "kpx_maglev",
	[KPX_MAP_SVC_META] = "kpx_svc_meta",
	[KPX_MAP_SRC_RANGE] = "kpx_src_range",
	[KPX_MAP_AFFINITY] = "kpx_affinity",
};

uint32_t kpx_map_writer_slots_capacity(uint32_t services_max,
				       uint32_t backends_max)
{
	uint64_t n = 4ull * (services_max > backends_max ? services_max
							  : backends_max);

	return n > (1u << 24) ? (1u << 24) : (uint32_t)n;
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

const struct kpx_map_ops kpx_map_fd_ops = {
	.lookup = fd_lookup,
	.update = fd_update,
	.del = fd_del,
	.next_key = fd_next,
};

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
};

struct svc_entry {
	struct kpx_svc_key key;
	struct kpx_svc_value val; /* as programmed */
	uint32_t *ids;		  /* val.count backend ids, slot order */
	struct kpx_svc_meta meta;
	struct kpx_src_range_key *ranges;
	size_t n_ranges;
	uint64_t epoch; /* last sync that wanted it */
};

/* One desired kpx_svc entry, pointing into the plan. */
struct want {
	struct kpx_svc_key key;
	uint8_t flags, kind;
	uint32_t affinity_timeout;
	const struct kpx_plan_svcport *sp;
	const uint32_t *set; /* indices into sp->endpoints */
	size_t n;
	struct kpx_svc_meta meta;
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
	uint32_t next_svc, next_be;
	uint64_t epoch;
	bool reconciled;
	struct kpx_map_writer_stats st;
};

static int entry_cmp(const void *a, const void *b)
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

static bool is_full(int err)
{
	return err == -E2BIG || err == -ENOSPC || err == -ENOMEM;
}

static void be_ident_of(struct be_ident *id, const struct kpx_backend_value *v)
{
	memset(id, 0, sizeof(*id));
	memcpy(id->addr, v->addr, 16);
	id->port = v->port;
	id->proto = v->proto;
	id->family = v->family;
}

static struct be_node *be_find(struct kpx_map_writer *w,
			       const struct be_ident *id)
{
	struct be_node q = { .ident = *id };
	void *p = tfind(&q, &w->backends, be_cmp);

	return p ? *(struct be_node **)p : NULL;
}

static int be_insert(struct kpx_map_writer *w, struct be_node *n)
{
	if (!tsearch(n, &w->backends, be_cmp))
		return -ENOMEM;
	w->be_by_id[n->id] = n;
	return 0;
}

static void be_forget(struct kpx_map_writer *w, struct be_node *n)
{
	tdelete(n, &w->backends, be_cmp);
	w->be_by_id[n->id] = NULL;
	free(n);
}

/* Drops one reference; the last one removes the backend from the map.
 * Callers drop references only after no kpx_svc value points at them. */
static void be_put(struct kpx_map_writer *w, uint32_t id)
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
	be_forget(w, n);
}

/* Tells the backend about connected UDP sockets gone stale: id was in
 * the old set of e and is not among the n new ids. Before be_put(). */
static void notify_removed(struct kpx_map_writer *w, const struct kpx_svc_key *k,
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

static uint32_t alloc_id(void **by_id, uint32_t max, uint32_t *cursor)
{
	/* Monotonic cursor with wrap-around: an id is reused only after
	 * every other one was handed out, so stale references (affinity
	 * entries, counters) rarely meet a recycled id. */
	for (uint32_t i = 0; i < max; i++) {
		uint32_t id = (*cursor + i) % max;

		if (id == 0 || by_id[id])
			continue;
		*cursor = id + 1;
		return id;
	}
	return 0;
}

/* Takes a reference on the backend for ep, creating it (map first). */
static int be_get(struct kpx_map_writer *w, const struct kpx_backend_value *v,
		  uint32_t *out)
{
	struct be_ident ident;
	struct be_node *n;
	int err;

	be_ident_of(&ident, v);
	n = be_find(w, &ident);
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
	n->id = alloc_id((void **)w->be_by_id, w->o.backends_max, &w->next_be);
	if (!n->id) {
		free(n);
		return -ENOSPC;
	}
	err = w->ops.update(w->ops.ctx, KPX_MAP_BACKENDS, &n->id, v);
	if (!err)
		err = be_insert(w, n);
	if (err) {
		free(n);
		return err;
	}
	n->refs = 1;
	*out = n->id;
	return 0;
}

static void backend_value_of(struct kpx_backend_value *v,
			     const struct kpx_plan_svcport *sp,
			     const struct kpx_plan_endpoint *ep)
{
	memset(v, 0, sizeof(*v));
	memcpy(v->addr, ep->addr.bytes, ep->addr.family == AF_INET ? 4 : 16);
	v->port = htons(ep->port);
	v->proto = sp->proto;
	v->family = ep->addr.family == AF_INET ? KPX_AF_INET : KPX_AF_INET6;
	if (ep->flags & KPX_EP_LOCAL)
		v->flags |= KPX_BE_F_LOCAL;
	if (ep->flags & KPX_EP_TERMINATING)
		v->flags |= KPX_BE_F_TERMINATING;
}

/* ---- desired state ---- */

static uint8_t fe_type(enum kpx_fe_kind k)
{
	switch (k) {
	case KPX_FE_NODE_PORT:
		return KPX_FE_TYPE_NODE_PORT;
	case KPX_FE_EXTERNAL_IP:
		return KPX_FE_TYPE_EXTERNAL_IP;
	case KPX_FE_LOAD_BALANCER:
		return KPX_FE_TYPE_LOAD_BALANCER;
	default:
		return KPX_FE_TYPE_CLUSTER_IP;
	}
}

static void want_fill(struct kpx_map_writer *w, struct want *x,
		      const struct kpx_plan_svcport *sp,
		      const struct kpx_plan_frontend *fe, uint8_t scope)
{
	enum kpx_empty_action empty;

	memset(x, 0, sizeof(*x));
	memcpy(x->key.addr, fe->addr.bytes,
	       fe->addr.family == AF_INET ? 4 : 16);
	x->key.port = htons(fe->port);
	x->key.proto = sp->proto;
	x->key.scope = scope;
	x->key.family = fe->addr.family == AF_INET ? KPX_AF_INET
						   : KPX_AF_INET6;
	x->kind = fe_type(fe->kind);
	x->sp = sp;
	if (!fe->external) {
		/* ClusterIP: local sockets and tc both use the internal set. */
		x->set = sp->internal;
		x->n = sp->n_internal;
		empty = sp->internal_empty;
		if (sp->itp_local)
			x->flags |= KPX_SVC_F_LOCAL_ONLY;
	} else if (scope == KPX_SCOPE_INTERNAL) {
		/* Local clients of an external frontend: cluster set. */
		x->set = sp->cluster;
		x->n = sp->n_cluster;
		empty = KPX_EMPTY_REJECT;
	} else {
		x->set = sp->external;
		x->n = sp->n_external;
		empty = sp->external_empty;
		if (sp->etp_local)
			x->flags |= KPX_SVC_F_LOCAL_ONLY;
		else
			x->flags |= KPX_SVC_F_SNAT;
		if (fe->kind == KPX_FE_LOAD_BALANCER && sp->n_source_ranges)
			x->flags |= KPX_SVC_F_SOURCE_RANGES;
	}
	if (empty == KPX_EMPTY_DROP)
		x->flags |= KPX_SVC_F_EMPTY_DROP;
	if (sp->affinity_timeout) {
		x->flags |= KPX_SVC_F_AFFINITY;
		x->affinity_timeout = sp->affinity_timeout;
	}
	if (w->o.alg == KPX_LB_MAGLEV)
		x->flags |= KPX_SVC_F_MAGLEV;
	if (x->n > UINT16_MAX)
		x->n = UINT16_MAX;
	/* Names longer than the ABI field are cut (dumps only). */
	{
		char full[KPX_NS_MAX + KPX_NAME_MAX + KPX_PORTNAME_MAX + 4] = {0};
		int l = snprintf(full, sizeof(full), "%s/%s:%s", sp->ns,
				 sp->name, sp->port_name);

		(void)l;
		memcpy(x->meta.name, full, sizeof(x->meta.name) - 1);
	}
	memcpy(x->meta.addr, x->key.addr, 16);
	x->meta.port = x->key.port;
	x->meta.proto = x->key.proto;
	x->meta.family = x->key.family;
	x->meta.kind = x->kind;
	x->meta.scope = scope;
}

static int want_cmp(const void *a, const void *b)
{
	return memcmp(&((const struct want *)a)->key,
		      &((const struct want *)b)->key,
		      sizeof(struct kpx_svc_key));
}

static size_t want_ranges(const struct want *x, uint32_t svc_id,
			  struct kpx_src_range_key *out)
{
	size_t n = 0;

	if (!(x->flags & KPX_SVC_F_SOURCE_RANGES))
		return 0;
	for (size_t i = 0; i < x->sp->n_source_ranges; i++) {
		const struct kpx_cidr *c = &x->sp->source_ranges[i];

		memset(&out[n], 0, sizeof(out[n]));
		out[n].prefixlen = 32 + c->prefix;
		out[n].svc_id = svc_id;
		memcpy(out[n].addr, c->addr.bytes,
		       c->addr.family == AF_INET ? 4 : 16);
		n++;
	}
	return n;
}

static bool range_in(const struct kpx_src_range_key *r,
		     const struct kpx_src_range_key *set, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!memcmp(r, &set[i], sizeof(*r)))
			return true;
	return false;
}

/* Whether e already is exactly x (then nothing is written). */
static bool entry_matches(struct kpx_map_writer *w, const struct svc_entry *e,
			  const struct want *x)
{
	struct kpx_src_range_key *r;
	size_t nr;
	bool ok;

	if (e->val.flags != x->flags || e->val.kind != x->kind ||
	    e->val.affinity_timeout != x->affinity_timeout ||
	    e->val.count != x->n || memcmp(&e->meta, &x->meta, sizeof(e->meta)))
		return false;
	for (size_t i = 0; i < x->n; i++) {
		struct kpx_backend_value v;
		struct be_ident ident;
		struct be_node *n;

		backend_value_of(&v, x->sp, &x->sp->endpoints[x->set[i]]);
		be_ident_of(&ident, &v);
		n = be_find(w, &ident);
		if (!n || n->id != e->ids[i] || n->val.flags != v.flags)
			return false;
	}
	r = calloc(x->sp->n_source_ranges + 1, sizeof(*r));
	if (!r)
		return false;
	nr = want_ranges(x, e->val.svc_id, r);
	ok = nr == e->n_ranges;
	for (size_t i = 0; ok && i < nr; i++)
		ok = range_in(&r[i], e->ranges, e->n_ranges);
	free(r);
	return ok;
}

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
static void affinity_prune(struct kpx_map_writer *w)
{
	struct kpx_affinity_key k, next, *del = NULL;
	size_t n_del = 0, cap = 0;
	const void *prev = NULL;

	if (!w->n_prune)
		return;
	while (w->ops.next_key(w->ops.ctx, KPX_MAP_AFFINITY, prev, &next) == 0) {
		struct kpx_affinity_value v;
		const struct svc_entry *e;
		bool kept = false;

		k = next;
		prev = &k;
		if (k.svc_id >= w->o.services_max || !w->prune[k.svc_id] ||
		    w->ops.lookup(w->ops.ctx, KPX_MAP_AFFINITY, &k, &v))
			continue;
		e = w->svc_by_id[k.svc_id];
		for (size_t i = 0; e && i < e->val.count && !kept; i++)
			kept = e->ids[i] == v.backend_id;
		if (kept)
			continue;
		if (n_del == cap) {
			void *p = realloc(del, (cap = cap ? 2 * cap : 64) *
						       sizeof(*del));
			if (!p)
				break;
			del = p;
		}
		del[n_del++] = k;
	}
	for (size_t i = 0; i < n_del; i++)
		w->ops.del(w->ops.ctx, KPX_MAP_AFFINITY, &del[i]);
	free(del);
	memset(w->prune, 0, w->o.services_max);
	w->n_prune = 0;
}

static void svc_key_str(const struct kpx_svc_key *k, char *buf, size_t len)
{
	struct kpx_addr a = { .family = k->family == KPX_AF_INET ? AF_INET
								 : AF_INET6 };
	char s[KPX_ADDR_STRLEN];

	memcpy(a.bytes, k->addr, 16);
	snprintf(buf, len, "%s:%u/%u/%s", kpx_addr_str(&a, s), ntohs(k->port),
		 k->proto, k->scope == KPX_SCOPE_INTERNAL ? "internal"
							  : "external");
}

static int entry_write(struct kpx_map_writer *w, struct svc_entry *e,
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
	int err = -ENOMEM;

	if (!ids || !ranges)
		goto fail;
	if (is_new) {
		e = calloc(1, sizeof(*e));
		if (!e)
			goto fail;
		e->key = x->key;
		e->val.svc_id = alloc_id((void **)w->svc_by_id,
					 w->o.services_max, &w->next_svc);
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

		backend_value_of(&v, x->sp, &x->sp->endpoints[x->set[got]]);
		err = be_get(w, &v, &ids[got]);
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
	nr = want_ranges(x, val.svc_id, ranges);
	for (added_r = 0; added_r < nr; added_r++) {
		uint8_t one = 1;

		err = w->ops.update(w->ops.ctx, KPX_MAP_SRC_RANGE,
				    &ranges[added_r], &one);
		if (err)
			goto fail;
	}
	step = "kpx_svc_meta";
	if (is_new || memcmp(&e->meta, &x->meta, sizeof(x->meta))) {
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
			if (!range_in(&e->ranges[i], ranges, nr))
				w->ops.del(w->ops.ctx, KPX_MAP_SRC_RANGE,
					   &e->ranges[i]);
		if (e->val.flags & KPX_SVC_F_AFFINITY)
			affinity_mark(w, val.svc_id);
		for (size_t i = 0; i < e->val.count; i++) {
			notify_removed(w, &e->key, e->ids[i], ids, x->n);
			be_put(w, e->ids[i]);
		}
		free(e->ids);
		free(e->ranges);
	} else {
		if (!tsearch(e, &w->entries, entry_cmp)) {
			/* The kernel has it; only our mirror lacks it. The
			 * next start reconciles from the pins. */
			kpx_err("map writer: out of memory");
		}
		w->svc_by_id[val.svc_id] = e;
	}
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
			if (is_new || !range_in(&ranges[i], e->ranges,
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
		be_put(w, ids[i]);
	if (is_new && e)
		free(e);
	else if (e)
		e->epoch = w->epoch; /* keep the old state */
	free(ids);
	free(ranges);
	{
		char ks[96];

		svc_key_str(&x->key, ks, sizeof(ks));
		snprintf(w->st.last_error, sizeof(w->st.last_error),
			 "service %s (%s): %s: %s", x->meta.name, ks, step,
			 is_full(err) ? "map full" : strerror(-err));
		kpx_err("bpf: cannot write %s; keeping its previous state",
			w->st.last_error);
	}
	w->st.errors++;
	if (is_full(err))
		w->st.full++;
	return err;
}

static void entry_delete(struct kpx_map_writer *w, struct svc_entry *e)
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
		notify_removed(w, &e->key, e->ids[i], NULL, 0);
		be_put(w, e->ids[i]);
	}
	tdelete(e, &w->entries, entry_cmp);
	w->svc_by_id[e->val.svc_id] = NULL;
	free(e->ids);
	free(e->ranges);
	free(e);
}

/* ---- reading the pinned state ---- */

static int load_state(struct kpx_map_writer *w)
{
	struct kpx_svc_key k, nk;
	const void *prev = NULL;
	uint32_t id, nid;
	int err;

	/* Backends first: entries take references on them. */
	for (prev = NULL; w->ops.next_key(w->ops.ctx, KPX_MAP_BACKENDS, prev,
					  &nid) == 0;
	     prev = &id) {
		struct be_node *n;

		id = nid;
		if (id == 0 || id >= w->o.backends_max)
			continue; /* removed by the reconcile sweep */
		n = calloc(1, sizeof(*n));
		if (!n)
			return -ENOMEM;
		if (w->ops.lookup(w->ops.ctx, KPX_MAP_BACKENDS, &id, &n->val)) {
			free(n);
			continue;
		}
		n->id = id;
		be_ident_of(&n->ident, &n->val);
		if (be_find(w, &n->ident)) {
			free(n); /* duplicate identity: swept as orphan */
			continue;
		}
		err = be_insert(w, n);
		if (err) {
			free(n);
			return err;
		}
		if (id >= w->next_be)
			w->next_be = id + 1;
	}
	for (prev = NULL;
	     w->ops.next_key(w->ops.ctx, KPX_MAP_SVC, prev, &nk) == 0;
	     prev = &k) {
		struct svc_entry *e;

		k = nk;
		e = calloc(1, sizeof(*e));
		if (!e)
			return -ENOMEM;
		e->key = k;
		if (w->ops.lookup(w->ops.ctx, KPX_MAP_SVC, &k, &e->val) ||
		    e->val.svc_id == 0 || e->val.svc_id >= w->o.services_max ||
		    w->svc_by_id[e->val.svc_id]) {
			/* Unusable: dropped, its key deleted in the sweep. */
			e->val.count = 0;
			e->epoch = UINT64_MAX;
			free(e);
			w->ops.del(w->ops.ctx, KPX_MAP_SVC, &k);
			continue;
		}
		e->ids = calloc(e->val.count + 1, sizeof(*e->ids));
		if (!e->ids) {
			free(e);
			return -ENOMEM;
		}
		for (uint32_t i = 0; i < e->val.count; i++) {
			struct kpx_slot_key sk = { e->val.svc_id, e->val.gen,
						   (uint16_t)i };
			struct be_node *n;

			if (w->ops.lookup(w->ops.ctx, KPX_MAP_SLOTS, &sk,
					  &e->ids[i]))
				e->ids[i] = 0;
			n = e->ids[i] < w->o.backends_max
				    ? w->be_by_id[e->ids[i]]
				    : NULL;
			if (n)
				n->refs++;
			else
				e->ids[i] = 0; /* forces a rewrite */
		}
		w->ops.lookup(w->ops.ctx, KPX_MAP_SVC_META, &e->val.svc_id,
			      &e->meta);
		if (!tsearch(e, &w->entries, entry_cmp)) {
			free(e->ids);
			free(e);
			return -ENOMEM;
		}
		w->svc_by_id[e->val.svc_id] = e;
		if (e->val.svc_id >= w->next_svc)
			w->next_svc = e->val.svc_id + 1;
	}
	/* Source ranges belong to their entry by svc id. */
	{
		struct kpx_src_range_key rk, nrk;

		for (prev = NULL; w->ops.next_key(w->ops.ctx, KPX_MAP_SRC_RANGE,
						  prev, &nrk) == 0;
		     prev = &rk) {
			struct svc_entry *e;
			void *p;

			rk = nrk;
			e = rk.svc_id < w->o.services_max
				    ? w->svc_by_id[rk.svc_id]
				    : NULL;
			if (!e)
				continue;
			p = realloc(e->ranges,
				    (e->n_ranges + 1) * sizeof(*e->ranges));
			if (!p)
				return -ENOMEM;
			e->ranges = p;
			e->ranges[e->n_ranges++] = rk;
		}
	}
	return 0;
}

/* Generic sweep: deletes every key of map m for which keep() is false. */
static void sweep(struct kpx_map_writer *w, enum kpx_map_id m, size_t ksz,
		  bool (*keep)(struct kpx_map_writer *, const void *))
{
	uint8_t k[64], nk[64];
	uint8_t *del = NULL;
	size_t n = 0, cap = 0;
	const void *prev = NULL;

	while (w->ops.next_key(w->ops.ctx, m, prev, nk) == 0) {
		memcpy(k, nk, ksz);
		prev = k;
		if (keep(w, k))
			continue;
		if (n == cap) {
			void *p = realloc(del, (cap = cap ? 2 * cap : 64) * ksz);

			if (!p)
				break;
			del = p;
		}
		memcpy(del + n * ksz, k, ksz);
		n++;
	}
	for (size_t i = 0; i < n; i++)
		w->ops.del(w->ops.ctx, m, del + i * ksz);
	if (n)
		kpx_info("bpf: reconcile removed %zu stale %s entries", n,
			 kpx_map_names[m]);
	free(del);
}

static bool keep_slot(struct kpx_map_writer *w, const void *key)
{
	const struct kpx_slot_key *k = key;
	struct svc_entry *e = k->svc_id < w->o.services_max
				  ? w->svc_by_id[k->svc_id]
				  : NULL;

	return e && k->gen == e->val.gen && k->slot < e->val.count;
}

static bool keep_maglev(struct kpx_map_writer *w, const void *key)
{
	const struct kpx_maglev_key *k = key;
	struct svc_entry *e = k->svc_id < w->o.services_max
				  ? w->svc_by_id[k->svc_id]
				  : NULL;

	return e && k->gen == e->val.gen && (e->val.flags & KPX_SVC_F_MAGLEV);
}

static bool keep_meta(struct kpx_map_writer *w, const void *key)
{
	uint32_t id = *(const uint32_t *)key;

	return id < w->o.services_max && w->svc_by_id[id];
}

static bool keep_range(struct kpx_map_writer *w, const void *key)
{
	const struct kpx_src_range_key *k = key;
	struct svc_entry *e = k->svc_id < w->o.services_max
				  ? w->svc_by_id[k->svc_id]
				  : NULL;

	return e && range_in(k, e->ranges, e->n_ranges);
}

static bool keep_backend(struct kpx_map_writer *w, const void *key)
{
	uint32_t id = *(const uint32_t *)key;

	return id < w->o.backends_max && w->be_by_id[id] &&
	       w->be_by_id[id]->id == id;
}

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
	w->next_svc = w->next_be = 1;
	if (!w->be_by_id || !w->svc_by_id || !w->prune) {
		kpx_map_writer_free(w);
		return -ENOMEM;
	}
	err = load_state(w);
	if (err) {
		kpx_err("bpf: reading pinned maps: %s", strerror(-err));
		kpx_map_writer_free(w);
		return err;
	}
	*out = w;
	return 0;
}

static struct want *wants_build(struct kpx_map_writer *w,
				const struct kpx_plan *plan, size_t *n_out)
{
	size_t n = 0, cap = 0;
	struct want *v = NULL;

	for (size_t i = 0; i < plan->n_svcports; i++) {
		const struct kpx_plan_svcport *sp = &plan->svcports[i];

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
				want_fill(w, &v[n++], sp, &sp->frontends[f],
					  scope);
			}
		}
	}
	if (n)
		qsort(v, n, sizeof(*v), want_cmp);
	*n_out = n;
	return v ? v : calloc(1, sizeof(*v));
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

int kpx_map_writer_sync(struct kpx_map_writer *w, const struct kpx_plan *plan)
{
	size_t n = 0, n_entries = 0;
	struct want *v = wants_build(w, plan, &n);
	struct stale stale = {};
	int first_err = 0;

	if (!v)
		return -ENOMEM;
	w->epoch++;
	w->st.syncs++;
	for (size_t i = 0; i < n; i++) {
		struct svc_entry q = { .key = v[i].key }, *e;
		void *p;
		int err;

		if (i > 0 && !want_cmp(&v[i - 1], &v[i])) {
			char ks[96];

			svc_key_str(&v[i].key, ks, sizeof(ks));
			kpx_warn("bpf: frontend %s of %s duplicates one of "
				 "another service; ignored",
				 ks, v[i].meta.name);
			continue;
		}
		p = tfind(&q, &w->entries, entry_cmp);
		e = p ? *(struct svc_entry **)p : NULL;
		if (e && entry_matches(w, e, &v[i])) {
			e->epoch = w->epoch;
			continue;
		}
		err = entry_write(w, e, &v[i]);
		if (err && !first_err)
			first_err = err;
	}
	/* Deletes after writes: a frontend moving between services never
	 * disappears in between. */
	for (uint32_t id = 1; id < w->o.services_max; id++)
		n_entries += w->svc_by_id[id] != NULL;
	stale.v = calloc(n_entries + 1, sizeof(*stale.v));
	stale.epoch = w->epoch;
	if (stale.v) {
		twalk_r(w->entries, collect_stale, &stale);
		for (size_t i = 0; i < stale.n; i++)
			entry_delete(w, stale.v[i]);
		free(stale.v);
	} else if (!first_err) {
		first_err = -ENOMEM;
	}
	affinity_prune(w);
	if (!w->reconciled) {
		/* First sync after (re)start: remove what no entry uses. */
		sweep(w, KPX_MAP_SLOTS, sizeof(struct kpx_slot_key), keep_slot);
		sweep(w, KPX_MAP_MAGLEV, sizeof(struct kpx_maglev_key),
		      keep_maglev);
		sweep(w, KPX_MAP_SVC_META, sizeof(uint32_t), keep_meta);
		sweep(w, KPX_MAP_SRC_RANGE, sizeof(struct kpx_src_range_key),
		      keep_range);
		for (uint32_t id = 1; id < w->o.backends_max; id++) {
			struct be_node *b = w->be_by_id[id];

			if (b && b->refs == 0)
				be_forget(w, b);
		}
		sweep(w, KPX_MAP_BACKENDS, sizeof(uint32_t), keep_backend);
		w->reconciled = true;
	}
	free(v);
	w->st.entries = 0;
	w->st.backends = 0;
	w->st.slots = 0;
	for (uint32_t id = 1; id < w->o.services_max; id++) {
		if (w->svc_by_id[id]) {
			w->st.entries++;
			w->st.slots += w->svc_by_id[id]->val.count;
		}
	}
	for (uint32_t id = 1; id < w->o.backends_max; id++)
		w->st.backends += w->be_by_id[id] != NULL;
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
	free(w->be_by_id);
	free(w->svc_by_id);
	free(w->prune);
	free(w);
}
