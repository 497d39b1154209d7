// SPDX-License-Identifier: Apache-2.0
/*
 * The nftables backend: the plan as one `inet kpx` table, programmed over
 * netlink (libnftnl + libmnl), one batch transaction per sync.
 *
 * Layout (kube-proxy's nftables mode, with endpoints kept in map elements
 * instead of one chain per endpoint; names in nft/nft_schema.h):
 *   nat-pre/nat-out (nat, dstnat)  -> services
 *   services: daddr . l4proto . dport vmap @fe{4,6}      (ClusterIP, extIP, LB)
 *             daddr @npaddr{4,6} l4proto . dport vmap @np{4,6}   (NodePort)
 *   svc-N / ext-N / clu-N: one chain per endpoint set (internal, external,
 *             cluster) the rows of svcport N use; a frontend enters the
 *             chain of its REMOTE row's set, whose head sends the origins
 *             with other rows to theirs and masquerades as the rows say
 *             (nft/nft_rows.c); each ends with dispatch(group N*4+set).
 *   dispatch (shared disp{4,6}-SET-aTIMEOUT chains): frontend key ->
 *                @g* -> group g; [affinity hit: saddr . g -> @aff -> id,
 *                g . id -> @epv -> (addr . port) -> dnat]; g -> @gn -> n,
 *                n . numgen random -> @sel -> slot, then without affinity
 *                g . slot -> @slots -> (addr . port) -> dnat; with
 *                affinity g . slot -> @sid -> id (into @aff), g . id ->
 *                @epv -> (addr . port) -> dnat (an affinity group has no
 *                @slots elements: one map fewer of 10 per service); the
 *                packet mark carries each step (see x_launder).
 *   nat-post -> masquerading: mark 0x4000, or hairpin (@hp: saddr . daddr
 *                of a local endpoint after DNAT) -> masquerade
 *   filter (post-DNAT, ct new) endpoints-check: vmap @noep/@noepnp ->
 *                goto reject-chain (tcp reset / icmpx port-unreachable)
 *                or drop; what got DNATed no longer matches.
 *   filter (pre-DNAT, ct new) firewall-check: vmap @fw -> fw-N
 *                (loadBalancerSourceRanges: return or drop)
 * Chains carry the svcport's key in userdata, frontend elements what
 * `kpx services` shows of a frontend (nft_schema.h), slot elements (@slots,
 * or @sid for affinity groups) the endpoint flags, so `kpx services` can
 * be answered from the kernel alone.
 * A full sync (first after start, drift repair) replaces the table in one
 * transaction and carries the @aff entries over (nft_affinity.c); the
 * periodic resync compares the table only when the ruleset generation
 * moved since kpx's last commit (nft_resync).
 * No object can block the others: a svcport whose rows cannot be
 * expressed, or whose objects the kernel refuses, is left out (the
 * transaction is retried without it, found by bisection) and reported
 * through the skipped op; the rest is programmed.
 * Owns: table inet kpx and conntrack entries of removed UDP endpoints.
 * Must not: touch any other table.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>
#include <libmnl/libmnl.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>

#include "agent/backend.h"
#include "common/log.h"
#include "nft/nft_batch.h"
#include "nft/nft_dump.h"
#include "nft/nft_flows.h"
#include "nft/nft_internal.h"
#include "nft/nft_seam.h"

#define setspecs kpx_nft_setspecs

uint32_t kpx_nft_fnv(const void *p, size_t n, uint32_t h)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 16777619u;
	return h;
}

int kpx_nft_reserve(void **p, size_t *cap, size_t need, size_t size)
{
	size_t nc = *cap ? *cap : 64;
	void *n;
	if (need <= *cap)
		return 0;
	while (nc < need)
		nc *= 2;
	n = realloc(*p, nc * size);
	if (!n)
		return -ENOMEM;
	*p = n;
	*cap = nc;
	return 0;
}

static size_t alen(uint8_t family)
{
	return family == AF_INET6 ? 16 : 4;
}

static double ms_since(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) * 1e3 +
	       (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

/* ---------------------------------------------------------------- state */

static struct kpx_plan_svcport *sp_dup(const struct kpx_plan_svcport *sp)
{
	struct kpx_plan_svcport *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	*d = *sp;
	kpx_plan_svcport_ref_strings(d);
#define DUP(f, n)                                                          \
	do {                                                               \
		d->f = NULL;                                               \
		if (sp->n) {                                               \
			d->f = malloc(sizeof(*sp->f) * sp->n);             \
			if (!d->f)                                         \
				goto fail;                                 \
			memcpy(d->f, sp->f, sizeof(*sp->f) * sp->n);       \
		}                                                          \
	} while (0)
	d->frontends = NULL;
	d->endpoints = NULL;
	d->internal = d->external = d->cluster = NULL;
	d->source_ranges = NULL;
	d->refused = NULL; /* not used by this backend */
	d->n_refused = 0;
	DUP(frontends, n_frontends);
	DUP(endpoints, n_endpoints);
	DUP(internal, n_internal);
	DUP(external, n_external);
	DUP(cluster, n_cluster);
	DUP(source_ranges, n_source_ranges);
#undef DUP
	return d;
fail:
	free(d->frontends);
	free(d->endpoints);
	free(d->internal);
	free(d->external);
	free(d->cluster);
	free(d->source_ranges);
	kpx_plan_svcport_put_strings(d);
	free(d);
	return NULL;
}

static void sp_free(struct kpx_plan_svcport *d)
{
	if (!d)
		return;
	free(d->frontends);
	free(d->endpoints);
	free(d->internal);
	free(d->external);
	free(d->cluster);
	free(d->source_ranges);
	kpx_plan_svcport_put_strings(d);
	free(d);
}

static void state_clear(struct kpx_backend *b)
{
	for (size_t k = 0; k < b->n_st; k++)
		sp_free(b->st[k].sp);
	b->n_st = 0;
	memset(b->cnt, 0, sizeof(b->cnt));
	kpx_nft_refs_clear(b);
	b->next_num = 1;
	b->n_shared = 0;
	memset(b->selref, 0, sizeof(b->selref));
	memset(b->selpresent, 0, sizeof(b->selpresent));
}

/* ------------------------------------------------------------ conntrack */

static void ctdel_add(struct kpx_backend *b, const struct kpx_plan_svcport *old,
		      const struct kpx_plan_svcport *nw)
{
	if (old->proto != IPPROTO_UDP)
		return;
	for (size_t i = 0; i < old->n_endpoints; i++) {
		const struct kpx_plan_endpoint *ep = &old->endpoints[i];
		bool still = false;
		for (size_t j = 0; nw && j < nw->n_endpoints && !still; j++)
			still = kpx_addr_eq(&nw->endpoints[j].addr, &ep->addr) &&
				nw->endpoints[j].port == ep->port;
		if (still)
			continue;
		if (b->n_ctdels == b->cap_ctdels) {
			size_t nc = b->cap_ctdels ? b->cap_ctdels * 2 : 64;
			struct ctdel *n = realloc(b->ctdels, nc * sizeof(*n));
			if (!n)
				return;
			b->ctdels = n;
			b->cap_ctdels = nc;
		}
		b->ctdels[b->n_ctdels++] = (struct ctdel){ old->family, ep->addr,
							   ep->port };
	}
}

struct ctscan {
	struct kpx_backend *b;
	struct nf_conntrack **hits;
	size_t n, cap;
};

static int ct_cb(enum nf_conntrack_msg_type type, struct nf_conntrack *ct,
		 void *data)
{
	struct ctscan *s = data;
	(void)type;
	if (nfct_get_attr_u8(ct, ATTR_L4PROTO) != IPPROTO_UDP)
		return NFCT_CB_CONTINUE;
	uint8_t fam = nfct_get_attr_u8(ct, ATTR_L3PROTO);
	uint16_t sport = ntohs(nfct_get_attr_u16(ct, ATTR_REPL_PORT_SRC));
	const void *src = nfct_get_attr(ct, fam == AF_INET6 ? ATTR_REPL_IPV6_SRC
							     : ATTR_REPL_IPV4_SRC);
	const void *odst = nfct_get_attr(ct, fam == AF_INET6 ? ATTR_ORIG_IPV6_DST
							      : ATTR_ORIG_IPV4_DST);
	size_t l = alen(fam);
	if (!src || !odst || !memcmp(src, odst, l))
		return NFCT_CB_CONTINUE; /* not DNATed */
	for (size_t i = 0; i < s->b->n_ctdels; i++) {
		const struct ctdel *d = &s->b->ctdels[i];
		if (d->family != fam || d->port != sport ||
		    memcmp(d->addr.bytes, src, l))
			continue;
		if (s->n == s->cap) {
			size_t nc = s->cap ? s->cap * 2 : 64;
			struct nf_conntrack **n = realloc(s->hits, nc * sizeof(*n));
			if (!n)
				return NFCT_CB_STOP;
			s->hits = n;
			s->cap = nc;
		}
		s->hits[s->n++] = nfct_clone(ct);
		break;
	}
	return NFCT_CB_CONTINUE;
}

static void ct_flush(struct kpx_backend *b)
{
	struct ctscan s = { .b = b };
	struct nfct_handle *h;
	size_t deleted = 0;

	if (!b->n_ctdels)
		return;
	h = nfct_open(CONNTRACK, 0);
	if (!h) {
		kpx_warn("nft: conntrack: open: %s", strerror(errno));
		goto out;
	}
	nfct_callback_register(h, NFCT_T_ALL, ct_cb, &s);
	for (int f = 0; f < 2; f++) {
		uint32_t fam = f ? AF_INET6 : AF_INET;
		if (nfct_query(h, NFCT_Q_DUMP, &fam) < 0)
			kpx_warn("nft: conntrack dump: %s", strerror(errno));
	}
	for (size_t i = 0; i < s.n; i++) {
		if (nfct_query(h, NFCT_Q_DESTROY, s.hits[i]) == 0)
			deleted++;
		nfct_destroy(s.hits[i]);
	}
	nfct_close(h);
	kpx_dbg(1, "nft: removed %zu UDP conntrack entries toward %zu gone endpoints",
		deleted, b->n_ctdels);
out:
	free(s.hits);
	b->n_ctdels = 0;
}

/* ---------------------------------------------------------------- open */

static int io_send(void *ctx, struct kpx_nft_batch *b)
{
	return kpx_nft_batch_send(b, ctx);
}

static int io_gen(void *ctx, uint32_t *gen)
{
	return kpx_nft_gen(ctx, gen);
}

static int io_read_affinity(void *ctx, struct kpx_nft_aff_snap *s)
{
	(void)ctx;
	return kpx_nft_read_affinity(s);
}

static int nft_probe(const struct kpx_config *cfg)
{
	(void)cfg;
	struct mnl_socket *nl = mnl_socket_open(NETLINK_NETFILTER);
	if (!nl)
		return -EOPNOTSUPP;
	mnl_socket_close(nl);
	return 0;
}

int kpx_nft_open_io(const struct kpx_config *cfg, const struct kpx_nft_io *io,
		    struct kpx_backend **out)
{
	struct kpx_backend *b = calloc(1, sizeof(*b));
	int err;

	if (!b)
		return -ENOMEM;
	b->cfg = *cfg;
	b->refs = calloc(HSIZE, sizeof(*b->refs));
	if (!b->refs) {
		err = -ENOMEM;
		goto fail;
	}
	if (io) {
		b->io = *io;
	} else {
		b->nl = mnl_socket_open(NETLINK_NETFILTER);
		if (!b->nl || mnl_socket_bind(b->nl, 0, MNL_SOCKET_AUTOPID) < 0) {
			err = -errno;
			kpx_err("nft: netlink socket: %s", strerror(errno));
			goto fail;
		}
		b->io = (struct kpx_nft_io){ .ctx = b->nl, .send = io_send,
					     .gen = io_gen,
					     .read_affinity = io_read_affinity };
	}
	b->seq = io ? 1 : (uint32_t)time(NULL);
	b->full_next = true;
	b->next_num = 1;
	*out = b;
	return 0;
fail:
	if (b->nl)
		mnl_socket_close(b->nl);
	free(b->refs);
	free(b);
	return err;
}

static int nft_open(const struct kpx_config *cfg, struct kpx_backend **out)
{
	return kpx_nft_open_io(cfg, NULL, out);
}

static void todo_clear(struct kpx_backend *b)
{
	for (size_t t = 0; t < b->n_todo; t++) {
		kpx_nft_shape_free(&b->todo[t].shape);
		kpx_nft_shape_free(&b->todo[t].oshape);
	}
	b->n_todo = 0;
}

static void nft_close(struct kpx_backend *b)
{
	if (!b)
		return;
	state_clear(b);
	todo_clear(b);
	free(b->st);
	free(b->todo);
	free(b->gone);
	free(b->refs);
	free(b->ctdels);
	free(b->shared);
	free(b->skipped);
	for (int a = 0; a < 2; a++)
		for (int i = 0; i < NSETS; i++)
			free(b->acc[a][i].buf);
	if (b->nl)
		mnl_socket_close(b->nl);
	free(b);
}

static bool input_changed(const struct kpx_plan_input *a,
			  const struct kpx_plan_input *b)
{
	/* What the translation reads from the input: the cluster CIDRs
	 * (pods told apart, "unless off-cluster"); the rows carry the rest. */
	if (a->n_cluster_cidrs != b->n_cluster_cidrs)
		return true;
	return memcmp(a->cluster_cidrs, b->cluster_cidrs,
		      a->n_cluster_cidrs * sizeof(a->cluster_cidrs[0])) != 0;
}

static void scratch_free(struct kpx_backend *b)
{
	for (int a = 0; a < 2; a++)
		for (int i = 0; i < NSETS; i++)
			b->acc[a][i].n = 0;
	kpx_nft_batch_free(&b->batch);
}

/* ------------------------------------------------------------- skipped */

static void skip_add(struct kpx_backend *b, const char *id, const char *fmt,
		     ...) __attribute__((format(printf, 3, 4)));

/* Records (and logs, naming the service port) a svcport left out. */
static void skip_add(struct kpx_backend *b, const char *id, const char *fmt,
		     ...)
{
	struct kpx_nft_skip *s;
	va_list ap;

	if (kpx_nft_reserve((void **)&b->skipped, &b->cap_skipped,
			    b->n_skipped + 1, sizeof(*b->skipped)))
		return;
	s = &b->skipped[b->n_skipped++];
	snprintf(s->id, sizeof(s->id), "%s", id);
	va_start(ap, fmt);
	vsnprintf(s->why, sizeof(s->why), fmt, ap);
	va_end(ap);
	kpx_err("nft: service port %s not programmed: %s", s->id, s->why);
}

static const char *nft_skipped(struct kpx_backend *b, size_t *n)
{
	*n = b->n_skipped;
	if (!b->n_skipped)
		return NULL;
	snprintf(b->skip_msg, sizeof(b->skip_msg),
		 "%zu service port%s not programmed, the others were: %s: %s%s",
		 b->n_skipped, b->n_skipped == 1 ? "" : "s", b->skipped[0].id,
		 b->skipped[0].why, b->n_skipped > 1 ? " (and more, see the log)" : "");
	return b->skip_msg;
}

/* ---------------------------------------------------------------- diff */

/*
 * Size hints for the big maps at a full sync: a set created with a size
 * gets a hash table of that size at once instead of growing (and
 * rehashing) while hundreds of thousands of elements are inserted. The
 * size is also the set's capacity: outgrowing it fails a later sync with
 * ENFILE, which makes the next sync a full rebuild with larger hints.
 */
/* What one svcport adds to (sign 1) or takes from (-1) the counts. */
static void size_count(size_t *cnt, const struct kpx_plan_svcport *sp, int sign)
{
	bool v6 = sp->family == AF_INET6;
	size_t d = sp->n_internal + sp->n_external + sp->n_cluster;
	/* groups with endpoints: @gn elements (an upper bound) */
	size_t ng = !!sp->n_internal + !!sp->n_external + !!sp->n_cluster;
	cnt[SET(GN, v6)] += sign > 0 ? ng : -ng;
	if (!sp->affinity_timeout) {
		cnt[SET(SLOTS, v6)] += sign > 0 ? d : -d;
	} else {
		cnt[SET(SID, v6)] += sign > 0 ? d : -d;
		cnt[SET(EPV, v6)] += sign > 0 ? d : -d;
	}
	cnt[SET(GINT, v6)] += sign > 0 ? sp->n_frontends : -sp->n_frontends;
	cnt[SET(FE, v6)] += sign > 0 ? sp->n_frontends : -sp->n_frontends;
}

/*
 * Per-svcport checks before anything is queued: the rows translate
 * (nft_rows.c) and every object fits the kernel's limits (the chain
 * userdata, by construction of its key; names). A svcport that fails is
 * recorded and left as it is in the kernel.
 */
static int check_svcport(struct kpx_backend *b,
			 const struct kpx_plan_svcport *sp,
			 struct kpx_nft_shape *s)
{
	char why[256], ud[KPX_NFT_USERDATA_MAX];
	int err;

	err = kpx_nft_shape(&b->input, sp, s, why, sizeof(why));
	if (err == -EINVAL) {
		skip_add(b, sp->id, "its rows cannot be expressed in nftables: %s",
			 why);
		return err;
	}
	if (err)
		return err;
	if (kpx_nft_chain_ud(ud, sizeof(ud), kpx_nft_set_chain_prefix[KPX_SET_CLUSTER],
			     sp->id, UINT32_MAX) < 0) {
		kpx_nft_shape_free(s);
		skip_add(b, sp->id, "chain userdata over the kernel's %d bytes",
			 KPX_NFT_USERDATA_MAX);
		return -EINVAL;
	}
	return 0;
}

/*
 * The diff of the plan against what is programmed, by one merge walk
 * (both sorted by id): b->todo gets new and changed svcports with their
 * shapes, b->gone removed ones, cnt the size counts the plan will have.
 * excl (NULL: none), by plan index: svcports left as they are, programmed
 * or not. Unchanged svcports cost one id and hash compare; nothing else
 * in a sync walks all svcports.
 */
static int diff_plan(struct kpx_backend *b, const struct kpx_plan *plan,
		     size_t *cnt, const uint8_t *excl, bool check)
{
	size_t i = 0, j = 0, n = plan->n_svcports;
	int err;

	todo_clear(b);
	b->n_gone = 0;
	memcpy(cnt, b->cnt, sizeof(b->cnt));
	while (i < n || j < b->n_st) {
		const struct kpx_plan_svcport *sp = i < n ? &plan->svcports[i] : NULL;
		const struct spstate *s = j < b->n_st ? &b->st[j] : NULL;
		int c = !sp ? -1 : !s ? 1 : strcmp(s->sp->id, sp->id);
		if (c < 0) {
			if (kpx_nft_reserve((void **)&b->gone, &b->cap_gone,
					    b->n_gone + 1, sizeof(*b->gone)))
				return -ENOMEM;
			b->gone[b->n_gone++] = j++;
			size_count(cnt, s->sp, -1);
			continue;
		}
		if ((c > 0 || s->hash != sp->hash) && !(excl && excl[i])) {
			struct todo *td;

			if (kpx_nft_reserve((void **)&b->todo, &b->cap_todo,
					    b->n_todo + 1, sizeof(*b->todo)))
				return -ENOMEM;
			td = &b->todo[b->n_todo];
			memset(td, 0, sizeof(*td));
			td->i = i;
			td->st = c > 0 ? SIZE_MAX : j;
			td->num = c > 0 ? b->next_num++ : s->num;
			if (check) {
				err = check_svcport(b, sp, &td->shape);
				if (err == -EINVAL)
					goto next; /* left as it is */
			} else {
				char why[256];

				err = kpx_nft_shape(&b->input, sp, &td->shape, why,
						    sizeof(why));
			}
			if (err)
				return err;
			if (c == 0 && (err = kpx_nft_shape(&b->input, s->sp,
							   &td->oshape, NULL, 0))) {
				kpx_nft_shape_free(&td->shape);
				return err;
			}
			b->n_todo++;
			if (c == 0)
				size_count(cnt, s->sp, -1);
			size_count(cnt, sp, 1);
		}
next:
		i++;
		if (c == 0)
			j++;
	}
	return 0;
}

/*
 * The ruleset generation around a commit, so a resync knows whether the
 * table is still as kpx programmed it (b->gen_ok). Each commit bumps it by
 * one. A partial commit keeps the table as kpx knows it when ours was the
 * only commit since kpx's last one: the generation after it is exactly
 * b->gen + 1, so no read before it is needed. A full commit replaces the
 * table, so only commits after it count: read the generation before it
 * and expect exactly one more after. gen_before() returns what
 * gen_after() compares against, or -1 when it could not be read.
 */
static int64_t gen_before(struct kpx_backend *b, bool full)
{
	uint32_t g;

	if (!full)
		return b->gen_ok ? (int64_t)b->gen : -1;
	return !b->io.gen || b->io.gen(b->io.ctx, &g) ? -1 : (int64_t)g;
}

static void gen_after(struct kpx_backend *b, int64_t g0, int err)
{
	uint32_t g1 = 0;

	b->gen_ok = g0 >= 0 && !err && b->io.gen &&
		    !b->io.gen(b->io.ctx, &g1) && g1 == (uint32_t)g0 + 1;
	b->gen = g1;
}

/*
 * After a committed transaction: the state takes the svcports of b->todo
 * and loses b->gone, by the same merge walk as diff_plan (svcports left
 * out keep what they had, programmed or not).
 */
static int state_commit(struct kpx_backend *b, const struct kpx_plan *plan,
			const size_t *cnt)
{
	size_t n = plan->n_svcports, i = 0, j = 0, t = 0, k = 0, nn = 0;
	struct spstate *st;

	for (t = 0; t < b->n_todo; t++) {
		b->todo[t].dup = sp_dup(&plan->svcports[b->todo[t].i]);
		if (!b->todo[t].dup) {
			while (t--)
				sp_free(b->todo[t].dup);
			return -ENOMEM;
		}
		nn += b->todo[t].st == SIZE_MAX;
	}
	/* Only changes (the common endpoint change): in place, no walk. */
	if (!nn && !b->n_gone) {
		for (t = 0; t < b->n_todo; t++) {
			struct spstate *s = &b->st[b->todo[t].st];

			sp_free(s->sp);
			*s = (struct spstate){ b->todo[t].dup,
					       plan->svcports[b->todo[t].i].hash,
					       b->todo[t].num };
		}
		memcpy(b->cnt, cnt, sizeof(b->cnt));
		return 0;
	}
	st = malloc((b->n_st + nn + 1) * sizeof(*st));
	if (!st) {
		for (t = 0; t < b->n_todo; t++)
			sp_free(b->todo[t].dup);
		return -ENOMEM;
	}
	t = 0;
	while (i < n || j < b->n_st) {
		const struct kpx_plan_svcport *sp = i < n ? &plan->svcports[i] : NULL;
		struct spstate *s = j < b->n_st ? &b->st[j] : NULL;
		int c = !sp ? -1 : !s ? 1 : strcmp(s->sp->id, sp->id);
		struct todo *td = t < b->n_todo && b->todo[t].i == i ?
					  &b->todo[t] : NULL;

		if (c < 0) { /* gone */
			sp_free(s->sp);
			j++;
			continue;
		}
		if (td) {
			t++;
			if (c == 0)
				sp_free(s->sp);
			st[k++] = (struct spstate){ td->dup, sp->hash, td->num };
		} else if (c == 0) {
			st[k++] = *s;
		}
		i++;
		if (c == 0)
			j++;
	}
	free(b->st);
	b->st = st;
	b->n_st = k;
	memcpy(b->cnt, cnt, sizeof(b->cnt));
	return 0;
}

/* What the chains of a svcport depend on: when it is unchanged, an
 * endpoint change touches map elements only. Rule changes make the
 * kernel re-validate the whole table at commit, elements do not. */
static bool same_rules(const struct kpx_plan_svcport *a,
		       const struct kpx_nft_shape *sa,
		       const struct kpx_plan_svcport *b,
		       const struct kpx_nft_shape *sb)
{
	if (!kpx_nft_shape_same_rules(sa, sb) || a->family != b->family ||
	    a->affinity_timeout != b->affinity_timeout ||
	    !a->n_internal != !b->n_internal ||
	    !a->n_external != !b->n_external || !a->n_cluster != !b->n_cluster ||
	    a->n_source_ranges != b->n_source_ranges)
		return false;
	for (size_t i = 0; i < a->n_source_ranges; i++)
		if (a->source_ranges[i].prefix != b->source_ranges[i].prefix ||
		    !kpx_addr_eq(&a->source_ranges[i].addr, &b->source_ranges[i].addr))
			return false;
	return true;
}

static bool same_frontends(const struct kpx_plan_svcport *a,
			   const struct kpx_nft_shape *sa,
			   const struct kpx_plan_svcport *b,
			   const struct kpx_nft_shape *sb)
{
	return same_rules(a, sa, b, sb) && a->proto == b->proto &&
	       a->n_frontends == b->n_frontends && sa->n_fe == sb->n_fe &&
	       !memcmp(a->frontends, b->frontends,
		       a->n_frontends * sizeof(*a->frontends)) &&
	       !memcmp(sa->fe, sb->fe, sa->n_fe * sizeof(*sa->fe));
}

/* ------------------------------------------------------------ transaction */

/*
 * Rebuilds the element and chain bookkeeping (references, @sel use,
 * shared chains) from the state, after a transaction the kernel refused:
 * its emission changed them for objects the kernel never got. The
 * messages go to a batch that is thrown away.
 */
static int replay(struct kpx_backend *b)
{
	bool present[2][SEL_M + 1];
	int err;

	memcpy(present, b->selpresent, sizeof(present));
	kpx_nft_refs_clear(b);
	memset(b->selref, 0, sizeof(b->selref));
	b->n_shared = 0;
	b->err = 0;
	if ((err = kpx_nft_batch_init(&b->batch, 0)))
		return err;
	for (size_t k = 0; k < b->n_st && !b->err; k++) {
		struct kpx_nft_shape s;

		if ((err = kpx_nft_shape(&b->input, b->st[k].sp, &s, NULL, 0)))
			break;
		kpx_nft_emit_chains(b, b->st[k].sp, &s, b->st[k].num, NULL);
		kpx_nft_emit_elems(b, 1, b->st[k].sp, &s, b->st[k].num, true);
		kpx_nft_shape_free(&s);
	}
	err = err ? err : b->err;
	scratch_free(b);
	memcpy(b->selpresent, present, sizeof(present));
	b->err = 0;
	return err;
}

/*
 * One transaction: b->todo and b->gone (from diff_plan) as messages,
 * sent; on success the state follows. carry: the affinity entries of
 * the table being replaced (full only). Returns 0, the kernel's error, or
 * a local error (*local set: nothing was sent).
 */
static int transact(struct kpx_backend *b, const struct kpx_plan *plan,
		    const size_t *cnt, bool full, bool carry, bool *local,
		    size_t *carried, unsigned *msgs, size_t *bytes)
{
	int err;

	*local = true;
	*carried = 0;
	b->err = 0;
	b->n_ctdels = 0;
	/* the @sel tables as the kernel has them, should it refuse this */
	memcpy(b->selsaved, b->selpresent, sizeof(b->selsaved));
	if ((err = kpx_nft_batch_init(&b->batch, b->seq)))
		return err;
	if (full)
		kpx_nft_emit_static(b, cnt);

	/* Pass 1: element deletions of changed and removed svcports. The
	 * plan's hash covers every field of a svcport (plan.h). */
	for (size_t t = 0; t < b->n_todo; t++) {
		const struct todo *td = &b->todo[t];
		const struct kpx_plan_svcport *sp = &plan->svcports[td->i];
		const struct spstate *s;

		if (td->st == SIZE_MAX)
			continue;
		s = &b->st[td->st];
		kpx_nft_emit_elems(b, 0, s->sp, &td->oshape, s->num,
				   !same_frontends(s->sp, &td->oshape, sp,
						   &td->shape));
		ctdel_add(b, s->sp, sp);
	}
	for (size_t g = 0; g < b->n_gone; g++) {
		const struct spstate *s = &b->st[b->gone[g]];
		struct kpx_nft_shape os;

		if ((err = kpx_nft_shape(&b->input, s->sp, &os, NULL, 0)))
			goto out;
		kpx_nft_emit_elems(b, 0, s->sp, &os, s->num, true);
		kpx_nft_shape_free(&os);
		ctdel_add(b, s->sp, NULL);
	}
	kpx_nft_acc_flush_all(b, 0);

	/* Pass 2: chains and rules of new and changed svcports. */
	for (size_t t = 0; t < b->n_todo; t++) {
		const struct todo *td = &b->todo[t];
		const struct kpx_plan_svcport *sp = &plan->svcports[td->i];

		if (td->st == SIZE_MAX)
			kpx_nft_emit_chains(b, sp, &td->shape, td->num, NULL);
		else if (!same_rules(b->st[td->st].sp, &td->oshape, sp, &td->shape))
			kpx_nft_emit_chains(b, sp, &td->shape, td->num, &td->oshape);
	}
	/* Pass 3: element additions (their goto targets exist now). */
	for (size_t t = 0; t < b->n_todo; t++) {
		const struct todo *td = &b->todo[t];
		const struct kpx_plan_svcport *sp = &plan->svcports[td->i];

		kpx_nft_emit_elems(b, 1, sp, &td->shape, td->num,
				   td->st == SIZE_MAX ||
					   !same_frontends(b->st[td->st].sp,
							   &td->oshape, sp,
							   &td->shape));
	}
	kpx_nft_acc_flush_all(b, 1);
	/* Selection tables: the neighbours of counts in use at a full sync
	 * (tick adds the others); at any sync, the unwanted ones beyond
	 * SEL_SPARE go. */
	for (int f = 0; f < 2; f++) {
		bool used = kpx_nft_sel_used(b, f);
		uint32_t spare = 0;
		for (uint32_t n = 1; n <= SEL_M; n++) {
			bool near = kpx_nft_sel_near(b, f, n);
			if (full && near && !b->selpresent[f][n])
				kpx_nft_sel_emit(b, 1, f, n);
			spare += b->selpresent[f][n] && !near &&
				 !(used && n <= SEL_ALWAYS);
		}
		for (uint32_t n = 1; n <= SEL_M && spare > SEL_SPARE; n++) {
			if (!b->selpresent[f][n] || kpx_nft_sel_near(b, f, n) ||
			    (used && n <= SEL_ALWAYS))
				continue;
			spare--;
			kpx_nft_sel_emit(b, 0, f, n);
		}
	}
	kpx_nft_acc_flush_all(b, 1);
	kpx_nft_acc_flush_all(b, 0);
	/* Pass 4: chains nobody needs any more. */
	for (size_t t = 0; t < b->n_todo; t++) {
		const struct todo *td = &b->todo[t];

		if (td->st != SIZE_MAX)
			kpx_nft_delete_chains(b, td->num, &td->oshape, &td->shape);
	}
	for (size_t g = 0; g < b->n_gone; g++) {
		const struct spstate *s = &b->st[b->gone[g]];
		struct kpx_nft_shape os;

		if ((err = kpx_nft_shape(&b->input, s->sp, &os, NULL, 0)))
			goto out;
		kpx_nft_delete_chains(b, s->num, &os, NULL);
		kpx_nft_shape_free(&os);
	}
	if (full && carry)
		*carried = kpx_nft_carry_affinity(b, plan);

	err = b->err;
	*bytes = b->batch.len;
	*msgs = b->batch.n_msgs;
	if (!err && *msgs) {
		int64_t g0 = gen_before(b, full);

		*local = false;
		err = b->io.send(b->io.ctx, &b->batch);
		gen_after(b, g0, err);
		if (err)
			memcpy(b->selpresent, b->selsaved, sizeof(b->selsaved));
	}
	b->seq = b->batch.seq;
out:
	scratch_free(b);
	if (!err && (err = state_commit(b, plan, cnt)))
		*local = true;
	if (!err)
		ct_flush(b);
	return err;
}

#define ISOLATE_BUDGET 96
#define ISOLATE_GIVE_UP 8

struct isolate {
	const struct kpx_plan *plan;
	size_t *cand; /* plan indices of the svcports under suspicion */
	uint8_t *excl; /* by plan index: left out of the next transaction */
	bool full;    /* no transaction succeeded yet in a full sync */
	unsigned tries, failed, ok;
	int err;      /* the kernel's error, for the reports */
};

/* One transaction with cand[lo, hi) and everything not suspected. */
static int try_range(struct kpx_backend *b, struct isolate *x, size_t lo,
		     size_t hi, bool *local)
{
	size_t cnt[NSETS], carried, bytes;
	unsigned msgs;
	int err;

	for (size_t k = 0; k < hi - lo; k++)
		x->excl[x->cand[lo + k]] = 0;
	if ((err = diff_plan(b, x->plan, cnt, x->excl, false))) {
		*local = true;
		return err;
	}
	x->tries++;
	err = transact(b, x->plan, cnt, x->full, false, local, &carried, &msgs,
		       &bytes);
	if (!err) {
		x->full = false;
		x->ok += hi > lo; /* a svcport went in */
	} else if (!*local && (err = replay(b))) {
		*local = true;
	} else if (!*local) {
		err = -EAGAIN;
	}
	/* what this range held stays out until cleared for the next try */
	for (size_t k = 0; k < hi - lo; k++)
		x->excl[x->cand[lo + k]] = 1;
	return err;
}

static int bisect(struct kpx_backend *b, struct isolate *x, size_t lo,
		  size_t hi)
{
	bool local = false;
	int err;

	if (lo == hi)
		return 0;
	/* Refused one by one and nothing went in: the table's fault. */
	if (x->failed >= ISOLATE_GIVE_UP && !x->ok)
		return x->err;
	if (x->tries >= ISOLATE_BUDGET) {
		for (size_t k = lo; k < hi; k++)
			skip_add(b, x->plan->svcports[x->cand[k]].id,
				 "not tried again after the kernel refused a "
				 "transaction with it (%s); retried at the next "
				 "sync", strerror(-x->err));
		return 0;
	}
	err = try_range(b, x, lo, hi, &local);
	if (local)
		return err;
	if (!err)
		return 0;
	if (hi - lo == 1) {
		x->failed++;
		skip_add(b, x->plan->svcports[x->cand[lo]].id,
			 "the kernel refused its objects: %s",
			 strerror(-x->err));
		return 0;
	}
	if ((err = bisect(b, x, lo, lo + (hi - lo) / 2)))
		return err;
	return bisect(b, x, lo + (hi - lo) / 2, hi);
}

/*
 * The kernel refused the transaction of b->todo with err. Finds the
 * svcports it refuses by bisection, programming the others. An error of
 * the whole table (it cannot be written at all, or every svcport is
 * refused) is returned, not blamed on svcports. A full sync replaces the
 * table with its first transaction that succeeds (the svcports of later
 * ones are missing until theirs). Returns 0 when everything but the
 * reported svcports is programmed.
 */
static int isolate(struct kpx_backend *b, const struct kpx_plan *plan,
		   bool full, int err)
{
	struct isolate x = { .plan = plan, .full = full, .err = err };
	size_t n = 0;
	int r;

	x.cand = malloc((b->n_todo + 1) * sizeof(*x.cand));
	x.excl = calloc(plan->n_svcports + 1, sizeof(*x.excl));
	if (!x.cand || !x.excl) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t t = 0; t < b->n_todo; t++)
		x.cand[n++] = b->todo[t].i;
	/* everything stays as it is but the range being tried (svcports
	 * that failed their checks never are) */
	memset(x.excl, 1, plan->n_svcports);
	if ((r = replay(b)))
		goto out;
	kpx_warn("nft: the kernel refused the transaction of %zu service "
		 "ports (%s): finding the ones it refuses", n, strerror(-err));
	/* Can kpx write its table at all (another process may own the
	 * name)? A table add that changes nothing tells. */
	if ((r = kpx_nft_batch_init(&b->batch, b->seq)))
		goto out;
	kpx_nft_table_msg(b, NFT_MSG_NEWTABLE, NLM_F_CREATE);
	r = b->io.send(b->io.ctx, &b->batch);
	b->seq = b->batch.seq;
	scratch_free(b);
	if (r) {
		r = err; /* not any svcport's: the table's */
		goto out;
	}
	/* The whole set just failed: split it at once. */
	if (n == 1) {
		x.failed++;
		skip_add(b, plan->svcports[x.cand[0]].id,
			 "the kernel refused its objects: %s", strerror(-err));
	} else if (!(r = bisect(b, &x, 0, n / 2))) {
		r = bisect(b, &x, n / 2, n);
	}
	if (!r && (x.full || (n > 1 && x.failed == n)))
		r = err; /* nothing went in: not theirs, the table's */
	kpx_info("nft: %u transactions to isolate %u refused service port%s",
		 x.tries, x.failed, x.failed == 1 ? "" : "s");
out:
	free(x.cand);
	free(x.excl);
	return r;
}

static int nft_sync(struct kpx_backend *b, const struct kpx_plan *plan)
{
	struct timespec t0, t1;
	bool full = b->full_next || input_changed(&b->input, &plan->input);
	size_t cnt[NSETS], carried = 0, bytes = 0, n_todo, n_gone;
	unsigned msgs = 0;
	bool local = false;
	int err;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	b->n_skipped = 0;
	if (full) {
		state_clear(b);
		b->input = plan->input;
	}
	err = diff_plan(b, plan, cnt, NULL, true);
	/* A plan that outgrew a sized set gets a rebuild with larger sizes
	 * rather than a transaction the kernel refuses. */
	for (int i = 0; i < NSETS && !full && !err; i++)
		if (b->cap[i] && cnt[i] > b->cap[i]) {
			full = true;
			state_clear(b);
			b->n_skipped = 0;
			err = diff_plan(b, plan, cnt, NULL, true);
		}
	if (err) {
		/* the state may be cleared already: rebuild next time */
		b->full_next = b->full_next || full;
		return err;
	}
	n_todo = b->n_todo;
	n_gone = b->n_gone;
	/* Should the kernel refuse the carried entries, the retry goes
	 * without them: a lost affinity is better than no services. */
	err = transact(b, plan, cnt, full, !b->no_carry, &local, &carried,
		       &msgs, &bytes);
	b->no_carry = false;
	if (err && !local) {
		kpx_err("nft: sync transaction (%u messages, %zu bytes) failed: %s%s",
			msgs, bytes, strerror(-err), carried ?
			"; the next rebuild goes without the affinity entries" : "");
		b->no_carry = carried > 0;
		err = isolate(b, plan, full, err);
	}
	if (err) {
		/* The kernel kept the old ruleset; our bookkeeping may not
		 * match it any more, so rebuild everything next time. */
		b->full_next = true;
		return err;
	}
	b->full_next = false;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	kpx_dbg(full ? 0 : 1,
		"nft: %s sync: %zu svcports (%zu new or changed, %zu removed, "
		"%zu not programmed), %u messages, %zu bytes, %.1f ms",
		full ? "full" : "partial", plan->n_svcports, n_todo, n_gone,
		b->n_skipped, msgs, bytes, ms_since(&t0));
	(void)t1;
	return 0;
}

static const int drift_sets[] = { SET(FE, 0), SET(FE, 1), SET(NP, 0),
				  SET(NP, 1), SET(NOEP, 0), SET(NOEP, 1),
				  SET(GINT, 0), SET(GINT, 1) };
#define N_DRIFT (sizeof(drift_sets) / sizeof(drift_sets[0]))

/* Element counts of the frontend maps against the owned elements kpx
 * programmed (one counting dump per map, no element copied): an element
 * deleted or added behind kpx's back shows as a count mismatch. */
static bool elems_drifted(struct kpx_backend *b)
{
	const char *names[N_DRIFT];
	size_t have[N_DRIFT];
	int err;

	for (size_t k = 0; k < N_DRIFT; k++)
		names[k] = setspecs[drift_sets[k]].name;
	if ((err = kpx_nft_count_elems(names, N_DRIFT, have))) {
		kpx_warn("nft: resync: reading the frontend maps: %s", strerror(-err));
		return true;
	}
	for (size_t k = 0; k < N_DRIFT; k++) {
		if (have[k] == b->nref[drift_sets[k]])
			continue;
		kpx_warn("nft: resync: map %s has %zu elements, %zu expected: "
			 "rebuilding the table", names[k], have[k],
			 b->nref[drift_sets[k]]);
		return true;
	}
	return false;
}

/*
 * Periodic resync: when the kernel's table no longer has the chains or
 * frontend-map elements kpx programmed (deleted or edited behind kpx's
 * back), rebuild it in one transaction as the first sync after start does
 * (affinity entries carried over). Otherwise a normal sync: a rebuild
 * every sync period would cost a full sync and lose the affinity entries
 * made while it is built.
 */
static int nft_resync(struct kpx_backend *b, const struct kpx_plan *plan)
{
	/* static + shared chains */
	size_t have = 0, want = KPX_NFT_STATIC_CHAINS + b->n_shared;
	uint32_t gen = 0;
	int err;

	/* Nobody committed anything since kpx did: nothing to compare. */
	if (!b->full_next && b->io.gen && !b->io.gen(b->io.ctx, &gen) && b->gen_ok &&
	    gen == b->gen)
		return nft_sync(b, plan);
	if (!b->full_next)
		kpx_dbg(1, "nft: resync: ruleset generation %u (kpx committed %u%s): "
			"comparing table inet kpx with what was programmed",
			gen, b->gen, b->gen_ok ? "" : ", not known");
	err = kpx_nft_count_chains(&have);

	for (size_t k = 0; k < b->n_st; k++) {
		struct kpx_nft_shape s;

		if (kpx_nft_shape(&b->input, b->st[k].sp, &s, NULL, 0))
			continue;
		want += kpx_nft_shape_chains(&s);
		kpx_nft_shape_free(&s);
	}
	if (!b->full_next && (err || have != want)) {
		kpx_warn("nft: resync: table inet kpx has %zu chains, %zu expected%s: "
			 "rebuilding it", have, want, err ? " (missing)" : "");
		b->full_next = true;
	} else if (!b->full_next && elems_drifted(b)) {
		b->full_next = true;
	} else if (!b->full_next && gen) {
		/* as programmed at generation gen (read before comparing) */
		b->gen = gen;
		b->gen_ok = true;
	}
	return nft_sync(b, plan);
}

/*
 * Housekeeping: adds one wanted selection table that is missing (see
 * SEL_ALWAYS), the neighbours of counts in use first, in a transaction of
 * its own (~4096 elements, ~5 ms), so that the syncs that change
 * endpoints do not pay for it.
 */
static void nft_tick(struct kpx_backend *b)
{
	uint32_t pick = 0;
	int f, err;

	if (b->full_next || !b->n_st)
		return;
	for (f = 0; f < 2 && !pick; f++) {
		for (uint32_t n = 1; n <= SEL_M && !pick; n++)
			if (!b->selpresent[f][n] && kpx_nft_sel_near(b, f, n))
				pick = n;
		for (uint32_t n = 1; n <= SEL_ALWAYS && !pick; n++)
			if (!b->selpresent[f][n] && !kpx_nft_sel_used(b, f))
				break;
			else if (!b->selpresent[f][n])
				pick = n;
	}
	if (!pick)
		return;
	f--;
	b->err = 0;
	if ((err = kpx_nft_batch_init(&b->batch, b->seq)))
		return;
	kpx_nft_sel_emit(b, 1, f, pick);
	kpx_nft_acc_flush_all(b, 1);
	err = b->err;
	if (!err) {
		int64_t g0 = gen_before(b, false);
		err = b->io.send(b->io.ctx, &b->batch);
		gen_after(b, g0, err);
	} else {
		b->gen_ok = false;
	}
	b->seq = b->batch.seq;
	scratch_free(b);
	if (err) {
		/* the kernel kept the table as it was */
		b->selpresent[f][pick] = false;
		kpx_warn("nft: adding the selection table of %u endpoints "
			 "(IPv%d): %s", pick, f ? 6 : 4, strerror(-err));
		return;
	}
	kpx_dbg(1, "nft: tick: selection table of %u endpoints (IPv%d) added",
		pick, f ? 6 : 4);
}


/* -------------------------------------------------------------- cleanup */

static int nft_cleanup(const struct kpx_config *cfg)
{
	struct kpx_backend *b;
	int err = nft_open(cfg, &b);
	if (err)
		return err;
	if ((err = kpx_nft_batch_init(&b->batch, b->seq)) == 0) {
		/* add then delete: no ENOENT when nothing is there. */
		kpx_nft_table_msg(b, NFT_MSG_NEWTABLE, NLM_F_CREATE);
		kpx_nft_table_msg(b, NFT_MSG_DELTABLE, 0);
		err = kpx_nft_batch_send(&b->batch, b->nl);
		kpx_nft_batch_free(&b->batch);
	}
	if (err)
		kpx_err("nft: cleanup: deleting table inet kpx: %s", strerror(-err));
	nft_close(b);
	return err;
}


const struct kpx_backend_ops kpx_nft_backend = {
	.name = "nft",
	.caps = { .local_drop = true,
		  .local_source_ranges = true,
		  .local_pod_vs_node = true },
	.probe = nft_probe,
	.open = nft_open,
	.sync = nft_sync,
	.resync = nft_resync,
	.tick = nft_tick,
	.close = nft_close,
	.dump_datapath = kpx_nft_dump_datapath,
	.dump_frontends = kpx_nft_dump_frontends,
	.dump_flows = kpx_nft_dump_flows,
	.cleanup = nft_cleanup,
	.skipped = nft_skipped,
};
