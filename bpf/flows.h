/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The flows the bpf datapath tracks (kpx_ct), for `kpx conntrack`.
 * Owns: nothing. Must not: change maps.
 */
#ifndef KPX_BPF_FLOWS_H
#define KPX_BPF_FLOWS_H

struct json_object;

/* Array of {"protocol","client","frontend","backend","source_nat",
 * "service","idle_seconds"}; -ENOENT when nothing is pinned. */
int kpx_bpf_dump_flows(const char *bpf_root, struct json_object **out);

#endif
