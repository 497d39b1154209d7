// SPDX-License-Identifier: Apache-2.0
/*
 * Building the plan: Kubernetes Service semantics, following kube-proxy
 * (pkg/proxy: serviceport.go, endpointslicecache.go, topology.go) rule for
 * rule, so that both backends program what kube-proxy would.
 *
 * Per service: one svcport per (service port, IP family of a ClusterIP).
 * Per svcport: the service's EndpointSlices are merged on (port name,
 * protocol), de-duplicated on IP:port, then split into the cluster set
 * (ready, topology hints, terminating fallback), the local set (ready
 * local, terminating fallback) and from those the internal (iTP) and
 * external (eTP) sets.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "model/store.h"
#include "plan/plan.h"
#include "plan/plan_internal.h"

const char *kpx_plan_type_name(enum kpx_svc_type type)
{
	switch (type) {
	case KPX_SVC_CLUSTER_IP:
		return "ClusterIP";
	case KPX_SVC_NODE_PORT:
		return "NodePort";
	case KPX_SVC_LOAD_BALANCER:
		return "LoadBalancer";
	case KPX_SVC_EXTERNAL_NAME:
		return "ExternalName";
	}
	return "Unknown";
}

const char *kpx_origin_name(enum kpx_origin o)
{
	switch (o) {
	case KPX_ORIGIN_POD:
		return "pod";
	case KPX_ORIGIN_NODE:
		return "node";
	default:
		return "remote";
	}
}

const char *kpx_refusal_name(enum kpx_refusal r)
{
	switch (r) {
	case KPX_REFUSED_CLUSTER_IP:
		return "is a ClusterIP";
	case KPX_REFUSED_SPECIAL:
		return "special address";
	case KPX_REFUSED_NOT_ALLOWED:
		return "outside --external-ip-cidrs";
	default:
		return "node address";
	}
}

const char *kpx_masq_name(enum kpx_masq m)
{
	switch (m) {
	case KPX_MASQ_NEVER:
		return "never";
	case KPX_MASQ_ALWAYS:
		return "always";
	default:
		return "off-cluster";
	}
}

const char *kpx_plan_set_name(enum kpx_plan_set s)
{
	switch (s) {
	case KPX_SET_INTERNAL:
		return "internal";
	case KPX_SET_EXTERNAL:
		return "external";
	default:
		return "cluster";
	}
}

const uint32_t *kpx_plan_row_set(const struct kpx_plan_svcport *sp,
				 const struct kpx_plan_row *row, size_t *n)
{
	return kpx_plan_set_idx(sp, row->set, n);
}

const uint32_t *kpx_plan_set_idx(const struct kpx_plan_svcport *sp,
				 enum kpx_plan_set set, size_t *n)
{
	switch (set) {
	case KPX_SET_INTERNAL:
		*n = sp->n_internal;
		return sp->internal;
	case KPX_SET_EXTERNAL:
		*n = sp->n_external;
		return sp->external;
	default:
		*n = sp->n_cluster;
		return sp->cluster;
	}
}

bool kpx_plan_row_local_only(const struct kpx_plan_svcport *sp,
			     const struct kpx_plan_row *row)
{
	return (row->set == KPX_SET_INTERNAL && sp->itp_local) ||
	       (row->set == KPX_SET_EXTERNAL && sp->etp_local);
}

const char *kpx_fe_kind_name(enum kpx_fe_kind kind)
{
	switch (kind) {
	case KPX_FE_CLUSTER_IP:
		return "ClusterIP";
	case KPX_FE_NODE_PORT:
		return "NodePort";
	case KPX_FE_EXTERNAL_IP:
		return "ExternalIP";
	case KPX_FE_LOAD_BALANCER:
		return "LoadBalancer";
	}
	return "Unknown";
}

/* ---- growable arrays ---------------------------------------------------- */

static int grow(void **arr, size_t *cap, size_t n, size_t elem)
{
	size_t nc;
	void *p;

	if (n < *cap)
		return 0;
	nc = *cap ? *cap * 2 : 8;
	p = realloc(*arr, nc * elem);
	if (!p)
		return -ENOMEM;
	*arr = p;
	*cap = nc;
	return 0;
}

/* ---- endpoint merging --------------------------------------------------- */

/* One endpoint of one slice for one service port, before de-duplication. */
struct cand {
	struct kpx_addr addr;
	uint16_t port;
	uint8_t flags;
	uint32_t seq; /* merge order: slice name order, then slice order */
	const struct kpx_endpoint *ep;
};

struct build_ctx {
	const struct kpx_store *store_ref;
	const struct kpx_plan_input *in;
	struct kpx_plan *plan;
	size_t cap_svcports;
	int err;

	/* Scratch reused across services. */
	const struct kpx_endpoint_slice **slices;
	size_t n_slices, cap_slices;
	struct cand *cands;
	size_t n_cands, cap_cands;
};

static void collect_slice(const struct kpx_endpoint_slice *sl, void *arg)
{
	struct build_ctx *c = arg;

	if (sl->proxy_ignored)
		return;
	if (grow((void **)&c->slices, &c->cap_slices, c->n_slices,
		 sizeof(*c->slices))) {
		c->err = -ENOMEM;
		return;
	}
	c->slices[c->n_slices++] = sl;
}

static int cmp_cand(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;
	int r = kpx_addr_cmp(&x->addr, &y->addr);

	if (r)
		return r;
	if (x->port != y->port)
		return x->port < y->port ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static bool is_node_addr(const struct kpx_plan_input *in,
			 const struct kpx_addr *a)
{
	for (size_t i = 0; i < in->n_node_ips; i++)
		if (kpx_addr_eq(&in->node_ips[i], a))
			return true;
	for (size_t i = 0; i < in->n_local_addrs; i++)
		if (kpx_addr_eq(&in->local_addrs[i], a))
			return true;
	return false;
}

/*
 * Gathers every endpoint of family for (port name, protocol) from the
 * service's slices, sorted by (address, port) and de-duplicated as
 * kube-proxy's addEndpoints does: the first one wins, except that a later
 * local one replaces it ("isLocal should not vary between matching
 * endpoints, but if it does, we favor a true value"). kube-proxy walks
 * slices in Go map order; slice name order makes it deterministic.
 */
static int merge_endpoints(struct build_ctx *c, uint8_t family,
			   const struct kpx_svc_port *sp)
{
	uint32_t seq = 0;
	size_t out = 0;

	c->n_cands = 0;
	for (size_t i = 0; i < c->n_slices; i++) {
		const struct kpx_endpoint_slice *sl = c->slices[i];

		for (size_t p = 0; p < sl->n_ports; p++) {
			const struct kpx_slice_port *port = &sl->ports[p];

			if (port->proto != sp->proto ||
			    strcmp(port->name, sp->name) || !port->port)
				continue;
			for (size_t e = 0; e < sl->n_endpoints; e++) {
				const struct kpx_endpoint *ep = &sl->endpoints[e];
				struct cand *cd;

				/* kube-proxy checks each address, not the
				 * slice's addressType. */
				if (ep->addr.family != family)
					continue;
				if (grow((void **)&c->cands, &c->cap_cands,
					 c->n_cands, sizeof(*c->cands)))
					return -ENOMEM;
				cd = &c->cands[c->n_cands++];
				cd->addr = ep->addr;
				cd->port = port->port;
				cd->seq = seq++;
				cd->ep = ep;
				cd->flags = (ep->ready ? KPX_EP_READY : 0) |
					    (ep->serving ? KPX_EP_SERVING : 0) |
					    (ep->terminating ? KPX_EP_TERMINATING : 0);
				if (c->in->node_name[0] &&
				    !strcmp(ep->node_name, c->in->node_name))
					cd->flags |= KPX_EP_LOCAL;
				if (is_node_addr(c->in, &ep->addr))
					cd->flags |= KPX_EP_HOST;
			}
		}
	}
	if (c->n_cands > 1)
		qsort(c->cands, c->n_cands, sizeof(*c->cands), cmp_cand);
	/* Within a run of equal IP:port (ordered by seq) keep the first,
	 * replaced by each later local one. */
	for (size_t i = 0; i < c->n_cands;) {
		size_t j = i + 1, keep = i;

		while (j < c->n_cands &&
		       kpx_addr_eq(&c->cands[j].addr, &c->cands[i].addr) &&
		       c->cands[j].port == c->cands[i].port) {
			if (c->cands[j].flags & KPX_EP_LOCAL)
				keep = j;
			j++;
		}
		c->cands[out++] = c->cands[keep];
		i = j;
	}
	c->n_cands = out;
	return 0;
}

/* ---- endpoint sets ------------------------------------------------------ */

static bool usable(uint8_t f)
{
	return (f & KPX_EP_READY) ||
	       ((f & KPX_EP_SERVING) && (f & KPX_EP_TERMINATING));
}

static bool serving_terminating(uint8_t f)
{
	return (f & KPX_EP_SERVING) && (f & KPX_EP_TERMINATING);
}

/* Which hints pick the cluster endpoints (topology.go topologyModeFromHints). */
enum topo_mode { TOPO_NONE, TOPO_NODE, TOPO_ZONE };

static bool named_in(const char *const *names, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(names[i], name))
			return true;
	return false;
}

static bool for_node(const struct kpx_endpoint *ep, const char *node)
{
	return named_in(ep->hint_nodes, ep->n_hint_nodes, node);
}

static bool for_zone(const struct kpx_endpoint *ep, const char *zone)
{
	return named_in(ep->hint_zones, ep->n_hint_zones, zone);
}

/*
 * PreferSameNode first: every ready endpoint carries node hints and one
 * names this node; else PreferSameZone: every ready endpoint carries zone
 * hints and one names this node's zone (a node without a zone label
 * ignores them).
 */
static enum topo_mode topology_mode(const struct cand *cd, size_t n,
				    const char *node, const char *zone)
{
	bool all_node = true, all_zone = true, node_hit = false,
	     zone_hit = false, any_ready = false;

	for (size_t i = 0; i < n; i++) {
		const struct kpx_endpoint *ep = cd[i].ep;

		if (!(cd[i].flags & KPX_EP_READY))
			continue;
		any_ready = true;
		if (!ep->n_hint_nodes)
			all_node = false;
		else if (node[0] && for_node(ep, node))
			node_hit = true;
		if (!ep->n_hint_zones)
			all_zone = false;
		else if (zone[0] && for_zone(ep, zone))
			zone_hit = true;
	}
	if (!any_ready)
		return TOPO_NONE;
	if (all_node && node_hit)
		return TOPO_NODE;
	if (all_zone && zone_hit)
		return TOPO_ZONE;
	return TOPO_NONE;
}

static bool topology_allows(const struct kpx_endpoint *ep, enum topo_mode m,
			    const struct kpx_plan_input *in)
{
	return m == TOPO_NONE || (m == TOPO_NODE && for_node(ep, in->node_name)) ||
	       (m == TOPO_ZONE && for_zone(ep, in->node_zone));
}

static int build_sets(struct build_ctx *c, struct kpx_plan_svcport *sp)
{
	const struct cand *cd = c->cands;
	size_t n = 0, nc = 0, nl = 0;
	enum topo_mode topo;
	bool local_ready = false;
	uint32_t *cluster = NULL, *local = NULL;

	/* endpoints: the usable ones, in (address, port) order already. */
	for (size_t i = 0; i < c->n_cands; i++)
		if (usable(cd[i].flags))
			n++;
	if (n) {
		sp->endpoints = calloc(n, sizeof(*sp->endpoints));
		cluster = calloc(n, sizeof(*cluster));
		local = calloc(n, sizeof(*local));
		if (!sp->endpoints || !cluster || !local)
			goto nomem;
	}
	sp->n_endpoints = 0;
	for (size_t i = 0; i < c->n_cands; i++) {
		struct kpx_plan_endpoint *e;

		if (!usable(cd[i].flags))
			continue;
		/* Compact cands so indices below equal endpoint indices. */
		c->cands[sp->n_endpoints] = cd[i];
		e = &sp->endpoints[sp->n_endpoints++];
		e->addr = cd[i].addr;
		e->port = cd[i].port;
		e->flags = cd[i].flags;
	}
	c->n_cands = n;

	/* Cluster: ready (topology-filtered), else serving+terminating. */
	topo = topology_mode(cd, n, c->in->node_name, c->in->node_zone);
	for (size_t i = 0; i < n; i++)
		if ((cd[i].flags & KPX_EP_READY) &&
		    topology_allows(cd[i].ep, topo, c->in))
			cluster[nc++] = i;
	if (!nc)
		for (size_t i = 0; i < n; i++)
			if (serving_terminating(cd[i].flags))
				cluster[nc++] = i;

	/* Local: ready local, else serving+terminating local; no topology. */
	for (size_t i = 0; i < n; i++)
		if ((cd[i].flags & (KPX_EP_READY | KPX_EP_LOCAL)) ==
		    (KPX_EP_READY | KPX_EP_LOCAL))
			local[nl++] = i;
	sp->local_ready = nl;
	local_ready = nl > 0;
	if (!local_ready)
		for (size_t i = 0; i < n; i++)
			if ((cd[i].flags & KPX_EP_LOCAL) &&
			    serving_terminating(cd[i].flags))
				local[nl++] = i;

	sp->cluster = cluster;
	sp->n_cluster = nc;
	cluster = NULL;
	/* internal/external own copies so that free() is uniform. */
	sp->n_internal = sp->itp_local ? nl : sp->n_cluster;
	sp->n_external = sp->etp_local ? nl : sp->n_cluster;
	if (n) {
		sp->internal = malloc(n * sizeof(uint32_t));
		sp->external = malloc(n * sizeof(uint32_t));
		if (!sp->internal || !sp->external)
			goto nomem;
		memcpy(sp->internal, sp->itp_local ? local : sp->cluster,
		       sp->n_internal * sizeof(uint32_t));
		memcpy(sp->external, sp->etp_local ? local : sp->cluster,
		       sp->n_external * sizeof(uint32_t));
	}
	/*
	 * kube-proxy: no usable endpoint anywhere -> reject; endpoints
	 * exist but the Local policy left none here -> drop. (A cluster-
	 * policy set is empty only when there is no usable endpoint.)
	 */
	sp->internal_empty = n && sp->itp_local ? KPX_EMPTY_DROP
						 : KPX_EMPTY_REJECT;
	sp->external_empty = n && sp->etp_local ? KPX_EMPTY_DROP
						 : KPX_EMPTY_REJECT;
	free(local);
	return 0;
nomem:
	free(cluster);
	free(local);
	return -ENOMEM;
}

/* ---- frontends ---------------------------------------------------------- */

static int add_fe(struct kpx_plan_svcport *sp, size_t *cap,
		  enum kpx_fe_kind kind, const struct kpx_addr *a, uint16_t port,
		  bool external)
{
	struct kpx_plan_frontend *fe;

	for (size_t i = 0; i < sp->n_frontends; i++)
		if (sp->frontends[i].kind == kind &&
		    kpx_addr_eq(&sp->frontends[i].addr, a))
			return 0;
	if (grow((void **)&sp->frontends, cap, sp->n_frontends,
		 sizeof(*sp->frontends)))
		return -ENOMEM;
	fe = &sp->frontends[sp->n_frontends++];
	memset(fe, 0, sizeof(*fe));
	fe->kind = kind;
	fe->addr = *a;
	fe->port = port;
	fe->external = external;
	return 0;
}

static bool in_nodeport_cidrs(const struct kpx_plan_input *in,
			      const struct kpx_addr *a)
{
	for (size_t i = 0; i < in->n_nodeport_cidrs; i++)
		if (kpx_cidr_contains(&in->nodeport_cidrs[i], a))
			return true;
	return false;
}

static bool special_addr(const struct kpx_addr *a)
{
	if (a->family == AF_INET) {
		uint32_t v = ntohl(a->v4.s_addr);

		return v == 0 || (v >> 24) == 127 || (v >> 28) == 0xe ||
		       (v >> 16) == 0xa9fe || v == 0xffffffff;
	}
	return IN6_IS_ADDR_UNSPECIFIED(&a->v6) || IN6_IS_ADDR_LOOPBACK(&a->v6) ||
	       IN6_IS_ADDR_MULTICAST(&a->v6) || IN6_IS_ADDR_LINKLOCAL(&a->v6) ||
	       IN6_IS_ADDR_V4MAPPED(&a->v6);
}

static bool in_cidrs(const struct kpx_cidr *c, size_t n,
		     const struct kpx_addr *a)
{
	for (size_t i = 0; i < n; i++)
		if (kpx_cidr_contains(&c[i], a))
			return true;
	return false;
}

static int refuse(struct kpx_plan_svcport *sp, size_t *cap,
		  enum kpx_fe_kind kind, const struct kpx_addr *a,
		  enum kpx_refusal why, const struct kpx_service *owner)
{
	struct kpx_plan_refused *r;

	if (grow((void **)&sp->refused, cap, sp->n_refused, sizeof(*sp->refused)))
		return -ENOMEM;
	r = &sp->refused[sp->n_refused++];
	memset(r, 0, sizeof(*r));
	r->kind = kind;
	r->reason = why;
	r->addr = *a;
	if (owner)
		snprintf(r->owner, sizeof(r->owner), "%s/%s", owner->ns,
			 owner->name);
	return 0;
}

/*
 * Addresses that users write (spec.externalIPs by anyone who may create a
 * Service, status.loadBalancer by a controller) are served only where
 * they cannot take over traffic that belongs to someone else: never a
 * ClusterIP, never a special address, and with --external-ip-cidrs only
 * inside those and never a node's own address (CVE-2020-8554). Returns
 * 1 when a is served, 0 when refused (and recorded), or -ENOMEM.
 */
static int user_addr_allowed(const struct build_ctx *c,
			     struct kpx_plan_svcport *sp, size_t *cap,
			     enum kpx_fe_kind kind, const struct kpx_addr *a)
{
	const struct kpx_plan_input *in = c->in;
	const struct kpx_service *owner;
	int r = 0;

	if (special_addr(a))
		r = refuse(sp, cap, kind, a, KPX_REFUSED_SPECIAL, NULL);
	else if ((owner = kpx_store_cluster_ip_owner(c->store_ref, a)))
		r = refuse(sp, cap, kind, a, KPX_REFUSED_CLUSTER_IP, owner);
	else if (kind == KPX_FE_EXTERNAL_IP && in->n_external_ip_cidrs &&
		 !in_cidrs(in->external_ip_cidrs, in->n_external_ip_cidrs, a))
		r = refuse(sp, cap, kind, a, KPX_REFUSED_NOT_ALLOWED, NULL);
	else if (kind == KPX_FE_EXTERNAL_IP && in->n_external_ip_cidrs &&
		 is_node_addr(in, a))
		r = refuse(sp, cap, kind, a, KPX_REFUSED_NODE_ADDRESS, NULL);
	else
		return 1;
	return r ? r : 0;
}

static int build_frontends(const struct build_ctx *c,
			   const struct kpx_service *svc,
			   struct kpx_plan_svcport *sp)
{
	const struct kpx_plan_input *in = c->in;
	size_t cap = 0, rcap = 0;
	uint8_t fam = sp->family;
	int r = 0;

	for (size_t i = 0; i < svc->n_cluster_ips && !r; i++)
		if (svc->cluster_ips[i].family == fam)
			r = add_fe(sp, &cap, KPX_FE_CLUSTER_IP,
				   &svc->cluster_ips[i], sp->port, false);
	if (sp->node_port && !in->n_nodeport_cidrs) {
		/* "primary": the node's first IP of this family. */
		for (size_t i = 0; i < in->n_node_ips && !r; i++)
			if (in->node_ips[i].family == fam) {
				r = add_fe(sp, &cap, KPX_FE_NODE_PORT,
					   &in->node_ips[i], sp->node_port, true);
				break;
			}
	} else if (sp->node_port) {
		for (size_t i = 0; i < in->n_local_addrs && !r; i++)
			if (in->local_addrs[i].family == fam &&
			    in_nodeport_cidrs(in, &in->local_addrs[i]))
				r = add_fe(sp, &cap, KPX_FE_NODE_PORT,
					   &in->local_addrs[i], sp->node_port,
					   true);
		for (size_t i = 0; i < in->n_node_ips && !r; i++)
			if (in->node_ips[i].family == fam &&
			    in_nodeport_cidrs(in, &in->node_ips[i]))
				r = add_fe(sp, &cap, KPX_FE_NODE_PORT,
					   &in->node_ips[i], sp->node_port, true);
	}
	for (size_t i = 0; i < svc->n_external_ips && !r; i++) {
		const struct kpx_addr *a = &svc->external_ips[i];

		if (a->family != fam)
			continue;
		r = user_addr_allowed(c, sp, &rcap, KPX_FE_EXTERNAL_IP, a);
		if (r > 0)
			r = add_fe(sp, &cap, KPX_FE_EXTERNAL_IP, a, sp->port, true);
	}
	for (size_t i = 0; i < svc->n_lb_ips && !r; i++) {
		const struct kpx_addr *a = &svc->lb_ips[i];

		if (a->family != fam)
			continue;
		r = user_addr_allowed(c, sp, &rcap, KPX_FE_LOAD_BALANCER, a);
		if (r > 0)
			r = add_fe(sp, &cap, KPX_FE_LOAD_BALANCER, a, sp->port,
				   true);
	}
	/* The plan lives until the next full sync, 100,000 svcports of
	 * mostly one frontend: no room left for 8 (add_fe's growth). */
	if (r >= 0 && cap > sp->n_frontends && sp->n_frontends) {
		void *p = realloc(sp->frontends,
				  sp->n_frontends * sizeof(*sp->frontends));

		if (p)
			sp->frontends = p;
	}
	return r;
}

static int build_source_ranges(const struct kpx_service *svc,
			       struct kpx_plan_svcport *sp)
{
	size_t n = 0;

	for (size_t i = 0; i < svc->n_lb_source_ranges; i++)
		if (svc->lb_source_ranges[i].addr.family == sp->family)
			n++;
	if (!n)
		return 0;
	sp->source_ranges = calloc(n, sizeof(*sp->source_ranges));
	if (!sp->source_ranges)
		return -ENOMEM;
	for (size_t i = 0; i < svc->n_lb_source_ranges; i++)
		if (svc->lb_source_ranges[i].addr.family == sp->family)
			sp->source_ranges[sp->n_source_ranges++] =
				svc->lb_source_ranges[i];
	return 0;
}

/* ---- traffic rows ------------------------------------------------------- */

bool kpx_plan_has_cluster_cidr(const struct kpx_plan_input *in, uint8_t fam)
{
	for (size_t i = 0; i < in->n_cluster_cidrs; i++)
		if (in->cluster_cidrs[i].addr.family == fam)
			return true;
	return false;
}

/*
 * How each origin's traffic to fe is treated, as kube-proxy's nftables
 * mode chains it (proxier.go: the service-, external- and cluster-
 * chains, mark-for-masquerade, the firewall and endpoints checks).
 */
static void build_rows(const struct kpx_plan_input *in,
		       struct kpx_plan_svcport *sp, struct kpx_plan_frontend *fe)
{
	bool cidr = kpx_plan_has_cluster_cidr(in, sp->family);
	bool ranges = fe->kind == KPX_FE_LOAD_BALANCER && sp->n_source_ranges;

	for (int o = 0; o < KPX_ORIGINS; o++) {
		struct kpx_plan_row *r = &fe->rows[o];

		memset(r, 0, sizeof(*r));
		if (!fe->external) {
			/* ClusterIP: the internal set for every origin. With
			 * --masquerade-all everything is masqueraded; with a
			 * cluster CIDR whatever does not come from a pod
			 * (the node itself, off-cluster clients routed to the
			 * service CIDR); without one nothing, since pods
			 * cannot be told apart. */
			r->set = KPX_SET_INTERNAL;
			r->empty = sp->internal_empty;
			if (in->masquerade_all)
				r->masq = KPX_MASQ_ALWAYS;
			else if (!cidr)
				r->masq = KPX_MASQ_NEVER;
			else if (o == KPX_ORIGIN_POD)
				r->masq = KPX_MASQ_NEVER;
			else
				/* kube-proxy tests the source, not where it
				 * comes from: a node address inside the
				 * cluster CIDR is not masqueraded either. */
				r->masq = KPX_MASQ_OFF_CLUSTER;
		} else if (!sp->etp_local) {
			/* eTP=Cluster: every origin is masqueraded, so that
			 * the reply comes back through this node
			 * (mark-for-masquerade in the external chain;
			 * --masquerade-all changes nothing here). */
			r->set = KPX_SET_EXTERNAL;
			r->empty = sp->external_empty;
			r->masq = KPX_MASQ_ALWAYS;
		} else if (o == KPX_ORIGIN_NODE ||
			   (o == KPX_ORIGIN_POD && cidr)) {
			/* eTP=Local short-circuit: this node's own traffic
			 * and its pods (when a cluster CIDR tells them apart)
			 * get the cluster-wide set; the node's own source is
			 * masqueraded, a pod's is kept. A set that is empty
			 * here has no endpoint at all. */
			r->set = KPX_SET_CLUSTER;
			r->empty = KPX_EMPTY_REJECT;
			/* kube-proxy matches the cluster CIDR before
			 * "fib saddr type local": a node source inside it
			 * is kept like a pod's. */
			if (o == KPX_ORIGIN_POD)
				r->masq = KPX_MASQ_NEVER;
			else
				r->masq = cidr ? KPX_MASQ_OFF_CLUSTER
					       : KPX_MASQ_ALWAYS;
		} else {
			/* eTP=Local from outside (and from pods that cannot
			 * be told from outside): local endpoints only, the
			 * client's address kept. */
			r->set = KPX_SET_EXTERNAL;
			r->empty = sp->external_empty;
			r->masq = KPX_MASQ_NEVER;
		}
		r->source_ranges = ranges;
	}

	/* What the backend cannot express is recorded, not hidden. */
	if (!in->caps.local_pod_vs_node) {
		struct kpx_plan_row *pod = &fe->rows[KPX_ORIGIN_POD];
		const struct kpx_plan_row *node = &fe->rows[KPX_ORIGIN_NODE];

		/* One local row serves both: the node's set, which gives
		 * pods the cluster-wide set where kube-proxy without a
		 * cluster CIDR would give them the local one. */
		if (pod->set != node->set || pod->empty != node->empty) {
			pod->set = node->set;
			pod->empty = node->empty;
			pod->degraded |= KPX_ROW_POD_AS_NODE;
		}
	}
	for (int o = KPX_ORIGIN_POD; o <= KPX_ORIGIN_NODE; o++) {
		struct kpx_plan_row *r = &fe->rows[o];

		if (r->empty == KPX_EMPTY_DROP && !in->caps.local_drop) {
			r->empty = KPX_EMPTY_REJECT;
			r->degraded |= KPX_ROW_DROP_AS_REJECT;
		}
		if (r->source_ranges && !in->caps.local_source_ranges) {
			r->source_ranges = false;
			r->degraded |= KPX_ROW_NO_SOURCE_RANGES;
		}
	}
}

/* ---- hash --------------------------------------------------------------- */

struct fnv {
	uint64_t h;
};

static void fnv_bytes(struct fnv *f, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++) {
		f->h ^= b[i];
		f->h *= 1099511628211ULL;
	}
}

static void fnv_u64(struct fnv *f, uint64_t v)
{
	uint8_t b[8];

	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	fnv_bytes(f, b, 8);
}

static void fnv_str(struct fnv *f, const char *s)
{
	size_t n = strlen(s);

	fnv_u64(f, n);
	fnv_bytes(f, s, n);
}

static void fnv_addr(struct fnv *f, const struct kpx_addr *a)
{
	fnv_u64(f, a->family);
	fnv_bytes(f, a->bytes, a->family == AF_INET ? 4 : 16);
}

static void fnv_idx(struct fnv *f, const uint32_t *v, size_t n)
{
	fnv_u64(f, n);
	for (size_t i = 0; i < n; i++)
		fnv_u64(f, v[i]);
}

/* FNV-1a over a canonical, length-prefixed serialisation (no padding). */
uint64_t kpx_plan_svcport_hash(const struct kpx_plan_svcport *sp)
{
	struct fnv f = { 1469598103934665603ULL };

	fnv_str(&f, sp->id);
	fnv_str(&f, sp->ns);
	fnv_str(&f, sp->name);
	fnv_str(&f, sp->port_name);
	fnv_u64(&f, sp->family);
	fnv_u64(&f, sp->proto);
	fnv_u64(&f, sp->port);
	fnv_u64(&f, sp->node_port);
	fnv_u64(&f, sp->hc_node_port);
	fnv_u64(&f, sp->type);
	fnv_u64(&f, sp->affinity_timeout);
	fnv_u64(&f, sp->etp_local);
	fnv_u64(&f, sp->itp_local);
	fnv_u64(&f, sp->n_frontends);
	for (size_t i = 0; i < sp->n_frontends; i++) {
		fnv_u64(&f, sp->frontends[i].kind);
		fnv_addr(&f, &sp->frontends[i].addr);
		fnv_u64(&f, sp->frontends[i].port);
		fnv_u64(&f, sp->frontends[i].external);
		for (int o = 0; o < KPX_ORIGINS; o++) {
			const struct kpx_plan_row *r = &sp->frontends[i].rows[o];

			fnv_u64(&f, r->set);
			fnv_u64(&f, r->empty);
			fnv_u64(&f, r->masq);
			fnv_u64(&f, r->source_ranges);
			fnv_u64(&f, r->degraded);
		}
	}
	fnv_u64(&f, sp->n_endpoints);
	for (size_t i = 0; i < sp->n_endpoints; i++) {
		fnv_addr(&f, &sp->endpoints[i].addr);
		fnv_u64(&f, sp->endpoints[i].port);
		fnv_u64(&f, sp->endpoints[i].flags);
	}
	fnv_idx(&f, sp->internal, sp->n_internal);
	fnv_idx(&f, sp->external, sp->n_external);
	fnv_idx(&f, sp->cluster, sp->n_cluster);
	fnv_u64(&f, sp->internal_empty);
	fnv_u64(&f, sp->external_empty);
	fnv_u64(&f, sp->n_source_ranges);
	for (size_t i = 0; i < sp->n_source_ranges; i++) {
		fnv_addr(&f, &sp->source_ranges[i].addr);
		fnv_u64(&f, sp->source_ranges[i].prefix);
	}
	fnv_u64(&f, sp->n_refused);
	for (size_t i = 0; i < sp->n_refused; i++) {
		fnv_u64(&f, sp->refused[i].kind);
		fnv_u64(&f, sp->refused[i].reason);
		fnv_addr(&f, &sp->refused[i].addr);
		fnv_str(&f, sp->refused[i].owner);
	}
	fnv_u64(&f, sp->local_ready);
	return f.h;
}

size_t kpx_plan_count_refused(const struct kpx_plan *plan, uint64_t *sig)
{
	struct fnv f = { 1469598103934665603ULL };
	size_t n = 0;

	for (size_t i = 0; i < plan->n_svcports; i++) {
		const struct kpx_plan_svcport *sp = &plan->svcports[i];

		if (!sp->n_refused)
			continue;
		n += sp->n_refused;
		/* The svcport hash covers its refusals. */
		fnv_str(&f, sp->id);
		fnv_u64(&f, sp->hash);
	}
	if (sig)
		*sig = n ? f.h : 0;
	return n;
}

/* ---- services ----------------------------------------------------------- */

void kpx_plan_svcport_ref_strings(struct kpx_plan_svcport *sp)
{
	kpx_intern_ref(sp->id);
	kpx_intern_ref(sp->ns);
	kpx_intern_ref(sp->name);
	kpx_intern_ref(sp->port_name);
}

void kpx_plan_svcport_put_strings(struct kpx_plan_svcport *sp)
{
	kpx_intern_put(sp->id);
	kpx_intern_put(sp->ns);
	kpx_intern_put(sp->name);
	kpx_intern_put(sp->port_name);
	sp->id = sp->ns = sp->name = sp->port_name = NULL;
}

static void svcport_clear(struct kpx_plan_svcport *sp)
{
	kpx_plan_svcport_put_strings(sp);
	free(sp->frontends);
	free(sp->endpoints);
	free(sp->internal);
	free(sp->external);
	free(sp->cluster);
	free(sp->source_ranges);
	free(sp->refused);
}

static bool has_family(const struct kpx_service *svc, uint8_t fam)
{
	for (size_t i = 0; i < svc->n_cluster_ips; i++)
		if (svc->cluster_ips[i].family == fam)
			return true;
	return false;
}

/* The id "ns/name:port/..." starts with "ns/name:" for this service only
 * when none of these parts has a separator (the API validates names, a
 * manifests file need not). */
static bool odd_id(const struct kpx_plan_svcport *sp)
{
	return strpbrk(sp->ns, ":/") || strpbrk(sp->name, ":/") ||
	       strpbrk(sp->port_name, ":/");
}

static int build_svcport(struct build_ctx *c, const struct kpx_service *svc,
			 const struct kpx_svc_port *port, uint8_t fam)
{
	struct kpx_plan *plan = c->plan;
	struct kpx_plan_svcport *sp;
	int r;

	if (grow((void **)&plan->svcports, &c->cap_svcports, plan->n_svcports,
		 sizeof(*plan->svcports)))
		return -ENOMEM;
	sp = &plan->svcports[plan->n_svcports];
	memset(sp, 0, sizeof(*sp));
	{
		char id[KPX_SVCPORT_ID_MAX];
		int n = snprintf(id, sizeof(id), "%s/%s:%s/%s/%s", svc->ns,
				 svc->name, port->name,
				 kpx_proto_name(port->proto),
				 fam == AF_INET ? "v4" : "v6");

		sp->id = kpx_intern_n(id, n < (int)sizeof(id) ? (size_t)n
							       : sizeof(id) - 1);
	}
	/* the Service's own interned strings: one more reference each */
	sp->ns = kpx_intern_ref(svc->ns);
	sp->name = kpx_intern_ref(svc->name);
	sp->port_name = kpx_intern_ref(port->name);
	if (!sp->id) {
		svcport_clear(sp);
		return -ENOMEM;
	}
	sp->family = fam;
	sp->proto = port->proto;
	sp->port = port->port;
	sp->node_port = port->node_port;
	sp->type = svc->type;
	sp->affinity_timeout = svc->affinity_timeout;
	/* serviceport.go: externalPolicyLocal only for NodePort and
	 * LoadBalancer (apiservice.ExternalPolicyLocal); the health check
	 * node port only when that holds for a LoadBalancer
	 * (apiservice.NeedsHealthCheck). */
	sp->etp_local = svc->etp_local && (svc->type == KPX_SVC_NODE_PORT ||
					   svc->type == KPX_SVC_LOAD_BALANCER);
	sp->itp_local = svc->itp_local;
	if (sp->etp_local && svc->type == KPX_SVC_LOAD_BALANCER)
		sp->hc_node_port = svc->health_check_node_port;

	r = build_frontends(c, svc, sp);
	if (!r)
		r = build_source_ranges(svc, sp);
	if (!r)
		r = merge_endpoints(c, fam, port);
	if (!r)
		r = build_sets(c, sp);
	for (size_t i = 0; !r && i < sp->n_frontends; i++)
		build_rows(c->in, sp, &sp->frontends[i]);
	if (r) {
		svcport_clear(sp);
		return r;
	}
	sp->hash = kpx_plan_svcport_hash(sp);
	if (odd_id(sp))
		plan->n_odd_ids++;
	plan->n_svcports++;
	plan->n_frontends += sp->n_frontends;
	plan->n_endpoints += sp->n_endpoints;
	return 0;
}

static void build_service(const struct kpx_service *svc, void *arg)
{
	struct build_ctx *c = arg;
	static const uint8_t fams[] = { AF_INET, AF_INET6 };

	if (c->err)
		return;
	/* kube-proxy's ShouldSkipService. */
	if (svc->proxy_ignored || svc->headless ||
	    svc->type == KPX_SVC_EXTERNAL_NAME || !svc->n_cluster_ips)
		return;
	c->n_slices = 0;
	kpx_store_for_each_slice_of(c->store_ref, svc->ns, svc->name,
				    collect_slice, c);
	for (size_t f = 0; f < 2 && !c->err; f++) {
		if (!has_family(svc, fams[f]))
			continue;
		for (size_t p = 0; p < svc->n_ports && !c->err; p++)
			c->err = build_svcport(c, svc, &svc->ports[p], fams[f]);
	}
}

/* Equal ids (a Service listing one port twice) keep build order, so
 * that a full and an incremental build agree slot for slot. */
static int cmp_id(const void *a, const void *b)
{
	const struct kpx_plan_svcport *const *x = a, *const *y = b;
	int r = strcmp((*x)->id, (*y)->id);

	if (r)
		return r;
	return *x < *y ? -1 : *x > *y;
}

/* A copy of v[0, n) in id order, sorted through a pointer array:
 * svcports are large to swap. NULL when out of memory. */
static struct kpx_plan_svcport *sorted_copy(const struct kpx_plan_svcport *v,
					    size_t n)
{
	const struct kpx_plan_svcport **idx = malloc(n * sizeof(*idx));
	struct kpx_plan_svcport *sorted = malloc(n * sizeof(*sorted));

	if (!idx || !sorted) {
		free(idx);
		free(sorted);
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		idx[i] = &v[i];
	qsort(idx, n, sizeof(*idx), cmp_id);
	for (size_t i = 0; i < n; i++)
		sorted[i] = *idx[i];
	free(idx);
	return sorted;
}

/* svcports[lo, hi) sorted where they are. */
static int sort_range(struct kpx_plan_svcport *v, size_t lo, size_t hi)
{
	struct kpx_plan_svcport *sorted;

	if (hi - lo < 2)
		return 0;
	if (!(sorted = sorted_copy(&v[lo], hi - lo)))
		return -ENOMEM;
	memcpy(&v[lo], sorted, (hi - lo) * sizeof(*sorted));
	free(sorted);
	return 0;
}

/* The whole array: the sorted copy replaces it, no copy back. */
static int sort_svcports(struct kpx_plan *plan)
{
	struct kpx_plan_svcport *sorted;

	if (plan->n_svcports < 2)
		return 0;
	if (!(sorted = sorted_copy(plan->svcports, plan->n_svcports)))
		return -ENOMEM;
	free(plan->svcports);
	plan->svcports = sorted;
	return 0;
}

int kpx_plan_build(const struct kpx_store *store,
		   const struct kpx_plan_input *input, struct kpx_plan **out)
{
	struct build_ctx c = { .in = NULL };
	struct kpx_plan *plan = calloc(1, sizeof(*plan));
	int r;

	*out = NULL;
	if (!plan)
		return -ENOMEM;
	plan->input = *input;
	c.in = &plan->input;
	c.plan = plan;
	c.store_ref = store;
	kpx_store_for_each_service(store, build_service, &c);
	r = c.err;
	if (!r)
		r = sort_svcports(plan);
	free(c.slices);
	free(c.cands);
	if (r) {
		kpx_err("plan: building failed: %s", strerror(-r));
		kpx_plan_free(plan);
		return r;
	}
	*out = plan;
	return 0;
}

void kpx_plan_free(struct kpx_plan *plan)
{
	if (!plan)
		return;
	for (size_t i = 0; i < plan->n_svcports; i++)
		svcport_clear(&plan->svcports[i]);
	free(plan->svcports);
	free(plan);
}

/* ---- incremental update ------------------------------------------------- */

static bool addrs_equal(const struct kpx_addr *a, const struct kpx_addr *b,
			size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!kpx_addr_eq(&a[i], &b[i]))
			return false;
	return true;
}

static bool cidrs_equal(const struct kpx_cidr *a, const struct kpx_cidr *b,
			size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (a[i].prefix != b[i].prefix ||
		    !kpx_addr_eq(&a[i].addr, &b[i].addr))
			return false;
	return true;
}

bool kpx_plan_input_equal(const struct kpx_plan_input *a,
			  const struct kpx_plan_input *b)
{
	return !strcmp(a->node_name, b->node_name) &&
	       !strcmp(a->node_zone, b->node_zone) &&
	       a->n_node_ips == b->n_node_ips &&
	       addrs_equal(a->node_ips, b->node_ips, a->n_node_ips) &&
	       a->n_nodeport_cidrs == b->n_nodeport_cidrs &&
	       cidrs_equal(a->nodeport_cidrs, b->nodeport_cidrs,
			   a->n_nodeport_cidrs) &&
	       a->n_local_addrs == b->n_local_addrs &&
	       addrs_equal(a->local_addrs, b->local_addrs, a->n_local_addrs) &&
	       a->n_cluster_cidrs == b->n_cluster_cidrs &&
	       cidrs_equal(a->cluster_cidrs, b->cluster_cidrs,
			   a->n_cluster_cidrs) &&
	       a->masquerade_all == b->masquerade_all &&
	       a->n_external_ip_cidrs == b->n_external_ip_cidrs &&
	       cidrs_equal(a->external_ip_cidrs, b->external_ip_cidrs,
			   a->n_external_ip_cidrs) &&
	       a->caps.local_drop == b->caps.local_drop &&
	       a->caps.local_source_ranges == b->caps.local_source_ranges &&
	       a->caps.local_pod_vs_node == b->caps.local_pod_vs_node;
}

struct span {
	size_t lo, hi;
};

/*
 * One recomputed service i owned before[i] of the previous array and owns
 * after[i] of the current one. In place, before[i] == after[i] and saved
 * holds the replaced svcports (span order); merged, old_svcports is the
 * previous array, untouched.
 */
struct kpx_plan_undo {
	bool in_place;
	struct kpx_plan_svcport *old_svcports;
	size_t old_n, old_n_frontends, old_n_endpoints, old_n_odd_ids;
	struct kpx_plan_input old_input;
	struct span *before, *after;
	size_t n_spans;
	struct kpx_plan_svcport *saved;
	size_t n_saved;
	struct kpx_plan_update_stats stats;
};

struct dirty_list {
	char **v; /* "ns/name:", the id prefix of the service's svcports */
	size_t n, cap;
	int err;
};

static void collect_dirty(const char *ns, const char *name, void *arg)
{
	struct dirty_list *d = arg;
	size_t len = strlen(ns) + strlen(name) + 3;
	char *p;

	if (d->err)
		return;
	if (grow((void **)&d->v, &d->cap, d->n, sizeof(*d->v)) ||
	    !(p = malloc(len))) {
		d->err = -ENOMEM;
		return;
	}
	snprintf(p, len, "%s/%s:", ns, name);
	d->v[d->n++] = p;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static size_t lower_bound(const struct kpx_plan *plan, const char *key)
{
	size_t lo = 0, hi = plan->n_svcports;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (strcmp(plan->svcports[mid].id, key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Binary search by id; with equal ids (a port listed twice) the first. */
const struct kpx_plan_svcport *kpx_plan_find(const struct kpx_plan *plan,
					     const char *id)
{
	size_t i;

	if (!plan)
		return NULL;
	i = lower_bound(plan, id);
	if (i < plan->n_svcports && !strcmp(plan->svcports[i].id, id))
		return &plan->svcports[i];
	return NULL;
}

static void undo_free(struct kpx_plan_undo *u)
{
	free(u->before);
	free(u->after);
	free(u->saved);
	free(u);
}

static void sum_sizes(const struct kpx_plan_svcport *v, size_t lo, size_t hi,
		      size_t *fe, size_t *ep)
{
	for (size_t i = lo; i < hi; i++) {
		*fe += v[i].n_frontends;
		*ep += v[i].n_endpoints;
	}
}

/* Every service recomputed: the fresh array replaces the old one whole. */
static int update_all(struct kpx_plan *plan, const struct kpx_store *store,
		      const struct kpx_plan_input *input,
		      struct kpx_plan_undo *u)
{
	struct kpx_plan *fresh = NULL;
	int r = kpx_plan_build(store, input, &fresh);

	if (r)
		return r;
	u->before = calloc(1, sizeof(*u->before));
	u->after = calloc(1, sizeof(*u->after));
	if (!u->before || !u->after) {
		kpx_plan_free(fresh);
		return -ENOMEM;
	}
	u->in_place = false;
	u->n_spans = 1;
	u->before[0] = (struct span){ 0, plan->n_svcports };
	u->after[0] = (struct span){ 0, fresh->n_svcports };
	u->old_svcports = plan->svcports;
	u->stats = (struct kpx_plan_update_stats){
		.svcports_new = fresh->n_svcports,
		.svcports_old = plan->n_svcports,
		.all = true,
		.merged = true,
	};
	plan->svcports = fresh->svcports;
	plan->n_svcports = fresh->n_svcports;
	plan->n_frontends = fresh->n_frontends;
	plan->n_endpoints = fresh->n_endpoints;
	plan->n_odd_ids = fresh->n_odd_ids;
	plan->input = *input;
	fresh->svcports = NULL;
	fresh->n_svcports = 0;
	kpx_plan_free(fresh);
	return 0;
}

/* memcpy with n == 0 and a NULL array is undefined. */
static void copy_sps(struct kpx_plan_svcport *dst,
		     const struct kpx_plan_svcport *src, size_t n)
{
	if (n)
		memcpy(dst, src, n * sizeof(*dst));
}

/* fresh's svcports move into plan: in place when every recomputed service
 * kept its number of svcports, else by one merge walk into a new array. */
static int splice(struct kpx_plan *plan, struct kpx_plan *fresh,
		  struct kpx_plan_undo *u, bool in_place, size_t n_old)
{
	size_t old_fe = 0, old_ep = 0, k = 0, w = 0, pos = 0, n2;
	struct kpx_plan_svcport *v = NULL;

	for (size_t i = 0; i < u->n_spans; i++)
		sum_sizes(plan->svcports, u->before[i].lo, u->before[i].hi,
			  &old_fe, &old_ep);
	if (in_place) {
		if (n_old && !(u->saved = malloc(n_old * sizeof(*u->saved))))
			return -ENOMEM;
		for (size_t i = 0; i < u->n_spans; i++) {
			size_t lo = u->before[i].lo;

			for (size_t j = 0; j < u->before[i].hi - lo; j++) {
				u->saved[k++] = plan->svcports[lo + j];
				plan->svcports[lo + j] =
					fresh->svcports[u->after[i].lo + j];
			}
			u->after[i] = u->before[i];
		}
		u->n_saved = k;
	} else {
		n2 = plan->n_svcports - n_old + fresh->n_svcports;
		if (n2 && !(v = malloc(n2 * sizeof(*v))))
			return -ENOMEM;
		/* Spans are in id order, so each service's new svcports go
		 * exactly where its old ones were. */
		for (size_t i = 0; i < u->n_spans; i++) {
			size_t len = u->after[i].hi - u->after[i].lo;

			copy_sps(&v[w], &plan->svcports[pos],
				 u->before[i].lo - pos);
			w += u->before[i].lo - pos;
			copy_sps(&v[w], &fresh->svcports[u->after[i].lo], len);
			u->after[i] = (struct span){ w, w + len };
			w += len;
			pos = u->before[i].hi;
		}
		copy_sps(&v[w], &plan->svcports[pos], plan->n_svcports - pos);
		u->old_svcports = plan->svcports;
		plan->svcports = v;
		plan->n_svcports = n2;
	}
	/* n_odd_ids stays 0: update_all handles every plan that has one. */
	plan->n_frontends = plan->n_frontends - old_fe + fresh->n_frontends;
	plan->n_endpoints = plan->n_endpoints - old_ep + fresh->n_endpoints;
	u->in_place = in_place;
	u->stats.svcports_new = fresh->n_svcports;
	u->stats.svcports_old = n_old;
	u->stats.merged = !in_place;
	/* The svcports' contents now belong to plan. */
	free(fresh->svcports);
	free(fresh);
	return 0;
}

int kpx_plan_update(struct kpx_plan *plan, const struct kpx_store *store,
		    const struct kpx_plan_input *input,
		    struct kpx_plan_undo **undo)
{
	struct build_ctx c = { .store_ref = store };
	struct dirty_list dl = { 0 };
	struct kpx_plan *fresh = NULL;
	struct kpx_plan_undo *u;
	size_t n_old = 0;
	bool in_place = true;
	int r = 0;

	*undo = NULL;
	u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->in_place = true;
	u->old_n = plan->n_svcports;
	u->old_n_frontends = plan->n_frontends;
	u->old_n_endpoints = plan->n_endpoints;
	u->old_n_odd_ids = plan->n_odd_ids;
	u->old_input = plan->input;
	if (!kpx_plan_input_equal(&plan->input, input) ||
	    kpx_store_dirty_overflow(store) || plan->n_odd_ids) {
		r = update_all(plan, store, input, u);
		goto out;
	}

	kpx_store_for_each_dirty(store, collect_dirty, &dl);
	if ((r = dl.err))
		goto out;
	/* "ns/name:" order is id order: the store's "ns/name" order is not
	 * ("a/x-y:" < "a/x:"). */
	if (dl.n > 1)
		qsort(dl.v, dl.n, sizeof(*dl.v), cmp_str);
	fresh = calloc(1, sizeof(*fresh));
	u->before = calloc(dl.n + 1, sizeof(*u->before));
	u->after = calloc(dl.n + 1, sizeof(*u->after));
	if (!fresh || !u->before || !u->after) {
		r = -ENOMEM;
		goto out;
	}
	fresh->input = *input;
	c.in = &fresh->input;
	c.plan = fresh;
	for (size_t i = 0; i < dl.n; i++) {
		const char *pfx = dl.v[i], *slash = strchr(pfx, '/');
		size_t plen = strlen(pfx), nl = (size_t)(slash - pfx);
		char ns[KPX_NS_MAX], name[KPX_NAME_MAX];
		const struct kpx_service *svc = NULL;
		struct span *b = &u->before[i], *a = &u->after[i];

		/* Both fit: the store made the key from such fields. */
		if (nl < sizeof(ns) && plen - nl - 2 < sizeof(name)) {
			memcpy(ns, pfx, nl);
			ns[nl] = 0;
			memcpy(name, slash + 1, plen - nl - 2);
			name[plen - nl - 2] = 0;
			svc = kpx_store_service(store, ns, name);
		}
		a->lo = fresh->n_svcports;
		if (svc)
			build_service(svc, &c);
		if ((r = c.err))
			goto out;
		a->hi = fresh->n_svcports;
		if ((r = sort_range(fresh->svcports, a->lo, a->hi)))
			goto out;
		b->lo = lower_bound(plan, pfx);
		for (b->hi = b->lo; b->hi < plan->n_svcports &&
				    !strncmp(plan->svcports[b->hi].id, pfx, plen);
		     b->hi++)
			;
		n_old += b->hi - b->lo;
		/* The span holds exactly the ids with this prefix, so a
		 * sorted replacement of the same length keeps id order even
		 * when a port was renamed. */
		if (b->hi - b->lo != a->hi - a->lo)
			in_place = false;
	}
	u->n_spans = dl.n;
	u->stats.services = dl.n;
	if (fresh->n_odd_ids) {
		/* A new odd id could fall inside another service's span. */
		free(u->before);
		free(u->after);
		u->before = u->after = NULL;
		u->n_spans = 0;
		u->stats = (struct kpx_plan_update_stats){ 0 };
		r = update_all(plan, store, input, u);
		goto out;
	}
	r = splice(plan, fresh, u, in_place, n_old);
	if (!r)
		fresh = NULL;
out:
	kpx_plan_free(fresh);
	free(c.slices);
	free(c.cands);
	for (size_t i = 0; i < dl.n; i++)
		free(dl.v[i]);
	free(dl.v);
	if (r) {
		kpx_err("plan: incremental update failed: %s", strerror(-r));
		undo_free(u);
		return r;
	}
	*undo = u;
	return 0;
}

void kpx_plan_commit(struct kpx_plan_undo *u)
{
	if (!u)
		return;
	if (u->in_place) {
		for (size_t k = 0; k < u->n_saved; k++)
			svcport_clear(&u->saved[k]);
	} else {
		for (size_t i = 0; i < u->n_spans; i++)
			for (size_t j = u->before[i].lo; j < u->before[i].hi; j++)
				svcport_clear(&u->old_svcports[j]);
		free(u->old_svcports);
	}
	undo_free(u);
}

void kpx_plan_rollback(struct kpx_plan *plan, struct kpx_plan_undo *u)
{
	size_t k = 0;

	if (!u)
		return;
	for (size_t i = 0; i < u->n_spans; i++)
		for (size_t j = u->after[i].lo; j < u->after[i].hi; j++)
			svcport_clear(&plan->svcports[j]);
	if (u->in_place) {
		for (size_t i = 0; i < u->n_spans; i++)
			for (size_t j = u->before[i].lo; j < u->before[i].hi; j++)
				plan->svcports[j] = u->saved[k++];
	} else {
		free(plan->svcports);
		plan->svcports = u->old_svcports;
	}
	plan->n_svcports = u->old_n;
	plan->n_frontends = u->old_n_frontends;
	plan->n_endpoints = u->old_n_endpoints;
	plan->n_odd_ids = u->old_n_odd_ids;
	plan->input = u->old_input;
	undo_free(u);
}

void kpx_plan_undo_stats(const struct kpx_plan_undo *u,
			 struct kpx_plan_update_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (u)
		*out = u->stats;
}
