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

SEC("tc")
int kpx_np_tc_in(struct __sk_buff *skb)
{
	return kpx_tc_verdict(skb, kpx_np_ingress(skb, false));
}

SEC("tc")
int kpx_np_tc_out(struct __sk_buff *skb)
{
	return kpx_tc_verdict(skb, kpx_np_egress(skb));
}

SEC("xdp")
int kpx_np_xdp(struct xdp_md *ctx)
{
	int v = kpx_np_ingress(ctx, true);

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

char LICENSE[] SEC("license") = "Dual BSD/GPL";
