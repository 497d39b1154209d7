/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * IP fragments of translated flows (the approach of Cilium's fragment
 * tracking): the first fragment of a datagram carries the L4 header; its
 * ports are recorded in kpx_frag under the datagram's identity (source,
 * destination, identification, protocol), and the later fragments, which
 * have no L4 header, take them from there and get the same translation
 * (addresses only: the L4 checksum is in the first fragment).
 *
 * Only fragments of datagrams kpx translates are recorded (a service
 * frontend or a conntrack entry matched the first fragment). A later
 * fragment without a record -- not ours, or overtaking its first
 * fragment -- is passed to the stack untouched: it may belong to a
 * datagram for the node or a pod that kpx has nothing to do with, so
 * dropping it would break traffic the kernel delivers; a Service
 * datagram whose first fragment comes last is then lost, as on a lossy
 * link (the node's reassembly queue times it out).
 * Owns: kpx_frag. Must not: touch packets.
 */
#ifndef KPX_BPF_LIB_FRAG_H
#define KPX_BPF_LIB_FRAG_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "bpf/kpx_abi.h"
#include "bpf/lib/parse.h"

/* Datagrams in reassembly at once; LRU evicts the oldest (a datagram's
 * fragments arrive within milliseconds of each other). */
#define KPX_FRAG_MAX 8192

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct kpx_frag_key);
	__type(value, struct kpx_frag_value);
	__uint(max_entries, KPX_FRAG_MAX);
} kpx_frag SEC(".maps");

static __always_inline void kpx_frag_key_init(struct kpx_frag_key *k,
					      const struct kpx_pkt *p)
{
	__builtin_memcpy(k->saddr, p->saddr, 16);
	__builtin_memcpy(k->daddr, p->daddr, 16);
	k->id = p->frag_id;
	k->proto = p->frag_nh;
	k->family = p->family;
	k->pad[0] = k->pad[1] = 0;
}

/* First fragment of a datagram kpx translates: remember its ports.
 * Out of line: the key stays out of the callers' frames (512-byte
 * combined stack limit). */
static __attribute__((noinline)) int kpx_frag_register(const struct kpx_pkt *p)
{
	struct kpx_frag_key k;
	struct kpx_frag_value v = {};

	if (!p || p->frag != KPX_FRAG_FIRST)
		return 0;
	kpx_frag_key_init(&k, p);
	v.sport = p->sport;
	v.dport = p->dport;
	v.proto = p->proto;
	return bpf_map_update_elem(&kpx_frag, &k, &v, BPF_ANY) ? -1 : 0;
}

/* Later fragment: fills p's ports and L4 protocol from its datagram's
 * first fragment. Returns 0, or -1 when the datagram is unknown. */
static __attribute__((noinline)) int kpx_frag_lookup(struct kpx_pkt *p)
{
	struct kpx_frag_key k;
	struct kpx_frag_value *v;

	if (!p)
		return -1;
	kpx_frag_key_init(&k, p);
	v = bpf_map_lookup_elem(&kpx_frag, &k);
	if (!v)
		return -1;
	p->sport = v->sport;
	p->dport = v->dport;
	p->proto = v->proto;
	return 0;
}

#endif
