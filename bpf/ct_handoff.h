/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Hands the flows kpx's tc/XDP datapath translated over to the kernel's
 * conntrack before `kpx cleanup` removes the programs (ct_handoff.c).
 * Owns: nothing persistent. Must not: change kpx's maps.
 */
#ifndef KPX_BPF_CT_HANDOFF_H
#define KPX_BPF_CT_HANDOFF_H

/* Returns the number of flows handed over, or a negative errno. */
int kpx_bpf_ct_handoff(const char *bpf_root);

#endif
