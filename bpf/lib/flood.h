/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * New-flow flood guard (the idea of Katran's is_under_flood): a per-CPU
 * count of new flows in the current one-second window. Above
 * kpx_new_flow_rate new flows per second on a CPU, new flows stop
 * creating conntrack state, so that a SYN flood, a connection-heavy
 * client or a reconnect storm cannot evict the entries of established
 * flows from the LRU conntrack table: established flows never reach the
 * guard (their entry is found first) and keep working. What happens to
 * a new flow above the rate is kpx_new_flow's decision (lib/
 * nodeport_dp.h): SNAT and local flows need their state for the replies
 * and are refused; DSR flows of Maglev services are forwarded without
 * state (the consistent hash picks the same backend for every packet).
 * Owns: kpx_flood. Must not: touch packets or conntrack.
 */
#ifndef KPX_BPF_LIB_FLOOD_H
#define KPX_BPF_LIB_FLOOD_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

/* New flows per second per CPU before the guard engages; 0: no guard.
 * Set in .rodata before load (frozen: a known constant per program). */
const volatile __u32 kpx_new_flow_rate = 0;

#define KPX_FLOOD_WINDOW_NS 1000000000ULL

struct kpx_flood_state {
	__u64 window_start_ns;
	__u64 new_flows; /* in the current window */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct kpx_flood_state);
	__uint(max_entries, 1);
} kpx_flood SEC(".maps");

/* Counts one new flow on this CPU; true when the CPU is above the rate
 * in the current window (this flow included). */
static __always_inline bool kpx_under_flood(__u64 now)
{
	struct kpx_flood_state *st;
	__u32 zero = 0;

	if (!kpx_new_flow_rate)
		return false;
	st = bpf_map_lookup_elem(&kpx_flood, &zero);
	if (!st)
		return false;
	if (now - st->window_start_ns > KPX_FLOOD_WINDOW_NS) {
		st->window_start_ns = now;
		st->new_flows = 0;
	}
	st->new_flows++;
	return st->new_flows > kpx_new_flow_rate;
}

#endif
