/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Internet checksum arithmetic for the NodePort datapath (RFC 1624
 * incremental updates). Sums are taken over memory as stored, so byte
 * order never needs converting.
 * Owns: checksum math. Must not: touch packets or maps.
 */
#ifndef KPX_BPF_LIB_CSUM_H
#define KPX_BPF_LIB_CSUM_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

static __always_inline __u16 kpx_csum_fold(__u64 s)
{
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

/* What bpf_csum_diff(old, 4n, new, 4n, 0) returns (a 32-bit one's
 * complement partial sum of ~old and new), without the helper call: on
 * the per-packet path the call costs more than the arithmetic. */
static __always_inline __u32 kpx_csum_words(const __u32 *o, const __u32 *n,
					    const int words)
{
	__u64 s = 0;

#pragma unroll
	for (int i = 0; i < words; i++) {
		s += (__u32)~o[i];
		s += n[i];
	}
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffffffff) + (s >> 32);
	return (__u32)s;
}

/* Applies a bpf_csum_diff() result to a stored checksum. */
/* diff may be a sum of several partial sums: wider than 32 bits. */
static __always_inline __u16 kpx_csum_apply(__u16 old, __u64 diff)
{
	return kpx_csum_fold((__u64)(__u16)~old + diff);
}

/* Same, for a UDP checksum: 0 means "none" in IPv4 and stays 0; a
 * computed 0 is sent as 0xffff (RFC 768). */
static __always_inline __u16 kpx_csum_apply_udp(__u16 old, __u64 diff)
{
	__u16 n;

	if (!old)
		return 0;
	n = kpx_csum_apply(old, diff);
	return n ? n : 0xffff;
}

#endif
