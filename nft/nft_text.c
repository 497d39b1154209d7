// SPDX-License-Identifier: Apache-2.0
/*
 * A batch as nft-like text (nft/nft_seam.h: kpx_nft_render), decoded from
 * the netlink messages themselves, so that a test sees exactly what the
 * kernel would get. Keys and data are printed by the types the schema
 * gives the set (nft_schema.c), rules with libnftnl's expression text.
 * Owns: the returned text. Must not: talk to the kernel.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>

#include "nft/nft_schema.h"
#include "nft/nft_seam.h"

struct out {
	char *s;
	size_t len, cap;
	bool oom;
};

static void put(struct out *o, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void put(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (int tries = 0; tries < 2 && !o->oom; tries++) {
		va_start(ap, fmt);
		n = vsnprintf(o->s + o->len, o->cap - o->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			o->oom = true;
			return;
		}
		if (o->len + (size_t)n < o->cap) {
			o->len += (size_t)n;
			return;
		}
		size_t cap = (o->cap + (size_t)n + 1) * 2;
		char *p = realloc(o->s, cap);
		if (!p) {
			o->oom = true;
			return;
		}
		o->s = p;
		o->cap = cap;
	}
}

/* nft datatype ids of nft_schema.c */
enum { T_IP4 = 7, T_IP6 = 8, T_PROTO = 12, T_SVC = 13, T_MARK = 19 };

/* One value of a concatenation of types (6 bits each, first the
 * highest), every field padded to 4 bytes as in registers. */
static void put_typed(struct out *o, uint32_t type, const uint8_t *v,
		      uint32_t len)
{
	uint32_t t[8];
	int n = 0;
	uint32_t off = 0;

	for (; type && n < 8; type >>= 6)
		t[n++] = type & 63;
	for (int i = n - 1; i >= 0; i--) {
		char a[INET6_ADDRSTRLEN];
		uint32_t w = t[i] == T_IP6 ? 16 : 4;
		uint16_t port;
		uint32_t m;

		if (off + (t[i] == T_IP6 ? 16 : t[i] == T_SVC ? 2 :
			   t[i] == T_PROTO ? 1 : 4) > len)
			break;
		if (i != n - 1)
			put(o, " . ");
		switch (t[i]) {
		case T_IP4:
		case T_IP6:
			inet_ntop(t[i] == T_IP4 ? AF_INET : AF_INET6, v + off, a,
				  sizeof(a));
			put(o, "%s", a);
			break;
		case T_PROTO:
			put(o, "%s", v[off] == IPPROTO_TCP ? "tcp" :
				     v[off] == IPPROTO_UDP ? "udp" :
				     v[off] == IPPROTO_SCTP ? "sctp" : "?");
			break;
		case T_SVC:
			memcpy(&port, v + off, 2);
			put(o, "%u", ntohs(port));
			break;
		default:
			memcpy(&m, v + off, 4);
			put(o, "%u", m);
		}
		off += w;
	}
}

static const char *verdict_name(int v)
{
	switch (v) {
	case NF_DROP: return "drop";
	case NF_ACCEPT: return "accept";
	case NFT_GOTO: return "goto";
	case NFT_JUMP: return "jump";
	case NFT_RETURN: return "return";
	case NFT_CONTINUE: return "continue";
	}
	return "?";
}

static void put_ud(struct out *o, const struct kpx_nft_setspec *ss,
		   const uint8_t *ud, uint32_t len)
{
	struct kpx_nft_fe_ud u;

	if (len == sizeof(u) && ss->flags & NFT_SET_MAP &&
	    ss->data_type == NFT_DATA_VERDICT) {
		memcpy(&u, ud, sizeof(u));
		put(o, " ud %s sets %s,%s,%s affinity %u",
		    kpx_fe_kind_name(u.kind), kpx_plan_set_name(u.set[0]),
		    kpx_plan_set_name(u.set[1]), kpx_plan_set_name(u.set[2]),
		    u.affinity);
		return;
	}
	put(o, " ud");
	for (uint32_t i = 0; i < len; i++)
		put(o, " %02x", ud[i]);
}

struct selrun {
	int add, set;
	uint32_t n, first, last, count;
};

static void sel_flush(struct out *o, struct selrun *r)
{
	if (!r->count)
		return;
	put(o, "%s element %s { %u . %u-%u } (%u elements)\n",
	    r->add ? "add" : "delete", kpx_nft_setspecs[r->set].name, r->n,
	    r->first, r->last, r->count);
	r->count = 0;
}

static void render_elems(struct out *o, const struct nlmsghdr *nlh, int add,
			 struct selrun *run)
{
	struct nftnl_set *s = nftnl_set_alloc();
	struct nftnl_set_elems_iter *it = NULL;
	struct nftnl_set_elem *e;
	const struct kpx_nft_setspec *ss;
	struct nlmsghdr *copy = NULL;
	const char *name;
	int idx;

	/* The backend numbers the list entries 1..n (the kernel reads any
	 * type); libnftnl's parser wants NFTA_LIST_ELEM on each. */
	copy = malloc(nlh->nlmsg_len);
	if (copy) {
		struct nlattr *at, *el;

		memcpy(copy, nlh, nlh->nlmsg_len);
		mnl_attr_for_each(at, copy, sizeof(struct nfgenmsg)) {
			if (mnl_attr_get_type(at) != NFTA_SET_ELEM_LIST_ELEMENTS)
				continue;
			mnl_attr_for_each_nested(el, at)
				el->nla_type = (uint16_t)((el->nla_type & ~NLA_TYPE_MASK) |
							  NFTA_LIST_ELEM);
		}
	}
	if (!s || !copy || nftnl_set_elems_nlmsg_parse(copy, s) < 0) {
		put(o, "? unparsable element message\n");
		goto out;
	}
	name = nftnl_set_get_str(s, NFTNL_SET_NAME);
	idx = name ? kpx_nft_set_by_name(name) : -1;
	if (idx < 0) {
		put(o, "? elements of unknown set %s\n", name ? name : "");
		goto out;
	}
	ss = &kpx_nft_setspecs[idx];
	it = nftnl_set_elems_iter_create(s);
	while (it && (e = nftnl_set_elems_iter_next(it))) {
		uint32_t kl = 0, dl = 0, ul = 0;
		const uint8_t *k = nftnl_set_elem_get(e, NFTNL_SET_ELEM_KEY, &kl);
		const uint8_t *d = nftnl_set_elem_get(e, NFTNL_SET_ELEM_DATA, &dl);
		const uint8_t *u = nftnl_set_elem_get(e, NFTNL_SET_ELEM_USERDATA, &ul);

		if (idx / 2 == KPX_NFT_S_SEL && k && kl == 8) {
			uint32_t kv[2];

			memcpy(kv, k, 8);
			if (run->count && (run->add != add || run->set != idx ||
					   run->n != kv[0] || run->last + 1 != kv[1]))
				sel_flush(o, run);
			if (!run->count)
				*run = (struct selrun){ add, idx, kv[0], kv[1],
							kv[1], 0 };
			run->last = kv[1];
			run->count++;
			continue;
		}
		sel_flush(o, run);
		put(o, "%s element %s { ", add ? "add" : "delete", ss->name);
		if (k)
			put_typed(o, ss->key_type, k, kl);
		if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_VERDICT)) {
			int v = (int)nftnl_set_elem_get_u32(e, NFTNL_SET_ELEM_VERDICT);

			put(o, " : %s", verdict_name(v));
			if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_CHAIN))
				put(o, " %s", nftnl_set_elem_get_str(e, NFTNL_SET_ELEM_CHAIN));
		} else if (d && dl) {
			put(o, " : ");
			put_typed(o, ss->data_type, d, dl);
		}
		put(o, " }");
		if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_TIMEOUT))
			put(o, " timeout %llums", (unsigned long long)
			    nftnl_set_elem_get_u64(e, NFTNL_SET_ELEM_TIMEOUT));
		if (u && ul)
			put_ud(o, ss, u, ul);
		put(o, "\n");
	}
out:
	if (it)
		nftnl_set_elems_iter_destroy(it);
	nftnl_set_free(s);
	free(copy);
}

static const char *hook_name(uint32_t h)
{
	static const char *const n[] = { "prerouting", "input", "forward",
					 "output", "postrouting" };
	return h < 5 ? n[h] : "?";
}

static void render_chain(struct out *o, const struct nlmsghdr *nlh, int type)
{
	struct nftnl_chain *c = nftnl_chain_alloc();
	uint32_t len = 0;
	const char *ud;

	if (!c || nftnl_chain_nlmsg_parse(nlh, c) < 0) {
		put(o, "? unparsable chain message\n");
		goto out;
	}
	put(o, "%s chain %s", type == NFT_MSG_DELCHAIN ? "delete" : "add",
	    nftnl_chain_get_str(c, NFTNL_CHAIN_NAME));
	if (nftnl_chain_is_set(c, NFTNL_CHAIN_TYPE))
		put(o, " { type %s hook %s priority %d }",
		    nftnl_chain_get_str(c, NFTNL_CHAIN_TYPE),
		    hook_name(nftnl_chain_get_u32(c, NFTNL_CHAIN_HOOKNUM)),
		    nftnl_chain_get_s32(c, NFTNL_CHAIN_PRIO));
	ud = nftnl_chain_get_data(c, NFTNL_CHAIN_USERDATA, &len);
	if (ud && len) {
		put(o, " ud \"");
		for (uint32_t i = 0; i < len && ud[i]; i++)
			put(o, "%c", ud[i] == '\t' ? '|' : ud[i]);
		put(o, "\"");
	}
	put(o, "\n");
out:
	nftnl_chain_free(c);
}

static int expr_cb(struct nftnl_expr *e, void *data)
{
	struct out *o = data;
	char buf[512];

	nftnl_expr_snprintf(buf, sizeof(buf), e, NFTNL_OUTPUT_DEFAULT, 0);
	put(o, " [ %s %s]", nftnl_expr_get_str(e, NFTNL_EXPR_NAME), buf);
	return 0;
}

static void render_rule(struct out *o, const struct nlmsghdr *nlh, int type)
{
	struct nftnl_rule *r = nftnl_rule_alloc();

	if (!r || nftnl_rule_nlmsg_parse(nlh, r) < 0) {
		put(o, "? unparsable rule message\n");
		goto out;
	}
	if (type == NFT_MSG_DELRULE) {
		put(o, "flush chain %s\n", nftnl_rule_get_str(r, NFTNL_RULE_CHAIN));
		goto out;
	}
	put(o, "add rule %s", nftnl_rule_get_str(r, NFTNL_RULE_CHAIN));
	nftnl_expr_foreach(r, expr_cb, o);
	put(o, "\n");
out:
	nftnl_rule_free(r);
}

static void render_set(struct out *o, const struct nlmsghdr *nlh)
{
	struct nftnl_set *s = nftnl_set_alloc();

	if (!s || nftnl_set_nlmsg_parse(nlh, s) < 0) {
		put(o, "? unparsable set message\n");
		goto out;
	}
	put(o, "add set %s", nftnl_set_get_str(s, NFTNL_SET_NAME));
	if (nftnl_set_is_set(s, NFTNL_SET_DESC_SIZE))
		put(o, " size %u", nftnl_set_get_u32(s, NFTNL_SET_DESC_SIZE));
	put(o, "\n");
out:
	nftnl_set_free(s);
}

char *kpx_nft_render(const struct kpx_nft_batch *b)
{
	struct out o = { 0 };
	struct selrun run = { 0 };
	size_t off = 0;

	put(&o, "%s", "");
	while (off + sizeof(struct nlmsghdr) <= b->len) {
		const struct nlmsghdr *h = (const void *)(b->buf + off);
		int type = h->nlmsg_type & 0xff;

		if (h->nlmsg_len < sizeof(*h))
			break;
		off += NLMSG_ALIGN(h->nlmsg_len);
		if ((h->nlmsg_type >> 8) != NFNL_SUBSYS_NFTABLES)
			continue; /* batch begin / end */
		if (type != NFT_MSG_NEWSETELEM && type != NFT_MSG_DELSETELEM)
			sel_flush(&o, &run);
		switch (type) {
		case NFT_MSG_NEWTABLE:
			put(&o, "add table inet %s\n", KPX_NFT_TABLE);
			break;
		case NFT_MSG_DELTABLE:
			put(&o, "delete table inet %s\n", KPX_NFT_TABLE);
			break;
		case NFT_MSG_NEWCHAIN:
		case NFT_MSG_DELCHAIN:
			render_chain(&o, h, type);
			break;
		case NFT_MSG_NEWRULE:
		case NFT_MSG_DELRULE:
			render_rule(&o, h, type);
			break;
		case NFT_MSG_NEWSET:
			render_set(&o, h);
			break;
		case NFT_MSG_NEWSETELEM:
		case NFT_MSG_DELSETELEM:
			render_elems(&o, h, type == NFT_MSG_NEWSETELEM, &run);
			break;
		default:
			put(&o, "? message type %d\n", type);
		}
	}
	sel_flush(&o, &run);
	if (o.oom) {
		free(o.s);
		return NULL;
	}
	return o.s;
}
