// SPDX-License-Identifier: Apache-2.0
/*
 * The schema's tables and the userdata codecs (nft/nft_schema.h).
 */
#include "nft/nft_schema.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <linux/netfilter/nf_tables.h>

const char *const kpx_nft_set_chain_prefix[3] = {
	[KPX_SET_INTERNAL] = "svc",
	[KPX_SET_EXTERNAL] = "ext",
	[KPX_SET_CLUSTER] = "clu",
};

/* nft userspace datatype ids, so `nft list` can print the sets. */
enum { T_IP4 = 7, T_IP6 = 8, T_PROTO = 12, T_SVC = 13, T_MARK = 19 };
#define C2(a, b) (((a) << 6) | (b))
#define C3(a, b, c) (((((a) << 6) | (b)) << 6) | (c))
#define S(k, v6) KPX_NFT_SET(KPX_NFT_S_##k, v6)

const struct kpx_nft_setspec kpx_nft_setspecs[KPX_NFT_NSETS] = {
	/* frontend -> goto the entry chain */
	[S(FE, 0)] = { "fe4", NFT_SET_MAP, C3(T_IP4, T_PROTO, T_SVC), 12, NFT_DATA_VERDICT, 0 },
	[S(FE, 1)] = { "fe6", NFT_SET_MAP, C3(T_IP6, T_PROTO, T_SVC), 24, NFT_DATA_VERDICT, 0 },
	[S(NP, 0)] = { "np4", NFT_SET_MAP, C2(T_PROTO, T_SVC), 8, NFT_DATA_VERDICT, 0 },
	[S(NP, 1)] = { "np6", NFT_SET_MAP, C2(T_PROTO, T_SVC), 8, NFT_DATA_VERDICT, 0 },
	[S(NPADDR, 0)] = { "npaddr4", 0, T_IP4, 4, 0, 0 },
	[S(NPADDR, 1)] = { "npaddr6", 0, T_IP6, 16, 0, 0 },
	/* frontend (post-DNAT: not translated) -> empty verdict */
	[S(NOEP, 0)] = { "noep4", NFT_SET_MAP, C3(T_IP4, T_PROTO, T_SVC), 12, NFT_DATA_VERDICT, 0 },
	[S(NOEP, 1)] = { "noep6", NFT_SET_MAP, C3(T_IP6, T_PROTO, T_SVC), 24, NFT_DATA_VERDICT, 0 },
	[S(NOEPNP, 0)] = { "noepnp4", NFT_SET_MAP, C2(T_PROTO, T_SVC), 8, NFT_DATA_VERDICT, 0 },
	[S(NOEPNP, 1)] = { "noepnp6", NFT_SET_MAP, C2(T_PROTO, T_SVC), 8, NFT_DATA_VERDICT, 0 },
	/* frontend -> goto fw-N (source ranges) */
	[S(FW, 0)] = { "fw4", NFT_SET_MAP, C3(T_IP4, T_PROTO, T_SVC), 12, NFT_DATA_VERDICT, 0 },
	[S(FW, 1)] = { "fw6", NFT_SET_MAP, C3(T_IP6, T_PROTO, T_SVC), 24, NFT_DATA_VERDICT, 0 },
	/* group . slot -> address . port */
	[S(SLOTS, 0)] = { "slots4", NFT_SET_MAP, C2(T_MARK, T_MARK), 8, C2(T_IP4, T_SVC), 8 },
	[S(SLOTS, 1)] = { "slots6", NFT_SET_MAP, C2(T_MARK, T_MARK), 8, C2(T_IP6, T_SVC), 20 },
	/* affinity groups: group . endpoint id -> address . port */
	[S(EPV, 0)] = { "epv4", NFT_SET_MAP, C2(T_MARK, T_MARK), 8, C2(T_IP4, T_SVC), 8 },
	[S(EPV, 1)] = { "epv6", NFT_SET_MAP, C2(T_MARK, T_MARK), 8, C2(T_IP6, T_SVC), 20 },
	/* saddr . group -> endpoint id */
	[S(AFF, 0)] = { "aff4", NFT_SET_MAP | NFT_SET_TIMEOUT | NFT_SET_EVAL, C2(T_IP4, T_MARK), 8, T_MARK, 4 },
	[S(AFF, 1)] = { "aff6", NFT_SET_MAP | NFT_SET_TIMEOUT | NFT_SET_EVAL, C2(T_IP6, T_MARK), 20, T_MARK, 4 },
	/* hairpin: saddr . daddr of a local endpoint after DNAT */
	[S(HP, 0)] = { "hp4", 0, C2(T_IP4, T_IP4), 8, 0, 0 },
	[S(HP, 1)] = { "hp6", 0, C2(T_IP6, T_IP6), 32, 0, 0 },
	/* frontend -> group, read back by the shared dispatch chains */
	[S(GINT, 0)] = { "gint4", NFT_SET_MAP, C3(T_IP4, T_PROTO, T_SVC), 12, T_MARK, 4 },
	[S(GINT, 1)] = { "gint6", NFT_SET_MAP, C3(T_IP6, T_PROTO, T_SVC), 24, T_MARK, 4 },
	[S(GEXT, 0)] = { "gext4", NFT_SET_MAP, C3(T_IP4, T_PROTO, T_SVC), 12, T_MARK, 4 },
	[S(GEXT, 1)] = { "gext6", NFT_SET_MAP, C3(T_IP6, T_PROTO, T_SVC), 24, T_MARK, 4 },
	[S(GCLU, 0)] = { "gclu4", NFT_SET_MAP, C3(T_IP4, T_PROTO, T_SVC), 12, T_MARK, 4 },
	[S(GCLU, 1)] = { "gclu6", NFT_SET_MAP, C3(T_IP6, T_PROTO, T_SVC), 24, T_MARK, 4 },
	[S(GNPEXT, 0)] = { "gnpext4", NFT_SET_MAP, C2(T_PROTO, T_SVC), 8, T_MARK, 4 },
	[S(GNPEXT, 1)] = { "gnpext6", NFT_SET_MAP, C2(T_PROTO, T_SVC), 8, T_MARK, 4 },
	[S(GNPCLU, 0)] = { "gnpclu4", NFT_SET_MAP, C2(T_PROTO, T_SVC), 8, T_MARK, 4 },
	[S(GNPCLU, 1)] = { "gnpclu6", NFT_SET_MAP, C2(T_PROTO, T_SVC), 8, T_MARK, 4 },
	/* endpoint count . random in [0, SEL_M) -> slot index */
	[S(SEL, 0)] = { "sel4", NFT_SET_MAP, C2(T_MARK, T_MARK), 8, T_MARK, 4 },
	[S(SEL, 1)] = { "sel6", NFT_SET_MAP, C2(T_MARK, T_MARK), 8, T_MARK, 4 },
	/* group -> endpoint count */
	[S(GN, 0)] = { "gn4", NFT_SET_MAP, T_MARK, 4, T_MARK, 4 },
	[S(GN, 1)] = { "gn6", NFT_SET_MAP, T_MARK, 4, T_MARK, 4 },
	/* affinity groups: group . slot -> endpoint id (their @slots) */
	[S(SID, 0)] = { "sid4", NFT_SET_MAP, C2(T_MARK, T_MARK), 8, T_MARK, 4 },
	[S(SID, 1)] = { "sid6", NFT_SET_MAP, C2(T_MARK, T_MARK), 8, T_MARK, 4 },
};

int kpx_nft_set_by_name(const char *name)
{
	for (int i = 0; i < KPX_NFT_NSETS; i++)
		if (!strcmp(kpx_nft_setspecs[i].name, name))
			return i;
	return -1;
}

static uint64_t fnv64(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s; s++) {
		h ^= (uint8_t)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

/* Ids of validated objects (63 + 63 + 15 and the rest) fit whole; only
 * names longer than the API allows for a Service (from manifests) are
 * cut, and the hash keeps such keys apart. */
void kpx_nft_svcport_key(const char *id, char out[KPX_NFT_KEY_MAX])
{
	size_t n = strlen(id);

	if (n < KPX_NFT_KEY_MAX - 1 && !strchr(id, '#')) {
		memcpy(out, id, n + 1);
		return;
	}
	snprintf(out, KPX_NFT_KEY_MAX, "%.*s#%016llx", KPX_NFT_KEY_TRUNC, id,
		 (unsigned long long)fnv64(id));
}

bool kpx_nft_key_truncated(const char *key)
{
	return strchr(key, '#') != NULL;
}

int kpx_nft_chain_ud(char *buf, size_t len, const char *prefix,
		     const char *id, uint32_t group)
{
	char key[KPX_NFT_KEY_MAX];
	int n;

	kpx_nft_svcport_key(id, key);
	n = snprintf(buf, len, "%s\t%s\t%u", prefix, key, group);
	/* by construction: prefix 3, key < KPX_NFT_KEY_MAX, group 10 */
	if (n < 0 || (size_t)n >= len || n + 1 > KPX_NFT_USERDATA_MAX)
		return -ERANGE;
	return n + 1;
}

int kpx_nft_ud_field(const char *ud, int idx, char *out, size_t len)
{
	const char *p = ud;
	size_t n;

	for (int i = 0; i < idx; i++) {
		p = strchr(p, '\t');
		if (!p)
			return -1;
		p++;
	}
	n = strcspn(p, "\t");
	if (n >= len)
		n = len - 1;
	memcpy(out, p, n);
	out[n] = 0;
	return 0;
}

/* key: "ns/name:port/PROTO/vF" (port may be empty). */
void kpx_nft_key_names(const char *key, char *ns, size_t nsl, char *name,
		       size_t nl, char *port, size_t pl)
{
	const char *slash = strchr(key, '/'), *colon, *end;

	ns[0] = name[0] = port[0] = 0;
	if (!slash)
		return;
	snprintf(ns, nsl, "%.*s", (int)(slash - key), key);
	colon = strchr(slash + 1, ':');
	if (!colon) {
		snprintf(name, nl, "%s", slash + 1);
		return;
	}
	snprintf(name, nl, "%.*s", (int)(colon - slash - 1), slash + 1);
	end = strchr(colon + 1, '/');
	snprintf(port, pl, "%.*s", end ? (int)(end - colon - 1) : (int)strlen(colon + 1),
		 colon + 1);
}
