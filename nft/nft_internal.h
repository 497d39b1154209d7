/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared by the parts of the nft backend (not a public interface):
 *   nft.c        sync: the diff against what is programmed, the
 *                transaction, failure isolation, resync, tick, ops;
 *   nft_rows.c   the translation of a svcport's rows into chain shapes
 *                (which chains, which origin rules, which elements);
 *   nft_rules.c  rule and chain messages: the static skeleton, the
 *                per-svcport chains, the shared dispatch/masquerade chains;
 *   nft_elems.c  element bookkeeping: accumulation, ownership and
 *                reference counts, the per-svcport elements, @sel tables;
 *   nft_affinity.c  the affinity carry-over of a table rebuild.
 * Owns: struct kpx_backend.
 */
#ifndef KPX_NFT_INTERNAL_H
#define KPX_NFT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/backend.h"
#include "nft/nft_batch.h"
#include "nft/nft_schema.h"
#include "nft/nft_seam.h"

#define NSETS KPX_NFT_NSETS
#define SET(kind, v6) KPX_NFT_SET(KPX_NFT_S_##kind, v6)
#define SEL_M KPX_NFT_SEL_M

/* ------------------------------------------------------------ shapes */

/* What the rows of one frontend need (nft_rows.c). */
struct kpx_nft_fe_shape {
	uint8_t entry;		/* set whose chain the frontend element enters */
	uint8_t sets;		/* bit per set used by some row */
	bool noep;		/* some origin's set is empty: */
	uint8_t empty;		/*   its enum kpx_empty_action */
	bool fw;		/* source ranges checked */
};

/* Rules at the head of a set chain, before its dispatch: origins whose
 * row leaves the chain (another set) and the masquerade of the rest. */
struct kpx_nft_prefix {
	bool node_branch, pod_branch;
	uint8_t node_set, pod_set;   /* targets of the branches */
	uint8_t node_masq, pod_masq; /* on the branch */
	char masq[4];		     /* "pnr" letters, "" when no masquerade */
};

/* Everything the chains and elements of one svcport are made from. */
struct kpx_nft_shape {
	bool chain[3];		      /* set chains, by enum kpx_plan_set */
	bool is_entry[3];	      /* some frontend enters it */
	struct kpx_nft_prefix pre[3]; /* of entry chains */
	bool fw;
	bool fw_node_exempt, fw_pod_exempt;
	struct kpx_nft_fe_shape *fe; /* by frontend index; NULL: none */
	size_t n_fe;
};

/* Translates sp's rows (input: cluster CIDRs, to tell pods apart).
 * 0, -ENOMEM, or -EINVAL with why filled: a combination of rows this
 * backend cannot express. shape_free releases fe. */
int kpx_nft_shape(const struct kpx_plan_input *in,
		  const struct kpx_plan_svcport *sp, struct kpx_nft_shape *s,
		  char *why, size_t whylen);
void kpx_nft_shape_free(struct kpx_nft_shape *s);
/* Same chains and rules (the elements may still differ). */
bool kpx_nft_shape_same_rules(const struct kpx_nft_shape *a,
			      const struct kpx_nft_shape *b);

/* ----------------------------------------------------------- backend */

/* Frontend-ish elements are owned by one svcport (a second svcport
 * claiming the same key is a conflict and is skipped); npaddr and hairpin
 * elements are shared and reference-counted. */
struct ref {
	struct ref *next;
	uint32_t owner, refs;
	uint8_t set, klen;
	uint8_t key[32];
};

/* One programmed svcport; kept in an array sorted by id like the plan,
 * so a sync diffs by one merge walk. */
struct spstate {
	struct kpx_plan_svcport *sp; /* deep copy of what is programmed */
	uint64_t hash;		     /* the plan's hash of sp */
	uint32_t num;
};

/* A svcport a sync programs: new (st == SIZE_MAX) or changed. */
struct todo {
	size_t i;  /* plan index */
	size_t st; /* state index */
	uint32_t num;
	struct kpx_nft_shape shape;  /* of the plan's svcport */
	struct kpx_nft_shape oshape; /* of the programmed one (changed) */
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
#define ELEMS_PER_MSG 256

struct ctdel {
	uint8_t family;
	struct kpx_addr addr;
	uint16_t port;
};

/* A svcport a sync could not program, for the agent's report. */
struct kpx_nft_skip {
	char id[KPX_SVCPORT_ID_MAX];
	char why[160];
};

struct kpx_backend {
	struct kpx_config cfg;
	struct mnl_socket *nl;
	struct kpx_nft_io io;
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
	/* what the last sync left out */
	struct kpx_nft_skip *skipped;
	size_t n_skipped, cap_skipped;
	char skip_msg[1024];
	/* per-sync scratch */
	struct kpx_nft_batch batch;
	struct eacc acc[2][NSETS]; /* [0]=del, [1]=add */
	struct ctdel *ctdels;
	size_t n_ctdels, cap_ctdels;
	char (*shared)[KPX_NFT_SHARED_NAME_MAX]; /* shared chains that exist */
	size_t n_shared, cap_shared;
	uint32_t cap[NSETS]; /* set capacities given at the last full sync */
	uint32_t selref[2][SEL_M + 1]; /* groups of each size, per family */
	bool selpresent[2][SEL_M + 1];
	bool selsaved[2][SEL_M + 1]; /* selpresent before a transaction */
	int err;
};

uint32_t kpx_nft_fnv(const void *p, size_t n, uint32_t h);
int kpx_nft_reserve(void **p, size_t *cap, size_t need, size_t size);

/* nft_elems.c */
void kpx_nft_elem(struct kpx_backend *b, int add, int set, const void *key,
		  size_t klen, const char *chain, int verdict,
		  const void *data, size_t dlen, const void *ud, size_t udlen);
void kpx_nft_elem_put(struct kpx_backend *b, int add, int set,
		      const void *key, size_t klen, const char *chain,
		      int verdict, const void *data, size_t dlen,
		      const void *ud, size_t udlen, uint64_t timeout,
		      uint64_t expires);
void kpx_nft_acc_flush_all(struct kpx_backend *b, int add);
void kpx_nft_refs_clear(struct kpx_backend *b);
/* All elements of one svcport (fe=false: only those that follow its
 * endpoints: slots, epv, sid, gn, hairpin). */
void kpx_nft_emit_elems(struct kpx_backend *b, int add,
			const struct kpx_plan_svcport *sp,
			const struct kpx_nft_shape *s, uint32_t num, bool fe);
void kpx_nft_sel_emit(struct kpx_backend *b, int add, int f, uint32_t n);
bool kpx_nft_sel_near(const struct kpx_backend *b, int f, uint32_t n);
bool kpx_nft_sel_used(const struct kpx_backend *b, int f);
#define SEL_ALWAYS 16u
#define SEL_SPARE 32u
size_t kpx_nft_ep_data(uint8_t *d, const struct kpx_plan_endpoint *ep);
uint32_t kpx_nft_ep_id(const uint8_t *data, size_t dl, const uint32_t *ids,
		       size_t i);
size_t kpx_nft_group_n(const struct kpx_plan_svcport *sp, size_t n);

/* nft_rules.c */
void kpx_nft_chain_name(char *buf, const char *pfx, uint32_t num);
void kpx_nft_table_msg(struct kpx_backend *b, uint16_t type, uint16_t flags);
void kpx_nft_emit_static(struct kpx_backend *b, const size_t *cnt);
void kpx_nft_emit_chains(struct kpx_backend *b,
			 const struct kpx_plan_svcport *sp,
			 const struct kpx_nft_shape *s, uint32_t num,
			 const struct kpx_nft_shape *old);
void kpx_nft_delete_chains(struct kpx_backend *b, uint32_t num,
			   const struct kpx_nft_shape *old,
			   const struct kpx_nft_shape *nw);
size_t kpx_nft_shape_chains(const struct kpx_nft_shape *s);

/* nft_affinity.c */
size_t kpx_nft_carry_affinity(struct kpx_backend *b,
			      const struct kpx_plan *plan);

#endif
