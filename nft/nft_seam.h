/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The seam at the netlink batch: the nft backend sends each transaction,
 * reads the ruleset generation and the affinity entries to carry over
 * through these calls. The agent gets the kernel's; a unit test gets its
 * own, captures the exact messages one sync emits and renders them as
 * nft-like text (kpx_nft_render), without root.
 * Owns: nothing.
 */
#ifndef KPX_NFT_SEAM_H
#define KPX_NFT_SEAM_H

#include <stddef.h>
#include <stdint.h>

#include "agent/backend.h"
#include "nft/nft_batch.h"

struct kpx_nft_aff_snap;

struct kpx_nft_io {
	void *ctx;
	/* Sends one batch (not yet closed: kpx_nft_batch_send closes it);
	 * 0 or the kernel's first negative errno, nothing applied then. */
	int (*send)(void *ctx, struct kpx_nft_batch *b);
	/* The ruleset generation; NULL: unknown (never "unchanged"). */
	int (*gen)(void *ctx, uint32_t *gen);
	/* The affinity entries of the table being replaced; -ENOENT: none. */
	int (*read_affinity)(void *ctx, struct kpx_nft_aff_snap *s);
};

/* nft_open with io instead of a netlink socket. */
int kpx_nft_open_io(const struct kpx_config *cfg, const struct kpx_nft_io *io,
		    struct kpx_backend **out);

/*
 * The messages of a batch as text, one object per line, in batch order:
 *   add table inet kpx / delete table inet kpx
 *   add chain NAME [{ type T hook H priority P }] [ud "USERDATA"]
 *   flush chain NAME / delete chain NAME
 *   add rule CHAIN [ expr ] [ expr ] ...   (libnftnl's expression text)
 *   add set NAME (key KEYTYPE [: DATATYPE]) [size N]
 *   add element SET { KEY [: DATA] } [ud ...] / delete element SET { KEY }
 * Keys and data are decoded by the set's types (addresses, protocol,
 * port, mark values); the SEL_M elements of one @sel table are one line
 * "add element selF { N . 0-4095 } (4096 elements)".
 * Returns a malloc'd string, or NULL when out of memory.
 */
char *kpx_nft_render(const struct kpx_nft_batch *b);

#endif
