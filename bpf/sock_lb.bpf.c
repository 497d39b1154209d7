// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Socket-level load balancing (cgroup v2 sock_addr hooks): connect() and
 * unconnected sendmsg() to a service frontend get the destination
 * rewritten to a backend once, so no packet is ever translated; recvmsg()
 * and getpeername() rewrite the backend back to the service address.
 * Only INTERNAL-scope kpx_svc entries are used (the writer writes one for
 * every frontend: ClusterIP with the internal set, external kinds with
 * the cluster set, as kube-proxy short-circuits local clients).
 * Also: an iter/udp program that destroys connected UDP sockets whose
 * peer is a removed backend, so clients get re-balanced, and a
 * sock_release program that frees the socket's kpx_sock_slots entry.
 */
#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "lib/lb.h"
#include "lib/maps.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define TCP_ESTABLISHED 1
#define ECONNREFUSED 111
#define EPERM 1
#define NSEC_PER_SEC 1000000000ull

#define SYS_REJECT 0
#define SYS_PROCEED 1

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* required for sk storage */
	__type(key, int);
	__type(value, struct kpx_sk_revnat);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kpx_sk_revnat SEC(".maps");

/* Fast path for the per-socket record (see kpx_abi.h): socket storage
 * costs two allocations per connect(), about 0.4 us; a slot costs none. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct kpx_sock_slot);
	__uint(max_entries, KPX_SOCK_SLOTS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kpx_sock_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct kpx_udp_destroy_key);
	__type(value, __u8);
	__uint(max_entries, 4096);
} kpx_udp_destroy SEC(".maps");

extern int bpf_sock_destroy(struct sock_common *sk) __ksym;

/* Where a socket goes: the frontend it asked for, the backend it gets. */
struct sock_dst {
	__u32 addr[4]; /* network order words; v4 uses addr[0] */
	__be16 port;
	__u16 family;
};

static __always_inline bool addr_eq(const __u32 *a, const __u32 *b)
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3];
}

static __always_inline struct kpx_sock_slot *sock_slot(__u64 cookie)
{
	__u32 idx = (__u32)cookie & (KPX_SOCK_SLOTS - 1);

	return bpf_map_lookup_elem(&kpx_sock_slots, &idx);
}

/* The record of the socket with this cookie: its slot when it owns one,
 * else its socket storage (slot taken, or connected by an older build). */
static __always_inline struct kpx_sk_revnat *
sock_record(struct kpx_sock_slot *slot, __u64 cookie, void *sk)
{
	if (slot && slot->cookie == cookie)
		return &slot->rn;
	return sk ? bpf_sk_storage_get(&kpx_sk_revnat, sk, 0, 0) : NULL;
}

static __always_inline void fill_record(struct kpx_sk_revnat *rn,
					const struct sock_dst *be,
					const struct sock_dst *fe)
{
	__builtin_memcpy(rn->backend, be->addr, 16);
	__builtin_memcpy(rn->frontend, fe->addr, 16);
	rn->backend_port = be->port;
	rn->frontend_port = fe->port;
	rn->family = be->family;
}

static __always_inline void fill_svc_key(struct kpx_svc_key *k,
					 const struct sock_dst *d, __u8 proto)
{
	__builtin_memset(k, 0, sizeof(*k));
	__builtin_memcpy(k->addr, d->addr, 16);
	k->port = d->port;
	k->proto = proto;
	k->scope = KPX_SCOPE_INTERNAL;
	k->family = d->family == AF_INET ? KPX_AF_INET : KPX_AF_INET6;
}

/* Affinity key: the client's bound address when known, else the netns
 * cookie (unbound sockets at connect() time, the common case). */
static __always_inline void fill_affinity_key(struct bpf_sock_addr *ctx,
					      struct kpx_affinity_key *ak,
					      __u32 svc_id, __u16 family)
{
	struct bpf_sock *sk = ctx->sk;
	__u32 src[4] = {};

	__builtin_memset(ak, 0, sizeof(*ak));
	ak->svc_id = svc_id;
	ak->family = family == AF_INET ? KPX_AF_INET : KPX_AF_INET6;
	if (sk) {
		if (family == AF_INET) {
			src[0] = sk->src_ip4;
		} else {
			src[0] = sk->src_ip6[0];
			src[1] = sk->src_ip6[1];
			src[2] = sk->src_ip6[2];
			src[3] = sk->src_ip6[3];
		}
	}
	if (src[0] | src[1] | src[2] | src[3]) {
		__builtin_memcpy(ak->client, src, 16);
	} else {
		__u64 c = bpf_get_netns_cookie(ctx);

		ak->netns_keyed = 1;
		__builtin_memcpy(ak->client, &c, sizeof(c));
	}
}

enum { XL_PASS = 0, XL_DONE = 1, XL_REJECT = 2 };

/*
 * Selects a backend for d (a frontend) and rewrites d in place to it.
 * XL_PASS: not a service; XL_DONE: d now holds the backend;
 * XL_REJECT: the caller must fail the syscall (retval already set).
 */
static __always_inline int sock_xlate(struct bpf_sock_addr *ctx,
				      struct sock_dst *d, __u8 proto,
				      bool connect)
{
	struct kpx_backend_value *be;
	struct kpx_svc_value *sv;
	struct kpx_svc_key key;
	__u32 backend_id = 0;

	fill_svc_key(&key, d, proto);
	sv = bpf_map_lookup_elem(&kpx_svc, &key);
	if (!sv)
		return XL_PASS;
	if (sv->count == 0) {
		if (sv->flags & KPX_SVC_F_EMPTY_DROP) {
			kpx_count_drop(KPX_DROP_LOCAL_NONE);
			bpf_set_retval(-EPERM);
		} else {
			kpx_count_drop(KPX_DROP_NO_BACKEND);
			bpf_set_retval(-ECONNREFUSED);
		}
		return XL_REJECT;
	}

	if (sv->flags & KPX_SVC_F_AFFINITY) {
		struct kpx_affinity_key ak;
		struct kpx_affinity_value *av;
		__u64 now = bpf_ktime_get_ns();

		fill_affinity_key(ctx, &ak, sv->svc_id, d->family);
		av = bpf_map_lookup_elem(&kpx_affinity, &ak);
		if (av && now - av->last_used_ns <=
				  (__u64)sv->affinity_timeout * NSEC_PER_SEC) {
			backend_id = av->backend_id;
			/* Refresh at most once a second: fewer writes to a
			 * shared cache line on busy services. */
			if (now - av->last_used_ns > NSEC_PER_SEC)
				av->last_used_ns = now;
		}
		be = backend_id ? bpf_map_lookup_elem(&kpx_backends,
						      &backend_id) : NULL;
		if (!be) {
			struct kpx_affinity_value nv = {};

			backend_id = kpx_lb_pick(sv, bpf_get_prandom_u32());
			nv.backend_id = backend_id;
			nv.last_used_ns = now;
			if (backend_id)
				bpf_map_update_elem(&kpx_affinity, &ak, &nv,
						    BPF_ANY);
		}
	} else {
		__u32 h = bpf_get_prandom_u32();

		if (sv->flags & KPX_SVC_F_MAGLEV)
			h = kpx_mix32((__u32)bpf_get_socket_cookie(ctx));
		backend_id = kpx_lb_pick(sv, h);
	}
	be = backend_id ? bpf_map_lookup_elem(&kpx_backends, &backend_id)
			: NULL;
	if (!be) {
		kpx_count_drop(KPX_DROP_BACKEND_MISSING);
		bpf_set_retval(-ECONNREFUSED);
		return XL_REJECT;
	}
	kpx_count_conn(sv->svc_id, backend_id, 0, connect);
	__builtin_memcpy(d->addr, be->addr, 16);
	d->port = be->port;
	return XL_DONE;
}

/* v6 is a constant at every call, so each program keeps only its own
 * family's ctx accesses (the verifier rejects user_ip6 in connect4). */
static __always_inline void load_dst(struct bpf_sock_addr *ctx,
				     struct sock_dst *d, bool v6)
{
	if (v6) {
		/* Verifier rule: ctx->user_ip6 only allows 4-byte loads. */
		d->addr[0] = ctx->user_ip6[0];
		d->addr[1] = ctx->user_ip6[1];
		d->addr[2] = ctx->user_ip6[2];
		d->addr[3] = ctx->user_ip6[3];
		d->family = AF_INET6;
	} else {
		d->addr[0] = ctx->user_ip4;
		d->addr[1] = d->addr[2] = d->addr[3] = 0;
		d->family = AF_INET;
	}
	d->port = (__be16)ctx->user_port;
}

static __always_inline void store_dst(struct bpf_sock_addr *ctx,
				      const struct sock_dst *d)
{
	if (d->family == AF_INET) {
		ctx->user_ip4 = d->addr[0];
	} else {
		ctx->user_ip6[0] = d->addr[0];
		ctx->user_ip6[1] = d->addr[1];
		ctx->user_ip6[2] = d->addr[2];
		ctx->user_ip6[3] = d->addr[3];
	}
	ctx->user_port = d->port;
}

/* Not a hook verdict: sock_rewrite() rewrote ctx, the caller goes on. */
#define SOCK_REWRITTEN (-1)

/*
 * The destination of ctx (into fe) rewritten to a backend (into d and
 * ctx) when it is a service frontend. Returns SOCK_REWRITTEN, or the
 * hook's verdict when there is nothing more to do: SYS_PROCEED (not a
 * service) or SYS_REJECT (retval set).
 */
static __always_inline int sock_rewrite(struct bpf_sock_addr *ctx, bool v6,
					__u8 proto, bool connect,
					struct sock_dst *fe, struct sock_dst *d)
{
	int r;

	load_dst(ctx, d, v6);
	*fe = *d;
	r = sock_xlate(ctx, d, proto, connect);
	if (r == XL_PASS)
		return SYS_PROCEED;
	if (r == XL_REJECT)
		return SYS_REJECT;
	store_dst(ctx, d);
	return SOCK_REWRITTEN;
}

static __always_inline void revnat_key_dst(struct kpx_revnat_key *rk,
					   const struct sock_dst *d)
{
	__builtin_memcpy(rk->addr, d->addr, 16);
	rk->port = d->port;
	rk->family = d->family;
}

static __always_inline int do_connect(struct bpf_sock_addr *ctx, bool v6)
{
	struct sock_dst fe, d;
	__u32 proto = ctx->protocol;
	struct kpx_sock_slot *slot;
	struct kpx_sk_revnat *rn;
	__u64 ck;
	int r;

	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return SYS_PROCEED;
	r = sock_rewrite(ctx, v6, proto, true, &fe, &d);
	if (r != SOCK_REWRITTEN)
		return r;
	ck = bpf_get_socket_cookie(ctx);
	slot = sock_slot(ck);
	/* Claim the slot when free; only its owner writes it afterwards. */
	if (slot && (slot->cookie == ck ||
		     (slot->cookie == 0 &&
		      __sync_val_compare_and_swap(&slot->cookie, 0, ck) == 0))) {
		fill_record(&slot->rn, &d, &fe);
		return SYS_PROCEED;
	}
	/* Slot held by another live socket: socket storage, freed with the
	 * socket. */
	if (ctx->sk) {
		rn = bpf_sk_storage_get(&kpx_sk_revnat, ctx->sk, 0,
					BPF_SK_STORAGE_GET_F_CREATE);
		if (rn)
			fill_record(rn, &d, &fe);
	}
	return SYS_PROCEED;
}

static __always_inline int do_sendmsg(struct bpf_sock_addr *ctx, bool v6)
{
	struct kpx_revnat_value rv = {}, *old;
	struct kpx_revnat_key rk = {};
	struct sock_dst fe, d;
	int r;

	if (ctx->protocol != IPPROTO_UDP)
		return SYS_PROCEED;
	r = sock_rewrite(ctx, v6, IPPROTO_UDP, false, &fe, &d);
	if (r != SOCK_REWRITTEN)
		return r;

	rk.cookie = bpf_get_socket_cookie(ctx);
	revnat_key_dst(&rk, &d);
	__builtin_memcpy(rv.addr, fe.addr, 16);
	rv.port = fe.port;
	/* Lookup before update: a DNS client sends many datagrams to the
	 * same backend; rewriting the same LRU entry each time costs. */
	old = bpf_map_lookup_elem(&kpx_revnat, &rk);
	if (!old || old->port != rv.port ||
	    !addr_eq((__u32 *)old->addr, (__u32 *)rv.addr))
		bpf_map_update_elem(&kpx_revnat, &rk, &rv, BPF_ANY);
	return SYS_PROCEED;
}

/* Backend -> frontend for replies and getpeername. */
static __always_inline int do_rev(struct bpf_sock_addr *ctx, bool v6)
{
	struct kpx_revnat_value *rv;
	struct kpx_sk_revnat *rn;
	struct kpx_revnat_key rk = {};
	struct sock_dst d;

	load_dst(ctx, &d, v6);
	rk.cookie = bpf_get_socket_cookie(ctx);
	rn = sock_record(sock_slot(rk.cookie), rk.cookie, ctx->sk);
	if (rn && rn->family == d.family && rn->backend_port == d.port &&
	    addr_eq((__u32 *)rn->backend, d.addr)) {
		__builtin_memcpy(d.addr, rn->frontend, 16);
		d.port = rn->frontend_port;
		store_dst(ctx, &d);
		return SYS_PROCEED;
	}
	if (ctx->protocol != IPPROTO_UDP)
		return SYS_PROCEED;
	revnat_key_dst(&rk, &d);
	rv = bpf_map_lookup_elem(&kpx_revnat, &rk);
	if (!rv)
		return SYS_PROCEED;
	__builtin_memcpy(d.addr, rv->addr, 16);
	d.port = rv->port;
	store_dst(ctx, &d);
	return SYS_PROCEED;
}

/*
 * One program per (hook, family), as the kernel attaches them; the body
 * is shared and v6 a constant, so each program is verified with only its
 * own family's ctx fields. The loader finds them by these names.
 */
#define SOCK_ADDR_PROG(name, sec, body, v6)                                   \
	SEC(sec)                                                              \
	int name(struct bpf_sock_addr *ctx)                                   \
	{                                                                     \
		return body(ctx, v6);                                         \
	}

SOCK_ADDR_PROG(kpx_connect4, "cgroup/connect4", do_connect, false)
SOCK_ADDR_PROG(kpx_connect6, "cgroup/connect6", do_connect, true)
SOCK_ADDR_PROG(kpx_sendmsg4, "cgroup/sendmsg4", do_sendmsg, false)
SOCK_ADDR_PROG(kpx_sendmsg6, "cgroup/sendmsg6", do_sendmsg, true)
SOCK_ADDR_PROG(kpx_recvmsg4, "cgroup/recvmsg4", do_rev, false)
SOCK_ADDR_PROG(kpx_recvmsg6, "cgroup/recvmsg6", do_rev, true)
SOCK_ADDR_PROG(kpx_getpeername4, "cgroup/getpeername4", do_rev, false)
SOCK_ADDR_PROG(kpx_getpeername6, "cgroup/getpeername6", do_rev, true)

/*
 * Destroys connected UDP sockets (in the iterating process's netns) whose
 * peer is listed in kpx_udp_destroy. The application sees ECONNABORTED
 * once and reconnects, which goes through connect4/6 again.
 */
SEC("iter/udp")
int kpx_udp_destroy_iter(struct bpf_iter__udp *ctx)
{
	struct sock *sk = (struct sock *)ctx->udp_sk;
	struct kpx_udp_destroy_key k = {};
	struct kpx_sk_revnat *rn;
	__u16 family;
	__u64 ck;

	if (!sk)
		return 0;
	if (sk->__sk_common.skc_state != TCP_ESTABLISHED)
		return 0;
	family = sk->__sk_common.skc_family;
	if (family == AF_INET) {
		__builtin_memcpy(k.addr, &sk->__sk_common.skc_daddr, 4);
		k.family = KPX_AF_INET;
	} else if (family == AF_INET6) {
		__builtin_memcpy(k.addr,
				 &sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32,
				 16);
		k.family = KPX_AF_INET6;
	} else {
		return 0;
	}
	k.port = sk->__sk_common.skc_dport;
	/* Only sockets that connect4/6 sent to this backend for a service:
	 * their record says which frontend, which must be the one the
	 * backend left. skc_cookie is read directly: 0 means no cookie was
	 * ever made, so connect4/6 never saw the socket. */
	ck = sk->__sk_common.skc_cookie.counter;
	rn = sock_record(ck ? sock_slot(ck) : NULL, ck, sk);
	if (!rn || rn->family != k.family || rn->backend_port != k.port)
		return 0;
	__builtin_memcpy(k.frontend, rn->frontend, 16);
	k.frontend_port = rn->frontend_port;
	if (bpf_map_lookup_elem(&kpx_udp_destroy, &k))
		bpf_sock_destroy((struct sock_common *)sk);
	return 0;
}

/* Frees the socket's slot on close (the storage fallback frees itself). */
SEC("cgroup/sock_release")
int kpx_sock_release(struct bpf_sock *ctx)
{
	struct kpx_sock_slot *slot;
	__u64 ck;

	if (ctx->protocol != IPPROTO_TCP && ctx->protocol != IPPROTO_UDP)
		return SYS_PROCEED;
	ck = bpf_get_socket_cookie(ctx);
	slot = sock_slot(ck);
	if (slot && slot->cookie == ck)
		__sync_val_compare_and_swap(&slot->cookie, ck, 0);
	return SYS_PROCEED;
}
