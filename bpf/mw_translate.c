// SPDX-License-Identifier: Apache-2.0
/*
 * Map writer, plan-to-ABI translation: what one plan row of one frontend
 * becomes as a kpx_svc entry (scope, flags, the endpoint set, names,
 * source ranges) and as kpx_backends values. The rows decide; this file
 * only encodes (tc: the remote row; socket hooks: the node row).
 * Owns: struct want. Must not: touch a map, know Kubernetes rules.
 */
#include <errno.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "bpf/maglev.h"
#include "bpf/map_walk.h"
#include "bpf/map_writer.h"
#include "bpf/map_writer_int.h"
#include "common/log.h"

void mw_backend_value_of(struct kpx_backend_value *v,
			     const struct kpx_plan_svcport *sp,
			     const struct kpx_plan_endpoint *ep)
{
	memset(v, 0, sizeof(*v));
	memcpy(v->addr, ep->addr.bytes, ep->addr.family == AF_INET ? 4 : 16);
	v->port = htons(ep->port);
	v->proto = sp->proto;
	v->family = ep->addr.family == AF_INET ? KPX_AF_INET : KPX_AF_INET6;
	if (ep->flags & KPX_EP_LOCAL)
		v->flags |= KPX_BE_F_LOCAL;
	if (ep->flags & KPX_EP_TERMINATING)
		v->flags |= KPX_BE_F_TERMINATING;
	if (ep->flags & KPX_EP_HOST)
		v->flags |= KPX_BE_F_HOST;
}

/* ---- desired state ---- */

static uint8_t fe_type(enum kpx_fe_kind k)
{
	switch (k) {
	case KPX_FE_NODE_PORT:
		return KPX_FE_TYPE_NODE_PORT;
	case KPX_FE_EXTERNAL_IP:
		return KPX_FE_TYPE_EXTERNAL_IP;
	case KPX_FE_LOAD_BALANCER:
		return KPX_FE_TYPE_LOAD_BALANCER;
	default:
		return KPX_FE_TYPE_CLUSTER_IP;
	}
}

/*
 * The row of fe that an entry of this scope serves: tc sees traffic that
 * arrives at the node (another node, outside: REMOTE), the socket hooks
 * local sockets, pods and the node's own processes alike (NODE; the plan
 * made the POD row equal to it where it matters, caps.local_pod_vs_node).
 */
static const struct kpx_plan_row *row_of(const struct kpx_plan_frontend *fe,
					 uint8_t scope)
{
	return &fe->rows[scope == KPX_SCOPE_EXTERNAL ? KPX_ORIGIN_REMOTE
						     : KPX_ORIGIN_NODE];
}

void mw_want_fill(struct kpx_map_writer *w, struct want *x,
		      const struct kpx_plan_svcport *sp,
		      const struct kpx_plan_frontend *fe, uint8_t scope)
{
	const struct kpx_plan_row *row = row_of(fe, scope);

	memset(x, 0, sizeof(*x));
	memcpy(x->key.addr, fe->addr.bytes,
	       fe->addr.family == AF_INET ? 4 : 16);
	x->key.port = htons(fe->port);
	x->key.proto = sp->proto;
	x->key.scope = scope;
	x->key.family = fe->addr.family == AF_INET ? KPX_AF_INET
						   : KPX_AF_INET6;
	x->kind = fe_type(fe->kind);
	x->sp = sp;
	x->set = kpx_plan_row_set(sp, row, &x->n);
	/* A drop the socket hooks cannot express (the plan made it a
	 * reject, degraded) keeps its flag: their nearest to a drop is
	 * failing connect() with EPERM, told apart from a refusal. */
	if (row->empty == KPX_EMPTY_DROP ||
	    (row->degraded & KPX_ROW_DROP_AS_REJECT))
		x->flags |= KPX_SVC_F_EMPTY_DROP;
	if (row->source_ranges)
		x->flags |= KPX_SVC_F_SOURCE_RANGES;
	if (kpx_plan_row_local_only(sp, row))
		x->flags |= KPX_SVC_F_LOCAL_ONLY;
	/* Masquerade is the tc datapath's: a socket hook connects from the
	 * socket's own address, and the answer comes back to it anyway. */
	if (scope == KPX_SCOPE_EXTERNAL && row->masq == KPX_MASQ_ALWAYS)
		x->flags |= KPX_SVC_F_SNAT;
	else if (scope == KPX_SCOPE_EXTERNAL &&
		 row->masq == KPX_MASQ_OFF_CLUSTER)
		x->flags |= KPX_SVC_F_SNAT_OFF_CLUSTER;
	if (sp->affinity_timeout) {
		x->flags |= KPX_SVC_F_AFFINITY;
		x->affinity_timeout = sp->affinity_timeout;
	}
	if (w->o.alg == KPX_LB_MAGLEV)
		x->flags |= KPX_SVC_F_MAGLEV;
	/* A set larger than kpx_svc_value.count holds is refused by
	 * mw_entry_write (an error naming it), never cut silently. Names
	 * longer than the ABI field are cut (dumps only; the API's name
	 * limits keep "ns/name:port" well below it). */
	{
		char full[KPX_NS_MAX + KPX_NAME_MAX + KPX_PORTNAME_MAX + 4] = {0};
		int l = snprintf(full, sizeof(full), "%s/%s:%s", sp->ns,
				 sp->name, sp->port_name);

		(void)l;
		memcpy(x->meta.name, full, sizeof(x->meta.name) - 1);
	}
	memcpy(x->meta.addr, x->key.addr, 16);
	x->meta.port = x->key.port;
	x->meta.proto = x->key.proto;
	x->meta.family = x->key.family;
	x->meta.kind = x->kind;
	x->meta.scope = scope;
}

int mw_want_cmp(const void *a, const void *b)
{
	return memcmp(&((const struct want *)a)->key,
		      &((const struct want *)b)->key,
		      sizeof(struct kpx_svc_key));
}

/* By key, then plan order (qsort is not stable). */
int mw_want_sort_cmp(const void *a, const void *b)
{
	const struct want *x = a, *y = b;
	int c = mw_want_cmp(a, b);

	if (c)
		return c;
	return x->ord < y->ord ? -1 : x->ord > y->ord;
}

size_t mw_want_ranges(const struct want *x, uint32_t svc_id,
			  struct kpx_src_range_key *out)
{
	size_t n = 0;

	if (!(x->flags & KPX_SVC_F_SOURCE_RANGES))
		return 0;
	for (size_t i = 0; i < x->sp->n_source_ranges; i++) {
		const struct kpx_cidr *c = &x->sp->source_ranges[i];

		memset(&out[n], 0, sizeof(out[n]));
		out[n].prefixlen = 32 + c->prefix;
		out[n].svc_id = svc_id;
		memcpy(out[n].addr, c->addr.bytes,
		       c->addr.family == AF_INET ? 4 : 16);
		n++;
	}
	return n;
}

bool mw_range_in(const struct kpx_src_range_key *r,
		     const struct kpx_src_range_key *set, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!memcmp(r, &set[i], sizeof(*r)))
			return true;
	return false;
}

/* Whether e already is exactly x (then nothing is written). */
bool mw_entry_matches(struct kpx_map_writer *w, const struct svc_entry *e,
			  const struct want *x)
{
	struct kpx_src_range_key *r;
	size_t nr;
	bool ok;

	if (e->dirty)
		return false;
	if (e->val.flags != x->flags || e->val.kind != x->kind ||
	    e->val.affinity_timeout != x->affinity_timeout ||
	    e->val.count != x->n || memcmp(&e->meta, &x->meta, sizeof(e->meta)))
		return false;
	for (size_t i = 0; i < x->n; i++) {
		struct kpx_backend_value v;
		struct be_ident ident;
		struct be_node *n;

		mw_backend_value_of(&v, x->sp, &x->sp->endpoints[x->set[i]]);
		mw_be_ident_of(&ident, &v);
		/* The backend the slot names must be this endpoint: by id,
		 * not a tree search (identities are unique in the tree). */
		n = e->ids[i] < w->o.backends_max ? w->be_by_id[e->ids[i]]
						   : NULL;
		if (!n || memcmp(&n->ident, &ident, sizeof(ident)) ||
		    n->val.flags != v.flags)
			return false;
	}
	if (!e->n_ranges && !(x->flags & KPX_SVC_F_SOURCE_RANGES))
		return true;
	r = calloc(x->sp->n_source_ranges + 1, sizeof(*r));
	if (!r)
		return false;
	nr = mw_want_ranges(x, e->val.svc_id, r);
	ok = nr == e->n_ranges;
	for (size_t i = 0; ok && i < nr; i++)
		ok = mw_range_in(&r[i], e->ranges, e->n_ranges);
	free(r);
	return ok;
}
