// SPDX-License-Identifier: Apache-2.0
/*
 * The object store. Services and slices live in string-keyed open
 * addressing tables ("ns/name"); slices are also indexed by
 * "ns/service-name" so the plan can merge a service's slices without a
 * scan. Ordered iteration sorts a cached pointer array that is rebuilt
 * only after a write, so a plan build over 10k services sorts once.
 */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/store.h"

/* ---- a small string-keyed hash table (linear probing, backward shift) -- */

struct ht_slot {
	char *key; /* NULL: empty */
	uint64_t hash;
	void *val;
};

struct ht {
	struct ht_slot *slots;
	size_t cap; /* power of two */
	size_t n;
};

static uint64_t str_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	/* FNV's low bits are weak for similar keys; mix before masking. */
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return h;
}

static int ht_grow(struct ht *t)
{
	size_t ncap = t->cap ? t->cap * 2 : 64;
	struct ht_slot *ns = calloc(ncap, sizeof(*ns));

	if (!ns)
		return -ENOMEM;
	for (size_t i = 0; i < t->cap; i++) {
		struct ht_slot *o = &t->slots[i];
		size_t j;

		if (!o->key)
			continue;
		for (j = o->hash & (ncap - 1); ns[j].key; j = (j + 1) & (ncap - 1))
			;
		ns[j] = *o;
	}
	free(t->slots);
	t->slots = ns;
	t->cap = ncap;
	return 0;
}

static struct ht_slot *ht_find(const struct ht *t, const char *key)
{
	uint64_t h;

	if (!t->cap)
		return NULL;
	h = str_hash(key);
	for (size_t i = h & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
		struct ht_slot *s = &t->slots[i];

		if (!s->key)
			return NULL;
		if (s->hash == h && !strcmp(s->key, key))
			return s;
	}
}

static void *ht_get(const struct ht *t, const char *key)
{
	struct ht_slot *s = ht_find(t, key);

	return s ? s->val : NULL;
}

/* Inserts key (copied) or returns the existing slot; NULL on ENOMEM. */
static struct ht_slot *ht_put(struct ht *t, const char *key, bool *created)
{
	struct ht_slot *s = ht_find(t, key);
	uint64_t h;
	size_t i;

	*created = false;
	if (s)
		return s;
	if ((t->n + 1) * 4 > t->cap * 3 && ht_grow(t))
		return NULL;
	h = str_hash(key);
	for (i = h & (t->cap - 1); t->slots[i].key; i = (i + 1) & (t->cap - 1))
		;
	s = &t->slots[i];
	s->key = strdup(key);
	if (!s->key)
		return NULL;
	s->hash = h;
	s->val = NULL;
	t->n++;
	*created = true;
	return s;
}

/* Removes the slot, keeping probe chains intact (no tombstones). */
static void ht_remove_slot(struct ht *t, struct ht_slot *s)
{
	size_t i = (size_t)(s - t->slots), j = i;

	free(s->key);
	s->key = NULL;
	t->n--;
	for (;;) {
		size_t k;

		j = (j + 1) & (t->cap - 1);
		if (!t->slots[j].key)
			break;
		k = t->slots[j].hash & (t->cap - 1);
		/* Move j back into the hole at i unless its home k lies
		 * cyclically in (i, j]. */
		if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
			continue;
		t->slots[i] = t->slots[j];
		t->slots[j].key = NULL;
		i = j;
	}
}

static void ht_free(struct ht *t)
{
	for (size_t i = 0; i < t->cap; i++)
		free(t->slots[i].key);
	free(t->slots);
	memset(t, 0, sizeof(*t));
}

/* ---- the store --------------------------------------------------------- */

struct entry {
	void *obj;
	uint64_t gen; /* replace generation of the last upsert */
};

/* Slices of one service, kept sorted by slice name. */
struct slice_group {
	struct kpx_endpoint_slice **v;
	size_t n, cap;
};

enum addr_role {
	ROLE_CLUSTER_IP = 1 << 0, /* allocated by the API server */
	ROLE_USER = 1 << 1,	  /* externalIP or LB ingress: user-written */
};

struct addr_user {
	const struct kpx_service *svc;
	uint8_t roles;
};

struct addr_users {
	struct addr_user *v;
	size_t n, cap;
};

struct kpx_store {
	struct ht services;    /* "ns/name" -> struct entry* (service) */
	struct ht slices;      /* "ns/name" -> struct entry* (slice) */
	struct ht by_service;  /* "ns/service" -> struct slice_group* */
	struct kpx_node *node;
	uint64_t node_gen;
	uint64_t gen[KPX_KIND_COUNT];
	bool replacing[KPX_KIND_COUNT];
	bool synced[KPX_KIND_COUNT];

	/* Sorted view of services; rebuilt lazily after writes. */
	const struct kpx_service **sorted;
	size_t n_sorted;
	bool sorted_valid;

	/* address -> struct addr_users*: who holds it as a ClusterIP and who
	 * writes it as an externalIP or LoadBalancer ingress IP. */
	struct ht addrs;

	struct ht dirty; /* "ns/name" -> NULL */
	bool dirty_overflow; /* a mark_dirty was lost: everything changed */
	bool node_dirty;
	struct kpx_store_stats st;
	/* trigger times of slice changes since the last clear; capped, the
	 * metric is a sample */
	double *triggers;
	size_t n_triggers, cap_triggers;
};

static double wall_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void key_of(char *buf, size_t len, const char *ns, const char *name)
{
	snprintf(buf, len, "%s/%s", ns, name);
}

#define KEY_MAX (KPX_NS_MAX + KPX_NAME_MAX + 2)

static void note_pending(struct kpx_store *s)
{
	if (s->st.service_changes_pending + s->st.endpoint_changes_pending == 0 &&
	    !s->node_dirty)
		s->st.last_queued_wall = wall_now();
}

static void mark_dirty(struct kpx_store *s, const char *ns, const char *name)
{
	char key[KEY_MAX];
	bool created;

	if (!name[0])
		return;
	key_of(key, sizeof(key), ns, name);
	/* On ENOMEM the set is incomplete: say so, so that an incremental
	 * consumer recomputes everything instead of missing this one. */
	if (!ht_put(&s->dirty, key, &created))
		s->dirty_overflow = true;
}

#define TRIGGERS_MAX 4096

static void note_trigger(struct kpx_store *s, double t)
{
	if (t <= 0 || s->n_triggers >= TRIGGERS_MAX)
		return;
	if (s->n_triggers == s->cap_triggers) {
		size_t nc = s->cap_triggers ? s->cap_triggers * 2 : 16;
		double *nv = realloc(s->triggers, nc * sizeof(*nv));

		if (!nv)
			return;
		s->triggers = nv;
		s->cap_triggers = nc;
	}
	s->triggers[s->n_triggers++] = t;
}

size_t kpx_store_trigger_times(const struct kpx_store *s, const double **out)
{
	*out = s->triggers;
	return s->n_triggers;
}

int kpx_store_new(struct kpx_store **out)
{
	struct kpx_store *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	*out = s;
	return 0;
}

static void free_group(struct slice_group *g)
{
	if (!g)
		return;
	free(g->v);
	free(g);
}

void kpx_store_free(struct kpx_store *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->services.cap; i++) {
		struct entry *e = s->services.slots[i].val;

		if (s->services.slots[i].key && e) {
			kpx_object_free(KPX_KIND_SERVICE, e->obj);
			free(e);
		}
	}
	for (size_t i = 0; i < s->slices.cap; i++) {
		struct entry *e = s->slices.slots[i].val;

		if (s->slices.slots[i].key && e) {
			kpx_object_free(KPX_KIND_SLICE, e->obj);
			free(e);
		}
	}
	for (size_t i = 0; i < s->by_service.cap; i++)
		if (s->by_service.slots[i].key)
			free_group(s->by_service.slots[i].val);
	ht_free(&s->services);
	ht_free(&s->slices);
	ht_free(&s->by_service);
	for (size_t i = 0; i < s->addrs.cap; i++) {
		struct addr_users *u = s->addrs.slots[i].val;

		if (s->addrs.slots[i].key && u) {
			free(u->v);
			free(u);
		}
	}
	ht_free(&s->addrs);
	ht_free(&s->dirty);
	free(s->triggers);
	if (s->node)
		kpx_object_free(KPX_KIND_NODE, s->node);
	free(s->sorted);
	free(s);
}

/* ---- slice index ------------------------------------------------------- */

static void index_add(struct kpx_store *s, struct kpx_endpoint_slice *sl)
{
	char key[KEY_MAX];
	struct slice_group *g;
	struct ht_slot *slot;
	bool created;
	size_t i;

	if (!sl->service_name[0])
		return;
	key_of(key, sizeof(key), sl->ns, sl->service_name);
	slot = ht_put(&s->by_service, key, &created);
	if (!slot)
		return;
	g = slot->val;
	if (!g) {
		g = calloc(1, sizeof(*g));
		if (!g) {
			ht_remove_slot(&s->by_service, slot);
			return;
		}
		slot->val = g;
	}
	if (g->n == g->cap) {
		size_t nc = g->cap ? g->cap * 2 : 4;
		void *nv = realloc(g->v, nc * sizeof(*g->v));

		if (!nv)
			return;
		g->v = nv;
		g->cap = nc;
	}
	for (i = g->n; i > 0 && strcmp(g->v[i - 1]->name, sl->name) > 0; i--)
		g->v[i] = g->v[i - 1];
	g->v[i] = sl;
	g->n++;
}

static void index_del(struct kpx_store *s, struct kpx_endpoint_slice *sl)
{
	char key[KEY_MAX];
	struct slice_group *g;
	struct ht_slot *slot;

	if (!sl->service_name[0])
		return;
	key_of(key, sizeof(key), sl->ns, sl->service_name);
	slot = ht_find(&s->by_service, key);
	if (!slot)
		return;
	g = slot->val;
	for (size_t i = 0; i < g->n; i++) {
		if (g->v[i] != sl)
			continue;
		memmove(&g->v[i], &g->v[i + 1], (g->n - i - 1) * sizeof(*g->v));
		g->n--;
		break;
	}
	if (!g->n) {
		free_group(g);
		ht_remove_slot(&s->by_service, slot);
	}
}

/* ---- address index ------------------------------------------------------ */

static void addr_key(const struct kpx_addr *a, char *buf)
{
	kpx_addr_str(a, buf);
}

static void addr_index_one(struct kpx_store *s, const struct kpx_service *svc,
			   const struct kpx_addr *a, uint8_t role, bool add)
{
	char key[KPX_ADDR_STRLEN];
	struct addr_users *u;
	struct ht_slot *slot;
	bool created;
	size_t i;

	addr_key(a, key);
	slot = add ? ht_put(&s->addrs, key, &created) : ht_find(&s->addrs, key);
	if (!slot) {
		if (add)
			s->dirty_overflow = true; /* conflicts may be missed */
		return;
	}
	u = slot->val;
	if (!u && !(u = slot->val = calloc(1, sizeof(*u)))) {
		ht_remove_slot(&s->addrs, slot);
		s->dirty_overflow = true;
		return;
	}
	for (i = 0; i < u->n && u->v[i].svc != svc; i++)
		;
	if (add) {
		if (i == u->n) {
			if (u->n == u->cap) {
				size_t nc = u->cap ? u->cap * 2 : 2;
				void *nv = realloc(u->v, nc * sizeof(*u->v));

				if (!nv) {
					s->dirty_overflow = true;
					return;
				}
				u->v = nv;
				u->cap = nc;
			}
			u->v[u->n++] = (struct addr_user){ svc, 0 };
		}
		u->v[i].roles |= role;
		return;
	}
	if (i == u->n)
		return;
	u->v[i] = u->v[--u->n];
	if (!u->n) {
		free(u->v);
		free(u);
		ht_remove_slot(&s->addrs, slot);
	}
}

/* The services writing a as a user address change when who holds a as a
 * ClusterIP changes: their frontend may now be refused or allowed. */
static void mark_users_dirty(struct kpx_store *s, const struct kpx_addr *a)
{
	char key[KPX_ADDR_STRLEN];
	const struct addr_users *u;

	addr_key(a, key);
	if (!(u = ht_get(&s->addrs, key)))
		return;
	for (size_t i = 0; i < u->n; i++)
		if (u->v[i].roles & ROLE_USER)
			mark_dirty(s, u->v[i].svc->ns, u->v[i].svc->name);
}

static void addr_index(struct kpx_store *s, const struct kpx_service *svc,
		       bool add)
{
	for (size_t i = 0; i < svc->n_cluster_ips; i++) {
		addr_index_one(s, svc, &svc->cluster_ips[i], ROLE_CLUSTER_IP, add);
		mark_users_dirty(s, &svc->cluster_ips[i]);
	}
	for (size_t i = 0; i < svc->n_external_ips; i++)
		addr_index_one(s, svc, &svc->external_ips[i], ROLE_USER, add);
	for (size_t i = 0; i < svc->n_lb_ips; i++)
		addr_index_one(s, svc, &svc->lb_ips[i], ROLE_USER, add);
}

const struct kpx_service *kpx_store_cluster_ip_owner(const struct kpx_store *s,
						     const struct kpx_addr *a)
{
	const struct kpx_service *best = NULL;
	char key[KPX_ADDR_STRLEN];
	const struct addr_users *u;

	addr_key(a, key);
	if (!(u = ht_get(&s->addrs, key)))
		return NULL;
	/* Two services claiming one ClusterIP happen only in hand-written
	 * manifests; name order makes the answer deterministic. */
	for (size_t i = 0; i < u->n; i++) {
		const struct kpx_service *v = u->v[i].svc;
		int c;

		if (!(u->v[i].roles & ROLE_CLUSTER_IP))
			continue;
		if (best && ((c = strcmp(v->ns, best->ns)) > 0 ||
			     (!c && strcmp(v->name, best->name) >= 0)))
			continue;
		best = v;
	}
	return best;
}

/* ---- writes ------------------------------------------------------------ */

static bool same_rv(const char *a, const char *b)
{
	return a[0] && !strcmp(a, b);
}

static void count_change(struct kpx_store *s, enum kpx_kind kind)
{
	note_pending(s);
	if (kind == KPX_KIND_SERVICE) {
		s->st.service_changes_total++;
		s->st.service_changes_pending++;
	} else {
		s->st.endpoint_changes_total++;
		s->st.endpoint_changes_pending++;
	}
}

static void upsert_node(struct kpx_store *s, struct kpx_node *node)
{
	s->node_gen = s->gen[KPX_KIND_NODE];
	if (s->node && !strcmp(s->node->name, node->name) &&
	    !strcmp(s->node->zone, node->zone) &&
	    s->node->deleting == node->deleting &&
	    s->node->to_be_deleted == node->to_be_deleted) {
		/* Only the zone and deletion state matter to the plan;
		 * status heartbeats must not trigger syncs. Keep the newer
		 * object for its addresses. */
		kpx_object_free(KPX_KIND_NODE, s->node);
		s->node = node;
		return;
	}
	if (s->node)
		kpx_object_free(KPX_KIND_NODE, s->node);
	s->node = node;
	note_pending(s);
	s->node_dirty = true;
}

void kpx_store_upsert(struct kpx_store *s, enum kpx_kind kind, void *obj)
{
	char key[KEY_MAX];
	struct ht_slot *slot;
	struct entry *e;
	bool created;

	if (!obj)
		return;
	if (kind == KPX_KIND_NODE) {
		upsert_node(s, obj);
		return;
	}
	if (kind == KPX_KIND_SERVICE) {
		struct kpx_service *svc = obj;

		key_of(key, sizeof(key), svc->ns, svc->name);
		slot = ht_put(&s->services, key, &created);
		if (!slot)
			goto nomem;
		if (!created) {
			e = slot->val;
			e->gen = s->gen[kind];
			if (same_rv(svc->resource_version,
				    ((struct kpx_service *)e->obj)->resource_version)) {
				kpx_object_free(kind, obj);
				return;
			}
			addr_index(s, e->obj, false);
			kpx_object_free(kind, e->obj);
			e->obj = obj;
		} else {
			e = calloc(1, sizeof(*e));
			if (!e) {
				ht_remove_slot(&s->services, slot);
				goto nomem;
			}
			e->obj = obj;
			e->gen = s->gen[kind];
			slot->val = e;
		}
		addr_index(s, svc, true);
		s->sorted_valid = false;
		mark_dirty(s, svc->ns, svc->name);
		count_change(s, kind);
		return;
	}
	if (kind == KPX_KIND_SLICE) {
		struct kpx_endpoint_slice *sl = obj, *old;

		key_of(key, sizeof(key), sl->ns, sl->name);
		slot = ht_put(&s->slices, key, &created);
		if (!slot)
			goto nomem;
		if (!created) {
			e = slot->val;
			old = e->obj;
			e->gen = s->gen[kind];
			if (same_rv(sl->resource_version, old->resource_version)) {
				kpx_object_free(kind, obj);
				return;
			}
			index_del(s, old);
			/* The label may have moved the slice to another
			 * service: both change. */
			mark_dirty(s, old->ns, old->service_name);
			kpx_object_free(kind, old);
			e->obj = obj;
		} else {
			e = calloc(1, sizeof(*e));
			if (!e) {
				ht_remove_slot(&s->slices, slot);
				goto nomem;
			}
			e->obj = obj;
			e->gen = s->gen[kind];
			slot->val = e;
		}
		index_add(s, sl);
		mark_dirty(s, sl->ns, sl->service_name);
		count_change(s, kind);
		note_trigger(s, sl->trigger_wall);
		return;
	}
	kpx_object_free(kind, obj);
	return;
nomem:
	/* Dropping the object loses one update; the next relist or
	 * resync recovers. Never crash on it. */
	kpx_object_free(kind, obj);
}

static void delete_slot(struct kpx_store *s, enum kpx_kind kind,
			struct ht_slot *slot)
{
	struct entry *e = slot->val;

	if (kind == KPX_KIND_SERVICE) {
		struct kpx_service *svc = e->obj;

		mark_dirty(s, svc->ns, svc->name);
		addr_index(s, svc, false);
		ht_remove_slot(&s->services, slot);
		s->sorted_valid = false;
	} else {
		struct kpx_endpoint_slice *sl = e->obj;

		index_del(s, sl);
		mark_dirty(s, sl->ns, sl->service_name);
		ht_remove_slot(&s->slices, slot);
	}
	count_change(s, kind);
	kpx_object_free(kind, e->obj);
	free(e);
}

void kpx_store_delete(struct kpx_store *s, enum kpx_kind kind, const char *ns,
		      const char *name)
{
	char key[KEY_MAX];
	struct ht_slot *slot;

	if (kind == KPX_KIND_NODE) {
		if (s->node && (!name || !name[0] || !strcmp(s->node->name, name))) {
			kpx_object_free(kind, s->node);
			s->node = NULL;
			note_pending(s);
			s->node_dirty = true;
		}
		return;
	}
	if (kind != KPX_KIND_SERVICE && kind != KPX_KIND_SLICE)
		return;
	key_of(key, sizeof(key), ns ? ns : "", name ? name : "");
	slot = ht_find(kind == KPX_KIND_SERVICE ? &s->services : &s->slices, key);
	if (slot)
		delete_slot(s, kind, slot);
}

void kpx_store_replace_begin(struct kpx_store *s, enum kpx_kind kind)
{
	if (kind < 0 || kind >= KPX_KIND_COUNT)
		return;
	s->gen[kind]++;
	s->replacing[kind] = true;
}

static void sweep(struct kpx_store *s, enum kpx_kind kind, struct ht *t)
{
	size_t i = 0;

	/* Removal shifts later slots back into i, so re-examine i. */
	while (i < t->cap) {
		struct ht_slot *slot = &t->slots[i];
		struct entry *e = slot->val;

		if (slot->key && e->gen != s->gen[kind]) {
			delete_slot(s, kind, slot);
			continue;
		}
		i++;
	}
	/*
	 * Backward shift can wrap an entry from the table's start into a
	 * slot we already passed; a second pass catches those.
	 */
	for (i = 0; i < t->cap; i++) {
		struct ht_slot *slot = &t->slots[i];
		struct entry *e = slot->val;

		if (slot->key && e->gen != s->gen[kind]) {
			delete_slot(s, kind, slot);
			i--;
		}
	}
}

void kpx_store_replace_end(struct kpx_store *s, enum kpx_kind kind)
{
	if (kind < 0 || kind >= KPX_KIND_COUNT || !s->replacing[kind])
		goto synced;
	s->replacing[kind] = false;
	if (kind == KPX_KIND_SERVICE)
		sweep(s, kind, &s->services);
	else if (kind == KPX_KIND_SLICE)
		sweep(s, kind, &s->slices);
	else if (s->node && s->node_gen != s->gen[kind])
		kpx_store_delete(s, kind, NULL, NULL);
synced:
	kpx_store_mark_synced(s, kind);
}

void kpx_store_mark_synced(struct kpx_store *s, enum kpx_kind kind)
{
	if (kind >= 0 && kind < KPX_KIND_COUNT)
		s->synced[kind] = true;
}

bool kpx_store_kind_synced(const struct kpx_store *s, enum kpx_kind kind)
{
	return kind >= 0 && kind < KPX_KIND_COUNT && s->synced[kind];
}

/* ---- reads ------------------------------------------------------------- */

const struct kpx_service *kpx_store_service(const struct kpx_store *s,
					    const char *ns, const char *name)
{
	char key[KEY_MAX];
	struct entry *e;

	key_of(key, sizeof(key), ns, name);
	e = ht_get(&s->services, key);
	return e ? e->obj : NULL;
}

const struct kpx_node *kpx_store_node(const struct kpx_store *s)
{
	return s->node;
}

static int cmp_svc(const void *a, const void *b)
{
	const struct kpx_service *x = *(const struct kpx_service *const *)a;
	const struct kpx_service *y = *(const struct kpx_service *const *)b;
	int c = strcmp(x->ns, y->ns);

	return c ? c : strcmp(x->name, y->name);
}

static int rebuild_sorted(struct kpx_store *s)
{
	size_t n = 0;

	if (s->sorted_valid)
		return 0;
	free(s->sorted);
	s->sorted = NULL;
	s->n_sorted = 0;
	if (s->services.n) {
		s->sorted = malloc(s->services.n * sizeof(*s->sorted));
		if (!s->sorted)
			return -ENOMEM;
	}
	for (size_t i = 0; i < s->services.cap; i++)
		if (s->services.slots[i].key)
			s->sorted[n++] =
				((struct entry *)s->services.slots[i].val)->obj;
	if (n)
		qsort(s->sorted, n, sizeof(*s->sorted), cmp_svc);
	s->n_sorted = n;
	s->sorted_valid = true;
	return 0;
}

void kpx_store_for_each_service(const struct kpx_store *cs, kpx_service_fn fn,
				void *arg)
{
	/* The sorted view is a cache, not observable state. */
	struct kpx_store *s = (struct kpx_store *)cs;

	if (rebuild_sorted(s)) {
		/* Unsorted is better than nothing under memory pressure. */
		for (size_t i = 0; i < s->services.cap; i++)
			if (s->services.slots[i].key)
				fn(((struct entry *)s->services.slots[i].val)->obj,
				   arg);
		return;
	}
	for (size_t i = 0; i < s->n_sorted; i++)
		fn(s->sorted[i], arg);
}

void kpx_store_for_each_slice_of(const struct kpx_store *s, const char *ns,
				 const char *service_name, kpx_slice_fn fn,
				 void *arg)
{
	char key[KEY_MAX];
	struct slice_group *g;

	key_of(key, sizeof(key), ns, service_name);
	g = ht_get(&s->by_service, key);
	if (!g)
		return;
	for (size_t i = 0; i < g->n; i++)
		fn(g->v[i], arg);
}

/* ---- change tracker ---------------------------------------------------- */

bool kpx_store_dirty(const struct kpx_store *s)
{
	return s->dirty.n > 0 || s->node_dirty || s->dirty_overflow;
}

bool kpx_store_dirty_overflow(const struct kpx_store *s)
{
	return s->dirty_overflow;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void kpx_store_for_each_dirty(const struct kpx_store *s, kpx_dirty_fn fn,
			      void *arg)
{
	const char **keys;
	size_t n = 0;

	if (!s->dirty.n)
		return;
	keys = malloc(s->dirty.n * sizeof(*keys));
	for (size_t i = 0; i < s->dirty.cap; i++) {
		if (!s->dirty.slots[i].key)
			continue;
		if (keys)
			keys[n++] = s->dirty.slots[i].key;
	}
	if (keys)
		qsort(keys, n, sizeof(*keys), cmp_str);
	for (size_t i = 0; i < (keys ? n : s->dirty.cap); i++) {
		const char *k = keys ? keys[i] : s->dirty.slots[i].key;
		char ns[KPX_NS_MAX];
		const char *slash;
		size_t l;

		if (!k)
			continue;
		/* Namespaces never contain '/', names may not either, but
		 * split on the first one to be safe. */
		slash = strchr(k, '/');
		l = slash ? (size_t)(slash - k) : 0;
		if (l >= sizeof(ns))
			l = sizeof(ns) - 1;
		memcpy(ns, k, l);
		ns[l] = 0;
		fn(ns, slash ? slash + 1 : k, arg);
	}
	free(keys);
}

void kpx_store_clear_dirty(struct kpx_store *s)
{
	/* The change set may hold the last references to thousands of
	 * deleted objects (a big manifest file deleted): give that heap
	 * back to the kernel, glibc would keep it resident. */
	bool big = s->dirty.n >= 1000;

	ht_free(&s->dirty);
	if (big)
		malloc_trim(0);
	s->n_triggers = 0;
	s->dirty_overflow = false;
	s->node_dirty = false;
	s->st.service_changes_pending = 0;
	s->st.endpoint_changes_pending = 0;
	s->st.last_queued_wall = 0;
}

void kpx_store_get_stats(const struct kpx_store *s,
			 struct kpx_store_stats *out)
{
	*out = s->st;
	out->n_services = s->services.n;
	out->n_slices = s->slices.n;
}
