// SPDX-License-Identifier: Apache-2.0
/*
 * Map writer (bpf/map_writer.c) against an in-memory fake of the maps:
 * slot layout, generation flips, stable ids, restart reconcile, map-full
 * handling, Maglev tables. No root needed.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bpf/map_writer.h"

#define MSIZE 31 /* small prime maglev table */

struct fmap {
	size_t ksz, vsz, cap, n;
	uint8_t *keys, *vals;
};

struct fake {
	struct fmap m[KPX_MAP_N];
	size_t updates, deletes, udp_gone, udp_removed;
	uint8_t removed_fe_proto, removed_fe_scope;
};

static const size_t ksz[KPX_MAP_N] = {
	[KPX_MAP_SVC] = sizeof(struct kpx_svc_key),
	[KPX_MAP_SLOTS] = sizeof(struct kpx_slot_key),
	[KPX_MAP_BACKENDS] = 4,
	[KPX_MAP_MAGLEV] = sizeof(struct kpx_maglev_key),
	[KPX_MAP_SVC_META] = 4,
	[KPX_MAP_SRC_RANGE] = sizeof(struct kpx_src_range_key),
	[KPX_MAP_AFFINITY] = sizeof(struct kpx_affinity_key),
};
static const size_t vsz[KPX_MAP_N] = {
	[KPX_MAP_SVC] = sizeof(struct kpx_svc_value),
	[KPX_MAP_SLOTS] = 4,
	[KPX_MAP_BACKENDS] = sizeof(struct kpx_backend_value),
	[KPX_MAP_MAGLEV] = 4 * MSIZE,
	[KPX_MAP_SVC_META] = sizeof(struct kpx_svc_meta),
	[KPX_MAP_SRC_RANGE] = 1,
	[KPX_MAP_AFFINITY] = sizeof(struct kpx_affinity_value),
};

static void fake_init(struct fake *f, size_t backends_cap)
{
	memset(f, 0, sizeof(*f));
	for (int i = 0; i < KPX_MAP_N; i++) {
		f->m[i].ksz = ksz[i];
		f->m[i].vsz = vsz[i];
		f->m[i].cap = i == KPX_MAP_BACKENDS ? backends_cap : 4096;
		f->m[i].keys = calloc(f->m[i].cap, ksz[i]);
		f->m[i].vals = calloc(f->m[i].cap, vsz[i]);
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

static int f_update(void *ctx, enum kpx_map_id id, const void *k,
		    const void *v)
{
	struct fake *f = ctx;
	struct fmap *m = &f->m[id];
	long i = find(m, k);

	if (i < 0) {
		if (m->n == m->cap)
			return -E2BIG;
		i = (long)m->n++;
		memcpy(m->keys + i * m->ksz, k, m->ksz);
	}
	memcpy(m->vals + i * m->vsz, v, m->vsz);
	f->updates++;
	return 0;
}

static int f_del(void *ctx, enum kpx_map_id id, const void *k)
{
	struct fake *f = ctx;
	struct fmap *m = &f->m[id];
	long i = find(m, k);

	if (i < 0)
		return -ENOENT;
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
	strcpy(t->sp.id, "default/web:http/TCP/v4");
	strcpy(t->sp.ns, "default");
	strcpy(t->sp.name, "web");
	strcpy(t->sp.port_name, "http");
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
	cr_assert_eq(kpx_map_writer_sync(w, &t.plan), 0);

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
	cr_assert_eq(kpx_map_writer_sync(w, &t.plan), 0);
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
	cr_assert_eq(kpx_map_writer_sync(w, &t.plan), 0);
	cr_assert_eq(f.updates + f.deletes, 0);

	/* Service gone: everything removed. */
	t.plan.n_svcports = 0;
	cr_assert_eq(kpx_map_writer_sync(w, &t.plan), 0);
	for (int m = 0; m < KPX_MAP_N; m++)
		cr_assert_eq(f.m[m].n, 0, "map %s not empty", kpx_map_names[m]);
	kpx_map_writer_free(w);
	fake_free(&f);
}

Test(map_writer, restart_reuses_ids_writes_nothing_and_sweeps_orphans)
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

	fake_init(&f, 128);
	ops = fake_ops(&f);
	cr_assert_eq(kpx_map_writer_new(&ops, &o, &w), 0);
	tplan_init(&t, (int[]){ 1, 2 }, 2, IPPROTO_TCP);
	cr_assert_eq(kpx_map_writer_sync(w, &t.plan), 0);
	before = svc_get(&f, KPX_SCOPE_INTERNAL);
	kpx_map_writer_free(w); /* agent exits; maps stay */

	f_update(&f, KPX_MAP_SLOTS, &stray, &v);
	f_update(&f, KPX_MAP_BACKENDS, &stray_be, &bv);
	f.updates = f.deletes = 0;
	cr_assert_eq(kpx_map_writer_new(&ops, &o, &w), 0);
	cr_assert_eq(kpx_map_writer_sync(w, &t.plan), 0);
	cr_assert_eq(f.updates, 0, "a restart must not rewrite live entries");
	cr_assert_eq(f.deletes, 2, "stray slot and backend swept");
	after = svc_get(&f, KPX_SCOPE_INTERNAL);
	cr_assert_eq(memcmp(&before, &after, sizeof(before)), 0);
	cr_assert_eq(slot_octet(&f, &after, 0), 1);
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
	cr_assert_eq(kpx_map_writer_sync(w, &t.plan), 0);

	/* Needs 4 backends with room for 3: the update must fail whole. */
	tplan_init(&t, (int[]){ 1, 2, 3, 4 }, 4, IPPROTO_TCP);
	cr_assert_lt(kpx_map_writer_sync(w, &t.plan), 0);
	kpx_map_writer_get_stats(w, &st);
	cr_assert_gt(st.full, 0);
	cr_assert(strstr(st.last_error, "map full"), "%s", st.last_error);
	v = svc_get(&f, KPX_SCOPE_INTERNAL);
	cr_assert_eq(v.count, 2, "old state kept");
	cr_assert_eq(slot_octet(&f, &v, 0), 1);
	cr_assert_eq(slot_octet(&f, &v, 1), 2);
	cr_assert_eq(f.m[KPX_MAP_BACKENDS].n, 2, "no half-written backends");
	cr_assert_eq(f.m[KPX_MAP_SLOTS].n, 4, "no half-written slots");
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
	cr_assert_eq(kpx_map_writer_sync(w, &t.plan), 0);
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
	cr_assert_eq(kpx_map_writer_sync(w, &t.plan), 0);
	cr_assert_eq(f.udp_gone, 1, "removed UDP backend reported once");
	cr_assert_eq(f.udp_removed, 1,
		     "one (local-client frontend, backend) pair reported");
	cr_assert_eq(f.removed_fe_proto, IPPROTO_UDP);
	cr_assert_eq(f.removed_fe_scope, KPX_SCOPE_INTERNAL);
	cr_assert_eq(f.m[KPX_MAP_MAGLEV].n, 2, "one table per scope entry");
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
	cr_assert_eq(kpx_map_writer_sync(w, &t.plan), 0);
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
	cr_assert_eq(kpx_map_writer_sync(w, &t.plan), 0);
	cr_assert_not(affinity_has(&f, in.svc_id, 1));
	cr_assert_not(affinity_has(&f, ex.svc_id, 1));
	cr_assert(affinity_has(&f, in.svc_id, 2));
	cr_assert(affinity_has(&f, ex.svc_id, 2));
	cr_assert(affinity_has(&f, other, 1), "other services untouched");

	/* Service gone: all its affinity entries go with it. */
	t.plan.n_svcports = 0;
	cr_assert_eq(kpx_map_writer_sync(w, &t.plan), 0);
	cr_assert_not(affinity_has(&f, in.svc_id, 2));
	cr_assert_not(affinity_has(&f, ex.svc_id, 2));
	cr_assert(affinity_has(&f, other, 1), "other services untouched");
	cr_assert_eq(f.m[KPX_MAP_AFFINITY].n, 1);
	kpx_map_writer_free(w);
	fake_free(&f);
}

/* The restart read through batches: same result as key by key. */
Test(map_writer, restart_reads_the_pins_in_batches)
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

	fake_init(&f, 128);
	ops = fake_ops(&f);
	ops.lookup_batch = f_batch;
	cr_assert_eq(kpx_map_writer_new(&ops, &o, &w), 0);
	tplan_init(&t, (int[]){ 1, 2, 3, 4, 5 }, 5, IPPROTO_TCP);
	cr_assert_eq(kpx_map_writer_sync(w, &t.plan), 0);
	before = svc_get(&f, KPX_SCOPE_INTERNAL);
	kpx_map_writer_free(w);

	f_update(&f, KPX_MAP_SLOTS, &stray, &v);
	f_update(&f, KPX_MAP_BACKENDS, &stray_be, &bv);
	f.updates = f.deletes = 0;
	batch_calls = 0;
	cr_assert_eq(kpx_map_writer_new(&ops, &o, &w), 0);
	cr_assert_gt(batch_calls, 4, "the pins were not read in batches");
	cr_assert_eq(kpx_map_writer_sync(w, &t.plan), 0);
	cr_assert_eq(f.updates, 0, "a restart must not rewrite live entries");
	cr_assert_eq(f.deletes, 2, "stray slot and backend swept");
	after = svc_get(&f, KPX_SCOPE_INTERNAL);
	cr_assert_eq(memcmp(&before, &after, sizeof(before)), 0);
	for (int i = 0; i < 5; i++)
		cr_assert_eq(slot_octet(&f, &after, i), i + 1);
	kpx_map_writer_free(w);
	fake_free(&f);
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
	cr_assert_eq(kpx_map_writer_sync(w, &t.plan), 0);
	v0 = svc_get(&f, KPX_SCOPE_INTERNAL);
	kpx_map_writer_free(w);

	half = (struct kpx_slot_key){ v0.svc_id, (uint16_t)(v0.gen ^ 1), 0 };
	f_update(&f, KPX_MAP_SLOTS, &half, &junk);
	cr_assert_eq(kpx_map_writer_new(&ops, &o, &w), 0);
	tplan_init(&t, (int[]){ 3, 1, 2 }, 3, IPPROTO_TCP);
	cr_assert_eq(kpx_map_writer_sync(w, &t.plan), 0);
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
	cr_assert_eq(kpx_map_writer_sync(w, &t.plan), 0);
	cr_assert_lt(backend_id_of(&f, 3), 4);
	tplan_init(&t, (int[]){ 2, 3 }, 2, IPPROTO_TCP);
	cr_assert_eq(kpx_map_writer_sync(w, &t.plan), 0);
	tplan_init(&t, (int[]){ 2, 3, 4, 5 }, 4, IPPROTO_TCP);
	cr_assert_eq(kpx_map_writer_sync(w, &t.plan), 0);
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
	cr_assert_eq(kpx_map_writer_sync(w, &t.plan), 0);

	f.updates = f.deletes = 0;
	cr_assert_eq(kpx_map_writer_verify(w), 0);
	cr_assert_eq(kpx_map_writer_sync(w, &t.plan), 0);
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
	cr_assert_eq(kpx_map_writer_sync(w, &t.plan), 0);
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
