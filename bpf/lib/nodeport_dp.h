/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The NodePort/ExternalIP/LoadBalancer datapath shared by the tc and XDP
 * programs: service lookup, backend selection, conntrack, NAT, reject
 * replies and forwarding. Every function takes `xdp` as a literal so each
 * program gets only its own helpers.
 * Owns: per-packet decisions. Must not: write kpx_svc/slots/backends.
 */
#ifndef KPX_BPF_LIB_NODEPORT_DP_H
#define KPX_BPF_LIB_NODEPORT_DP_H

#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "bpf/kpx_abi.h"
#include "bpf/lib/csum.h"
#include "bpf/lib/ct.h"
#include "bpf/lib/flood.h"
#include "bpf/lib/frag.h"
#include "bpf/lib/lb.h"
#include "bpf/lib/maps.h"
#include "bpf/lib/nat.h"
#include "bpf/lib/parse.h"

#define KPX_AF_INET_SYS 2
#define KPX_AF_INET6_SYS 10

/* Internal verdicts, mapped to TC_ACT_* / XDP_* by the programs; for
 * REDIRECT/NEIGH the egress ifindex is in the bits above KPX_V_SHIFT. */
#define KPX_V_SHIFT 8
#define KPX_V_MASK 0xff
enum kpx_verdict {
	KPX_V_PASS = 0, /* untouched or translated, to the stack */
	KPX_V_DROP,
	KPX_V_TX,	/* bounced out of the ingress device */
	KPX_V_REDIRECT, /* out of kpx_fwd.oif, MACs filled */
	KPX_V_NEIGH,	/* tc: out of kpx_fwd.oif, kernel resolves L2 */
	KPX_V_REJECT,	/* internal: answer with RST / port unreachable */
};

struct kpx_fwd {
	__u32 oif;
	struct bpf_fib_lookup fib;
};

/* Per-CPU scratch for the new-flow path: its conntrack entries and FIB
 * request would not fit in the 512-byte stack together with the caller's
 * frame (verifier limit on the combined stack of a call chain). Private
 * to this object, not pinned. */
struct kpx_np_scratch {
	struct kpx_ct_value v0, v1;
	struct kpx_ct_key rk;
	struct kpx_fwd f;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct kpx_np_scratch);
	__uint(max_entries, 1);
} kpx_np_scratch SEC(".maps");

/*
 * Next hop per backend for new SNAT flows: their FIB question (node
 * address -> backend, from the ingress device) is the same for every
 * flow to a backend, so the answer of one serves the next for as long
 * as a conntrack entry's own next-hop cache lives (KPX_CT_REFRESH_NS).
 * A new flow then skips bpf_fib_lookup, and its entry starts with the
 * next hop filled (the flow's second packet skips it too). Direct-mapped
 * on the backend id, tagged with it (a slot shared by two backends is a
 * miss, then a FIB lookup). Private to this object, not pinned: nothing
 * outside the datapath reads it.
 */
#define KPX_NH_SLOTS 16384u /* power of two */

struct kpx_nh_entry {
	__u8 addr[16]; /* the backend's: a reused backend id is a miss */
	__u32 backend_id;
	__u32 iif;
	__u32 oif;
	__u8 dmac[6];
	__u8 smac[6];
	__u64 ts; /* 0: being written */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct kpx_nh_entry);
	__uint(max_entries, KPX_NH_SLOTS);
} kpx_nh SEC(".maps");

/* Fills f (oif, MACs) from the cache; false on a miss. ts is read before
 * and after the copy: a writer (of another backend sharing the slot) in
 * between zeroed or changed it, and the copy may be torn. */
static __always_inline bool kpx_nh_get(__u32 bid, const __u8 *addr,
				       __u32 iif, __u64 now, struct kpx_fwd *f)
{
	__u32 slot = bid & (KPX_NH_SLOTS - 1);
	struct kpx_nh_entry *n = bpf_map_lookup_elem(&kpx_nh, &slot);
	__u64 ts;

	if (!n)
		return false;
	ts = n->ts;
	barrier();
	if (!ts || now - ts > KPX_CT_REFRESH_NS || n->backend_id != bid ||
	    n->iif != iif || !kpx_addr_eq(n->addr, addr, 16))
		return false;
	f->oif = n->oif;
	__builtin_memcpy(f->fib.dmac, n->dmac, 6);
	__builtin_memcpy(f->fib.smac, n->smac, 6);
	barrier();
	return n->ts == ts && n->backend_id == bid;
}

static __always_inline void kpx_nh_put(__u32 bid, const __u8 *addr,
				       __u32 iif, __u64 now,
				       const struct kpx_fwd *f)
{
	__u32 slot = bid & (KPX_NH_SLOTS - 1);
	struct kpx_nh_entry *n = bpf_map_lookup_elem(&kpx_nh, &slot);

	if (!n)
		return;
	n->ts = 0;
	barrier();
	__builtin_memcpy(n->addr, addr, 16);
	n->backend_id = bid;
	n->iif = iif;
	n->oif = f->oif;
	__builtin_memcpy(n->dmac, f->fib.dmac, 6);
	__builtin_memcpy(n->smac, f->fib.smac, 6);
	barrier();
	n->ts = now;
}

static __always_inline __u32 kpx_ifindex(void *ctx, const bool xdp)
{
	if (xdp)
		return ((struct xdp_md *)ctx)->ingress_ifindex;
	return ((struct __sk_buff *)ctx)->ifindex;
}

static __always_inline void kpx_count_svc(__u32 svc_id, __u32 len, bool new)
{
	struct kpx_counter *c = bpf_map_lookup_elem(&kpx_svc_stats, &svc_id);

	if (!c)
		return;
	c->packets++;
	c->bytes += len;
	if (new)
		c->connections++;
}

/* FIB lookup for a packet from src to dst. Returns the BPF_FIB_LKUP_RET_*
 * code; on success/no-neigh f->oif is the egress device. */
static __always_inline int kpx_fib(void *ctx, const bool xdp, __u8 family,
				   const __u8 *src, const __u8 *dst,
				   struct kpx_fwd *f)
{
	struct bpf_fib_lookup *fib = &f->fib;
	int rc;

	__builtin_memset(fib, 0, sizeof(*fib));
	fib->ifindex = kpx_ifindex(ctx, xdp);
	if (family == KPX_AF_INET) {
		fib->family = KPX_AF_INET_SYS;
		__builtin_memcpy(&fib->ipv4_src, src, 4);
		__builtin_memcpy(&fib->ipv4_dst, dst, 4);
	} else {
		fib->family = KPX_AF_INET6_SYS;
		__builtin_memcpy(fib->ipv6_src, src, 16);
		__builtin_memcpy(fib->ipv6_dst, dst, 16);
	}
	rc = bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
	f->oif = fib->ifindex;
	return rc;
}

/* After a translation: hand the packet on according to the FIB result. */
static __always_inline int kpx_forward(void *ctx, const bool xdp, int fib_rc,
				       struct kpx_fwd *f)
{
	void *data, *data_end;
	struct ethhdr *eth;

	if (fib_rc == BPF_FIB_LKUP_RET_NO_NEIGH && !xdp)
		return KPX_V_NEIGH | (f->oif << KPX_V_SHIFT);
	if (fib_rc != BPF_FIB_LKUP_RET_SUCCESS) {
		/* e.g. forwarding disabled: the stack routes it. */
		kpx_count_drop(KPX_DROP_FIB_FAILED);
		return KPX_V_PASS;
	}
	data = kpx_data(ctx, xdp);
	data_end = kpx_data_end(ctx, xdp);
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return KPX_V_DROP;
	__builtin_memcpy(eth->h_dest, f->fib.dmac, 6);
	__builtin_memcpy(eth->h_source, f->fib.smac, 6);
	if (xdp && f->oif == kpx_ifindex(ctx, xdp))
		return KPX_V_TX;
	return KPX_V_REDIRECT | (f->oif << KPX_V_SHIFT);
}

static __always_inline __u32 kpx_flow_hash(const struct kpx_pkt *p)
{
	__u32 h = 0x9e3779b9, w;

#pragma unroll
	for (int i = 0; i < 16; i += 4) {
		__builtin_memcpy(&w, p->saddr + i, 4);
		h = (h ^ w) * 0x01000193;
	}
	h = (h ^ (((__u32)p->sport << 16) | p->proto)) * 0x01000193;
	h ^= h >> 15;
	h *= 0x2c1b3c6d;
	h ^= h >> 12;
	return h;
}

/* Picks a backend id for a new flow: affinity, then maglev or a random
 * slot of the active generation. Returns 0 or -1. */
static __always_inline int kpx_select(const struct kpx_pkt *p,
				      const struct kpx_svc_value *svc,
				      __u64 now, __u32 *backend_id)
{
	struct kpx_affinity_key ak;
	struct kpx_affinity_value *av, nav = {};
	__u32 id;

	if (svc->flags & KPX_SVC_F_AFFINITY) {
		__builtin_memset(&ak, 0, sizeof(ak));
		ak.svc_id = svc->svc_id;
		ak.family = p->family;
		__builtin_memcpy(ak.client, p->saddr, 16);
		av = bpf_map_lookup_elem(&kpx_affinity, &ak);
		if (av && now - av->last_used_ns <
				  (__u64)svc->affinity_timeout * 1000000000ULL &&
		    bpf_map_lookup_elem(&kpx_backends, &av->backend_id)) {
			av->last_used_ns = now;
			*backend_id = av->backend_id;
			return 0;
		}
	}
	/* Maglev: consistent per flow; random otherwise (lb.h, shared with
	 * the socket LB so both pick from the same generation). */
	id = kpx_lb_pick(svc, svc->flags & KPX_SVC_F_MAGLEV ?
				      kpx_flow_hash(p) :
				      bpf_get_prandom_u32());
	if (!id)
		return -1;
	if (svc->flags & KPX_SVC_F_AFFINITY) {
		nav.backend_id = id;
		nav.last_used_ns = now;
		bpf_map_update_elem(&kpx_affinity, &ak, &nav, BPF_ANY);
	}
	*backend_id = id;
	return 0;
}

/* ---- reject replies: TCP RST / ICMP port unreachable, built in place ---- */

struct kpx_pseudo4 {
	__be32 saddr, daddr;
	__u8 zero, proto;
	__be16 len;
};

struct kpx_pseudo6 {
	__u8 saddr[16], daddr[16];
	__be32 len;
	__u8 zero[3], nexthdr;
};

static __always_inline int kpx_resize(void *ctx, const bool xdp, __u32 cur,
				      __u32 want)
{
	if (xdp)
		return bpf_xdp_adjust_tail(ctx, (int)want - (int)cur);
	return bpf_skb_change_tail(ctx, want, 0);
}

static __always_inline int kpx_store(void *ctx, const bool xdp, __u32 off,
				     const void *from, __u32 len)
{
	if (!xdp)
		return bpf_skb_store_bytes(ctx, off, from, len, 0);
	{
		void *data = kpx_data(ctx, true);
		void *data_end = kpx_data_end(ctx, true);

		/* callers pass constant lengths up to 60 bytes */
		if (off > 128 || len > 60 || data + off + len > data_end)
			return -1;
		if (len == 60)
			__builtin_memcpy(data + off, from, 60);
		else if (len == 40)
			__builtin_memcpy(data + off, from, 40);
		else if (len == 28)
			__builtin_memcpy(data + off, from, 28);
		else if (len == 20)
			__builtin_memcpy(data + off, from, 20);
		else if (len == 8)
			__builtin_memcpy(data + off, from, 8);
		else if (len == 12)
			__builtin_memcpy(data + off, from, 12);
		else
			return -1;
		return 0;
	}
}

/* TCP RST answering p (a packet to a frontend without endpoints). */
static __always_inline int kpx_reject_tcp(void *ctx, const bool xdp,
					  const struct kpx_pkt *p)
{
	void *data = kpx_data(ctx, xdp), *data_end = kpx_data_end(ctx, xdp);
	const bool v4 = p->family == KPX_AF_INET;
	struct ethhdr *eth = data;
	struct tcphdr *th;
	struct tcphdr nt;
	__u8 macs[12];
	__u32 seglen, seq, ack, l3len;
	__s64 sum;

	if ((void *)(eth + 1) > data_end || p->l4off > KPX_L4OFF_MAX)
		return KPX_V_DROP;
	th = data + p->l4off;
	if ((void *)(th + 1) > data_end)
		return KPX_V_DROP;
	if (p->tcp_flags & KPX_TCP_RST)
		return KPX_V_DROP;
	__builtin_memcpy(macs, eth->h_source, 6);
	__builtin_memcpy(macs + 6, eth->h_dest, 6);
	if (v4) {
		struct iphdr *ip = data + KPX_ETH_HLEN;

		if ((void *)(ip + 1) > data_end)
			return KPX_V_DROP;
		l3len = bpf_ntohs(ip->tot_len) - ip->ihl * 4;
	} else {
		struct ipv6hdr *ip6 = data + KPX_ETH_HLEN;

		if ((void *)(ip6 + 1) > data_end)
			return KPX_V_DROP;
		l3len = bpf_ntohs(ip6->payload_len);
	}
	seglen = l3len - th->doff * 4;
	if (p->tcp_flags & KPX_TCP_SYN)
		seglen++;
	if (p->tcp_flags & KPX_TCP_FIN)
		seglen++;
	seq = th->seq;
	ack = th->ack_seq;

	__builtin_memset(&nt, 0, sizeof(nt));
	nt.source = p->dport;
	nt.dest = p->sport;
	nt.doff = 5;
	nt.rst = 1;
	if (p->tcp_flags & KPX_TCP_ACK) {
		nt.seq = ack;
	} else {
		nt.ack = 1;
		nt.ack_seq = bpf_htonl(bpf_ntohl(seq) + seglen);
	}
	if (v4) {
		struct kpx_pseudo4 ph = { .zero = 0, .proto = KPX_IPPROTO_TCP,
					  .len = bpf_htons(20) };
		struct iphdr nip = {};

		__builtin_memcpy(&ph.saddr, p->daddr, 4);
		__builtin_memcpy(&ph.daddr, p->saddr, 4);
		sum = bpf_csum_diff(0, 0, (void *)&ph, sizeof(ph), 0);
		sum = bpf_csum_diff(0, 0, (void *)&nt, sizeof(nt), sum);
		nt.check = kpx_csum_fold((__u32)sum);
		nip.version = 4;
		nip.ihl = 5;
		nip.tot_len = bpf_htons(40);
		nip.frag_off = bpf_htons(0x4000);
		nip.ttl = 64;
		nip.protocol = KPX_IPPROTO_TCP;
		nip.saddr = ph.saddr;
		nip.daddr = ph.daddr;
		nip.check = kpx_csum_fold(
			(__u32)bpf_csum_diff(0, 0, (void *)&nip, 20, 0));
		if (kpx_resize(ctx, xdp, p->len, KPX_ETH_HLEN + 40))
			return KPX_V_DROP;
		if (kpx_store(ctx, xdp, 0, macs, 12) ||
		    kpx_store(ctx, xdp, KPX_ETH_HLEN, &nip, 20) ||
		    kpx_store(ctx, xdp, KPX_ETH_HLEN + 20, &nt, 20))
			return KPX_V_DROP;
	} else {
		struct kpx_pseudo6 ph = { .len = bpf_htonl(20),
					  .nexthdr = KPX_IPPROTO_TCP };
		struct ipv6hdr nip = {};

		__builtin_memcpy(ph.saddr, p->daddr, 16);
		__builtin_memcpy(ph.daddr, p->saddr, 16);
		sum = bpf_csum_diff(0, 0, (void *)&ph, sizeof(ph), 0);
		sum = bpf_csum_diff(0, 0, (void *)&nt, sizeof(nt), sum);
		nt.check = kpx_csum_fold((__u32)sum);
		nip.version = 6;
		nip.payload_len = bpf_htons(20);
		nip.nexthdr = KPX_IPPROTO_TCP;
		nip.hop_limit = 64;
		__builtin_memcpy(&nip.saddr, p->daddr, 16);
		__builtin_memcpy(&nip.daddr, p->saddr, 16);
		if (kpx_resize(ctx, xdp, p->len, KPX_ETH_HLEN + 60))
			return KPX_V_DROP;
		if (kpx_store(ctx, xdp, 0, macs, 12) ||
		    kpx_store(ctx, xdp, KPX_ETH_HLEN, &nip, 40) ||
		    kpx_store(ctx, xdp, KPX_ETH_HLEN + 40, &nt, 20))
			return KPX_V_DROP;
	}
	return KPX_V_TX;
}

/* ICMP/ICMPv6 port unreachable answering a UDP packet p: room for the new
 * IP+ICMP header is opened between L2 and the original IP header, which
 * then sits exactly where the quoted header belongs. */
static __always_inline int kpx_reject_udp(void *ctx, const bool xdp,
					  const struct kpx_pkt *p)
{
	void *data = kpx_data(ctx, xdp), *data_end = kpx_data_end(ctx, xdp);
	const bool v4 = p->family == KPX_AF_INET;
	const __u32 room = v4 ? 28 : 48;	/* IP + ICMP header */
	const __u32 quoted = v4 ? 28 : 48;	/* original IP + 8 bytes */
	struct ethhdr *eth = data;
	__u8 macs[12];
	__u8 q[48];
	__u32 icmp[2] = {};
	__s64 sum;

	if ((void *)(eth + 1) > data_end)
		return KPX_V_DROP;
	if (p->l4off != KPX_ETH_HLEN + (v4 ? 20 : 40)) /* no IP options */
		return KPX_V_DROP;
	__builtin_memcpy(macs, eth->h_source, 6);
	__builtin_memcpy(macs + 6, eth->h_dest, 6);
	if (xdp) {
		if (bpf_xdp_adjust_head(ctx, -(int)room))
			return KPX_V_DROP;
	} else {
		if (bpf_skb_adjust_room(ctx, room, BPF_ADJ_ROOM_MAC, 0))
			return KPX_V_DROP;
	}
	if (kpx_resize(ctx, xdp, p->len + room, KPX_ETH_HLEN + room + quoted))
		return KPX_V_DROP;
	data = kpx_data(ctx, xdp);
	data_end = kpx_data_end(ctx, xdp);
	/* Verifier workaround: one bounds check with the per-family sizes
	 * gets merged by clang with the other family's copy; constant
	 * checks next to each copy keep them provable. */
	if (v4) {
		if (data + KPX_ETH_HLEN + 28 + 28 > data_end)
			return KPX_V_DROP;
		__builtin_memcpy(q, data + KPX_ETH_HLEN + 28, 28);
	} else {
		if (data + KPX_ETH_HLEN + 48 + 48 > data_end)
			return KPX_V_DROP;
		__builtin_memcpy(q, data + KPX_ETH_HLEN + 48, 48);
	}
	if (v4) {
		struct iphdr nip = {};

		((__u8 *)icmp)[0] = 3; /* destination unreachable */
		((__u8 *)icmp)[1] = 3; /* port unreachable */
		sum = bpf_csum_diff(0, 0, (void *)icmp, 8, 0);
		sum = bpf_csum_diff(0, 0, (void *)q, 28, sum);
		((__u16 *)icmp)[1] = kpx_csum_fold((__u32)sum);
		nip.version = 4;
		nip.ihl = 5;
		nip.tot_len = bpf_htons(20 + 8 + 28);
		nip.ttl = 64;
		nip.protocol = KPX_IPPROTO_ICMP;
		__builtin_memcpy(&nip.saddr, p->daddr, 4);
		__builtin_memcpy(&nip.daddr, p->saddr, 4);
		nip.check = kpx_csum_fold(
			(__u32)bpf_csum_diff(0, 0, (void *)&nip, 20, 0));
		if (kpx_store(ctx, xdp, KPX_ETH_HLEN, &nip, 20) ||
		    kpx_store(ctx, xdp, KPX_ETH_HLEN + 20, icmp, 8))
			return KPX_V_DROP;
	} else {
		struct kpx_pseudo6 ph = { .len = bpf_htonl(8 + 48),
					  .nexthdr = KPX_IPPROTO_ICMPV6 };
		struct ipv6hdr nip = {};

		((__u8 *)icmp)[0] = 1; /* destination unreachable */
		((__u8 *)icmp)[1] = 4; /* port unreachable */
		__builtin_memcpy(ph.saddr, p->daddr, 16);
		__builtin_memcpy(ph.daddr, p->saddr, 16);
		sum = bpf_csum_diff(0, 0, (void *)&ph, sizeof(ph), 0);
		sum = bpf_csum_diff(0, 0, (void *)icmp, 8, sum);
		sum = bpf_csum_diff(0, 0, (void *)q, 48, sum);
		((__u16 *)icmp)[1] = kpx_csum_fold((__u32)sum);
		nip.version = 6;
		nip.payload_len = bpf_htons(8 + 48);
		nip.nexthdr = KPX_IPPROTO_ICMPV6;
		nip.hop_limit = 64;
		__builtin_memcpy(&nip.saddr, p->daddr, 16);
		__builtin_memcpy(&nip.daddr, p->saddr, 16);
		if (kpx_store(ctx, xdp, KPX_ETH_HLEN, &nip, 40) ||
		    kpx_store(ctx, xdp, KPX_ETH_HLEN + 40, icmp, 8))
			return KPX_V_DROP;
	}
	{
		__u16 proto = bpf_htons(v4 ? KPX_ETH_P_IP : KPX_ETH_P_IPV6);

		if (kpx_store(ctx, xdp, 0, macs, 12))
			return KPX_V_DROP;
		/* adjust_head in XDP left garbage where EtherType goes */
		if (xdp) {
			data = kpx_data(ctx, xdp);
			data_end = kpx_data_end(ctx, xdp);
			if (data + KPX_ETH_HLEN > data_end)
				return KPX_V_DROP;
			*(__u16 *)(data + 12) = proto;
		}
	}
	return KPX_V_TX;
}

/* ---- DSR (--nodeport-mode dsr, tc only): IPv4 option, IPv6 header ---- */

/* Frontend node: adds the DSR option naming p's frontend (p is the packet
 * as it arrived, before translation) to a packet already DNATed to a
 * remote backend. Out of line: its buffers stay out of the callers'
 * frames (512-byte combined stack limit). A client packet that already
 * has IP options has no room we could predictably use: dropped (new
 * flows with options take the SNAT path instead). */
static __attribute__((noinline)) int kpx_dsr_push_tc(struct __sk_buff *skb,
						     const struct kpx_pkt *p)
{
	/* Fragments of a DSR flow travel without the option: a later
	 * fragment has no room we could use, and the backend node learnt
	 * the flow from its unfragmented packets (a flow whose first
	 * packet is a fragment takes the SNAT path, kpx_new_flow). */
	if (p->frag)
		return 0;
	if (p->family == KPX_AF_INET6) {
		if (p->l4off != p->l3off + 40) {
			kpx_count_drop(KPX_DROP_UNSUPPORTED);
			return -1;
		}
		if (kpx_dsr6_hdr_push(skb, p->l3off, p->daddr, p->dport)) {
			kpx_count_drop(KPX_DROP_MALFORMED);
			return -1;
		}
		return 0;
	}
	if (p->l4off != p->l3off + 20) {
		kpx_count_drop(KPX_DROP_UNSUPPORTED);
		return -1;
	}
	if (kpx_dsr_opt_push(skb, p->l3off, p->daddr, p->dport)) {
		kpx_count_drop(KPX_DROP_MALFORMED);
		return -1;
	}
	return 0;
}

/* Backend node, the backend's SYN-ACK: its MSS tells the client how big
 * a segment to send, and every client segment gets the 8-byte option on
 * the frontend node: announce 8 bytes less. */
static __attribute__((noinline)) int kpx_dsr_rev_tc(struct __sk_buff *skb,
						    const struct kpx_pkt *p)
{
	if (p->proto != KPX_IPPROTO_TCP ||
	    (p->tcp_flags & (KPX_TCP_SYN | KPX_TCP_ACK)) !=
		    (KPX_TCP_SYN | KPX_TCP_ACK))
		return 0;
	if (kpx_dsr_clamp_mss(skb, p->l4off,
			      p->family == KPX_AF_INET6 ? KPX_DSR6_HDR_LEN
							: KPX_DSR_OPT_LEN)) {
		kpx_count_drop(KPX_DROP_MALFORMED);
		return -1;
	}
	return 0;
}

/* Backend node: a packet carrying the DSR option (to one of our pods)
 * teaches the reply translation: backend -> client replies get the
 * frontend as their source (kpx_np_ingress's reply lookup on the pod
 * side applies it and forwards straight to the client). The option stays
 * in the packet; the pod's stack ignores it. An existing entry of
 * another kind for the same tuple is left alone. Only in DSR mode: in
 * SNAT mode anyone could otherwise install a reply translation with a
 * crafted option. Returns -1 when the packet is not a DSR packet (the
 * caller goes on with its reply lookup), else the verdict. */
static __attribute__((noinline)) int kpx_dsr_learn(struct __sk_buff *skb,
						   const struct kpx_pkt *p)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u8 *opt = data + KPX_ETH_HLEN + 20;
	struct kpx_dp_config *cfg;
	struct kpx_ct_key k;
	struct kpx_ct_value v, *e;
	__be16 fe_port;
	__u32 alen = 4, zero = 0;
	__u64 now;

	cfg = bpf_map_lookup_elem(&kpx_config, &zero);
	if (!cfg || !(cfg->flags & KPX_DP_F_DSR))
		return -1;
	/* v.new_saddr holds the frontend address from here on */
	__builtin_memset(&v, 0, sizeof(v));
	if (p->family == KPX_AF_INET6) {
		/* kpx_parse checked the header's layout */
		opt = data + KPX_ETH_HLEN + 40;
		if ((void *)(opt + KPX_DSR6_HDR_LEN) > data_end)
			return -1;
		/* the first extension header, a Destination Options
		 * header of our length (kpx_parse walks any chain) */
		if (((__u8 *)data)[KPX_ETH_HLEN + 6] != KPX_IPPROTO_DSTOPTS ||
		    opt[1] != KPX_DSR6_HDR_LEN / 8 - 1 ||
		    opt[2] != KPX_DSR6_OPT_TYPE || opt[3] != KPX_DSR6_OPT_LEN)
			return -1;
		__builtin_memcpy(&fe_port, opt + 4, 2);
		__builtin_memcpy(v.new_saddr, opt + 6, 16);
		alen = 16;
	} else {
		if ((void *)(opt + KPX_DSR_OPT_LEN) > data_end)
			return -1;
		if (opt[0] != KPX_DSR_OPT_TYPE || opt[1] != KPX_DSR_OPT_LEN)
			return -1;
		__builtin_memcpy(&fe_port, opt + 2, 2);
		__builtin_memcpy(v.new_saddr, opt + 4, 4);
	}
	kpx_ct_key_init(&k, p->daddr, p->saddr, p->dport, p->sport, p->proto,
			p->family, KPX_CT_DIR_REPLY);
	now = bpf_ktime_get_coarse_ns();
	e = bpf_map_lookup_elem(&kpx_ct, &k);
	if (e) {
		if (!(e->flags & KPX_CT_F_DSR_REV))
			return KPX_V_PASS;
		if (e->new_sport == fe_port &&
		    kpx_addr_eq(e->new_saddr, v.new_saddr, alen)) {
			kpx_ct_touch(e, now, p->tcp_flags);
			return KPX_V_PASS;
		}
	}
	v.new_sport = fe_port;
	__builtin_memcpy(v.new_daddr, p->saddr, 16);
	v.new_dport = p->sport;
	v.last_seen_ns = now;
	v.flags = KPX_CT_F_DSR_REV;
	v.tcp_flags_seen = p->tcp_flags & (KPX_TCP_FIN | KPX_TCP_RST);
	if (bpf_map_update_elem(&kpx_ct, &k, &v, BPF_ANY))
		kpx_count_drop(KPX_DROP_CT_FULL);
	return KPX_V_PASS;
}

/* ---- the packet paths ---- */

/* Established flow with a cached next hop on the ingress device: no FIB
 * lookup; L2 is the reverse of the incoming frame's with the cached MAC. */
static __always_inline int kpx_apply_cached(void *ctx, const bool xdp,
					    const struct kpx_pkt *p,
					    struct kpx_ct_value *e, __u32 in_if)
{
	void *data, *data_end;
	struct ethhdr *eth;

	if (kpx_nat_l4(ctx, xdp, p, e->new_saddr, e->new_daddr, e->new_sport,
		       e->new_dport)) {
		kpx_count_drop(KPX_DROP_MALFORMED);
		return KPX_V_DROP;
	}
	if (!xdp && (e->flags & KPX_CT_F_DSR) && kpx_dsr_push_tc(ctx, p))
		return KPX_V_DROP;
	if (!xdp && (e->flags & KPX_CT_F_DSR_REV) && kpx_dsr_rev_tc(ctx, p))
		return KPX_V_DROP;
	data = kpx_data(ctx, xdp);
	data_end = kpx_data_end(ctx, xdp);
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return KPX_V_DROP;
	__builtin_memcpy(eth->h_source, eth->h_dest, 6);
	__builtin_memcpy(eth->h_dest, e->nh_mac, 6);
	if (xdp)
		return KPX_V_TX;
	return KPX_V_REDIRECT | (in_if << KPX_V_SHIFT);
}

/* Translates p with a conntrack entry and forwards it. Local-backend
 * original-direction packets go to the stack (routed to the pod); the
 * rest is forwarded with a FIB lookup. XDP leaves what it cannot redirect
 * untouched for tc (XDP_PASS before any write). */
static __always_inline int kpx_apply(void *ctx, const bool xdp,
				     const struct kpx_pkt *p,
				     struct kpx_ct_value *e, bool to_stack)
{
	struct kpx_fwd f;
	__u32 in_if = kpx_ifindex(ctx, xdp);
	int rc = 0;

	if (!to_stack && e->ifindex && e->ifindex == in_if)
		return kpx_apply_cached(ctx, xdp, p, e, in_if);
	if (!to_stack) {
		rc = kpx_fib(ctx, xdp, p->family, e->new_saddr, e->new_daddr,
			     &f);
		if (xdp && rc != BPF_FIB_LKUP_RET_SUCCESS)
			return KPX_V_PASS;
		/* Cache the answer when the packet leaves where it came in
		 * (the usual NodePort case): the source MAC is then the
		 * one the packet was sent to. MAC first, then the device
		 * that validates it. */
		if (rc == BPF_FIB_LKUP_RET_SUCCESS && f.oif == in_if) {
			__builtin_memcpy(e->nh_mac, f.fib.dmac, 6);
			barrier_var(in_if);
			e->ifindex = in_if;
		}
	} else if (xdp) {
		return KPX_V_PASS;
	}
	if (kpx_nat_l4(ctx, xdp, p, e->new_saddr, e->new_daddr, e->new_sport,
		       e->new_dport)) {
		kpx_count_drop(KPX_DROP_MALFORMED);
		return KPX_V_DROP;
	}
	if (!xdp && (e->flags & KPX_CT_F_DSR) && kpx_dsr_push_tc(ctx, p))
		return KPX_V_DROP;
	if (!xdp && (e->flags & KPX_CT_F_DSR_REV) && kpx_dsr_rev_tc(ctx, p))
		return KPX_V_DROP;
	if (to_stack)
		return KPX_V_PASS;
	return kpx_forward(ctx, xdp, rc, &f);
}

/* Verifier workaround: out of line so its FIB request and NAT buffers
 * are not in the caller's frame, which the new-flow subprogram's frame
 * adds to (512-byte combined stack limit). */
static __attribute__((noinline)) int
kpx_apply_tc(struct __sk_buff *skb, const struct kpx_pkt *p,
	     struct kpx_ct_value *e, bool to_stack)
{
	return kpx_apply(skb, false, p, e, to_stack);
}

static __attribute__((noinline)) int kpx_apply_xdp(struct xdp_md *ctx,
						   const struct kpx_pkt *p,
						   struct kpx_ct_value *e)
{
	return kpx_apply(ctx, true, p, e, false);
}

/* Whether p's source is inside the prefixes of kpx_cluster_cidr. */
static __always_inline bool kpx_src_in_cluster(const struct kpx_pkt *p)
{
	struct kpx_cidr_key k = {
		.prefixlen = 32 + (p->family == KPX_AF_INET ? 32 : 128),
		.family = p->family,
	};

	__builtin_memcpy(k.addr, p->saddr, 16);
	return bpf_map_lookup_elem(&kpx_cluster_cidr, &k) != NULL;
}

static __always_inline int kpx_new_flow(void *ctx, const bool xdp,
					const struct kpx_pkt *p,
					const struct kpx_svc_value *svc,
					struct kpx_ct_key *ck, __u64 now)
{
	struct kpx_backend_value *be;
	struct kpx_dp_config *cfg;
	struct kpx_np_scratch *sc;
	__u32 zero = 0, bid;
	bool local, snat, to_stack, dsr;
	int rc = 0;

	if (svc->flags & KPX_SVC_F_SOURCE_RANGES) {
		struct kpx_src_range_key lk = {
			.prefixlen = 32 + (p->family == KPX_AF_INET ? 32 : 128),
			.svc_id = svc->svc_id,
		};

		__builtin_memcpy(lk.addr, p->saddr, 16);
		if (!bpf_map_lookup_elem(&kpx_src_range, &lk)) {
			kpx_count_drop(KPX_DROP_SOURCE_RANGE);
			return KPX_V_DROP;
		}
	}
	if (!svc->count) {
		if (svc->flags & KPX_SVC_F_EMPTY_DROP) {
			kpx_count_drop(KPX_DROP_LOCAL_NONE);
			return KPX_V_DROP;
		}
		kpx_count_drop(KPX_DROP_NO_BACKEND);
		return KPX_V_REJECT;
	}
	if (kpx_select(p, svc, now, &bid)) {
		kpx_count_drop(KPX_DROP_BACKEND_MISSING);
		return KPX_V_DROP;
	}
	be = bpf_map_lookup_elem(&kpx_backends, &bid);
	if (!be) {
		kpx_count_drop(KPX_DROP_BACKEND_MISSING);
		return KPX_V_DROP;
	}
	/* A host endpoint (the node's own address) counts as local. */
	local = be->flags & (KPX_BE_F_LOCAL | KPX_BE_F_HOST);
	if (xdp && local)
		return KPX_V_PASS; /* tc delivers it to the stack */
	/* The entry says whether to SNAT (the plan's masquerade of this
	 * origin). A SNATed packet to a local pod cannot take the stack
	 * path (its source is a local address: martian on input), so it is
	 * forwarded to the pod device like to a remote backend; the pod's
	 * reply comes back through the pod-side ingress hook. A host
	 * endpoint is the stack itself: delivered there, never SNATed
	 * (as a DNAT to a local address takes the input path, where no
	 * masquerade runs). */
	snat = svc->flags & KPX_SVC_F_SNAT;
	if (!snat && (svc->flags & KPX_SVC_F_SNAT_OFF_CLUSTER))
		snat = !kpx_src_in_cluster(p);
	if (be->flags & KPX_BE_F_HOST)
		snat = false;
	to_stack = local && !snat;
	cfg = bpf_map_lookup_elem(&kpx_config, &zero);
	if (!cfg)
		return KPX_V_PASS;
	/* DSR instead of SNAT: remote backends of eTP=Cluster services, IPv4
	 * packets without IP options (room for ours), IPv6 packets without
	 * extension headers, not fragments (kpx_dsr_push_tc), tc only (XDP
	 * leaves the flow to tc, which can grow the packet). */
	dsr = snat && !local && (cfg->flags & KPX_DP_F_DSR) && !p->frag &&
	      ((p->family == KPX_AF_INET && p->l4off == p->l3off + 20) ||
	       (p->family == KPX_AF_INET6 && p->l4off == p->l3off + 40));
	if (dsr && xdp)
		return KPX_V_PASS;
	/* Flood guard (lib/flood.h): above the new-flow rate, a DSR flow of
	 * a Maglev service is forwarded without state; every other new flow
	 * needs its state for the replies and is refused. Verifier
	 * workaround: "stateless" is ck = NULL, not one more variable (the
	 * 512-byte combined stack limit). */
	if (kpx_under_flood(now)) {
		if (!dsr || !(svc->flags & KPX_SVC_F_MAGLEV)) {
			kpx_count_drop(KPX_DROP_FLOOD);
			return KPX_V_DROP;
		}
		ck = NULL;
	}
	if (dsr)
		snat = false;
	sc = bpf_map_lookup_elem(&kpx_np_scratch, &zero);
	if (!sc)
		return KPX_V_PASS;
	__builtin_memset(&sc->v0, 0, sizeof(sc->v0));
	__builtin_memset(&sc->v1, 0, sizeof(sc->v1));

	/* original direction: client -> backend (from node if SNAT) */
	__builtin_memcpy(sc->v0.new_saddr, p->saddr, 16);
	sc->v0.new_sport = p->sport;
	if (snat)
		__builtin_memcpy(sc->v0.new_saddr, p->family == KPX_AF_INET ?
						       cfg->node_ip4 :
						       cfg->node_ip6,
				 16);
	__builtin_memcpy(sc->v0.new_daddr, be->addr, 16);
	sc->v0.new_dport = be->port;
	sc->v0.backend_id = bid;
	sc->v0.svc_id = svc->svc_id;
	sc->v0.last_seen_ns = now;
	sc->v0.flags = (local ? KPX_CT_F_LOCAL : 0) | (snat ? KPX_CT_F_SNAT : 0) |
		       (dsr ? KPX_CT_F_DSR : 0);
	sc->v0.tcp_flags_seen = p->tcp_flags & (KPX_TCP_FIN | KPX_TCP_RST);

	if (!to_stack) {
		__u32 in_if = kpx_ifindex(ctx, xdp);

		/* SNAT: the source is the node address for every flow to
		 * this backend, so its next hop is the backend's (kpx_nh) */
		if (snat && kpx_nh_get(bid, be->addr, in_if, now, &sc->f)) {
			rc = BPF_FIB_LKUP_RET_SUCCESS;
		} else {
			rc = kpx_fib(ctx, xdp, p->family, sc->v0.new_saddr,
				     sc->v0.new_daddr, &sc->f);
			if (snat && rc == BPF_FIB_LKUP_RET_SUCCESS)
				kpx_nh_put(bid, be->addr, in_if, now, &sc->f);
		}
		if (xdp && rc != BPF_FIB_LKUP_RET_SUCCESS)
			return KPX_V_PASS; /* tc retries with neighbour help */
		/* the entry's own next-hop cache, as kpx_apply fills it */
		if (rc == BPF_FIB_LKUP_RET_SUCCESS && sc->f.oif == in_if) {
			__builtin_memcpy(sc->v0.nh_mac, sc->f.fib.dmac, 6);
			sc->v0.ifindex = in_if;
		}
	}

	/* reply direction: as it arrives from the backend */
	__builtin_memcpy(sc->v1.new_saddr, p->daddr, 16);
	sc->v1.new_sport = p->dport;
	__builtin_memcpy(sc->v1.new_daddr, p->saddr, 16);
	sc->v1.new_dport = p->sport;
	sc->v1.backend_id = bid;
	sc->v1.svc_id = svc->svc_id;
	sc->v1.last_seen_ns = now;
	sc->v1.flags = sc->v0.flags;
	if (snat) {
		__u32 lo = cfg->snat_port_min, hi = cfg->snat_port_max;
		__u32 range = hi >= lo ? hi - lo + 1 : 1;
		int i;

		/* Claim a node port no other flow to this backend uses:
		 * the NOEXIST insert of the reply key is the lock. */
#pragma unroll
		for (i = 0; i < 4; i++) {
			__be16 port = bpf_htons(lo + bpf_get_prandom_u32() %
							     range);

			kpx_ct_key_init(&sc->rk, be->addr, sc->v0.new_saddr, be->port,
					port, p->proto, p->family,
					KPX_CT_DIR_REPLY);
			if (!bpf_map_update_elem(&kpx_ct, &sc->rk, &sc->v1,
						 BPF_NOEXIST)) {
				sc->v0.new_sport = port;
				break;
			}
		}
		if (i == 4) {
			kpx_count_drop(KPX_DROP_SNAT_EXHAUSTED);
			return KPX_V_DROP;
		}
	} else if (!dsr) {
		kpx_ct_key_init(&sc->rk, be->addr, p->saddr, be->port, p->sport,
				p->proto, p->family, KPX_CT_DIR_REPLY);
		if (bpf_map_update_elem(&kpx_ct, &sc->rk, &sc->v1, BPF_ANY)) {
			kpx_count_drop(KPX_DROP_CT_FULL);
			return KPX_V_DROP;
		}
	}
	/* DSR: no reply entry, the backend's node answers the client */
	if (ck && bpf_map_update_elem(&kpx_ct, ck, &sc->v0, BPF_ANY)) {
		if (!dsr)
			bpf_map_delete_elem(&kpx_ct, &sc->rk);
		kpx_count_drop(KPX_DROP_CT_FULL);
		return KPX_V_DROP;
	}
	kpx_count_svc(svc->svc_id, p->len, true);
	if (kpx_nat_l4(ctx, xdp, p, sc->v0.new_saddr, sc->v0.new_daddr, sc->v0.new_sport,
		       sc->v0.new_dport)) {
		kpx_count_drop(KPX_DROP_MALFORMED);
		return KPX_V_DROP;
	}
	if (!xdp && dsr && kpx_dsr_push_tc(ctx, p))
		return KPX_V_DROP;
	if (to_stack)
		return KPX_V_PASS;
	return kpx_forward(ctx, xdp, rc, &sc->f);
}

/* Subprograms: each has its own stack frame, so the rarely used reject
 * and new-flow paths do not add up with the fast path in one 512-byte
 * frame (verifier stack limit). */
static __attribute__((noinline)) int
kpx_reject_tc(struct __sk_buff *skb, const struct kpx_pkt *p)
{
	if (p->proto == KPX_IPPROTO_TCP)
		return kpx_reject_tcp(skb, false, p);
	return kpx_reject_udp(skb, false, p);
}

static __attribute__((noinline)) int kpx_reject_xdp(struct xdp_md *ctx,
						    const struct kpx_pkt *p)
{
	if (p->proto == KPX_IPPROTO_TCP)
		return kpx_reject_tcp(ctx, true, p);
	return kpx_reject_udp(ctx, true, p);
}

/* now: the coarse clock of kpx_service, the one every conntrack
 * timestamp is compared with (kpx_ct_touch) */
static __attribute__((noinline)) int
kpx_new_flow_tc(struct __sk_buff *skb, const struct kpx_pkt *p,
		const struct kpx_svc_value *svc, struct kpx_ct_key *ck,
		__u64 now)
{
	return kpx_new_flow(skb, false, p, svc, ck, now);
}

static __attribute__((noinline)) int
kpx_new_flow_xdp(struct xdp_md *ctx, const struct kpx_pkt *p,
		 const struct kpx_svc_value *svc, struct kpx_ct_key *ck,
		 __u64 now)
{
	return kpx_new_flow(ctx, true, p, svc, ck, now);
}

static __always_inline int kpx_service(void *ctx, const bool xdp,
				       const struct kpx_pkt *p,
				       const struct kpx_svc_value *svc)
{
	struct kpx_ct_key ck;
	struct kpx_ct_value *e;
	__u64 now = bpf_ktime_get_coarse_ns();
	int r;

	kpx_ct_key_init(&ck, p->saddr, p->daddr, p->sport, p->dport, p->proto,
			p->family, KPX_CT_DIR_ORIG);
	e = bpf_map_lookup_elem(&kpx_ct, &ck);
	if (e && bpf_map_lookup_elem(&kpx_backends, &e->backend_id)) {
		bool local = e->flags & KPX_CT_F_LOCAL;

		/* DSR flows grow the packet: tc's job */
		if (xdp && (local || (e->flags & KPX_CT_F_DSR)))
			return KPX_V_PASS;
		kpx_ct_touch(e, now, p->tcp_flags);
		kpx_count_svc(svc->svc_id, p->len, false);
		if (xdp)
			return kpx_apply_xdp(ctx, p, e);
		return kpx_apply_tc(ctx, p, e,
				    local && !(e->flags & KPX_CT_F_SNAT));
	}
	/* A non-first fragment never starts a flow (nor gets a reject
	 * reply): without its flow it is the stack's (lib/frag.h). */
	if (p->frag == KPX_FRAG_LATER)
		return KPX_V_PASS;
	/* Only a SYN starts a TCP flow. A segment of a connection kpx holds
	 * no state for belongs to one the kernel's conntrack translates
	 * (opened through kube-proxy's rules before kpx took over the node)
	 * or to none: balancing it would hand it to a backend that never saw
	 * the connection, which resets it. The stack translates it, or
	 * answers with its own reset. */
	if (p->proto == KPX_IPPROTO_TCP &&
	    (p->tcp_flags & (KPX_TCP_SYN | KPX_TCP_ACK)) != KPX_TCP_SYN)
		return KPX_V_PASS;
	if (xdp)
		r = kpx_new_flow_xdp(ctx, p, svc, &ck, now);
	else
		r = kpx_new_flow_tc(ctx, p, svc, &ck, now);
	if (r != KPX_V_REJECT)
		return r;
	if (xdp)
		return kpx_reject_xdp(ctx, p);
	return kpx_reject_tc(ctx, p);
}

/* ICMP error quoting a translated flow (tc only). Ingress: errors about
 * our replies (key dir 0, goes toward the backend) or about packets we
 * sent to a remote backend (dir 1, goes toward the client). Egress:
 * errors a local backend sends about the client's packets (dir 1). */
static __attribute__((noinline)) int kpx_icmp_err(struct __sk_buff *ctx, const struct kpx_pkt *p,
					bool egress)
{
	struct kpx_ct_key ck;
	struct kpx_ct_value *e = 0;

	/* the quoted packet travelled the other way: swap */
	if (!egress) {
		kpx_ct_key_init(&ck, p->daddr, p->saddr, p->dport, p->sport,
				p->proto, p->family, KPX_CT_DIR_ORIG);
		e = bpf_map_lookup_elem(&kpx_ct, &ck);
	}
	if (!e) {
		kpx_ct_key_init(&ck, p->daddr, p->saddr, p->dport, p->sport,
				p->proto, p->family, KPX_CT_DIR_REPLY);
		e = bpf_map_lookup_elem(&kpx_ct, &ck);
	}
	if (!e)
		return KPX_V_PASS;
	if (kpx_nat_icmp_err(ctx, false, p, e->new_saddr, e->new_daddr,
			     e->new_sport, e->new_dport)) {
		kpx_count_drop(KPX_DROP_MALFORMED);
		return KPX_V_DROP;
	}
	/* the stack routes it (to a local pod, or forwards it) */
	return KPX_V_PASS;
}

/* tc ingress / XDP on --devices. */
static __always_inline int kpx_np_ingress(void *ctx, const bool xdp)
{
	void *data = kpx_data(ctx, xdp), *data_end = kpx_data_end(ctx, xdp);
	struct kpx_svc_key sk;
	struct kpx_svc_value *svc;
	struct kpx_ct_key ck;
	struct kpx_ct_value *e;
	struct kpx_pkt p;
	int r;

	/* tc: the whole frame, which may be longer than its linear part */
	r = kpx_parse(data, data_end, &p,
		      xdp ? (__u32)(data_end - data) :
			    ((struct __sk_buff *)ctx)->len);
	if (r == KPX_PARSE_SKIP)
		return KPX_V_PASS;
	if (r == KPX_PARSE_ICMP_ERR)
		return xdp ? KPX_V_PASS : kpx_icmp_err(ctx, &p, false);
	if (r == KPX_PARSE_FRAG && kpx_frag_lookup(&p))
		return KPX_V_PASS;

	__builtin_memcpy(sk.addr, p.daddr, 16);
	sk.port = p.dport;
	sk.proto = p.proto;
	sk.scope = KPX_SCOPE_EXTERNAL;
	sk.family = p.family;
	sk.pad[0] = sk.pad[1] = sk.pad[2] = 0;
	svc = bpf_map_lookup_elem(&kpx_svc, &sk);
	if (svc) {
		if (p.frag == KPX_FRAG_FIRST)
			kpx_frag_register(&p);
		return kpx_service(ctx, xdp, &p, svc);
	}
	/* IHL 7: room for exactly the DSR option (XDP passes it to tc);
	 * IPv6: one 24-byte extension header, which kpx_dsr_learn checks is
	 * our Destination Options header. Anything else (or SNAT mode, or a
	 * fragment) goes on to the reply lookup. */
	if (!xdp && !p.frag &&
	    ((p.family == KPX_AF_INET && p.l4off == p.l3off + 28) ||
		     (p.family == KPX_AF_INET6 &&
		      p.l4off == p.l3off + 40 + KPX_DSR6_HDR_LEN))) {
		r = kpx_dsr_learn(ctx, &p);
		if (r >= 0)
			return r;
	}

	/* a reply from a remote backend to our SNAT address */
	kpx_ct_key_init(&ck, p.saddr, p.daddr, p.sport, p.dport, p.proto,
			p.family, KPX_CT_DIR_REPLY);
	e = bpf_map_lookup_elem(&kpx_ct, &ck);
	if (!e)
		return KPX_V_PASS;
	if (p.frag == KPX_FRAG_FIRST)
		kpx_frag_register(&p);
	kpx_ct_touch(e, bpf_ktime_get_coarse_ns(), p.tcp_flags);
	if (xdp)
		return kpx_apply_xdp(ctx, &p, e);
	return kpx_apply_tc(ctx, &p, e, false);
}

/* tc egress on --devices: replies of local backends leave toward the
 * client and get the frontend address back. */
static __always_inline int kpx_np_egress(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct kpx_ct_key ck;
	struct kpx_ct_value *e;
	struct kpx_pkt p;
	int r;

	r = kpx_parse(data, data_end, &p, skb->len);
	if (r == KPX_PARSE_SKIP)
		return KPX_V_PASS;
	if (r == KPX_PARSE_ICMP_ERR)
		return kpx_icmp_err(skb, &p, true);
	if (r == KPX_PARSE_FRAG && kpx_frag_lookup(&p))
		return KPX_V_PASS;
	kpx_ct_key_init(&ck, p.saddr, p.daddr, p.sport, p.dport, p.proto,
			p.family, KPX_CT_DIR_REPLY);
	e = bpf_map_lookup_elem(&kpx_ct, &ck);
	if (!e || !(e->flags & KPX_CT_F_LOCAL))
		return KPX_V_PASS;
	if (p.frag == KPX_FRAG_FIRST)
		kpx_frag_register(&p);
	kpx_ct_touch(e, bpf_ktime_get_coarse_ns(), p.tcp_flags);
	/* to the stack after the rewrite: same as kpx_apply(to_stack) */
	return kpx_apply_tc(skb, &p, e, true);
}

#endif
