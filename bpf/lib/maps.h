/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Every map shared by kpx's BPF objects (sock_lb and nodeport). Each map is
 * pinned by name (LIBBPF_PIN_BY_NAME) under the object's pin_root_path
 * (--bpf-root), so both skeletons and a restarted agent use the same maps.
 * max_entries here are defaults only: the loader (bpf/loader.c) sizes every
 * map from the config before load, by name.
 * Owns: map definitions. Must not: contain program logic.
 */
#ifndef KPX_BPF_LIB_MAPS_H
#define KPX_BPF_LIB_MAPS_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "bpf/kpx_abi.h"

#ifndef BPF_F_NO_PREALLOC
#define BPF_F_NO_PREALLOC (1U << 0)
#endif

/* Maglev table size (entries per service), set by the loader in .rodata
 * of every object to cfg->maglev_table_size; the kpx_maglev value size is
 * 4 * this. A frozen .rodata value is a known constant to the verifier,
 * which is what lets it prove table[idx] in bounds. */
const volatile __u32 kpx_maglev_size = KPX_MAGLEV_DEFAULT_SIZE;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct kpx_svc_key);
	__type(value, struct kpx_svc_value);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kpx_svc SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct kpx_slot_key);
	__type(value, __u32);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kpx_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct kpx_backend_value);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kpx_backends SEC(".maps");

/* No BTF key/value types on purpose: the value size is changed at load
 * time and the kernel rejects a BTF value type of another size. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(key_size, sizeof(struct kpx_maglev_key));
	__uint(value_size, 4 * KPX_MAGLEV_DEFAULT_SIZE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kpx_maglev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct kpx_revnat_key);
	__type(value, struct kpx_revnat_value);
	__uint(max_entries, 262144);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kpx_revnat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct kpx_affinity_key);
	__type(value, struct kpx_affinity_value);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kpx_affinity SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct kpx_svc_meta);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kpx_svc_meta SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, KPX_DROP_REASON_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kpx_drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct kpx_counter);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kpx_svc_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct kpx_counter);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kpx_backend_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct kpx_dp_config);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kpx_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct kpx_ct_key);
	__type(value, struct kpx_ct_value);
	__uint(max_entries, 262144);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kpx_ct SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct kpx_src_range_key);
	__type(value, __u8);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* required for LPM tries */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kpx_src_range SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct kpx_cidr_key);
	__type(value, __u8);
	__uint(max_entries, 64);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* required for LPM tries */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kpx_cluster_cidr SEC(".maps");

/* KPX_ABI_VERSION of the pinned maps (written by the agent after load). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kpx_abi_version SEC(".maps");

static __always_inline void kpx_count_drop(__u32 reason)
{
	__u64 *c = bpf_map_lookup_elem(&kpx_drops, &reason);

	if (c)
		*c += 1;
}

#endif
