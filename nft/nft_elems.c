// SPDX-License-Identifier: Apache-2.0
/*
 * Element bookkeeping of the nft backend (see nft/nft_internal.h): the
 * accumulation of elements into NEWSETELEM/DELSETELEM messages, owned and
 * reference-counted elements, the elements of one svcport (frontends,
 * group maps, slots, affinity ids, empty verdicts, source-range entries,
 * hairpin) and the @sel selection tables.
 * Owns: the element accumulators and reference table of struct kpx_backend.
 */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>

#include "common/log.h"
#include "nft/nft_internal.h"

#define setspecs kpx_nft_setspecs

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
		mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_TABLE, KPX_NFT_TABLE);
		nest = mnl_attr_nest_start(nlh, NFTA_SET_ELEM_LIST_ELEMENTS);
		memcpy(mnl_nlmsg_get_payload_tail(nlh), a->buf + MNL_NLMSG_HDRLEN, plen);
		nlh->nlmsg_len += (uint32_t)plen;
		mnl_attr_nest_end(nlh, nest);
		kpx_nft_batch_commit(&b->batch, nlh);
	}
	a->n = 0;
}

void kpx_nft_acc_flush_all(struct kpx_backend *b, int add)
{
	for (int i = 0; i < NSETS; i++)
		acc_flush(b, add, i);
}

/*
 * Queues one element. Additions carry the data: a goto `chain`, else in a
 * verdict map `verdict`, else `data`; then userdata, and a timeout and
 * the time left (ms, 0: none) in timeout sets. Deletions only the key.
 */
void kpx_nft_elem_put(struct kpx_backend *b, int add, int set,
		      const void *key, size_t klen, const char *chain, int verdict,
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
void kpx_nft_elem(struct kpx_backend *b, int add, int set, const void *key,
		  size_t klen, const char *chain, int verdict, const void *data,
		 size_t dlen, const void *ud, size_t udlen)
{
	kpx_nft_elem_put(b, add, set, key, klen, chain, verdict, data, dlen, ud,
			 udlen, 0, 0);
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
	uint32_t h = kpx_nft_fnv(key, klen, 2166136261u ^ (uint32_t)set) & (HSIZE - 1);
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
		kpx_nft_elem(b, 1, set, key, klen, chain, verdict, data, dlen, ud, udlen);
		return;
	}
	if (!r || (!shared && r->owner != owner))
		return;
	if (--r->refs)
		return;
	*pp = r->next;
	free(r);
	b->nref[set]--;
	kpx_nft_elem(b, 0, set, key, klen, NULL, 0, NULL, 0, NULL, 0);
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

size_t kpx_nft_ep_data(uint8_t *d, const struct kpx_plan_endpoint *ep)
{
	size_t l = alen(ep->addr.family);
	uint16_t p = htons(ep->port);
	memset(d, 0, l + 4);
	memcpy(d, ep->addr.bytes, l);
	memcpy(d + l, &p, 2);
	return l + 4;
}

static void empty_verdict(enum kpx_empty_action a, const char **chain,
			  int *verdict)
{
	if (a == KPX_EMPTY_REJECT) {
		*chain = KPX_NFT_C_REJECT;
		*verdict = NFT_GOTO;
	} else {
		*chain = NULL;
		*verdict = NF_DROP;
	}
}

size_t kpx_nft_group_n(const struct kpx_plan_svcport *sp, size_t n)
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
uint32_t kpx_nft_ep_id(const uint8_t *data, size_t dl, const uint32_t *ids,
		       size_t i)
{
	uint32_t id = kpx_nft_fnv(data, dl, 2166136261u);
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
/* SEL_ALWAYS; unwanted tables kept anyway, SEL_SPARE (cleanup deletes
 * the lowest counts first): a service scaled down and up again does not
 * rewrite its tables. */

void kpx_nft_sel_emit(struct kpx_backend *b, int add, int f, uint32_t n)
{
	for (uint32_t r = 0; r < SEL_M; r++) {
		uint32_t k2[2] = { n, r };
		uint32_t slot = (uint32_t)(((uint64_t)r * n) / SEL_M);
		kpx_nft_elem(b, add, SET(SEL, f), k2, 8, NULL, 0, add ? &slot : NULL,
		     add ? 4 : 0, NULL, 0);
	}
	b->selpresent[f][n] = add;
}

/* Count n in use or next to one in use in family f. */
bool kpx_nft_sel_near(const struct kpx_backend *b, int f, uint32_t n)
{
	return b->selref[f][n] || b->selref[f][n - 1] ||
	       (n < SEL_M && b->selref[f][n + 1]);
}

bool kpx_nft_sel_used(const struct kpx_backend *b, int f)
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
	n = kpx_nft_group_n(sp, n);
	if (n) {
		uint32_t *ref = &b->selref[v6][n];
		if (!add) {
			if (*ref)
				(*ref)--;
		} else if ((*ref)++ == 0 && !b->selpresent[v6][n]) {
			kpx_nft_sel_emit(b, 1, v6, (uint32_t)n);
		}
		uint32_t n32 = (uint32_t)n;
		kpx_nft_elem(b, add, SET(GN, v6), &g, 4, NULL, 0, &n32, 4, NULL, 0);
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
		size_t dl = kpx_nft_ep_data(data, ep);
		if (!ids) {
			kpx_nft_elem(b, add, SET(SLOTS, v6), k2, 8, NULL, 0, data, dl,
			     &ep->flags, 1);
			continue;
		}
		/* affinity: slot -> id -> address, no @slots element */
		uint32_t id = kpx_nft_ep_id(data, dl, ids, i);
		ids[i] = id;
		kpx_nft_elem(b, add, SET(SID, v6), k2, 8, NULL, 0, &id, 4, &ep->flags, 1);
		k2[1] = id;
		kpx_nft_elem(b, add, SET(EPV, v6), k2, 8, NULL, 0, data, dl, NULL, 0);
	}
	free(ids);
}

/* frontend -> group, for every set a row of the frontend uses that has
 * endpoints. The count lives in @gn (group -> n), so that each lookup's
 * key is one whole expression that the nft tool can print (a register
 * holding part of a concatenated map value is not). */
static void emit_gmaps(struct kpx_backend *b, int add,
		       const struct kpx_plan_svcport *sp,
		       const struct kpx_nft_shape *s, uint32_t num)
{
	static const int gfe[3] = { SET(GINT, 0), SET(GEXT, 0), SET(GCLU, 0) };
	static const int gnp[3] = { -1, SET(GNPEXT, 0), SET(GNPCLU, 0) };
	bool v6 = sp->family == AF_INET6;
	uint8_t key[40];
	size_t kl;

	for (size_t i = 0; i < sp->n_frontends && i < s->n_fe; i++) {
		const struct kpx_plan_frontend *fe = &sp->frontends[i];
		bool np = fe->kind == KPX_FE_NODE_PORT;

		if (!s->fe[i].sets)
			continue;
		kl = np ? np_key(key, sp->proto, fe->port) :
			  fe_key(key, &fe->addr, sp->proto, fe->port);
		for (int set = 0; set < 3; set++) {
			uint32_t g[2];
			size_t n;

			if (!(s->fe[i].sets & (1u << set)))
				continue;
			kpx_plan_set_idx(sp, set, &n);
			g[0] = KPX_NFT_GROUP(num, set);
			g[1] = (uint32_t)kpx_nft_group_n(sp, n);
			if (!g[1] || (np && gnp[set] < 0))
				continue;
			elem_refd(b, add, (np ? gnp[set] : gfe[set]) + v6, false,
				  num, key, kl, NULL, 0, g, 4, NULL, 0, sp->id);
		}
	}
}

static void fe_ud(struct kpx_nft_fe_ud *u, const struct kpx_plan_svcport *sp,
		  const struct kpx_plan_frontend *fe)
{
	memset(u, 0, sizeof(*u));
	u->kind = (uint8_t)fe->kind;
	for (int o = 0; o < KPX_ORIGINS; o++)
		u->set[o] = fe->rows[o].set;
	u->affinity = sp->affinity_timeout;
}

/* fe=false: only the endpoint elements (slots, epv, gn, hairpin), for a
 * svcport whose frontends and rows did not change: verdict elements make
 * the kernel re-validate the whole table, data elements do not. */
void kpx_nft_emit_elems(struct kpx_backend *b, int add,
			const struct kpx_plan_svcport *sp,
			const struct kpx_nft_shape *s, uint32_t num, bool fe)
{
	bool v6 = sp->family == AF_INET6;
	char chain[3][KPX_NFT_CHAIN_NAME_MAX], fw[KPX_NFT_CHAIN_NAME_MAX];
	char what[KPX_SVCPORT_ID_MAX + 64];
	uint8_t key[40];
	size_t kl;

	for (int set = 0; set < 3; set++)
		kpx_nft_chain_name(chain[set], kpx_nft_set_chain_prefix[set], num);
	kpx_nft_chain_name(fw, KPX_NFT_FW_PREFIX, num);
	for (size_t i = 0; fe && i < sp->n_frontends && i < s->n_fe; i++) {
		const struct kpx_plan_frontend *f = &sp->frontends[i];
		const struct kpx_nft_fe_shape *fs = &s->fe[i];
		bool np = f->kind == KPX_FE_NODE_PORT;
		char abuf[KPX_ADDR_STRLEN];
		struct kpx_nft_fe_ud ud;
		const char *ch;
		int vd;

		if (!fs->sets)
			continue;
		snprintf(what, sizeof(what), "%s %s %s:%u", sp->id,
			 kpx_fe_kind_name(f->kind), kpx_addr_str(&f->addr, abuf),
			 f->port);
		fe_ud(&ud, sp, f);
		if (np) {
			elem_ref(b, add, SET(NPADDR, v6), true, 0, f->addr.bytes,
				 alen(sp->family), NULL, 0, NULL, 0, what);
			kl = np_key(key, sp->proto, f->port);
		} else {
			kl = fe_key(key, &f->addr, sp->proto, f->port);
		}
		elem_ref(b, add, np ? SET(NP, v6) : SET(FE, v6), false, num, key,
			 kl, chain[fs->entry], 0, &ud, sizeof(ud), what);
		if (fs->noep) {
			empty_verdict(fs->empty, &ch, &vd);
			elem_ref(b, add, np ? SET(NOEPNP, v6) : SET(NOEP, v6),
				 false, num, key, kl, ch, vd, NULL, 0, what);
		}
		/* NodePorts: no fw map keyed by port (the plan gives
		 * source ranges to LoadBalancer frontends only). */
		if (fs->fw && !np)
			elem_ref(b, add, SET(FW, v6), false, num, key, kl, fw, 0,
				 NULL, 0, what);
	}
	if (fe) /* the group numbers do not change with the endpoints */
		emit_gmaps(b, add, sp, s, num);
	for (int set = 0; set < 3; set++) {
		const uint32_t *idx;
		size_t n;

		if (!s->chain[set])
			continue;
		idx = kpx_plan_set_idx(sp, set, &n);
		emit_group_elems(b, add, sp, KPX_NFT_GROUP(num, set), idx, n);
	}
	for (size_t i = 0; i < sp->n_endpoints; i++) {
		const struct kpx_plan_endpoint *ep = &sp->endpoints[i];
		size_t l = alen(ep->addr.family);
		if (!(ep->flags & KPX_EP_LOCAL) || ep->addr.family != sp->family)
			continue;
		memcpy(key, ep->addr.bytes, l);
		memcpy(key + l, ep->addr.bytes, l);
		elem_ref(b, add, SET(HP, v6), true, 0, key, 2 * l, NULL, 0,
			 NULL, 0, sp->id);
	}
}

void kpx_nft_refs_clear(struct kpx_backend *b)
{
	for (uint32_t i = 0; i < HSIZE; i++) {
		struct ref *r = b->refs[i], *rn;
		for (; r; r = rn) {
			rn = r->next;
			free(r);
		}
		b->refs[i] = NULL;
	}
	memset(b->nref, 0, sizeof(b->nref));
}
