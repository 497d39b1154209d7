// SPDX-License-Identifier: Apache-2.0
/*
 * Chains and rules of the nft backend (see nft/nft_internal.h): the static
 * skeleton of table inet kpx, the chains of one svcport as its shape
 * (nft_rows.c) says, and the shared dispatch and masquerade chains.
 * Owns: the list of shared chains of struct kpx_backend.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/rtnetlink.h>

#include "common/log.h"
#include "nft/nft_internal.h"

#define setspecs kpx_nft_setspecs
#define TABLE KPX_NFT_TABLE
#define MASQ_MARK KPX_NFT_MASQ_MARK

static size_t alen(uint8_t family)
{
	return family == AF_INET6 ? 16 : 4;
}

void kpx_nft_chain_name(char *buf, const char *pfx, uint32_t num)
{
	snprintf(buf, KPX_NFT_CHAIN_NAME_MAX, "%s-%u", pfx, num);
}

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
	const char *aff = setspecs[SET(AFF, v6)].name;
	const char *slots = setspecs[SET(SLOTS, v6)].name;
	const char *sel = setspecs[SET(SEL, v6)].name;
	const char *gn = setspecs[SET(GN, v6)].name;
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
		kpx_nft_e_lookup(r, setspecs[SET(EPV, v6)].name, g,
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
		kpx_nft_e_lookup(r, setspecs[SET(SID, v6)].name, g,
				 (int)(g + 1), 0);
		x_launder(r, g + 1);
		kpx_nft_e_lookup(r, setspecs[SET(EPV, v6)].name, g,
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
/* Whether shared chain `name` exists; when not, records it (the caller
 * creates it in the same transaction). -ENOMEM: b->err set. */
static bool shared_have(struct kpx_backend *b, const char *name)
{
	for (size_t i = 0; i < b->n_shared; i++)
		if (!strcmp(b->shared[i], name))
			return true;
	if (kpx_nft_reserve((void **)&b->shared, &b->cap_shared,
			    b->n_shared + 1, sizeof(*b->shared))) {
		b->err = -ENOMEM;
		return true;
	}
	snprintf(b->shared[b->n_shared++], KPX_NFT_SHARED_NAME_MAX, "%s", name);
	return false;
}

static void emit_dispatch(struct kpx_backend *b, const char *chain,
			  const struct kpx_plan_svcport *sp, int set,
			  size_t n)
{
	static const int gfe[] = { SET(GINT, 0), SET(GEXT, 0), SET(GCLU, 0) };
	bool v6 = sp->family == AF_INET6;
	char name[KPX_NFT_SHARED_NAME_MAX];
	struct nftnl_rule *r;

	if (!n)
		return; /* empty: the filter endpoints-check rejects/drops */
	snprintf(name, sizeof(name), KPX_NFT_DISP_FMT, v6 ? '6' : '4',
		 "iec"[set], sp->affinity_timeout);
	if (!shared_have(b, name)) {
		chain_emit(b, name, NULL, 0, 0, NULL);
		disp_rules(b, name, v6, setspecs[gfe[set] + v6].name, false,
			   sp->affinity_timeout);
		if (set == KPX_SET_EXTERNAL)
			disp_rules(b, name, v6, setspecs[SET(GNPEXT, v6)].name,
				   true, sp->affinity_timeout);
		if (set == KPX_SET_CLUSTER)
			disp_rules(b, name, v6, setspecs[SET(GNPCLU, v6)].name,
				   true, sp->affinity_timeout);
	}
	r = rule_new(chain);
	kpx_nft_e_verdict(r, NFT_GOTO, name);
	rule_emit(b, r);
}

void kpx_nft_table_msg(struct kpx_backend *b, uint16_t type, uint16_t flags)
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
/* chain: "daddr . l4proto . dport vmap @KIND", or for NodePorts "daddr
 * @npaddr l4proto . dport vmap @KIND". */
static void frontend_rule(struct kpx_backend *b, const char *chain, bool v6,
			  int kind, bool nodeport)
{
	struct nftnl_rule *r = rule_new(chain);

	x_nfproto(r, v6);
	x_daddr(r, v6, R(0));
	if (nodeport) {
		kpx_nft_e_lookup(r, setspecs[SET(NPADDR, v6)].name, R(0), -1,
				 0);
		x_proto_port(r, R(0));
	} else {
		x_proto_port(r, R(v6 ? 4 : 1));
	}
	kpx_nft_e_lookup(r, setspecs[KPX_NFT_SET(kind, v6)].name, R(0), RV, 0);
	rule_emit(b, r);
}

/* cnt: size counts of the whole plan. */
void kpx_nft_emit_static(struct kpx_backend *b, const size_t *cnt)
{
	uint32_t *hint = b->cap;
	struct nftnl_rule *r;

	for (int i = 0; i < NSETS; i++)
		hint[i] = cnt[i] >= 16384 ? (uint32_t)(cnt[i] * 2) : 0;

	/* add + delete + add: replaces any old kpx table in this same
	 * transaction, so traffic never sees a missing table. */
	kpx_nft_table_msg(b, NFT_MSG_NEWTABLE, NLM_F_CREATE);
	kpx_nft_table_msg(b, NFT_MSG_DELTABLE, 0);
	kpx_nft_table_msg(b, NFT_MSG_NEWTABLE, NLM_F_CREATE);

	for (int i = 0; i < NSETS; i++) {
		const struct kpx_nft_setspec *ss = &setspecs[i];
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

	static const char *plain[] = { KPX_NFT_C_SERVICES,
				       KPX_NFT_C_MASQUERADING,
				       KPX_NFT_C_ENDPOINTS_CHECK,
				       KPX_NFT_C_FIREWALL_CHECK,
				       KPX_NFT_C_REJECT };
	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
		chain_emit(b, plain[i], NULL, 0, 0, NULL);
	chain_emit(b, KPX_NFT_C_NAT_PRE, "nat", NF_INET_PRE_ROUTING, -100, NULL);
	chain_emit(b, KPX_NFT_C_NAT_OUT, "nat", NF_INET_LOCAL_OUT, -100, NULL);
	chain_emit(b, KPX_NFT_C_NAT_POST, "nat", NF_INET_POST_ROUTING, 100, NULL);
	chain_emit(b, KPX_NFT_C_FILTER_PRE, "filter", NF_INET_PRE_ROUTING, -110, NULL);
	chain_emit(b, KPX_NFT_C_FILTER_OUT, "filter", NF_INET_LOCAL_OUT, -110, NULL);
	chain_emit(b, KPX_NFT_C_FILTER_IN, "filter", NF_INET_LOCAL_IN, -110, NULL);
	chain_emit(b, KPX_NFT_C_FILTER_FWD, "filter", NF_INET_FORWARD, -110, NULL);
	chain_emit(b, KPX_NFT_C_FILTER_OUT_POST, "filter", NF_INET_LOCAL_OUT, -90, NULL);

	static const struct {
		const char *from, *to;
		bool ct_new;
	} jumps[] = {
		{ KPX_NFT_C_NAT_PRE, KPX_NFT_C_SERVICES, false },
		{ KPX_NFT_C_NAT_OUT, KPX_NFT_C_SERVICES, false },
		{ KPX_NFT_C_NAT_POST, KPX_NFT_C_MASQUERADING, false },
		{ KPX_NFT_C_FILTER_PRE, KPX_NFT_C_FIREWALL_CHECK, true },
		{ KPX_NFT_C_FILTER_OUT, KPX_NFT_C_FIREWALL_CHECK, true },
		{ KPX_NFT_C_FILTER_IN, KPX_NFT_C_ENDPOINTS_CHECK, true },
		{ KPX_NFT_C_FILTER_FWD, KPX_NFT_C_ENDPOINTS_CHECK, true },
		{ KPX_NFT_C_FILTER_OUT_POST, KPX_NFT_C_ENDPOINTS_CHECK, true },
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
		frontend_rule(b, KPX_NFT_C_SERVICES, v6, KPX_NFT_S_FE, false);
		frontend_rule(b, KPX_NFT_C_SERVICES, v6, KPX_NFT_S_NP, true);
		frontend_rule(b, KPX_NFT_C_ENDPOINTS_CHECK, v6, KPX_NFT_S_NOEP,
			      false);
		frontend_rule(b, KPX_NFT_C_ENDPOINTS_CHECK, v6,
			      KPX_NFT_S_NOEPNP, true);
		frontend_rule(b, KPX_NFT_C_FIREWALL_CHECK, v6, KPX_NFT_S_FW,
			      false);
		/* hairpin: a local endpoint reached through its own service. */
		uint32_t dnat = IPS_DST_NAT, zero = 0;
		r = rule_new(KPX_NFT_C_MASQUERADING);
		x_nfproto(r, v6);
		kpx_nft_e_ct(r, NFT_CT_STATUS, R(0));
		kpx_nft_e_bitwise(r, R(0), 4, &dnat, &zero);
		kpx_nft_e_cmp(r, R(0), NFT_CMP_NEQ, &zero, 4);
		kpx_nft_e_payload(r, NFT_PAYLOAD_NETWORK_HEADER, v6 ? 8 : 12,
				  v6 ? 32 : 8, R(0));
		kpx_nft_e_lookup(r, setspecs[SET(HP, v6)].name, R(0), -1, 0);
		kpx_nft_e_masq(r);
		rule_emit(b, r);
	}
	uint32_t mark = MASQ_MARK, zero = 0;
	r = rule_new(KPX_NFT_C_MASQUERADING);
	kpx_nft_e_meta(r, NFT_META_MARK, R(0));
	kpx_nft_e_bitwise(r, R(0), 4, &mark, &zero);
	kpx_nft_e_cmp(r, R(0), NFT_CMP_NEQ, &zero, 4);
	kpx_nft_e_masq(r);
	rule_emit(b, r);

	uint8_t tcp = IPPROTO_TCP;
	r = rule_new(KPX_NFT_C_REJECT);
	kpx_nft_e_meta(r, NFT_META_L4PROTO, R(0));
	kpx_nft_e_cmp(r, R(0), NFT_CMP_EQ, &tcp, 1);
	kpx_nft_e_reject(r, NFT_REJECT_TCP_RST, 0);
	rule_emit(b, r);
	r = rule_new(KPX_NFT_C_REJECT);
	kpx_nft_e_reject(r, NFT_REJECT_ICMPX_UNREACH, NFT_REJECT_ICMPX_PORT_UNREACH);
	rule_emit(b, r);
}

/* ------------------------------------------------- per-svcport chains */

/* A rule that matches an origin: NODE (the source is an address of this
 * node), or POD inside cluster CIDR c. */
static struct nftnl_rule *origin_rule(const char *chain, int origin, bool v6,
				      const struct kpx_cidr *c)
{
	struct nftnl_rule *r = rule_new(chain);
	uint32_t local = RTN_LOCAL;

	if (!r)
		return NULL;
	if (origin == KPX_ORIGIN_NODE) {
		kpx_nft_e_fib_saddr_type(r, R(0));
		kpx_nft_e_cmp(r, R(0), NFT_CMP_EQ, &local, 4);
	} else {
		x_saddr_in(r, c);
	}
	(void)v6;
	return r;
}

/*
 * One rule per cluster CIDR of the family (POD), or one (NODE): mark when
 * masq says always, then `verdict` (goto target, or return). A NODE
 * branch "unless off-cluster" lets node sources inside a CIDR go unmarked
 * first.
 */
static void origin_rules(struct kpx_backend *b, const char *chain, int origin,
			 uint8_t family, uint8_t masq, int verdict,
			 const char *target)
{
	bool v6 = family == AF_INET6;
	struct nftnl_rule *r;

	if (origin == KPX_ORIGIN_NODE) {
		for (size_t i = 0; masq == KPX_MASQ_OFF_CLUSTER &&
				   i < b->input.n_cluster_cidrs; i++) {
			const struct kpx_cidr *c = &b->input.cluster_cidrs[i];

			if (c->addr.family != family)
				continue;
			r = origin_rule(chain, origin, v6, NULL);
			if (r)
				x_saddr_in(r, c);
			if (r)
				kpx_nft_e_verdict(r, verdict, target);
			rule_emit(b, r);
		}
		r = origin_rule(chain, origin, v6, NULL);
		if (r && masq != KPX_MASQ_NEVER)
			x_mark_masq(r);
		if (r)
			kpx_nft_e_verdict(r, verdict, target);
		rule_emit(b, r);
		return;
	}
	for (size_t i = 0; i < b->input.n_cluster_cidrs; i++) {
		const struct kpx_cidr *c = &b->input.cluster_cidrs[i];

		if (c->addr.family != family)
			continue;
		r = origin_rule(chain, origin, v6, c);
		if (r && masq == KPX_MASQ_ALWAYS)
			x_mark_masq(r);
		if (r)
			kpx_nft_e_verdict(r, verdict, target);
		rule_emit(b, r);
	}
}

static uint8_t letter_masq(char l)
{
	return l == 'a' ? KPX_MASQ_ALWAYS :
	       l == 'o' ? KPX_MASQ_OFF_CLUSTER : KPX_MASQ_NEVER;
}

/*
 * The shared masquerade chain of a pattern (nft_rows.c: letters for pod,
 * node, remote), made once per family and pattern: node sources first
 * (`fib saddr type local`), then pods (cluster CIDRs), then the rest.
 * Each origin's rule marks or not and returns; the remote part ends it.
 */
static void masq_chain(struct kpx_backend *b, const char *name,
		       uint8_t family, const char *m)
{
	struct nftnl_rule *r;

	chain_emit(b, name, NULL, 0, 0, NULL);
	if (m[1] != m[2])
		origin_rules(b, name, KPX_ORIGIN_NODE, family,
			     letter_masq(m[1]), NFT_RETURN, NULL);
	if (m[0] != m[2])
		origin_rules(b, name, KPX_ORIGIN_POD, family,
			     letter_masq(m[0]), NFT_RETURN, NULL);
	if (m[2] == 'o') {
		for (size_t i = 0; i < b->input.n_cluster_cidrs; i++) {
			const struct kpx_cidr *c = &b->input.cluster_cidrs[i];

			if (c->addr.family != family)
				continue;
			r = rule_new(name);
			if (r) {
				x_saddr_in(r, c);
				kpx_nft_e_verdict(r, NFT_RETURN, NULL);
			}
			rule_emit(b, r);
		}
	}
	if (m[2] != 'n') {
		r = rule_new(name);
		if (r)
			x_mark_masq(r);
		rule_emit(b, r);
	}
}

/* The head of an entry chain: branches of the origins whose rows use
 * another set, then the masquerade of the others. */
static void emit_prefix(struct kpx_backend *b, const char *chain,
			const struct kpx_plan_svcport *sp,
			const struct kpx_nft_prefix *p, uint32_t num)
{
	char target[KPX_NFT_CHAIN_NAME_MAX], mc[KPX_NFT_SHARED_NAME_MAX];
	bool v6 = sp->family == AF_INET6;
	struct nftnl_rule *r;

	if (p->node_branch) {
		kpx_nft_chain_name(target, kpx_nft_set_chain_prefix[p->node_set],
				   num);
		origin_rules(b, chain, KPX_ORIGIN_NODE, sp->family, p->node_masq,
			     NFT_GOTO, target);
	}
	if (p->pod_branch) {
		kpx_nft_chain_name(target, kpx_nft_set_chain_prefix[p->pod_set],
				   num);
		origin_rules(b, chain, KPX_ORIGIN_POD, sp->family, p->pod_masq,
			     NFT_GOTO, target);
	}
	if (!p->masq[0])
		return;
	r = rule_new(chain);
	if (!strcmp(p->masq, "aaa")) {
		if (r)
			x_mark_masq(r);
		rule_emit(b, r);
		return;
	}
	snprintf(mc, sizeof(mc), KPX_NFT_MASQ_FMT, v6 ? '6' : '4', p->masq);
	if (!shared_have(b, mc))
		masq_chain(b, mc, sp->family, p->masq);
	if (r)
		kpx_nft_e_verdict(r, NFT_JUMP, mc);
	rule_emit(b, r);
}

size_t kpx_nft_shape_chains(const struct kpx_nft_shape *s)
{
	return (size_t)s->chain[0] + s->chain[1] + s->chain[2] + s->fw;
}

/* Chains of one svcport: created (or flushed, when old has them) and
 * filled. The userdata names the svcport (nft_schema.h). */
void kpx_nft_emit_chains(struct kpx_backend *b,
			 const struct kpx_plan_svcport *sp,
			 const struct kpx_nft_shape *s, uint32_t num,
			 const struct kpx_nft_shape *old)
{
	char name[KPX_NFT_CHAIN_NAME_MAX], ud[KPX_NFT_USERDATA_MAX];
	struct nftnl_rule *r;

	/* Every chain first: the rules goto one another. */
	for (int set = 0; set < 3; set++) {
		if (!s->chain[set])
			continue;
		kpx_nft_chain_name(name, kpx_nft_set_chain_prefix[set], num);
		if (kpx_nft_chain_ud(ud, sizeof(ud), kpx_nft_set_chain_prefix[set],
				     sp->id, KPX_NFT_GROUP(num, set)) < 0) {
			b->err = -ERANGE;
			return;
		}
		chain_emit(b, name, NULL, 0, 0, ud);
		if (old && old->chain[set])
			chain_op(b, name, false);
	}
	for (int set = 0; set < 3; set++) {
		size_t n;

		if (!s->chain[set])
			continue;
		kpx_nft_chain_name(name, kpx_nft_set_chain_prefix[set], num);
		if (s->is_entry[set])
			emit_prefix(b, name, sp, &s->pre[set], num);
		kpx_plan_set_idx(sp, set, &n);
		emit_dispatch(b, name, sp, set, n);
	}
	if (s->fw) {
		kpx_nft_chain_name(name, KPX_NFT_FW_PREFIX, num);
		if (kpx_nft_chain_ud(ud, sizeof(ud), KPX_NFT_FW_PREFIX, sp->id,
				     0) < 0) {
			b->err = -ERANGE;
			return;
		}
		chain_emit(b, name, NULL, 0, 0, ud);
		if (old && old->fw)
			chain_op(b, name, false);
		if (s->fw_node_exempt)
			origin_rules(b, name, KPX_ORIGIN_NODE, sp->family,
				     KPX_MASQ_NEVER, NFT_RETURN, NULL);
		if (s->fw_pod_exempt)
			origin_rules(b, name, KPX_ORIGIN_POD, sp->family,
				     KPX_MASQ_NEVER, NFT_RETURN, NULL);
		for (size_t i = 0; i < sp->n_source_ranges; i++) {
			if (sp->source_ranges[i].addr.family != sp->family)
				continue;
			r = rule_new(name);
			if (r) {
				x_saddr_in(r, &sp->source_ranges[i]);
				kpx_nft_e_verdict(r, NFT_RETURN, NULL);
			}
			rule_emit(b, r);
		}
		r = rule_new(name);
		if (r)
			kpx_nft_e_verdict(r, NF_DROP, NULL);
		rule_emit(b, r);
	}
}

/* Chains in old but not in nw (nw NULL: all), referrers first: entry
 * chains goto the other set chains. */
void kpx_nft_delete_chains(struct kpx_backend *b, uint32_t num,
			   const struct kpx_nft_shape *old,
			   const struct kpx_nft_shape *nw)
{
	char name[KPX_NFT_CHAIN_NAME_MAX];

	for (int pass = 0; pass < 2; pass++)
		for (int set = 0; set < 3; set++) {
			if (!old->chain[set] || (nw && nw->chain[set]) ||
			    old->is_entry[set] != !pass)
				continue;
			kpx_nft_chain_name(name, kpx_nft_set_chain_prefix[set], num);
			chain_op(b, name, true);
		}
	if (old->fw && !(nw && nw->fw)) {
		kpx_nft_chain_name(name, KPX_NFT_FW_PREFIX, num);
		chain_op(b, name, true);
	}
}
