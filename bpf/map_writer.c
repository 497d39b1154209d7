// SPDX-License-Identifier: Apache-2.0
/*
 * The map writer (see map_writer.h). Keeps a mirror of what is programmed
 * (read back from the pinned maps at start), computes the desired kpx_svc
 * entries from the plan and writes only the entries that differ, each one
 * atomically: backends, slots (and maglev table) of the inactive
 * generation, flip of the kpx_svc value, then removal of what the old
 * generation used.
 *
 * Incremental: the writer remembers, per plan svcport (by id), the hash it
 * programmed and the kpx_svc entries it owns. A sync merges the plan with
 * that record (both sorted by id) and computes entries only for new,
 * changed or failed svcports, and deletes only entries of changed or
 * removed ones; an unchanged svcport costs one id and hash compare. The
 * first sync after a (re)start and the one after kpx_map_writer_verify()
 * go over every svcport and every entry (the full reconcile).
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

static void ids_init(struct id_alloc *a, uint32_t soft, uint32_t max)
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
static void id_taken(struct id_alloc *a, uint32_t id)
{
	int r = id_range(a, id);

	if (id >= a->cur[r])
		a->cur[r] = id + 1;
}

static void id_freed(struct id_alloc *a, uint32_t id)
{
	a->full[id_range(a, id)] = false;
}

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

static void owner_set(struct svc_entry *e, struct sp_rec *r)
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
	w->n_backends++;
	return 0;
}

static void be_forget(struct kpx_map_writer *w, struct be_node *n)
{
	tdelete(n, &w->backends, be_cmp);
	w->be_by_id[n->id] = NULL;
	w->n_backends--;
	id_freed(&w->be_ids, n->id);
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

static uint32_t alloc_id(void **by_id, struct id_alloc *a)
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
	n->id = alloc_id((void **)w->be_by_id, &w->be_ids);
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
	if (ep->flags & KPX_EP_HOST)
		v->flags |= KPX_BE_F_HOST;
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

/*
 * The row of fe that an entry of this scope serves: tc sees traffic that
 * arrives at the node (another node, outside: REMOTE), the socket hooks
 * local sockets, pods and the node's own processes alike (NODE; the plan
 * made the POD row equal to it where it matters, caps.local_pod_vs_node).
 */
static const struct kpx_plan_row *row_of(const struct kpx_plan_frontend *fe,
					 uint8_t scope)
{
	return &fe->rows[scope == KPX_SCOPE_EXTERNAL ? KPX_ORIGIN_REMOTE
						     : KPX_ORIGIN_NODE];
}

static void want_fill(struct kpx_map_writer *w, struct want *x,
		      const struct kpx_plan_svcport *sp,
		      const struct kpx_plan_frontend *fe, uint8_t scope)
{
	const struct kpx_plan_row *row = row_of(fe, scope);

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
	x->set = kpx_plan_row_set(sp, row, &x->n);
	/* A drop the socket hooks cannot express (the plan made it a
	 * reject, degraded) keeps its flag: their nearest to a drop is
	 * failing connect() with EPERM, told apart from a refusal. */
	if (row->empty == KPX_EMPTY_DROP ||
	    (row->degraded & KPX_ROW_DROP_AS_REJECT))
		x->flags |= KPX_SVC_F_EMPTY_DROP;
	if (row->source_ranges)
		x->flags |= KPX_SVC_F_SOURCE_RANGES;
	if (kpx_plan_row_local_only(sp, row))
		x->flags |= KPX_SVC_F_LOCAL_ONLY;
	/* Masquerade is the tc datapath's: a socket hook connects from the
	 * socket's own address, and the answer comes back to it anyway. */
	if (scope == KPX_SCOPE_EXTERNAL && row->masq == KPX_MASQ_ALWAYS)
		x->flags |= KPX_SVC_F_SNAT;
	else if (scope == KPX_SCOPE_EXTERNAL &&
		 row->masq == KPX_MASQ_OFF_CLUSTER)
		x->flags |= KPX_SVC_F_SNAT_OFF_CLUSTER;
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

/* By key, then plan order (qsort is not stable). */
static int want_sort_cmp(const void *a, const void *b)
{
	const struct want *x = a, *y = b;
	int c = want_cmp(a, b);

	if (c)
		return c;
	return x->ord < y->ord ? -1 : x->ord > y->ord;
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

	if (e->dirty)
		return false;
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
		/* The backend the slot names must be this endpoint: by id,
		 * not a tree search (identities are unique in the tree). */
		n = e->ids[i] < w->o.backends_max ? w->be_by_id[e->ids[i]]
						   : NULL;
		if (!n || memcmp(&n->ident, &ident, sizeof(ident)) ||
		    n->val.flags != v.flags)
			return false;
	}
	if (!e->n_ranges && !(x->flags & KPX_SVC_F_SOURCE_RANGES))
		return true;
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

/* ---- reading whole maps ---- */

typedef void (*dump_fn)(struct kpx_map_writer *w, const void *k,
			const void *v, void *arg);

static int keyvec_add(struct keyvec *kv, const void *k, size_t ksz)
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

/* Remembers key of map m for the first sync's reconcile. */
static void stale_add(struct kpx_map_writer *w, enum kpx_map_id m,
		      const void *key, size_t ksz)
{
	if (keyvec_add(&w->stale[m], key, ksz))
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
static int map_dump(struct kpx_map_writer *w, enum kpx_map_id m, size_t ksz,
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
	keyvec_add(arg, k, sizeof(*k));
}

static void affinity_prune(struct kpx_map_writer *w)
{
	struct keyvec del = {};

	if (!w->n_prune)
		return;
	map_dump(w, KPX_MAP_AFFINITY, sizeof(struct kpx_affinity_key),
		 sizeof(struct kpx_affinity_value), affinity_stale, &del);
	for (size_t i = 0; i < del.n; i++)
		w->ops.del(w->ops.ctx, KPX_MAP_AFFINITY,
			   del.v + i * sizeof(struct kpx_affinity_key));
	free(del.v);
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
		e->val.svc_id = alloc_id((void **)w->svc_by_id, &w->svc_ids);
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
		w->n_entries++;
	}
	w->n_slots += val.count;
	w->n_slots -= is_new ? 0 : e->val.count;
	owner_set(e, x->rec);
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
	if (is_new && e) {
		free(e);
	} else if (e) {
		/* Keep the old state, owned by the svcport that retries. */
		e->epoch = w->epoch;
		owner_set(e, x->rec);
	}
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
	owner_set(e, NULL);
	tdelete(e, &w->entries, entry_cmp);
	w->svc_by_id[e->val.svc_id] = NULL;
	w->n_entries--;
	id_freed(&w->svc_ids, e->val.svc_id);
	w->n_slots -= e->val.count;
	free(e->ids);
	free(e->ranges);
	free(e);
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
	be_ident_of(&n->ident, &n->val);
	if (be_find(w, &n->ident)) {
		free(n); /* duplicate identity: an orphan */
		goto stale;
	}
	if (be_insert(w, n)) {
		free(n);
		w->load_err = -ENOMEM;
		return;
	}
	id_taken(&w->be_ids, id);
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
	if (!e->ids || !tsearch(e, &w->entries, entry_cmp)) {
		free(e->ids);
		free(e);
		w->load_err = -ENOMEM;
		return;
	}
	w->svc_by_id[e->val.svc_id] = e;
	w->n_entries++;
	id_taken(&w->svc_ids, e->val.svc_id);
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

static bool keep_maglev(struct kpx_map_writer *w, const void *key);
static int cidrs_load(struct kpx_map_writer *w);

static void load_maglev(struct kpx_map_writer *w, const void *key,
			const void *val, void *arg)
{
	(void)val;
	(void)arg;
	if (!keep_maglev(w, key))
		stale_add(w, KPX_MAP_MAGLEV, key, sizeof(struct kpx_maglev_key));
}

/*
 * One pass over each pinned map (batched): backends, entries, their
 * slots and names, source ranges, maglev keys (keys only: values are
 * whole tables). What belongs to nothing is remembered for the first
 * sync's reconcile instead of a second walk then.
 */
static int load_state(struct kpx_map_writer *w)
{
	struct keyvec *bad = &w->stale[KPX_MAP_SVC];
	int err;

	/* Backends first: entries take references on them. */
	err = map_dump(w, KPX_MAP_BACKENDS, sizeof(uint32_t),
		       sizeof(struct kpx_backend_value), load_backend, NULL);
	if (!err)
		err = map_dump(w, KPX_MAP_SVC, sizeof(struct kpx_svc_key),
			       sizeof(struct kpx_svc_value), load_svc, NULL);
	for (size_t i = 0; i < bad->n; i++)
		w->ops.del(w->ops.ctx, KPX_MAP_SVC,
			   bad->v + i * sizeof(struct kpx_svc_key));
	bad->n = 0;
	if (!err)
		err = map_dump(w, KPX_MAP_SLOTS, sizeof(struct kpx_slot_key),
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
		err = map_dump(w, KPX_MAP_SVC_META, sizeof(uint32_t),
			       sizeof(struct kpx_svc_meta), load_meta, NULL);
	/* Source ranges belong to their entry by svc id. */
	if (!err)
		err = map_dump(w, KPX_MAP_SRC_RANGE,
			       sizeof(struct kpx_src_range_key), 1, load_range,
			       NULL);
	if (!err)
		err = map_dump(w, KPX_MAP_MAGLEV, sizeof(struct kpx_maglev_key),
			       0, load_maglev, NULL);
	if (!err)
		err = cidrs_load(w);
	return err ? err : w->load_err;
}

/* Deletes the remembered stale keys of map m that keep() still rejects. */
static void reconcile(struct kpx_map_writer *w, enum kpx_map_id m, size_t ksz,
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
		kpx_info("bpf: reconcile removed %zu stale %s entries", n,
			 kpx_map_names[m]);
	free(kv->v);
	memset(kv, 0, sizeof(*kv));
}

static bool keep_slot(struct kpx_map_writer *w, const void *key)
{
	const struct kpx_slot_key *k = key;
	struct svc_entry *e = entry_by_id(w, k->svc_id);

	return e && k->gen == e->val.gen && k->slot < e->val.count;
}

static bool keep_maglev(struct kpx_map_writer *w, const void *key)
{
	const struct kpx_maglev_key *k = key;
	struct svc_entry *e = entry_by_id(w, k->svc_id);

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
	struct svc_entry *e = entry_by_id(w, k->svc_id);

	return e && range_in(k, e->ranges, e->n_ranges);
}

static bool keep_backend(struct kpx_map_writer *w, const void *key)
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
		p = tfind(&q, &w->entries, entry_cmp);
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
	if (e && range_in(rk, e->ranges, e->n_ranges)) {
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
	if (keep_maglev(w, key))
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
	err = map_dump(w, KPX_MAP_SVC, sizeof(struct kpx_svc_key),
		       sizeof(struct kpx_svc_value), ver_svc, NULL);
	if (!err)
		err = map_dump(w, KPX_MAP_SLOTS, sizeof(struct kpx_slot_key),
			       sizeof(uint32_t), ver_slot, NULL);
	if (!err)
		err = map_dump(w, KPX_MAP_BACKENDS, sizeof(uint32_t),
			       sizeof(struct kpx_backend_value), ver_backend,
			       &be_fixed);
	if (!err)
		err = map_dump(w, KPX_MAP_SVC_META, sizeof(uint32_t),
			       sizeof(struct kpx_svc_meta), ver_meta, NULL);
	if (!err)
		err = map_dump(w, KPX_MAP_SRC_RANGE,
			       sizeof(struct kpx_src_range_key), 1, ver_range,
			       NULL);
	if (!err)
		err = map_dump(w, KPX_MAP_MAGLEV, sizeof(struct kpx_maglev_key),
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
	return map_dump(w, KPX_MAP_CLUSTER_CIDR, sizeof(struct kpx_cidr_key),
			0, load_cidr, NULL);
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
static int cidrs_sync(struct kpx_map_writer *w, const struct kpx_plan *plan)
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
	ids_init(&w->svc_ids, w->o.svc_ids_soft, w->o.services_max);
	ids_init(&w->be_ids, w->o.be_ids_soft, w->o.backends_max);
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
				want_fill(w, &v[n], sp, &sp->frontends[f],
					  scope);
				v[n].rec = d->todo[t].rec;
				v[n].ord = t;
				n++;
			}
		}
	}
	if (n)
		qsort(v, n, sizeof(*v), want_sort_cmp);
	*n_out = n;
	return v ? v : calloc(1, sizeof(*v));
}

/* x lost its frontend to another svcport's entry. */
static void want_conflict(struct want *x)
{
	char ks[96];

	svc_key_str(&x->key, ks, sizeof(ks));
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
			entry_delete(w, e);
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
		entry_delete(w, stale.v[i]);
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

	first_err = cidrs_sync(w, plan);
	err = diff_plan(w, plan, full, &d);
	if (!err && !(v = wants_build(w, &d, &n)))
		err = -ENOMEM;
	if (err) {
		diff_free(&d, true);
		kpx_err("bpf: map writer: out of memory computing the sync");
		return err;
	}
	w->epoch++;
	w->st.syncs++;
	for (size_t t = 0; t < d.n_todo; t++) {
		d.todo[t].rec->epoch = w->epoch;
		d.todo[t].rec->failed = false;
	}
	for (size_t g = 0; g < d.n_gone; g++)
		d.gone[g]->epoch = w->epoch;
	for (size_t i = 0, j; i < n; i = j) {
		struct svc_entry q = { .key = v[i].key }, *e;
		size_t win = SIZE_MAX;
		void *p;

		for (j = i + 1; j < n && !want_cmp(&v[i], &v[j]); j++)
			;
		p = tfind(&q, &w->entries, entry_cmp);
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
		if (e && entry_matches(w, e, &v[win])) {
			e->epoch = w->epoch;
			owner_set(e, v[win].rec);
			continue;
		}
		err = entry_write(w, e, &v[win]);
		if (err) {
			v[win].rec->failed = true;
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
	} else {
		for (size_t t = 0; t < d.n_todo; t++)
			delete_unwanted(w, d.todo[t].rec);
		for (size_t g = 0; g < d.n_gone; g++)
			delete_unwanted(w, d.gone[g]);
	}
	for (size_t g = 0; g < d.n_gone; g++) {
		/* Empty by now (taken over or deleted); never dangling. */
		while (d.gone[g]->ents)
			owner_set(d.gone[g]->ents, NULL);
		free(d.gone[g]);
	}
	for (size_t t = 0; t < d.n_todo; t++) {
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
	affinity_prune(w);
	if (!w->reconciled) {
		/* First sync after (re)start: remove what no entry uses. */
		reconcile(w, KPX_MAP_SLOTS, sizeof(struct kpx_slot_key),
			  keep_slot);
		reconcile(w, KPX_MAP_MAGLEV, sizeof(struct kpx_maglev_key),
			  keep_maglev);
		reconcile(w, KPX_MAP_SVC_META, sizeof(uint32_t), keep_meta);
		reconcile(w, KPX_MAP_SRC_RANGE,
			  sizeof(struct kpx_src_range_key), keep_range);
		for (uint32_t id = 1; id < w->o.backends_max; id++) {
			struct be_node *b = w->be_by_id[id];

			if (b && b->refs == 0) {
				w->ops.del(w->ops.ctx, KPX_MAP_BACKENDS, &id);
				be_forget(w, b);
			}
		}
		reconcile(w, KPX_MAP_BACKENDS, sizeof(uint32_t), keep_backend);
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
