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
	 * "~" for a hints field with no zones, else "z1,z2". */
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
	cr_assert(json_object_object_get_ex(sp, "internal_empty", &v));
	cr_assert_str_eq(json_object_get_string(v), "drop");
	sp = json_object_array_get_idx(sps, 0);
	cr_assert_str_eq(json_object_get_string(json_object_object_get(sp, "internal_empty")),
			 "reject");
	json_object_put(root);
}
