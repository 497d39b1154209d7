/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Keeps the kernel's NAT engine applying the translations of connections
 * kube-proxy made before kpx's bpf backend took over the node (see
 * nat_keep.c).
 * Owns: nftables table inet kpx-nat. Must not: touch any other table.
 */
#ifndef KPX_BPF_NAT_KEEP_H
#define KPX_BPF_NAT_KEEP_H

#define KPX_NAT_KEEP_TABLE "kpx-nat"

/* Adds table inet kpx-nat when kube-proxy's NAT state exists.
 * Returns 1 when added (or already there), 0 when not needed, or a
 * negative errno. */
int kpx_bpf_nat_keep_open(void);
/* Removes table inet kpx-nat. Returns 1 when removed, 0 when absent, or
 * a negative errno. */
int kpx_bpf_nat_keep_cleanup(void);

#endif
