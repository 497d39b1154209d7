/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reading table inet kpx back from the kernel (nft/nft_dump.c): what
 * nft/nft.c needs from it besides `kpx status`/`kpx services`, namely
 * element counts for the resync drift check and the affinity state that a
 * rebuild of the table carries over.
 * Owns: the snapshots it returns. Must not: modify the kernel.
 */
#ifndef KPX_NFT_DUMP_H
#define KPX_NFT_DUMP_H

#include <stddef.h>
#include <stdint.h>

#include "plan/plan.h"

struct mnl_socket;
struct json_object;
struct kpx_config;

/* The backend's inspection ops (agent/backend.h). */
int kpx_nft_dump_datapath(const struct kpx_config *cfg, struct json_object **out);
int kpx_nft_dump_frontends(const struct kpx_config *cfg, struct json_object **out);

/* aff4/aff6: saddr . group -> endpoint id, with the time left. */
struct kpx_nft_aff_elem {
	uint8_t saddr[16];
	uint32_t group, id;
	uint64_t expires_ms; /* remaining; 0: no timeout */
};

/* An affinity group and the svcport that owns it, from the userdata of
 * the svc-/ext-/clu- chains: id is the svcport key (nft_schema.h). */
struct kpx_nft_aff_group {
	uint32_t group;
	char id[KPX_SVCPORT_ID_MAX];
};

struct kpx_nft_aff_snap {
	struct kpx_nft_aff_elem *aff[2]; /* [0] v4, [1] v6 */
	size_t n_aff[2];
	struct kpx_nft_aff_group *groups;
	size_t n_groups;
};

/* The nftables ruleset generation of the netns: every committed
 * transaction, by anyone, moves it; packets adding set elements do not. */
int kpx_nft_gen(struct mnl_socket *nl, uint32_t *gen);
/* Chains of table inet kpx in the kernel; -ENOENT when there is none. */
int kpx_nft_count_chains(size_t *n);
/* Elements of each of n sets (counted, not stored), on one socket. */
int kpx_nft_count_elems(const char *const *sets, size_t n, size_t *counts);
/*
 * The affinity entries of table inet kpx and the svcports of the groups
 * they name (read only when there is at least one entry: the chains of
 * those groups one by one when they are few, else one chain dump).
 * -ENOENT when there is no table.
 */
int kpx_nft_read_affinity(struct kpx_nft_aff_snap *s);
void kpx_nft_aff_snap_free(struct kpx_nft_aff_snap *s);

struct kpx_config;
/* Frontends as `kpx services` shows them (from the table); -ENOENT when
 * there is no kpx table. */
int kpx_nft_dump_frontends(const struct kpx_config *cfg, struct json_object **out);

#endif
