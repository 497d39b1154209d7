// SPDX-License-Identifier: Apache-2.0
/*
 * `kpx services` (`kpx svc`): one row per frontend as the kernel holds it,
 * read through the backend directly rather than asked from the agent, so
 * that drift between the agent's plan and the kernel is visible.
 * `--verify` compares the two and exits 1 on any difference.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "agent/serve.h"
#include "cli/cli.h"
#include "cli/inspect.h"
#include "cli/table.h"
#include "common/addr.h"

static const char services_usage[] =
	"Usage: kpx services|svc [-o json|wide] [-n NAMESPACE] [NAME] [--verify]\n"
	"                        [--state-socket PATH] [--bpf-root PATH]\n"
	"                        [--backend bpf|nft] [--cgroup-path PATH]\n"
	"\n"
	"Lists the frontends programmed in the kernel with their backends.\n"
	"--verify compares them with the running agent's plan; exit status 1\n"
	"when they differ.\n";

static bool match_filter(const struct kpx_inspect_opts *o,
			 struct json_object *fe)
{
	const char *svc = kpx_jstr(fe, "service", "");
	const char *slash = strchr(svc, '/');
	size_t nslen = slash ? (size_t)(slash - svc) : 0;
	const char *name = slash ? slash + 1 : svc;

	if (o->ns && (strlen(o->ns) != nslen || strncmp(svc, o->ns, nslen)))
		return false;
	if (o->name && strcmp(name, o->name))
		return false;
	return true;
}

/* Canonical "addr" so that both sides compare equal however they print
 * IPv6 addresses. */
static void canon_addr(const char *in, char *out)
{
	struct kpx_addr a;

	if (in && !kpx_addr_parse(in, &a))
		kpx_addr_str(&a, out);
	else
		snprintf(out, KPX_ADDR_STRLEN, "%s", in ? in : "");
}

static void fmt_ep(const char *addr, int64_t port, char *buf, size_t len)
{
	char a[KPX_ADDR_STRLEN];

	canon_addr(addr, a);
	if (strchr(a, ':'))
		snprintf(buf, len, "[%s]:%lld", a, (long long)port);
	else
		snprintf(buf, len, "%s:%lld", a, (long long)port);
}

static void fmt_frontend(struct json_object *fe, char *buf, size_t len)
{
	char ep[KPX_ADDR_STRLEN + 16];
	const char *proto = kpx_jstr(fe, "protocol", "?");

	fmt_ep(kpx_jstr(fe, "address", ""), kpx_jint(fe, "port", 0), ep,
	       sizeof(ep));
	snprintf(buf, len, "%s/%s", ep, proto);
}

static void backends_summary(struct json_object *bs, char *buf, size_t len)
{
	size_t n = bs ? json_object_array_length(bs) : 0, i;
	size_t term = 0, local = 0;
	int off;

	for (i = 0; i < n; i++) {
		struct json_object *b = json_object_array_get_idx(bs, i);

		if (!strcmp(kpx_jstr(b, "state", "active"), "terminating"))
			term++;
		if (kpx_jbool(b, "local"))
			local++;
	}
	off = snprintf(buf, len, "%zu", n);
	if (term || local) {
		off += snprintf(buf + off, len - off, " (");
		if (local)
			off += snprintf(buf + off, len - off, "%zu local%s",
					local, term ? ", " : "");
		if (term)
			off += snprintf(buf + off, len - off, "%zu term", term);
		snprintf(buf + off, len - off, ")");
	}
}

static void backends_wide(struct json_object *bs, char *buf, size_t len)
{
	size_t n = bs ? json_object_array_length(bs) : 0, i;
	static const char *const counters[] = { "connections", "packets",
						"bytes" };
	static const char *const unit[] = { "c", "p", "B" };
	size_t off = 0, k;
	char ep[KPX_ADDR_STRLEN + 16];

	buf[0] = 0;
	for (i = 0; i < n && off < len; i++) {
		struct json_object *b = json_object_array_get_idx(bs, i);
		const char *state = kpx_jstr(b, "state", "active");

		fmt_ep(kpx_jstr(b, "address", ""), kpx_jint(b, "port", 0), ep,
		       sizeof(ep));
		off += snprintf(buf + off, len - off, "%s%s(%s%s", i ? " " : "",
				ep, state, kpx_jbool(b, "local") ? ",local" : "");
		for (k = 0; k < 3 && off < len; k++)
			if (kpx_jget(b, counters[k]))
				off += snprintf(buf + off, len - off, ",%lld%s",
						(long long)kpx_jint(
							b, counters[k], 0),
						unit[k]);
		if (off < len)
			off += snprintf(buf + off, len - off, ")");
	}
}

static void policy_str(struct json_object *fe, char *buf, size_t len)
{
	const char *p = kpx_jstr(fe, "traffic_policy", NULL);
	size_t n = kpx_jget(fe, "backends") ?
			   json_object_array_length(kpx_jget(fe, "backends")) :
			   0;
	int off = 0;

	buf[0] = 0;
	struct json_object *sets = kpx_jget(fe, "origin_sets");

	if (p)
		off = snprintf(buf, len, "%s", p);
	/* nft shows each origin's endpoint set: an external frontend whose
	 * remote traffic gets the external set while this node's own gets
	 * the cluster one is eTP=Local's short-circuit. */
	else if (sets && strcmp(kpx_jstr(fe, "type", ""), "ClusterIP") &&
		 !strcmp(kpx_jstr(sets, "remote", ""), "external") &&
		 !strcmp(kpx_jstr(sets, "node", ""), "cluster"))
		off = snprintf(buf, len, "eTP=Local");
	/* externalTrafficPolicy concerns the external frontends (NodePort,
	 * ExternalIP, LoadBalancer), internalTrafficPolicy the ClusterIP. */
	else if (kpx_jbool(fe, "local_only") ||
		 (strcmp(kpx_jstr(fe, "type", ""), "ClusterIP") ?
			  kpx_jbool(fe, "etp_local") :
			  kpx_jbool(fe, "itp_local")))
		off = snprintf(buf, len, "%s",
			       strcmp(kpx_jstr(fe, "type", ""), "ClusterIP") ?
				       "eTP=Local" :
				       "iTP=Local");
	if (!n && kpx_jstr(fe, "empty_action", NULL))
		snprintf(buf + off, len - off, "%sempty:%s", off ? "," : "",
			 kpx_jstr(fe, "empty_action", ""));
}

static int print_table(const struct kpx_inspect_opts *o, struct json_object *fes)
{
	static const char *const hdr[] = { "FRONTEND", "TYPE",	   "SERVICE",
					   "BACKENDS", "AFFINITY", "POLICY" };
	bool wide = o->output && !strcmp(o->output, "wide");
	struct kpx_table *t = kpx_table_new(6, hdr);
	char fe_s[96], svc[400], be[65536], aff[32], pol[64];
	size_t i, n = json_object_array_length(fes);

	if (!t)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		struct json_object *fe = json_object_array_get_idx(fes, i);
		struct json_object *bs = kpx_jget(fe, "backends");
		int64_t at = kpx_jint(fe, "affinity_timeout", 0);
		const char *cells[6];

		if (!match_filter(o, fe))
			continue;
		fmt_frontend(fe, fe_s, sizeof(fe_s));
		if (wide && kpx_jstr(fe, "port_name", NULL) &&
		    *kpx_jstr(fe, "port_name", ""))
			snprintf(svc, sizeof(svc), "%s:%s",
				 kpx_jstr(fe, "service", "?"),
				 kpx_jstr(fe, "port_name", ""));
		else
			snprintf(svc, sizeof(svc), "%s",
				 kpx_jstr(fe, "service", "?"));
		if (wide)
			backends_wide(bs, be, sizeof(be));
		else
			backends_summary(bs, be, sizeof(be));
		/* Hours where exact keep the default view in 80 columns
		 * ("ClientIP/3h" for kube-proxy's default 10800s). */
		if (at > 0 && !wide && at % 3600 == 0)
			snprintf(aff, sizeof(aff), "ClientIP/%lldh",
				 (long long)at / 3600);
		else if (at > 0)
			snprintf(aff, sizeof(aff), "ClientIP/%llds",
				 (long long)at);
		else
			aff[0] = 0;
		policy_str(fe, pol, sizeof(pol));
		cells[0] = fe_s;
		cells[1] = kpx_jstr(fe, "type", "?");
		cells[2] = svc;
		cells[3] = be;
		cells[4] = aff;
		cells[5] = pol;
		kpx_table_add(t, cells);
	}
	if (!kpx_table_rows(t))
		printf("No frontends programmed%s.\n",
		       o->ns || o->name ? " matching the filter" : "");
	else
		kpx_table_print(t, stdout, wide ? 0 : 80);
	kpx_table_free(t);
	return 0;
}

/* ---- --verify ---- */

struct vrow {
	char key[96];	/* canonical addr:port/PROTO */
	char *backends; /* sorted canonical list, malloc'd */
	const char *service;
	/* Backend-specific consistency of the kernel side: a second entry
	 * of the frontend (bpf: the other scope) missing or with another
	 * set than the frontend's own. */
	const char *missing_scope;
	char *outside; /* malloc'd or NULL */
};

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_row(const void *a, const void *b)
{
	return strcmp(((const struct vrow *)a)->key,
		      ((const struct vrow *)b)->key);
}

static char *backend_set(struct json_object *bs)
{
	size_t n = bs ? json_object_array_length(bs) : 0, i, len = 1;
	char **v = calloc(n ? n : 1, sizeof(*v));
	char ep[KPX_ADDR_STRLEN + 16], *out;

	if (!v)
		return NULL;
	for (i = 0; i < n; i++) {
		struct json_object *b = json_object_array_get_idx(bs, i);

		fmt_ep(kpx_jstr(b, "address", ""), kpx_jint(b, "port", 0), ep,
		       sizeof(ep));
		v[i] = strdup(ep);
		len += strlen(ep) + 1;
	}
	qsort(v, n, sizeof(*v), cmp_str);
	out = malloc(len);
	if (out) {
		out[0] = 0;
		for (i = 0; i < n; i++) {
			if (!v[i])
				continue;
			/* The kernel may list a backend once per slot
			 * (maglev, weights): compare sets, not multisets. */
			if (i && v[i - 1] && !strcmp(v[i], v[i - 1]))
				continue;
			if (out[0])
				strcat(out, " ");
			strcat(out, v[i]);
		}
	}
	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
	return out;
}

static struct vrow *rows_of(const struct kpx_inspect_opts *o,
			    struct json_object *fes, size_t *nrows)
{
	size_t n = fes ? json_object_array_length(fes) : 0, i, k = 0;
	struct vrow *rows = calloc(n ? n : 1, sizeof(*rows));

	if (!rows)
		return NULL;
	for (i = 0; i < n; i++) {
		struct json_object *fe = json_object_array_get_idx(fes, i);

		if (!match_filter(o, fe))
			continue;
		fmt_frontend(fe, rows[k].key, sizeof(rows[k].key));
		rows[k].backends = backend_set(kpx_jget(fe, "backends"));
		rows[k].service = kpx_jstr(fe, "service", "?");
		rows[k].missing_scope = kpx_jstr(fe, "missing_scopes", NULL);
		if (kpx_jget(fe, "outside_backends"))
			rows[k].outside =
				backend_set(kpx_jget(fe, "outside_backends"));
		k++;
	}
	qsort(rows, k, sizeof(*rows), cmp_row);
	*nrows = k;
	return rows;
}

static int verify(const struct kpx_inspect_opts *o, struct json_object *kernel)
{
	struct json_object *reply = NULL, *exp;
	struct vrow *kr = NULL, *pr = NULL;
	size_t nk = 0, np = 0, i = 0, j = 0, diffs = 0;
	int ret;

	ret = kpx_status_request(o->cfg.state_socket, "expected", &reply);
	if (ret) {
		fprintf(stderr,
			"kpx: --verify needs the running agent's plan: %s: %s\n",
			o->cfg.state_socket, strerror(-ret));
		return 2;
	}
	exp = kpx_jget(reply, "frontends");
	if (!kpx_jbool(reply, "synced") || !exp ||
	    !json_object_is_type(exp, json_type_array)) {
		fprintf(stderr, "kpx: --verify: the agent has not programmed "
				"a plan yet\n");
		json_object_put(reply);
		return 2;
	}
	kr = rows_of(o, kernel, &nk);
	pr = rows_of(o, exp, &np);
	if (!kr || !pr) {
		ret = 2;
		goto out;
	}
	while (i < nk || j < np) {
		int c = i >= nk ? 1 : j >= np ? -1 : strcmp(kr[i].key, pr[j].key);

		if (c < 0) {
			printf("unexpected in kernel: %s (%s) -> [%s]\n",
			       kr[i].key, kr[i].service, kr[i].backends);
			i++;
			diffs++;
		} else if (c > 0) {
			printf("missing in kernel:    %s (%s) -> [%s]\n",
			       pr[j].key, pr[j].service, pr[j].backends);
			j++;
			diffs++;
		} else {
			if (kr[i].missing_scope) {
				printf("incomplete in kernel: %s (%s): no %s "
				       "entry\n",
				       kr[i].key, kr[i].service,
				       kr[i].missing_scope);
				diffs++;
			}
			if (kr[i].outside &&
			    strcmp(kr[i].outside, pr[j].backends ?
							  pr[j].backends :
							  "")) {
				printf("backends differ:      %s (%s), traffic "
				       "from outside\n  kernel: [%s]\n"
				       "  plan:   [%s]\n",
				       kr[i].key, pr[j].service, kr[i].outside,
				       pr[j].backends);
				diffs++;
			}
			if (strcmp(kr[i].backends ? kr[i].backends : "",
				   pr[j].backends ? pr[j].backends : "")) {
				printf("backends differ:      %s (%s)\n"
				       "  kernel: [%s]\n  plan:   [%s]\n",
				       kr[i].key, pr[j].service,
				       kr[i].backends, pr[j].backends);
				diffs++;
			}
			i++;
			j++;
		}
	}
	if (diffs)
		printf("%zu difference%s between the kernel and the agent's "
		       "plan\n",
		       diffs, diffs == 1 ? "" : "s");
	else
		printf("OK: %zu frontends in the kernel match the agent's plan\n",
		       nk);
	ret = diffs ? 1 : 0;
out:
	for (i = 0; kr && i < nk; i++) {
		free(kr[i].backends);
		free(kr[i].outside);
	}
	for (j = 0; pr && j < np; j++)
		free(pr[j].backends);
	free(kr);
	free(pr);
	json_object_put(reply);
	return ret;
}

int kpx_cmd_services(int argc, char **argv)
{
	struct kpx_inspect_opts o;
	struct json_object *fes = NULL, *reply = NULL, *out, *arr;
	const struct kpx_backend_ops *ops;
	const char *agent_backend = NULL;
	size_t i, n;
	int ret, rc = 0;

	ret = kpx_inspect_parse(argc, argv, true, services_usage, &o);
	if (ret)
		return ret > 0 ? 0 : 2;
	/* Only the backend's name comes from the agent; the frontends are
	 * read from the kernel. */
	if (o.cfg.backend == KPX_BACKEND_AUTO &&
	    !kpx_status_request(o.cfg.state_socket, "status", &reply))
		agent_backend =
			kpx_jstr(kpx_jget(reply, "agent"), "backend", NULL);
	ops = kpx_inspect_backend(&o.cfg, agent_backend);
	if (!ops || !ops->dump_frontends) {
		fprintf(stderr,
			"kpx: no programmed datapath found (no pinned maps "
			"under %s, no kpx nftables table); pass --backend\n",
			o.cfg.bpf_root);
		json_object_put(reply);
		return 1;
	}
	ret = ops->dump_frontends(&o.cfg, &fes);
	if (ret == -ENOENT) {
		fes = json_object_new_array();
	} else if (ret) {
		fprintf(stderr, "kpx: %s: reading frontends: %s\n", ops->name,
			strerror(-ret));
		json_object_put(reply);
		return 1;
	}
	if (!json_object_is_type(fes, json_type_array)) {
		fprintf(stderr, "kpx: %s: frontends dump is not an array\n",
			ops->name);
		rc = 1;
		goto out;
	}
	if (o.verify) {
		rc = verify(&o, fes);
	} else if (o.output && !strcmp(o.output, "json")) {
		out = json_object_new_object();
		arr = json_object_new_array();
		n = json_object_array_length(fes);
		for (i = 0; i < n; i++) {
			struct json_object *fe =
				json_object_array_get_idx(fes, i);

			if (match_filter(&o, fe))
				json_object_array_add(arr, json_object_get(fe));
		}
		json_object_object_add(out, "backend",
				       json_object_new_string(ops->name));
		json_object_object_add(out, "frontends", arr);
		printf("%s\n", json_object_to_json_string_ext(
				       out, JSON_C_TO_STRING_PRETTY |
						    JSON_C_TO_STRING_SPACED));
		json_object_put(out);
	} else {
		rc = print_table(&o, fes) ? 1 : 0;
	}
out:
	json_object_put(fes);
	json_object_put(reply);
	return rc;
}
