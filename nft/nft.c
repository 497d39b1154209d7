// SPDX-License-Identifier: Apache-2.0
/*
 * The nftables backend: the plan as one `inet kpx` table, programmed over
 * netlink (libnftnl + libmnl), one batch transaction per sync.
 *
 * Layout (kube-proxy's nftables mode, with endpoints kept in map elements
 * instead of one chain per endpoint):
 *   nat-pre/nat-out (nat, dstnat)  -> services
 *   services: daddr . l4proto . dport vmap @fe{4,6}      (ClusterIP, extIP, LB)
 *             daddr @npaddr{4,6} l4proto . dport vmap @np{4,6}   (NodePort)
 *   svc-N  (internal set)   [jump masq-check] + dispatch(group N*4+0)
 *   ext-N  (external set)   eTP=Cluster: mark + dispatch(N*4+1)
 *                           eTP=Local: pods -> goto clu-N; local -> mark,
 *                           goto clu-N; dispatch(N*4+1) without masquerade
 *   clu-N  (cluster set)    dispatch(N*4+2)
 *   dispatch (shared disp{4,6}-KIND-aTIMEOUT chains): frontend key ->
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
 * Chains carry the svcport id in userdata, slot elements (@slots, or
 * @sid for affinity groups) the endpoint flags, so `kpx services` can be answered from the kernel alone.
 * A full sync (first after start, drift repair) replaces the table in one
 * transaction and carries the @aff entries over (carry_affinity); the
 * periodic resync compares the table only when the ruleset generation
 * moved since kpx's last commit (nft_resync).
 * Owns: table inet kpx and conntrack entries of removed UDP endpoints.
 * Must not: touch any other table.
 */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>
#include <libmnl/libmnl.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/rtnetlink.h>

#include "agent/backend.h"
#include "common/log.h"
#include "nft/nft_batch.h"
#include "nft/nft_dump.h"
#include "nft/nft_flows.h"

#define TABLE "kpx"
#define MASQ_MARK 0x4000u
#define ELEMS_PER_MSG 256

enum {
	S_FE, S_NP, S_NPADDR, S_NOEP, S_NOEPNP, S_FW, S_SLOTS, S_EPV, S_AFF,
	S_HP, S_GINT, S_GEXT, S_GCLU, S_GNPEXT, S_GNPCLU, S_SEL, S_GN, S_SID, S_KINDS
};
#define NSETS (S_KINDS * 2)
#define SET(kind, v6) ((kind) * 2 + ((v6) ? 1 : 0))

/* nft userspace datatype ids, so `nft list` can print the sets. */
enum { T_IP4 = 7, T_IP6 = 8, T_PROTO = 12, T_SVC = 13, T_MARK = 19 };
#define C2(a, b) (((a) << 6) | (b))
#define C3(a, b, c) (((((a) << 6) | (b)) << 6) | (c))

struct setspec {
	const char *name;
	uint32_t flags, key_type, key_len, data_type, data_len;
};

static const struct setspec setspecs[NSETS] = {
	[SET(S_FE, 0)] = { "fe4", NFT_SET_MAP, C3(T_IP4, T_PROTO, T_SVC), 12, NFT_DATA_VERDICT, 0 },
	[SET(S_FE, 1)] = { "fe6", NFT_SET_MAP, C3(T_IP6, T_PROTO, T_SVC), 24, NFT_DATA_VERDICT, 0 },
	[SET(S_NP, 0)] = { "np4", NFT_SET_MAP, C2(T_PROTO, T_SVC), 8, NFT_DATA_VERDICT, 0 },
	[SET(S_NP, 1)] = { "np6", NFT_SET_MAP, C2(T_PROTO, T_SVC), 8, NFT_DATA_VERDICT, 0 },
	[SET(S_NPADDR, 0)] = { "npaddr4", 0, T_IP4, 4, 0, 0 },
	[SET(S_NPADDR, 1)] = { "npaddr6", 0, T_IP6, 16, 0, 0 },
	[SET(S_NOEP, 0)] = { "noep4", NFT_SET_MAP, C3(T_IP4, T_PROTO, T_SVC), 12, NFT_DATA_VERDICT, 0 },
	[SET(S_NOEP, 1)] = { "noep6", NFT_SET_MAP, C3(T_IP6, T_PROTO, T_SVC), 24, NFT_DATA_VERDICT, 0 },
	[SET(S_NOEPNP, 0)] = { "noepnp4", NFT_SET_MAP, C2(T_PROTO, T_SVC), 8, NFT_DATA_VERDICT, 0 },
	[SET(S_NOEPNP, 1)] = { "noepnp6", NFT_SET_MAP, C2(T_PROTO, T_SVC), 8, NFT_DATA_VERDICT, 0 },
	[SET(S_FW, 0)] = { "fw4", NFT_SET_MAP, C3(T_IP4, T_PROTO, T_SVC), 12, NFT_DATA_VERDICT, 0 },
	[SET(S_FW, 1)] = { "fw6", NFT_SET_MAP, C3(T_IP6, T_PROTO, T_SVC), 24, NFT_DATA_VERDICT, 0 },
	[SET(S_SLOTS, 0)] = { "slots4", NFT_SET_MAP, C2(T_MARK, T_MARK), 8, C2(T_IP4, T_SVC), 8 },
	[SET(S_SLOTS, 1)] = { "slots6", NFT_SET_MAP, C2(T_MARK, T_MARK), 8, C2(T_IP6, T_SVC), 20 },
	/* affinity groups: group . endpoint id -> address . port */
	[SET(S_EPV, 0)] = { "epv4", NFT_SET_MAP, C2(T_MARK, T_MARK), 8, C2(T_IP4, T_SVC), 8 },
	[SET(S_EPV, 1)] = { "epv6", NFT_SET_MAP, C2(T_MARK, T_MARK), 8, C2(T_IP6, T_SVC), 20 },
	/* saddr . group -> endpoint id */
	[SET(S_AFF, 0)] = { "aff4", NFT_SET_MAP | NFT_SET_TIMEOUT | NFT_SET_EVAL, C2(T_IP4, T_MARK), 8, T_MARK, 4 },
	[SET(S_AFF, 1)] = { "aff6", NFT_SET_MAP | NFT_SET_TIMEOUT | NFT_SET_EVAL, C2(T_IP6, T_MARK), 20, T_MARK, 4 },
	[SET(S_HP, 0)] = { "hp4", 0, C2(T_IP4, T_IP4), 8, 0, 0 },
	[SET(S_HP, 1)] = { "hp6", 0, C2(T_IP6, T_IP6), 32, 0, 0 },
	/* frontend -> group, read back by the shared dispatch chains */
	[SET(S_GINT, 0)] = { "gint4", NFT_SET_MAP, C3(T_IP4, T_PROTO, T_SVC), 12, T_MARK, 4 },
	[SET(S_GINT, 1)] = { "gint6", NFT_SET_MAP, C3(T_IP6, T_PROTO, T_SVC), 24, T_MARK, 4 },
	[SET(S_GEXT, 0)] = { "gext4", NFT_SET_MAP, C3(T_IP4, T_PROTO, T_SVC), 12, T_MARK, 4 },
	[SET(S_GEXT, 1)] = { "gext6", NFT_SET_MAP, C3(T_IP6, T_PROTO, T_SVC), 24, T_MARK, 4 },
	[SET(S_GCLU, 0)] = { "gclu4", NFT_SET_MAP, C3(T_IP4, T_PROTO, T_SVC), 12, T_MARK, 4 },
	[SET(S_GCLU, 1)] = { "gclu6", NFT_SET_MAP, C3(T_IP6, T_PROTO, T_SVC), 24, T_MARK, 4 },
	[SET(S_GNPEXT, 0)] = { "gnpext4", NFT_SET_MAP, C2(T_PROTO, T_SVC), 8, T_MARK, 4 },
	[SET(S_GNPEXT, 1)] = { "gnpext6", NFT_SET_MAP, C2(T_PROTO, T_SVC), 8, T_MARK, 4 },
	[SET(S_GNPCLU, 0)] = { "gnpclu4", NFT_SET_MAP, C2(T_PROTO, T_SVC), 8, T_MARK, 4 },
	[SET(S_GNPCLU, 1)] = { "gnpclu6", NFT_SET_MAP, C2(T_PROTO, T_SVC), 8, T_MARK, 4 },
	/* endpoint count . random in [0, SEL_M) -> slot index */
	[SET(S_SEL, 0)] = { "sel4", NFT_SET_MAP, C2(T_MARK, T_MARK), 8, T_MARK, 4 },
	[SET(S_SEL, 1)] = { "sel6", NFT_SET_MAP, C2(T_MARK, T_MARK), 8, T_MARK, 4 },
	/* group -> endpoint count */
	[SET(S_GN, 0)] = { "gn4", NFT_SET_MAP, T_MARK, 4, T_MARK, 4 },
	[SET(S_GN, 1)] = { "gn6", NFT_SET_MAP, T_MARK, 4, T_MARK, 4 },
	/* affinity groups: group . slot -> endpoint id (their @slots) */
	[SET(S_SID, 0)] = { "sid4", NFT_SET_MAP, C2(T_MARK, T_MARK), 8, T_MARK, 4 },
	[SET(S_SID, 1)] = { "sid6", NFT_SET_MAP, C2(T_MARK, T_MARK), 8, T_MARK, 4 },
};

/*
 * Endpoint choice without the endpoint count in any rule: the frontend's
 * group map gives group, @gn n, `numgen random mod SEL_M` gives r, @sel maps
 * (n . r) to floor(r * n / SEL_M), @slots maps (group . slot) to the
 * endpoint. Changing n is then a data-element change, which the kernel
 * commits without re-validating the table. Imbalance <= n / SEL_M.
 */
#define SEL_M 4096u

/* Group kinds: which endpoint set of a svcport a dispatch uses. */
enum { G_INT, G_EXT, G_CLU };

/* Frontend-ish elements are owned by one svcport (a second svcport
 * claiming the same key is a conflict and is skipped); npaddr and hairpin
 * elements are shared and reference-counted. */
struct ref {
	struct ref *next;
	uint32_t owner, refs;
	uint8_t set, klen;
	uint8_t key[32];
};

/* One programmed svcport; the backend keeps them in an array sorted by
 * id like the plan, so a sync diffs by one merge walk. */
struct spstate {
	struct kpx_plan_svcport *sp; /* deep copy of what is programmed */
	uint64_t hash;		     /* the plan's hash of sp */
	uint32_t num;
};

/* A svcport a sync programs: new (st == SIZE_MAX) or changed. */
struct todo {
	size_t i;  /* plan index */
	size_t st; /* state index */
	struct kpx_plan_svcport *dup;
};

#define HBITS 16
#define HSIZE (1u << HBITS)

/*
 * Elements being accumulated for one (add/del, set) message, encoded as
 * netlink attributes right away (as libnftnl's set element builder does):
 * a full sync writes about a million elements, and one libnftnl object
 * per element (allocated, filled, copied, freed) was half of the time
 * spent building the batch. buf holds a netlink header followed by the
 * NFTA_LIST_ELEM nests; kept from sync to sync.
 */
struct eacc {
	char *buf;
	unsigned n;
};
/* The elements nest has a 16-bit length: flush well before. */
#define ACC_BYTES 65536
#define ACC_FLUSH_AT 60000

struct ctdel {
	uint8_t family;
	struct kpx_addr addr;
	uint16_t port;
};

struct kpx_backend {
	struct kpx_config cfg;
	struct mnl_socket *nl;
	uint32_t seq;
	bool full_next;
	bool no_carry; /* a rebuild with carried affinity entries failed */
	/* ruleset generation right after kpx's last commit, when no one
	 * else committed in between (gen_ok): a resync that finds it
	 * unchanged knows the table is as programmed, without reading it */
	uint32_t gen;
	bool gen_ok;
	struct kpx_plan_input input;
	struct spstate *st;    /* programmed svcports, sorted by id */
	size_t n_st;
	size_t cnt[NSETS];     /* size_counts() of st */
	struct ref **refs;     /* HSIZE buckets */
	size_t nref[NSETS];    /* refs per set: the elements the kernel holds */
	uint32_t next_num;
	/* per-sync diff */
	struct todo *todo;     /* new and changed svcports, plan order */
	size_t n_todo, cap_todo;
	size_t *gone;	       /* state indices of removed svcports */
	size_t n_gone, cap_gone;
	/* per-sync scratch */
	struct kpx_nft_batch batch;
	struct eacc acc[2][NSETS]; /* [0]=del, [1]=add */
	struct ctdel *ctdels;
	size_t n_ctdels, cap_ctdels;
	char (*disp)[48]; /* shared dispatch chains that exist */
	size_t n_disp, cap_disp;
	uint32_t cap[NSETS]; /* set capacities given at the last full sync */
	uint32_t selref[2][SEL_M + 1]; /* groups of each size, per family */
	bool selpresent[2][SEL_M + 1];
	int err;
};

static uint32_t fnv(const void *p, size_t n, uint32_t h)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 16777619u;
	return h;
}

/* ---------------------------------------------------------------- state */

static struct kpx_plan_svcport *sp_dup(const struct kpx_plan_svcport *sp)
{
	struct kpx_plan_svcport *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	*d = *sp;
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
	free(d);
}

static void state_clear(struct kpx_backend *b)
{
	for (size_t k = 0; k < b->n_st; k++)
		sp_free(b->st[k].sp);
	b->n_st = 0;
	memset(b->cnt, 0, sizeof(b->cnt));
	for (uint32_t i = 0; i < HSIZE; i++) {
		struct ref *r = b->refs[i], *rn;
		for (; r; r = rn) {
			rn = r->next;
			free(r);
		}
		b->refs[i] = NULL;
	}
	memset(b->nref, 0, sizeof(b->nref));
	b->next_num = 1;
	b->n_disp = 0;
	memset(b->selref, 0, sizeof(b->selref));
	memset(b->selpresent, 0, sizeof(b->selpresent));
}

/* ------------------------------------------------------------- elements */

static void acc_flush(struct kpx_backend *b, int add, int set)
{
	struct eacc *a = &b->acc[add][set];
	const struct nlmsghdr *src = (const struct nlmsghdr *)a->buf;
	struct nlmsghdr *nlh;
	struct nlattr *nest;
	size_t plen;

	if (!a->buf || !a->n)
		return;
	plen = src->nlmsg_len - MNL_NLMSG_HDRLEN;
	nlh = kpx_nft_batch_msg(&b->batch,
				add ? NFT_MSG_NEWSETELEM : NFT_MSG_DELSETELEM,
				add ? NLM_F_CREATE : 0, plen + 512);
	if (!nlh) {
		b->err = -ENOMEM;
	} else {
		mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_SET, setspecs[set].name);
		mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_TABLE, TABLE);
		nest = mnl_attr_nest_start(nlh, NFTA_SET_ELEM_LIST_ELEMENTS);
		memcpy(mnl_nlmsg_get_payload_tail(nlh), a->buf + MNL_NLMSG_HDRLEN, plen);
		nlh->nlmsg_len += (uint32_t)plen;
		mnl_attr_nest_end(nlh, nest);
		kpx_nft_batch_commit(&b->batch, nlh);
	}
	a->n = 0;
}

static void acc_flush_all(struct kpx_backend *b, int add)
{
	for (int i = 0; i < NSETS; i++)
		acc_flush(b, add, i);
}

/*
 * Queues one element. Additions carry the data: a goto `chain`, else in a
 * verdict map `verdict`, else `data`; then userdata, and a timeout and
 * the time left (ms, 0: none) in timeout sets. Deletions only the key.
 */
static void elem_put(struct kpx_backend *b, int add, int set, const void *key,
		     size_t klen, const char *chain, int verdict,
		     const void *data, size_t dlen, const void *ud,
		     size_t udlen, uint64_t timeout, uint64_t expires)
{
	struct eacc *a = &b->acc[add][set];
	struct nlmsghdr *nlh;
	struct nlattr *el, *n1, *n2;

	if (!a->buf) {
		a->buf = malloc(ACC_BYTES);
		if (!a->buf) {
			b->err = -ENOMEM;
			return;
		}
		a->n = 0;
	}
	nlh = (struct nlmsghdr *)a->buf;
	if (!a->n)
		mnl_nlmsg_put_header(a->buf);
	el = mnl_attr_nest_start(nlh, (uint16_t)(a->n + 1));
	if (add && timeout)
		mnl_attr_put_u64(nlh, NFTA_SET_ELEM_TIMEOUT, htobe64(timeout));
	if (add && expires)
		mnl_attr_put_u64(nlh, NFTA_SET_ELEM_EXPIRATION, htobe64(expires));
	n1 = mnl_attr_nest_start(nlh, NFTA_SET_ELEM_KEY);
	mnl_attr_put(nlh, NFTA_DATA_VALUE, klen, key);
	mnl_attr_nest_end(nlh, n1);
	if (add) {
		if (chain || setspecs[set].data_type == NFT_DATA_VERDICT) {
			n1 = mnl_attr_nest_start(nlh, NFTA_SET_ELEM_DATA);
			n2 = mnl_attr_nest_start(nlh, NFTA_DATA_VERDICT);
			mnl_attr_put_u32(nlh, NFTA_VERDICT_CODE,
					 htonl(chain ? (uint32_t)NFT_GOTO : (uint32_t)verdict));
			if (chain)
				mnl_attr_put_strz(nlh, NFTA_VERDICT_CHAIN, chain);
			mnl_attr_nest_end(nlh, n2);
			mnl_attr_nest_end(nlh, n1);
		} else if (data) {
			n1 = mnl_attr_nest_start(nlh, NFTA_SET_ELEM_DATA);
			mnl_attr_put(nlh, NFTA_DATA_VALUE, dlen, data);
			mnl_attr_nest_end(nlh, n1);
		}
		if (ud && udlen)
			mnl_attr_put(nlh, NFTA_SET_ELEM_USERDATA, udlen, ud);
	}
	mnl_attr_nest_end(nlh, el);
	if (++a->n >= ELEMS_PER_MSG || nlh->nlmsg_len >= ACC_FLUSH_AT)
		acc_flush(b, add, set);
}

/* Queues one element; verdict maps take chain (goto) or verdict (drop). */
static void elem(struct kpx_backend *b, int add, int set, const void *key,
		 size_t klen, const char *chain, int verdict, const void *data,
		 size_t dlen, const void *ud, size_t udlen)
{
	elem_put(b, add, set, key, klen, chain, verdict, data, dlen, ud, udlen,
		 0, 0);
}

/* Owned (shared=false) or reference-counted (shared=true) element. */
static void elem_ref(struct kpx_backend *b, int add, int set, bool shared,
		     uint32_t owner, const void *key, size_t klen,
		     const char *chain, int verdict, const void *ud,
		     size_t udlen, const char *what);
static void elem_refd(struct kpx_backend *b, int add, int set, bool shared,
		      uint32_t owner, const void *key, size_t klen,
		      const char *chain, int verdict, const void *data,
		      size_t dlen, const void *ud, size_t udlen,
		      const char *what);

static void elem_ref(struct kpx_backend *b, int add, int set, bool shared,
		     uint32_t owner, const void *key, size_t klen,
		     const char *chain, int verdict, const void *ud,
		     size_t udlen, const char *what)
{
	elem_refd(b, add, set, shared, owner, key, klen, chain, verdict, NULL,
		  0, ud, udlen, what);
}

static void elem_refd(struct kpx_backend *b, int add, int set, bool shared,
		      uint32_t owner, const void *key, size_t klen,
		      const char *chain, int verdict, const void *data,
		      size_t dlen, const void *ud, size_t udlen,
		      const char *what)
{
	uint32_t h = fnv(key, klen, 2166136261u ^ (uint32_t)set) & (HSIZE - 1);
	struct ref **pp = &b->refs[h], *r;

	while (*pp && ((*pp)->set != set || (*pp)->klen != klen ||
		       memcmp((*pp)->key, key, klen)))
		pp = &(*pp)->next;
	r = *pp;
	if (add) {
		if (r) {
			if (!shared && r->owner != owner) {
				kpx_warn("nft: %s: frontend already programmed by "
					 "another service port, skipped", what);
				return;
			}
			r->refs++;
			return;
		}
		r = calloc(1, sizeof(*r));
		if (!r) {
			b->err = -ENOMEM;
			return;
		}
		r->set = (uint8_t)set;
		r->klen = (uint8_t)klen;
		memcpy(r->key, key, klen);
		r->owner = owner;
		r->refs = 1;
		r->next = b->refs[h];
		b->refs[h] = r;
		b->nref[set]++;
		elem(b, 1, set, key, klen, chain, verdict, data, dlen, ud, udlen);
		return;
	}
	if (!r || (!shared && r->owner != owner))
		return;
	if (--r->refs)
		return;
	*pp = r->next;
	free(r);
	b->nref[set]--;
	elem(b, 0, set, key, klen, NULL, 0, NULL, 0, NULL, 0);
}

static size_t alen(uint8_t family)
{
	return family == AF_INET6 ? 16 : 4;
}

/* addr . proto . port, each field padded to 4 bytes as in registers. */
static size_t fe_key(uint8_t *k, const struct kpx_addr *a, uint8_t proto,
		     uint16_t port)
{
	size_t l = alen(a->family);
	uint16_t p = htons(port);
	memset(k, 0, l + 8);
	memcpy(k, a->bytes, l);
	k[l] = proto;
	memcpy(k + l + 4, &p, 2);
	return l + 8;
}

static size_t np_key(uint8_t *k, uint8_t proto, uint16_t port)
{
	uint16_t p = htons(port);
	memset(k, 0, 8);
	k[0] = proto;
	memcpy(k + 4, &p, 2);
	return 8;
}

static size_t ep_data(uint8_t *d, const struct kpx_plan_endpoint *ep)
{
	size_t l = alen(ep->addr.family);
	uint16_t p = htons(ep->port);
	memset(d, 0, l + 4);
	memcpy(d, ep->addr.bytes, l);
	memcpy(d + l, &p, 2);
	return l + 4;
}

static void chain_name(char *buf, const char *pfx, uint32_t num)
{
	snprintf(buf, 32, "%s-%u", pfx, num);
}

struct needs {
	bool svc, ext, clu, fw;
};

static struct needs sp_needs(const struct kpx_plan_svcport *sp)
{
	struct needs n = { 0 };
	for (size_t i = 0; i < sp->n_frontends; i++) {
		const struct kpx_plan_frontend *fe = &sp->frontends[i];
		if (fe->kind == KPX_FE_CLUSTER_IP)
			n.svc = true;
		else
			n.ext = true;
		if (fe->kind == KPX_FE_LOAD_BALANCER && sp->n_source_ranges)
			n.fw = true;
	}
	n.clu = n.ext && sp->etp_local;
	return n;
}

static void empty_verdict(enum kpx_empty_action a, const char **chain,
			  int *verdict)
{
	if (a == KPX_EMPTY_REJECT) {
		*chain = "reject-chain";
		*verdict = NFT_GOTO;
	} else {
		*chain = NULL;
		*verdict = NF_DROP;
	}
}

static size_t group_n(const struct kpx_plan_svcport *sp, size_t n)
{
	if (n > SEL_M) {
		kpx_warn("nft: %s: %zu endpoints, only the first %u are used",
			 sp->id, n, SEL_M);
		n = SEL_M;
	}
	return n;
}

/* Affinity entries name the endpoint by an id that stays the same while
 * the endpoint exists (slots shift): a hash of address . port, probed
 * past the ids of the endpoints before it in the group (ids[0..i-1]). */
static uint32_t ep_id(const uint8_t *data, size_t dl, const uint32_t *ids,
		      size_t i)
{
	uint32_t id = fnv(data, dl, 2166136261u);
	for (size_t j = 0; j < i; j++)
		if (ids[j] == id) {
			id++;
			j = (size_t)-1;
		}
	return id;
}

/*
 * Selection tables (@sel elements of one endpoint count n: SEL_M of them)
 * are kept for counts no group uses, so that the first group to reach a
 * count finds its table present: a missing table is SEL_M elements in
 * that change's transaction (~20 messages, ~130 KB, ~10 ms at 30,000
 * services, where the change itself is ~4 messages and 1-4 ms). Wanted
 * in a family with groups: the counts next to one in use (one endpoint
 * added or removed) and every count up to SEL_ALWAYS. A table costs the
 * kernel ~5 ms to add whatever the table size, so a full sync adds only
 * the neighbours of counts in use; tick adds the other wanted tables,
 * one per tick, as does it for counts that came into use at partial
 * syncs. A partial sync adds a missing table a group needs, not its
 * neighbours (two more tables in that change; a service scaled up one
 * endpoint at a time would still miss every other step).
 */
#define SEL_ALWAYS 16u
/* Unwanted tables kept anyway (cleanup deletes the lowest counts first):
 * a service scaled down and up again does not rewrite its tables. */
#define SEL_SPARE 32u

static void sel_emit(struct kpx_backend *b, int add, int f, uint32_t n)
{
	for (uint32_t r = 0; r < SEL_M; r++) {
		uint32_t k2[2] = { n, r };
		uint32_t slot = (uint32_t)(((uint64_t)r * n) / SEL_M);
		elem(b, add, SET(S_SEL, f), k2, 8, NULL, 0, add ? &slot : NULL,
		     add ? 4 : 0, NULL, 0);
	}
	b->selpresent[f][n] = add;
}

/* Count n in use or next to one in use in family f. */
static bool sel_near(const struct kpx_backend *b, int f, uint32_t n)
{
	return b->selref[f][n] || b->selref[f][n - 1] ||
	       (n < SEL_M && b->selref[f][n + 1]);
}

static bool sel_used(const struct kpx_backend *b, int f)
{
	for (uint32_t n = 1; n <= SEL_M; n++)
		if (b->selref[f][n])
			return true;
	return false;
}

static void emit_group_elems(struct kpx_backend *b, int add,
			     const struct kpx_plan_svcport *sp, uint32_t g,
			     const uint32_t *idx, size_t n)
{
	bool v6 = sp->family == AF_INET6;
	uint8_t data[32];
	n = group_n(sp, n);
	if (n) {
		uint32_t *ref = &b->selref[v6][n];
		if (!add) {
			if (*ref)
				(*ref)--;
		} else if ((*ref)++ == 0 && !b->selpresent[v6][n]) {
			sel_emit(b, 1, v6, (uint32_t)n);
		}
		uint32_t n32 = (uint32_t)n;
		elem(b, add, SET(S_GN, v6), &g, 4, NULL, 0, &n32, 4, NULL, 0);
	}
	uint32_t *ids = NULL;
	if (sp->affinity_timeout && n) {
		ids = calloc(n, sizeof(*ids));
		if (!ids) {
			b->err = -ENOMEM;
			return;
		}
	}
	for (size_t i = 0; i < n; i++) {
		const struct kpx_plan_endpoint *ep = &sp->endpoints[idx[i]];
		uint32_t k2[2] = { g, (uint32_t)i };
		size_t dl = ep_data(data, ep);
		if (!ids) {
			elem(b, add, SET(S_SLOTS, v6), k2, 8, NULL, 0, data, dl,
			     &ep->flags, 1);
			continue;
		}
		/* affinity: slot -> id -> address, no @slots element */
		uint32_t id = ep_id(data, dl, ids, i);
		ids[i] = id;
		elem(b, add, SET(S_SID, v6), k2, 8, NULL, 0, &id, 4, &ep->flags, 1);
		k2[1] = id;
		elem(b, add, SET(S_EPV, v6), k2, 8, NULL, 0, data, dl, NULL, 0);
	}
	free(ids);
}

/* frontend -> group for every group that has endpoints. The count lives
 * in @gn (group -> n), so that each lookup's key is one whole expression
 * that the nft tool can print (a register holding part of a concatenated
 * map value is not). */
static void emit_gmaps(struct kpx_backend *b, int add,
		       const struct kpx_plan_svcport *sp, uint32_t num)
{
	bool v6 = sp->family == AF_INET6;
	struct needs nd = sp_needs(sp);
	uint32_t gi[2] = { num * 4 + G_INT, (uint32_t)group_n(sp, sp->n_internal) };
	uint32_t ge[2] = { num * 4 + G_EXT, (uint32_t)group_n(sp, sp->n_external) };
	uint32_t gc[2] = { num * 4 + G_CLU, (uint32_t)group_n(sp, sp->n_cluster) };
	uint8_t key[40];
	size_t kl;

	for (size_t i = 0; i < sp->n_frontends; i++) {
		const struct kpx_plan_frontend *fe = &sp->frontends[i];
		if (fe->addr.family != sp->family)
			continue;
		if (fe->kind == KPX_FE_NODE_PORT) {
			kl = np_key(key, sp->proto, fe->port);
			if (ge[1])
				elem_refd(b, add, SET(S_GNPEXT, v6), false, num, key,
					  kl, NULL, 0, ge, 4, NULL, 0, sp->id);
			if (nd.clu && gc[1])
				elem_refd(b, add, SET(S_GNPCLU, v6), false, num, key,
					  kl, NULL, 0, gc, 4, NULL, 0, sp->id);
			continue;
		}
		kl = fe_key(key, &fe->addr, sp->proto, fe->port);
		if (fe->kind == KPX_FE_CLUSTER_IP) {
			if (gi[1])
				elem_refd(b, add, SET(S_GINT, v6), false, num, key,
					  kl, NULL, 0, gi, 4, NULL, 0, sp->id);
			continue;
		}
		if (ge[1])
			elem_refd(b, add, SET(S_GEXT, v6), false, num, key, kl,
				  NULL, 0, ge, 4, NULL, 0, sp->id);
		if (nd.clu && gc[1])
			elem_refd(b, add, SET(S_GCLU, v6), false, num, key, kl,
				  NULL, 0, gc, 4, NULL, 0, sp->id);
	}
}

/* All elements of one svcport, added or removed. */
static void emit_elems_fe(struct kpx_backend *b, int add,
			  const struct kpx_plan_svcport *sp, uint32_t num, bool fe);

/* All elements of one svcport, added or removed. */
static void emit_elems(struct kpx_backend *b, int add,
		       const struct kpx_plan_svcport *sp, uint32_t num)
{
	emit_elems_fe(b, add, sp, num, true);
}

/* fe=false: only the endpoint elements (slots, epv, gn, hairpin), for a
 * svcport whose frontends and empty-actions did not change: verdict
 * elements make the kernel re-validate the whole table, data do not. */
static void emit_elems_fe(struct kpx_backend *b, int add,
			  const struct kpx_plan_svcport *sp, uint32_t num, bool fe)
{
	bool v6 = sp->family == AF_INET6;
	struct needs nd = sp_needs(sp);
	char svc[32], ext[32], fw[32], what[KPX_SVCPORT_ID_MAX + 64];
	uint8_t key[40];
	size_t kl;
	const char *ch;
	int vd;
	chain_name(svc, "svc", num);
	chain_name(ext, "ext", num);
	chain_name(fw, "fw", num);
	for (size_t i = 0; fe && i < sp->n_frontends; i++) {
		const struct kpx_plan_frontend *fe = &sp->frontends[i];
		uint8_t kind = (uint8_t)fe->kind;
		char abuf[KPX_ADDR_STRLEN];
		if (fe->addr.family != sp->family)
			continue;
		snprintf(what, sizeof(what), "%s %s %s:%u", sp->id,
			 kpx_fe_kind_name(fe->kind), kpx_addr_str(&fe->addr, abuf),
			 fe->port);
		if (fe->kind == KPX_FE_NODE_PORT) {
			kl = alen(sp->family);
			elem_ref(b, add, SET(S_NPADDR, v6), true, 0, fe->addr.bytes,
				 kl, NULL, 0, NULL, 0, what);
			kl = np_key(key, sp->proto, fe->port);
			elem_ref(b, add, SET(S_NP, v6), false, num, key, kl, ext,
				 0, &kind, 1, what);
			if (!sp->n_external) {
				empty_verdict(sp->external_empty, &ch, &vd);
				elem_ref(b, add, SET(S_NOEPNP, v6), false, num, key,
					 kl, ch, vd, NULL, 0, what);
			}
			continue;
		}
		kl = fe_key(key, &fe->addr, sp->proto, fe->port);
		if (fe->kind == KPX_FE_CLUSTER_IP) {
			elem_ref(b, add, SET(S_FE, v6), false, num, key, kl, svc, 0,
				 &kind, 1, what);
			if (!sp->n_internal) {
				empty_verdict(sp->internal_empty, &ch, &vd);
				elem_ref(b, add, SET(S_NOEP, v6), false, num, key,
					 kl, ch, vd, NULL, 0, what);
			}
			continue;
		}
		elem_ref(b, add, SET(S_FE, v6), false, num, key, kl, ext, 0, &kind,
			 1, what);
		if (!sp->n_external) {
			empty_verdict(sp->external_empty, &ch, &vd);
			elem_ref(b, add, SET(S_NOEP, v6), false, num, key, kl, ch,
				 vd, NULL, 0, what);
		}
		if (fe->kind == KPX_FE_LOAD_BALANCER && nd.fw)
			elem_ref(b, add, SET(S_FW, v6), false, num, key, kl, fw, 0,
				 NULL, 0, what);
	}
	if (fe) /* the group numbers do not change with the endpoints */
		emit_gmaps(b, add, sp, num);
	if (nd.svc)
		emit_group_elems(b, add, sp, num * 4 + G_INT, sp->internal,
				 sp->n_internal);
	if (nd.ext)
		emit_group_elems(b, add, sp, num * 4 + G_EXT, sp->external,
				 sp->n_external);
	if (nd.clu)
		emit_group_elems(b, add, sp, num * 4 + G_CLU, sp->cluster,
				 sp->n_cluster);
	for (size_t i = 0; i < sp->n_endpoints; i++) {
		const struct kpx_plan_endpoint *ep = &sp->endpoints[i];
		size_t l = alen(ep->addr.family);
		if (!(ep->flags & KPX_EP_LOCAL) || ep->addr.family != sp->family)
			continue;
		memcpy(key, ep->addr.bytes, l);
		memcpy(key + l, ep->addr.bytes, l);
		elem_ref(b, add, SET(S_HP, v6), true, 0, key, 2 * l, NULL, 0,
			 NULL, 0, sp->id);
	}
}

/* ---------------------------------------------------------------- rules */

static struct nftnl_rule *rule_new(const char *chain)
{
	struct nftnl_rule *r = nftnl_rule_alloc();
	if (!r)
		return NULL;
	nftnl_rule_set_str(r, NFTNL_RULE_TABLE, TABLE);
	nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, chain);
	nftnl_rule_set_u32(r, NFTNL_RULE_FAMILY, NFPROTO_INET);
	return r;
}

static void rule_emit(struct kpx_backend *b, struct nftnl_rule *r)
{
	struct nlmsghdr *nlh;
	if (!r) {
		b->err = -ENOMEM;
		return;
	}
	nlh = kpx_nft_batch_msg(&b->batch, NFT_MSG_NEWRULE,
				NLM_F_APPEND | NLM_F_CREATE, 8192);
	if (!nlh) {
		b->err = -ENOMEM;
	} else {
		nftnl_rule_nlmsg_build_payload(nlh, r);
		kpx_nft_batch_commit(&b->batch, nlh);
	}
	nftnl_rule_free(r);
}

static void chain_emit(struct kpx_backend *b, const char *name,
		       const char *type, int hook, int prio, const char *ud)
{
	struct nftnl_chain *c = nftnl_chain_alloc();
	struct nlmsghdr *nlh;
	if (!c) {
		b->err = -ENOMEM;
		return;
	}
	nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, TABLE);
	nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, name);
	nftnl_chain_set_u32(c, NFTNL_CHAIN_FAMILY, NFPROTO_INET);
	if (type) {
		nftnl_chain_set_str(c, NFTNL_CHAIN_TYPE, type);
		nftnl_chain_set_u32(c, NFTNL_CHAIN_HOOKNUM, (uint32_t)hook);
		nftnl_chain_set_s32(c, NFTNL_CHAIN_PRIO, prio);
		nftnl_chain_set_u32(c, NFTNL_CHAIN_POLICY, NF_ACCEPT);
	}
	if (ud)
		nftnl_chain_set_data(c, NFTNL_CHAIN_USERDATA, ud,
				     (uint32_t)strlen(ud) + 1);
	nlh = kpx_nft_batch_msg(&b->batch, NFT_MSG_NEWCHAIN, NLM_F_CREATE, 4096);
	if (!nlh) {
		b->err = -ENOMEM;
	} else {
		nftnl_chain_nlmsg_build_payload(nlh, c);
		kpx_nft_batch_commit(&b->batch, nlh);
	}
	nftnl_chain_free(c);
}

static void chain_op(struct kpx_backend *b, const char *name, bool del)
{
	struct nlmsghdr *nlh;
	if (del) {
		struct nftnl_chain *c = nftnl_chain_alloc();
		nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, TABLE);
		nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, name);
		nlh = kpx_nft_batch_msg(&b->batch, NFT_MSG_DELCHAIN, 0, 1024);
		if (nlh) {
			nftnl_chain_nlmsg_build_payload(nlh, c);
			kpx_nft_batch_commit(&b->batch, nlh);
		}
		nftnl_chain_free(c);
	} else { /* flush: DELRULE with only the chain */
		struct nftnl_rule *r = rule_new(name);
		nlh = kpx_nft_batch_msg(&b->batch, NFT_MSG_DELRULE, 0, 1024);
		if (nlh) {
			nftnl_rule_nlmsg_build_payload(nlh, r);
			kpx_nft_batch_commit(&b->batch, nlh);
		}
		nftnl_rule_free(r);
	}
}

static void x_nfproto(struct nftnl_rule *r, bool v6)
{
	uint8_t p = v6 ? NFPROTO_IPV6 : NFPROTO_IPV4;
	kpx_nft_e_meta(r, NFT_META_NFPROTO, R(0));
	kpx_nft_e_cmp(r, R(0), NFT_CMP_EQ, &p, 1);
}

static void x_saddr(struct nftnl_rule *r, bool v6, uint32_t dreg)
{
	kpx_nft_e_payload(r, NFT_PAYLOAD_NETWORK_HEADER, v6 ? 8 : 12,
			  v6 ? 16 : 4, dreg);
}

static void x_daddr(struct nftnl_rule *r, bool v6, uint32_t dreg)
{
	kpx_nft_e_payload(r, NFT_PAYLOAD_NETWORK_HEADER, v6 ? 24 : 16,
			  v6 ? 16 : 4, dreg);
}

static void x_proto_port(struct nftnl_rule *r, uint32_t dreg)
{
	kpx_nft_e_meta(r, NFT_META_L4PROTO, dreg);
	kpx_nft_e_payload(r, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, dreg + 1);
}

static void x_mark_masq(struct nftnl_rule *r)
{
	uint32_t mask = ~MASQ_MARK, xor = MASQ_MARK;
	kpx_nft_e_meta(r, NFT_META_MARK, R(1));
	kpx_nft_e_bitwise(r, R(1), 4, &mask, &xor);
	kpx_nft_e_meta_set(r, NFT_META_MARK, R(1));
}

static void x_ct_new(struct nftnl_rule *r)
{
	uint32_t mask = NF_CT_STATE_BIT(IP_CT_NEW), xor = 0, zero = 0;
	kpx_nft_e_ct(r, NFT_CT_STATE, R(0));
	kpx_nft_e_bitwise(r, R(0), 4, &mask, &xor);
	kpx_nft_e_cmp(r, R(0), NFT_CMP_NEQ, &zero, 4);
}

/* saddr within cidr: prefix masked compare. */
static void x_saddr_in(struct nftnl_rule *r, const struct kpx_cidr *c)
{
	bool v6 = c->addr.family == AF_INET6;
	size_t l = alen(c->addr.family);
	uint8_t mask[16] = { 0 }, xor[16] = { 0 };
	for (unsigned i = 0; i < c->prefix && i < l * 8; i++)
		mask[i / 8] |= (uint8_t)(0x80 >> (i % 8));
	x_saddr(r, v6, R(0));
	kpx_nft_e_bitwise(r, R(0), (uint32_t)l, mask, xor);
	kpx_nft_e_cmp(r, R(0), NFT_CMP_EQ, c->addr.bytes, (uint32_t)l);
}

/* One rule of a shared dispatch chain: the group comes from the frontend
 * key (fe: daddr . l4proto . dport, np: l4proto . dport) via gmap. */
static void x_key(struct nftnl_rule *r, bool v6, bool np, uint32_t reg)
{
	if (np) {
		x_proto_port(r, reg);
		return;
	}
	x_daddr(r, v6, reg);
	x_proto_port(r, reg + (v6 ? 4 : 1));
}

/*
 * nft(8) 1.0.6 turns a rule back into text register by register and
 * aborts (netlink_parse_concat_expr: consumed > 0) when a lookup key
 * holds a map's result: it knows a map result only as "map expression of
 * no length". Keys may hold payload, meta, ct and numgen loads. So each
 * intermediate value (group, n, slot, endpoint id) goes through the
 * packet mark and is loaded back as `meta mark` ("launder"); the mark is
 * saved in SAVE first and put back right after, so nothing outside the
 * rule ever sees it changed, also when a later lookup misses. `nft list`
 * shows this as `meta mark set <map> ... meta mark set meta mark`.
 */
#define SAVE R(15)

static void x_launder(struct nftnl_rule *r, uint32_t reg)
{
	kpx_nft_e_meta_set(r, NFT_META_MARK, reg);
	kpx_nft_e_meta(r, NFT_META_MARK, reg);
	kpx_nft_e_meta_set(r, NFT_META_MARK, SAVE);
}

/*
 * Registers (a = address width in registers; G = R(a) with affinity,
 * R(0) without):
 *   R0..R(a-1)  saddr (affinity only)
 *   G           group   <- frontend key map @g*
 *   G+1         n       <- group map @gn; slot <- n . random map @sel;
 *               endpoint id <- saddr . group map @aff (affinity hit)
 *               or <- group . slot map @sid (new affinity)
 *   G+2..       frontend key, then random, then address . port
 */
static void disp_rules(struct kpx_backend *b, const char *chain, bool v6,
		       const char *gmap, bool np, uint32_t t_s)
{
	uint32_t a = v6 ? 4 : 1, fam = v6 ? NFPROTO_IPV6 : NFPROTO_IPV4;
	const char *aff = setspecs[SET(S_AFF, v6)].name;
	const char *slots = setspecs[SET(S_SLOTS, v6)].name;
	const char *sel = setspecs[SET(S_SEL, v6)].name;
	const char *gn = setspecs[SET(S_GN, v6)].name;
	uint32_t g = t_s ? R(a) : R(0);
	uint64_t t = (uint64_t)t_s * 1000;
	struct nftnl_rule *r;

	if (t_s) {
		/* Affinity hit, only while the endpoint is still in the
		 * group (@epv); refreshes the timeout like iptables' recent
		 * --set. */
		r = rule_new(chain);
		kpx_nft_e_meta(r, NFT_META_MARK, SAVE);
		x_key(r, v6, np, g + 2);
		kpx_nft_e_lookup(r, gmap, g + 2, (int)g, 0);
		x_launder(r, g);
		x_saddr(r, v6, R(0));
		kpx_nft_e_lookup(r, aff, R(0), (int)(g + 1), 0);
		x_launder(r, g + 1);
		kpx_nft_e_lookup(r, setspecs[SET(S_EPV, v6)].name, g,
				 (int)(g + 2), 0);
		kpx_nft_e_dynset(r, aff, NFT_DYNSET_OP_UPDATE, R(0), (int)(g + 1), t);
		kpx_nft_e_dnat(r, fam, g + 2, g + 2 + a);
		rule_emit(b, r);
	}
	/* New choice; with affinity it replaces a stale entry (endpoint
	 * gone) and is remembered. */
	r = rule_new(chain);
	kpx_nft_e_meta(r, NFT_META_MARK, SAVE);
	x_key(r, v6, np, g + 2);
	kpx_nft_e_lookup(r, gmap, g + 2, (int)g, 0);	  /* group */
	x_launder(r, g);
	kpx_nft_e_lookup(r, gn, g, (int)(g + 1), 0);	  /* n */
	x_launder(r, g + 1);
	kpx_nft_e_numgen(r, g + 2, SEL_M);		  /* random */
	kpx_nft_e_lookup(r, sel, g + 1, (int)(g + 1), 0); /* slot */
	x_launder(r, g + 1);
	if (t_s) {
		/* endpoint id, then its address . port as in the hit rule */
		kpx_nft_e_lookup(r, setspecs[SET(S_SID, v6)].name, g,
				 (int)(g + 1), 0);
		x_launder(r, g + 1);
		kpx_nft_e_lookup(r, setspecs[SET(S_EPV, v6)].name, g,
				 (int)(g + 2), 0);
		x_saddr(r, v6, R(0));
		/* the kernel wants a data register for any dynset on a map */
		kpx_nft_e_dynset(r, aff, NFT_DYNSET_OP_DELETE, R(0),
				 (int)(g + 1), 0);
		kpx_nft_e_dynset(r, aff, NFT_DYNSET_OP_ADD, R(0),
				 (int)(g + 1), t);
	} else {
		kpx_nft_e_lookup(r, slots, g, (int)(g + 2), 0); /* address . port */
	}
	kpx_nft_e_dnat(r, fam, g + 2, g + 2 + a);
	rule_emit(b, r);
}

/*
 * Endpoint choice is shared: every svcport with the same family, set
 * kind, endpoint count and affinity timeout jumps to one dispatch chain.
 * A named map gets one kernel binding per rule that looks it up, and each
 * element added walks all bindings, so per-svcport lookups would make a
 * full sync quadratic.
 */
static void emit_dispatch(struct kpx_backend *b, const char *chain,
			  const struct kpx_plan_svcport *sp, int kind,
			  size_t n)
{
	bool v6 = sp->family == AF_INET6;
	char name[48];
	struct nftnl_rule *r;
	size_t i;

	if (!n)
		return; /* empty: the filter endpoints-check rejects/drops */
	snprintf(name, sizeof(name), "disp%c-%c-a%u", v6 ? '6' : '4',
		 "iec"[kind], sp->affinity_timeout);
	for (i = 0; i < b->n_disp; i++)
		if (!strcmp(b->disp[i], name))
			break;
	if (i == b->n_disp) {
		if (b->n_disp == b->cap_disp) {
			size_t nc = b->cap_disp ? b->cap_disp * 2 : 64;
			char (*nd)[48] = realloc(b->disp, nc * sizeof(*nd));
			if (!nd) {
				b->err = -ENOMEM;
				return;
			}
			b->disp = nd;
			b->cap_disp = nc;
		}
		snprintf(b->disp[b->n_disp++], 48, "%s", name);
		chain_emit(b, name, NULL, 0, 0, NULL);
		static const int gfe[] = { S_GINT, S_GEXT, S_GCLU };
		disp_rules(b, name, v6, setspecs[SET(gfe[kind], v6)].name, false,
			   sp->affinity_timeout);
		if (kind == G_EXT)
			disp_rules(b, name, v6, setspecs[SET(S_GNPEXT, v6)].name,
				   true, sp->affinity_timeout);
		if (kind == G_CLU)
			disp_rules(b, name, v6, setspecs[SET(S_GNPCLU, v6)].name,
				   true, sp->affinity_timeout);
	}
	r = rule_new(chain);
	kpx_nft_e_verdict(r, NFT_GOTO, name);
	rule_emit(b, r);
}

static bool have_cidr(const struct kpx_backend *b, uint8_t family)
{
	for (size_t i = 0; i < b->input.n_cluster_cidrs; i++)
		if (b->input.cluster_cidrs[i].addr.family == family)
			return true;
	return false;
}

static void chain_ud(char *buf, size_t len, const char *kind,
		     const struct kpx_plan_svcport *sp, uint32_t g)
{
	snprintf(buf, len, "%s\t%s\t%s\t%s\t%s\t%u\t%u\t%u", kind, sp->id,
		 sp->ns, sp->name, sp->port_name, sp->affinity_timeout, g,
		 sp->etp_local ? 1 : 0);
}

/* Chains of one svcport: created (or flushed when `flush`) and filled. */
static void emit_chains(struct kpx_backend *b,
			const struct kpx_plan_svcport *sp, uint32_t num,
			const struct needs *old)
{
	bool v6 = sp->family == AF_INET6;
	struct needs nd = sp_needs(sp);
	char name[32], clu[32], ud[2 * KPX_SVCPORT_ID_MAX + 2 * KPX_NAME_MAX];
	struct nftnl_rule *r;

	if (nd.svc) {
		chain_name(name, "svc", num);
		chain_ud(ud, sizeof(ud), "svc", sp, num * 4 + G_INT);
		chain_emit(b, name, NULL, 0, 0, ud);
		if (old && old->svc)
			chain_op(b, name, false);
		if (b->input.masquerade_all) {
			r = rule_new(name);
			x_mark_masq(r);
			rule_emit(b, r);
		} else if (have_cidr(b, sp->family)) {
			r = rule_new(name);
			kpx_nft_e_verdict(r, NFT_JUMP,
					  v6 ? "masq-check6" : "masq-check4");
			rule_emit(b, r);
		}
		emit_dispatch(b, name, sp, G_INT, sp->n_internal);
	}
	chain_name(clu, "clu", num);
	if (nd.clu) {
		chain_ud(ud, sizeof(ud), "clu", sp, num * 4 + G_CLU);
		chain_emit(b, clu, NULL, 0, 0, ud);
		if (old && old->clu)
			chain_op(b, clu, false);
		emit_dispatch(b, clu, sp, G_CLU, sp->n_cluster);
	}
	if (nd.ext) {
		chain_name(name, "ext", num);
		chain_ud(ud, sizeof(ud), "ext", sp, num * 4 + G_EXT);
		chain_emit(b, name, NULL, 0, 0, ud);
		if (old && old->ext)
			chain_op(b, name, false);
		if (sp->etp_local) {
			/* kube-proxy's short-circuit: pods and the node itself
			 * get the cluster set; only the node is masqueraded. */
			for (size_t i = 0; i < b->input.n_cluster_cidrs; i++) {
				const struct kpx_cidr *c = &b->input.cluster_cidrs[i];
				if (c->addr.family != sp->family)
					continue;
				r = rule_new(name);
				x_saddr_in(r, c);
				kpx_nft_e_verdict(r, NFT_GOTO, clu);
				rule_emit(b, r);
			}
			uint32_t local = RTN_LOCAL;
			r = rule_new(name);
			kpx_nft_e_fib_saddr_type(r, R(0));
			kpx_nft_e_cmp(r, R(0), NFT_CMP_EQ, &local, 4);
			x_mark_masq(r);
			kpx_nft_e_verdict(r, NFT_GOTO, clu);
			rule_emit(b, r);
		} else {
			r = rule_new(name);
			x_mark_masq(r);
			rule_emit(b, r);
		}
		emit_dispatch(b, name, sp, G_EXT, sp->n_external);
	}
	if (nd.fw) {
		chain_name(name, "fw", num);
		chain_ud(ud, sizeof(ud), "fw", sp, 0);
		chain_emit(b, name, NULL, 0, 0, ud);
		if (old && old->fw)
			chain_op(b, name, false);
		for (size_t i = 0; i < sp->n_source_ranges; i++) {
			if (sp->source_ranges[i].addr.family != sp->family)
				continue;
			r = rule_new(name);
			x_saddr_in(r, &sp->source_ranges[i]);
			kpx_nft_e_verdict(r, NFT_RETURN, NULL);
			rule_emit(b, r);
		}
		r = rule_new(name);
		kpx_nft_e_verdict(r, NF_DROP, NULL);
		rule_emit(b, r);
	}
}

/* What the rules of a svcport's chains depend on: when it is unchanged,
 * an endpoint change touches map elements only. Rule changes make the
 * kernel re-validate the whole table at commit, elements do not. */
static bool same_rules(const struct kpx_plan_svcport *a,
		       const struct kpx_plan_svcport *b)
{
	struct needs na = sp_needs(a), nb = sp_needs(b);
	if (memcmp(&na, &nb, sizeof(na)) || a->family != b->family ||
	    a->affinity_timeout != b->affinity_timeout ||
	    a->etp_local != b->etp_local || !a->n_internal != !b->n_internal ||
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
			   const struct kpx_plan_svcport *b)
{
	return same_rules(a, b) && a->proto == b->proto &&
	       a->n_frontends == b->n_frontends &&
	       !memcmp(a->frontends, b->frontends,
		       a->n_frontends * sizeof(*a->frontends)) &&
	       a->internal_empty == b->internal_empty &&
	       a->external_empty == b->external_empty;
}

/* Chains in `old` but not in `nw` (nw NULL: all), referrers first. */
static void delete_chains(struct kpx_backend *b, uint32_t num,
			  const struct needs *old, const struct needs *nw)
{
	char name[32];
	static const struct needs none = { 0 };
	if (!nw)
		nw = &none;
	if (old->ext && !nw->ext) {
		chain_name(name, "ext", num);
		chain_op(b, name, true);
	}
	if (old->clu && !nw->clu) {
		chain_name(name, "clu", num);
		chain_op(b, name, true);
	}
	if (old->svc && !nw->svc) {
		chain_name(name, "svc", num);
		chain_op(b, name, true);
	}
	if (old->fw && !nw->fw) {
		chain_name(name, "fw", num);
		chain_op(b, name, true);
	}
}

static void table_msg(struct kpx_backend *b, uint16_t type, uint16_t flags)
{
	struct nftnl_table *t = nftnl_table_alloc();
	struct nlmsghdr *nlh;
	nftnl_table_set_str(t, NFTNL_TABLE_NAME, TABLE);
	nftnl_table_set_u32(t, NFTNL_TABLE_FAMILY, NFPROTO_INET);
	nlh = kpx_nft_batch_msg(&b->batch, type, flags, 1024);
	if (nlh) {
		nftnl_table_nlmsg_build_payload(nlh, t);
		kpx_nft_batch_commit(&b->batch, nlh);
	}
	nftnl_table_free(t);
}

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
	cnt[SET(S_GN, v6)] += sign > 0 ? ng : -ng;
	if (!sp->affinity_timeout) {
		cnt[SET(S_SLOTS, v6)] += sign > 0 ? d : -d;
	} else {
		cnt[SET(S_SID, v6)] += sign > 0 ? d : -d;
		cnt[SET(S_EPV, v6)] += sign > 0 ? d : -d;
	}
	cnt[SET(S_GINT, v6)] += sign > 0 ? sp->n_frontends : -sp->n_frontends;
	cnt[SET(S_FE, v6)] += sign > 0 ? sp->n_frontends : -sp->n_frontends;
}

/* chain: "daddr . l4proto . dport vmap @KIND", or for NodePorts "daddr
 * @npaddr l4proto . dport vmap @KIND". */
static void frontend_rule(struct kpx_backend *b, const char *chain, bool v6,
			  int kind, bool nodeport)
{
	struct nftnl_rule *r = rule_new(chain);

	x_nfproto(r, v6);
	x_daddr(r, v6, R(0));
	if (nodeport) {
		kpx_nft_e_lookup(r, setspecs[SET(S_NPADDR, v6)].name, R(0), -1,
				 0);
		x_proto_port(r, R(0));
	} else {
		x_proto_port(r, R(v6 ? 4 : 1));
	}
	kpx_nft_e_lookup(r, setspecs[SET(kind, v6)].name, R(0), RV, 0);
	rule_emit(b, r);
}

/* cnt: size counts of the whole plan. */
static void emit_static(struct kpx_backend *b, const size_t *cnt)
{
	uint32_t *hint = b->cap;
	struct nftnl_rule *r;

	for (int i = 0; i < NSETS; i++)
		hint[i] = cnt[i] >= 16384 ? (uint32_t)(cnt[i] * 2) : 0;

	/* add + delete + add: replaces any old kpx table in this same
	 * transaction, so traffic never sees a missing table. */
	table_msg(b, NFT_MSG_NEWTABLE, NLM_F_CREATE);
	table_msg(b, NFT_MSG_DELTABLE, 0);
	table_msg(b, NFT_MSG_NEWTABLE, NLM_F_CREATE);

	for (int i = 0; i < NSETS; i++) {
		const struct setspec *ss = &setspecs[i];
		struct nftnl_set *s = nftnl_set_alloc();
		struct nlmsghdr *nlh;
		nftnl_set_set_str(s, NFTNL_SET_TABLE, TABLE);
		nftnl_set_set_str(s, NFTNL_SET_NAME, ss->name);
		nftnl_set_set_u32(s, NFTNL_SET_FAMILY, NFPROTO_INET);
		nftnl_set_set_u32(s, NFTNL_SET_ID, (uint32_t)i + 1);
		nftnl_set_set_u32(s, NFTNL_SET_FLAGS, ss->flags);
		nftnl_set_set_u32(s, NFTNL_SET_KEY_TYPE, ss->key_type);
		nftnl_set_set_u32(s, NFTNL_SET_KEY_LEN, ss->key_len);
		if (ss->flags & NFT_SET_MAP) {
			nftnl_set_set_u32(s, NFTNL_SET_DATA_TYPE, ss->data_type);
			nftnl_set_set_u32(s, NFTNL_SET_DATA_LEN,
					  ss->data_len ? ss->data_len : 16);
		}
		if (ss->flags & NFT_SET_EVAL)
			nftnl_set_set_u32(s, NFTNL_SET_DESC_SIZE, 262144);
		else if (hint[i])
			nftnl_set_set_u32(s, NFTNL_SET_DESC_SIZE, hint[i]);
		nlh = kpx_nft_batch_msg(&b->batch, NFT_MSG_NEWSET,
					NLM_F_CREATE, 4096);
		if (nlh) {
			nftnl_set_nlmsg_build_payload(nlh, s);
			kpx_nft_batch_commit(&b->batch, nlh);
		}
		nftnl_set_free(s);
	}

	static const char *plain[] = { "services", "masquerading",
				       "endpoints-check", "firewall-check",
				       "reject-chain", "masq-check4",
				       "masq-check6" };
	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
		chain_emit(b, plain[i], NULL, 0, 0, NULL);
	chain_emit(b, "nat-pre", "nat", NF_INET_PRE_ROUTING, -100, NULL);
	chain_emit(b, "nat-out", "nat", NF_INET_LOCAL_OUT, -100, NULL);
	chain_emit(b, "nat-post", "nat", NF_INET_POST_ROUTING, 100, NULL);
	chain_emit(b, "filter-pre", "filter", NF_INET_PRE_ROUTING, -110, NULL);
	chain_emit(b, "filter-out", "filter", NF_INET_LOCAL_OUT, -110, NULL);
	chain_emit(b, "filter-in", "filter", NF_INET_LOCAL_IN, -110, NULL);
	chain_emit(b, "filter-fwd", "filter", NF_INET_FORWARD, -110, NULL);
	chain_emit(b, "filter-out-post", "filter", NF_INET_LOCAL_OUT, -90, NULL);

	static const struct {
		const char *from, *to;
		bool ct_new;
	} jumps[] = {
		{ "nat-pre", "services", false },
		{ "nat-out", "services", false },
		{ "nat-post", "masquerading", false },
		{ "filter-pre", "firewall-check", true },
		{ "filter-out", "firewall-check", true },
		{ "filter-in", "endpoints-check", true },
		{ "filter-fwd", "endpoints-check", true },
		{ "filter-out-post", "endpoints-check", true },
	};
	for (size_t i = 0; i < sizeof(jumps) / sizeof(jumps[0]); i++) {
		r = rule_new(jumps[i].from);
		if (jumps[i].ct_new)
			x_ct_new(r);
		kpx_nft_e_verdict(r, NFT_JUMP, jumps[i].to);
		rule_emit(b, r);
	}

	for (int v6 = 0; v6 <= 1; v6++) {
		/* services: frontends by address, then NodePorts; the
		 * checks use the same keys (endpoints-check post-DNAT). */
		frontend_rule(b, "services", v6, S_FE, false);
		frontend_rule(b, "services", v6, S_NP, true);
		frontend_rule(b, "endpoints-check", v6, S_NOEP, false);
		frontend_rule(b, "endpoints-check", v6, S_NOEPNP, true);
		frontend_rule(b, "firewall-check", v6, S_FW, false);
		/* hairpin: a local endpoint reached through its own service. */
		uint32_t dnat = IPS_DST_NAT, zero = 0;
		r = rule_new("masquerading");
		x_nfproto(r, v6);
		kpx_nft_e_ct(r, NFT_CT_STATUS, R(0));
		kpx_nft_e_bitwise(r, R(0), 4, &dnat, &zero);
		kpx_nft_e_cmp(r, R(0), NFT_CMP_NEQ, &zero, 4);
		kpx_nft_e_payload(r, NFT_PAYLOAD_NETWORK_HEADER, v6 ? 8 : 12,
				  v6 ? 32 : 8, R(0));
		kpx_nft_e_lookup(r, setspecs[SET(S_HP, v6)].name, R(0), -1, 0);
		kpx_nft_e_masq(r);
		rule_emit(b, r);
	}
	uint32_t mark = MASQ_MARK, zero = 0;
	r = rule_new("masquerading");
	kpx_nft_e_meta(r, NFT_META_MARK, R(0));
	kpx_nft_e_bitwise(r, R(0), 4, &mark, &zero);
	kpx_nft_e_cmp(r, R(0), NFT_CMP_NEQ, &zero, 4);
	kpx_nft_e_masq(r);
	rule_emit(b, r);

	uint8_t tcp = IPPROTO_TCP;
	r = rule_new("reject-chain");
	kpx_nft_e_meta(r, NFT_META_L4PROTO, R(0));
	kpx_nft_e_cmp(r, R(0), NFT_CMP_EQ, &tcp, 1);
	kpx_nft_e_reject(r, NFT_REJECT_TCP_RST, 0);
	rule_emit(b, r);
	r = rule_new("reject-chain");
	kpx_nft_e_reject(r, NFT_REJECT_ICMPX_UNREACH, NFT_REJECT_ICMPX_PORT_UNREACH);
	rule_emit(b, r);

	/* Off-cluster sources to a ClusterIP are masqueraded. */
	for (int v6 = 0; v6 <= 1; v6++) {
		const char *mc = v6 ? "masq-check6" : "masq-check4";
		uint8_t fam = v6 ? AF_INET6 : AF_INET;
		if (!have_cidr(b, fam))
			continue;
		for (size_t i = 0; i < b->input.n_cluster_cidrs; i++) {
			if (b->input.cluster_cidrs[i].addr.family != fam)
				continue;
			r = rule_new(mc);
			x_saddr_in(r, &b->input.cluster_cidrs[i]);
			kpx_nft_e_verdict(r, NFT_RETURN, NULL);
			rule_emit(b, r);
		}
		r = rule_new(mc);
		x_mark_masq(r);
		rule_emit(b, r);
	}
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

/* ------------------------------------------------------------- affinity */

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
static const uint32_t *group_idx(const struct kpx_plan_svcport *sp, int kind,
				 size_t *n)
{
	const struct needs nd = sp_needs(sp);
	bool has = kind == G_INT ? nd.svc : kind == G_EXT ? nd.ext :
		   kind == G_CLU ? nd.clu : false;

	*n = 0;
	if (!has)
		return NULL;
	*n = kind == G_INT ? sp->n_internal :
	     kind == G_EXT ? sp->n_external : sp->n_cluster;
	if (*n > SEL_M)
		*n = SEL_M;
	return kind == G_INT ? sp->internal :
	       kind == G_EXT ? sp->external : sp->cluster;
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
 * Runs only at a full sync: svcport plan index i gets number next_num + i.
 */
static size_t carry_affinity(struct kpx_backend *b, const struct kpx_plan *plan)
{
	struct kpx_nft_aff_snap snap;
	struct u64map gm = { 0 }, em = { 0 };
	size_t *gplan = NULL, kept = 0, total, gone_sp = 0, gone_ep = 0, neps = 0;
	uint32_t *ids = NULL;
	struct timespec t0;
	double read_ms = 0;
	int err;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	err = kpx_nft_read_affinity(&snap);
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
	if (!gplan || !ids || u64map_init(&gm, snap.n_groups)) {
		err = -ENOMEM;
		goto out;
	}
	for (size_t g = 0; g < snap.n_groups; g++) {
		const struct kpx_plan_svcport *sp =
			kpx_plan_find(plan, snap.groups[g].id);
		size_t n = 0;

		gplan[g] = sp ? (size_t)(sp - plan->svcports) : SIZE_MAX;
		if (!sp || !sp->affinity_timeout ||
		    !group_idx(sp, (int)(snap.groups[g].group % 4), &n) || !n)
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
		idx = group_idx(sp, (int)(snap.groups[g].group % 4), &n);
		for (size_t i = 0; i < n; i++) {
			size_t l = ep_data(d, &sp->endpoints[idx[i]]);
			ids[i] = ep_id(d, l, ids, i);
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
			uint32_t ng = (b->next_num + (uint32_t)gplan[g]) * 4 +
				      a->group % 4;
			uint8_t key[20];
			memcpy(key, a->saddr, l);
			memcpy(key + l, &ng, 4);
			elem_put(b, 1, SET(S_AFF, f), key, l + 4, NULL, 0, &a->id,
				 4, NULL, 0, t, left);
			if (b->err) {
				err = b->err;
				goto out;
			}
			kept++;
		}
	}
	acc_flush_all(b, 1);
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
	kpx_nft_aff_snap_free(&snap);
	return kept;
}

/* ---------------------------------------------------------------- sync */

static int nft_probe(const struct kpx_config *cfg)
{
	(void)cfg;
	struct mnl_socket *nl = mnl_socket_open(NETLINK_NETFILTER);
	if (!nl)
		return -EOPNOTSUPP;
	mnl_socket_close(nl);
	return 0;
}

static int nft_open(const struct kpx_config *cfg, struct kpx_backend **out)
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
	b->nl = mnl_socket_open(NETLINK_NETFILTER);
	if (!b->nl || mnl_socket_bind(b->nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		err = -errno;
		kpx_err("nft: netlink socket: %s", strerror(errno));
		goto fail;
	}
	b->seq = (uint32_t)time(NULL);
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

static void nft_close(struct kpx_backend *b)
{
	if (!b)
		return;
	state_clear(b);
	free(b->st);
	free(b->todo);
	free(b->gone);
	free(b->refs);
	free(b->ctdels);
	free(b->disp);
	for (int a = 0; a < 2; a++)
		for (int i = 0; i < NSETS; i++)
			free(b->acc[a][i].buf);
	mnl_socket_close(b->nl);
	free(b);
}

static bool input_changed(const struct kpx_plan_input *a,
			  const struct kpx_plan_input *b)
{
	if (a->masquerade_all != b->masquerade_all ||
	    a->n_cluster_cidrs != b->n_cluster_cidrs)
		return true;
	return memcmp(a->cluster_cidrs, b->cluster_cidrs,
		      a->n_cluster_cidrs * sizeof(a->cluster_cidrs[0])) != 0;
}

static void scratch_free(struct kpx_backend *b)
{
	for (int a = 0; a < 2; a++)
		for (int i = 0; i < NSETS; i++) {
			b->acc[a][i].n = 0;
		}
	kpx_nft_batch_free(&b->batch);
}

static int reserve(void **p, size_t *cap, size_t need, size_t size)
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

/*
 * The diff of the plan against what is programmed, by one merge walk
 * (both sorted by id): b->todo gets new and changed svcports, b->gone
 * removed ones, cnt the size counts the plan will have. Unchanged
 * svcports cost one id and hash compare; nothing else in a sync walks
 * all svcports.
 */
static int diff_plan(struct kpx_backend *b, const struct kpx_plan *plan,
		     size_t *cnt)
{
	size_t i = 0, j = 0, n = plan->n_svcports;

	b->n_todo = b->n_gone = 0;
	memcpy(cnt, b->cnt, sizeof(b->cnt));
	while (i < n || j < b->n_st) {
		const struct kpx_plan_svcport *sp = i < n ? &plan->svcports[i] : NULL;
		const struct spstate *s = j < b->n_st ? &b->st[j] : NULL;
		int c = !sp ? -1 : !s ? 1 : strcmp(s->sp->id, sp->id);
		if (c < 0) {
			if (reserve((void **)&b->gone, &b->cap_gone, b->n_gone + 1,
				    sizeof(*b->gone)))
				return -ENOMEM;
			b->gone[b->n_gone++] = j++;
			size_count(cnt, s->sp, -1);
			continue;
		}
		if (c > 0 || s->hash != sp->hash) {
			if (reserve((void **)&b->todo, &b->cap_todo, b->n_todo + 1,
				    sizeof(*b->todo)))
				return -ENOMEM;
			b->todo[b->n_todo++] = (struct todo){
				.i = i, .st = c > 0 ? SIZE_MAX : j };
			if (c == 0)
				size_count(cnt, s->sp, -1);
			size_count(cnt, sp, 1);
		}
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
	return kpx_nft_gen(b->nl, &g) ? -1 : (int64_t)g;
}

static void gen_after(struct kpx_backend *b, int64_t g0, int err)
{
	uint32_t g1 = 0;

	b->gen_ok = g0 >= 0 && !err && !kpx_nft_gen(b->nl, &g1) &&
		    g1 == (uint32_t)g0 + 1;
	b->gen = g1;
}

/*
 * After a committed sync: the state takes the plan's svcports. Changed
 * entries are replaced in place; when svcports came or went, the array
 * is rebuilt in plan order (new entries at their plan index, the others
 * keep their relative order).
 */
static int state_commit(struct kpx_backend *b, const struct kpx_plan *plan,
			const size_t *cnt, size_t *fresh)
{
	size_t n = plan->n_svcports;

	*fresh = 0;
	for (size_t t = 0; t < b->n_todo; t++) {
		b->todo[t].dup = sp_dup(&plan->svcports[b->todo[t].i]);
		if (!b->todo[t].dup) {
			while (t--)
				sp_free(b->todo[t].dup);
			return -ENOMEM;
		}
	}
	if (!b->n_gone && b->n_st == n) {
		for (size_t t = 0; t < b->n_todo; t++) {
			struct spstate *s = &b->st[b->todo[t].st];
			sp_free(s->sp);
			s->sp = b->todo[t].dup;
			s->hash = plan->svcports[b->todo[t].i].hash;
		}
		memcpy(b->cnt, cnt, sizeof(b->cnt));
		return 0;
	}
	struct spstate *st = malloc((n ? n : 1) * sizeof(*st));
	if (!st) {
		for (size_t t = 0; t < b->n_todo; t++)
			sp_free(b->todo[t].dup);
		return -ENOMEM;
	}
	size_t j = 0, t = 0, g = 0;
	for (size_t i = 0; i < n; i++) {
		const struct todo *td = t < b->n_todo && b->todo[t].i == i ?
						&b->todo[t++] : NULL;
		if (td && td->st == SIZE_MAX) {
			st[i] = (struct spstate){ td->dup, plan->svcports[i].hash,
						  b->next_num + (uint32_t)(*fresh)++ };
			continue;
		}
		while (g < b->n_gone && b->gone[g] == j) {
			sp_free(b->st[j++].sp);
			g++;
		}
		st[i] = b->st[j++];
		if (td) {
			sp_free(st[i].sp);
			st[i].sp = td->dup;
			st[i].hash = plan->svcports[i].hash;
		}
	}
	for (; g < b->n_gone; g++)
		sp_free(b->st[b->gone[g]].sp);
	free(b->st);
	b->st = st;
	b->n_st = n;
	b->next_num += (uint32_t)*fresh;
	memcpy(b->cnt, cnt, sizeof(b->cnt));
	return 0;
}

static int nft_sync(struct kpx_backend *b, const struct kpx_plan *plan)
{
	struct timespec t0, t1;
	bool full = b->full_next || input_changed(&b->input, &plan->input);
	size_t cnt[NSETS], fresh = 0;
	int err;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (full)
		state_clear(b);
	err = diff_plan(b, plan, cnt);
	/* A plan that outgrew a sized set gets a rebuild with larger sizes
	 * rather than a transaction the kernel refuses. */
	for (int i = 0; i < NSETS && !full && !err; i++)
		if (b->cap[i] && cnt[i] > b->cap[i]) {
			full = true;
			state_clear(b);
			err = diff_plan(b, plan, cnt);
		}
	b->err = 0;
	b->n_ctdels = 0;
	if (!err)
		err = kpx_nft_batch_init(&b->batch, b->seq);
	if (err) {
		/* the state may be cleared already: rebuild next time */
		b->full_next = b->full_next || full;
		return err;
	}
	if (full) {
		b->input = plan->input;
		emit_static(b, cnt);
	}

	/* Pass 1: element deletions of changed and removed svcports. The
	 * plan's hash covers every field of a svcport (plan.h). */
	for (size_t t = 0; t < b->n_todo; t++) {
		const struct todo *td = &b->todo[t];
		const struct kpx_plan_svcport *sp = &plan->svcports[td->i];
		if (td->st == SIZE_MAX)
			continue;
		const struct spstate *s = &b->st[td->st];
		emit_elems_fe(b, 0, s->sp, s->num, !same_frontends(s->sp, sp));
		ctdel_add(b, s->sp, sp);
	}
	for (size_t g = 0; g < b->n_gone; g++) {
		const struct spstate *s = &b->st[b->gone[g]];
		emit_elems(b, 0, s->sp, s->num);
		ctdel_add(b, s->sp, NULL);
	}
	acc_flush_all(b, 0);

	/* Pass 2: chains and rules of new and changed svcports. */
	for (size_t t = 0; t < b->n_todo; t++) {
		const struct todo *td = &b->todo[t];
		const struct kpx_plan_svcport *sp = &plan->svcports[td->i];
		if (td->st == SIZE_MAX) {
			emit_chains(b, sp, b->next_num + (uint32_t)fresh++, NULL);
		} else if (!same_rules(b->st[td->st].sp, sp)) {
			struct needs old = sp_needs(b->st[td->st].sp);
			emit_chains(b, sp, b->st[td->st].num, &old);
		}
	}
	/* Pass 3: element additions (their goto targets exist now). */
	fresh = 0;
	for (size_t t = 0; t < b->n_todo; t++) {
		const struct todo *td = &b->todo[t];
		const struct kpx_plan_svcport *sp = &plan->svcports[td->i];
		if (td->st == SIZE_MAX)
			emit_elems(b, 1, sp, b->next_num + (uint32_t)fresh++);
		else
			emit_elems_fe(b, 1, sp, b->st[td->st].num,
				      !same_frontends(b->st[td->st].sp, sp));
	}
	acc_flush_all(b, 1);
	/* Selection tables: the neighbours of counts in use at a full sync
	 * (tick adds the others); at any sync, the unwanted ones beyond
	 * SEL_SPARE go. */
	for (int f = 0; f < 2; f++) {
		bool used = sel_used(b, f);
		uint32_t spare = 0;
		for (uint32_t n = 1; n <= SEL_M; n++) {
			bool near = sel_near(b, f, n);
			if (full && near && !b->selpresent[f][n])
				sel_emit(b, 1, f, n);
			spare += b->selpresent[f][n] && !near &&
				 !(used && n <= SEL_ALWAYS);
		}
		for (uint32_t n = 1; n <= SEL_M && spare > SEL_SPARE; n++) {
			if (!b->selpresent[f][n] || sel_near(b, f, n) ||
			    (used && n <= SEL_ALWAYS))
				continue;
			spare--;
			sel_emit(b, 0, f, n);
		}
	}
	acc_flush_all(b, 1);
	acc_flush_all(b, 0);
	/* Pass 4: chains nobody needs any more. */
	for (size_t t = 0; t < b->n_todo; t++) {
		const struct todo *td = &b->todo[t];
		if (td->st == SIZE_MAX)
			continue;
		struct needs old = sp_needs(b->st[td->st].sp),
			     nw = sp_needs(&plan->svcports[td->i]);
		delete_chains(b, b->st[td->st].num, &old, &nw);
	}
	for (size_t g = 0; g < b->n_gone; g++) {
		const struct spstate *s = &b->st[b->gone[g]];
		struct needs old = sp_needs(s->sp);
		delete_chains(b, s->num, &old, NULL);
	}
	/* Should the kernel refuse the carried entries, the retry goes
	 * without them: a lost affinity is better than no services. */
	size_t carried = 0;
	if (full && !b->no_carry)
		carried = carry_affinity(b, plan);
	b->no_carry = false;

	err = b->err;
	size_t bytes = b->batch.len;
	unsigned msgs = b->batch.n_msgs;
	bool sent = !err && msgs;
	int64_t g0 = sent ? gen_before(b, full) : 0;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	double build_ms = ms_since(&t0);
	if (!err)
		err = kpx_nft_batch_send(&b->batch, b->nl);
	double send_ms = ms_since(&ts);
	if (sent)
		gen_after(b, g0, err);
	b->seq = b->batch.seq;
	scratch_free(b);
	if (err) {
		kpx_err("nft: sync transaction (%u messages, %zu bytes) failed: %s%s",
			msgs, bytes, strerror(-err), carried ?
			"; the next rebuild goes without the affinity entries" : "");
		b->no_carry = carried > 0;
		/* The kernel kept the old ruleset; our bookkeeping may not
		 * match it any more, so rebuild everything next time. */
		b->full_next = true;
		return err;
	}
	b->full_next = false;

	/* Commit bookkeeping. */
	if ((err = state_commit(b, plan, cnt, &fresh))) {
		b->full_next = true;
		return err;
	}
	ct_flush(b);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	kpx_dbg(full ? 0 : 1,
		"nft: %s sync: %zu svcports (%zu new, %zu removed), %u messages, "
		"%zu bytes, %.1f ms (build %.1f, commit %.1f)",
		full ? "full" : "partial", plan->n_svcports, fresh, b->n_gone, msgs,
		bytes, (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
			       (double)(t1.tv_nsec - t0.tv_nsec) / 1e6,
		build_ms, send_ms);
	return 0;
}

/* Frontend maps compared at resync: the ones every packet starts from. */
static const int drift_sets[] = { SET(S_FE, 0), SET(S_FE, 1), SET(S_NP, 0),
				  SET(S_NP, 1), SET(S_NOEP, 0), SET(S_NOEP, 1),
				  SET(S_GINT, 0), SET(S_GINT, 1) };
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
	size_t have = 0, want = 15 + b->n_disp; /* static + dispatch chains */
	uint32_t gen = 0;
	int err;

	/* Nobody committed anything since kpx did: nothing to compare. */
	if (!b->full_next && !kpx_nft_gen(b->nl, &gen) && b->gen_ok &&
	    gen == b->gen)
		return nft_sync(b, plan);
	if (!b->full_next)
		kpx_dbg(1, "nft: resync: ruleset generation %u (kpx committed %u%s): "
			"comparing table inet kpx with what was programmed",
			gen, b->gen, b->gen_ok ? "" : ", not known");
	err = kpx_nft_count_chains(&have);

	for (size_t k = 0; k < b->n_st; k++) {
		struct needs nd = sp_needs(b->st[k].sp);
		want += nd.svc + nd.ext + nd.clu + nd.fw;
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
			if (!b->selpresent[f][n] && sel_near(b, f, n))
				pick = n;
		for (uint32_t n = 1; n <= SEL_ALWAYS && !pick; n++)
			if (!b->selpresent[f][n] && !sel_used(b, f))
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
	sel_emit(b, 1, f, pick);
	acc_flush_all(b, 1);
	err = b->err;
	if (!err) {
		int64_t g0 = gen_before(b, false);
		err = kpx_nft_batch_send(&b->batch, b->nl);
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
		table_msg(b, NFT_MSG_NEWTABLE, NLM_F_CREATE);
		table_msg(b, NFT_MSG_DELTABLE, 0);
		err = kpx_nft_batch_send(&b->batch, b->nl);
		kpx_nft_batch_free(&b->batch);
	}
	if (err)
		kpx_err("nft: cleanup: deleting table inet kpx: %s", strerror(-err));
	nft_close(b);
	return err;
}

/* Implemented in nft/nft_dump.c. */
int kpx_nft_dump_datapath(const struct kpx_config *cfg, struct json_object **out);
int kpx_nft_dump_frontends(const struct kpx_config *cfg, struct json_object **out);

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
};
