// SPDX-License-Identifier: Apache-2.0
/*
 * The affinity carry-over of a table rebuild (see the comment of
 * kpx_nft_carry_affinity).
 * Owns: nothing beyond one call. Must not: send anything.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "nft/nft_dump.h"
#include "nft/nft_internal.h"

/* Open-addressing map uint64 -> size_t for the carry-over lookups. */
struct u64map {
	uint64_t *k;
	size_t *v;
	size_t mask;
};

#define U64_EMPTY UINT64_MAX

static int u64map_init(struct u64map *m, size_t n)
{
	size_t cap = 16;
	while (cap < 2 * n)
		cap *= 2;
	m->k = malloc(cap * sizeof(*m->k));
	m->v = malloc(cap * sizeof(*m->v));
	m->mask = cap - 1;
	if (!m->k || !m->v)
		return -ENOMEM;
	memset(m->k, 0xff, cap * sizeof(*m->k));
	return 0;
}

static size_t u64map_slot(const struct u64map *m, uint64_t k)
{
	size_t i = (size_t)((k * 0x9e3779b97f4a7c15ull) >> 20) & m->mask;
	while (m->k[i] != U64_EMPTY && m->k[i] != k)
		i = (i + 1) & m->mask;
	return i;
}

static void u64map_put(struct u64map *m, uint64_t k, size_t v)
{
	size_t i = u64map_slot(m, k);
	m->k[i] = k;
	m->v[i] = v;
}

static bool u64map_get(const struct u64map *m, uint64_t k, size_t *v)
{
	size_t i = u64map_slot(m, k);
	if (m->k[i] == U64_EMPTY)
		return false;
	*v = m->v[i];
	return true;
}

static void u64map_free(struct u64map *m)
{
	free(m->k);
	free(m->v);
}

/* The endpoints of group `kind` of sp (indices into sp->endpoints). */
/* The endpoints of set `set` of sp when sp has that set's chain (indices
 * into sp->endpoints). */
static const uint32_t *group_idx(const struct kpx_plan_svcport *sp,
				 const struct kpx_nft_shape *s, int set,
				 size_t *n)
{
	const uint32_t *idx;

	*n = 0;
	if (set > KPX_SET_CLUSTER || !s->chain[set])
		return NULL;
	idx = kpx_plan_set_idx(sp, set, n);
	if (*n > SEL_M)
		*n = SEL_M;
	return idx;
}

/* The svcport a chain's key names: its id, or for a key cut to fit the
 * userdata, the svcport whose id gives the same key. */
static const struct kpx_plan_svcport *find_sp(const struct kpx_plan *plan,
					      const char *key)
{
	const struct kpx_plan_svcport *sp = kpx_plan_find(plan, key);
	char k[KPX_NFT_KEY_MAX];

	if (sp || !kpx_nft_key_truncated(key))
		return sp;
	for (size_t i = 0; i < plan->n_svcports; i++) {
		kpx_nft_svcport_key(plan->svcports[i].id, k);
		if (!strcmp(k, key))
			return &plan->svcports[i];
	}
	return NULL;
}

static double ms_since(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) * 1e3 +
	       (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

/*
 * A rebuild of the table (the first sync after a start, a repair after
 * drift) must not forget ClientIP affinity, or a restart of the agent
 * re-balances every client. The affinity entries of the table being
 * replaced are read back right before the transaction is sent and added
 * to the new table in it, with the time they had left, translated to the
 * new numbering: the old group (4 * svcport number + kind) names its
 * svcport through the userdata of the chain that owned it, and becomes
 * that svcport's group in the new table. The endpoint id is a hash of
 * the endpoint's address . port (ep_id), so an endpoint keeps its id in
 * the new group; an entry whose id no endpoint of the new group has is
 * dropped (endpoint gone), as are entries of svcports that are gone or
 * lost affinity. (Ids differ between old and new group only after a
 * 32-bit hash collision inside a group: such an entry is dropped or
 * lands on another live endpoint, a re-balance as without carry-over.)
 * The old @epv is not read: a set dump costs the kernel quadratic time
 * in the set size (300k elements at 30k services x 10: seconds).
 * Traffic uses the old table until the commit, so only entries made
 * between this read and the commit are lost.
 * Runs only at a full sync, where every svcport programmed is in b->todo.
 */
size_t kpx_nft_carry_affinity(struct kpx_backend *b, const struct kpx_plan *plan)
{
	struct kpx_nft_aff_snap snap;
	struct u64map gm = { 0 }, em = { 0 };
	size_t *gplan = NULL, kept = 0, total, gone_sp = 0, gone_ep = 0, neps = 0;
	uint32_t *ids = NULL;
	size_t *tix = NULL; /* plan index -> todo index, SIZE_MAX: none */
	struct timespec t0;
	double read_ms = 0;
	int err;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	err = b->io.read_affinity(b->io.ctx, &snap);
	read_ms = ms_since(&t0);
	if (err) {
		if (err != -ENOENT)
			kpx_warn("nft: reading the affinity entries of the old "
				 "table: %s; clients will be re-balanced",
				 strerror(-err));
		return 0;
	}
	total = snap.n_aff[0] + snap.n_aff[1];
	if (!total)
		goto out;
	/* old group -> index g in snap.groups -> plan index of its svcport
	 * (SIZE_MAX: gone, or without that group or affinity now) */
	gplan = malloc((snap.n_groups + 1) * sizeof(*gplan));
	ids = malloc(SEL_M * sizeof(*ids));
	tix = malloc((plan->n_svcports + 1) * sizeof(*tix));
	if (!gplan || !ids || !tix || u64map_init(&gm, snap.n_groups)) {
		err = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < plan->n_svcports; i++)
		tix[i] = SIZE_MAX;
	for (size_t t = 0; t < b->n_todo; t++)
		tix[b->todo[t].i] = t;
	for (size_t g = 0; g < snap.n_groups; g++) {
		const struct kpx_plan_svcport *sp = find_sp(plan, snap.groups[g].id);
		size_t n = 0;

		gplan[g] = sp ? (size_t)(sp - plan->svcports) : SIZE_MAX;
		if (!sp || !sp->affinity_timeout || tix[gplan[g]] == SIZE_MAX ||
		    !group_idx(sp, &b->todo[tix[gplan[g]]].shape,
			       (int)(snap.groups[g].group % 4), &n) || !n)
			gplan[g] = SIZE_MAX;
		neps += n;
		u64map_put(&gm, snap.groups[g].group, g);
	}
	/* (g, endpoint id) of every endpoint of those groups now */
	if ((err = u64map_init(&em, neps)))
		goto out;
	for (size_t g = 0; g < snap.n_groups; g++) {
		const struct kpx_plan_svcport *sp;
		const uint32_t *idx;
		uint8_t d[32];
		size_t n;

		if (gplan[g] == SIZE_MAX)
			continue;
		sp = &plan->svcports[gplan[g]];
		idx = group_idx(sp, &b->todo[tix[gplan[g]]].shape,
				(int)(snap.groups[g].group % 4), &n);
		for (size_t i = 0; i < n; i++) {
			size_t l = kpx_nft_ep_data(d, &sp->endpoints[idx[i]]);
			ids[i] = kpx_nft_ep_id(d, l, ids, i);
			u64map_put(&em, (uint64_t)g << 32 | ids[i], 0);
		}
	}
	for (int f = 0; f < 2; f++) {
		size_t l = f ? 16 : 4, g, unused;
		for (size_t i = 0; i < snap.n_aff[f]; i++) {
			const struct kpx_nft_aff_elem *a = &snap.aff[f][i];
			const struct kpx_plan_svcport *sp;

			if (!u64map_get(&gm, a->group, &g) || gplan[g] == SIZE_MAX ||
			    plan->svcports[gplan[g]].family != (f ? AF_INET6 : AF_INET)) {
				gone_sp++;
				continue;
			}
			if (!u64map_get(&em, (uint64_t)g << 32 | a->id, &unused)) {
				gone_ep++;
				continue;
			}
			sp = &plan->svcports[gplan[g]];
			uint64_t t = (uint64_t)sp->affinity_timeout * 1000;
			uint64_t left = a->expires_ms && a->expires_ms < t ?
						a->expires_ms : t;
			uint32_t ng = KPX_NFT_GROUP(b->todo[tix[gplan[g]]].num,
						    a->group % 4);
			uint8_t key[20];
			memcpy(key, a->saddr, l);
			memcpy(key + l, &ng, 4);
			kpx_nft_elem_put(b, 1, SET(AFF, f), key, l + 4, NULL, 0, &a->id,
				 4, NULL, 0, t, left);
			if (b->err) {
				err = b->err;
				goto out;
			}
			kept++;
		}
	}
	kpx_nft_acc_flush_all(b, 1);
out:
	if (err)
		kpx_warn("nft: carrying affinity entries over: %s", strerror(-err));
	else if (total)
		kpx_info("nft: %zu of %zu ClientIP affinity entries carried over "
			 "to the new table (%zu dropped: service port or its "
			 "affinity gone; %zu: endpoint gone); read %.1f ms, "
			 "total %.1f ms", kept, total, gone_sp, gone_ep, read_ms,
			 ms_since(&t0));
	u64map_free(&gm);
	u64map_free(&em);
	free(gplan);
	free(ids);
	free(tix);
	kpx_nft_aff_snap_free(&snap);
	return kept;
}

