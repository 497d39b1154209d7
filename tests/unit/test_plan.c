// SPDX-License-Identifier: Apache-2.0
/*
 * Every rule of the plan, checked on what a backend would program: which
 * endpoints each kind of traffic may reach, and reject vs drop.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "model/store.h"
#include "obj_builders.h"
#include "plan/plan.h"

#define ME "node-me"

static struct kpx_store *st;
static struct kpx_plan *plan;
static struct kpx_plan_input in;

static void setup(void)
{
	cr_assert_eq(kpx_store_new(&st), 0);
	memset(&in, 0, sizeof(in));
	strcpy(in.node_name, ME);
	in.node_ips[0] = b_addr("198.18.0.10");
	in.node_ips[1] = b_addr("fd00::10");
	in.n_node_ips = 2;
	plan = NULL;
}

static void teardown(void)
{
	kpx_plan_free(plan);
	kpx_store_free(st);
}

static void build(void)
{
	kpx_plan_free(plan);
	plan = NULL;
	cr_assert_eq(kpx_plan_build(st, &in, &plan), 0);
}

static const struct kpx_plan_svcport *sp_of(const char *id)
{
	const struct kpx_plan_svcport *sp = kpx_plan_find(plan, id);

	cr_assert_not_null(sp, "svcport %s missing", id);
	return sp;
}

/* "a:p,b:p" of a set, in plan order. */
static const char *set_str(const struct kpx_plan_svcport *sp,
			   const uint32_t *idx, size_t n, char *buf, size_t len)
{
	char a[KPX_ADDR_STRLEN];
	size_t off = 0;

	buf[0] = 0;
	for (size_t i = 0; i < n; i++) {
		const struct kpx_plan_endpoint *e = &sp->endpoints[idx[i]];

		off += snprintf(buf + off, len - off, "%s%s:%u", i ? "," : "",
				kpx_addr_str(&e->addr, a), e->port);
	}
	return buf;
}

static const char *eps_str(const struct kpx_plan_svcport *sp, char *buf,
			   size_t len)
{
	char a[KPX_ADDR_STRLEN];
	size_t off = 0;

	buf[0] = 0;
	for (size_t i = 0; i < sp->n_endpoints; i++)
		off += snprintf(buf + off, len - off, "%s%s:%u", i ? "," : "",
				kpx_addr_str(&sp->endpoints[i].addr, a),
				sp->endpoints[i].port);
	return buf;
}

static const char *fe_str(const struct kpx_plan_svcport *sp, char *buf,
			  size_t len)
{
	char a[KPX_ADDR_STRLEN];
	size_t off = 0;

	buf[0] = 0;
	for (size_t i = 0; i < sp->n_frontends; i++) {
		const struct kpx_plan_frontend *fe = &sp->frontends[i];

		off += snprintf(buf + off, len - off, "%s%s %s:%u%s", i ? "," : "",
				kpx_fe_kind_name(fe->kind),
				kpx_addr_str(&fe->addr, a), fe->port,
				fe->external ? " ext" : "");
	}
	return buf;
}

/* ---- table: traffic policies, topology, terminating fallback ------------ */

/* Arrays, not pointers: Criterion runs each parameter in a re-executed
 * process where pointers into the parent's image are meaningless. */
struct pcase {
	char name[80];
	enum kpx_svc_type type;
	bool itp_local, etp_local;
	char zone[8]; /* this node's zone */
	/* "IP FLAGS NODE HINTS;...": FLAGS of R(eady) S(erving)
	 * T(erminating) or "-", NODE "me" for this node, HINTS "-" for none,
	 * "~" for a hints field with no zones, else "z1,z2"; "@node-me" a
	 * node hint (forNodes). */
	char eps[160];
	char endpoints[128], internal[128], external[128], cluster[128];
	enum kpx_empty_action iempty, eempty;
	uint32_t local_ready;
};

#define R KPX_EMPTY_REJECT
#define D KPX_EMPTY_DROP

static struct pcase pcases[] = {
	{ "ready endpoints only", KPX_SVC_NODE_PORT, false, false, "",
	  "198.18.1.1 RS n1 -;198.18.1.2 ST n2 -;198.18.1.3 - n3 -",
	  "198.18.1.1:8080,198.18.1.2:8080", "198.18.1.1:8080",
	  "198.18.1.1:8080", "198.18.1.1:8080", D, D, 0 },
	{ "cluster falls back to serving terminating", KPX_SVC_NODE_PORT,
	  false, false, "",
	  "198.18.1.1 ST n1 -;198.18.1.2 ST me -;198.18.1.3 T n3 -",
	  "198.18.1.1:8080,198.18.1.2:8080",
	  "198.18.1.1:8080,198.18.1.2:8080",
	  "198.18.1.1:8080,198.18.1.2:8080",
	  "198.18.1.1:8080,198.18.1.2:8080", D, D, 0 },
	{ "no endpoints at all rejects", KPX_SVC_NODE_PORT, false, true, "",
	  "", "", "", "", "", R, R, 0 },
	{ "only non-serving terminating endpoints rejects", KPX_SVC_NODE_PORT,
	  true, true, "", "198.18.1.1 T me -;198.18.1.2 - n2 -", "", "", "", "",
	  R, R, 0 },
	{ "iTP Local keeps local ready", KPX_SVC_CLUSTER_IP, true, false, "",
	  "198.18.1.1 RS me -;198.18.1.2 RS n2 -",
	  "198.18.1.1:8080,198.18.1.2:8080", "198.18.1.1:8080",
	  "198.18.1.1:8080,198.18.1.2:8080",
	  "198.18.1.1:8080,198.18.1.2:8080", D, D, 1 },
	{ "iTP Local without local endpoint drops", KPX_SVC_CLUSTER_IP, true,
	  false, "", "198.18.1.2 RS n2 -", "198.18.1.2:8080", "",
	  "198.18.1.2:8080", "198.18.1.2:8080", D, D, 0 },
	{ "local falls back to serving terminating", KPX_SVC_CLUSTER_IP, true,
	  false, "", "198.18.1.1 RS n2 -;198.18.1.2 ST me -",
	  "198.18.1.1:8080,198.18.1.2:8080", "198.18.1.2:8080",
	  "198.18.1.1:8080", "198.18.1.1:8080", D, D, 0 },
	{ "local fallback unused while a local is ready", KPX_SVC_CLUSTER_IP,
	  true, false, "", "198.18.1.1 RS me -;198.18.1.2 ST me -",
	  "198.18.1.1:8080,198.18.1.2:8080", "198.18.1.1:8080",
	  "198.18.1.1:8080", "198.18.1.1:8080", D, D, 1 },
	{ "eTP Local on NodePort", KPX_SVC_NODE_PORT, false, true, "",
	  "198.18.1.1 RS me -;198.18.1.2 RS n2 -",
	  "198.18.1.1:8080,198.18.1.2:8080", "198.18.1.1:8080,198.18.1.2:8080",
	  "198.18.1.1:8080", "198.18.1.1:8080,198.18.1.2:8080", D, D, 1 },
	{ "eTP Local without local endpoint drops external only",
	  KPX_SVC_LOAD_BALANCER, false, true, "", "198.18.1.2 RS n2 -",
	  "198.18.1.2:8080", "198.18.1.2:8080", "", "198.18.1.2:8080", D, D, 0 },
	{ "eTP Local ignored for type ClusterIP", KPX_SVC_CLUSTER_IP, false,
	  true, "", "198.18.1.2 RS n2 -", "198.18.1.2:8080", "198.18.1.2:8080",
	  "198.18.1.2:8080", "198.18.1.2:8080", D, D, 0 },
	{ "topology hints used", KPX_SVC_NODE_PORT, false, false, "z1",
	  "198.18.1.1 RS n1 z1;198.18.1.2 RS n2 z2;198.18.1.3 RS n3 z2,z1",
	  "198.18.1.1:8080,198.18.1.2:8080,198.18.1.3:8080",
	  "198.18.1.1:8080,198.18.1.3:8080", "198.18.1.1:8080,198.18.1.3:8080",
	  "198.18.1.1:8080,198.18.1.3:8080", D, D, 0 },
	{ "topology unused when a ready endpoint lacks hints",
	  KPX_SVC_NODE_PORT, false, false, "z1",
	  "198.18.1.1 RS n1 z1;198.18.1.2 RS n2 -",
	  "198.18.1.1:8080,198.18.1.2:8080", "198.18.1.1:8080,198.18.1.2:8080",
	  "198.18.1.1:8080,198.18.1.2:8080", "198.18.1.1:8080,198.18.1.2:8080",
	  D, D, 0 },
	{ "topology unused when hints name no zone", KPX_SVC_NODE_PORT, false,
	  false, "z1", "198.18.1.1 RS n1 z1;198.18.1.2 RS n2 ~",
	  "198.18.1.1:8080,198.18.1.2:8080", "198.18.1.1:8080,198.18.1.2:8080",
	  "198.18.1.1:8080,198.18.1.2:8080", "198.18.1.1:8080,198.18.1.2:8080",
	  D, D, 0 },
	{ "topology unused when no hint matches the node zone",
	  KPX_SVC_NODE_PORT, false, false, "z3",
	  "198.18.1.1 RS n1 z1;198.18.1.2 RS n2 z2",
	  "198.18.1.1:8080,198.18.1.2:8080", "198.18.1.1:8080,198.18.1.2:8080",
	  "198.18.1.1:8080,198.18.1.2:8080", "198.18.1.1:8080,198.18.1.2:8080",
	  D, D, 0 },
	{ "topology unused when the node has no zone", KPX_SVC_NODE_PORT,
	  false, false, "", "198.18.1.1 RS n1 z1;198.18.1.2 RS n2 z2",
	  "198.18.1.1:8080,198.18.1.2:8080", "198.18.1.1:8080,198.18.1.2:8080",
	  "198.18.1.1:8080,198.18.1.2:8080", "198.18.1.1:8080,198.18.1.2:8080",
	  D, D, 0 },
	{ "topology looks only at ready endpoints", KPX_SVC_NODE_PORT, false,
	  false, "z1", "198.18.1.1 RS n1 z1;198.18.1.2 ST n2 -;198.18.1.3 RS n3 z2",
	  "198.18.1.1:8080,198.18.1.2:8080,198.18.1.3:8080", "198.18.1.1:8080",
	  "198.18.1.1:8080", "198.18.1.1:8080", D, D, 0 },
	{ "node hints used", KPX_SVC_NODE_PORT, false, false, "z1",
	  "198.18.1.1 RS me z1,@node-me;198.18.1.2 RS n2 z1,@n2;198.18.1.3 RS n3 z1,@n3,@node-me",
	  "198.18.1.1:8080,198.18.1.2:8080,198.18.1.3:8080",
	  "198.18.1.1:8080,198.18.1.3:8080", "198.18.1.1:8080,198.18.1.3:8080",
	  "198.18.1.1:8080,198.18.1.3:8080", D, D, 1 },
	{ "node hints for other nodes fall back to zone hints",
	  KPX_SVC_NODE_PORT, false, false, "z1",
	  "198.18.1.1 RS n1 z1,@n1;198.18.1.2 RS n2 z2,@n2",
	  "198.18.1.1:8080,198.18.1.2:8080", "198.18.1.1:8080",
	  "198.18.1.1:8080", "198.18.1.1:8080", D, D, 0 },
	{ "node hints unused when a ready endpoint lacks them",
	  KPX_SVC_NODE_PORT, false, false, "",
	  "198.18.1.1 RS me @node-me;198.18.1.2 RS n2 -",
	  "198.18.1.1:8080,198.18.1.2:8080", "198.18.1.1:8080,198.18.1.2:8080",
	  "198.18.1.1:8080,198.18.1.2:8080", "198.18.1.1:8080,198.18.1.2:8080",
	  D, D, 1 },
	{ "node hints used without a node zone", KPX_SVC_CLUSTER_IP, false,
	  false, "", "198.18.1.1 RS me @node-me;198.18.1.2 RS n2 @n2",
	  "198.18.1.1:8080,198.18.1.2:8080", "198.18.1.1:8080",
	  "198.18.1.1:8080", "198.18.1.1:8080", D, D, 1 },
	{ "topology does not filter the local set", KPX_SVC_NODE_PORT, true,
	  true, "z1", "198.18.1.1 RS me z2;198.18.1.2 RS n2 z1",
	  "198.18.1.1:8080,198.18.1.2:8080", "198.18.1.1:8080",
	  "198.18.1.1:8080", "198.18.1.2:8080", D, D, 1 },
};

static void add_eps(struct kpx_endpoint_slice *sl, const char *spec)
{
	char buf[1024], *save = NULL, *tok;

	snprintf(buf, sizeof(buf), "%s", spec);
	for (tok = strtok_r(buf, ";", &save); tok;
	     tok = strtok_r(NULL, ";", &save)) {
		char ip[64], fl[8], node[64], hints[128];

		cr_assert_eq(sscanf(tok, "%63s %7s %63s %127s", ip, fl, node,
				    hints), 4, "bad spec %s", tok);
		b_ep(sl, ip, strchr(fl, 'R'), strchr(fl, 'S'), strchr(fl, 'T'),
		     strcmp(node, "me") ? node : ME, "",
		     !strcmp(hints, "-") ? NULL : !strcmp(hints, "~") ? "" : hints);
	}
}

ParameterizedTestParameters(plan_policy, sets)
{
	return cr_make_param_array(struct pcase, pcases,
				   sizeof(pcases) / sizeof(pcases[0]));
}

ParameterizedTest(struct pcase *c, plan_policy, sets, .init = setup,
		  .fini = teardown)
{
	struct kpx_service *svc = b_svc("ns", "web", c->type, "198.18.100.1");
	struct kpx_endpoint_slice *sl = b_slice("ns", "web-1", "web", AF_INET);
	const struct kpx_plan_svcport *sp;
	char buf[1024];

	b_svc_port(svc, "http", KPX_PROTO_TCP, 80,
		   c->type == KPX_SVC_CLUSTER_IP ? 0 : 30080);
	svc->itp_local = c->itp_local;
	svc->etp_local = c->etp_local;
	b_slice_port(sl, "http", KPX_PROTO_TCP, 8080);
	add_eps(sl, c->eps);
	kpx_store_upsert(st, KPX_KIND_SERVICE, svc);
	kpx_store_upsert(st, KPX_KIND_SLICE, sl);
	snprintf(in.node_zone, sizeof(in.node_zone), "%s", c->zone);
	build();

	cr_assert_eq(plan->n_svcports, 1, "%s", c->name);
	sp = sp_of("ns/web:http/TCP/v4");
	cr_assert_str_eq(eps_str(sp, buf, sizeof(buf)), c->endpoints,
			 "%s: endpoints", c->name);
	cr_assert_str_eq(set_str(sp, sp->internal, sp->n_internal, buf,
				 sizeof(buf)),
			 c->internal, "%s: internal", c->name);
	cr_assert_str_eq(set_str(sp, sp->external, sp->n_external, buf,
				 sizeof(buf)),
			 c->external, "%s: external", c->name);
	cr_assert_str_eq(set_str(sp, sp->cluster, sp->n_cluster, buf,
				 sizeof(buf)),
			 c->cluster, "%s: cluster", c->name);
	if (!sp->n_internal)
		cr_assert_eq(sp->internal_empty, c->iempty, "%s: internal_empty",
			     c->name);
	if (!sp->n_external)
		cr_assert_eq(sp->external_empty, c->eempty, "%s: external_empty",
			     c->name);
	cr_assert_eq(sp->local_ready, c->local_ready, "%s: local_ready",
		     c->name);
}

/* ---- merging ------------------------------------------------------------ */

TestSuite(plan, .init = setup, .fini = teardown);

Test(plan, dual_stack_service_splits_per_family)
{
	struct kpx_service *svc =
		b_svc("ns", "ds", KPX_SVC_NODE_PORT, "198.18.100.2,fd00::100:2");
	struct kpx_endpoint_slice *v4 = b_slice("ns", "ds-v4", "ds", AF_INET);
	struct kpx_endpoint_slice *v6 = b_slice("ns", "ds-v6", "ds", AF_INET6);
	const struct kpx_plan_svcport *sp;
	char buf[1024];

	b_svc_port(svc, "", KPX_PROTO_TCP, 80, 30001);
	b_svc_ext_ip(svc, "198.18.200.1");
	b_svc_ext_ip(svc, "fd00::200:1");
	b_slice_port(v4, "", KPX_PROTO_TCP, 8080);
	b_slice_port(v6, "", KPX_PROTO_TCP, 8080);
	b_ready(v4, "198.18.1.1", "n1");
	b_ready(v6, "fd00::1:1", "n1");
	kpx_store_upsert(st, KPX_KIND_SERVICE, svc);
	kpx_store_upsert(st, KPX_KIND_SLICE, v4);
	kpx_store_upsert(st, KPX_KIND_SLICE, v6);
	build();

	cr_assert_eq(plan->n_svcports, 2);
	sp = sp_of("ns/ds:/TCP/v4");
	cr_assert_eq(sp->family, AF_INET);
	cr_assert_str_eq(eps_str(sp, buf, sizeof(buf)), "198.18.1.1:8080");
	cr_assert_str_eq(fe_str(sp, buf, sizeof(buf)),
			 "ClusterIP 198.18.100.2:80,NodePort 198.18.0.10:30001 ext,"
			 "ExternalIP 198.18.200.1:80 ext");
	sp = sp_of("ns/ds:/TCP/v6");
	cr_assert_eq(sp->family, AF_INET6);
	cr_assert_str_eq(eps_str(sp, buf, sizeof(buf)), "fd00::1:1:8080");
	cr_assert_str_eq(fe_str(sp, buf, sizeof(buf)),
			 "ClusterIP fd00::100:2:80,NodePort fd00::10:30001 ext,"
			 "ExternalIP fd00::200:1:80 ext");
}

Test(plan, single_stack_ipv6_service_ignores_ipv4_slices)
{
	struct kpx_service *svc = b_svc("ns", "v6", KPX_SVC_CLUSTER_IP, "fd00::100:3");
	struct kpx_endpoint_slice *v4 = b_slice("ns", "v6-a", "v6", AF_INET);
	struct kpx_endpoint_slice *v6 = b_slice("ns", "v6-b", "v6", AF_INET6);

	b_svc_port(svc, "", KPX_PROTO_UDP, 53, 0);
	b_slice_port(v4, "", KPX_PROTO_UDP, 53);
	b_slice_port(v6, "", KPX_PROTO_UDP, 53);
	b_ready(v4, "198.18.1.1", "n1");
	b_ready(v6, "fd00::1:1", "n1");
	kpx_store_upsert(st, KPX_KIND_SERVICE, svc);
	kpx_store_upsert(st, KPX_KIND_SLICE, v4);
	kpx_store_upsert(st, KPX_KIND_SLICE, v6);
	build();
	cr_assert_eq(plan->n_svcports, 1);
	cr_assert_eq(sp_of("ns/v6:/UDP/v6")->n_endpoints, 1);
	cr_assert_null(kpx_plan_find(plan, "ns/v6:/UDP/v4"));
}

Test(plan, slice_ports_match_on_name_and_protocol)
{
	struct kpx_service *svc = b_svc("ns", "mp", KPX_SVC_CLUSTER_IP, "198.18.100.4");
	struct kpx_endpoint_slice *a = b_slice("ns", "mp-a", "mp", AF_INET);
	struct kpx_endpoint_slice *b = b_slice("ns", "mp-b", "mp", AF_INET);
	char buf[1024];

	b_svc_port(svc, "http", KPX_PROTO_TCP, 80, 0);
	b_svc_port(svc, "dns", KPX_PROTO_UDP, 53, 0);
	b_svc_port(svc, "dns", KPX_PROTO_TCP, 53, 0);
	b_slice_port(a, "http", KPX_PROTO_TCP, 8080);
	b_slice_port(a, "dns", KPX_PROTO_UDP, 5353);
	b_slice_port(a, "http", KPX_PROTO_UDP, 9999); /* wrong protocol */
	b_slice_port(a, "dns", KPX_PROTO_TCP, 0);     /* unset: skipped */
	b_ready(a, "198.18.1.1", "n1");
	/* Another slice may carry the same port name on another number. */
	b_slice_port(b, "http", KPX_PROTO_TCP, 8081);
	b_ready(b, "198.18.1.2", "n1");
	kpx_store_upsert(st, KPX_KIND_SERVICE, svc);
	kpx_store_upsert(st, KPX_KIND_SLICE, a);
	kpx_store_upsert(st, KPX_KIND_SLICE, b);
	build();

	cr_assert_eq(plan->n_svcports, 3);
	cr_assert_str_eq(eps_str(sp_of("ns/mp:http/TCP/v4"), buf, sizeof(buf)),
			 "198.18.1.1:8080,198.18.1.2:8081");
	cr_assert_str_eq(eps_str(sp_of("ns/mp:dns/UDP/v4"), buf, sizeof(buf)),
			 "198.18.1.1:5353");
	cr_assert_eq(sp_of("ns/mp:dns/TCP/v4")->n_endpoints, 0);
	cr_assert_eq(sp_of("ns/mp:dns/TCP/v4")->internal_empty, KPX_EMPTY_REJECT);
}

Test(plan, duplicate_endpoints_keep_first_unless_later_is_local)
{
	struct kpx_service *svc = b_svc("ns", "dup", KPX_SVC_CLUSTER_IP, "198.18.100.5");
	struct kpx_endpoint_slice *a = b_slice("ns", "dup-a", "dup", AF_INET);
	struct kpx_endpoint_slice *b = b_slice("ns", "dup-b", "dup", AF_INET);
	const struct kpx_plan_svcport *sp;
	char buf[1024];

	b_svc_port(svc, "", KPX_PROTO_TCP, 80, 0);
	b_slice_port(a, "", KPX_PROTO_TCP, 8080);
	b_slice_port(b, "", KPX_PROTO_TCP, 8080);
	/* .1: first remote, later local -> the local copy wins. */
	b_ep(a, "198.18.1.1", false, false, false, "n1", "", NULL);
	b_ready(b, "198.18.1.1", ME);
	/* .2: first ready, later not ready -> first stays. */
	b_ready(a, "198.18.1.2", "n1");
	b_ep(b, "198.18.1.2", false, false, false, "n1", "", NULL);
	/* .3: first not ready, later ready (both remote): kube-proxy keeps
	 * the first, so the endpoint is unusable. */
	b_ep(a, "198.18.1.3", false, false, false, "n1", "", NULL);
	b_ready(b, "198.18.1.3", "n2");
	kpx_store_upsert(st, KPX_KIND_SERVICE, svc);
	kpx_store_upsert(st, KPX_KIND_SLICE, b); /* insertion order is irrelevant */
	kpx_store_upsert(st, KPX_KIND_SLICE, a);
	build();

	sp = sp_of("ns/dup:/TCP/v4");
	cr_assert_str_eq(eps_str(sp, buf, sizeof(buf)),
			 "198.18.1.1:8080,198.18.1.2:8080");
	cr_assert_eq(sp->endpoints[0].flags,
		     KPX_EP_READY | KPX_EP_SERVING | KPX_EP_LOCAL);
	cr_assert_eq(sp->endpoints[1].flags, KPX_EP_READY | KPX_EP_SERVING);
}

Test(plan, endpoints_sorted_by_address_then_port)
{
	struct kpx_service *svc = b_svc("ns", "srt", KPX_SVC_CLUSTER_IP, "198.18.100.6");
	struct kpx_endpoint_slice *a = b_slice("ns", "srt-a", "srt", AF_INET);
	struct kpx_endpoint_slice *b = b_slice("ns", "srt-b", "srt", AF_INET);
	char buf[1024];

	b_svc_port(svc, "", KPX_PROTO_TCP, 80, 0);
	b_slice_port(a, "", KPX_PROTO_TCP, 9000);
	b_slice_port(b, "", KPX_PROTO_TCP, 8000);
	b_ready(a, "198.18.1.20", "n1");
	b_ready(a, "198.18.1.3", "n1");
	b_ready(b, "198.18.1.3", "n1");
	kpx_store_upsert(st, KPX_KIND_SERVICE, svc);
	kpx_store_upsert(st, KPX_KIND_SLICE, a);
	kpx_store_upsert(st, KPX_KIND_SLICE, b);
	build();
	cr_assert_str_eq(eps_str(sp_of("ns/srt:/TCP/v4"), buf, sizeof(buf)),
			 "198.18.1.3:8000,198.18.1.3:9000,198.18.1.20:9000");
}

/* ---- frontends ---------------------------------------------------------- */

static void np_service(void)
{
	struct kpx_service *svc = b_svc("ns", "np", KPX_SVC_NODE_PORT, "198.18.100.7");

	b_svc_port(svc, "", KPX_PROTO_TCP, 80, 30007);
	kpx_store_upsert(st, KPX_KIND_SERVICE, svc);
}

Test(plan, nodeport_primary_uses_first_node_ip_per_family)
{
	char buf[1024];

	in.node_ips[2] = b_addr("198.18.0.11");
	in.n_node_ips = 3;
	np_service();
	build();
	cr_assert_str_eq(fe_str(sp_of("ns/np:/TCP/v4"), buf, sizeof(buf)),
			 "ClusterIP 198.18.100.7:80,NodePort 198.18.0.10:30007 ext");
}

Test(plan, nodeport_addresses_cidrs_select_local_addresses)
{
	char buf[1024];

	in.nodeport_cidrs[0] = b_cidr("198.18.0.0/24");
	in.n_nodeport_cidrs = 1;
	in.local_addrs[0] = b_addr("198.18.0.20");
	in.local_addrs[1] = b_addr("198.18.5.1");
	in.local_addrs[2] = b_addr("198.18.0.10");
	in.local_addrs[3] = b_addr("fd00::20");
	in.n_local_addrs = 4;
	np_service();
	build();
	cr_assert_str_eq(fe_str(sp_of("ns/np:/TCP/v4"), buf, sizeof(buf)),
			 "ClusterIP 198.18.100.7:80,NodePort 198.18.0.20:30007 ext,"
			 "NodePort 198.18.0.10:30007 ext");
}

Test(plan, nodeport_cidrs_of_other_family_give_no_nodeport)
{
	char buf[1024];

	in.nodeport_cidrs[0] = b_cidr("fd00::/64");
	in.n_nodeport_cidrs = 1;
	np_service();
	build();
	cr_assert_str_eq(fe_str(sp_of("ns/np:/TCP/v4"), buf, sizeof(buf)),
			 "ClusterIP 198.18.100.7:80");
}

Test(plan, cluster_ip_service_with_external_ips_serves_them)
{
	struct kpx_service *svc = b_svc("ns", "ext", KPX_SVC_CLUSTER_IP, "198.18.100.8");
	char buf[1024];

	b_svc_port(svc, "", KPX_PROTO_SCTP, 9, 0);
	b_svc_ext_ip(svc, "198.18.200.8");
	kpx_store_upsert(st, KPX_KIND_SERVICE, svc);
	build();
	cr_assert_str_eq(fe_str(sp_of("ns/ext:/SCTP/v4"), buf, sizeof(buf)),
			 "ClusterIP 198.18.100.8:9,ExternalIP 198.18.200.8:9 ext");
}

Test(plan, load_balancer_ips_source_ranges_and_health_check_per_family)
{
	struct kpx_service *svc = b_svc("ns", "lb", KPX_SVC_LOAD_BALANCER,
					"198.18.100.9,fd00::100:9");
	const struct kpx_plan_svcport *v4, *v6;
	char buf[1024], a[KPX_ADDR_STRLEN];

	b_svc_port(svc, "https", KPX_PROTO_TCP, 443, 30443);
	b_svc_lb_ip(svc, "198.18.201.9");
	b_svc_lb_ip(svc, "fd00::201:9");
	b_svc_src_range(svc, "198.18.64.0/18");
	b_svc_src_range(svc, "fd00:1::/64");
	b_svc_src_range(svc, "198.19.0.0/16");
	svc->etp_local = true;
	svc->health_check_node_port = 32000;
	kpx_store_upsert(st, KPX_KIND_SERVICE, svc);
	build();
	v4 = sp_of("ns/lb:https/TCP/v4");
	v6 = sp_of("ns/lb:https/TCP/v6");
	cr_assert_str_eq(fe_str(v4, buf, sizeof(buf)),
			 "ClusterIP 198.18.100.9:443,NodePort 198.18.0.10:30443 ext,"
			 "LoadBalancer 198.18.201.9:443 ext");
	cr_assert_eq(v4->n_source_ranges, 2);
	cr_assert_str_eq(kpx_addr_str(&v4->source_ranges[1].addr, a), "198.19.0.0");
	cr_assert_eq(v4->source_ranges[1].prefix, 16);
	cr_assert_eq(v6->n_source_ranges, 1);
	cr_assert_eq(v6->source_ranges[0].prefix, 64);
	cr_assert_eq(v4->hc_node_port, 32000);
	cr_assert(v4->etp_local);
	/* No endpoint anywhere: reject even though eTP=Local. */
	cr_assert_eq(v4->external_empty, KPX_EMPTY_REJECT);
}

Test(plan, health_check_node_port_only_for_local_load_balancers)
{
	struct kpx_service *svc = b_svc("ns", "np", KPX_SVC_NODE_PORT, "198.18.100.7");

	b_svc_port(svc, "", KPX_PROTO_TCP, 80, 30007);
	svc->etp_local = true;
	svc->health_check_node_port = 32001;
	kpx_store_upsert(st, KPX_KIND_SERVICE, svc);
	build();
	cr_assert_eq(sp_of("ns/np:/TCP/v4")->hc_node_port, 0);
	cr_assert(sp_of("ns/np:/TCP/v4")->etp_local);
}

Test(plan, session_affinity_timeout_is_carried)
{
	struct kpx_service *svc = b_svc("ns", "aff", KPX_SVC_CLUSTER_IP, "198.18.100.10");

	b_svc_port(svc, "", KPX_PROTO_TCP, 80, 0);
	svc->affinity_timeout = 10800;
	kpx_store_upsert(st, KPX_KIND_SERVICE, svc);
	svc = b_svc("ns", "noaff", KPX_SVC_CLUSTER_IP, "198.18.100.11");
	b_svc_port(svc, "", KPX_PROTO_TCP, 80, 0);
	kpx_store_upsert(st, KPX_KIND_SERVICE, svc);
	build();
	cr_assert_eq(sp_of("ns/aff:/TCP/v4")->affinity_timeout, 10800);
	cr_assert_eq(sp_of("ns/noaff:/TCP/v4")->affinity_timeout, 0);
}

/* ---- skipped objects ---------------------------------------------------- */

Test(plan, ignored_headless_external_name_and_ipless_services_are_skipped)
{
	struct kpx_service *s;
	struct kpx_endpoint_slice *sl;

	s = b_svc("ns", "ignored", KPX_SVC_CLUSTER_IP, "198.18.100.12");
	b_svc_port(s, "", KPX_PROTO_TCP, 80, 0);
	s->proxy_ignored = true;
	kpx_store_upsert(st, KPX_KIND_SERVICE, s);
	s = b_svc("ns", "headless", KPX_SVC_CLUSTER_IP, "");
	b_svc_port(s, "", KPX_PROTO_TCP, 80, 0);
	s->headless = true;
	kpx_store_upsert(st, KPX_KIND_SERVICE, s);
	s = b_svc("ns", "extname", KPX_SVC_EXTERNAL_NAME, "");
	b_svc_port(s, "", KPX_PROTO_TCP, 80, 0);
	kpx_store_upsert(st, KPX_KIND_SERVICE, s);
	s = b_svc("ns", "noip", KPX_SVC_CLUSTER_IP, "");
	b_svc_port(s, "", KPX_PROTO_TCP, 80, 0);
	kpx_store_upsert(st, KPX_KIND_SERVICE, s);
	s = b_svc("ns", "kept", KPX_SVC_CLUSTER_IP, "198.18.100.13");
	b_svc_port(s, "", KPX_PROTO_TCP, 80, 0);
	kpx_store_upsert(st, KPX_KIND_SERVICE, s);
	/* A slice labelled for another proxy is ignored too. */
	sl = b_slice("ns", "kept-x", "kept", AF_INET);
	b_slice_port(sl, "", KPX_PROTO_TCP, 8080);
	b_ready(sl, "198.18.1.1", "n1");
	sl->proxy_ignored = true;
	kpx_store_upsert(st, KPX_KIND_SLICE, sl);
	build();
	cr_assert_eq(plan->n_svcports, 1);
	cr_assert_eq(sp_of("ns/kept:/TCP/v4")->n_endpoints, 0);
}

/* ---- identity, hash, output --------------------------------------------- */

static void two_services(bool ready)
{
	struct kpx_service *s;
	struct kpx_endpoint_slice *sl;

	s = b_svc("ns", "a", KPX_SVC_CLUSTER_IP, "198.18.100.20");
	snprintf(s->resource_version, sizeof(s->resource_version), "1");
	b_svc_port(s, "", KPX_PROTO_TCP, 80, 0);
	kpx_store_upsert(st, KPX_KIND_SERVICE, s);
	s = b_svc("ns", "b", KPX_SVC_CLUSTER_IP, "198.18.100.21");
	b_svc_port(s, "", KPX_PROTO_TCP, 80, 0);
	kpx_store_upsert(st, KPX_KIND_SERVICE, s);
	sl = b_slice("ns", "b-1", "b", AF_INET);
	b_slice_port(sl, "", KPX_PROTO_TCP, 8080);
	b_ep(sl, "198.18.1.1", ready, true, !ready, "n1", "", NULL);
	kpx_store_upsert(st, KPX_KIND_SLICE, sl);
}

Test(plan, hash_changes_iff_content_changes)
{
	uint64_t a1, b1;

	two_services(true);
	build();
	a1 = sp_of("ns/a:/TCP/v4")->hash;
	b1 = sp_of("ns/b:/TCP/v4")->hash;
	cr_assert_neq(a1, b1);
	build();
	cr_assert_eq(sp_of("ns/a:/TCP/v4")->hash, a1);
	cr_assert_eq(sp_of("ns/b:/TCP/v4")->hash, b1);

	/* The endpoint turns terminating: only b changes. */
	two_services(false);
	build();
	cr_assert_eq(sp_of("ns/a:/TCP/v4")->hash, a1);
	cr_assert_neq(sp_of("ns/b:/TCP/v4")->hash, b1);
	/* An input change that alters b's locality changes b only. */
	two_services(true);
	strcpy(in.node_name, "n1");
	build();
	cr_assert_eq(sp_of("ns/a:/TCP/v4")->hash, a1);
	cr_assert_neq(sp_of("ns/b:/TCP/v4")->hash, b1);
}

Test(plan, svcports_sorted_by_id_and_found)
{
	const char *names[] = { "zz", "b-c", "b", "a" };

	for (size_t i = 0; i < 4; i++) {
		struct kpx_service *s =
			b_svc("ns", names[i], KPX_SVC_CLUSTER_IP, "198.18.100.30");

		b_svc_port(s, "x", KPX_PROTO_UDP, 1, 0);
		b_svc_port(s, "a", KPX_PROTO_TCP, 2, 0);
		kpx_store_upsert(st, KPX_KIND_SERVICE, s);
	}
	build();
	cr_assert_eq(plan->n_svcports, 8);
	for (size_t i = 1; i < plan->n_svcports; i++)
		cr_assert_lt(strcmp(plan->svcports[i - 1].id, plan->svcports[i].id),
			     0);
	for (size_t i = 0; i < plan->n_svcports; i++)
		cr_assert_eq(kpx_plan_find(plan, plan->svcports[i].id),
			     &plan->svcports[i]);
	cr_assert_null(kpx_plan_find(plan, "ns/b:x/TCP/v4"));
	cr_assert_eq(plan->n_frontends, 8);
}

Test(plan, json_has_documented_shape)
{
	struct json_object *root, *sps, *sp, *v;

	two_services(true);
	in.node_name[0] = 0;
	strcpy(in.node_name, "n1");
	build();
	root = kpx_plan_to_json(plan);
	cr_assert_not_null(root);
	cr_assert(json_object_object_get_ex(root, "node", &v));
	cr_assert_str_eq(json_object_get_string(v), "n1");
	cr_assert(json_object_object_get_ex(root, "svcports", &sps));
	cr_assert_eq(json_object_array_length(sps), 2);
	sp = json_object_array_get_idx(sps, 1);
	cr_assert(json_object_object_get_ex(sp, "id", &v));
	cr_assert_str_eq(json_object_get_string(v), "ns/b:/TCP/v4");
	cr_assert(json_object_object_get_ex(sp, "internal", &v));
	cr_assert_str_eq(json_object_get_string(json_object_array_get_idx(v, 0)),
			 "198.18.1.1:8080");
	cr_assert(json_object_object_get_ex(sp, "endpoints", &v));
	v = json_object_array_get_idx(v, 0);
	cr_assert(json_object_get_boolean(json_object_object_get(v, "local")));
	/* iTP=Cluster: the set is empty only when no endpoint exists. */
	cr_assert(json_object_object_get_ex(sp, "internal_empty", &v));
	cr_assert_str_eq(json_object_get_string(v), "reject");
	cr_assert(json_object_object_get_ex(sp, "frontends", &v));
	v = json_object_object_get(json_object_array_get_idx(v, 0), "rows");
	v = json_object_object_get(v, "remote");
	cr_assert_str_eq(json_object_get_string(json_object_object_get(v, "set")),
			 "internal");
	cr_assert_str_eq(json_object_get_string(json_object_object_get(v, "masquerade")),
			 "never");
	sp = json_object_array_get_idx(sps, 0);
	cr_assert_str_eq(json_object_get_string(json_object_object_get(sp, "internal_empty")),
			 "reject");
	json_object_put(root);
}

/* ---- traffic rows: what each origin's packets get ------------------------ */

/* "set/empty/masq[/ranges][/degraded...]" of fe's row for origin o. */
static const char *row_str(const struct kpx_plan_svcport *sp, size_t fe,
			   enum kpx_origin o, char *buf, size_t len)
{
	const struct kpx_plan_row *r;

	cr_assert_lt(fe, sp->n_frontends);
	r = &sp->frontends[fe].rows[o];
	snprintf(buf, len, "%s/%s/%s%s%s%s%s", kpx_plan_set_name(r->set),
		 r->empty == KPX_EMPTY_DROP ? "drop" : "reject",
		 kpx_masq_name(r->masq), r->source_ranges ? "/ranges" : "",
		 r->degraded & KPX_ROW_DROP_AS_REJECT ? "/drop-as-reject" : "",
		 r->degraded & KPX_ROW_NO_SOURCE_RANGES ? "/no-ranges" : "",
		 r->degraded & KPX_ROW_POD_AS_NODE ? "/pod-as-node" : "");
	return buf;
}

#define ROW(sp, fe, o, want)                                                   \
	do {                                                                   \
		char _b[128];                                                  \
		cr_assert_str_eq(row_str(sp, fe, o, _b, sizeof(_b)), want,     \
				 "frontend %d origin %s", (int)(fe),           \
				 kpx_origin_name(o));                          \
	} while (0)

static const struct kpx_caps_case {
	const char *name;
	struct kpx_plan_caps caps;
} nft_caps = { "nft", { true, true, true } },
  bpf_caps = { "bpf", { false, false, false } };

/* A LoadBalancer with one local and one remote endpoint: frontends are
 * ClusterIP (0), NodePort (1), LoadBalancer (2). */
static void lb_service(bool etp_local, bool ranges)
{
	struct kpx_service *svc = b_svc("ns", "lb", KPX_SVC_LOAD_BALANCER,
					"198.18.100.9");
	struct kpx_endpoint_slice *sl = b_slice("ns", "lb-1", "lb", AF_INET);

	b_svc_port(svc, "", KPX_PROTO_TCP, 80, 30080);
	b_svc_lb_ip(svc, "198.18.201.9");
	if (ranges)
		b_svc_src_range(svc, "198.18.64.0/18");
	svc->etp_local = etp_local;
	kpx_store_upsert(st, KPX_KIND_SERVICE, svc);
	b_slice_port(sl, "", KPX_PROTO_TCP, 8080);
	b_ready(sl, "198.18.1.1", ME);
	b_ready(sl, "198.18.2.1", "node-other");
	kpx_store_upsert(st, KPX_KIND_SLICE, sl);
}

Test(plan, cluster_ip_masquerade_follows_cluster_cidr_per_origin)
{
	const struct kpx_plan_svcport *sp;

	lb_service(false, false);
	in.caps = nft_caps.caps;
	build();
	sp = sp_of("ns/lb:/TCP/v4");
	/* No cluster CIDR: pods cannot be told apart, nothing is. */
	ROW(sp, 0, KPX_ORIGIN_POD, "internal/reject/never");
	ROW(sp, 0, KPX_ORIGIN_NODE, "internal/reject/never");
	ROW(sp, 0, KPX_ORIGIN_REMOTE, "internal/reject/never");
	in.cluster_cidrs[0] = b_cidr("198.18.0.0/17");
	in.n_cluster_cidrs = 1;
	build();
	sp = sp_of("ns/lb:/TCP/v4");
	ROW(sp, 0, KPX_ORIGIN_POD, "internal/reject/never");
	/* kube-proxy tests the source: a node address inside the cluster
	 * CIDR is not masqueraded either */
	ROW(sp, 0, KPX_ORIGIN_NODE, "internal/reject/off-cluster");
	/* An off-cluster client routed to the service CIDR. */
	ROW(sp, 0, KPX_ORIGIN_REMOTE, "internal/reject/off-cluster");
	in.masquerade_all = true;
	build();
	sp = sp_of("ns/lb:/TCP/v4");
	for (int o = 0; o < KPX_ORIGINS; o++)
		ROW(sp, 0, o, "internal/reject/always");
}

Test(plan, external_traffic_policy_cluster_masquerades_every_origin)
{
	const struct kpx_plan_svcport *sp;

	lb_service(false, false);
	in.caps = nft_caps.caps;
	in.masquerade_all = true;
	build();
	sp = sp_of("ns/lb:/TCP/v4");
	for (size_t fe = 1; fe < 3; fe++)
		for (int o = 0; o < KPX_ORIGINS; o++)
			ROW(sp, fe, o, "external/reject/always");
}

Test(plan, external_traffic_policy_local_short_circuits_node_and_pods)
{
	const struct kpx_plan_svcport *sp;

	lb_service(true, true);
	in.caps = nft_caps.caps;
	in.cluster_cidrs[0] = b_cidr("198.18.0.0/17");
	in.n_cluster_cidrs = 1;
	build();
	sp = sp_of("ns/lb:/TCP/v4");
	ROW(sp, 2, KPX_ORIGIN_POD, "cluster/reject/never/ranges");
	ROW(sp, 2, KPX_ORIGIN_NODE, "cluster/reject/off-cluster/ranges");
	ROW(sp, 2, KPX_ORIGIN_REMOTE, "external/drop/never/ranges");
	/* Source ranges are for LoadBalancer IPs only. */
	ROW(sp, 1, KPX_ORIGIN_REMOTE, "external/drop/never");
	/* Without a cluster CIDR pods look like outside clients. */
	in.n_cluster_cidrs = 0;
	build();
	sp = sp_of("ns/lb:/TCP/v4");
	ROW(sp, 2, KPX_ORIGIN_POD, "external/drop/never/ranges");
	ROW(sp, 2, KPX_ORIGIN_NODE, "cluster/reject/always/ranges");
}

Test(plan, rows_a_backend_cannot_express_are_marked_degraded)
{
	const struct kpx_plan_svcport *sp;

	lb_service(true, true);
	in.caps = bpf_caps.caps;
	build();
	sp = sp_of("ns/lb:/TCP/v4");
	/* Socket hooks: pods get the node's row, no silent drop, no
	 * source check before connect(); outside traffic is unchanged. */
	ROW(sp, 2, KPX_ORIGIN_POD,
	    "cluster/reject/never/no-ranges/pod-as-node");
	ROW(sp, 2, KPX_ORIGIN_NODE, "cluster/reject/always/no-ranges");
	ROW(sp, 2, KPX_ORIGIN_REMOTE, "external/drop/never/ranges");
}

Test(plan, endpoint_at_a_node_address_is_marked_host)
{
	struct kpx_service *svc = b_svc("ns", "hn", KPX_SVC_NODE_PORT,
					"198.18.100.5");
	struct kpx_endpoint_slice *sl = b_slice("ns", "hn-1", "hn", AF_INET);
	const struct kpx_plan_svcport *sp;

	b_svc_port(svc, "", KPX_PROTO_TCP, 80, 30085);
	kpx_store_upsert(st, KPX_KIND_SERVICE, svc);
	b_slice_port(sl, "", KPX_PROTO_TCP, 80);
	b_ready(sl, "198.18.0.10", ME);	     /* hostNetwork pod here */
	b_ready(sl, "198.18.0.11", "node-b"); /* ... and on node-b */
	kpx_store_upsert(st, KPX_KIND_SLICE, sl);
	build();
	sp = sp_of("ns/hn:/TCP/v4");
	cr_assert_eq(sp->n_endpoints, 2);
	cr_assert(sp->endpoints[0].flags & KPX_EP_HOST);
	cr_assert_not(sp->endpoints[1].flags & KPX_EP_HOST);
}

/* ---- incremental update ------------------------------------------------- */

static char *plan_json_str(const struct kpx_plan *p)
{
	struct json_object *root = kpx_plan_to_json(p);
	char *s;

	cr_assert_not_null(root);
	s = strdup(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN));
	json_object_put(root);
	return s;
}

/* What a backend and the status server see must not differ between an
 * incremental and a full build: ids, hashes, order, totals, JSON. */
static void assert_same_plan(const struct kpx_plan *inc,
			     const struct kpx_plan *full, const char *ctx)
{
	char *a, *b;

	cr_assert_eq(inc->n_svcports, full->n_svcports, "%s: svcport count", ctx);
	for (size_t i = 0; i < full->n_svcports; i++) {
		cr_assert_str_eq(inc->svcports[i].id, full->svcports[i].id,
				 "%s: svcport %zu", ctx, i);
		cr_assert_eq(inc->svcports[i].hash, full->svcports[i].hash,
			     "%s: hash of %s", ctx, full->svcports[i].id);
	}
	for (size_t i = 1; i < inc->n_svcports; i++)
		cr_assert_leq(strcmp(inc->svcports[i - 1].id, inc->svcports[i].id),
			      0, "%s: sorted", ctx);
	cr_assert_eq(inc->n_frontends, full->n_frontends, "%s: frontends", ctx);
	cr_assert_eq(inc->n_endpoints, full->n_endpoints, "%s: endpoints", ctx);
	a = plan_json_str(inc);
	b = plan_json_str(full);
	cr_assert_str_eq(a, b, "%s: json", ctx);
	free(a);
	free(b);
}

static struct kpx_plan_update_stats update_commit(void)
{
	struct kpx_plan_update_stats us;
	struct kpx_plan_undo *undo = NULL;

	cr_assert_eq(kpx_plan_update(plan, st, &in, &undo), 0);
	cr_assert_not_null(undo);
	kpx_plan_undo_stats(undo, &us);
	kpx_plan_commit(undo);
	kpx_store_clear_dirty(st);
	return us;
}

static void assert_same_as_full(const char *ctx)
{
	struct kpx_plan *full = NULL;

	cr_assert_eq(kpx_plan_build(st, &in, &full), 0);
	assert_same_plan(plan, full, ctx);
	kpx_plan_free(full);
}

static void web_slice(const char *rv, bool ready2)
{
	struct kpx_endpoint_slice *sl = b_slice("ns", "b-1", "b", AF_INET);

	snprintf(sl->resource_version, sizeof(sl->resource_version), "%s", rv);
	b_slice_port(sl, "", KPX_PROTO_TCP, 8080);
	b_ready(sl, "198.18.1.1", "n1");
	b_ep(sl, "198.18.1.2", ready2, true, !ready2, ME, "", NULL);
	kpx_store_upsert(st, KPX_KIND_SLICE, sl);
}

Test(plan, update_one_endpoint_in_place_reuses_other_svcports)
{
	const struct kpx_plan_endpoint *a_eps;
	const struct kpx_plan_svcport *b;
	struct kpx_plan_update_stats us;
	struct kpx_plan_svcport *arr;

	two_services(true);
	web_slice("1", true);
	build();
	kpx_store_clear_dirty(st);
	arr = plan->svcports;
	a_eps = sp_of("ns/a:/TCP/v4")->endpoints;
	cr_assert_eq(sp_of("ns/b:/TCP/v4")->n_internal, 2);

	web_slice("2", false);
	us = update_commit();
	cr_assert_eq(us.services, 1);
	cr_assert_not(us.merged, "same ids: patched in place");
	cr_assert_not(us.all);
	cr_assert_eq(plan->svcports, arr, "no new array for one endpoint");
	cr_assert_eq(sp_of("ns/a:/TCP/v4")->endpoints, a_eps,
		     "a clean service's svcport is reused, not rebuilt");
	b = sp_of("ns/b:/TCP/v4");
	cr_assert_eq(b->n_internal, 1, "the not-ready endpoint left the set");
	cr_assert_eq(b->n_endpoints, 2, "serving+terminating stays listed");
	assert_same_as_full("one endpoint");
}

Test(plan, update_adds_and_removes_services_by_merge)
{
	const char *names[] = { "b", "a", "a-b", "ab", "a.b", "z" };
	struct kpx_plan_update_stats us;
	struct kpx_service *s;

	two_services(true);
	build();
	kpx_store_clear_dirty(st);
	/* "ns/a-b:" sorts before "ns/a:" although "ns/a" < "ns/a-b". */
	for (size_t i = 2; i < 6; i++) {
		s = b_svc("ns", names[i], KPX_SVC_NODE_PORT,
			  "198.18.100.40,fd00::40");
		b_svc_port(s, "p", KPX_PROTO_UDP, 53, 30053);
		b_svc_port(s, "q", KPX_PROTO_TCP, 80, 30080);
		kpx_store_upsert(st, KPX_KIND_SERVICE, s);
	}
	kpx_store_delete(st, KPX_KIND_SERVICE, "ns", "a");
	us = update_commit();
	cr_assert(us.merged);
	cr_assert_eq(us.services, 5);
	cr_assert_eq(us.svcports_new, 16);
	cr_assert_eq(us.svcports_old, 1);
	assert_same_as_full("add and remove");
	cr_assert_eq(plan->n_svcports, 17);
	cr_assert_null(kpx_plan_find(plan, "ns/a:/TCP/v4"));
	/* A service that loses a port: removed from the middle. */
	s = b_svc("ns", "a-b", KPX_SVC_CLUSTER_IP, "198.18.100.40");
	b_svc_port(s, "q", KPX_PROTO_TCP, 80, 0);
	kpx_store_upsert(st, KPX_KIND_SERVICE, s);
	us = update_commit();
	cr_assert(us.merged);
	assert_same_as_full("port removed");
	/* Everything gone. */
	for (size_t i = 1; i < 6; i++)
		kpx_store_delete(st, KPX_KIND_SERVICE, "ns", names[i]);
	kpx_store_delete(st, KPX_KIND_SERVICE, "ns", "b");
	update_commit();
	cr_assert_eq(plan->n_svcports, 0);
	assert_same_as_full("empty");
}

Test(plan, update_rebuilds_everything_when_the_input_changes)
{
	struct kpx_plan_update_stats us;

	two_services(true);
	build();
	kpx_store_clear_dirty(st);
	strcpy(in.node_name, "n1"); /* b's endpoint becomes local */
	us = update_commit();
	cr_assert(us.all, "no service is dirty, but the input changed");
	cr_assert_eq(sp_of("ns/b:/TCP/v4")->local_ready, 1);
	assert_same_as_full("node name");
	strcpy(in.node_zone, "zone-b");
	us = update_commit();
	cr_assert(us.all);
	cr_assert_str_eq(plan->input.node_zone, "zone-b");
	assert_same_as_full("zone");
}

Test(plan, rollback_restores_the_previous_plan_exactly)
{
	struct kpx_plan_undo *undo = NULL;
	struct kpx_plan_svcport *arr;
	struct kpx_service *s;
	char *before, *after;

	two_services(true);
	web_slice("1", true);
	build();
	kpx_store_clear_dirty(st);
	before = plan_json_str(plan);
	arr = plan->svcports;

	/* in place */
	web_slice("2", false);
	cr_assert_eq(kpx_plan_update(plan, st, &in, &undo), 0);
	after = plan_json_str(plan);
	cr_assert_str_neq(after, before);
	free(after);
	kpx_plan_rollback(plan, undo);
	after = plan_json_str(plan);
	cr_assert_str_eq(after, before, "in-place update undone");
	cr_assert_eq(plan->svcports, arr);
	free(after);

	/* merged */
	s = b_svc("ns", "aa", KPX_SVC_CLUSTER_IP, "198.18.100.50");
	b_svc_port(s, "", KPX_PROTO_TCP, 80, 0);
	kpx_store_upsert(st, KPX_KIND_SERVICE, s);
	cr_assert_eq(kpx_plan_update(plan, st, &in, &undo), 0);
	cr_assert_eq(plan->n_svcports, 3);
	kpx_plan_rollback(plan, undo);
	after = plan_json_str(plan);
	cr_assert_str_eq(after, before, "merged update undone");
	free(after);

	/* input change */
	strcpy(in.node_name, "n1");
	cr_assert_eq(kpx_plan_update(plan, st, &in, &undo), 0);
	kpx_plan_rollback(plan, undo);
	after = plan_json_str(plan);
	cr_assert_str_eq(after, before, "full recompute undone");
	cr_assert_str_eq(plan->input.node_name, ME);
	free(after);
	free(before);

	/* The dirty set survived the rollbacks: the retry catches up. */
	update_commit();
	assert_same_as_full("after rollbacks");
}

Test(plan, update_with_separator_in_names_recomputes_everything)
{
	struct kpx_plan_update_stats us;
	struct kpx_service *s;

	two_services(true);
	build();
	kpx_store_clear_dirty(st);
	/* Unvalidated manifests: "ns/a:b:" ids sort inside "ns/a:"'s. */
	s = b_svc("ns", "a:b", KPX_SVC_CLUSTER_IP, "198.18.100.60");
	b_svc_port(s, "", KPX_PROTO_TCP, 80, 0);
	kpx_store_upsert(st, KPX_KIND_SERVICE, s);
	us = update_commit();
	cr_assert(us.all);
	assert_same_as_full("odd name added");
	s = b_svc("ns", "a", KPX_SVC_CLUSTER_IP, "198.18.100.20");
	snprintf(s->resource_version, sizeof(s->resource_version), "2");
	b_svc_port(s, "b:x", KPX_PROTO_TCP, 80, 0);
	b_svc_port(s, "", KPX_PROTO_UDP, 53, 0);
	kpx_store_upsert(st, KPX_KIND_SERVICE, s);
	us = update_commit();
	cr_assert(us.all, "the plan still has odd ids");
	assert_same_as_full("odd port name");
	kpx_store_delete(st, KPX_KIND_SERVICE, "ns", "a:b");
	s = b_svc("ns", "a", KPX_SVC_CLUSTER_IP, "198.18.100.20");
	snprintf(s->resource_version, sizeof(s->resource_version), "3");
	b_svc_port(s, "", KPX_PROTO_UDP, 53, 0);
	kpx_store_upsert(st, KPX_KIND_SERVICE, s);
	update_commit();
	assert_same_as_full("odd ids gone");
	cr_assert_eq(plan->n_odd_ids, 0);
	web_slice("5", false);
	us = update_commit();
	cr_assert_not(us.all, "back to incremental");
	assert_same_as_full("incremental again");
}

/* ---- property: incremental == full after random changes ----------------- */

struct rng {
	uint64_t s;
};

static uint32_t rnd(struct rng *r, uint32_t n)
{
	r->s ^= r->s << 13;
	r->s ^= r->s >> 7;
	r->s ^= r->s << 17;
	return (uint32_t)(r->s >> 11) % n;
}

/* Names chosen so that "ns/name" order and id order differ. */
static const char *const pt_ns[] = { "ns", "ns", "ns", "ns", "ns-x", "n" };
static const char *const pt_name[] = { "a", "a-b", "ab", "a.b", "a", "s-a" };
#define PT_SVCS 6
#define PT_SLICES 10

static const struct {
	const char *name;
	uint8_t proto;
	uint16_t port;
} pt_ports[] = { { "http", KPX_PROTO_TCP, 80 },
		 { "dns", KPX_PROTO_UDP, 53 },
		 { "", KPX_PROTO_TCP, 81 } };

struct pt_ep {
	int ip, flags, node, hints;
};

struct pt_slice {
	bool present;
	int svc, family, ports; /* ports: bitmask of pt_ports */
	int n_eps;
	struct pt_ep eps[6];
};

static unsigned pt_rv;

static void pt_rv_set(char *rv, size_t len)
{
	snprintf(rv, len, "%u", ++pt_rv);
}

static void pt_upsert_slice(int i, const struct pt_slice *d)
{
	char name[32];
	struct kpx_endpoint_slice *sl;
	static const char *const hints[] = { NULL, "zone-a", "zone-b", "",
					     "zone-a,zone-b" };

	snprintf(name, sizeof(name), "sl-%d", i);
	sl = b_slice(pt_ns[d->svc], name, pt_name[d->svc], d->family);
	pt_rv_set(sl->resource_version, sizeof(sl->resource_version));
	for (int p = 0; p < 3; p++)
		if (d->ports & (1 << p))
			b_slice_port(sl, pt_ports[p].name, pt_ports[p].proto,
				     (uint16_t)(8000 + pt_ports[p].port + (i & 1)));
	for (int e = 0; e < d->n_eps; e++) {
		const struct pt_ep *ep = &d->eps[e];
		char ip[64];

		if (d->family == AF_INET)
			snprintf(ip, sizeof(ip), "198.18.1.%d", ep->ip);
		else
			snprintf(ip, sizeof(ip), "fd00::1:%d", ep->ip);
		b_ep(sl, ip, ep->flags & 1, ep->flags & 2, ep->flags & 4,
		     ep->node == 0 ? ME : ep->node == 1 ? "n1" : "",
		     "", hints[ep->hints]);
	}
	kpx_store_upsert(st, KPX_KIND_SLICE, sl);
}

static void pt_random_ep(struct rng *r, struct pt_ep *ep)
{
	ep->ip = 1 + (int)rnd(r, 6);
	ep->flags = (int)rnd(r, 8);
	ep->node = (int)rnd(r, 3);
	ep->hints = (int)rnd(r, 5);
}

static void pt_random_slice(struct rng *r, struct pt_slice *d)
{
	d->present = true;
	d->svc = (int)rnd(r, PT_SVCS);
	d->family = rnd(r, 5) ? AF_INET : AF_INET6;
	d->ports = 1 + (int)rnd(r, 7);
	d->n_eps = (int)rnd(r, 7);
	for (int e = 0; e < d->n_eps; e++)
		pt_random_ep(r, &d->eps[e]);
}

static void pt_upsert_service(struct rng *r, int i)
{
	static const enum kpx_svc_type types[] = {
		KPX_SVC_CLUSTER_IP, KPX_SVC_NODE_PORT, KPX_SVC_LOAD_BALANCER,
		KPX_SVC_CLUSTER_IP, KPX_SVC_EXTERNAL_NAME
	};
	static const char *const ips[] = { "198.18.100.%d", "fd00::100:%d",
					   "198.18.100.%d,fd00::100:%d" };
	char buf[128];
	struct kpx_service *s;
	int np;

	snprintf(buf, sizeof(buf), ips[rnd(r, 3)], 10 + i, 10 + i);
	s = b_svc(pt_ns[i], pt_name[i], types[rnd(r, 5)], rnd(r, 12) ? buf : "");
	pt_rv_set(s->resource_version, sizeof(s->resource_version));
	s->headless = !rnd(r, 15);
	s->proxy_ignored = !rnd(r, 15);
	np = 1 + (int)rnd(r, 3);
	for (int p = 0; p < np; p++) {
		/* Repeats allowed: equal ids must keep a stable order. */
		int k = (int)rnd(r, 3);

		b_svc_port(s, pt_ports[k].name, pt_ports[k].proto,
			   pt_ports[k].port,
			   s->type == KPX_SVC_CLUSTER_IP ? 0
							 : (uint16_t)(30000 + 10 * i + k));
	}
	s->etp_local = rnd(r, 2);
	s->itp_local = !rnd(r, 3);
	s->affinity_timeout = rnd(r, 3) ? 0 : 10800;
	if (!rnd(r, 3)) {
		snprintf(buf, sizeof(buf), "198.18.200.%d", i);
		b_svc_ext_ip(s, buf);
	}
	if (s->type == KPX_SVC_LOAD_BALANCER) {
		snprintf(buf, sizeof(buf), "198.18.201.%d", i);
		b_svc_lb_ip(s, buf);
		if (rnd(r, 2))
			b_svc_src_range(s, "198.18.0.0/16");
		s->health_check_node_port = (uint16_t)(32000 + i);
	}
	kpx_store_upsert(st, KPX_KIND_SERVICE, s);
}

/* One random change; returns a short description for failure messages. */
static const char *pt_step(struct rng *r, struct pt_slice *sl)
{
	static const char *const zones[] = { "", "zone-a", "zone-b" };
	struct pt_slice *d = &sl[rnd(r, PT_SLICES)];
	char name[32];

	switch (rnd(r, 10)) {
	case 0:
	case 1:
		pt_upsert_service(r, (int)rnd(r, PT_SVCS));
		return "service upsert";
	case 2:
		kpx_store_delete(st, KPX_KIND_SERVICE, pt_ns[rnd(r, PT_SVCS)],
				 pt_name[rnd(r, PT_SVCS)]);
		return "service delete";
	case 3:
		/* New or replaced slice, possibly moved to another
		 * service by its label. */
		pt_random_slice(r, d);
		pt_upsert_slice((int)(d - sl), d);
		return "slice upsert";
	case 4:
		if (d->present) {
			snprintf(name, sizeof(name), "sl-%d", (int)(d - sl));
			kpx_store_delete(st, KPX_KIND_SLICE, pt_ns[d->svc], name);
			d->present = false;
		}
		return "slice delete";
	case 5:
	case 6:
	case 7:
		/* The common case: one endpoint's readiness. */
		if (d->present && d->n_eps) {
			d->eps[rnd(r, (uint32_t)d->n_eps)].flags ^= 1 << rnd(r, 3);
			pt_upsert_slice((int)(d - sl), d);
		}
		return "endpoint condition";
	case 8:
		if (d->present && d->n_eps < 6) {
			pt_random_ep(r, &d->eps[d->n_eps++]);
			pt_upsert_slice((int)(d - sl), d);
		} else if (d->present) {
			d->n_eps--;
			pt_upsert_slice((int)(d - sl), d);
		}
		return "endpoint add/remove";
	default:
		if (rnd(r, 2)) {
			snprintf(in.node_zone, sizeof(in.node_zone), "%s",
				 zones[rnd(r, 3)]);
			return "node zone";
		}
		return "nothing";
	}
}

Test(plan, property_incremental_equals_full_build)
{
	size_t in_place = 0, merged = 0, all = 0;

	for (uint64_t seed = 1; seed <= 12; seed++) {
		struct rng r = { seed * 0x9E3779B97F4A7C15ULL };
		struct pt_slice sl[PT_SLICES] = { 0 };

		kpx_plan_free(plan);
		plan = NULL;
		kpx_store_free(st);
		cr_assert_eq(kpx_store_new(&st), 0);
		in.node_zone[0] = 0;
		for (int i = 0; i < PT_SVCS; i++)
			pt_upsert_service(&r, i);
		build();
		kpx_store_clear_dirty(st);
		for (int round = 0; round < 150; round++) {
			struct kpx_plan_update_stats us;
			struct kpx_plan_undo *undo = NULL;
			const char *what = "";
			char ctx[128];
			int n = 1 + (int)rnd(&r, 4);

			for (int k = 0; k < n; k++)
				what = pt_step(&r, sl);
			snprintf(ctx, sizeof(ctx), "seed %llu round %d (%d changes, last %s)",
				 (unsigned long long)seed, round, n, what);
			if (!rnd(&r, 6)) {
				/* A failed backend sync: roll back, then the
				 * same dirty set must still catch up. */
				char *before = plan_json_str(plan), *after;

				cr_assert_eq(kpx_plan_update(plan, st, &in, &undo), 0);
				kpx_plan_rollback(plan, undo);
				after = plan_json_str(plan);
				cr_assert_str_eq(after, before, "%s: rollback", ctx);
				free(before);
				free(after);
			}
			us = update_commit();
			all += us.all;
			merged += us.merged && !us.all;
			in_place += !us.merged && us.services > 0;
			assert_same_as_full(ctx);
		}
	}
	/* Every path was taken, many times. */
	cr_assert_gt(in_place, 100, "in place: %zu", in_place);
	cr_assert_gt(merged, 100, "merged: %zu", merged);
	cr_assert_gt(all, 20, "all: %zu", all);
}

/* ---- user-written addresses never take over a ClusterIP ---------------- */

static void plain_service(const char *ns, const char *name, const char *cip,
			  const char *ext_ip, const char *lb_ip)
{
	struct kpx_service *svc = b_svc(ns, name, ext_ip || lb_ip ?
				       KPX_SVC_LOAD_BALANCER : KPX_SVC_CLUSTER_IP,
				       cip);

	b_svc_port(svc, "dns", KPX_PROTO_UDP, 53, 0);
	if (ext_ip)
		b_svc_ext_ip(svc, ext_ip);
	if (lb_ip)
		b_svc_lb_ip(svc, lb_ip);
	kpx_store_upsert(st, KPX_KIND_SERVICE, svc);
}

static size_t n_kind(const struct kpx_plan_svcport *sp, enum kpx_fe_kind k)
{
	size_t n = 0;

	for (size_t i = 0; i < sp->n_frontends; i++)
		n += sp->frontends[i].kind == k;
	return n;
}

Test(plan, external_ip_equal_to_a_cluster_ip_is_refused_whatever_the_names)
{
	const struct kpx_plan_svcport *evil;
	char a[KPX_ADDR_STRLEN];

	/* "aaa" sorts before "kube-system": name order must not matter. */
	plain_service("kube-system", "kube-dns", "198.18.100.10", NULL, NULL);
	plain_service("aaa", "evil", "198.18.100.66", "198.18.100.10",
		      "198.18.100.10");
	build();
	evil = sp_of("aaa/evil:dns/UDP/v4");
	cr_assert_eq(n_kind(evil, KPX_FE_EXTERNAL_IP), 0);
	cr_assert_eq(n_kind(evil, KPX_FE_LOAD_BALANCER), 0);
	cr_assert_eq(evil->n_refused, 2);
	cr_assert_eq(evil->refused[0].reason, KPX_REFUSED_CLUSTER_IP);
	cr_assert_str_eq(evil->refused[0].owner, "kube-system/kube-dns");
	cr_assert_str_eq(kpx_addr_str(&evil->refused[1].addr, a), "198.18.100.10");
	cr_assert_eq(n_kind(sp_of("kube-system/kube-dns:dns/UDP/v4"),
			    KPX_FE_CLUSTER_IP), 1);
	cr_assert_eq(kpx_plan_count_refused(plan, NULL), 2);
}

Test(plan, refusal_follows_the_cluster_ip_owner_incrementally)
{
	const struct kpx_plan_svcport *evil;

	plain_service("aaa", "evil", "198.18.100.66", "198.18.100.10", NULL);
	build();
	kpx_store_clear_dirty(st);
	cr_assert_eq(n_kind(sp_of("aaa/evil:dns/UDP/v4"), KPX_FE_EXTERNAL_IP), 1,
		     "nobody holds the address yet");
	/* The API server allocates that address to a new Service: only
	 * that Service changed, yet evil loses the address. */
	plain_service("kube-system", "kube-dns", "198.18.100.10", NULL, NULL);
	update_commit();
	evil = sp_of("aaa/evil:dns/UDP/v4");
	cr_assert_eq(n_kind(evil, KPX_FE_EXTERNAL_IP), 0);
	cr_assert_eq(evil->n_refused, 1);
	assert_same_as_full("owner added");
	kpx_store_delete(st, KPX_KIND_SERVICE, "kube-system", "kube-dns");
	update_commit();
	cr_assert_eq(n_kind(sp_of("aaa/evil:dns/UDP/v4"), KPX_FE_EXTERNAL_IP), 1);
	assert_same_as_full("owner deleted");
}

Test(plan, special_and_disallowed_external_ips_are_refused)
{
	const struct kpx_plan_svcport *sp;

	plain_service("ns", "lo", "198.18.100.1", "127.0.0.1", "0.0.0.0");
	plain_service("ns", "node", "198.18.100.2", "198.18.0.10", NULL);
	plain_service("ns", "ok", "198.18.100.3", "198.19.5.5", NULL);
	plain_service("ns", "out", "198.18.100.4", "198.18.50.5", NULL);
	build();
	sp = sp_of("ns/lo:dns/UDP/v4");
	cr_assert_eq(sp->n_refused, 2);
	cr_assert_eq(sp->refused[0].reason, KPX_REFUSED_SPECIAL);
	cr_assert_eq(sp->refused[1].reason, KPX_REFUSED_SPECIAL);
	/* Without --external-ip-cidrs a node address is served, as by
	 * kube-proxy. */
	cr_assert_eq(n_kind(sp_of("ns/node:dns/UDP/v4"), KPX_FE_EXTERNAL_IP), 1);
	cr_assert_eq(n_kind(sp_of("ns/out:dns/UDP/v4"), KPX_FE_EXTERNAL_IP), 1);

	in.external_ip_cidrs[0] = b_cidr("198.19.0.0/16");
	in.external_ip_cidrs[1] = b_cidr("198.18.0.0/24");
	in.n_external_ip_cidrs = 2;
	build();
	sp = sp_of("ns/node:dns/UDP/v4");
	cr_assert_eq(n_kind(sp, KPX_FE_EXTERNAL_IP), 0);
	cr_assert_eq(sp->refused[0].reason, KPX_REFUSED_NODE_ADDRESS);
	sp = sp_of("ns/out:dns/UDP/v4");
	cr_assert_eq(n_kind(sp, KPX_FE_EXTERNAL_IP), 0);
	cr_assert_eq(sp->refused[0].reason, KPX_REFUSED_NOT_ALLOWED);
	cr_assert_eq(n_kind(sp_of("ns/ok:dns/UDP/v4"), KPX_FE_EXTERNAL_IP), 1);
}

/* Names are interned (common/intern.h): builds, in-place updates, merges,
 * commits and rollbacks take and drop their references in pairs, so once
 * the plan and the store are gone no name is left. */
Test(plan, names_are_released_after_builds_updates_and_rollbacks)
{
	struct kpx_plan_undo *undo = NULL;
	struct kpx_service *s;

	two_services(true);
	web_slice("1", true);
	build();
	kpx_store_clear_dirty(st);
	web_slice("2", false);
	update_commit();
	s = b_svc("ns", "aa", KPX_SVC_NODE_PORT, "198.18.100.50,fd00::50");
	b_svc_port(s, "p", KPX_PROTO_TCP, 80, 30080);
	kpx_store_upsert(st, KPX_KIND_SERVICE, s);
	cr_assert_eq(kpx_plan_update(plan, st, &in, &undo), 0);
	kpx_plan_rollback(plan, undo);
	update_commit();
	kpx_store_delete(st, KPX_KIND_SERVICE, "ns", "a");
	update_commit();
	strcpy(in.node_name, "n1");
	update_commit();
	build();
	cr_assert_gt(kpx_intern_count(), 0);
	kpx_plan_free(plan);
	plan = NULL;
	kpx_store_free(st);
	st = NULL;
	cr_assert_eq(kpx_intern_count(), 0, "%zu interned names leaked",
		     kpx_intern_count());
}
