/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The service flows of the nft backend (kernel conntrack), for
 * `kpx conntrack`. Owns: nothing. Must not: change conntrack.
 */
#ifndef KPX_NFT_FLOWS_H
#define KPX_NFT_FLOWS_H

struct json_object;
struct kpx_config;

/* Array like kpx_bpf_dump_flows's, "timeout_seconds" instead of
 * "idle_seconds"; -ENOENT when no kpx table exists. */
int kpx_nft_dump_flows(const struct kpx_config *cfg, struct json_object **out);

#endif
