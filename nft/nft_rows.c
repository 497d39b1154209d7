// SPDX-License-Identifier: Apache-2.0
/*
 * The translation of a svcport's rows (plan.h: one per origin of the
 * traffic, per frontend) into the shape of its nftables objects. Nothing
 * here knows why a row is what it is; it only finds the chains and rules
 * that give each origin its row:
 *
 *   - A frontend element goes to the chain of the endpoint set its REMOTE
 *     row uses (svc-N / ext-N / clu-N for the internal / external /
 *     cluster set; the chain ends with that set's dispatch).
 *   - An origin whose row uses another set leaves that chain first:
 *     NODE by `fib saddr type local`, POD by the source being in a
 *     cluster CIDR of the plan's input (without one pods cannot be told
 *     from other sources: such rows cannot be expressed). The branch
 *     marks for masquerade when the row says always, and goes to the
 *     chain of its set, which then holds only the dispatch.
 *   - The masquerade of the origins that stay is one shared chain per
 *     pattern (masq4-<pod><node><remote>, letters n/a/o), or one inline
 *     mark when every origin is "always", or nothing when every origin
 *     is "never".
 *   - When an origin's set is empty the packet is not translated, and
 *     the filter endpoints-check finds the frontend in @noep with that
 *     row's empty verdict: origins with empty sets must agree on it.
 *   - Source ranges: fw-N, entered from firewall-check before DNAT; an
 *     origin whose row does not check them is let through first.
 * Combinations outside this are refused with the reason (the svcport is
 * then not programmed and reported), never approximated.
 * Owns: nothing. Must not: build messages.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nft/nft_internal.h"

static const char masq_letter[] = {
	[KPX_MASQ_NEVER] = 'n',
	[KPX_MASQ_ALWAYS] = 'a',
	[KPX_MASQ_OFF_CLUSTER] = 'o',
};

static size_t set_n(const struct kpx_plan_svcport *sp, int set)
{
	size_t n;

	kpx_plan_set_idx(sp, set, &n);
	return n;
}

/* Whether a masquerade value treats the sources of an origin alike
 * (c: the family has a cluster CIDR). For pods (sources inside a CIDR)
 * "unless off-cluster" is "never"; without a CIDR nothing is inside, so
 * it is "always" for every origin. */
static char eff(uint8_t m, bool pod, bool c)
{
	if (m != KPX_MASQ_OFF_CLUSTER)
		return masq_letter[m];
	if (!c)
		return 'a';
	return pod ? 'n' : 'o';
}

#define FAIL(...)                                          \
	do {                                               \
		if (whylen)                                \
			snprintf(why, whylen, __VA_ARGS__); \
		r = -EINVAL;                               \
		goto out;                                  \
	} while (0)

/* The prefix the rows of one frontend need in their entry chain. */
static int fe_prefix(const struct kpx_plan_frontend *fe, bool c,
		     struct kpx_nft_prefix *p, char *why, size_t whylen)
{
	const struct kpx_plan_row *pod = &fe->rows[KPX_ORIGIN_POD];
	const struct kpx_plan_row *node = &fe->rows[KPX_ORIGIN_NODE];
	const struct kpx_plan_row *rem = &fe->rows[KPX_ORIGIN_REMOTE];
	char m[3];
	int r = 0;

	memset(p, 0, sizeof(*p));
	if (node->set != rem->set) {
		p->node_branch = true;
		p->node_set = node->set;
		p->node_masq = node->masq;
	}
	if (pod->set != rem->set) {
		if (!c)
			FAIL("pods need endpoint set %s, other sources %s, and "
			     "without a cluster CIDR of this family pods cannot "
			     "be told from other sources",
			     kpx_plan_set_name(pod->set),
			     kpx_plan_set_name(rem->set));
		p->pod_branch = true;
		p->pod_set = pod->set;
		p->pod_masq = pod->masq;
	}
	/* The origins that stay: a branched one takes the remote letter. */
	m[2] = eff(rem->masq, false, c);
	m[1] = p->node_branch ? m[2] : eff(node->masq, false, c);
	m[0] = p->pod_branch ? m[2] : eff(pod->masq, true, c);
	if (!c && m[0] != m[2])
		FAIL("pods and other sources need different masquerade (%s, "
		     "%s), and without a cluster CIDR of this family pods "
		     "cannot be told from other sources",
		     kpx_masq_name(pod->masq), kpx_masq_name(rem->masq));
	/* A remote "unless off-cluster" treats pods as "never". */
	if (c && m[2] == 'o' && m[0] == 'n')
		m[0] = 'o';
	if (m[0] == m[1] && m[1] == m[2] && m[0] != 'o') {
		if (m[0] == 'a')
			strcpy(p->masq, "aaa");
	} else {
		memcpy(p->masq, m, 3);
		p->masq[3] = 0;
	}
out:
	return r;
}

void kpx_nft_shape_free(struct kpx_nft_shape *s)
{
	free(s->fe);
	memset(s, 0, sizeof(*s));
}

int kpx_nft_shape(const struct kpx_plan_input *in,
		  const struct kpx_plan_svcport *sp, struct kpx_nft_shape *s,
		  char *why, size_t whylen)
{
	bool c = kpx_plan_has_cluster_cidr(in, sp->family);
	bool fw_seen = false;
	int r = 0;

	memset(s, 0, sizeof(*s));
	if (whylen)
		why[0] = 0;
	if (!sp->n_frontends)
		return 0;
	s->fe = calloc(sp->n_frontends, sizeof(*s->fe));
	if (!s->fe)
		return -ENOMEM;
	s->n_fe = sp->n_frontends;
	for (size_t i = 0; i < sp->n_frontends; i++) {
		const struct kpx_plan_frontend *fe = &sp->frontends[i];
		struct kpx_nft_fe_shape *f = &s->fe[i];
		struct kpx_nft_prefix p;
		bool ranges[KPX_ORIGINS];

		if (fe->addr.family != sp->family)
			continue;
		f->entry = fe->rows[KPX_ORIGIN_REMOTE].set;
		for (int o = 0; o < KPX_ORIGINS; o++) {
			const struct kpx_plan_row *row = &fe->rows[o];

			if (row->set > KPX_SET_CLUSTER || row->masq > KPX_MASQ_OFF_CLUSTER)
				FAIL("%s frontend: row %s: unknown set or "
				     "masquerade", kpx_fe_kind_name(fe->kind),
				     kpx_origin_name(o));
			f->sets |= (uint8_t)(1u << row->set);
			/* NodePort groups are keyed by protocol . port:
			 * only the external and cluster sets have maps. */
			if (fe->kind == KPX_FE_NODE_PORT &&
			    row->set == KPX_SET_INTERNAL)
				FAIL("NodePort frontend: row %s uses the "
				     "internal set, which NodePorts have no "
				     "map for", kpx_origin_name(o));
			if (!set_n(sp, row->set)) {
				if (f->noep && f->empty != row->empty)
					FAIL("%s frontend: origins with empty "
					     "sets need different verdicts",
					     kpx_fe_kind_name(fe->kind));
				f->noep = true;
				f->empty = row->empty;
			}
			ranges[o] = row->source_ranges;
		}
		if ((r = fe_prefix(fe, c, &p, why, whylen)))
			goto out;
		if (p.node_branch || p.pod_branch) {
			uint8_t t[2] = { p.node_set, p.pod_set };
			bool on[2] = { p.node_branch, p.pod_branch };

			for (int k = 0; k < 2; k++)
				if (on[k])
					s->chain[t[k]] = true;
		}
		s->chain[f->entry] = true;
		if (s->is_entry[f->entry] &&
		    memcmp(&s->pre[f->entry], &p, sizeof(p)))
			FAIL("two frontends enter the %s chain with different "
			     "rows", kpx_plan_set_name(f->entry));
		s->is_entry[f->entry] = true;
		s->pre[f->entry] = p;

		/* Source ranges: the remote row decides whether fw-N is
		 * entered; other origins may only be exempt from it. */
		f->fw = ranges[KPX_ORIGIN_REMOTE] && sp->n_source_ranges;
		if (!f->fw && sp->n_source_ranges &&
		    (ranges[KPX_ORIGIN_NODE] || ranges[KPX_ORIGIN_POD]))
			FAIL("%s frontend: source ranges for local origins "
			     "but not for remote ones",
			     kpx_fe_kind_name(fe->kind));
		if (f->fw) {
			bool ne = !ranges[KPX_ORIGIN_NODE],
			     pe = !ranges[KPX_ORIGIN_POD];

			if (pe && !c)
				FAIL("pods are exempt from the source ranges, "
				     "and without a cluster CIDR of this family "
				     "pods cannot be told from other sources");
			if (fw_seen && (ne != s->fw_node_exempt ||
					pe != s->fw_pod_exempt))
				FAIL("two frontends check source ranges for "
				     "different origins");
			fw_seen = true;
			s->fw = true;
			s->fw_node_exempt = ne;
			s->fw_pod_exempt = pe;
		}
	}
	/* A branch target holds only its dispatch. */
	for (size_t i = 0; i < s->n_fe; i++) {
		const struct kpx_nft_prefix *p = &s->pre[s->fe[i].entry];

		if ((p->node_branch && s->is_entry[p->node_set] &&
		     (s->pre[p->node_set].masq[0] || s->pre[p->node_set].node_branch ||
		      s->pre[p->node_set].pod_branch)) ||
		    (p->pod_branch && s->is_entry[p->pod_set] &&
		     (s->pre[p->pod_set].masq[0] || s->pre[p->pod_set].node_branch ||
		      s->pre[p->pod_set].pod_branch)))
			FAIL("a local origin's set %s is also entered from "
			     "outside with rules of its own",
			     kpx_plan_set_name(p->node_branch ? p->node_set
							      : p->pod_set));
	}
out:
	if (r)
		kpx_nft_shape_free(s);
	return r;
}

bool kpx_nft_shape_same_rules(const struct kpx_nft_shape *a,
			      const struct kpx_nft_shape *b)
{
	return !memcmp(a->chain, b->chain, sizeof(a->chain)) &&
	       !memcmp(a->is_entry, b->is_entry, sizeof(a->is_entry)) &&
	       !memcmp(a->pre, b->pre, sizeof(a->pre)) && a->fw == b->fw &&
	       a->fw_node_exempt == b->fw_node_exempt &&
	       a->fw_pod_exempt == b->fw_pod_exempt;
}
