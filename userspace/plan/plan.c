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

static bool hinted_for(const struct kpx_endpoint *ep, const char *zone)
{
	for (size_t i = 0; i < ep->n_hint_zones; i++)
		if (!strcmp(ep->hint_zones[i], zone))
			return true;
	return false;
}

/* topology.go topologyModeFromHints, PreferSameZone part: every ready
 * endpoint carries zone hints and at least one names this node's zone. */
static bool use_zone_hints(const struct cand *cd, size_t n, const char *zone)
{
	bool any_ready = false, for_zone = false;

	if (!zone[0])
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!(cd[i].flags & KPX_EP_READY))
			continue;
		any_ready = true;
		if (!cd[i].ep->n_hint_zones)
			return false;
		if (hinted_for(cd[i].ep, zone))
			for_zone = true;
	}
	return any_ready && for_zone;
}

static int build_sets(struct build_ctx *c, struct kpx_plan_svcport *sp)
{
	const struct cand *cd = c->cands;
	size_t n = 0, nc = 0, nl = 0;
	bool topo, local_ready = false;
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
	topo = use_zone_hints(cd, n, c->in->node_zone);
	for (size_t i = 0; i < n; i++)
		if ((cd[i].flags & KPX_EP_READY) &&
		    (!topo || hinted_for(cd[i].ep, c->in->node_zone)))
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
	 * exist but the Local policy left none here -> drop.
	 */
	sp->internal_empty = n ? KPX_EMPTY_DROP : KPX_EMPTY_REJECT;
	sp->external_empty = n ? KPX_EMPTY_DROP : KPX_EMPTY_REJECT;
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

static int build_frontends(const struct kpx_plan_input *in,
			   const struct kpx_service *svc,
			   struct kpx_plan_svcport *sp)
{
	size_t cap = 0;
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
	for (size_t i = 0; i < svc->n_external_ips && !r; i++)
		if (svc->external_ips[i].family == fam)
			r = add_fe(sp, &cap, KPX_FE_EXTERNAL_IP,
				   &svc->external_ips[i], sp->port, true);
	for (size_t i = 0; i < svc->n_lb_ips && !r; i++)
		if (svc->lb_ips[i].family == fam)
			r = add_fe(sp, &cap, KPX_FE_LOAD_BALANCER,
				   &svc->lb_ips[i], sp->port, true);
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
	fnv_u64(&f, sp->local_ready);
	return f.h;
}

/* ---- services ----------------------------------------------------------- */

static void svcport_clear(struct kpx_plan_svcport *sp)
{
	free(sp->frontends);
	free(sp->endpoints);
	free(sp->internal);
	free(sp->external);
	free(sp->cluster);
	free(sp->source_ranges);
}

static bool has_family(const struct kpx_service *svc, uint8_t fam)
{
	for (size_t i = 0; i < svc->n_cluster_ips; i++)
		if (svc->cluster_ips[i].family == fam)
			return true;
	return false;
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
	snprintf(sp->id, sizeof(sp->id), "%s/%s:%s/%s/%s", svc->ns, svc->name,
		 port->name, kpx_proto_name(port->proto),
		 fam == AF_INET ? "v4" : "v6");
	snprintf(sp->ns, sizeof(sp->ns), "%s", svc->ns);
	snprintf(sp->name, sizeof(sp->name), "%s", svc->name);
	snprintf(sp->port_name, sizeof(sp->port_name), "%s", port->name);
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

	r = build_frontends(c->in, svc, sp);
	if (!r)
		r = build_source_ranges(svc, sp);
	if (!r)
		r = merge_endpoints(c, fam, port);
	if (!r)
		r = build_sets(c, sp);
	if (r) {
		svcport_clear(sp);
		return r;
	}
	sp->hash = kpx_plan_svcport_hash(sp);
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

static int cmp_id(const void *a, const void *b)
{
	const struct kpx_plan_svcport *const *x = a, *const *y = b;

	return strcmp((*x)->id, (*y)->id);
}

/* Sorts through a pointer array: svcports are large to swap. */
static int sort_svcports(struct kpx_plan *plan)
{
	struct kpx_plan_svcport **idx, *sorted;
	size_t n = plan->n_svcports;

	if (n < 2)
		return 0;
	idx = malloc(n * sizeof(*idx));
	sorted = malloc(n * sizeof(*sorted));
	if (!idx || !sorted) {
		free(idx);
		free(sorted);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		idx[i] = &plan->svcports[i];
	qsort(idx, n, sizeof(*idx), cmp_id);
	for (size_t i = 0; i < n; i++)
		sorted[i] = *idx[i];
	free(idx);
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

const struct kpx_plan_svcport *kpx_plan_find(const struct kpx_plan *plan,
					     const char *id)
{
	size_t lo = 0, hi = plan ? plan->n_svcports : 0;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int r = strcmp(plan->svcports[mid].id, id);

		if (!r)
			return &plan->svcports[mid];
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}
