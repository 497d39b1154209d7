/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Builders for Service/EndpointSlice objects in C, for the store and plan
 * unit tests. Every array is its own heap block, as the decoders allocate
 * them, and strings are interned as the decoders intern them, so
 * kpx_object_free() releases what these build.
 */
#ifndef KPX_TEST_OBJ_BUILDERS_H
#define KPX_TEST_OBJ_BUILDERS_H

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "common/addr.h"
#include "k8s/objects.h"

#define B_GROW(arr, n)                                                         \
	do {                                                                   \
		(arr) = realloc((arr), ((n) + 1) * sizeof(*(arr)));             \
		cr_assert((arr));                                              \
		memset(&(arr)[(n)], 0, sizeof(*(arr)));                         \
	} while (0)

static inline struct kpx_addr b_addr(const char *s)
{
	struct kpx_addr a;

	cr_assert_eq(kpx_addr_parse(s, &a), 0, "bad test address %s", s);
	return a;
}

static inline struct kpx_cidr b_cidr(const char *s)
{
	struct kpx_cidr c;

	cr_assert_eq(kpx_cidr_parse(s, &c), 0, "bad test cidr %s", s);
	return c;
}

/* cluster_ips: comma-separated list, "" for none. */
static inline struct kpx_service *b_svc(const char *ns, const char *name,
					enum kpx_svc_type type,
					const char *cluster_ips)
{
	struct kpx_service *s = calloc(1, sizeof(*s));
	char buf[256], *save = NULL, *tok;

	cr_assert(s);
	s->ns = kpx_intern(ns);
	s->name = kpx_intern(name);
	s->type = type;
	snprintf(buf, sizeof(buf), "%s", cluster_ips);
	for (tok = strtok_r(buf, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		B_GROW(s->cluster_ips, s->n_cluster_ips);
		s->cluster_ips[s->n_cluster_ips++] = b_addr(tok);
	}
	return s;
}

static inline void b_svc_port(struct kpx_service *s, const char *name,
			      uint8_t proto, uint16_t port, uint16_t node_port)
{
	struct kpx_svc_port *p;

	B_GROW(s->ports, s->n_ports);
	p = &s->ports[s->n_ports++];
	p->name = kpx_intern(name);
	p->proto = proto;
	p->port = port;
	p->node_port = node_port;
}

static inline void b_svc_ext_ip(struct kpx_service *s, const char *ip)
{
	B_GROW(s->external_ips, s->n_external_ips);
	s->external_ips[s->n_external_ips++] = b_addr(ip);
}

static inline void b_svc_lb_ip(struct kpx_service *s, const char *ip)
{
	B_GROW(s->lb_ips, s->n_lb_ips);
	s->lb_ips[s->n_lb_ips++] = b_addr(ip);
}

static inline void b_svc_src_range(struct kpx_service *s, const char *cidr)
{
	B_GROW(s->lb_source_ranges, s->n_lb_source_ranges);
	s->lb_source_ranges[s->n_lb_source_ranges++] = b_cidr(cidr);
}

static inline struct kpx_endpoint_slice *
b_slice(const char *ns, const char *name, const char *svc, uint8_t family)
{
	struct kpx_endpoint_slice *sl = calloc(1, sizeof(*sl));

	cr_assert(sl);
	sl->ns = kpx_intern(ns);
	sl->name = kpx_intern(name);
	sl->service_name = kpx_intern(svc);
	sl->family = family;
	return sl;
}

static inline void b_slice_port(struct kpx_endpoint_slice *sl,
				const char *name, uint8_t proto, uint16_t port)
{
	struct kpx_slice_port *p;

	B_GROW(sl->ports, sl->n_ports);
	p = &sl->ports[sl->n_ports++];
	p->name = kpx_intern(name);
	p->proto = proto;
	p->port = port;
}

/* hints: NULL = no hints field; "" = hints with no zones; "a,b" zones,
 * "@n" a node hint (forNodes). */
static inline struct kpx_endpoint *
b_ep(struct kpx_endpoint_slice *sl, const char *ip, bool ready, bool serving,
     bool terminating, const char *node, const char *zone, const char *hints)
{
	struct kpx_endpoint *e;

	B_GROW(sl->endpoints, sl->n_endpoints);
	e = &sl->endpoints[sl->n_endpoints++];
	e->addr = b_addr(ip);
	e->ready = ready;
	e->serving = serving;
	e->terminating = terminating;
	e->node_name = kpx_intern(node ? node : "");
	e->zone = kpx_intern(zone ? zone : "");
	if (hints) {
		char buf[256], *save = NULL, *tok;

		snprintf(buf, sizeof(buf), "%s", hints);
		for (tok = strtok_r(buf, ",", &save); tok;
		     tok = strtok_r(NULL, ",", &save)) {
			if (tok[0] == '@') {
				B_GROW(e->hint_nodes, e->n_hint_nodes);
				e->hint_nodes[e->n_hint_nodes++] =
					kpx_intern(tok + 1);
				continue;
			}
			B_GROW(e->hint_zones, e->n_hint_zones);
			e->hint_zones[e->n_hint_zones++] = kpx_intern(tok);
		}
	}
	return e;
}

/* A ready endpoint on node. */
static inline struct kpx_endpoint *b_ready(struct kpx_endpoint_slice *sl,
					   const char *ip, const char *node)
{
	return b_ep(sl, ip, true, true, false, node, "", NULL);
}

#endif
