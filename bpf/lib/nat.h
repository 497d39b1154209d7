/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Address/port rewriting for the NodePort datapath, for tc (skb helpers,
 * which keep CHECKSUM_PARTIAL/COMPLETE skbs right) and XDP (direct writes
 * with incremental checksums). `xdp` is always a literal, so the unused
 * variant is compiled out after inlining.
 * Owns: packet rewrites. Must not: look at maps.
 */
#ifndef KPX_BPF_LIB_NAT_H
#define KPX_BPF_LIB_NAT_H

#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "bpf/lib/csum.h"
#include "bpf/lib/parse.h"

#ifndef BPF_F_PSEUDO_HDR
#define BPF_F_PSEUDO_HDR (1ULL << 4)
#define BPF_F_MARK_MANGLED_0 (1ULL << 5)
#endif

static __always_inline void *kpx_data(void *ctx, const bool xdp)
{
	if (xdp)
		return (void *)(long)((struct xdp_md *)ctx)->data;
	return (void *)(long)((struct __sk_buff *)ctx)->data;
}

static __always_inline void *kpx_data_end(void *ctx, const bool xdp)
{
	if (xdp)
		return (void *)(long)((struct xdp_md *)ctx)->data_end;
	return (void *)(long)((struct __sk_buff *)ctx)->data_end;
}

/* Offset of the L4 checksum field from the L4 header. */
static __always_inline __u32 kpx_l4_csum_off(__u8 proto)
{
	return proto == KPX_IPPROTO_TCP ? 16 : 6;
}

/* Rewrites the TCP/UDP tuple of p to (ns, nd, nsp, ndp). Addresses are
 * 4 or 16 bytes as p->family says. A non-first fragment gets the
 * addresses only (its datagram's ports and L4 checksum are in the first
 * fragment). Returns 0 or -1 (packet too short). */
static __always_inline int kpx_nat_l4(void *ctx, const bool xdp,
				      const struct kpx_pkt *p, const __u8 *ns,
				      const __u8 *nd, __be16 nsp, __be16 ndp)
{
	const bool v4 = p->family == KPX_AF_INET;
	const bool udp = p->proto == KPX_IPPROTO_UDP;
	/* a non-first fragment: no L4 header (lib/frag.h) */
	const bool later = p->frag == KPX_FRAG_LATER;
	__u32 csum_off = p->l4off + kpx_l4_csum_off(p->proto);
	__u32 aoff = p->l3off + (v4 ? 12 : 8);
	__u32 olda[8], newa[8];
	__be16 oldp[2] = { p->sport, p->dport };
	__be16 newp[2] = { nsp, ndp };
	__s64 adiff, pdiff;

	if (v4) {
		__builtin_memcpy(olda, p->saddr, 4);
		__builtin_memcpy(olda + 1, p->daddr, 4);
		__builtin_memcpy(newa, ns, 4);
		__builtin_memcpy(newa + 1, nd, 4);
		adiff = kpx_csum_words(olda, newa, 2);
	} else {
		__builtin_memcpy(olda, p->saddr, 16);
		__builtin_memcpy(olda + 4, p->daddr, 16);
		__builtin_memcpy(newa, ns, 16);
		__builtin_memcpy(newa + 4, nd, 16);
		adiff = kpx_csum_words(olda, newa, 8);
	}
	pdiff = kpx_csum_words((__u32 *)oldp, (__u32 *)newp, 1);

	if (!xdp) {
		struct __sk_buff *skb = ctx;
		__u64 mangled = udp ? BPF_F_MARK_MANGLED_0 : 0;

		if (v4 && bpf_l3_csum_replace(skb, p->l3off + 10, 0, adiff, 0))
			return -1;
		if (later) {
			/* Addresses only. IPv6 has no header checksum to
			 * absorb the change: keep a CHECKSUM_COMPLETE
			 * skb's sum right (IPv4's header checksum does). */
			if (bpf_skb_store_bytes(skb, aoff, newa, v4 ? 8 : 32,
						v4 ? 0 : BPF_F_RECOMPUTE_CSUM))
				return -1;
			return 0;
		}
		if (bpf_l4_csum_replace(skb, csum_off, 0, adiff,
					BPF_F_PSEUDO_HDR | mangled))
			return -1;
		if (bpf_l4_csum_replace(skb, csum_off, 0, pdiff, mangled))
			return -1;
		if (bpf_skb_store_bytes(skb, aoff, newa, v4 ? 8 : 32, 0))
			return -1;
		if (bpf_skb_store_bytes(skb, p->l4off, newp, 4, 0))
			return -1;
		return 0;
	} else {
		void *data = kpx_data(ctx, true);
		void *data_end = kpx_data_end(ctx, true);
		__u16 *csum;
		__be16 *ports;

		if (p->l4off > KPX_L4OFF_MAX)
			return -1;
		ports = data + p->l4off;
		csum = data + (p->l4off + kpx_l4_csum_off(p->proto));
		if (later) {
			/* no L4 header in this fragment: addresses only */
		} else {
			if ((void *)(ports + 2) > data_end)
				return -1;
			if ((void *)(csum + 1) > data_end)
				return -1;
			if (udp)
				*csum = kpx_csum_apply_udp(
					*csum, (__u64)(__u32)adiff +
						       (__u32)pdiff);
			else
				*csum = kpx_csum_apply(*csum,
						       (__u64)(__u32)adiff +
							       (__u32)pdiff);
			ports[0] = nsp;
			ports[1] = ndp;
		}
		if (v4) {
			struct iphdr *ip = data + KPX_ETH_HLEN;

			if ((void *)(ip + 1) > data_end)
				return -1;
			ip->check = kpx_csum_apply(ip->check, adiff);
			__builtin_memcpy(&ip->saddr, newa, 8);
		} else {
			struct ipv6hdr *ip6 = data + KPX_ETH_HLEN;

			if ((void *)(ip6 + 1) > data_end)
				return -1;
			__builtin_memcpy(&ip6->saddr, newa, 32);
		}
		return 0;
	}
}

/*
 * Rewrites an ICMP error whose quoted packet belongs to a translated flow.
 * The quoted packet travelled opposite to the error, so it gets the
 * inverse rewrite: its source becomes (nd, ndp), its destination
 * (ns, nsp). The outer source/destination are replaced only where they
 * equal the flow's old endpoints (an error from a router in between keeps
 * that router's address). The quoted L4 checksum is left alone (it may
 * not even be quoted and no receiver checks it); the quoted IPv4 header
 * checksum is fixed.
 */
static __always_inline int kpx_nat_icmp_err(void *ctx, const bool xdp,
					    const struct kpx_pkt *p,
					    const __u8 *ns, const __u8 *nd,
					    __be16 nsp, __be16 ndp)
{
	const bool v4 = p->family == KPX_AF_INET;
	const __u32 alen = v4 ? 4 : 16;
	void *data = kpx_data(ctx, xdp), *data_end = kpx_data_end(ctx, xdp);
	__u8 oldo[32], newo[32]; /* outer saddr, daddr */
	__u8 oldi[40], newi[40]; /* quoted IP header */
	__be16 oldp[2], newp[2];
	__s64 odiff, idiff, pdiff, icmp_diff;
	__u32 in_l3 = p->in_l3off, in_l4 = p->in_l4off;
	__u32 ilen = v4 ? 20 : 40;

	if (in_l3 > 200 || in_l4 > 240)
		return -1;
	if (v4) {
		struct iphdr *ip = data + KPX_ETH_HLEN;
		struct iphdr *in = data + in_l3;

		if ((void *)(ip + 1) > data_end || (void *)(in + 1) > data_end)
			return -1;
		__builtin_memcpy(oldo, &ip->saddr, 8);
		__builtin_memcpy(oldi, in, 20);
	} else {
		struct ipv6hdr *ip6 = data + KPX_ETH_HLEN;
		struct ipv6hdr *in = data + in_l3;

		if ((void *)(ip6 + 1) > data_end || (void *)(in + 1) > data_end)
			return -1;
		__builtin_memcpy(oldo, &ip6->saddr, 32);
		__builtin_memcpy(oldi, in, 40);
	}
	{
		__be16 *pp = data + in_l4;

		if ((void *)(pp + 2) > data_end)
			return -1;
		oldp[0] = pp[0];
		oldp[1] = pp[1];
	}
	__builtin_memcpy(newo, oldo, 32);
	__builtin_memcpy(newi, oldi, 40);
	/* Quoted packet: src p->saddr (== key daddr), dst p->daddr. */
	if (v4) {
		/* outer src: the quoted destination (the peer) answered */
		if (kpx_addr_eq(oldo, p->daddr, 4))
			__builtin_memcpy(newo, ns, 4);
		if (kpx_addr_eq(oldo + 4, p->saddr, 4))
			__builtin_memcpy(newo + 4, nd, 4);
		__builtin_memcpy(newi + 12, nd, 4);
		__builtin_memcpy(newi + 16, ns, 4);
		{
			/* keep the quoted header's own checksum valid */
			__u16 c = *(__u16 *)(oldi + 10);
			__s64 d = bpf_csum_diff((void *)(oldi + 12), 8,
						(void *)(newi + 12), 8, 0);

			*(__u16 *)(newi + 10) = kpx_csum_apply(c, d);
		}
		odiff = bpf_csum_diff((void *)oldo, 8, (void *)newo, 8, 0);
		idiff = bpf_csum_diff((void *)oldi, 20, (void *)newi, 20, 0);
	} else {
		if (kpx_addr_eq(oldo, p->daddr, 16))
			__builtin_memcpy(newo, ns, 16);
		if (kpx_addr_eq(oldo + 16, p->saddr, 16))
			__builtin_memcpy(newo + 16, nd, 16);
		__builtin_memcpy(newi + 8, nd, 16);
		__builtin_memcpy(newi + 24, ns, 16);
		odiff = bpf_csum_diff((void *)oldo, 32, (void *)newo, 32, 0);
		idiff = bpf_csum_diff((void *)oldi, 40, (void *)newi, 40, 0);
	}
	newp[0] = ndp;
	newp[1] = nsp;
	pdiff = bpf_csum_diff((void *)oldp, 4, (void *)newp, 4, 0);
	/* ICMPv4's checksum has no pseudo header; ICMPv6's has. */
	icmp_diff = (__u64)(__u32)idiff + (__u32)pdiff;

	if (!xdp) {
		struct __sk_buff *skb = ctx;
		__u32 coff = p->l4off + 2;

		if (v4 && bpf_l3_csum_replace(skb, KPX_ETH_HLEN + 10, 0, odiff,
					      0))
			return -1;
		if (bpf_l4_csum_replace(skb, coff, 0,
					kpx_csum_fold(icmp_diff) ^ 0xffff, 0))
			return -1;
		if (!v4 && bpf_l4_csum_replace(skb, coff, 0, odiff,
					       BPF_F_PSEUDO_HDR))
			return -1;
		if (bpf_skb_store_bytes(skb, KPX_ETH_HLEN + (v4 ? 12 : 8), newo,
					v4 ? 8 : 32, 0))
			return -1;
		if (bpf_skb_store_bytes(skb, in_l3, newi, v4 ? 20 : 40, 0))
			return -1;
		if (bpf_skb_store_bytes(skb, in_l4, newp, 4, 0))
			return -1;
	} else {
		__u16 *csum = data + p->l4off + 2;
		__be16 *pp = data + in_l4;
		__u64 tot = icmp_diff;

		if (p->l4off > 80)
			return -1;
		if ((void *)(csum + 1) > data_end || (void *)(pp + 2) > data_end)
			return -1;
		if (!v4)
			tot += (__u32)odiff;
		*csum = kpx_csum_apply(*csum, kpx_csum_fold(tot) ^ 0xffff);
		pp[0] = newp[0];
		pp[1] = newp[1];
		if (v4) {
			struct iphdr *ip = data + KPX_ETH_HLEN;
			struct iphdr *in = data + in_l3;

			if ((void *)(ip + 1) > data_end ||
			    (void *)(in + 1) > data_end)
				return -1;
			ip->check = kpx_csum_apply(ip->check, odiff);
			__builtin_memcpy(&ip->saddr, newo, 8);
			__builtin_memcpy(in, newi, 20);
		} else {
			struct ipv6hdr *ip6 = data + KPX_ETH_HLEN;
			struct ipv6hdr *in = data + in_l3;

			if ((void *)(ip6 + 1) > data_end ||
			    (void *)(in + 1) > data_end)
				return -1;
			__builtin_memcpy(&ip6->saddr, newo, 32);
			__builtin_memcpy(in, newi, 40);
		}
	}
	(void)alen;
	(void)ilen;
	return 0;
}

/*
 * DSR (tc only): inserts the 8-byte DSR option (kpx_abi.h) right after
 * the 20-byte IPv4 header of a packet without options, for frontend
 * fe:fe_port, and fixes IHL, total length and the header checksum. The
 * L4 checksum does not cover IP options. The packet grows by 8 bytes:
 * skb pointers are invalid afterwards. Returns 0 or -1.
 */
static __always_inline int kpx_dsr_opt_push(struct __sk_buff *skb, __u32 l3off,
					    const __u8 *fe, __be16 fe_port)
{
	__u8 w0[4], nw0[4], opt[KPX_DSR_OPT_LEN];
	__s64 diff;

	if (bpf_skb_load_bytes(skb, l3off, w0, 4))
		return -1;
	if ((w0[0] & 0x0f) != 5)
		return -1;
	__builtin_memcpy(nw0, w0, 4);
	nw0[0] = (w0[0] & 0xf0) | 7;
	*(__be16 *)(nw0 + 2) =
		bpf_htons(bpf_ntohs(*(__be16 *)(w0 + 2)) + KPX_DSR_OPT_LEN);
	opt[0] = KPX_DSR_OPT_TYPE;
	opt[1] = KPX_DSR_OPT_LEN;
	__builtin_memcpy(opt + 2, &fe_port, 2);
	__builtin_memcpy(opt + 4, fe, 4);
	diff = bpf_csum_diff((__be32 *)w0, 4, (__be32 *)nw0, 4, 0);
	diff = bpf_csum_diff(0, 0, (__be32 *)opt, KPX_DSR_OPT_LEN, diff);
	/* BPF_ADJ_ROOM_NET opens the room after the base IPv4 header
	 * (20 bytes), which is where options go when there are none. */
	if (bpf_skb_adjust_room(skb, KPX_DSR_OPT_LEN, BPF_ADJ_ROOM_NET, 0))
		return -1;
	if (bpf_skb_store_bytes(skb, l3off, nw0, 4, 0) ||
	    bpf_skb_store_bytes(skb, l3off + 20, opt, KPX_DSR_OPT_LEN, 0))
		return -1;
	if (bpf_l3_csum_replace(skb, l3off + 10, 0, diff, 0))
		return -1;
	return 0;
}

/*
 * DSR, IPv6 (tc only): inserts the 24-byte Destination Options header
 * (kpx_abi.h) right after the 40-byte IPv6 header of a packet without
 * extension headers, for frontend fe:fe_port, and fixes the next header
 * chain and the payload length. The L4 checksum does not change: the
 * pseudo-header's upper-layer length and addresses are the same, the
 * extension header is not covered. Skb pointers are invalid afterwards.
 * Returns 0 or -1.
 */
static __always_inline int kpx_dsr6_hdr_push(struct __sk_buff *skb,
					     __u32 l3off, const __u8 *fe,
					     __be16 fe_port)
{
	/* small buffers, fe stored from where it is: the combined stack
	 * of the call chain is near the 512-byte limit */
	__u8 w1[4], hdr[8];

	/* payload length (2), next header (1), hop limit (1) */
	if (bpf_skb_load_bytes(skb, l3off + 4, w1, 4))
		return -1;
	hdr[0] = w1[2];
	hdr[1] = KPX_DSR6_HDR_LEN / 8 - 1;
	hdr[2] = KPX_DSR6_OPT_TYPE;
	hdr[3] = KPX_DSR6_OPT_LEN;
	__builtin_memcpy(hdr + 4, &fe_port, 2);
	hdr[6] = 1; /* PadN, no data: the last 2 bytes */
	hdr[7] = 0;
	*(__be16 *)w1 =
		bpf_htons(bpf_ntohs(*(__be16 *)w1) + KPX_DSR6_HDR_LEN);
	w1[2] = 60; /* IPPROTO_DSTOPTS */
	/* BPF_ADJ_ROOM_NET opens the room after the 40-byte IPv6 header */
	if (bpf_skb_adjust_room(skb, KPX_DSR6_HDR_LEN, BPF_ADJ_ROOM_NET, 0))
		return -1;
	if (bpf_skb_store_bytes(skb, l3off + 4, w1, 4, 0) ||
	    bpf_skb_store_bytes(skb, l3off + 40, hdr, 6, 0) ||
	    bpf_skb_store_bytes(skb, l3off + 46, fe, 16, 0) ||
	    bpf_skb_store_bytes(skb, l3off + 62, hdr + 6, 2, 0))
		return -1;
	return 0;
}

/*
 * DSR (tc only): lowers the MSS option of a SYN(-ACK) by the DSR option's
 * len bytes (8 for the IPv4 option, 24 for the IPv6 header), so that the peer's full-size segments still fit the path MTU
 * once the option is added to them (oversize packets would be dropped at
 * the next device: a redirected packet gets no "fragmentation needed"
 * back). Only when MSS is the first TCP option, which is where Linux,
 * Windows and the BSDs put it; other SYNs are left alone. Returns 0 or -1.
 */
static __always_inline int kpx_dsr_clamp_mss(struct __sk_buff *skb,
					     __u32 l4off, __u16 len)
{
	__u8 th[24];
	__be16 old, nw;
	__u16 mss;

	if (bpf_skb_load_bytes(skb, l4off, th, 24))
		return 0; /* no room for an option: nothing to clamp */
	if ((th[12] >> 4) < 6 || th[20] != 2 || th[21] != 4)
		return 0;
	__builtin_memcpy(&old, th + 22, 2);
	mss = bpf_ntohs(old);
	if (mss <= 536 + len)
		return 0;
	nw = bpf_htons(mss - len);
	if (bpf_l4_csum_replace(skb, l4off + 16, old, nw, 2))
		return -1;
	return bpf_skb_store_bytes(skb, l4off + 22, &nw, 2, 0) ? -1 : 0;
}

#endif
