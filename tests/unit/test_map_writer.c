// SPDX-License-Identifier: Apache-2.0
/*
 * Map writer (bpf/map_writer.c) against an in-memory fake of the maps:
 * slot layout, generation flips, stable ids, restart reconcile, map-full
 * handling, batched pin reads (kpx_map_walk: buffer growth, key-by-key
 * fallback), Maglev tables, incremental syncs (only changed svcports are
 * written, removals in reverse order, a random sequence of changes keeps
 * the maps equal to the plan). The fake checks the writer's ordering on
 * every operation: no kpx_svc value names a slot or backend that is not
 * there, no slot names a missing backend. No root needed.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bpf/map_walk.h"
#include "bpf/loader.h"
#include "bpf/map_writer.h"
#include "plan/plan_internal.h"

#define MSIZE 31 /* small prime maglev table */

struct fmap {
	size_t ksz, vsz, cap, n;
	uint8_t *keys, *vals;
};

/* One map operation, for order checks: map, delete?, and the svc id (svc,
 * slots, meta, maglev) or backend id (backends) it concerns. */
struct fop {
	enum kpx_map_id m;
	bool del;
	uint32_t id;
	uint8_t octet; /* kpx_svc: last octet of the frontend */
};

struct fake {
	struct fmap m[KPX_MAP_N];
	size_t updates, deletes, udp_gone, udp_removed;
	uint8_t removed_fe_proto, removed_fe_scope;
	size_t violations; /* ordering rules broken (see check_*) */
	char violation[160];
	struct fop log[4096];
	size_t n_log;
};

static const size_t ksz[KPX_MAP_N] = {
	[KPX_MAP_SVC] = sizeof(struct kpx_svc_key),
	[KPX_MAP_SLOTS] = sizeof(struct kpx_slot_key),
	[KPX_MAP_BACKENDS] = 4,
	[KPX_MAP_MAGLEV] = sizeof(struct kpx_maglev_key),
	[KPX_MAP_SVC_META] = 4,
	[KPX_MAP_SRC_RANGE] = sizeof(struct kpx_src_range_key),
	[KPX_MAP_AFFINITY] = sizeof(struct kpx_affinity_key),
	[KPX_MAP_CLUSTER_CIDR] = sizeof(struct kpx_cidr_key),
};
static const size_t vsz[KPX_MAP_N] = {
	[KPX_MAP_SVC] = sizeof(struct kpx_svc_value),
	[KPX_MAP_SLOTS] = 4,
	[KPX_MAP_BACKENDS] = sizeof(struct kpx_backend_value),
	[KPX_MAP_MAGLEV] = 4 * MSIZE,
	[KPX_MAP_SVC_META] = sizeof(struct kpx_svc_meta),
	[KPX_MAP_SRC_RANGE] = 1,
	[KPX_MAP_AFFINITY] = sizeof(struct kpx_affinity_value),
	[KPX_MAP_CLUSTER_CIDR] = 1,
};

static void fake_init(struct fake *f, size_t backends_cap)
{
	memset(f, 0, sizeof(*f));
	for (int i = 0; i < KPX_MAP_N; i++) {
		f->m[i].ksz = ksz[i];
		f->m[i].vsz = vsz[i];
		f->m[i].cap = i == KPX_MAP_BACKENDS ? backends_cap : 4096;
		/* Room for 4096 whatever the capacity: tests raise it. */
		f->m[i].keys = calloc(4096, ksz[i]);
		f->m[i].vals = calloc(4096, vsz[i]);
	}
}

static void fake_free(struct fake *f)
{
	for (int i = 0; i < KPX_MAP_N; i++) {
		free(f->m[i].keys);
		free(f->m[i].vals);
	}
}

static long find(struct fmap *m, const void *k)
{
	for (size_t i = 0; i < m->n; i++)
		if (!memcmp(m->keys + i * m->ksz, k, m->ksz))
			return (long)i;
	return -1;
}

static int f_lookup(void *ctx, enum kpx_map_id id, const void *k, void *v)
{
	struct fmap *m = &((struct fake *)ctx)->m[id];
	long i = find(m, k);

	if (i < 0)
		return -ENOENT;
	memcpy(v, m->vals + i * m->vsz, m->vsz);
	return 0;
}

static void violation(struct fake *f, const char *what)
{
	if (!f->violations++)
		snprintf(f->violation, sizeof(f->violation), "%s", what);
}

static void log_op(struct fake *f, enum kpx_map_id m, bool del, const void *k,
		   const void *v)
{
	struct fop *o;

	if (f->n_log == sizeof(f->log) / sizeof(f->log[0]))
		return;
	o = &f->log[f->n_log++];
	memset(o, 0, sizeof(*o));
	o->m = m;
	o->del = del;
	if (m == KPX_MAP_SVC) {
		o->id = v ? ((const struct kpx_svc_value *)v)->svc_id : 0;
		o->octet = ((const struct kpx_svc_key *)k)->addr[3];
	} else if (m == KPX_MAP_BACKENDS || m == KPX_MAP_SVC_META ||
		   m == KPX_MAP_SLOTS || m == KPX_MAP_MAGLEV) {
		memcpy(&o->id, k, 4); /* svc_id leads the slot/maglev keys */
	}
}

static bool slot_exists(struct fake *f, uint32_t svc, uint16_t gen,
			uint16_t slot, uint32_t *be)
{
	struct fmap *m = &f->m[KPX_MAP_SLOTS];
	struct kpx_slot_key k = { svc, gen, slot };
	long i = find(m, &k);

	if (i >= 0 && be)
		memcpy(be, m->vals + i * m->vsz, 4);
	return i >= 0;
}

/* Before kpx_svc (key k) takes value v: its whole generation is there. */
static void check_svc_update(struct fake *f, const struct kpx_svc_value *v)
{
	for (uint16_t i = 0; i < v->count; i++) {
		uint32_t be;

		if (!slot_exists(f, v->svc_id, v->gen, i, &be))
			violation(f, "kpx_svc flipped to a missing slot");
		else if (find(&f->m[KPX_MAP_BACKENDS], &be) < 0)
			violation(f, "kpx_svc flipped to a missing backend");
	}
	if ((v->flags & KPX_SVC_F_MAGLEV) && v->count) {
		struct kpx_maglev_key mk = { v->svc_id, v->gen };

		if (find(&f->m[KPX_MAP_MAGLEV], &mk) < 0)
			violation(f, "kpx_svc flipped to a missing maglev table");
	}
}

/* Whether a kpx_svc value uses (svc, gen[, slot]). */
static bool svc_uses(struct fake *f, uint32_t svc, uint16_t gen, long slot)
{
	struct fmap *m = &f->m[KPX_MAP_SVC];

	for (size_t i = 0; i < m->n; i++) {
		const struct kpx_svc_value *v = (void *)(m->vals + i * m->vsz);

		if (v->svc_id == svc && v->gen == gen &&
		    (slot < 0 || slot < v->count))
			return true;
	}
	return false;
}

static void check_delete(struct fake *f, enum kpx_map_id id, const void *k)
{
	if (id == KPX_MAP_SLOTS) {
		const struct kpx_slot_key *sk = k;

		if (svc_uses(f, sk->svc_id, sk->gen, sk->slot))
			violation(f, "slot deleted while kpx_svc uses it");
	} else if (id == KPX_MAP_MAGLEV) {
		const struct kpx_maglev_key *mk = k;

		if (svc_uses(f, mk->svc_id, (uint16_t)mk->gen, -1))
			violation(f, "maglev table deleted while in use");
	} else if (id == KPX_MAP_BACKENDS) {
		struct fmap *m = &f->m[KPX_MAP_SLOTS];

		for (size_t i = 0; i < m->n; i++)
			if (!memcmp(m->vals + i * m->vsz, k, 4))
				violation(f, "backend deleted while a slot "
					     "names it");
	}
}

static int f_update(void *ctx, enum kpx_map_id id, const void *k,
		    const void *v)
{
	struct fake *f = ctx;
	struct fmap *m = &f->m[id];
	long i = find(m, k);

	if (id == KPX_MAP_SVC)
		check_svc_update(f, v);
	if (id == KPX_MAP_SLOTS && find(&f->m[KPX_MAP_BACKENDS], v) < 0)
		violation(f, "slot written before its backend");

	if (i < 0) {
		if (m->n == m->cap)
			return -E2BIG;
		i = (long)m->n++;
		memcpy(m->keys + i * m->ksz, k, m->ksz);
	}
	memcpy(m->vals + i * m->vsz, v, m->vsz);
	f->updates++;
	log_op(f, id, false, k, v);
	return 0;
}

static int f_del(void *ctx, enum kpx_map_id id, const void *k)
{
	struct fake *f = ctx;
	struct fmap *m = &f->m[id];
	long i = find(m, k);

	if (i < 0)
		return -ENOENT;
	/* Checked before the delete: the entry itself may be the user. */
	if (id != KPX_MAP_SVC)
		check_delete(f, id, k);
	log_op(f, id, true, k, id == KPX_MAP_SVC ? m->vals + i * m->vsz : NULL);
	m->n--;
	memmove(m->keys + i * m->ksz, m->keys + m->n * m->ksz, m->ksz);
	memmove(m->vals + i * m->vsz, m->vals + m->n * m->vsz, m->vsz);
	f->deletes++;
	return 0;
}

static int f_next(void *ctx, enum kpx_map_id id, const void *k, void *n)
{
	struct fmap *m = &((struct fake *)ctx)->m[id];
	long i = k ? find(m, k) : -1;
	size_t next = i < 0 ? 0 : (size_t)i + 1;

	/* Like the kernel: an unknown key restarts at the first one. */
	if (next >= m->n)
		return -ENOENT;
	memcpy(n, m->keys + next * m->ksz, m->ksz);
	return 0;
}

static void f_gone(void *ctx, const struct kpx_backend_value *be)
{
	(void)be;
	((struct fake *)ctx)->udp_gone++;
}

static void f_removed(void *ctx, const struct kpx_svc_key *fe,
		      const struct kpx_backend_value *be)
{
	struct fake *f = ctx;

	(void)be;
	f->udp_removed++;
	f->removed_fe_proto = fe->proto;
	f->removed_fe_scope = fe->scope;
}

static struct kpx_map_ops fake_ops(struct fake *f)
{
	struct kpx_map_ops o = { f_lookup, f_update, f_del, f_next, f_gone, f,
				 f_removed, NULL };

	return o;
}

/* bpf_map_lookup_batch() over the fake: at most 3 entries per call (the
 * kernel returns short batches too, bucket by bucket), -ENOENT at the end;
 * the batch token is the next index. */
static size_t batch_calls;

static int f_batch(void *ctx, enum kpx_map_id id, void *in, void *out,
		   void *keys, void *vals, uint32_t *count)
{
	struct fmap *m = &((struct fake *)ctx)->m[id];
	uint32_t i = in ? *(uint32_t *)in : 0, n = 0;

	batch_calls++;
	while (n < *count && n < 3 && i < m->n) {
		memcpy((uint8_t *)keys + n * m->ksz, m->keys + i * m->ksz, m->ksz);
		memcpy((uint8_t *)vals + n * m->vsz, m->vals + i * m->vsz, m->vsz);
		n++;
		i++;
	}
	*count = n;
	*(uint32_t *)out = i;
	return i >= m->n ? -ENOENT : 0;
}

static struct kpx_map_writer_opts opts(enum kpx_lb_alg alg)
{
	struct kpx_map_writer_opts o = {
		.services_max = 128, .backends_max = 128, .slots_max = 4096,
		.maglev_size = MSIZE, .maglev_seed = 1, .alg = alg,
	};
	return o;
}

/* The plan's hash of every svcport, then a sync (the writer skips a
 * svcport whose hash it already programmed). */
static int wsync(struct kpx_map_writer *w, struct kpx_plan *plan)
{
	for (size_t i = 0; i < plan->n_svcports; i++)
		plan->svcports[i].hash =
			kpx_plan_svcport_hash(&plan->svcports[i]);
	return kpx_map_writer_sync(w, plan);
}

/* One ClusterIP svcport 198.18.100.1:80 with endpoints 198.18.1.{eps}:8080. */
struct tplan {
	struct kpx_plan plan;
	struct kpx_plan_svcport sp;
	struct kpx_plan_frontend fe;
	struct kpx_plan_endpoint ep[8];
	uint32_t set[8];
};

static void tplan_init(struct tplan *t, const int *eps, size_t n, uint8_t proto)
{
	memset(t, 0, sizeof(*t));
	t->sp.id = kpx_intern("default/web:http/TCP/v4");
	t->sp.ns = kpx_intern("default");
	t->sp.name = kpx_intern("web");
	t->sp.port_name = kpx_intern("http");
	t->sp.family = AF_INET;
	t->sp.proto = proto;
	t->sp.port = 80;
	t->fe.kind = KPX_FE_CLUSTER_IP;
	kpx_addr_parse("198.18.100.1", &t->fe.addr);
	t->fe.port = 80;
	t->sp.frontends = &t->fe;
	t->sp.n_frontends = 1;
	for (size_t i = 0; i < n; i++) {
		char s[32];

		snprintf(s, sizeof(s), "198.18.1.%d", eps[i]);
		kpx_addr_parse(s, &t->ep[i].addr);
		t->ep[i].port = 8080;
		t->ep[i].flags = KPX_EP_READY | KPX_EP_SERVING;
		t->set[i] = (uint32_t)i;
	}
	t->sp.endpoints = t->ep;
	t->sp.n_endpoints = n;
	t->sp.internal = t->sp.external = t->sp.cluster = t->set;
	t->sp.n_internal = t->sp.n_external = t->sp.n_cluster = n;
	t->plan.svcports = &t->sp;
	t->plan.n_svcports = 1;
}

static struct kpx_svc_value svc_get(struct fake *f, uint8_t scope)
{
	struct kpx_svc_key k = { .port = htons(80), .proto = IPPROTO_TCP,
				 .scope = scope, .family = KPX_AF_INET };
	struct kpx_svc_value v = {};
	struct in_addr a;

	inet_pton(AF_INET, "198.18.100.1", &a);
	memcpy(k.addr, &a, 4);
	cr_assert_eq(f_lookup(f, KPX_MAP_SVC, &k, &v), 0, "kpx_svc entry missing");
	return v;
}

/* The last octet of the backend in (svc, gen, slot). */
static int slot_octet(struct fake *f, const struct kpx_svc_value *v, int slot)
{
	struct kpx_slot_key k = { v->svc_id, v->gen, (uint16_t)slot };
	struct kpx_backend_value be;
	uint32_t id;

	cr_assert_eq(f_lookup(f, KPX_MAP_SLOTS, &k, &id), 0, "slot %d", slot);
	cr_assert_eq(f_lookup(f, KPX_MAP_BACKENDS, &id, &be), 0, "backend %u", id);
	cr_assert_eq(ntohs(be.port), 8080);
	return be.addr[3];
}

Test(map_writer, slot_layout_and_generation_flip)
{
	struct kpx_map_writer_opts o = opts(KPX_LB_RANDOM);
	struct kpx_map_writer *w;
	struct kpx_map_ops ops;
	struct fake f;
	struct tplan t;
	struct kpx_svc_value v1, v2;
	uint32_t id_b2_before, id_b2_after;
	struct kpx_slot_key sk;

	fake_init(&f, 128);
	ops = fake_ops(&f);
	cr_assert_eq(kpx_map_writer_new(&ops, &o, &w), 0);
	tplan_init(&t, (int[]){ 1, 2, 3 }, 3, IPPROTO_TCP);
	cr_assert_eq(wsync(w, &t.plan), 0);

	cr_assert_eq(f.m[KPX_MAP_SVC].n, 2, "internal + external entry");
	cr_assert_eq(f.m[KPX_MAP_BACKENDS].n, 3, "backends shared by scopes");
	cr_assert_eq(f.m[KPX_MAP_SLOTS].n, 6);
	v1 = svc_get(&f, KPX_SCOPE_INTERNAL);
	cr_assert_eq(v1.count, 3);
	cr_assert_eq(v1.gen, 0);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(slot_octet(&f, &v1, i), i + 1);
	sk = (struct kpx_slot_key){ v1.svc_id, 0, 1 };
	f_lookup(&f, KPX_MAP_SLOTS, &sk, &id_b2_before);

	/* 1 goes, 4 comes: new generation, old slots and backend gone. */
	tplan_init(&t, (int[]){ 2, 3, 4 }, 3, IPPROTO_TCP);
	cr_assert_eq(wsync(w, &t.plan), 0);
	v2 = svc_get(&f, KPX_SCOPE_INTERNAL);
	cr_assert_eq(v2.svc_id, v1.svc_id, "svc id must be stable");
	cr_assert_eq(v2.gen, 1);
	cr_assert_eq(v2.count, 3);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(slot_octet(&f, &v2, i), i + 2);
	sk = (struct kpx_slot_key){ v2.svc_id, 1, 0 };
	f_lookup(&f, KPX_MAP_SLOTS, &sk, &id_b2_after);
	cr_assert_eq(id_b2_after, id_b2_before, "backend id must be stable");
	cr_assert_eq(f.m[KPX_MAP_SLOTS].n, 6, "old generation deleted");
	cr_assert_eq(f.m[KPX_MAP_BACKENDS].n, 3, "removed backend deleted");
	cr_assert_eq(f.udp_gone, 0, "TCP backends need no socket destroy");
	cr_assert_eq(f.udp_removed, 0, "TCP frontends need no socket destroy");

	/* Unchanged plan: nothing written. */
	f.updates = f.deletes = 0;
	cr_assert_eq(wsync(w, &t.plan), 0);
	cr_assert_eq(f.updates + f.deletes, 0);

	/* Service gone: everything removed. */
	t.plan.n_svcports = 0;
	cr_assert_eq(wsync(w, &t.plan), 0);
	for (int m = 0; m < KPX_MAP_N; m++)
		cr_assert_eq(f.m[m].n, 0, "map %s not empty", kpx_map_names[m]);
	cr_assert_eq(f.violations, 0, "ordering: %s", f.violation);
	kpx_map_writer_free(w);
	fake_free(&f);
}

Test(map_writer, full_backend_map_keeps_previous_state)
{
	struct kpx_map_writer_opts o = opts(KPX_LB_RANDOM);
	struct kpx_map_writer_stats st;
	struct kpx_map_writer *w;
	struct kpx_map_ops ops;
	struct fake f;
	struct tplan t;
	struct kpx_svc_value v;

	fake_init(&f, 3);
	ops = fake_ops(&f);
	cr_assert_eq(kpx_map_writer_new(&ops, &o, &w), 0);
	tplan_init(&t, (int[]){ 1, 2 }, 2, IPPROTO_TCP);
	cr_assert_eq(wsync(w, &t.plan), 0);

	/* Needs 4 backends with room for 3: the update must fail whole. */
	tplan_init(&t, (int[]){ 1, 2, 3, 4 }, 4, IPPROTO_TCP);
	cr_assert_lt(wsync(w, &t.plan), 0);
	kpx_map_writer_get_stats(w, &st);
	cr_assert_gt(st.full, 0);
	cr_assert(strstr(st.last_error, "map full"), "%s", st.last_error);
	v = svc_get(&f, KPX_SCOPE_INTERNAL);
	cr_assert_eq(v.count, 2, "old state kept");
	cr_assert_eq(slot_octet(&f, &v, 0), 1);
	cr_assert_eq(slot_octet(&f, &v, 1), 2);
	cr_assert_eq(f.m[KPX_MAP_BACKENDS].n, 2, "no half-written backends");
	cr_assert_eq(f.m[KPX_MAP_SLOTS].n, 4, "no half-written slots");
	cr_assert_eq(f.violations, 0, "ordering: %s", f.violation);
	kpx_map_writer_free(w);
	fake_free(&f);
}

Test(map_writer, maglev_table_and_udp_backend_removal)
{
	struct kpx_map_writer_opts o = opts(KPX_LB_MAGLEV);
	struct kpx_map_writer *w;
	struct kpx_map_ops ops;
	struct fake f;
	struct tplan t;
	struct kpx_svc_value v;
	struct kpx_maglev_key mk;
	uint32_t table[MSIZE];
	int seen[4] = { 0 };

	fake_init(&f, 128);
	ops = fake_ops(&f);
	cr_assert_eq(kpx_map_writer_new(&ops, &o, &w), 0);
	tplan_init(&t, (int[]){ 1, 2, 3 }, 3, IPPROTO_UDP);
	cr_assert_eq(wsync(w, &t.plan), 0);
	{
		struct kpx_svc_key k = { .port = htons(80), .proto = IPPROTO_UDP,
					 .scope = KPX_SCOPE_INTERNAL,
					 .family = KPX_AF_INET };
		inet_pton(AF_INET, "198.18.100.1", k.addr);
		cr_assert_eq(f_lookup(&f, KPX_MAP_SVC, &k, &v), 0);
	}
	cr_assert(v.flags & KPX_SVC_F_MAGLEV);
	mk = (struct kpx_maglev_key){ v.svc_id, v.gen };
	cr_assert_eq(f_lookup(&f, KPX_MAP_MAGLEV, &mk, table), 0);
	for (int i = 0; i < MSIZE; i++) {
		struct kpx_backend_value be;

		cr_assert_eq(f_lookup(&f, KPX_MAP_BACKENDS, &table[i], &be), 0);
		seen[be.addr[3]]++;
	}
	for (int i = 1; i <= 3; i++)
		cr_assert_gt(seen[i], MSIZE / 3 - 4, "backend %d: %d", i, seen[i]);

	tplan_init(&t, (int[]){ 1, 3 }, 2, IPPROTO_UDP);
	cr_assert_eq(wsync(w, &t.plan), 0);
	cr_assert_eq(f.udp_gone, 1, "removed UDP backend reported once");
	cr_assert_eq(f.udp_removed, 1,
		     "one (local-client frontend, backend) pair reported");
	cr_assert_eq(f.removed_fe_proto, IPPROTO_UDP);
	cr_assert_eq(f.removed_fe_scope, KPX_SCOPE_INTERNAL);
	cr_assert_eq(f.m[KPX_MAP_MAGLEV].n, 2, "one table per scope entry");
	cr_assert_eq(f.violations, 0, "ordering: %s", f.violation);
	kpx_map_writer_free(w);
	fake_free(&f);
}

static uint32_t slot_id(struct fake *f, const struct kpx_svc_value *v, int slot)
{
	struct kpx_slot_key k = { v->svc_id, v->gen, (uint16_t)slot };
	uint32_t id = 0;

	cr_assert_eq(f_lookup(f, KPX_MAP_SLOTS, &k, &id), 0, "slot %d", slot);
	return id;
}

static void affinity_put(struct fake *f, uint32_t svc_id, uint8_t client,
			 uint32_t backend_id)
{
	struct kpx_affinity_key k = { .svc_id = svc_id,
				      .family = KPX_AF_INET };
	struct kpx_affinity_value v = { .backend_id = backend_id };

	k.client[3] = client;
	cr_assert_eq(f_update(f, KPX_MAP_AFFINITY, &k, &v), 0);
}

static bool affinity_has(struct fake *f, uint32_t svc_id, uint8_t client)
{
	struct kpx_affinity_key k = { .svc_id = svc_id,
				      .family = KPX_AF_INET };
	struct kpx_affinity_value v;

	k.client[3] = client;
	return f_lookup(f, KPX_MAP_AFFINITY, &k, &v) == 0;
}

Test(map_writer, affinity_entries_of_removed_backends_are_pruned)
{
	struct kpx_map_writer_opts o = opts(KPX_LB_RANDOM);
	struct kpx_map_writer *w;
	struct kpx_map_ops ops;
	struct fake f;
	struct tplan t;
	struct kpx_svc_value in, ex;
	uint32_t other = 100; /* a svc id no entry of this plan uses */

	fake_init(&f, 128);
	ops = fake_ops(&f);
	cr_assert_eq(kpx_map_writer_new(&ops, &o, &w), 0);
	tplan_init(&t, (int[]){ 1, 2, 3 }, 3, IPPROTO_TCP);
	t.sp.affinity_timeout = 60;
	cr_assert_eq(wsync(w, &t.plan), 0);
	in = svc_get(&f, KPX_SCOPE_INTERNAL);
	ex = svc_get(&f, KPX_SCOPE_EXTERNAL);
	cr_assert(in.flags & KPX_SVC_F_AFFINITY);
	/* Clients 1 and 2 stick to backends .1 and .2 on both scopes. */
	affinity_put(&f, in.svc_id, 1, slot_id(&f, &in, 0));
	affinity_put(&f, in.svc_id, 2, slot_id(&f, &in, 1));
	affinity_put(&f, ex.svc_id, 1, slot_id(&f, &ex, 0));
	affinity_put(&f, ex.svc_id, 2, slot_id(&f, &ex, 1));
	affinity_put(&f, other, 1, slot_id(&f, &in, 0));

	/* .1 goes: clients stuck to it are re-balanced, the rest stay. */
	tplan_init(&t, (int[]){ 2, 3 }, 2, IPPROTO_TCP);
	t.sp.affinity_timeout = 60;
	cr_assert_eq(wsync(w, &t.plan), 0);
	cr_assert_not(affinity_has(&f, in.svc_id, 1));
	cr_assert_not(affinity_has(&f, ex.svc_id, 1));
	cr_assert(affinity_has(&f, in.svc_id, 2));
	cr_assert(affinity_has(&f, ex.svc_id, 2));
	cr_assert(affinity_has(&f, other, 1), "other services untouched");

	/* Service gone: all its affinity entries go with it. */
	t.plan.n_svcports = 0;
	cr_assert_eq(wsync(w, &t.plan), 0);
	cr_assert_not(affinity_has(&f, in.svc_id, 2));
	cr_assert_not(affinity_has(&f, ex.svc_id, 2));
	cr_assert(affinity_has(&f, other, 1), "other services untouched");
	cr_assert_eq(f.m[KPX_MAP_AFFINITY].n, 1);
	cr_assert_eq(f.violations, 0, "ordering: %s", f.violation);
	kpx_map_writer_free(w);
	fake_free(&f);
}

/* How the restarted writer reads the pins: key by key (no lookup_batch),
 * in batches (f_batch), or through f_batch with a map that has no batch
 * operations (LPM trie), one whose hash bucket holds more entries than the
 * reader's first buffers (-ENOSPC with nothing returned until *count is
 * big enough), or one whose read fails after the first batch. */
enum read_mode { R_KEYS, R_BATCH, R_NO_BATCH, R_BIG_BUCKET, R_FAIL_LATER };
static enum read_mode read_mode;
static uint32_t batch_max_count;

static int f_batch_odd(void *ctx, enum kpx_map_id id, void *in, void *out,
		       void *keys, void *vals, uint32_t *count)
{
	batch_max_count = *count > batch_max_count ? *count : batch_max_count;
	if (read_mode == R_NO_BATCH ||
	    (read_mode == R_BIG_BUCKET && *count < 5000) ||
	    (read_mode == R_FAIL_LATER && in && *(uint32_t *)in >= 3)) {
		batch_calls++;
		*count = 0;
		return read_mode == R_NO_BATCH	   ? -524 /* ENOTSUPP */
		       : read_mode == R_BIG_BUCKET ? -ENOSPC
						   : -EIO;
	}
	return f_batch(ctx, id, in, out, keys, vals, count);
}

/* An agent restart over the pins a first writer left, plus a stray slot
 * and backend: the new writer (reading as mode says) reuses the ids,
 * writes nothing and sweeps the orphans. Returns what
 * kpx_map_writer_new said. */
static int restart(enum read_mode mode)
{
	struct kpx_map_writer_opts o = opts(KPX_LB_RANDOM);
	struct kpx_map_writer *w;
	struct kpx_map_ops ops;
	struct fake f;
	struct tplan t;
	struct kpx_svc_value before, after;
	struct kpx_slot_key stray = { 77, 0, 0 };
	uint32_t stray_be = 99, v = 99;
	struct kpx_backend_value bv = { .port = htons(1), .proto = 6, .family = 2 };
	int err;

	fake_init(&f, 128);
	ops = fake_ops(&f);
	cr_assert_eq(kpx_map_writer_new(&ops, &o, &w), 0);
	tplan_init(&t, (int[]){ 1, 2, 3, 4, 5 }, 5, IPPROTO_TCP);
	cr_assert_eq(wsync(w, &t.plan), 0);
	before = svc_get(&f, KPX_SCOPE_INTERNAL);
	kpx_map_writer_free(w); /* agent exits; maps stay */

	f_update(&f, KPX_MAP_SLOTS, &stray, &v);
	f_update(&f, KPX_MAP_BACKENDS, &stray_be, &bv);
	f.updates = f.deletes = 0;
	if (mode != R_KEYS)
		ops.lookup_batch = mode == R_BATCH ? f_batch : f_batch_odd;
	read_mode = mode;
	batch_calls = batch_max_count = 0;
	err = kpx_map_writer_new(&ops, &o, &w);
	if (!err) {
		cr_assert_eq(wsync(w, &t.plan), 0);
		cr_assert_eq(f.updates, 0,
			     "a restart must not rewrite live entries");
		cr_assert_eq(f.deletes, 2, "stray slot and backend swept");
		after = svc_get(&f, KPX_SCOPE_INTERNAL);
		cr_assert_eq(memcmp(&before, &after, sizeof(before)), 0);
		for (int i = 0; i < 5; i++)
			cr_assert_eq(slot_octet(&f, &after, i), i + 1);
		kpx_map_writer_free(w);
	}
	fake_free(&f);
	return err;
}

Test(map_writer, restart_reuses_ids_writes_nothing_and_sweeps_orphans)
{
	cr_assert_eq(restart(R_KEYS), 0);
}

/* The restart read through batches: same result as key by key. */
Test(map_writer, restart_reads_the_pins_in_batches)
{
	cr_assert_eq(restart(R_BATCH), 0);
	cr_assert_gt(batch_calls, 4, "the pins were not read in batches");
}

/* No batch operations: the first call says so and the pins are read key
 * by key, with the same result. */
Test(map_writer, restart_without_batch_ops_reads_key_by_key)
{
	cr_assert_eq(restart(R_NO_BATCH), 0);
	cr_assert_gt(batch_calls, 0, "batches were not tried");
}

/* A bucket bigger than the buffers: they double until it fits. */
Test(map_writer, restart_grows_the_batch_for_a_big_bucket)
{
	cr_assert_eq(restart(R_BIG_BUCKET), 0);
	cr_assert_geq(batch_max_count, 5000, "buffers did not grow");
}

/* A read that fails after the first batch is an error, not a reason to
 * start over key by key. */
Test(map_writer, restart_read_failing_midway_is_an_error)
{
	cr_assert_eq(restart(R_FAIL_LATER), -EIO);
}

/* kpx_map_walk itself: the first call's error is reported as such, a
 * later one is not; the callback can end the walk early. */
static uint32_t walk_fail_at;

static int walk_batch(void *ctx, void *in, void *out, void *keys, void *vals,
		      uint32_t *count)
{
	uint32_t i = in ? *(uint32_t *)in : 0, n = 0;

	(void)ctx;
	if (i >= walk_fail_at) {
		*count = 0;
		return -EOPNOTSUPP;
	}
	while (n < *count && n < 2 && i < 10) {
		((uint32_t *)keys)[n] = i;
		((uint32_t *)vals)[n] = 100 + i;
		n++;
		i++;
	}
	*count = n;
	*(uint32_t *)out = i;
	return i >= 10 ? -ENOENT : 0;
}

static int walk_sum(const void *keys, const void *vals, uint32_t n, void *arg)
{
	uint32_t *sum = arg;

	for (uint32_t i = 0; i < n; i++) {
		cr_assert_eq(((const uint32_t *)vals)[i],
			     100 + ((const uint32_t *)keys)[i]);
		sum[0] += ((const uint32_t *)keys)[i];
		sum[1]++;
	}
	return sum[2] && sum[1] >= sum[2] ? 1 : 0;
}

Test(map_walk, first_error_and_early_end)
{
	struct kpx_map_walk mw = { .lookup_batch = walk_batch,
				   .key_size = 4,
				   .value_size = 4,
				   .chunk = 4 };
	uint32_t sum[3] = { 0 };

	walk_fail_at = 100;
	cr_assert_eq(kpx_map_walk(&mw, walk_sum, sum), 0);
	cr_assert_eq(sum[0], 45);
	cr_assert_eq(sum[1], 10);

	walk_fail_at = 0;
	memset(sum, 0, sizeof(sum));
	cr_assert_eq(kpx_map_walk(&mw, walk_sum, sum), -EOPNOTSUPP);
	cr_assert_eq(mw.first_err, -EOPNOTSUPP);
	cr_assert(kpx_map_no_batch(mw.first_err));
	cr_assert_eq(sum[1], 0);

	walk_fail_at = 4;
	memset(sum, 0, sizeof(sum));
	cr_assert_eq(kpx_map_walk(&mw, walk_sum, sum), -EOPNOTSUPP);
	cr_assert_eq(mw.first_err, 0, "a later failure is not the first's");
	cr_assert_eq(sum[1], 4);

	walk_fail_at = 100;
	memset(sum, 0, sizeof(sum));
	sum[2] = 3; /* stop after 3 entries */
	cr_assert_eq(kpx_map_walk(&mw, walk_sum, sum), 0);
	cr_assert_eq(sum[1], 4, "the walk went on after the callback ended it");
}

/* A slot left stale at restart (inactive generation written, agent killed
 * before the flip) that the first sync writes again is not swept. */
Test(map_writer, stale_slot_rewritten_by_the_first_sync_is_kept)
{
	struct kpx_map_writer_opts o = opts(KPX_LB_RANDOM);
	struct kpx_map_writer *w;
	struct kpx_map_ops ops;
	struct fake f;
	struct tplan t;
	struct kpx_svc_value v0, v1;
	struct kpx_slot_key half;
	uint32_t junk = 1;

	fake_init(&f, 128);
	ops = fake_ops(&f);
	cr_assert_eq(kpx_map_writer_new(&ops, &o, &w), 0);
	tplan_init(&t, (int[]){ 1, 2 }, 2, IPPROTO_TCP);
	cr_assert_eq(wsync(w, &t.plan), 0);
	v0 = svc_get(&f, KPX_SCOPE_INTERNAL);
	kpx_map_writer_free(w);

	half = (struct kpx_slot_key){ v0.svc_id, (uint16_t)(v0.gen ^ 1), 0 };
	f_update(&f, KPX_MAP_SLOTS, &half, &junk);
	cr_assert_eq(kpx_map_writer_new(&ops, &o, &w), 0);
	tplan_init(&t, (int[]){ 3, 1, 2 }, 3, IPPROTO_TCP);
	cr_assert_eq(wsync(w, &t.plan), 0);
	v1 = svc_get(&f, KPX_SCOPE_INTERNAL);
	cr_assert_eq(v1.gen, v0.gen ^ 1);
	cr_assert_eq(v1.count, 3);
	cr_assert_eq(slot_octet(&f, &v1, 0), 3, "rewritten slot was swept");
	cr_assert_eq(slot_octet(&f, &v1, 2), 2);
	kpx_map_writer_free(w);
	fake_free(&f);
}

static uint32_t backend_id_of(struct fake *f, int octet)
{
	struct fmap *m = &f->m[KPX_MAP_BACKENDS];

	for (size_t i = 0; i < m->n; i++) {
		struct kpx_backend_value *b =
			(void *)(m->vals + i * m->vsz);

		if (b->addr[3] == octet)
			return *(uint32_t *)(m->keys + i * m->ksz);
	}
	cr_assert_fail("no backend 198.18.1.%d", octet);
	return 0;
}

/* Ids below the soft limit (what the per-CPU counter arrays cover) are
 * handed out first, a freed one before any id above the limit. */
Test(map_writer, backend_ids_below_the_counter_capacity_come_first)
{
	struct kpx_map_writer_opts o = opts(KPX_LB_RANDOM);
	struct kpx_map_writer *w;
	struct kpx_map_ops ops;
	struct fake f;
	struct tplan t;

	o.be_ids_soft = 4; /* ids 1..3 counted */
	fake_init(&f, 128);
	ops = fake_ops(&f);
	cr_assert_eq(kpx_map_writer_new(&ops, &o, &w), 0);
	tplan_init(&t, (int[]){ 1, 2, 3 }, 3, IPPROTO_TCP);
	cr_assert_eq(wsync(w, &t.plan), 0);
	cr_assert_lt(backend_id_of(&f, 3), 4);
	tplan_init(&t, (int[]){ 2, 3 }, 2, IPPROTO_TCP);
	cr_assert_eq(wsync(w, &t.plan), 0);
	tplan_init(&t, (int[]){ 2, 3, 4, 5 }, 4, IPPROTO_TCP);
	cr_assert_eq(wsync(w, &t.plan), 0);
	cr_assert_lt(backend_id_of(&f, 4), 4, "a counted id was free");
	cr_assert_geq(backend_id_of(&f, 5), 4);
	kpx_map_writer_free(w);
	fake_free(&f);
}

/* The periodic resync: changes made behind the writer's back (a slot and
 * a backend rewritten, a service entry deleted, a stray entry added) are
 * found by comparing the maps with the writer's state and repaired by the
 * next sync; unchanged maps cost no write. */
Test(map_writer, verify_repairs_drift_and_writes_nothing_without_it)
{
	struct kpx_map_writer_opts o = opts(KPX_LB_RANDOM);
	struct kpx_map_writer *w;
	struct kpx_map_ops ops;
	struct fake f;
	struct tplan t;
	struct kpx_svc_value vi, ve;
	struct kpx_svc_key stray = { .port = htons(81), .proto = IPPROTO_TCP,
				     .family = KPX_AF_INET };
	struct kpx_svc_key ek = { .port = htons(80), .proto = IPPROTO_TCP,
				  .scope = KPX_SCOPE_EXTERNAL,
				  .family = KPX_AF_INET };
	struct kpx_backend_value junk = { .port = htons(1), .proto = 6,
					  .family = 2 };
	struct kpx_slot_key sk;
	uint32_t id, other;

	fake_init(&f, 128);
	ops = fake_ops(&f);
	ops.lookup_batch = f_batch;
	cr_assert_eq(kpx_map_writer_new(&ops, &o, &w), 0);
	tplan_init(&t, (int[]){ 1, 2, 3 }, 3, IPPROTO_TCP);
	cr_assert_eq(wsync(w, &t.plan), 0);

	f.updates = f.deletes = 0;
	cr_assert_eq(kpx_map_writer_verify(w), 0);
	cr_assert_eq(wsync(w, &t.plan), 0);
	cr_assert_eq(f.updates + f.deletes, 0, "no drift, no write");

	vi = svc_get(&f, KPX_SCOPE_INTERNAL);
	sk = (struct kpx_slot_key){ vi.svc_id, vi.gen, 1 };
	cr_assert_eq(f_lookup(&f, KPX_MAP_SLOTS, &sk, &id), 0);
	other = backend_id_of(&f, 3);
	f_update(&f, KPX_MAP_SLOTS, &sk, &other);	/* slot 1 -> .3 */
	id = backend_id_of(&f, 1);
	f_update(&f, KPX_MAP_BACKENDS, &id, &junk);	/* .1 rewritten */
	memcpy(ek.addr, (uint8_t[]){ 198, 18, 100, 1 }, 4);
	cr_assert_eq(f_del(&f, KPX_MAP_SVC, &ek), 0);	/* external gone */
	memcpy(stray.addr, ek.addr, 4);
	f_update(&f, KPX_MAP_SVC, &stray, &vi);		/* nobody's entry */

	cr_assert_eq(kpx_map_writer_verify(w), 0);
	cr_assert_eq(wsync(w, &t.plan), 0);
	vi = svc_get(&f, KPX_SCOPE_INTERNAL);
	ve = svc_get(&f, KPX_SCOPE_EXTERNAL);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(slot_octet(&f, &vi, i), i + 1);
		cr_assert_eq(slot_octet(&f, &ve, i), i + 1);
	}
	cr_assert_neq(f_lookup(&f, KPX_MAP_SVC, &stray, &vi), 0,
		      "stray entry kept");
	cr_assert_eq(f.m[KPX_MAP_SVC].n, 2);
	cr_assert_eq(f.m[KPX_MAP_SLOTS].n, 6, "old generation left behind");
	cr_assert_eq(f.m[KPX_MAP_BACKENDS].n, 3);
	kpx_map_writer_free(w);
	fake_free(&f);
}

/* ---- incremental syncs ---- */

#define MP_N 12

/* Up to MP_N ClusterIP svcports "default/sNN:http/TCP/v4" with frontend
 * 198.18.100.NN:80 (fe_octet overrides NN) and endpoints 198.18.NET.E:8080. */
struct mplan {
	struct kpx_plan plan;
	struct kpx_plan_svcport arr[MP_N];
	struct kpx_plan_frontend fe[MP_N];
	struct kpx_plan_endpoint ep[MP_N][8];
	uint32_t set[MP_N][8];
	bool present[MP_N];
	int eps[MP_N][8], n_eps[MP_N], net[MP_N], fe_octet[MP_N];
	uint32_t aff[MP_N];
};

static void mp_init(struct mplan *m)
{
	memset(m, 0, sizeof(*m));
	for (int k = 0; k < MP_N; k++) {
		m->net[k] = 1;
		m->fe_octet[k] = k + 1;
	}
}

static void mp_set(struct mplan *m, int k, const int *eps, int n)
{
	m->present[k] = true;
	m->n_eps[k] = n;
	memcpy(m->eps[k], eps, (size_t)n * sizeof(int));
}

/* Builds the plan from the description (sorted by id, hashed). */
static struct kpx_plan *mp_plan(struct mplan *m)
{
	size_t n = 0;

	for (int k = 0; k < MP_N; k++) {
		struct kpx_plan_svcport *sp = &m->arr[n];
		char s[32];

		if (!m->present[k])
			continue;
		memset(sp, 0, sizeof(*sp));
		snprintf(s, sizeof(s), "default/s%02d:http/TCP/v4", k);
		sp->id = kpx_intern(s);
		sp->ns = kpx_intern("default");
		snprintf(s, sizeof(s), "s%02d", k);
		sp->name = kpx_intern(s);
		sp->port_name = kpx_intern("http");
		sp->family = AF_INET;
		sp->proto = IPPROTO_TCP;
		sp->port = 80;
		sp->affinity_timeout = m->aff[k];
		m->fe[k].kind = KPX_FE_CLUSTER_IP;
		snprintf(s, sizeof(s), "198.18.100.%d", m->fe_octet[k]);
		kpx_addr_parse(s, &m->fe[k].addr);
		m->fe[k].port = 80;
		sp->frontends = &m->fe[k];
		sp->n_frontends = 1;
		for (int i = 0; i < m->n_eps[k]; i++) {
			snprintf(s, sizeof(s), "198.18.%d.%d", m->net[k],
				 m->eps[k][i]);
			kpx_addr_parse(s, &m->ep[k][i].addr);
			m->ep[k][i].port = 8080;
			m->ep[k][i].flags = KPX_EP_READY | KPX_EP_SERVING;
			m->set[k][i] = (uint32_t)i;
		}
		sp->endpoints = m->ep[k];
		sp->n_endpoints = (size_t)m->n_eps[k];
		sp->internal = sp->external = sp->cluster = m->set[k];
		sp->n_internal = sp->n_external = sp->n_cluster =
			(size_t)m->n_eps[k];
		sp->hash = kpx_plan_svcport_hash(sp);
		n++;
	}
	m->plan.svcports = m->arr;
	m->plan.n_svcports = n;
	return &m->plan;
}

static bool svc_lookup(struct fake *f, int octet, uint8_t scope,
		       struct kpx_svc_value *v)
{
	struct kpx_svc_key k = { .port = htons(80), .proto = IPPROTO_TCP,
				 .scope = scope, .family = KPX_AF_INET };

	memcpy(k.addr, (uint8_t[]){ 198, 18, 100, (uint8_t)octet }, 4);
	return f_lookup(f, KPX_MAP_SVC, &k, v) == 0;
}

/* The maps hold exactly the plan: every frontend of a present svcport on
 * both scopes with its endpoints in slot order, nothing else (no entry,
 * slot, backend or name left over). owner[o] (0: lowest present k) names
 * the svcport a shared frontend octet o belongs to. */
static void assert_maps_are(struct fake *f, const struct mplan *m,
			    const int *owner)
{
	size_t entries = 0, slots = 0, backends = 0;
	bool be_seen[256][256] = { { false } };

	cr_assert_eq(f->violations, 0, "ordering: %s", f->violation);
	for (int k = 0; k < MP_N; k++) {
		int o = m->fe_octet[k];

		if (!m->present[k] || (owner && owner[o] >= 0 && owner[o] != k))
			continue;
		for (uint8_t scope = 0; scope < 2; scope++) {
			struct kpx_svc_value v;
			struct kpx_svc_meta meta;

			cr_assert(svc_lookup(f, o, scope, &v),
				  "s%02d scope %u missing", k, scope);
			cr_assert_eq(v.count, m->n_eps[k], "s%02d count", k);
			cr_assert_eq(f_lookup(f, KPX_MAP_SVC_META, &v.svc_id,
					      &meta), 0);
			cr_assert(strstr(meta.name, m->arr[0].ns));
			for (int i = 0; i < v.count; i++) {
				struct kpx_backend_value be;
				uint32_t id;

				cr_assert(slot_exists(f, v.svc_id, v.gen,
						      (uint16_t)i, &id));
				cr_assert_eq(f_lookup(f, KPX_MAP_BACKENDS, &id,
						      &be), 0);
				cr_assert_eq(be.addr[2], m->net[k]);
				cr_assert_eq(be.addr[3], m->eps[k][i],
					     "s%02d slot %d", k, i);
				if (!be_seen[be.addr[2]][be.addr[3]]) {
					be_seen[be.addr[2]][be.addr[3]] = true;
					backends++;
				}
			}
			entries++;
			slots += v.count;
		}
	}
	cr_assert_eq(f->m[KPX_MAP_SVC].n, entries, "stray kpx_svc entries");
	cr_assert_eq(f->m[KPX_MAP_SVC_META].n, entries, "stray names");
	cr_assert_eq(f->m[KPX_MAP_SLOTS].n, slots, "stray slots");
	cr_assert_eq(f->m[KPX_MAP_BACKENDS].n, backends, "stray backends");
}

Test(map_writer, change_to_one_svcport_writes_only_its_entries)
{
	struct kpx_map_writer_opts o = opts(KPX_LB_RANDOM);
	struct kpx_map_writer_stats st;
	struct kpx_map_writer *w;
	struct kpx_map_ops ops;
	struct kpx_svc_value before[MP_N][2], after;
	struct mplan m;
	struct fake f;

	fake_init(&f, 128);
	ops = fake_ops(&f);
	cr_assert_eq(kpx_map_writer_new(&ops, &o, &w), 0);
	mp_init(&m);
	for (int k = 0; k < 5; k++) {
		m.net[k] = 10 + k; /* no backend shared between svcports */
		mp_set(&m, k, (int[]){ 1, 2, 3 }, 3);
	}
	cr_assert_eq(kpx_map_writer_sync(w, mp_plan(&m)), 0);
	kpx_map_writer_get_stats(w, &st);
	cr_assert(st.last_sync_full, "the first sync is the full reconcile");
	cr_assert_eq(st.last_svcports, 5);
	for (int k = 0; k < 5; k++)
		for (uint8_t s = 0; s < 2; s++)
			cr_assert(svc_lookup(&f, k + 1, s, &before[k][s]));

	/* Identical plan: nothing written, nothing even computed. */
	f.updates = f.deletes = f.n_log = 0;
	cr_assert_eq(kpx_map_writer_sync(w, mp_plan(&m)), 0);
	kpx_map_writer_get_stats(w, &st);
	cr_assert_eq(f.updates + f.deletes, 0);
	cr_assert_not(st.last_sync_full);
	cr_assert_eq(st.last_svcports, 0);

	/* s02: .3 goes, .4 comes. Its two entries flip, nothing else. */
	mp_set(&m, 2, (int[]){ 1, 2, 4 }, 3);
	f.updates = f.deletes = f.n_log = 0;
	cr_assert_eq(kpx_map_writer_sync(w, mp_plan(&m)), 0);
	kpx_map_writer_get_stats(w, &st);
	cr_assert_eq(st.last_svcports, 1);
	cr_assert_eq(f.updates, 1 + 2 * 3 + 2,
		     "one backend, 3 slots per scope, 2 flips: %zu", f.updates);
	cr_assert_eq(f.deletes, 2 * 3 + 1, "old slots and .3: %zu", f.deletes);
	for (size_t i = 0; i < f.n_log; i++)
		if (f.log[i].m == KPX_MAP_SVC)
			cr_assert_eq(f.log[i].octet, 3, "another frontend written");
	for (int k = 0; k < 5; k++)
		for (uint8_t s = 0; s < 2; s++) {
			cr_assert(svc_lookup(&f, k + 1, s, &after));
			if (k != 2)
				cr_assert_eq(memcmp(&after, &before[k][s],
						    sizeof(after)), 0,
					     "s%02d touched", k);
			else
				cr_assert_neq(after.gen, before[k][s].gen);
		}
	assert_maps_are(&f, &m, NULL);
	kpx_map_writer_free(w);
	fake_free(&f);
}

/* A removed svcport: entries first, then their slots, then the backends
 * only they used; backends another svcport still uses stay. */
Test(map_writer, removed_svcport_deleted_in_reverse_order)
{
	struct kpx_map_writer_opts o = opts(KPX_LB_MAGLEV);
	struct kpx_map_writer *w;
	struct kpx_map_ops ops;
	struct kpx_svc_value v[2];
	struct mplan m;
	struct fake f;
	size_t last_svc = 0, first_slot = SIZE_MAX, last_slot = 0;
	size_t first_be = SIZE_MAX, n_be = 0;

	fake_init(&f, 128);
	ops = fake_ops(&f);
	cr_assert_eq(kpx_map_writer_new(&ops, &o, &w), 0);
	mp_init(&m);
	mp_set(&m, 0, (int[]){ 1, 2 }, 2);
	mp_set(&m, 1, (int[]){ 2, 3, 4 }, 3); /* shares .2 with s00 */
	mp_set(&m, 2, (int[]){ 5 }, 1);
	cr_assert_eq(kpx_map_writer_sync(w, mp_plan(&m)), 0);
	cr_assert(svc_lookup(&f, 2, 0, &v[0]));
	cr_assert(svc_lookup(&f, 2, 1, &v[1]));

	m.present[1] = false;
	f.updates = f.deletes = f.n_log = 0;
	cr_assert_eq(kpx_map_writer_sync(w, mp_plan(&m)), 0);
	cr_assert_eq(f.updates, 0, "a removal writes nothing");
	for (size_t i = 0; i < f.n_log; i++) {
		const struct fop *op = &f.log[i];

		cr_assert(op->del);
		if (op->m == KPX_MAP_SVC)
			last_svc = i;
		if (op->m == KPX_MAP_SLOTS || op->m == KPX_MAP_MAGLEV) {
			cr_assert(op->id == v[0].svc_id || op->id == v[1].svc_id);
			if (first_slot == SIZE_MAX)
				first_slot = i;
			last_slot = i;
		}
		if (op->m == KPX_MAP_BACKENDS) {
			n_be++;
			if (first_be == SIZE_MAX)
				first_be = i;
		}
	}
	/* Per entry: its kpx_svc key, then its slots and table. */
	cr_assert_lt(f.log[0].m == KPX_MAP_SVC ? 0 : 1, 1,
		     "the first delete is not a kpx_svc entry");
	cr_assert_neq(first_slot, SIZE_MAX);
	cr_assert_lt(first_be, SIZE_MAX);
	cr_assert_gt(first_be, first_slot);
	cr_assert_gt(last_slot, last_svc - 1);
	cr_assert_eq(n_be, 2, ".3 and .4 deleted, .2 kept for s00: %zu", n_be);
	assert_maps_are(&f, &m, NULL);
	cr_assert_eq(f.m[KPX_MAP_MAGLEV].n, 4, "tables of s00 and s02");
	kpx_map_writer_free(w);
	fake_free(&f);
}

/* A svcport whose write failed (map full) is written again by the next
 * sync although its hash did not change. */
Test(map_writer, failed_svcport_is_retried_with_an_unchanged_plan)
{
	struct kpx_map_writer_opts o = opts(KPX_LB_RANDOM);
	struct kpx_map_writer_stats st;
	struct kpx_map_writer *w;
	struct kpx_map_ops ops;
	struct mplan m;
	struct fake f;

	fake_init(&f, 3);
	ops = fake_ops(&f);
	cr_assert_eq(kpx_map_writer_new(&ops, &o, &w), 0);
	mp_init(&m);
	mp_set(&m, 0, (int[]){ 1, 2 }, 2);
	cr_assert_eq(kpx_map_writer_sync(w, mp_plan(&m)), 0);
	mp_set(&m, 1, (int[]){ 3, 4 }, 2); /* needs 4 backends, room for 3 */
	cr_assert_lt(kpx_map_writer_sync(w, mp_plan(&m)), 0);
	cr_assert_eq(f.m[KPX_MAP_SVC].n, 2, "s01 not written");
	f.m[KPX_MAP_BACKENDS].cap = 128;
	cr_assert_eq(kpx_map_writer_sync(w, mp_plan(&m)), 0);
	kpx_map_writer_get_stats(w, &st);
	cr_assert_eq(st.last_svcports, 1, "only the failed svcport retried");
	assert_maps_are(&f, &m, NULL);
	f.updates = f.deletes = 0;
	cr_assert_eq(kpx_map_writer_sync(w, mp_plan(&m)), 0);
	cr_assert_eq(f.updates + f.deletes, 0, "retried once, not forever");
	kpx_map_writer_free(w);
	fake_free(&f);
}

/* Two svcports claim one frontend: the first keeps it while it wants it;
 * when it lets go, the other one gets it in the same sync, without the
 * frontend disappearing in between. */
Test(map_writer, frontend_claimed_twice_moves_without_a_gap)
{
	struct kpx_map_writer_opts o = opts(KPX_LB_RANDOM);
	struct kpx_map_writer *w;
	struct kpx_map_ops ops;
	struct mplan m;
	struct fake f;
	int owner[256];

	memset(owner, -1, sizeof(owner));
	fake_init(&f, 128);
	ops = fake_ops(&f);
	cr_assert_eq(kpx_map_writer_new(&ops, &o, &w), 0);
	mp_init(&m);
	m.fe_octet[1] = 1; /* s01 claims s00's frontend */
	mp_set(&m, 0, (int[]){ 1, 2 }, 2);
	mp_set(&m, 1, (int[]){ 7 }, 1);
	owner[1] = 0;
	cr_assert_eq(kpx_map_writer_sync(w, mp_plan(&m)), 0);
	assert_maps_are(&f, &m, owner);

	/* s01 changes: still s00's. */
	mp_set(&m, 1, (int[]){ 7, 8 }, 2);
	cr_assert_eq(kpx_map_writer_sync(w, mp_plan(&m)), 0);
	assert_maps_are(&f, &m, owner);

	/* s00 moves to another frontend: s01 (unchanged) takes .1. */
	m.fe_octet[0] = 9;
	f.n_log = 0;
	cr_assert_eq(kpx_map_writer_sync(w, mp_plan(&m)), 0);
	owner[1] = 1;
	assert_maps_are(&f, &m, owner);
	for (size_t i = 0; i < f.n_log; i++)
		cr_assert(!(f.log[i].m == KPX_MAP_SVC && f.log[i].del &&
			    f.log[i].octet == 1),
			  "frontend .1 deleted while moving");

	/* s00 comes back to .1: s01 keeps it now. */
	m.fe_octet[0] = 1;
	cr_assert_eq(kpx_map_writer_sync(w, mp_plan(&m)), 0);
	assert_maps_are(&f, &m, owner);

	/* s01 removed: s00 gets .1 in the same sync. */
	m.present[1] = false;
	f.n_log = 0;
	cr_assert_eq(kpx_map_writer_sync(w, mp_plan(&m)), 0);
	assert_maps_are(&f, &m, NULL);
	for (size_t i = 0; i < f.n_log; i++)
		cr_assert(!(f.log[i].m == KPX_MAP_SVC && f.log[i].del),
			  "frontend .1 deleted while moving");
	kpx_map_writer_free(w);
	fake_free(&f);
}

/* A seeded random walk of plan changes (svcports added and removed,
 * endpoint sets from a pool the svcports share, affinity on and off),
 * with restarts and resyncs in between: after every sync the maps are
 * exactly the plan and no operation broke the write order. */
Test(map_writer, random_changes_keep_maps_equal_to_the_plan)
{
	struct kpx_map_writer_opts o = opts(KPX_LB_MAGLEV);
	struct kpx_map_writer_stats st;
	struct kpx_map_writer *w;
	struct kpx_map_ops ops;
	struct mplan m;
	struct fake f;
	unsigned seed = 12345;

	fake_init(&f, 128);
	ops = fake_ops(&f);
	ops.lookup_batch = f_batch;
	cr_assert_eq(kpx_map_writer_new(&ops, &o, &w), 0);
	mp_init(&m);
	for (int round = 0; round < 300; round++) {
		int changes = 1 + rand_r(&seed) % 3;

		for (int c = 0; c < changes; c++) {
			int k = rand_r(&seed) % MP_N, r = rand_r(&seed) % 10;

			if (r < 2) {
				m.present[k] = !m.present[k];
			} else if (r < 3) {
				m.aff[k] = m.aff[k] ? 0 : 60;
			} else {
				int eps[8], n = rand_r(&seed) % 6;

				for (int i = 0; i < n; i++)
					eps[i] = 1 + (i * 2 + rand_r(&seed) % 2);
				mp_set(&m, k, eps, n);
			}
		}
		if (round % 50 == 49) {
			kpx_map_writer_free(w); /* agent restart */
			cr_assert_eq(kpx_map_writer_new(&ops, &o, &w), 0);
		}
		if (round % 30 == 29)
			cr_assert_eq(kpx_map_writer_verify(w), 0);
		cr_assert_eq(kpx_map_writer_sync(w, mp_plan(&m)), 0,
			     "round %d", round);
		assert_maps_are(&f, &m, NULL);
		f.updates = f.deletes = 0;
		cr_assert_eq(kpx_map_writer_sync(w, mp_plan(&m)), 0);
		kpx_map_writer_get_stats(w, &st);
		cr_assert_eq(f.updates + f.deletes, 0,
			     "round %d: unchanged plan wrote", round);
		cr_assert_eq(st.last_svcports, 0);
	}
	kpx_map_writer_free(w);
	fake_free(&f);
}

/* Each entry is the translation of one plan row: tc's (external) of the
 * REMOTE row, the socket hooks' (internal) of the NODE row; masquerade,
 * empty verdict and source ranges come from the row, the host flag from
 * the endpoint, the cluster CIDR map from the plan's input. */
Test(map_writer, entries_translate_the_rows)
{
	struct kpx_map_writer_opts o = opts(KPX_LB_RANDOM);
	struct kpx_plan_row *rr, *nr;
	struct kpx_map_writer *w;
	struct kpx_map_ops ops;
	struct kpx_svc_value ve, vi;
	struct kpx_cidr_key ck = {};
	struct kpx_backend_value be;
	struct fake f;
	struct tplan t;
	uint8_t one;
	uint32_t id;

	fake_init(&f, 128);
	ops = fake_ops(&f);
	cr_assert_eq(kpx_map_writer_new(&ops, &o, &w), 0);
	tplan_init(&t, (int[]){ 1, 2 }, 2, IPPROTO_TCP);
	t.ep[1].flags |= KPX_EP_LOCAL | KPX_EP_HOST;
	/* the REMOTE row: internal set minus the host endpoint */
	t.sp.n_external = 1;
	rr = &t.fe.rows[KPX_ORIGIN_REMOTE];
	nr = &t.fe.rows[KPX_ORIGIN_NODE];
	rr->set = KPX_SET_EXTERNAL;
	rr->masq = KPX_MASQ_OFF_CLUSTER;
	rr->empty = KPX_EMPTY_DROP;
	nr->set = KPX_SET_INTERNAL;
	nr->masq = KPX_MASQ_ALWAYS;
	kpx_cidr_parse("198.19.0.0/16", &t.plan.input.cluster_cidrs[0]);
	t.plan.input.n_cluster_cidrs = 1;
	cr_assert_eq(wsync(w, &t.plan), 0);

	ve = svc_get(&f, KPX_SCOPE_EXTERNAL);
	vi = svc_get(&f, KPX_SCOPE_INTERNAL);
	cr_expect_eq(ve.count, 1, "external entry: the REMOTE row's set");
	cr_expect_eq(vi.count, 2, "internal entry: the NODE row's set");
	cr_expect(ve.flags & KPX_SVC_F_SNAT_OFF_CLUSTER);
	cr_expect_not(ve.flags & KPX_SVC_F_SNAT);
	cr_expect(ve.flags & KPX_SVC_F_EMPTY_DROP);
	cr_expect_not(vi.flags & (KPX_SVC_F_SNAT | KPX_SVC_F_SNAT_OFF_CLUSTER),
		      "socket hooks never masquerade");
	cr_expect_not(vi.flags & KPX_SVC_F_EMPTY_DROP);
	ck.prefixlen = 32 + 16;
	ck.family = KPX_AF_INET;
	ck.addr[0] = 198;
	ck.addr[1] = 19;
	cr_expect_eq(f_lookup(&f, KPX_MAP_CLUSTER_CIDR, &ck, &one), 0,
		     "the plan's cluster CIDR in kpx_cluster_cidr");
	cr_expect_eq(f.m[KPX_MAP_CLUSTER_CIDR].n, 1);
	{
		struct kpx_slot_key sk = { vi.svc_id, vi.gen, 1 };

		cr_assert_eq(f_lookup(&f, KPX_MAP_SLOTS, &sk, &id), 0);
		cr_assert_eq(f_lookup(&f, KPX_MAP_BACKENDS, &id, &be), 0);
		cr_expect_eq(be.addr[3], 2);
		cr_expect(be.flags & KPX_BE_F_HOST, "host endpoint flagged");
		cr_expect(be.flags & KPX_BE_F_LOCAL);
	}

	/* --masquerade-all: ALWAYS; the cluster CIDR goes */
	rr->masq = KPX_MASQ_ALWAYS;
	t.plan.input.n_cluster_cidrs = 0;
	cr_assert_eq(wsync(w, &t.plan), 0);
	ve = svc_get(&f, KPX_SCOPE_EXTERNAL);
	cr_expect(ve.flags & KPX_SVC_F_SNAT);
	cr_expect_not(ve.flags & KPX_SVC_F_SNAT_OFF_CLUSTER);
	cr_expect_eq(f.m[KPX_MAP_CLUSTER_CIDR].n, 0);
	cr_assert_eq(f.violations, 0, "ordering: %s", f.violation);
	kpx_map_writer_free(w);
	fake_free(&f);
}

/* Which pinned maps an agent reuses across ABI versions: the same version
 * all; an older one those whose layout did not change since; an unknown
 * one (newer, or unreadable: 0) none. */
Test(bpf_abi, pins_of_another_version_are_not_reused_blindly)
{
	cr_expect(kpx_bpf_abi_keep("kpx_svc", KPX_ABI_VERSION));
	cr_expect(kpx_bpf_abi_keep("kpx_ct", 1), "unchanged since version 1");
	cr_expect(kpx_bpf_abi_keep("kpx_svc", 1));
	cr_expect_not(kpx_bpf_abi_keep("kpx_cluster_cidr", 1),
		      "introduced by version 2: a version-1 pin is not it");
	cr_expect_not(kpx_bpf_abi_keep("kpx_svc", KPX_ABI_VERSION + 1),
		      "a newer build's layout is unknown");
	cr_expect_not(kpx_bpf_abi_keep("kpx_ct", 0));
	cr_expect_not(kpx_bpf_abi_keep("kpx_not_a_map", 1));
}

/* Issue 13: an object that cannot be programmed (here: more endpoints
 * than the ABI's 16-bit slot count; a full map likewise) is skipped with
 * an error naming it, and every other object is written. */
Test(map_writer, object_that_cannot_be_programmed_never_blocks_others)
{
	struct kpx_map_writer_opts o = opts(KPX_LB_RANDOM);
	struct kpx_map_writer_stats st;
	struct kpx_plan_svcport sps[2];
	struct kpx_plan_endpoint *eps;
	struct kpx_map_writer *w;
	struct kpx_map_ops ops;
	struct kpx_svc_value v;
	struct fake f;
	struct tplan t, big;
	uint32_t *set;
	const size_t n = 70000;

	fake_init(&f, 128);
	ops = fake_ops(&f);
	cr_assert_eq(kpx_map_writer_new(&ops, &o, &w), 0);
	tplan_init(&t, (int[]){ 1, 2 }, 2, IPPROTO_TCP);
	tplan_init(&big, (int[]){ 1 }, 1, IPPROTO_TCP);
	big.sp.id = kpx_intern("default/big:http/TCP/v4");
	big.sp.name = kpx_intern("big");
	kpx_addr_parse("198.18.100.2", &big.fe.addr);
	eps = calloc(n, sizeof(*eps));
	set = calloc(n, sizeof(*set));
	cr_assert(eps && set);
	for (size_t i = 0; i < n; i++) {
		eps[i].addr.family = AF_INET;
		eps[i].addr.bytes[0] = 10;
		eps[i].addr.bytes[1] = (uint8_t)(i >> 16);
		eps[i].addr.bytes[2] = (uint8_t)(i >> 8);
		eps[i].addr.bytes[3] = (uint8_t)i;
		eps[i].port = 8080;
		eps[i].flags = KPX_EP_READY | KPX_EP_SERVING;
		set[i] = (uint32_t)i;
	}
	big.sp.endpoints = eps;
	big.sp.n_endpoints = n;
	big.sp.internal = big.sp.external = big.sp.cluster = set;
	big.sp.n_internal = big.sp.n_external = big.sp.n_cluster = n;
	big.sp.frontends = &big.fe;
	sps[0] = big.sp; /* sorted by id: big before web */
	sps[1] = t.sp;
	t.plan.svcports = sps;
	t.plan.n_svcports = 2;

	cr_expect_neq(wsync(w, &t.plan), 0, "the sync reports the skipped one");
	kpx_map_writer_get_stats(w, &st);
	cr_expect_eq(st.last_skipped, 1, "one svcport skipped");
	cr_expect_not(st.last_sync_failed, "not a failure of the whole sync");
	cr_expect(strstr(st.last_error, "default/big:http") &&
			  strstr(st.last_error, "70000 endpoints"),
		  "error names the object and why: %s", st.last_error);
	v = svc_get(&f, KPX_SCOPE_INTERNAL);
	cr_expect_eq(v.count, 2, "the other service is programmed");
	cr_expect_eq(f.m[KPX_MAP_SVC].n, 2, "only web's two entries");
	cr_assert_eq(f.violations, 0, "ordering: %s", f.violation);
	kpx_map_writer_free(w);
	fake_free(&f);
	free(eps);
	free(set);
}
