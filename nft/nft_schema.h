/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The on-kernel schema of the nft backend, written down once: the table,
 * every chain, set and map name, the userdata formats, the mark bit, the
 * group numbering. nft/nft.c programs it, nft/nft_dump.c reads it back
 * (`kpx services`, the affinity carry-over), the unit tests render it.
 * Owns: names and formats only. Must not: build messages or read the kernel.
 */
#ifndef KPX_NFT_SCHEMA_H
#define KPX_NFT_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "plan/plan.h"

#define KPX_NFT_TABLE "kpx" /* table inet kpx */

/* Base chains (hooked) and the static chains they jump to. */
#define KPX_NFT_C_NAT_PRE "nat-pre"
#define KPX_NFT_C_NAT_OUT "nat-out"
#define KPX_NFT_C_NAT_POST "nat-post"
#define KPX_NFT_C_FILTER_PRE "filter-pre"
#define KPX_NFT_C_FILTER_OUT "filter-out"
#define KPX_NFT_C_FILTER_IN "filter-in"
#define KPX_NFT_C_FILTER_FWD "filter-fwd"
#define KPX_NFT_C_FILTER_OUT_POST "filter-out-post"
#define KPX_NFT_C_SERVICES "services"
#define KPX_NFT_C_MASQUERADING "masquerading"
#define KPX_NFT_C_ENDPOINTS_CHECK "endpoints-check"
#define KPX_NFT_C_FIREWALL_CHECK "firewall-check"
#define KPX_NFT_C_REJECT "reject-chain"
/* Chains of the static skeleton (emit_static): the eight hooked chains
 * and the five above. */
#define KPX_NFT_STATIC_CHAINS 13

/*
 * Per-svcport chains, "<prefix>-<num>" with num the svcport's number in
 * the table: one chain per endpoint set a row of the svcport uses
 * (enum kpx_plan_set: svc = internal, ext = external, clu = cluster),
 * and "fw-<num>" for source ranges. Group numbers (the endpoint groups in
 * the maps) are num * 4 + set.
 */
extern const char *const kpx_nft_set_chain_prefix[3]; /* by kpx_plan_set */
#define KPX_NFT_FW_PREFIX "fw"
#define KPX_NFT_CHAIN_NAME_MAX 32
#define KPX_NFT_GROUP(num, set) ((uint32_t)(num) * 4 + (uint32_t)(set))

/*
 * Shared chains, made on demand:
 *   dispatch: "disp<4|6>-<i|e|c>-a<timeout>" -- endpoint choice for every
 *             svcport of that family, set and affinity timeout;
 *   masquerade: "masq<4|6>-<p><n><r>" -- the masquerade of the rows of a
 *             frontend, one letter per origin (pod, node, remote):
 *             n never, a always, o unless the source is in a cluster CIDR.
 */
#define KPX_NFT_SHARED_NAME_MAX 48
#define KPX_NFT_DISP_FMT "disp%c-%c-a%u" /* family, set letter, timeout */
#define KPX_NFT_MASQ_FMT "masq%c-%s"	   /* family, pattern */

/* Sets and maps: one per kind and family. */
enum kpx_nft_set_kind {
	KPX_NFT_S_FE, KPX_NFT_S_NP, KPX_NFT_S_NPADDR, KPX_NFT_S_NOEP,
	KPX_NFT_S_NOEPNP, KPX_NFT_S_FW, KPX_NFT_S_SLOTS, KPX_NFT_S_EPV,
	KPX_NFT_S_AFF, KPX_NFT_S_HP, KPX_NFT_S_GINT, KPX_NFT_S_GEXT,
	KPX_NFT_S_GCLU, KPX_NFT_S_GNPEXT, KPX_NFT_S_GNPCLU, KPX_NFT_S_SEL,
	KPX_NFT_S_GN, KPX_NFT_S_SID, KPX_NFT_S_KINDS
};
#define KPX_NFT_NSETS (KPX_NFT_S_KINDS * 2)
#define KPX_NFT_SET(kind, v6) ((kind) * 2 + ((v6) ? 1 : 0))

struct kpx_nft_setspec {
	const char *name;
	uint32_t flags, key_type, key_len, data_type, data_len;
};
extern const struct kpx_nft_setspec kpx_nft_setspecs[KPX_NFT_NSETS];
/* Index into kpx_nft_setspecs by name; -1 when unknown. */
int kpx_nft_set_by_name(const char *name);

/* The packet mark bit that asks nat-post to masquerade. */
#define KPX_NFT_MASQ_MARK 0x4000u

/* Endpoint choice: numgen random mod SEL_M picks the slot (see nft.c). */
#define KPX_NFT_SEL_M 4096u

/*
 * The kernel's limit for any userdata (chain, rule, set element):
 * NFT_USERDATA_MAXLEN in include/net/netfilter/nf_tables.h, enforced by
 * the netlink policy of NFTA_CHAIN_USERDATA and NFTA_SET_ELEM_USERDATA;
 * more and the whole transaction is refused with ERANGE.
 */
#define KPX_NFT_USERDATA_MAX 256

/*
 * Chain userdata of a per-svcport chain, a NUL-terminated string:
 *   "<prefix>\t<key>\t<group>"
 * key is the svcport id, or, when the id would not fit the limit above,
 * its first KPX_NFT_KEY_TRUNC bytes, '#' and 16 hex digits of a hash of
 * the whole id (kpx_nft_svcport_key). The userdata of a chain never
 * changes while the chain exists (the kernel does not update it): what
 * may change (affinity, rows) lives in the frontend element's userdata.
 */
#define KPX_NFT_KEY_TRUNC 160
#define KPX_NFT_KEY_MAX (KPX_NFT_KEY_TRUNC + 18)
void kpx_nft_svcport_key(const char *id, char out[KPX_NFT_KEY_MAX]);
bool kpx_nft_key_truncated(const char *key);
int kpx_nft_chain_ud(char *buf, size_t len, const char *prefix,
		     const char *id, uint32_t group);
/* Field idx (0 prefix, 1 key, 2 group) of a chain userdata; 0 or -1. */
int kpx_nft_ud_field(const char *ud, int idx, char *out, size_t len);
/* Namespace, name and port name back from a key (display only: an id
 * of an unvalidated object with ':' or '/' in a name splits wrongly). */
void kpx_nft_key_names(const char *key, char *ns, size_t nsl, char *name,
		       size_t nl, char *port, size_t pl);

/*
 * Userdata of a frontend element (@fe, @np): what `kpx services` shows
 * about a frontend and that may change while its chains stay.
 */
struct kpx_nft_fe_ud {
	uint8_t kind;	  /* enum kpx_fe_kind */
	uint8_t set[3];	  /* enum kpx_plan_set, by enum kpx_origin */
	uint32_t affinity; /* seconds, 0: none; host order */
};

#endif
