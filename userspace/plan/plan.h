/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The plan: this node's desired dataplane state, computed from the store
 * by pure functions. This is the single place where Kubernetes Service
 * semantics live (traffic policies, topology hints, terminating fallback,
 * affinity, reject-vs-drop); both backends only translate it.
 *
 * Unit of the plan is a service port of one IP family ("svcport"), as
 * kube-proxy's per-family proxiers: a dual-stack Service port yields two.
 * Owns: the plan memory. Must not: do I/O or touch the kernel.
 */
#ifndef KPX_PLAN_H
#define KPX_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/addr.h"
#include "k8s/objects.h"

struct kpx_store;
struct json_object;

#define KPX_PLAN_MAX_CIDRS 16
#define KPX_SVCPORT_ID_MAX (KPX_NS_MAX + KPX_NAME_MAX + KPX_PORTNAME_MAX + 16)

/* Node-level inputs, from flags and the own Node object. */
struct kpx_plan_input {
	char node_name[KPX_NAME_MAX];
	char node_zone[KPX_ZONE_MAX]; /* "" when unknown: hints unused */
	struct kpx_addr node_ips[4];  /* at most one primary per family first */
	size_t n_node_ips;
	/* --nodeport-addresses; n == 0 means "primary": node_ips. */
	struct kpx_cidr nodeport_cidrs[KPX_PLAN_MAX_CIDRS];
	size_t n_nodeport_cidrs;
	/* Addresses of this node's devices, matched against nodeport_cidrs. */
	struct kpx_addr local_addrs[32];
	size_t n_local_addrs;
	/* --cluster-cidr: sources inside are pods (never masqueraded on
	 * their way to a ClusterIP); empty: pods cannot be told from other
	 * sources, as in kube-proxy without a local-traffic detector. */
	struct kpx_cidr cluster_cidrs[KPX_PLAN_MAX_CIDRS];
	size_t n_cluster_cidrs;
	bool masquerade_all;
	/* --external-ip-cidrs: when set, only externalIPs inside these are
	 * served, and never a node address (CVE-2020-8554 mitigation). */
	struct kpx_cidr external_ip_cidrs[KPX_PLAN_MAX_CIDRS];
	size_t n_external_ip_cidrs;
	/* What the chosen backend's datapath can express (backend.h). */
	struct kpx_plan_caps {
		/* Traffic from this node can be dropped silently (a socket
		 * hook can only fail connect() at once, like a reject). */
		bool local_drop;
		/* loadBalancerSourceRanges can be checked for traffic from
		 * this node (a connect() hook does not know the source yet). */
		bool local_source_ranges;
		/* A pod on this node can be told from the node's own
		 * processes (socket hooks see both as local sockets). */
		bool local_pod_vs_node;
	} caps;
};

enum kpx_ep_flags {
	KPX_EP_READY = 1 << 0,
	KPX_EP_SERVING = 1 << 1,
	KPX_EP_TERMINATING = 1 << 2,
	KPX_EP_LOCAL = 1 << 3, /* nodeName == this node */
	/* The address is one of this node's own (a hostNetwork pod): traffic
	 * for it is delivered to the node's stack, never forwarded, and so
	 * never source-NATed on the way (kube-proxy: DNAT to a local address
	 * takes the input path, where no POSTROUTING masquerade runs). */
	KPX_EP_HOST = 1 << 4,
};

struct kpx_plan_endpoint {
	struct kpx_addr addr;
	uint16_t port;
	uint8_t flags; /* enum kpx_ep_flags */
	uint8_t pad;
};

enum kpx_fe_kind {
	KPX_FE_CLUSTER_IP,
	KPX_FE_NODE_PORT,
	KPX_FE_EXTERNAL_IP,
	KPX_FE_LOAD_BALANCER,
};

/*
 * Where traffic to a frontend comes from. Each origin gets its own row:
 * how kube-proxy treats a packet depends on it (the eTP=Local
 * short-circuit, masquerade of the node's own traffic, ...).
 */
enum kpx_origin {
	KPX_ORIGIN_POD,	   /* a pod on this node */
	KPX_ORIGIN_NODE,   /* a process in this node's host network */
	KPX_ORIGIN_REMOTE, /* another node, or outside the cluster */
	KPX_ORIGINS,
};

/* Which endpoint set of the svcport a row uses. */
enum kpx_plan_set {
	KPX_SET_INTERNAL, /* after internalTrafficPolicy */
	KPX_SET_EXTERNAL, /* after externalTrafficPolicy */
	KPX_SET_CLUSTER,  /* cluster policy: no locality filter */
};

/* Source NAT to the node's address on the way to the endpoint. Hairpin
 * (an endpoint reaching itself through the service) is always
 * masqueraded, whatever the row says. */
enum kpx_masq {
	KPX_MASQ_NEVER,
	KPX_MASQ_ALWAYS,
	/* Unless the source is inside input.cluster_cidrs (a pod). */
	KPX_MASQ_OFF_CLUSTER,
};

/* A row differs from kube-proxy because the backend cannot express it
 * (input.caps); kept in the plan so that `kpx plan` shows it. */
enum kpx_row_degraded {
	KPX_ROW_DROP_AS_REJECT = 1 << 0,    /* empty set: refused at once */
	KPX_ROW_NO_SOURCE_RANGES = 1 << 1, /* ranges not checked */
	KPX_ROW_POD_AS_NODE = 1 << 2,	    /* the node row's set applies */
};

/* Everything a backend needs to treat one origin's traffic to one
 * frontend; a backend decides nothing of its own. */
struct kpx_plan_row {
	uint8_t set;	       /* enum kpx_plan_set */
	uint8_t empty;	       /* enum kpx_empty_action, when the set is empty */
	uint8_t masq;	       /* enum kpx_masq */
	bool source_ranges;    /* drop sources outside svcport.source_ranges */
	uint8_t degraded;      /* enum kpx_row_degraded */
};

struct kpx_plan_frontend {
	enum kpx_fe_kind kind;
	/* NodePort: one entry per nodeport address of this family. */
	struct kpx_addr addr;
	uint16_t port;
	/* false for ClusterIP (internal set); true for the other kinds:
	 * external set for traffic from outside, cluster set for traffic
	 * from local sockets/pods. */
	bool external;
	struct kpx_plan_row rows[KPX_ORIGINS];
};

/* What to do with traffic whose endpoint set is empty. */
enum kpx_empty_action {
	KPX_EMPTY_REJECT, /* no endpoints at all: TCP RST / ICMP unreachable */
	KPX_EMPTY_DROP,	  /* Local policy filtered every endpoint out */
};

/* Why a user-written address (externalIP, LoadBalancer ingress IP) is
 * not served. */
enum kpx_refusal {
	/* It is a ClusterIP: the API server allocated it to a Service, and
	 * an address a user wrote never takes it over. */
	KPX_REFUSED_CLUSTER_IP,
	/* Unspecified, loopback, multicast or link-local. */
	KPX_REFUSED_SPECIAL,
	/* Outside --external-ip-cidrs. */
	KPX_REFUSED_NOT_ALLOWED,
	/* A node address, with --external-ip-cidrs set. */
	KPX_REFUSED_NODE_ADDRESS,
};

struct kpx_plan_refused {
	enum kpx_fe_kind kind; /* KPX_FE_EXTERNAL_IP or KPX_FE_LOAD_BALANCER */
	enum kpx_refusal reason;
	struct kpx_addr addr;
	/* KPX_REFUSED_CLUSTER_IP: "ns/name" of the Service holding it. */
	char owner[KPX_NS_MAX + KPX_NAME_MAX];
};

struct kpx_plan_svcport {
	/* "ns/name:portname/PROTO/v4"; stable identity for diffs. The four
	 * strings are interned (common/intern.h) and owned by the svcport:
	 * a copy that outlives the plan takes its own references with
	 * kpx_plan_svcport_ref_strings(). */
	const char *id;
	const char *ns;
	const char *name;
	const char *port_name;
	uint8_t family;
	uint8_t proto;
	uint16_t port;
	uint16_t node_port;    /* 0: none */
	uint16_t hc_node_port; /* healthCheckNodePort, 0: none */
	enum kpx_svc_type type;
	uint32_t affinity_timeout; /* seconds, 0: no affinity */
	bool etp_local;
	bool itp_local;

	struct kpx_plan_frontend *frontends;
	size_t n_frontends;

	/* Every endpoint of this family and port that may receive traffic in
	 * some set (ready, or serving+terminating), sorted by address. */
	struct kpx_plan_endpoint *endpoints;
	size_t n_endpoints;
	/* Indices into endpoints:
	 * internal: ClusterIP traffic (after iTP);
	 * external: NodePort/externalIP/LB traffic from outside (after eTP);
	 * cluster:  cluster-policy set (ready, topology, terminating
	 *           fallback; no locality filter): what local pods and the
	 *           node itself get when they connect to an external frontend
	 *           of an eTP=Local service (kube-proxy's short-circuit). */
	uint32_t *internal;
	size_t n_internal;
	uint32_t *external;
	size_t n_external;
	uint32_t *cluster;
	size_t n_cluster;
	enum kpx_empty_action internal_empty;
	enum kpx_empty_action external_empty;

	/* loadBalancerSourceRanges of this family; empty: allow all. */
	struct kpx_cidr *source_ranges;
	size_t n_source_ranges;

	/* Addresses of this Service that are not served, and why. */
	struct kpx_plan_refused *refused;
	size_t n_refused;

	uint32_t local_ready; /* for healthCheckNodePort */
	uint64_t hash;	      /* of everything above except hash itself */
};

struct kpx_plan {
	struct kpx_plan_input input;
	/* Sorted by id. */
	struct kpx_plan_svcport *svcports;
	size_t n_svcports;
	size_t n_frontends;
	size_t n_endpoints;
	/* svcports whose namespace, name or port name has ':' or '/' (only
	 * from unvalidated manifests): their ids do not group by service,
	 * so kpx_plan_update recomputes everything while any exist. */
	size_t n_odd_ids;
};

/* Pure: computes the plan from the store. Returns 0 or -ENOMEM. */
/* For a copy of a svcport that outlives the plan (a backend's record of
 * what it programmed): one more reference to each of its strings, and
 * their release. */
void kpx_plan_svcport_ref_strings(struct kpx_plan_svcport *sp);
void kpx_plan_svcport_put_strings(struct kpx_plan_svcport *sp);

int kpx_plan_build(const struct kpx_store *store,
		   const struct kpx_plan_input *input, struct kpx_plan **out);
void kpx_plan_free(struct kpx_plan *plan);

/*
 * Incremental build, for one-endpoint changes at scale: updates plan (built
 * from this store, whose change tracker was not cleared since) in place to
 * exactly what kpx_plan_build(store, input) would give, recomputing only
 * the services the store marks dirty and reusing every other svcport. A
 * changed input, or a store that lost track of its changes, recomputes
 * every service. Unchanged ids stay in their slots; added or removed
 * svcports are merged in, never a re-sort.
 * On success *undo records what was replaced, and the caller must pass it
 * to exactly one of kpx_plan_commit (keep the new plan; frees the old
 * svcports) or kpx_plan_rollback (restore the previous plan exactly, e.g.
 * after a failed backend sync). On error plan is unchanged and *undo NULL.
 * Returns 0 or -ENOMEM.
 */
struct kpx_plan_undo;
int kpx_plan_update(struct kpx_plan *plan, const struct kpx_store *store,
		    const struct kpx_plan_input *input,
		    struct kpx_plan_undo **undo);
void kpx_plan_commit(struct kpx_plan_undo *undo);
void kpx_plan_rollback(struct kpx_plan *plan, struct kpx_plan_undo *undo);
/* What the last kpx_plan_update did, for logs: svcports recomputed,
 * whether every service was (input changed) and whether the array was
 * merged rather than patched in place. */
struct kpx_plan_update_stats {
	size_t services;
	size_t svcports_new;
	size_t svcports_old;
	bool all;
	bool merged;
};
void kpx_plan_undo_stats(const struct kpx_plan_undo *undo,
			 struct kpx_plan_update_stats *out);
bool kpx_plan_input_equal(const struct kpx_plan_input *a,
			  const struct kpx_plan_input *b);
/* Binary search by id; NULL when absent. */
const struct kpx_plan_svcport *kpx_plan_find(const struct kpx_plan *plan,
					     const char *id);
/* The JSON shape `kpx plan -o json` prints (documented in README). */
struct json_object *kpx_plan_to_json(const struct kpx_plan *plan);
/* sp's refused addresses as a JSON array; with_service adds "service". */
struct json_object *kpx_plan_refused_json(const struct kpx_plan_svcport *sp,
					  bool with_service);
/* Refused addresses in the whole plan, and a signature that changes
 * whenever the set does (for logging each change once). */
size_t kpx_plan_count_refused(const struct kpx_plan *plan, uint64_t *sig);
/* Human-readable table, for `kpx plan`. */
void kpx_plan_print(const struct kpx_plan *plan, void *file /* FILE* */);

const char *kpx_fe_kind_name(enum kpx_fe_kind kind);
const char *kpx_origin_name(enum kpx_origin o);
const char *kpx_refusal_name(enum kpx_refusal r);
const char *kpx_masq_name(enum kpx_masq m);
const char *kpx_plan_set_name(enum kpx_plan_set s);
/* The endpoint indices (into sp->endpoints) a row, or a set, uses. */
const uint32_t *kpx_plan_row_set(const struct kpx_plan_svcport *sp,
				 const struct kpx_plan_row *row, size_t *n);
const uint32_t *kpx_plan_set_idx(const struct kpx_plan_svcport *sp,
				 enum kpx_plan_set set, size_t *n);
/* input has a --cluster-cidr of family: pods can be told apart. */
bool kpx_plan_has_cluster_cidr(const struct kpx_plan_input *in, uint8_t fam);
/* Whether the row's set keeps only this node's endpoints (a Local
 * traffic policy applies to it): for inspection output. */
bool kpx_plan_row_local_only(const struct kpx_plan_svcport *sp,
			     const struct kpx_plan_row *row);

#endif
