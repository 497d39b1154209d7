// SPDX-License-Identifier: Apache-2.0
/*
 * Plan output: the JSON document `kpx plan -o json` prints and the table
 * `kpx plan` prints. The JSON shape is a user interface (golden tests and
 * scripts read it); change it only additively.
 *
 * {"node": "NAME", "zone": "ZONE",
 *  "input": {"node_ips": [...], "local_addresses": [...], "cluster_cidrs":
 *            [...], "masquerade_all": bool},
 *  "svcports": [{
 *    "id": "ns/name:port/TCP/v4", "namespace", "name", "port_name",
 *    "family": "IPv4"|"IPv6", "protocol": "TCP"|"UDP"|"SCTP",
 *    "port": N, "node_port": N (0: none), "hc_node_port": N (0: none),
 *    "type": "ClusterIP"|"NodePort"|"LoadBalancer",
 *    "affinity_timeout": seconds (0: no affinity),
 *    "etp_local": bool, "itp_local": bool,
 *    "frontends": [{"kind": "ClusterIP"|"NodePort"|"ExternalIP"|
 *                   "LoadBalancer", "address", "port", "external": bool,
 *                   "rows": {ORIGIN: {"set": "internal"|"external"|
 *                            "cluster", "endpoints": N, "empty":
 *                            "reject"|"drop", "masquerade": "never"|
 *                            "always"|"off-cluster", "source_ranges": bool,
 *                            "degraded": ["drop-as-reject",
 *                            "no-source-ranges", "pod-as-node"]}}}],
 *                   ORIGIN: "pod" | "node" | "remote"
 *    "endpoints": [{"address", "port", "ready", "serving", "terminating",
 *                   "local", "host"}],            sorted by address, port
 *    "internal": ["addr:port", ...],   ClusterIP traffic (after iTP)
 *    "external": [...],                outside traffic to NodePort/
 *                                      externalIP/LB (after eTP)
 *    "cluster":  [...],                cluster-policy set
 *    "internal_empty": "reject"|"drop", "external_empty": "reject"|"drop",
 *    "source_ranges": ["CIDR", ...], "local_ready": N,
 *    "refused": [{"kind": "ExternalIP"|"LoadBalancer", "address",
 *                 "reason", "owner": "ns/name" (of the ClusterIP)}]}]}
 * IPv6 endpoints in the sets are written "[addr]:port".
 */
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "plan/plan.h"
#include "plan/plan_internal.h"

/* "addr:port", IPv6 as "[addr]:port". */
static void addr_port_str(const struct kpx_addr *addr, uint16_t port,
			  char *buf, size_t len)
{
	char a[KPX_ADDR_STRLEN];

	kpx_addr_str(addr, a);
	if (addr->family == AF_INET6)
		snprintf(buf, len, "[%s]:%u", a, port);
	else
		snprintf(buf, len, "%s:%u", a, port);
}

static void ep_str(const struct kpx_plan_endpoint *e, char *buf, size_t len)
{
	addr_port_str(&e->addr, e->port, buf, len);
}

static struct json_object *set_json(const struct kpx_plan_svcport *sp,
				    const uint32_t *idx, size_t n)
{
	struct json_object *arr = json_object_new_array();
	char buf[KPX_ADDR_STRLEN + 16];

	for (size_t i = 0; i < n; i++) {
		ep_str(&sp->endpoints[idx[i]], buf, sizeof(buf));
		json_object_array_add(arr, json_object_new_string(buf));
	}
	return arr;
}

static const char *empty_name(enum kpx_empty_action a)
{
	return a == KPX_EMPTY_REJECT ? "reject" : "drop";
}

/* Keys are distinct string literals: json-c need neither copy them nor
 * look for an existing one (a 10k-service plan adds ~1M keys). */
#define ADD(o, k, v)                                                           \
	json_object_object_add_ex((o), (k), (v),                               \
				  JSON_C_OBJECT_ADD_KEY_IS_NEW |               \
					  JSON_C_OBJECT_KEY_IS_CONSTANT)

/* ["addr/prefix", ...] */
static struct json_object *cidrs_json(const struct kpx_cidr *v, size_t n)
{
	struct json_object *arr = json_object_new_array();
	char a[KPX_ADDR_STRLEN], buf[KPX_ADDR_STRLEN + 8];

	for (size_t i = 0; i < n; i++) {
		snprintf(buf, sizeof(buf), "%s/%u", kpx_addr_str(&v[i].addr, a),
			 v[i].prefix);
		json_object_array_add(arr, json_object_new_string(buf));
	}
	return arr;
}

static struct json_object *rows_json(const struct kpx_plan_svcport *sp,
				     const struct kpx_plan_frontend *fe)
{
	struct json_object *rows = json_object_new_object();

	for (int o = 0; o < KPX_ORIGINS; o++) {
		const struct kpx_plan_row *r = &fe->rows[o];
		struct json_object *j = json_object_new_object();
		struct json_object *deg = json_object_new_array();
		size_t n;

		kpx_plan_row_set(sp, r, &n);
		ADD(j, "set", json_object_new_string(kpx_plan_set_name(r->set)));
		ADD(j, "endpoints", json_object_new_int64((int64_t)n));
		ADD(j, "empty", json_object_new_string(empty_name(r->empty)));
		ADD(j, "masquerade", json_object_new_string(kpx_masq_name(r->masq)));
		ADD(j, "source_ranges", json_object_new_boolean(r->source_ranges));
		if (r->degraded & KPX_ROW_DROP_AS_REJECT)
			json_object_array_add(deg, json_object_new_string("drop-as-reject"));
		if (r->degraded & KPX_ROW_NO_SOURCE_RANGES)
			json_object_array_add(deg, json_object_new_string("no-source-ranges"));
		if (r->degraded & KPX_ROW_POD_AS_NODE)
			json_object_array_add(deg, json_object_new_string("pod-as-node"));
		ADD(j, "degraded", deg);
		json_object_object_add(rows, kpx_origin_name(o), j);
	}
	return rows;
}

static struct json_object *svcport_json(const struct kpx_plan_svcport *sp)
{
	struct json_object *o = json_object_new_object();
	struct json_object *fes = json_object_new_array();
	struct json_object *eps = json_object_new_array();
	char a[KPX_ADDR_STRLEN];

	ADD(o, "id", json_object_new_string(sp->id));
	ADD(o, "namespace", json_object_new_string(sp->ns));
	ADD(o, "name", json_object_new_string(sp->name));
	ADD(o, "port_name", json_object_new_string(sp->port_name));
	ADD(o, "family",
	    json_object_new_string(sp->family == AF_INET6 ? "IPv6" : "IPv4"));
	ADD(o, "protocol", json_object_new_string(kpx_proto_name(sp->proto)));
	ADD(o, "port", json_object_new_int(sp->port));
	ADD(o, "node_port", json_object_new_int(sp->node_port));
	ADD(o, "hc_node_port", json_object_new_int(sp->hc_node_port));
	ADD(o, "type", json_object_new_string(kpx_plan_type_name(sp->type)));
	ADD(o, "affinity_timeout", json_object_new_int64(sp->affinity_timeout));
	ADD(o, "etp_local", json_object_new_boolean(sp->etp_local));
	ADD(o, "itp_local", json_object_new_boolean(sp->itp_local));
	for (size_t i = 0; i < sp->n_frontends; i++) {
		const struct kpx_plan_frontend *fe = &sp->frontends[i];
		struct json_object *f = json_object_new_object();

		ADD(f, "kind", json_object_new_string(kpx_fe_kind_name(fe->kind)));
		ADD(f, "address", json_object_new_string(kpx_addr_str(&fe->addr, a)));
		ADD(f, "port", json_object_new_int(fe->port));
		ADD(f, "external", json_object_new_boolean(fe->external));
		ADD(f, "rows", rows_json(sp, fe));
		json_object_array_add(fes, f);
	}
	ADD(o, "frontends", fes);
	for (size_t i = 0; i < sp->n_endpoints; i++) {
		const struct kpx_plan_endpoint *e = &sp->endpoints[i];
		struct json_object *j = json_object_new_object();

		ADD(j, "address", json_object_new_string(kpx_addr_str(&e->addr, a)));
		ADD(j, "port", json_object_new_int(e->port));
		ADD(j, "ready", json_object_new_boolean(e->flags & KPX_EP_READY));
		ADD(j, "serving", json_object_new_boolean(e->flags & KPX_EP_SERVING));
		ADD(j, "terminating",
		    json_object_new_boolean(e->flags & KPX_EP_TERMINATING));
		ADD(j, "local", json_object_new_boolean(e->flags & KPX_EP_LOCAL));
		ADD(j, "host", json_object_new_boolean(e->flags & KPX_EP_HOST));
		json_object_array_add(eps, j);
	}
	ADD(o, "endpoints", eps);
	ADD(o, "internal", set_json(sp, sp->internal, sp->n_internal));
	ADD(o, "external", set_json(sp, sp->external, sp->n_external));
	ADD(o, "cluster", set_json(sp, sp->cluster, sp->n_cluster));
	ADD(o, "internal_empty", json_object_new_string(empty_name(sp->internal_empty)));
	ADD(o, "external_empty", json_object_new_string(empty_name(sp->external_empty)));
	ADD(o, "source_ranges", cidrs_json(sp->source_ranges, sp->n_source_ranges));
	ADD(o, "local_ready", json_object_new_int64(sp->local_ready));
	ADD(o, "refused", kpx_plan_refused_json(sp, false));
	return o;
}

struct json_object *kpx_plan_refused_json(const struct kpx_plan_svcport *sp,
					  bool with_service)
{
	struct json_object *arr = json_object_new_array();
	char a[KPX_ADDR_STRLEN], svc[KPX_NS_MAX + KPX_NAME_MAX];

	for (size_t i = 0; i < sp->n_refused; i++) {
		const struct kpx_plan_refused *r = &sp->refused[i];
		struct json_object *j = json_object_new_object();

		if (with_service) {
			snprintf(svc, sizeof(svc), "%s/%s", sp->ns, sp->name);
			ADD(j, "service", json_object_new_string(svc));
		}
		ADD(j, "kind", json_object_new_string(kpx_fe_kind_name(r->kind)));
		ADD(j, "address", json_object_new_string(kpx_addr_str(&r->addr, a)));
		ADD(j, "reason", json_object_new_string(kpx_refusal_name(r->reason)));
		ADD(j, "owner", r->owner[0] ? json_object_new_string(r->owner)
					    : NULL);
		json_object_array_add(arr, j);
	}
	return arr;
}

static struct json_object *addrs_json(const struct kpx_addr *v, size_t n)
{
	struct json_object *arr = json_object_new_array();
	char a[KPX_ADDR_STRLEN];

	for (size_t i = 0; i < n; i++)
		json_object_array_add(arr, json_object_new_string(kpx_addr_str(&v[i], a)));
	return arr;
}

/* What `kpx explain` needs to tell a packet's origin and masquerade. */
static struct json_object *input_json(const struct kpx_plan_input *in)
{
	struct json_object *o = json_object_new_object();

	ADD(o, "node_ips", addrs_json(in->node_ips, in->n_node_ips));
	ADD(o, "local_addresses", addrs_json(in->local_addrs, in->n_local_addrs));
	ADD(o, "cluster_cidrs", cidrs_json(in->cluster_cidrs, in->n_cluster_cidrs));
	ADD(o, "masquerade_all", json_object_new_boolean(in->masquerade_all));
	return o;
}

struct json_object *kpx_plan_to_json(const struct kpx_plan *plan)
{
	struct json_object *root = json_object_new_object();
	struct json_object *arr = json_object_new_array();

	ADD(root, "node", json_object_new_string(plan->input.node_name));
	ADD(root, "zone", json_object_new_string(plan->input.node_zone));
	ADD(root, "input", input_json(&plan->input));
	for (size_t i = 0; i < plan->n_svcports; i++)
		json_object_array_add(arr, svcport_json(&plan->svcports[i]));
	ADD(root, "svcports", arr);
	return root;
}

/* ---- table -------------------------------------------------------------- */

static void print_set(FILE *f, const char *label,
		      const struct kpx_plan_svcport *sp, const uint32_t *idx,
		      size_t n, enum kpx_empty_action empty)
{
	char buf[KPX_ADDR_STRLEN + 16];

	fprintf(f, "    %-10s", label);
	if (!n)
		fprintf(f, " (none: %s)", empty_name(empty));
	for (size_t i = 0; i < n; i++) {
		ep_str(&sp->endpoints[idx[i]], buf, sizeof(buf));
		fprintf(f, " %s", buf);
	}
	fputc('\n', f);
}

void kpx_plan_print(const struct kpx_plan *plan, void *file)
{
	FILE *f = file;
	char a[KPX_ADDR_STRLEN], buf[KPX_ADDR_STRLEN + 16];
	/* Names reach the terminal escaped (common/log.h): objects are
	 * validated, but the node's name and zone come from flags too. */
	char node[4 * sizeof(plan->input.node_name)];
	char zone[4 * sizeof(plan->input.node_zone)];
	char id[4 * sizeof(plan->svcports[0].id)];

	kpx_escape(plan->input.node_name[0] ? plan->input.node_name : "-", node,
		   sizeof(node));
	kpx_escape(plan->input.node_zone[0] ? plan->input.node_zone : "-", zone,
		   sizeof(zone));
	fprintf(f, "node %s  zone %s  %zu service ports, %zu frontends, "
		   "%zu endpoints\n",
		node, zone, plan->n_svcports, plan->n_frontends,
		plan->n_endpoints);
	for (size_t i = 0; i < plan->n_svcports; i++) {
		const struct kpx_plan_svcport *sp = &plan->svcports[i];

		kpx_escape(sp->id, id, sizeof(id));
		fprintf(f, "\n%s  %s  iTP=%s eTP=%s", id,
			kpx_plan_type_name(sp->type),
			sp->itp_local ? "Local" : "Cluster",
			sp->etp_local ? "Local" : "Cluster");
		if (sp->affinity_timeout)
			fprintf(f, "  affinity=ClientIP/%us", sp->affinity_timeout);
		if (sp->hc_node_port)
			fprintf(f, "  healthCheckNodePort=%u (local ready %u)",
				sp->hc_node_port, sp->local_ready);
		fputc('\n', f);
		for (size_t j = 0; j < sp->n_frontends; j++) {
			const struct kpx_plan_frontend *fe = &sp->frontends[j];

			addr_port_str(&fe->addr, fe->port, buf, sizeof(buf));
			fprintf(f, "    %-12s %-45s %s\n",
				kpx_fe_kind_name(fe->kind), buf,
				fe->external ? "external" : "internal");
			for (int o = 0; o < KPX_ORIGINS; o++) {
				const struct kpx_plan_row *r = &fe->rows[o];

				fprintf(f, "      from %-6s -> %s set, empty: %s, "
					   "masquerade: %s%s%s%s%s\n",
					kpx_origin_name(o), kpx_plan_set_name(r->set),
					empty_name(r->empty), kpx_masq_name(r->masq),
					r->source_ranges ? ", source ranges" : "",
					r->degraded & KPX_ROW_DROP_AS_REJECT
						? " (drop not expressible: rejected)" : "",
					r->degraded & KPX_ROW_NO_SOURCE_RANGES
						? " (source ranges not checked)" : "",
					r->degraded & KPX_ROW_POD_AS_NODE
						? " (pods not told from the node)" : "");
			}
		}
		for (size_t j = 0; j < sp->n_refused; j++) {
			const struct kpx_plan_refused *r = &sp->refused[j];

			fprintf(f, "    %-12s %-45s refused: %s%s%s\n",
				kpx_fe_kind_name(r->kind),
				kpx_addr_str(&r->addr, a),
				kpx_refusal_name(r->reason),
				r->owner[0] ? " of " : "", r->owner);
		}
		for (size_t j = 0; j < sp->n_source_ranges; j++)
			fprintf(f, "    %-12s %s/%u\n", "allow-from",
				kpx_addr_str(&sp->source_ranges[j].addr, a),
				sp->source_ranges[j].prefix);
		for (size_t j = 0; j < sp->n_endpoints; j++) {
			const struct kpx_plan_endpoint *e = &sp->endpoints[j];

			ep_str(e, buf, sizeof(buf));
			fprintf(f, "    %-12s %-45s %s%s%s%s%s\n", "endpoint", buf,
				e->flags & KPX_EP_READY ? "ready" : "-",
				e->flags & KPX_EP_SERVING ? " serving" : "",
				e->flags & KPX_EP_TERMINATING ? " terminating" : "",
				e->flags & KPX_EP_LOCAL ? " local" : "",
				e->flags & KPX_EP_HOST ? " host" : "");
		}
		print_set(f, "internal:", sp, sp->internal, sp->n_internal,
			  sp->internal_empty);
		if (sp->n_frontends > 0 &&
		    (sp->node_port || sp->frontends[sp->n_frontends - 1].external))
			print_set(f, "external:", sp, sp->external,
				  sp->n_external, sp->external_empty);
		/* With a Local policy the cluster set differs and is what
		 * local clients of external frontends get. */
		if (sp->itp_local || sp->etp_local)
			print_set(f, "cluster:", sp, sp->cluster, sp->n_cluster,
				  KPX_EMPTY_REJECT);
	}
}
