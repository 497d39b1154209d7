// SPDX-License-Identifier: Apache-2.0
/*
 * Reads table inet kpx back from the kernel for `kpx status` and
 * `kpx services`, without the agent: chains (their userdata names the
 * svcport), the frontend maps and the endpoint slot maps.
 * Owns: nothing. Must not: modify the kernel.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>
#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/set.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>

#include "agent/backend.h"
#include "common/log.h"
#include "k8s/objects.h"
#include "nft/nft_dump.h"
#include "nft/nft_schema.h"

#define TABLE KPX_NFT_TABLE
#define SETNAME(kind, v6) kpx_nft_setspecs[KPX_NFT_SET(KPX_NFT_S_##kind, v6)].name

struct chaininfo {
	char name[64];
	char ud[512];
};

struct elem {
	uint8_t key[40];
	uint32_t klen;
	uint8_t data[40];
	uint32_t dlen;
	int verdict;
	char chain[64];
	uint8_t ud[8];
	uint32_t udlen;
};

struct elist {
	struct elem *v;
	size_t n, cap;
};

struct chains {
	struct chaininfo *v;
	size_t n, cap;
	int err;
};

static int dump(struct mnl_socket *nl, struct nlmsghdr *req, mnl_cb_t cb,
		void *data)
{
	char buf[MNL_SOCKET_BUFFER_SIZE * 8];
	uint32_t seq = req->nlmsg_seq, port = mnl_socket_get_portid(nl);
	int ret;

	if (mnl_socket_sendto(nl, req, req->nlmsg_len) < 0)
		return -errno;
	for (int i = 0; i < 1000000; i++) {
		ret = (int)mnl_socket_recvfrom(nl, buf, sizeof(buf));
		if (ret <= 0)
			return ret < 0 ? -errno : 0;
		ret = mnl_cb_run(buf, (size_t)ret, seq, port, cb, data);
		if (ret < 0)
			return -errno;
		if (ret == MNL_CB_STOP)
			return 0;
	}
	return -ETIMEDOUT;
}

static int chain_cb(const struct nlmsghdr *nlh, void *data)
{
	struct chains *c = data;
	struct nftnl_chain *ch = nftnl_chain_alloc();
	uint32_t len = 0;

	if (!ch || nftnl_chain_nlmsg_parse(nlh, ch) < 0)
		goto out;
	if (strcmp(nftnl_chain_get_str(ch, NFTNL_CHAIN_TABLE), TABLE))
		goto out;
	if (c->n == c->cap) {
		size_t nc = c->cap ? c->cap * 2 : 256;
		struct chaininfo *n = realloc(c->v, nc * sizeof(*n));
		if (!n) {
			c->err = -ENOMEM;
			goto out;
		}
		c->v = n;
		c->cap = nc;
	}
	struct chaininfo *ci = &c->v[c->n++];
	memset(ci, 0, sizeof(*ci));
	snprintf(ci->name, sizeof(ci->name), "%s",
		 nftnl_chain_get_str(ch, NFTNL_CHAIN_NAME));
	const void *ud = nftnl_chain_get_data(ch, NFTNL_CHAIN_USERDATA, &len);
	if (ud && len) {
		if (len >= sizeof(ci->ud))
			len = sizeof(ci->ud) - 1;
		memcpy(ci->ud, ud, len);
	}
out:
	nftnl_chain_free(ch);
	return MNL_CB_OK;
}

static int elem_cb(const struct nlmsghdr *nlh, void *data)
{
	struct elist *l = data;
	struct nftnl_set *s = nftnl_set_alloc();
	struct nftnl_set_elems_iter *it;
	struct nftnl_set_elem *e;

	if (!s || nftnl_set_elems_nlmsg_parse(nlh, s) < 0)
		goto out;
	it = nftnl_set_elems_iter_create(s);
	while (it && (e = nftnl_set_elems_iter_next(it))) {
		uint32_t len = 0;
		const void *p;
		if (l->n == l->cap) {
			size_t nc = l->cap ? l->cap * 2 : 256;
			struct elem *n = realloc(l->v, nc * sizeof(*n));
			if (!n)
				break;
			l->v = n;
			l->cap = nc;
		}
		struct elem *x = &l->v[l->n++];
		memset(x, 0, sizeof(*x));
		x->verdict = -1;
		p = nftnl_set_elem_get(e, NFTNL_SET_ELEM_KEY, &len);
		if (p && len <= sizeof(x->key)) {
			memcpy(x->key, p, len);
			x->klen = len;
		}
		p = nftnl_set_elem_get(e, NFTNL_SET_ELEM_DATA, &len);
		if (p && len <= sizeof(x->data)) {
			memcpy(x->data, p, len);
			x->dlen = len;
		}
		if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_VERDICT))
			x->verdict = (int)nftnl_set_elem_get_u32(e, NFTNL_SET_ELEM_VERDICT);
		if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_CHAIN))
			snprintf(x->chain, sizeof(x->chain), "%s",
				 nftnl_set_elem_get_str(e, NFTNL_SET_ELEM_CHAIN));
		p = nftnl_set_elem_get(e, NFTNL_SET_ELEM_USERDATA, &len);
		if (p && len <= sizeof(x->ud)) {
			memcpy(x->ud, p, len);
			x->udlen = len;
		}
	}
	if (it)
		nftnl_set_elems_iter_destroy(it);
out:
	nftnl_set_free(s);
	return MNL_CB_OK;
}

static int list_chains(struct mnl_socket *nl, struct chains *c)
{
	char buf[4096];
	struct nlmsghdr *nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETCHAIN,
						     NFPROTO_INET,
						     NLM_F_DUMP | NLM_F_ACK,
						     (uint32_t)time(NULL));
	int err = dump(nl, nlh, chain_cb, c);
	return err ? err : c->err;
}

static int set_dump(struct mnl_socket *nl, const char *set, mnl_cb_t cb,
		    void *data)
{
	char buf[4096];
	struct nftnl_set *s = nftnl_set_alloc();
	struct nlmsghdr *nlh;

	if (!s)
		return -ENOMEM;
	nftnl_set_set_str(s, NFTNL_SET_TABLE, TABLE);
	nftnl_set_set_str(s, NFTNL_SET_NAME, set);
	nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETSETELEM, NFPROTO_INET,
				    NLM_F_DUMP | NLM_F_ACK, (uint32_t)time(NULL));
	nftnl_set_elems_nlmsg_build_payload(nlh, s);
	nftnl_set_free(s);
	return dump(nl, nlh, cb, data);
}

static int list_elems(struct mnl_socket *nl, const char *set, struct elist *l)
{
	return set_dump(nl, set, elem_cb, l);
}

static struct mnl_socket *sock(void)
{
	struct mnl_socket *nl = mnl_socket_open(NETLINK_NETFILTER);
	if (nl && mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		mnl_socket_close(nl);
		return NULL;
	}
	return nl;
}

static const char *proto_str(uint8_t p)
{
	switch (p) {
	case IPPROTO_TCP: return "TCP";
	case IPPROTO_UDP: return "UDP";
	case IPPROTO_SCTP: return "SCTP";
	}
	return "?";
}

static const char *kind_str(uint8_t k)
{
	switch (k) {
	case 0: return "ClusterIP";
	case 1: return "NodePort";
	case 2: return "ExternalIP";
	case 3: return "LoadBalancer";
	}
	return "?";
}

static int chain_cmp(const void *a, const void *b)
{
	return strcmp(((const struct chaininfo *)a)->name,
		      ((const struct chaininfo *)b)->name);
}

/* c sorted by name (chain_cmp). */
static const struct chaininfo *find_chain(const struct chains *c,
					  const char *name)
{
	struct chaininfo want;
	snprintf(want.name, sizeof(want.name), "%s", name);
	return c->n ? bsearch(&want, c->v, c->n, sizeof(*c->v), chain_cmp) : NULL;
}

#define ud_field kpx_nft_ud_field

/* The group field of a chain userdata: field 2, or field 6 in the
 * format before the key (kind, id, ns, name, port, affinity, group,
 * etp), which a table programmed by an older kpx still has until the
 * first sync after an upgrade replaces it (the affinity carry-over of
 * that sync reads it). */
static int ud_group(const char *ud, char *out, size_t len)
{
	size_t tabs = 0;

	for (const char *p = ud; *p; p++)
		tabs += *p == '\t';
	return ud_field(ud, tabs >= 7 ? 6 : 2, out, len);
}

static const char *noep_action(const struct elist *noep, const uint8_t *key,
			       uint32_t klen)
{
	for (size_t i = 0; i < noep->n; i++)
		if (noep->v[i].klen == klen && !memcmp(noep->v[i].key, key, klen))
			return noep->v[i].verdict == NF_DROP ? "drop" : "reject";
	return NULL;
}

static int elem_cmp(const void *a, const void *b)
{
	const struct elem *x = a, *y = b;
	if (x->klen != y->klen)
		return x->klen < y->klen ? -1 : 1;
	return memcmp(x->key, y->key, x->klen);
}

/* Lists searched by key (group . slot, group . id): sorted once, so that
 * listing every frontend's backends is not quadratic in the set size. */
static void sort_el(struct elist *l)
{
	if (l->n > 1)
		qsort(l->v, l->n, sizeof(*l->v), elem_cmp);
}

static const struct elem *find_g2(const struct elist *l, uint32_t g,
				  uint32_t k)
{
	struct elem want;
	want.klen = 8;
	memcpy(want.key, &g, 4);
	memcpy(want.key + 4, &k, 4);
	return l->n ? bsearch(&want, l->v, l->n, sizeof(*l->v), elem_cmp) : NULL;
}

/* The slot maps of a family: @slots (group . slot -> address . port), and
 * for affinity groups @sid (group . slot -> id) with @epv (group . id ->
 * address . port). Each sorted by key. */
struct slotmaps {
	struct elist slots, sid, epv;
};

static struct json_object *backends(const struct slotmaps *m, uint32_t g,
				    int family)
{
	struct json_object *arr = json_object_new_array();
	size_t l = family == AF_INET6 ? 16 : 4;
	/* Slot order is the selection order; list by slot index. */
	for (uint32_t want = 0; want < 100000; want++) {
		const struct elem *e = find_g2(&m->slots, g, want), *d = e;
		if (!e && (e = find_g2(&m->sid, g, want)) && e->dlen >= 4) {
			uint32_t id;
			memcpy(&id, e->data, 4);
			d = find_g2(&m->epv, g, id);
		}
		if (!e || !d || d->dlen < l + 2)
			break;
		char abuf[INET6_ADDRSTRLEN];
		uint16_t port;
		memcpy(&port, d->data + l, 2);
		inet_ntop(family, d->data, abuf, sizeof(abuf));
		uint8_t fl = e->udlen ? e->ud[0] : 0;
		struct json_object *o = json_object_new_object();
		json_object_object_add(o, "address", json_object_new_string(abuf));
		json_object_object_add(o, "port", json_object_new_int(ntohs(port)));
		json_object_object_add(o, "state", json_object_new_string(
			(fl & KPX_EP_TERMINATING) ? "terminating" : "active"));
		json_object_object_add(o, "local",
				       json_object_new_boolean(fl & KPX_EP_LOCAL));
		json_object_array_add(arr, o);
	}
	return arr;
}

static struct json_object *frontend(const struct chains *ch,
				    const struct slotmaps *slots,
				    const struct elist *noep, const struct elem *e,
				    int family, const uint8_t *addr,
				    uint8_t proto, uint16_t port, uint8_t kind)
{
	const struct chaininfo *ci = find_chain(ch, e->chain);
	char abuf[INET6_ADDRSTRLEN], f[KPX_NAME_MAX + KPX_NS_MAX + 2];
	char ns[KPX_NS_MAX] = "", name[KPX_NAME_MAX] = "", pn[KPX_PORTNAME_MAX] = "";
	char tmp[32], key[KPX_NFT_KEY_MAX];
	uint32_t aff = 0, g = 0;
	struct kpx_nft_fe_ud u = { 0 };
	struct json_object *o = json_object_new_object();

	inet_ntop(family, addr, abuf, sizeof(abuf));
	if (ci && !ud_field(ci->ud, 1, key, sizeof(key))) {
		kpx_nft_key_names(key, ns, sizeof(ns), name, sizeof(name), pn,
				  sizeof(pn));
		if (!ud_group(ci->ud, tmp, sizeof(tmp)))
			g = (uint32_t)strtoul(tmp, NULL, 10);
	}
	/* What may change while the chains stay is in the element. */
	if (e->udlen >= sizeof(u)) {
		memcpy(&u, e->ud, sizeof(u));
		aff = u.affinity;
	}
	snprintf(f, sizeof(f), "%s/%s", ns, name);
	json_object_object_add(o, "address", json_object_new_string(abuf));
	json_object_object_add(o, "port", json_object_new_int(port));
	json_object_object_add(o, "protocol", json_object_new_string(proto_str(proto)));
	json_object_object_add(o, "type", json_object_new_string(kind_str(kind)));
	json_object_object_add(o, "service", json_object_new_string(f));
	json_object_object_add(o, "port_name", json_object_new_string(pn));
	json_object_object_add(o, "affinity_timeout", json_object_new_int((int)aff));
	json_object_object_add(o, "chain", json_object_new_string(e->chain));
	/* The endpoint set of each origin's row, as programmed. */
	if (e->udlen >= sizeof(u)) {
		struct json_object *sets = json_object_new_object();

		for (int k = 0; k < KPX_ORIGINS; k++)
			json_object_object_add(
				sets, kpx_origin_name(k),
				json_object_new_string(kpx_plan_set_name(u.set[k])));
		json_object_object_add(o, "origin_sets", sets);
	}
	json_object_object_add(o, "backends", ci ? backends(slots, g, family)
						: json_object_new_array());
	const char *act = noep ? noep_action(noep, e->key, e->klen) : NULL;
	json_object_object_add(o, "empty_action",
			       act ? json_object_new_string(act) : NULL);
	return o;
}

static void free_el(struct elist *l)
{
	free(l->v);
	memset(l, 0, sizeof(*l));
}

int kpx_nft_dump_frontends(const struct kpx_config *cfg, struct json_object **out)
{
	struct mnl_socket *nl = sock();
	struct chains ch = { 0 };
	struct json_object *arr = NULL;
	int err;
	(void)cfg;

	if (!nl)
		return -errno;
	err = list_chains(nl, &ch);
	if (err)
		goto out;
	if (!ch.n) {
		err = -ENOENT;
		goto out;
	}
	qsort(ch.v, ch.n, sizeof(*ch.v), chain_cmp);
	arr = json_object_new_array();
	for (int v6 = 0; v6 <= 1 && !err; v6++) {
		struct elist fe = { 0 }, np = { 0 }, npa = { 0 }, noep = { 0 },
			     noepnp = { 0 };
		struct slotmaps slots = { 0 };
		int fam = v6 ? AF_INET6 : AF_INET;
		size_t l = v6 ? 16 : 4;
		err = list_elems(nl, SETNAME(FE, v6), &fe);
		err = err ? err : list_elems(nl, SETNAME(NP, v6), &np);
		err = err ? err : list_elems(nl, SETNAME(NPADDR, v6), &npa);
		err = err ? err : list_elems(nl, SETNAME(SLOTS, v6), &slots.slots);
		err = err ? err : list_elems(nl, SETNAME(SID, v6), &slots.sid);
		err = err ? err : list_elems(nl, SETNAME(EPV, v6), &slots.epv);
		sort_el(&slots.slots);
		sort_el(&slots.sid);
		sort_el(&slots.epv);
		err = err ? err : list_elems(nl, SETNAME(NOEP, v6), &noep);
		err = err ? err : list_elems(nl, SETNAME(NOEPNP, v6), &noepnp);
		for (size_t i = 0; !err && i < fe.n; i++) {
			const struct elem *e = &fe.v[i];
			uint16_t port;
			memcpy(&port, e->key + l + 4, 2);
			json_object_array_add(arr, frontend(&ch, &slots, &noep, e, fam,
							    e->key, e->key[l], ntohs(port),
							    e->udlen ? e->ud[0] : 0));
		}
		for (size_t i = 0; !err && i < np.n; i++) {
			const struct elem *e = &np.v[i];
			uint16_t port;
			memcpy(&port, e->key + 4, 2);
			for (size_t j = 0; j < npa.n; j++)
				json_object_array_add(arr, frontend(&ch, &slots, &noepnp, e,
								    fam, npa.v[j].key, e->key[0],
								    ntohs(port),
								    e->udlen ? e->ud[0] : 1));
		}
		free_el(&fe);
		free_el(&np);
		free_el(&npa);
		free_el(&slots.slots);
		free_el(&slots.sid);
		free_el(&slots.epv);
		free_el(&noep);
		free_el(&noepnp);
	}
	if (err) {
		json_object_put(arr);
		arr = NULL;
	}
out:
	free(ch.v);
	mnl_socket_close(nl);
	if (err == -ENOENT)
		return err;
	if (err)
		kpx_err("nft: reading table inet kpx: %s", strerror(-err));
	else
		*out = arr;
	return err;
}

/* Chains of table inet kpx in the kernel; -ENOENT when there is none. */
static int gen_cb(const struct nlmsghdr *nlh, void *data)
{
	struct nlattr *a;

	mnl_attr_for_each(a, nlh, sizeof(struct nfgenmsg))
		if (mnl_attr_get_type(a) == NFTA_GEN_ID &&
		    mnl_attr_get_payload_len(a) == 4)
			*(uint32_t *)data = ntohl(mnl_attr_get_u32(a));
	return MNL_CB_OK;
}

int kpx_nft_gen(struct mnl_socket *nl, uint32_t *gen)
{
	char buf[256];
	static uint32_t seq;
	struct nlmsghdr *nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETGEN,
						     AF_UNSPEC, NLM_F_ACK,
						     (uint32_t)time(NULL) ^ ++seq);
	*gen = 0;
	return dump(nl, nlh, gen_cb, gen);
}

static int chain_count_cb(const struct nlmsghdr *nlh, void *data)
{
	struct nlattr *a;
	size_t *n = data;

	/* only the table name is looked at: no chain object per chain */
	mnl_attr_for_each(a, nlh, sizeof(struct nfgenmsg)) {
		if (mnl_attr_get_type(a) != NFTA_CHAIN_TABLE)
			continue;
		if (mnl_attr_get_payload_len(a) == sizeof(TABLE) &&
		    !memcmp(mnl_attr_get_payload(a), TABLE, sizeof(TABLE)))
			(*n)++;
		break;
	}
	return MNL_CB_OK;
}

int kpx_nft_count_chains(size_t *n)
{
	struct mnl_socket *nl = sock();
	char buf[4096];
	struct nlmsghdr *nlh;
	int err;

	*n = 0;
	if (!nl)
		return -errno;
	nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETCHAIN, NFPROTO_INET,
				    NLM_F_DUMP | NLM_F_ACK, (uint32_t)time(NULL));
	err = dump(nl, nlh, chain_count_cb, n);
	if (!err && !*n)
		err = -ENOENT;
	mnl_socket_close(nl);
	return err;
}

static int count_cb(const struct nlmsghdr *nlh, void *data)
{
	struct nlattr *a, *e;
	size_t *n = data;

	/* NFTA_SET_ELEM_LIST_ELEMENTS holds one nested attribute per
	 * element: counted without parsing them. */
	mnl_attr_for_each(a, nlh, sizeof(struct nfgenmsg)) {
		if (mnl_attr_get_type(a) != NFTA_SET_ELEM_LIST_ELEMENTS)
			continue;
		mnl_attr_for_each_nested(e, a)
			(*n)++;
	}
	return MNL_CB_OK;
}


int kpx_nft_count_elems(const char *const *sets, size_t n, size_t *counts)
{
	struct mnl_socket *nl = sock();
	int err = 0;

	if (!nl)
		return -errno;
	for (size_t i = 0; i < n && !err; i++) {
		counts[i] = 0;
		err = set_dump(nl, sets[i], count_cb, &counts[i]);
	}
	mnl_socket_close(nl);
	return err;
}

/* ------------------------------------------------------------ affinity */

struct affread {
	struct kpx_nft_aff_elem *v;
	size_t n, cap;
	size_t alen;
	int err;
};

static bool grow(void **v, size_t *cap, size_t n, size_t size)
{
	size_t nc;
	void *p;

	if (n < *cap)
		return true;
	nc = *cap ? *cap * 2 : 256;
	p = realloc(*v, nc * size);
	if (!p)
		return false;
	*v = p;
	*cap = nc;
	return true;
}

static int aff_cb(const struct nlmsghdr *nlh, void *data)
{
	struct affread *r = data;
	struct nftnl_set *s = nftnl_set_alloc();
	struct nftnl_set_elems_iter *it = NULL;
	struct nftnl_set_elem *e;

	if (!s || nftnl_set_elems_nlmsg_parse(nlh, s) < 0)
		goto out;
	it = nftnl_set_elems_iter_create(s);
	while (it && (e = nftnl_set_elems_iter_next(it))) {
		uint32_t kl = 0, dl = 0;
		const uint8_t *k = nftnl_set_elem_get(e, NFTNL_SET_ELEM_KEY, &kl);
		const void *d = nftnl_set_elem_get(e, NFTNL_SET_ELEM_DATA, &dl);
		if (!k || !d || kl != r->alen + 4 || dl != 4)
			continue;
		if (!grow((void **)&r->v, &r->cap, r->n, sizeof(*r->v))) {
			r->err = -ENOMEM;
			break;
		}
		struct kpx_nft_aff_elem *x = &r->v[r->n++];
		memset(x, 0, sizeof(*x));
		memcpy(x->saddr, k, r->alen);
		memcpy(&x->group, k + r->alen, 4);
		memcpy(&x->id, d, 4);
		if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_EXPIRATION))
			x->expires_ms = nftnl_set_elem_get_u64(e, NFTNL_SET_ELEM_EXPIRATION);
	}
out:
	if (it)
		nftnl_set_elems_iter_destroy(it);
	nftnl_set_free(s);
	return MNL_CB_OK;
}

struct grpread {
	struct kpx_nft_aff_group *v;
	size_t n, cap;
	int err;
};

/* chain userdata: nft_schema.h */
static int grp_cb(const struct nlmsghdr *nlh, void *data)
{
	struct grpread *r = data;
	struct nftnl_chain *ch = nftnl_chain_alloc();
	char ud[512], tmp[32];
	uint32_t len = 0;
	const void *p;

	if (!ch || nftnl_chain_nlmsg_parse(nlh, ch) < 0)
		goto out;
	if (strcmp(nftnl_chain_get_str(ch, NFTNL_CHAIN_TABLE), TABLE))
		goto out;
	p = nftnl_chain_get_data(ch, NFTNL_CHAIN_USERDATA, &len);
	if (!p || !len || len >= sizeof(ud))
		goto out;
	memcpy(ud, p, len);
	ud[len] = 0;
	if (ud_field(ud, 0, tmp, sizeof(tmp)) ||
	    (strcmp(tmp, kpx_nft_set_chain_prefix[0]) &&
	     strcmp(tmp, kpx_nft_set_chain_prefix[1]) &&
	     strcmp(tmp, kpx_nft_set_chain_prefix[2])))
		goto out;
	if (ud_group(ud, tmp, sizeof(tmp)))
		goto out;
	if (!grow((void **)&r->v, &r->cap, r->n, sizeof(*r->v))) {
		r->err = -ENOMEM;
		goto out;
	}
	struct kpx_nft_aff_group *g = &r->v[r->n];
	g->group = (uint32_t)strtoul(tmp, NULL, 10);
	if (!ud_field(ud, 1, g->id, sizeof(g->id)))
		r->n++;
out:
	nftnl_chain_free(ch);
	return MNL_CB_OK;
}

void kpx_nft_aff_snap_free(struct kpx_nft_aff_snap *s)
{
	for (int f = 0; f < 2; f++)
		free(s->aff[f]);
	free(s->groups);
	memset(s, 0, sizeof(*s));
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/*
 * The chains owning the groups the entries name. A set or chain dump
 * costs the kernel a walk from the start per reply message (quadratic in
 * the size), a GET of one chain a round trip: few groups are fetched by
 * chain name (svc-N, ext-N, clu-N for group 4N+0/1/2), many by one dump.
 */
#define GROUP_GETS_MAX 512

static int read_groups(struct mnl_socket *nl, struct kpx_nft_aff_snap *s)
{
	struct grpread r = { 0 };
	size_t n = s->n_aff[0] + s->n_aff[1], u = 0;
	uint32_t *g = malloc(n * sizeof(*g));
	char buf[4096];
	struct nlmsghdr *nlh;
	int err = 0;

	if (!g)
		return -ENOMEM;
	for (int f = 0; f < 2; f++)
		for (size_t i = 0; i < s->n_aff[f]; i++)
			g[u++] = s->aff[f][i].group;
	qsort(g, n, sizeof(*g), cmp_u32);
	u = 0;
	for (size_t i = 0; i < n; i++)
		if (!u || g[u - 1] != g[i])
			g[u++] = g[i];
	if (u > GROUP_GETS_MAX) {
		nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETCHAIN, NFPROTO_INET,
					    NLM_F_DUMP | NLM_F_ACK,
					    (uint32_t)time(NULL));
		err = dump(nl, nlh, grp_cb, &r);
	}
	for (size_t i = 0; u <= GROUP_GETS_MAX && i < u && !err; i++) {
		const char *const *kind = kpx_nft_set_chain_prefix;
		struct nftnl_chain *c;
		char name[32];
		int e;

		if (g[i] % 4 > 2)
			continue;
		snprintf(name, sizeof(name), "%s-%u", kind[g[i] % 4], g[i] / 4);
		if (!(c = nftnl_chain_alloc())) {
			err = -ENOMEM;
			break;
		}
		nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, TABLE);
		nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, name);
		nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETCHAIN, NFPROTO_INET,
					    NLM_F_ACK, (uint32_t)time(NULL) + (uint32_t)i);
		nftnl_chain_nlmsg_build_payload(nlh, c);
		nftnl_chain_free(c);
		e = dump(nl, nlh, grp_cb, &r);
		if (e && e != -ENOENT) /* a chain gone: its entries are stale */
			err = e;
	}
	free(g);
	err = err ? err : r.err;
	s->groups = r.v;
	s->n_groups = r.n;
	return err;
}

int kpx_nft_read_affinity(struct kpx_nft_aff_snap *s)
{
	struct mnl_socket *nl = sock();
	int err = 0;

	memset(s, 0, sizeof(*s));
	if (!nl)
		return -errno;
	for (int f = 0; f < 2 && !err; f++) {
		struct affread r = { .alen = f ? 16 : 4 };
		err = set_dump(nl, SETNAME(AFF, f), aff_cb, &r);
		err = err ? err : r.err;
		s->aff[f] = r.v;
		s->n_aff[f] = r.n;
	}
	if (!err && (s->n_aff[0] || s->n_aff[1]))
		err = read_groups(nl, s);
	mnl_socket_close(nl);
	if (err)
		kpx_nft_aff_snap_free(s);
	return err;
}

int kpx_nft_dump_datapath(const struct kpx_config *cfg, struct json_object **out)
{
	static const int kinds[] = { KPX_NFT_S_FE, KPX_NFT_S_NP,
				     KPX_NFT_S_NPADDR, KPX_NFT_S_NOEP,
				     KPX_NFT_S_NOEPNP, KPX_NFT_S_FW,
				     KPX_NFT_S_SLOTS, KPX_NFT_S_SID,
				     KPX_NFT_S_EPV, KPX_NFT_S_AFF, KPX_NFT_S_HP };
	const char *sets[2 * sizeof(kinds) / sizeof(kinds[0])];
	for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++)
		sets[i] = kpx_nft_setspecs[KPX_NFT_SET(kinds[i / 2], i % 2)].name;
	struct mnl_socket *nl = sock();
	struct chains ch = { 0 };
	int err;
	(void)cfg;

	if (!nl)
		return -errno;
	err = list_chains(nl, &ch);
	if (!err && !ch.n)
		err = -ENOENT;
	if (err)
		goto out;
	struct json_object *o = json_object_new_object(), *t = json_object_new_object(),
			   *so = json_object_new_object();
	size_t svc_chains = 0;
	for (size_t i = 0; i < ch.n; i++)
		if (ch.v[i].ud[0])
			svc_chains++;
	for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++) {
		struct elist l = { 0 };
		if (list_elems(nl, sets[i], &l) == 0)
			json_object_object_add(so, sets[i], json_object_new_int64((int64_t)l.n));
		free_el(&l);
	}
	json_object_object_add(t, "family", json_object_new_string("inet"));
	json_object_object_add(t, "name", json_object_new_string(TABLE));
	json_object_object_add(t, "chains", json_object_new_int64((int64_t)ch.n));
	json_object_object_add(t, "service_chains", json_object_new_int64((int64_t)svc_chains));
	json_object_object_add(t, "set_elements", so);
	json_object_object_add(o, "backend", json_object_new_string("nft"));
	struct json_object *arr = json_object_new_array();
	json_object_array_add(arr, t);
	json_object_object_add(o, "tables", arr);
	*out = o;
out:
	free(ch.v);
	mnl_socket_close(nl);
	return err;
}
