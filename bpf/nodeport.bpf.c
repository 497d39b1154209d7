// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * kpx NodePort/ExternalIP/LoadBalancer datapath: tc (clsact) ingress and
 * egress on --devices, and the optional XDP program doing the same
 * forward translation earlier. The logic lives in lib/nodeport_dp.h; this
 * file only maps verdicts to each hook's return codes.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "bpf/lib/nodeport_dp.h"

#define KPX_TC_ACT_OK 0
#define KPX_TC_ACT_SHOT 2

static __always_inline int kpx_tc_verdict(struct __sk_buff *skb, int v)
{
	__u32 oif = (__u32)v >> KPX_V_SHIFT;

	switch (v & KPX_V_MASK) {
	case KPX_V_DROP:
		return KPX_TC_ACT_SHOT;
	case KPX_V_TX:
		return bpf_redirect(skb->ifindex, 0);
	case KPX_V_REDIRECT:
		return bpf_redirect(oif, 0);
	case KPX_V_NEIGH:
		return bpf_redirect_neigh(oif, 0, 0, 0);
	default:
		return KPX_TC_ACT_OK;
	}
}

/*
 * The parser reads headers from the linear part only. Some senders
 * (AF_PACKET without the qdisc, some drivers, GRO'd frames) leave little
 * more than the Ethernet header linear: pull up to 128 bytes first, and
 * only when needed, since the pull may reallocate the head. IPv6 frames
 * with extension headers get up to KPX_L4OFF_MAX + a TCP header
 * (kpx_parse's bound).
 */
/* A subprogram, not inlined: inlined, clang shares the ctx offsets of
 * data/data_end with the parser below and the verifier then rejects a
 * "modified ctx ptr" dereference. */
#define KPX_PULL_EXT (KPX_L4OFF_MAX + 20)
static __attribute__((noinline)) int kpx_tc_linearize(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	/* 74: Ethernet + IPv6 + TCP without options. */
	__u32 need = skb->len < 74 ? skb->len : 74;
	__u32 ext = skb->len < KPX_PULL_EXT ? skb->len : KPX_PULL_EXT;
	__u8 *h = data;

	/* Pointer compare only: the verifier forbids pkt_end - pkt. */
	if (need > 74 || ext > KPX_PULL_EXT)
		return 0;
	if (data + need > data_end) {
		if (bpf_skb_pull_data(skb, skb->len < 128 ? skb->len : 128))
			return -1;
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
		h = data;
	}
	if ((void *)(h + KPX_ETH_HLEN + 7) > data_end)
		return 0;
	if (h[12] == 0x86 && h[13] == 0xdd && kpx_ip6_is_ext(h[20]) &&
	    data + ext > data_end)
		return bpf_skb_pull_data(skb, ext);
	return 0;
}

SEC("tc")
int kpx_np_tc_in(struct __sk_buff *skb)
{
	kpx_tc_linearize(skb);
	return kpx_tc_verdict(skb, kpx_np_ingress(skb, false));
}

static __always_inline int kpx_xdp_verdict(int v)
{
	switch (v & KPX_V_MASK) {
	case KPX_V_DROP:
		return XDP_DROP;
	case KPX_V_TX:
		return XDP_TX;
	case KPX_V_REDIRECT:
		return bpf_redirect((__u32)v >> KPX_V_SHIFT, 0);
	default:
		return XDP_PASS;
	}
}

SEC("tc")
int kpx_np_tc_out(struct __sk_buff *skb)
{
	kpx_tc_linearize(skb);
	return kpx_tc_verdict(skb, kpx_np_egress(skb));
}

SEC("xdp")
int kpx_np_xdp(struct xdp_md *ctx)
{
	return kpx_xdp_verdict(kpx_np_ingress(ctx, true));
}

/*
 * Benchmark-only programs (perf/tools/kpx_pkt_bench.c; the agent does not
 * load them). BPF_PROG_TEST_RUN with repeat runs a program again and
 * again on the same buffer, which after the first pass holds the
 * translated packet; these wrappers first restore the original frame
 * from kpx_bench (and, for new flows, give it a fresh source port and
 * address), so every iteration does the real work. The *_restore
 * variants measure the wrapper's own cost.
 */
struct kpx_bench_pkt {
	__u8 data[128];
	__u32 new_flow; /* 1: vary the source per iteration */
	__u32 seq;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct kpx_bench_pkt);
	__uint(max_entries, 1);
} kpx_bench SEC(".maps");

/* RFC 1624 incremental update of a checksum for one 16-bit word. */
static __always_inline __u16 kpx_bench_csum(__u16 c, __u16 old, __u16 new)
{
	__u32 s = (__u16)~c + (__u16)~old + (__u32)new;

	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

static __always_inline int kpx_bench_restore(void *data, void *data_end)
{
	__u32 zero = 0;
	struct kpx_bench_pkt *b = bpf_map_lookup_elem(&kpx_bench, &zero);

	if (!b || data + 128 > data_end)
		return -1;
	__builtin_memcpy(data, b->data, 128);
	if (b->new_flow) {
		/* IPv4 frames only: source port and low source address.
		 * The IPv4 header checksum is fixed (kpx_parse passes a
		 * frame with a bad one untouched, which would measure
		 * nothing), and the TCP one with it. */
		__u32 n = ++b->seq;
		__u16 a = (__u16)(n >> 16), sp = (__u16)n;
		__u16 *ipc = data + 14 + 10, *tcpc = data + 34 + 16;
		__u16 oa = *(__u16 *)(data + 14 + 14);
		__u16 osp = *(__u16 *)(data + 34);

		*(__u16 *)(data + 14 + 14) = a;
		*(__u16 *)(data + 34) = sp;
		*ipc = kpx_bench_csum(*ipc, oa, a);
		*tcpc = kpx_bench_csum(kpx_bench_csum(*tcpc, oa, a), osp, sp);
	}
	return 0;
}

SEC("xdp")
int kpx_bench_xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("xdp")
int kpx_bench_xdp_restore(struct xdp_md *ctx)
{
	if (kpx_bench_restore((void *)(long)ctx->data,
			      (void *)(long)ctx->data_end))
		return XDP_ABORTED;
	return XDP_TX;
}

SEC("xdp")
int kpx_bench_xdp(struct xdp_md *ctx)
{
	if (kpx_bench_restore((void *)(long)ctx->data,
			      (void *)(long)ctx->data_end))
		return XDP_ABORTED;
	return kpx_xdp_verdict(kpx_np_ingress(ctx, true));
}

SEC("tc")
int kpx_bench_tc_restore(struct __sk_buff *skb)
{
	if (kpx_bench_restore((void *)(long)skb->data,
			      (void *)(long)skb->data_end))
		return KPX_TC_ACT_SHOT;
	return KPX_TC_ACT_OK;
}

SEC("tc")
int kpx_bench_tc(struct __sk_buff *skb)
{
	if (kpx_bench_restore((void *)(long)skb->data,
			      (void *)(long)skb->data_end))
		return KPX_TC_ACT_SHOT;
	return kpx_tc_verdict(skb, kpx_np_ingress(skb, false));
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
