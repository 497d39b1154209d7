/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Header parsing and validation for the NodePort datapath: Ethernet,
 * IPv4 (options, fragments), IPv6 (a bounded chain of extension headers,
 * fragments), TCP/UDP, and the quoted header of ICMP/ICMPv6 errors.
 * What it does not understand, and every malformed frame, is passed on
 * untouched by the caller: nothing is created from such a frame.
 * Owns: struct kpx_pkt. Must not: modify packets.
 */
#ifndef KPX_BPF_LIB_PARSE_H
#define KPX_BPF_LIB_PARSE_H

#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "bpf/kpx_abi.h"

#define KPX_ETH_P_IP 0x0800
#define KPX_ETH_P_IPV6 0x86DD
#define KPX_ETH_HLEN 14
#define KPX_IP_MF 0x2000
#define KPX_IP_OFFSET 0x1fff
#define KPX_IPPROTO_ICMP 1
#define KPX_IPPROTO_TCP 6
#define KPX_IPPROTO_UDP 17
#define KPX_IPPROTO_ICMPV6 58
#define KPX_IPPROTO_HOPOPTS 0
#define KPX_IPPROTO_ROUTING 43
#define KPX_IPPROTO_FRAGMENT 44
#define KPX_IPPROTO_DSTOPTS 60
/* IPv6 extension headers walked before giving up (RFC 8200 4.1 lists at
 * most six in a packet); and the largest L4 offset accepted, Ethernet +
 * IPv6 + 200 bytes of extension headers: bounds for the verifier, and
 * what kpx_tc_linearize pulls into the linear part. */
#define KPX_IPV6_MAX_EXT 6
#define KPX_L4OFF_MAX 254
#define KPX_TCP_FIN 0x01
#define KPX_TCP_SYN 0x02
#define KPX_TCP_RST 0x04
#define KPX_TCP_ACK 0x10

enum kpx_parse_res {
	KPX_PARSE_OK = 0,
	KPX_PARSE_SKIP,	 /* not ours: pass untouched */
	KPX_PARSE_ICMP_ERR, /* ICMP error quoting a TCP/UDP header */
	KPX_PARSE_FRAG,	    /* non-first fragment: ports from kpx_frag */
};

/* kpx_pkt.frag */
enum kpx_frag_kind {
	KPX_FRAG_NONE = 0,
	KPX_FRAG_FIRST, /* offset 0, more fragments: has the L4 header */
	KPX_FRAG_LATER, /* offset > 0: no L4 header */
};

struct kpx_pkt {
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
	__u8 family; /* KPX_AF_INET/6 */
	__u8 proto;  /* TCP/UDP, or the quoted one for ICMP errors */
	__u8 tcp_flags;
	__u8 icmp_type;
	__u16 l3off; /* outer IP header */
	__u16 l4off; /* outer L4 header (ICMP for errors) */
	__u16 in_l3off; /* quoted IP header of an ICMP error */
	__u16 in_l4off;
	__u32 len;   /* frame length */
	__u8 frag;   /* enum kpx_frag_kind */
	/* fragments: the datagram's identity (kpx_frag_key): IPv4 protocol
	 * or the IPv6 Fragment header's next header, and the IPv4 (16-bit,
	 * as stored) or IPv6 identification */
	__u8 frag_nh;
	__u16 pad;
	__u32 frag_id;
};

/* memcmp() is not available to BPF programs; addresses are 4 or 16 bytes. */
static __always_inline bool kpx_addr_eq(const __u8 *a, const __u8 *b,
					__u32 len)
{
	__u32 x = 0;

#pragma unroll
	for (int i = 0; i < 16; i++)
		if (i < len)
			x |= a[i] ^ b[i];
	return !x;
}

/* Parses the quoted header of an ICMP error into p (inner tuple, as the
 * quoted packet travelled). */
static __always_inline int kpx_parse_inner(void *data, void *data_end,
					   struct kpx_pkt *p, __u32 off)
{
	if (p->family == KPX_AF_INET) {
		struct iphdr *ip = data + off;
		__u32 ihl;

		if ((void *)(ip + 1) > data_end)
			return KPX_PARSE_SKIP;
		ihl = ip->ihl * 4;
		if (ihl < 20 || (ip->frag_off & bpf_htons(KPX_IP_OFFSET)))
			return KPX_PARSE_SKIP;
		p->proto = ip->protocol;
		__builtin_memcpy(p->saddr, &ip->saddr, 4);
		__builtin_memcpy(p->daddr, &ip->daddr, 4);
		p->in_l3off = off;
		off += ihl;
	} else {
		struct ipv6hdr *ip6 = data + off;

		if ((void *)(ip6 + 1) > data_end)
			return KPX_PARSE_SKIP;
		p->proto = ip6->nexthdr;
		__builtin_memcpy(p->saddr, &ip6->saddr, 16);
		__builtin_memcpy(p->daddr, &ip6->daddr, 16);
		p->in_l3off = off;
		off += sizeof(*ip6);
	}
	if (p->proto != KPX_IPPROTO_TCP && p->proto != KPX_IPPROTO_UDP)
		return KPX_PARSE_SKIP;
	/* Only the first 8 bytes of L4 are guaranteed to be quoted. */
	if (off > 200 || data + off + 8 > data_end)
		return KPX_PARSE_SKIP;
	p->sport = *(__be16 *)(data + off);
	p->dport = *(__be16 *)(data + off + 2);
	p->in_l4off = off;
	return KPX_PARSE_ICMP_ERR;
}

/*
 * IPv4 header checksum over ihl bytes (20..60; the caller checked the
 * first 20 against the packet end): true when valid.
 * Verifier workaround: the options are summed by a bounded loop that is
 * kept rolled, with a barrier on each word's pointer (clang otherwise
 * merges the per-word bound checks into one the verifier rejects); bpf_csum_diff() would need a
 * length the verifier can bound, which a value read from the packet is
 * not.
 */
static __always_inline bool kpx_ip4_csum_ok(const void *ip, __u32 ihl,
					    const void *data_end)
{
	const __u32 *w = ip;
	__u64 s = (__u64)w[0] + w[1] + w[2] + w[3] + w[4];

#pragma clang loop unroll(disable)
	for (__u32 i = 5; i < 15; i++) {
		const __u32 *q = w + i;

		if (i * 4 >= ihl)
			break;
		/* keeps clang from folding the per-word checks into one
		 * it computes with pkt_end - pkt (rejected) */
		barrier_var(q);
		if ((const void *)(q + 1) > data_end)
			return false;
		s += *q;
	}
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return s == 0xffff;
}

/* IPv6 extension headers kpx_parse steps over (RFC 8200 4.1); AH, ESP
 * and unknown ones end the walk (not ours). */
static __always_inline bool kpx_ip6_is_ext(__u8 nh)
{
	return nh == KPX_IPPROTO_HOPOPTS || nh == KPX_IPPROTO_ROUTING ||
	       nh == KPX_IPPROTO_FRAGMENT || nh == KPX_IPPROTO_DSTOPTS;
}

/*
 * Parses and validates the frame in [data, data_end) whose full length
 * is frame_len (tc: skb->len, which may exceed the linear part; XDP:
 * data_end - data). Validation comes before any state is created: a
 * frame with a bad IPv4 version/IHL/header checksum, a total or payload
 * length longer than the frame or shorter than its headers, truncated
 * L3/L4 headers, a TCP data offset below 5 or beyond the segment, a UDP
 * length outside the datagram, or an IPv6 extension header chain that
 * is malformed, too long (KPX_IPV6_MAX_EXT, KPX_L4OFF_MAX) or names an
 * intermediate destination (routing header, segments left != 0) is
 * KPX_PARSE_SKIP: passed to the stack untouched (see README "Invalid
 * frames"). Returns KPX_PARSE_FRAG for a non-first fragment (no L4
 * header; the caller looks its ports up in kpx_frag).
 */
/* Verifier workaround: a subprogram, not inlined, so that the
 * validation's temporaries stay out of the programs' own frames (the
 * 512-byte combined stack limit with the ICMP error and new-flow
 * subprograms). */
static __attribute__((noinline)) int kpx_parse(void *data, void *data_end,
					       struct kpx_pkt *p,
					       __u32 frame_len)
{
	struct ethhdr *eth = data;
	__u32 off = KPX_ETH_HLEN, l3_end;

	if (!p || (void *)(eth + 1) > data_end)
		return KPX_PARSE_SKIP;
	p->len = data_end - data;
	p->l3off = off;
	p->tcp_flags = 0;
	p->icmp_type = 0;
	p->frag = KPX_FRAG_NONE;
	p->frag_nh = 0;
	p->frag_id = 0;
	p->sport = p->dport = 0;
	__builtin_memset(p->saddr, 0, 32);
	if (eth->h_proto == bpf_htons(KPX_ETH_P_IP)) {
		struct iphdr *ip = data + off;
		__u32 ihl, tot;
		__u16 fo;

		if ((void *)(ip + 1) > data_end)
			return KPX_PARSE_SKIP;
		ihl = ip->ihl * 4;
		if (ip->version != 4 || ihl < 20)
			return KPX_PARSE_SKIP;
		if (!kpx_ip4_csum_ok(ip, ihl, data_end))
			return KPX_PARSE_SKIP;
		tot = bpf_ntohs(ip->tot_len);
		/* BIG TCP: GSO packets over 64 KiB carry total length 0 */
		if (!tot && frame_len - off > 0xffff)
			tot = frame_len - off;
		if (tot < ihl || tot > frame_len - off)
			return KPX_PARSE_SKIP;
		l3_end = off + tot;
		p->family = KPX_AF_INET;
		p->proto = ip->protocol;
		__builtin_memcpy(p->saddr, &ip->saddr, 4);
		__builtin_memcpy(p->daddr, &ip->daddr, 4);
		off += ihl;
		fo = bpf_ntohs(ip->frag_off);
		if (fo & (KPX_IP_MF | KPX_IP_OFFSET)) {
			p->frag = (fo & KPX_IP_OFFSET) ? KPX_FRAG_LATER :
							 KPX_FRAG_FIRST;
			p->frag_id = ip->id;
			p->frag_nh = ip->protocol;
		}
	} else if (eth->h_proto == bpf_htons(KPX_ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + off;
		bool seen_frag = false;
		__u32 plen;
		__u8 nh;

		if ((void *)(ip6 + 1) > data_end)
			return KPX_PARSE_SKIP;
		if (ip6->version != 6)
			return KPX_PARSE_SKIP;
		plen = bpf_ntohs(ip6->payload_len);
		/* BIG TCP (IPv6): GSO packets over 64 KiB carry length 0 */
		if (!plen && frame_len - off - 40 > 0xffff)
			plen = frame_len - off - 40;
		if (frame_len - off < 40 || plen > frame_len - off - 40)
			return KPX_PARSE_SKIP;
		l3_end = off + 40 + plen;
		p->family = KPX_AF_INET6;
		__builtin_memcpy(p->saddr, &ip6->saddr, 16);
		__builtin_memcpy(p->daddr, &ip6->daddr, 16);
		nh = ip6->nexthdr;
		off += sizeof(*ip6);
		/* Extension headers, the DSR Destination Options header
		 * (kpx_abi.h) among them: a bounded walk. Verifier
		 * workaround: unrolled, and off re-bounded by KPX_L4OFF_MAX
		 * in every round so each packet access stays provable. */
#pragma unroll
		for (int i = 0; i < KPX_IPV6_MAX_EXT; i++) {
			__u8 *x = data + off;
			__u32 xlen;

			if (!kpx_ip6_is_ext(nh))
				break;
			/* hop-by-hop only right after the IPv6 header */
			if (nh == KPX_IPPROTO_HOPOPTS && i)
				return KPX_PARSE_SKIP;
			if ((void *)(x + 8) > data_end)
				return KPX_PARSE_SKIP;
			if (nh == KPX_IPPROTO_FRAGMENT) {
				__u16 fo = ((__u16)x[2] << 8) | x[3];

				if (seen_frag)
					return KPX_PARSE_SKIP;
				seen_frag = true;
				xlen = 8;
				/* offset 0 without M: an atomic fragment
				 * (RFC 6946), a whole datagram */
				if (fo & 0xfff8)
					p->frag = KPX_FRAG_LATER;
				else if (fo & 1)
					p->frag = KPX_FRAG_FIRST;
				__builtin_memcpy(&p->frag_id, x + 4, 4);
				p->frag_nh = x[0];
			} else {
				/* segments left != 0: we are not the final
				 * destination, the stack routes it on */
				if (nh == KPX_IPPROTO_ROUTING && x[3])
					return KPX_PARSE_SKIP;
				xlen = ((__u32)x[1] + 1) * 8;
			}
			nh = x[0];
			off += xlen;
			if (off > l3_end || off > KPX_L4OFF_MAX)
				return KPX_PARSE_SKIP;
			if (p->frag == KPX_FRAG_LATER)
				break;
		}
		if (kpx_ip6_is_ext(nh) && p->frag != KPX_FRAG_LATER)
			return KPX_PARSE_SKIP; /* more than KPX_IPV6_MAX_EXT */
		p->proto = nh;
	} else {
		return KPX_PARSE_SKIP;
	}
	p->l4off = off;
	if (p->frag == KPX_FRAG_LATER)
		return KPX_PARSE_FRAG;
	if (p->proto == KPX_IPPROTO_TCP) {
		struct tcphdr *th = data + off;
		__u32 doff;

		if ((void *)(th + 1) > data_end)
			return KPX_PARSE_SKIP;
		doff = th->doff * 4;
		if (doff < 20 || off + doff > l3_end)
			return KPX_PARSE_SKIP;
		p->sport = th->source;
		p->dport = th->dest;
		p->tcp_flags = ((__u8 *)th)[13];
		return KPX_PARSE_OK;
	}
	if (p->proto == KPX_IPPROTO_UDP) {
		struct udphdr *uh = data + off;
		__u32 ulen;

		if ((void *)(uh + 1) > data_end || off + 8 > l3_end)
			return KPX_PARSE_SKIP;
		/* a first fragment's UDP length is the whole datagram's */
		ulen = bpf_ntohs(uh->len);
		if (ulen < 8 || (!p->frag && ulen > l3_end - off))
			return KPX_PARSE_SKIP;
		p->sport = uh->source;
		p->dport = uh->dest;
		return KPX_PARSE_OK;
	}
	if (p->frag)
		return KPX_PARSE_SKIP; /* fragmented ICMP: not ours */
	if ((p->family == KPX_AF_INET && p->proto == KPX_IPPROTO_ICMP) ||
	    (p->family == KPX_AF_INET6 && p->proto == KPX_IPPROTO_ICMPV6)) {
		__u8 *ic = data + off;

		if ((void *)(ic + 8) > data_end || off + 8 > l3_end)
			return KPX_PARSE_SKIP;
		p->icmp_type = ic[0];
		if (p->family == KPX_AF_INET) {
			/* destination unreachable, time exceeded */
			if (ic[0] != 3 && ic[0] != 11)
				return KPX_PARSE_SKIP;
		} else {
			/* unreachable, packet too big, time exceeded */
			if (ic[0] < 1 || ic[0] > 3)
				return KPX_PARSE_SKIP;
		}
		return kpx_parse_inner(data, data_end, p, off + 8);
	}
	return KPX_PARSE_SKIP;
}

#endif
