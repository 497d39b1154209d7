/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * kpx's conntrack for external flows (map kpx_ct, LRU): two entries per
 * flow, the original direction (client -> frontend) and the reply as it
 * arrives (backend -> node or client). Entries are refreshed at most once
 * a second per flow direction to keep writes off the fast path; the agent
 * expires idle/closed flows (kpx_nodeport_tick) and LRU eviction bounds
 * the table.
 * Owns: kpx_ct entries. Must not: touch packets.
 */
#ifndef KPX_BPF_LIB_CT_H
#define KPX_BPF_LIB_CT_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "bpf/kpx_abi.h"
#include "bpf/lib/parse.h"

/* kpx_ct_value.flags: bpf/kpx_abi.h */

#define KPX_CT_REFRESH_NS 1000000000ULL

static __always_inline void kpx_ct_key_init(struct kpx_ct_key *k,
					    const __u8 *s, const __u8 *d,
					    __be16 sp, __be16 dp, __u8 proto,
					    __u8 family, __u8 dir)
{
	__builtin_memcpy(k->saddr, s, 16);
	__builtin_memcpy(k->daddr, d, 16);
	k->sport = sp;
	k->dport = dp;
	k->proto = proto;
	k->family = family;
	k->dir = dir;
	k->pad = 0;
}

/* Notes activity (and FIN/RST for early expiry) without writing the
 * shared cache line on every packet. */
static __always_inline void kpx_ct_touch(struct kpx_ct_value *v, __u64 now,
					 __u8 tcp_flags)
{
	__u8 fr = tcp_flags & (KPX_TCP_FIN | KPX_TCP_RST);

	if (now - v->last_seen_ns > KPX_CT_REFRESH_NS) {
		v->last_seen_ns = now;
		/* next hop cache lives one refresh period: ask the FIB again */
		v->ifindex = 0;
	}
	if (fr && (v->tcp_flags_seen & fr) != fr)
		v->tcp_flags_seen |= fr;
	/* A new SYN reopens a closed tuple (client port reuse). */
	if ((tcp_flags & KPX_TCP_SYN) && !(tcp_flags & KPX_TCP_ACK) &&
	    v->tcp_flags_seen) {
		v->tcp_flags_seen = 0;
		v->last_seen_ns = now;
	}
}

#endif
