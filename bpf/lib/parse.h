/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Header parsing for the NodePort datapath: Ethernet, IPv4 (no
 * fragments), IPv6 (no extension headers), TCP/UDP, and the quoted
 * header of ICMP/ICMPv6 errors. What it does not understand is passed on
 * untouched by the caller.
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
#define KPX_TCP_FIN 0x01
#define KPX_TCP_SYN 0x02
#define KPX_TCP_RST 0x04
#define KPX_TCP_ACK 0x10

enum kpx_parse_res {
	KPX_PARSE_OK = 0,
	KPX_PARSE_SKIP,	 /* not ours: pass untouched */
	KPX_PARSE_ICMP_ERR, /* ICMP error quoting a TCP/UDP header */
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

static __always_inline int kpx_parse(void *data, void *data_end,
				     struct kpx_pkt *p)
{
	struct ethhdr *eth = data;
	__u32 off = KPX_ETH_HLEN;

	if ((void *)(eth + 1) > data_end)
		return KPX_PARSE_SKIP;
	p->len = data_end - data;
	p->l3off = off;
	p->tcp_flags = 0;
	p->icmp_type = 0;
	__builtin_memset(p->saddr, 0, 32);
	if (eth->h_proto == bpf_htons(KPX_ETH_P_IP)) {
		struct iphdr *ip = data + off;
		__u32 ihl;

		if ((void *)(ip + 1) > data_end)
			return KPX_PARSE_SKIP;
		ihl = ip->ihl * 4;
		if (ihl < 20)
			return KPX_PARSE_SKIP;
		/* Later fragments carry no ports; first fragments would
		 * need reassembly state we do not keep: both go to the
		 * stack untouched. */
		if (ip->frag_off & bpf_htons(KPX_IP_MF | KPX_IP_OFFSET))
			return KPX_PARSE_SKIP;
		p->family = KPX_AF_INET;
		p->proto = ip->protocol;
		__builtin_memcpy(p->saddr, &ip->saddr, 4);
		__builtin_memcpy(p->daddr, &ip->daddr, 4);
		off += ihl;
	} else if (eth->h_proto == bpf_htons(KPX_ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + off;

		if ((void *)(ip6 + 1) > data_end)
			return KPX_PARSE_SKIP;
		p->family = KPX_AF_INET6;
		/* Extension headers are skipped (passed to the stack), but
		 * for the DSR Destination Options header (kpx_abi.h) alone:
		 * the backend node learns the reply translation from it. */
		p->proto = ip6->nexthdr;
		__builtin_memcpy(p->saddr, &ip6->saddr, 16);
		__builtin_memcpy(p->daddr, &ip6->daddr, 16);
		off += sizeof(*ip6);
		if (p->proto == 60) {
			__u8 *x = data + off;

			if ((void *)(x + KPX_DSR6_HDR_LEN) > data_end)
				return KPX_PARSE_SKIP;
			if (x[1] != KPX_DSR6_HDR_LEN / 8 - 1 ||
			    x[2] != KPX_DSR6_OPT_TYPE ||
			    x[3] != KPX_DSR6_OPT_LEN)
				return KPX_PARSE_SKIP;
			p->proto = x[0];
			off += KPX_DSR6_HDR_LEN;
		}
	} else {
		return KPX_PARSE_SKIP;
	}
	p->l4off = off;
	if (p->proto == KPX_IPPROTO_TCP) {
		struct tcphdr *th = data + off;

		if ((void *)(th + 1) > data_end)
			return KPX_PARSE_SKIP;
		p->sport = th->source;
		p->dport = th->dest;
		p->tcp_flags = ((__u8 *)th)[13];
		return KPX_PARSE_OK;
	}
	if (p->proto == KPX_IPPROTO_UDP) {
		struct udphdr *uh = data + off;

		if ((void *)(uh + 1) > data_end)
			return KPX_PARSE_SKIP;
		p->sport = uh->source;
		p->dport = uh->dest;
		return KPX_PARSE_OK;
	}
	if ((p->family == KPX_AF_INET && p->proto == KPX_IPPROTO_ICMP) ||
	    (p->family == KPX_AF_INET6 && p->proto == KPX_IPPROTO_ICMPV6)) {
		__u8 *ic = data + off;

		if ((void *)(ic + 8) > data_end)
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
