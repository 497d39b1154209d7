/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The one ABI between kpx's BPF programs and the userspace map writer:
 * map names, keys and values. Fixed-width types, explicit padding, sizes
 * asserted. Bump KPX_ABI_VERSION on any layout change: pinned maps of
 * another version are recreated, not reused.
 *
 * Addresses are 16 bytes in network order; IPv4 uses the first 4 bytes
 * and zeroes the rest. Ports are in network order.
 */
#ifndef KPX_ABI_H
#define KPX_ABI_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Stored in the pinned map "kpx_abi_version" (array[1] of __u32); a
 * pinned set of maps of another version is not reused blindly (see
 * bpf/loader.c kpx_bpf_abi_check and its table of layout changes).
 * 2: KPX_SVC_F_SNAT_OFF_CLUSTER, KPX_BE_F_HOST, map kpx_cluster_cidr. */
#define KPX_ABI_VERSION 2

/* Default Maglev table size (a prime); --maglev-table-size overrides it. */
#define KPX_MAGLEV_DEFAULT_SIZE 16381

#define KPX_AF_INET 2
#define KPX_AF_INET6 10

/* Which traffic a service entry serves (key scope). */
enum kpx_scope {
	KPX_SCOPE_EXTERNAL = 0, /* from outside the node: tc/XDP */
	KPX_SCOPE_INTERNAL = 1, /* from local sockets: cgroup hooks */
};

/* kpx_svc_value.flags */
enum kpx_svc_flags {
	KPX_SVC_F_AFFINITY = 1 << 0,	  /* ClientIP session affinity */
	KPX_SVC_F_EMPTY_DROP = 1 << 1,	  /* count == 0: drop, else reject */
	KPX_SVC_F_MAGLEV = 1 << 2,	  /* select through the maglev map */
	KPX_SVC_F_SOURCE_RANGES = 1 << 3, /* check kpx_src_range */
	KPX_SVC_F_SNAT = 1 << 4,	  /* external: SNAT to the node address */
	/* The set holds this node's endpoints only (inspection only). */
	KPX_SVC_F_LOCAL_ONLY = 1 << 5,
	/* external: SNAT unless the source is in kpx_cluster_cidr */
	KPX_SVC_F_SNAT_OFF_CLUSTER = 1 << 6,
};

/* kpx_svc_value.kind, for inspection */
enum kpx_fe_type {
	KPX_FE_TYPE_CLUSTER_IP = 0,
	KPX_FE_TYPE_NODE_PORT = 1,
	KPX_FE_TYPE_EXTERNAL_IP = 2,
	KPX_FE_TYPE_LOAD_BALANCER = 3,
};

/* kpx_backend_value.flags */
enum kpx_backend_flags {
	KPX_BE_F_LOCAL = 1 << 0,
	KPX_BE_F_TERMINATING = 1 << 1,
	/* The address is the node's own (a host-network endpoint): packets
	 * are delivered to the node's stack, never forwarded, never SNATed
	 * (a source-NATed packet to a local address would be a martian). */
	KPX_BE_F_HOST = 1 << 2,
};

/* Map "kpx_svc": frontend -> service. Hash. */
struct kpx_svc_key {
	__u8 addr[16];
	__be16 port;
	__u8 proto;  /* IPPROTO_TCP/UDP/SCTP */
	__u8 scope;  /* enum kpx_scope */
	__u8 family; /* KPX_AF_INET/KPX_AF_INET6 */
	__u8 pad[3];
};

struct kpx_svc_value {
	__u32 svc_id;	/* identity of the svcport-frontend; counters index */
	__u16 count;	/* backend slots in the active generation */
	__u8 flags;	/* enum kpx_svc_flags */
	__u8 kind;	/* enum kpx_fe_type */
	__u32 affinity_timeout; /* seconds */
	__u16 gen;	/* active slot generation (0/1): atomic flips */
	__u16 pad;
};

/* Map "kpx_slots": (svc_id, gen, slot) -> backend_id. Hash.
 * Writer order: backends, slots of the inactive gen, flip kpx_svc,
 * then delete the old gen's slots and unused backends. */
struct kpx_slot_key {
	__u32 svc_id;
	__u16 gen;
	__u16 slot;
};

/* Map "kpx_backends": backend_id -> backend. Hash. */
struct kpx_backend_value {
	__u8 addr[16];
	__be16 port;
	__u8 proto;
	__u8 family;
	__u8 flags; /* enum kpx_backend_flags */
	__u8 pad[3];
};

/* Map "kpx_maglev": (svc_id, gen) -> __u32 backend_id[maglev size].
 * Value size is set at load time from --maglev-table-size. */
struct kpx_maglev_key {
	__u32 svc_id;
	__u32 gen;
};

/* Map "kpx_revnat": socket-LB reverse translation for recvmsg and
 * getpeername, keyed on the socket and the backend it was sent to. LRU. */
struct kpx_revnat_key {
	__u64 cookie; /* bpf_get_socket_cookie() */
	__u8 addr[16]; /* backend */
	__be16 port;
	__u8 family;
	__u8 pad[5];
};

struct kpx_revnat_value {
	__u8 addr[16]; /* frontend */
	__be16 port;
	__u8 pad[6];
};

/* Map "kpx_affinity": ClientIP affinity. LRU.
 * client: the client address, or the netns cookie (first 8 bytes) when
 * the address is not known yet (unbound socket at connect()). */
struct kpx_affinity_key {
	__u32 svc_id;
	__u8 family;
	__u8 netns_keyed; /* 1: client holds a netns cookie */
	__u8 pad[2];
	__u8 client[16];
};

struct kpx_affinity_value {
	__u32 backend_id;
	__u32 pad;
	__u64 last_used_ns; /* bpf_ktime_get_ns() */
};

/* Map "kpx_svc_meta": svc_id -> names, for `kpx services` (not read by
 * programs). Hash. */
struct kpx_svc_meta {
	char name[192]; /* "namespace/name:portname" */
	__u8 addr[16];	/* frontend, repeated for dumps */
	__be16 port;
	__u8 proto;
	__u8 family;
	__u8 kind;	/* enum kpx_fe_type */
	__u8 scope;
	__u8 pad[2];
};

/* Map "kpx_drops": per-CPU array indexed by enum kpx_drop_reason. */
enum kpx_drop_reason {
	KPX_DROP_NO_BACKEND = 0,   /* rejected: service without endpoints */
	KPX_DROP_LOCAL_NONE,	   /* dropped: Local policy, no local ep */
	KPX_DROP_SOURCE_RANGE,	   /* loadBalancerSourceRanges */
	KPX_DROP_BACKEND_MISSING,  /* slot without backend (writer bug) */
	KPX_DROP_CT_FULL,	   /* conntrack insert failed */
	KPX_DROP_SNAT_EXHAUSTED,   /* no free SNAT port */
	KPX_DROP_FIB_FAILED,	   /* bpf_fib_lookup failure */
	KPX_DROP_MALFORMED,	   /* unparseable packet */
	KPX_DROP_UNSUPPORTED,	   /* fragments, options we skip */
	KPX_DROP_FLOOD,		   /* new flow refused: new-flow flood guard */
	KPX_DROP_REASON_MAX,
};

/* Map "kpx_svc_stats": per-CPU array indexed by svc_id. */
struct kpx_counter {
	__u64 packets;
	__u64 bytes;
	__u64 connections; /* connect()s or new flows */
};
/* Map "kpx_backend_stats": per-CPU array indexed by backend_id, same value. */

/*
 * ---- NodePort / external traffic datapath (tc, XDP) ----
 */

/* Map "kpx_config": array[1], node-level settings for tc/XDP. */
struct kpx_dp_config {
	__u8 node_ip4[16];
	__u8 node_ip6[16];
	__u16 snat_port_min; /* host order */
	__u16 snat_port_max;
	__u32 ct_tcp_timeout; /* seconds */
	__u32 ct_tcp_close_timeout;
	__u32 ct_udp_timeout;
	__u32 flags; /* enum kpx_dp_flags */
	__u32 pad;
};

/* kpx_dp_config.flags */
enum kpx_dp_flags {
	/* --nodeport-mode dsr: eTP=Cluster external IPv4 traffic to remote
	 * backends keeps the client address and carries the frontend in an
	 * IPv4 option; the backend's node answers the client directly. */
	KPX_DP_F_DSR = 1 << 0,
};

/* The DSR IPv4 option (Cilium's encoding): type, length 8, frontend
 * port, frontend IPv4 address, all in network order. Type 0x9a: copied
 * flag, class 0, number 26 (unassigned); Linux ignores options it does
 * not know on receive, so the backend accepts the packet as is. */
#define KPX_DSR_OPT_TYPE 0x9a
#define KPX_DSR_OPT_LEN 8

/* The DSR IPv6 Destination Options header (next header 60) inserted
 * right after the IPv6 header: next header, Hdr Ext Len 2 (24 bytes),
 * then one option: type, data length 18, frontend port, frontend IPv6
 * address (network order), then PadN with no data (1, 0). Type 0x1e: the
 * two high bits 00 = "skip over this option" when the receiver does not
 * know it (RFC 8200 4.2), bit 3 0 = does not change en route; 0x1e is an
 * RFC 4727 experimental type. Linux skips it in a packet addressed to
 * the pod (ip6_parse_tlv), so the backend accepts the packet as is. */
#define KPX_DSR6_OPT_TYPE 0x1e
#define KPX_DSR6_OPT_LEN 18
#define KPX_DSR6_HDR_LEN 24

/* Map "kpx_ct": kpx's conntrack for translated external flows. LRU.
 * Two entries per flow: the original direction (client -> frontend) and
 * the reply direction (backend -> node/client) as it arrives. */
struct kpx_ct_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 family;
	__u8 dir; /* KPX_CT_DIR_* */
	__u8 pad;
};
#define KPX_CT_DIR_ORIG 0  /* client -> frontend */
#define KPX_CT_DIR_REPLY 1 /* backend -> node/client, as it arrives */

struct kpx_ct_value {
	/* Rewrite to apply to packets matching the key. */
	__u8 new_saddr[16];
	__u8 new_daddr[16];
	__be16 new_sport;
	__be16 new_dport;
	__u32 backend_id;
	__u32 svc_id;
	__u32 ifindex; /* next hop cache: out device (== in device), 0: none */
	__u64 last_seen_ns;
	__u8 tcp_flags_seen; /* for early expiry after FIN/RST */
	__u8 flags;
	__u8 nh_mac[6]; /* next hop cache: destination MAC */
};

/* kpx_ct_value.flags */
#define KPX_CT_F_LOCAL 0x01 /* backend on this node: deliver to the stack */
#define KPX_CT_F_SNAT 0x02  /* source rewritten to the node address */
/* DSR, frontend node: client address kept, the DSR option added to
 * every packet toward the remote backend; no reply entry (replies do not
 * come back through this node). */
#define KPX_CT_F_DSR 0x04
/* DSR, backend node: reply entry learnt from the option; the backend's
 * reply gets the frontend as source and goes straight to the client. */
#define KPX_CT_F_DSR_REV 0x08

/* Map "kpx_frag" (nodeport object, private, not pinned): the L4 ports
 * of a fragmented datagram, learnt from its first fragment so that the
 * later ones (no L4 header) get the same translation. LRU. The key is
 * the datagram's identity as the sender wrote it (RFC 791 / RFC 8200). */
struct kpx_frag_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__be32 id;    /* IPv4: the 16-bit identification in the first 2
		       * bytes; IPv6: the Fragment header's identification */
	__u8 proto;   /* IPv4 protocol; IPv6: the Fragment header's next
		       * header */
	__u8 family;
	__u8 pad[2];
};

struct kpx_frag_value {
	__be16 sport;
	__be16 dport;
	__u8 proto;   /* L4 protocol (IPv6: after the extension headers) */
	__u8 pad[3];
};

/* Map "kpx_src_range": LPM trie, (svc_id, source prefix) -> 1. */
struct kpx_src_range_key {
	__u32 prefixlen; /* 32 (svc_id) + address prefix */
	__u32 svc_id;
	__u8 addr[16];
};

/* Map "kpx_cluster_cidr": LPM trie, (family, source prefix) -> 1: the
 * sources a KPX_SVC_F_SNAT_OFF_CLUSTER entry does not SNAT. */
struct kpx_cidr_key {
	__u32 prefixlen; /* 32 (family word) + address prefix */
	__u32 family;	 /* KPX_AF_INET/KPX_AF_INET6 */
	__u8 addr[16];
};

/*
 * ---- socket LB only (not used by tc/XDP) ----
 */

/* Map "kpx_sk_revnat": socket storage of a connected socket (TCP or
 * connected UDP): where connect() sent it, for getpeername/recvmsg
 * without a global LRU insert per connect. */
struct kpx_sk_revnat {
	__u8 backend[16];
	__u8 frontend[16];
	__be16 backend_port;
	__be16 frontend_port;
	__u8 family;
	__u8 pad[3];
};

/* Map "kpx_sock_slots" (sock_lb object, pinned): the fast path for the
 * per-socket record above. An ARRAY of KPX_SOCK_SLOTS entries indexed by
 * socket cookie & (KPX_SOCK_SLOTS - 1), direct-mapped: connect() claims a
 * free slot (cookie 0) with a compare-and-swap and fills it, the
 * cgroup/sock_release program frees it when the socket is closed. No
 * allocation, lock or hash per connect(), which is what makes it cheaper
 * than socket storage (two allocations) or a hash insert (bucket lock and
 * cache misses). A socket whose slot is taken by another live socket
 * falls back to the kpx_sk_revnat socket storage; readers check the slot
 * (owner cookie must match) and then the storage. */
#define KPX_SOCK_SLOTS 131072u /* power of two */
struct kpx_sock_slot {
	__u64 cookie; /* owner's socket cookie; 0 = free */
	struct kpx_sk_revnat rn;
};

/* Map "kpx_udp_destroy" (sock_lb object, not pinned): backends whose
 * connected UDP sockets the iter/udp program destroys. */
struct kpx_udp_destroy_key {
	__u8 addr[16]; /* backend */
	__be16 port;
	__u8 family;
	__u8 pad;
	/* The frontend the socket connected to: a backend removed from one
	 * service may stay in another, whose sockets must be left alone. */
	__u8 frontend[16];
	__be16 frontend_port;
	__u8 pad2[2];
};

#ifndef __cplusplus
_Static_assert(sizeof(struct kpx_svc_key) == 24, "kpx_svc_key");
_Static_assert(sizeof(struct kpx_svc_value) == 16, "kpx_svc_value");
_Static_assert(sizeof(struct kpx_slot_key) == 8, "kpx_slot_key");
_Static_assert(sizeof(struct kpx_backend_value) == 24, "kpx_backend_value");
_Static_assert(sizeof(struct kpx_maglev_key) == 8, "kpx_maglev_key");
_Static_assert(sizeof(struct kpx_revnat_key) == 32, "kpx_revnat_key");
_Static_assert(sizeof(struct kpx_revnat_value) == 24, "kpx_revnat_value");
_Static_assert(sizeof(struct kpx_affinity_key) == 24, "kpx_affinity_key");
_Static_assert(sizeof(struct kpx_affinity_value) == 16, "kpx_affinity_value");
_Static_assert(sizeof(struct kpx_svc_meta) == 216, "kpx_svc_meta");
_Static_assert(sizeof(struct kpx_counter) == 24, "kpx_counter");
_Static_assert(sizeof(struct kpx_dp_config) == 56, "kpx_dp_config");
_Static_assert(sizeof(struct kpx_ct_key) == 40, "kpx_ct_key");
_Static_assert(sizeof(struct kpx_ct_value) == 64, "kpx_ct_value");
_Static_assert(sizeof(struct kpx_src_range_key) == 24, "kpx_src_range_key");
_Static_assert(sizeof(struct kpx_cidr_key) == 24, "kpx_cidr_key");
_Static_assert(sizeof(struct kpx_frag_key) == 40, "kpx_frag_key");
_Static_assert(sizeof(struct kpx_frag_value) == 8, "kpx_frag_value");
_Static_assert(sizeof(struct kpx_sk_revnat) == 40, "kpx_sk_revnat");
_Static_assert(sizeof(struct kpx_udp_destroy_key) == 40, "kpx_udp_destroy_key");
_Static_assert(sizeof(struct kpx_sock_slot) == 48, "kpx_sock_slot");
_Static_assert((KPX_SOCK_SLOTS & (KPX_SOCK_SLOTS - 1)) == 0, "KPX_SOCK_SLOTS");
#endif

#endif
