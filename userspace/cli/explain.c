// SPDX-License-Identifier: Apache-2.0
/*
 * `kpx explain --src IP --dst IP --port N [--proto P] [--from ORIGIN]`:
 * what kpx does with one packet arriving at this node, and why: the
 * frontend it hits, the traffic origin, the endpoint set that origin
 * gets, the verdict when that set is empty, source ranges, masquerade and
 * affinity. It reads the plan document (`kpx plan -o json`), from the
 * running agent or computed from --manifests, so it explains exactly what
 * both backends are told to program; with an agent it also checks that
 * the frontend is in the kernel.
 * Owns: nothing. Must not: decide anything the plan did not.
 */
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/config.h"
#include "agent/serve.h"
#include "cli/cli.h"
#include "common/addr.h"

struct explain_opts {
	const char *src, *dst, *proto, *from, *state_socket;
	long port;
	bool json, manifests;
};

static void explain_usage(FILE *f)
{
	fprintf(f,
		"Usage: kpx explain --src IP --dst IP --port N [--proto tcp|udp|sctp]\n"
		"                   [--from pod|node|remote] [-o json]\n"
		"                   [--manifests DIR [kpx run flags] | --state-socket PATH]\n"
		"\n"
		"Explains what kpx does with a packet from --src to --dst:--port that\n"
		"arrives at this node: the Service frontend it hits, where it comes\n"
		"from (a pod on this node, the node itself, or another node/outside:\n"
		"from --src, or --from), the endpoints it may reach, what happens\n"
		"when there are none, source ranges, source NAT and affinity. Reads\n"
		"the running agent's plan (and checks the kernel), or computes the\n"
		"plan from --manifests without touching anything.\n"
		"\n"
		"Exit status: 0 explained (also \"no Service here\"), 1 no plan\n"
		"could be had, 2 bad usage.\n");
}

/* Takes explain's own flags out of argv; the rest is for `kpx plan`. */
static int strip_explain_flags(int *argc, char **argv, struct explain_opts *o)
{
	static const char *const names[] = { "--src", "--dst", "--port",
					     "--proto", "--from", "-o",
					     "--output", "--state-socket" };
	int out = 1;

	for (int i = 1; i < *argc; i++) {
		const char *a = argv[i], *val = NULL;
		size_t k, n = sizeof(names) / sizeof(names[0]);

		for (k = 0; k < n; k++) {
			size_t l = strlen(names[k]);

			if (!strcmp(a, names[k])) {
				if (i + 1 >= *argc) {
					fprintf(stderr, "kpx explain: %s needs a value\n", a);
					return -EINVAL;
				}
				val = argv[++i];
				break;
			}
			if (!strncmp(a, names[k], l) && a[l] == '=') {
				val = a + l + 1;
				break;
			}
		}
		if (k == n) {
			if (!strcmp(a, "--manifests") || !strncmp(a, "--manifests=", 12))
				o->manifests = true;
			argv[out++] = argv[i];
			continue;
		}
		switch (k) {
		case 0: o->src = val; break;
		case 1: o->dst = val; break;
		case 2: {
			char *end;

			o->port = strtol(val, &end, 10);
			if (*end || o->port < 1 || o->port > 65535) {
				fprintf(stderr, "kpx explain: bad --port '%s'\n", val);
				return -EINVAL;
			}
			break;
		}
		case 3: o->proto = val; break;
		case 4: o->from = val; break;
		case 5:
		case 6:
			if (strcmp(val, "json") && strcmp(val, "table")) {
				fprintf(stderr, "kpx explain: unknown output format '%s'\n", val);
				return -EINVAL;
			}
			o->json = !strcmp(val, "json");
			break;
		default: o->state_socket = val; break;
		}
	}
	argv[out] = NULL;
	*argc = out;
	return 0;
}

static const char *jstr(struct json_object *o, const char *k)
{
	struct json_object *v;

	return json_object_object_get_ex(o, k, &v) ? json_object_get_string(v) : "";
}

static int64_t jint(struct json_object *o, const char *k)
{
	struct json_object *v;

	return json_object_object_get_ex(o, k, &v) ? json_object_get_int64(v) : 0;
}

static bool jbool(struct json_object *o, const char *k)
{
	struct json_object *v;

	return json_object_object_get_ex(o, k, &v) && json_object_get_boolean(v);
}

static struct json_object *jarr(struct json_object *o, const char *k)
{
	struct json_object *v;

	if (json_object_object_get_ex(o, k, &v) &&
	    json_object_is_type(v, json_type_array))
		return v;
	return NULL;
}

static bool addr_is(const char *s, const struct kpx_addr *a)
{
	struct kpx_addr b;

	return !kpx_addr_parse(s, &b) && kpx_addr_eq(&b, a);
}

static bool in_addr_list(struct json_object *arr, const struct kpx_addr *a)
{
	for (size_t i = 0; arr && i < json_object_array_length(arr); i++)
		if (addr_is(json_object_get_string(json_object_array_get_idx(arr, i)), a))
			return true;
	return false;
}

static bool in_cidr_list(struct json_object *arr, const struct kpx_addr *a)
{
	for (size_t i = 0; arr && i < json_object_array_length(arr); i++) {
		struct kpx_cidr c;

		if (!kpx_cidr_parse(json_object_get_string(json_object_array_get_idx(arr, i)), &c) &&
		    kpx_cidr_contains(&c, a))
			return true;
	}
	return false;
}

/* The svcport and frontend the packet hits; false when none. */
static bool find_frontend(struct json_object *plan, const struct kpx_addr *dst,
			  long port, const char *proto, struct json_object **sp,
			  struct json_object **fe)
{
	struct json_object *sps = jarr(plan, "svcports");

	for (size_t i = 0; sps && i < json_object_array_length(sps); i++) {
		struct json_object *s = json_object_array_get_idx(sps, i);
		struct json_object *fes = jarr(s, "frontends");

		if (strcasecmp(jstr(s, "protocol"), proto))
			continue;
		for (size_t j = 0; fes && j < json_object_array_length(fes); j++) {
			struct json_object *f = json_object_array_get_idx(fes, j);

			if (jint(f, "port") == port && addr_is(jstr(f, "address"), dst)) {
				*sp = s;
				*fe = f;
				return true;
			}
		}
	}
	return false;
}

/* A refused externalIP/LB IP the packet aims at, for the explanation. */
static struct json_object *find_refused(struct json_object *plan,
					const struct kpx_addr *dst, long port,
					const char *proto, struct json_object **sp)
{
	struct json_object *sps = jarr(plan, "svcports");

	for (size_t i = 0; sps && i < json_object_array_length(sps); i++) {
		struct json_object *s = json_object_array_get_idx(sps, i);
		struct json_object *rs = jarr(s, "refused");

		if (strcasecmp(jstr(s, "protocol"), proto) || jint(s, "port") != port)
			continue;
		for (size_t j = 0; rs && j < json_object_array_length(rs); j++) {
			struct json_object *r = json_object_array_get_idx(rs, j);

			if (addr_is(jstr(r, "address"), dst)) {
				*sp = s;
				return r;
			}
		}
	}
	return NULL;
}

/* The kernel's entry for the frontend, from `kpx services` data. */
static struct json_object *find_programmed(struct json_object *fes,
					   const struct kpx_addr *dst, long port,
					   const char *proto)
{
	for (size_t i = 0; fes && i < json_object_array_length(fes); i++) {
		struct json_object *f = json_object_array_get_idx(fes, i);

		if (jint(f, "port") == port && !strcasecmp(jstr(f, "protocol"), proto) &&
		    addr_is(jstr(f, "address"), dst))
			return f;
	}
	return NULL;
}

static void add(struct json_object *o, const char *k, struct json_object *v)
{
	json_object_object_add(o, k, v);
}

/* Builds the explanation; every field is read from the plan. */
static struct json_object *explain(struct json_object *plan,
				   struct json_object *kernel,
				   const struct explain_opts *o,
				   const struct kpx_addr *src,
				   const struct kpx_addr *dst)
{
	struct json_object *ex = json_object_new_object(), *sp = NULL, *fe = NULL;
	struct json_object *in = json_object_object_get(plan, "input");
	struct json_object *row, *set, *r, *deg;
	const char *origin = o->from, *why, *masq, *setname;
	bool from_pod_cidr = in_cidr_list(jarr(in, "cluster_cidrs"), src);
	bool snat;

	add(ex, "node", json_object_new_string(jstr(plan, "node")));
	if (!find_frontend(plan, dst, o->port, o->proto, &sp, &fe)) {
		r = find_refused(plan, dst, o->port, o->proto, &sp);
		add(ex, "frontend", NULL);
		if (r) {
			char b[512];

			snprintf(b, sizeof(b), "%s %s of %s/%s is not served: %s%s%s",
				 jstr(r, "kind"), jstr(r, "address"),
				 jstr(sp, "namespace"), jstr(sp, "name"),
				 jstr(r, "reason"), *jstr(r, "owner") ? " of " : "",
				 jstr(r, "owner"));
			add(ex, "verdict", json_object_new_string(b));
		} else {
			add(ex, "verdict",
			    json_object_new_string("no Service frontend: kpx leaves the packet alone"));
		}
		return ex;
	}
	{
		struct json_object *f = json_object_new_object();

		add(f, "svcport", json_object_new_string(jstr(sp, "id")));
		add(f, "kind", json_object_new_string(jstr(fe, "kind")));
		add(f, "type", json_object_new_string(jstr(sp, "type")));
		add(ex, "frontend", f);
	}
	if (origin) {
		why = "given by --from";
	} else if (in_addr_list(jarr(in, "node_ips"), src) ||
		   in_addr_list(jarr(in, "local_addresses"), src)) {
		origin = "node";
		why = "the source is this node's address";
	} else if (from_pod_cidr) {
		origin = "pod";
		why = "the source is inside --cluster-cidr (a pod on another node arrives as --from remote)";
	} else {
		origin = "remote";
		why = "the source is neither this node nor inside --cluster-cidr";
	}
	add(ex, "origin", json_object_new_string(origin));
	add(ex, "origin_reason", json_object_new_string(why));
	row = json_object_object_get(json_object_object_get(fe, "rows"), origin);
	if (!row) {
		add(ex, "verdict", json_object_new_string("the plan has no row for this origin"));
		return ex;
	}
	setname = jstr(row, "set");
	set = jarr(sp, setname);
	add(ex, "set", json_object_new_string(setname));
	add(ex, "endpoints", json_object_get(set ? set : json_object_new_array()));
	deg = jarr(row, "degraded");
	add(ex, "degraded", json_object_get(deg ? deg : json_object_new_array()));
	if (jbool(row, "source_ranges") &&
	    !in_cidr_list(jarr(sp, "source_ranges"), src)) {
		add(ex, "verdict", json_object_new_string(
			"dropped: the source is outside loadBalancerSourceRanges"));
		return ex;
	}
	if (!set || !json_object_array_length(set)) {
		add(ex, "verdict", json_object_new_string(
			!strcmp(jstr(row, "empty"), "drop")
				? "dropped: no endpoint for this traffic (a Local policy left none on this node)"
				: "refused at once: no endpoint (TCP RST / ICMP port unreachable)"));
		return ex;
	}
	masq = jstr(row, "masquerade");
	snat = !strcmp(masq, "always") ||
	       (!strcmp(masq, "off-cluster") && !from_pod_cidr);
	add(ex, "masquerade", json_object_new_string(masq));
	add(ex, "source_nat", json_object_new_boolean(snat));
	if (jint(sp, "affinity_timeout"))
		add(ex, "affinity_timeout", json_object_new_int64(jint(sp, "affinity_timeout")));
	add(ex, "verdict", json_object_new_string(
		snat ? "DNAT to one endpoint of the set; the source becomes the node's address"
		     : "DNAT to one endpoint of the set; the source address is kept"));
	if (kernel) {
		struct json_object *k = find_programmed(kernel, dst, o->port, o->proto);
		struct json_object *bs = k ? jarr(k, "backends") : NULL;

		add(ex, "programmed", json_object_new_boolean(k != NULL));
		if (k)
			add(ex, "programmed_backends",
			    json_object_new_int64(bs ? (int64_t)json_object_array_length(bs) : 0));
	}
	return ex;
}

static void print_text(struct json_object *ex, const struct explain_opts *o)
{
	struct json_object *fe = json_object_object_get(ex, "frontend"), *v;

	printf("packet     %s %s -> %s:%ld at node %s\n", o->proto, o->src, o->dst,
	       o->port, jstr(ex, "node"));
	if (fe) {
		printf("frontend   %s %s (%s)\n", jstr(fe, "kind"), jstr(fe, "svcport"),
		       jstr(fe, "type"));
		printf("origin     %s: %s\n", jstr(ex, "origin"), jstr(ex, "origin_reason"));
		if (json_object_object_get_ex(ex, "set", &v)) {
			struct json_object *eps = jarr(ex, "endpoints");

			printf("endpoints  %s set:", json_object_get_string(v));
			for (size_t i = 0; eps && i < json_object_array_length(eps); i++)
				printf(" %s", json_object_get_string(json_object_array_get_idx(eps, i)));
			printf("%s\n", eps && json_object_array_length(eps) ? "" : " (none)");
		}
		if (json_object_object_get_ex(ex, "masquerade", &v))
			printf("source NAT %s (masquerade: %s)\n",
			       jbool(ex, "source_nat") ? "yes" : "no",
			       json_object_get_string(v));
		if (jint(ex, "affinity_timeout"))
			printf("affinity   ClientIP, %llds\n",
			       (long long)jint(ex, "affinity_timeout"));
		v = jarr(ex, "degraded");
		if (v && json_object_array_length(v))
			printf("degraded   %s (the backend cannot do what kube-proxy does; see README)\n",
			       json_object_to_json_string(v));
		if (json_object_object_get_ex(ex, "programmed", &v))
			printf("kernel     %s\n", json_object_get_boolean(v)
						  ? "programmed" : "NOT programmed");
	}
	printf("verdict    %s\n", jstr(ex, "verdict"));
}

int kpx_cmd_explain(int argc, char **argv)
{
	struct json_object *plan_doc = NULL, *plan, *kernel_doc = NULL, *kernel = NULL;
	struct explain_opts o = { .proto = "tcp" };
	struct kpx_addr src, dst;
	char path[512];
	char **args;
	int ret = 2, r;

	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			explain_usage(stdout);
			return 0;
		}
	if (!(args = calloc(argc + 1, sizeof(*args))))
		return 1;
	memcpy(args, argv, argc * sizeof(*args));
	if (strip_explain_flags(&argc, args, &o))
		goto out;
	if (!o.src || !o.dst || !o.port || kpx_addr_parse(o.src, &src) ||
	    kpx_addr_parse(o.dst, &dst)) {
		fprintf(stderr, "kpx explain: --src IP, --dst IP and --port N are required\n\n");
		explain_usage(stderr);
		goto out;
	}
	if (strcasecmp(o.proto, "tcp") && strcasecmp(o.proto, "udp") &&
	    strcasecmp(o.proto, "sctp")) {
		fprintf(stderr, "kpx explain: bad --proto '%s'\n", o.proto);
		goto out;
	}
	if (o.from && strcmp(o.from, "pod") && strcmp(o.from, "node") &&
	    strcmp(o.from, "remote")) {
		fprintf(stderr, "kpx explain: --from pod|node|remote\n");
		goto out;
	}
	ret = 1;
	if (o.manifests) {
		r = kpx_cli_plan_json(argc, args, "explain", &plan_doc);
		if (r || !plan_doc) {
			ret = r ? r : 0;
			goto out;
		}
		plan = plan_doc;
	} else {
		snprintf(path, sizeof(path), "%s",
			 o.state_socket ? o.state_socket : KPX_STATE_SOCKET_DEFAULT);
		kpx_state_socket_resolve(path, sizeof(path));
		r = kpx_status_request(path, "plan", &plan_doc);
		plan = plan_doc ? json_object_object_get(plan_doc, "plan") : NULL;
		if (r || !plan) {
			fprintf(stderr, "kpx explain: no plan from an agent at %s (%s); "
					"use --manifests DIR to compute one\n",
				path, r ? strerror(-r) : "not synced yet");
			goto out;
		}
		if (!kpx_status_request(path, "services", &kernel_doc))
			kernel = jarr(kernel_doc, "frontends");
	}
	{
		struct json_object *ex = explain(plan, kernel, &o, &src, &dst);

		if (o.json)
			printf("%s\n", json_object_to_json_string_ext(
					       ex, JSON_C_TO_STRING_PRETTY |
							   JSON_C_TO_STRING_NOSLASHESCAPE));
		else
			print_text(ex, &o);
		json_object_put(ex);
	}
	ret = fflush(stdout) ? 1 : 0;
out:
	json_object_put(plan_doc);
	json_object_put(kernel_doc);
	free(args);
	return ret;
}
