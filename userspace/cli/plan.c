// SPDX-License-Identifier: Apache-2.0
/*
 * `kpx plan --manifests DIR [kpx run flags] [-o json]`: loads a directory
 * of Service/EndpointSlice manifests and prints the plan this node would
 * program, without touching the kernel. A dry run for a cluster snapshot,
 * and the end-to-end test of the model and plan.
 */
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/config.h"
#include "cli/cli.h"
#include "common/log.h"
#include "k8s/manifests.h"
#include "model/store.h"
#include "plan/plan.h"

static void plan_usage(FILE *f)
{
	fprintf(f,
		"Usage: kpx plan --manifests DIR [flags] [-o json]\n"
		"\n"
		"Prints the desired per-node state (frontends, endpoint sets after\n"
		"traffic policy, topology and terminating fallback) computed from the\n"
		"Service and EndpointSlice objects in DIR, and this node's own Node\n"
		"object when DIR has one. Touches nothing.\n"
		"\n"
		"  --manifests DIR            *.yaml, *.yml, *.json objects (required)\n"
		"  -o, --output table|json    output format (default: table)\n"
		"  --node-zone ZONE           this node's topology.kubernetes.io/zone\n"
		"                             (default: that label of the Node in DIR\n"
		"                             named --hostname-override or the host\n"
		"                             name; topology hints are used only when\n"
		"                             the node has a zone)\n"
		"  --local-addresses IP[,IP]  this node's device addresses, matched\n"
		"                             against --nodeport-addresses (default:\n"
		"                             the addresses of this network namespace)\n"
		"\n"
		"Every `kpx run` flag is accepted, e.g. --hostname-override NAME,\n"
		"--node-ip IP[,IP6], --nodeport-addresses CIDRs|primary,\n"
		"--cluster-cidr CIDR. See `kpx run --help`.\n"
		"\n"
		"Exit status: 0 on success (bad objects are reported on stderr and\n"
		"skipped), 1 when DIR cannot be read, 2 on bad usage.\n");
}

static double mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

struct plan_opts {
	bool json;
	const char *zone;
	const char *local_addrs;
};

/* Takes the plan-only flags out of argv; the rest go to the run parser. */
static int strip_plan_flags(int *argc, char **argv, struct plan_opts *o)
{
	int out = 1;

	for (int i = 1; i < *argc; i++) {
		const char *a = argv[i], *val = NULL;
		const char **dst = NULL;

		if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
			/* value in the next argument */
		} else if (!strncmp(a, "-o", 2) && a[2] != '-') {
			val = a[2] == '=' ? a + 3 : a + 2;
		} else if (!strncmp(a, "--output=", 9)) {
			val = a + 9;
		} else if (!strcmp(a, "--node-zone") ||
			   !strcmp(a, "--local-addresses")) {
			dst = a[2] == 'n' ? &o->zone : &o->local_addrs;
		} else if (!strncmp(a, "--node-zone=", 12)) {
			o->zone = a + 12;
			continue;
		} else if (!strncmp(a, "--local-addresses=", 18)) {
			o->local_addrs = a + 18;
			continue;
		} else {
			argv[out++] = argv[i];
			continue;
		}
		if (!val) {
			if (i + 1 >= *argc) {
				fprintf(stderr, "kpx plan: %s needs a value\n", a);
				return -EINVAL;
			}
			val = argv[++i];
		}
		if (dst) {
			*dst = val;
		} else if (!strcmp(val, "json")) {
			o->json = true;
		} else if (!strcmp(val, "table") || !strcmp(val, "wide")) {
			o->json = false;
		} else {
			fprintf(stderr, "kpx plan: unknown output format '%s'\n",
				val);
			return -EINVAL;
		}
	}
	argv[out] = NULL;
	*argc = out;
	return 0;
}

static int set_local_addrs(struct kpx_plan_input *in, const char *list)
{
	char buf[1024], *save = NULL, *tok;
	const size_t max = sizeof(in->local_addrs) / sizeof(in->local_addrs[0]);

	in->n_local_addrs = 0;
	snprintf(buf, sizeof(buf), "%s", list);
	for (tok = strtok_r(buf, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		if (in->n_local_addrs == max) {
			fprintf(stderr, "kpx plan: --local-addresses: more than %zu\n",
				max);
			return -EINVAL;
		}
		if (kpx_addr_parse(tok, &in->local_addrs[in->n_local_addrs])) {
			fprintf(stderr,
				"kpx plan: --local-addresses: bad address '%s'\n",
				tok);
			return -EINVAL;
		}
		in->n_local_addrs++;
	}
	return 0;
}

/*
 * Parses `kpx plan`-style arguments (argv[0] is the subcommand; -o is
 * taken into o) and builds the plan from --manifests. Returns 0, 1 when
 * the arguments asked for help (printed), or the exit code on error.
 */
static int plan_load(int argc, char **argv, const char *who,
		     struct plan_opts *o, struct kpx_plan **out)
{
	struct kpx_config *cfg = NULL;
	struct kpx_store *store = NULL;
	struct kpx_plan_input in;
	char **args = NULL;
	size_t n_errors = 0;
	int ret = 2, r;
	double t0, t1, t2;

	*out = NULL;
	/* getopt permutes argv; work on a copy. */
	args = calloc(argc + 1, sizeof(*args));
	cfg = calloc(1, sizeof(*cfg)); /* PATH_MAX fields: not for the stack */
	if (!args || !cfg) {
		fprintf(stderr, "kpx %s: out of memory\n", who);
		ret = 1;
		goto out;
	}
	memcpy(args, argv, argc * sizeof(*args));
	if (strip_plan_flags(&argc, args, o))
		goto out;
	kpx_config_defaults(cfg);
	r = kpx_config_parse_run(cfg, argc, args);
	if (r == 1) {
		ret = -1;
		goto out;
	}
	if (r)
		goto out;
	kpx_log_verbosity = cfg->verbosity;
	if (!cfg->manifests[0]) {
		fprintf(stderr, "kpx %s: --manifests DIR is required\n", who);
		goto out;
	}
	r = kpx_plan_input_from_config(cfg, NULL, &in);
	if (r) {
		fprintf(stderr, "kpx %s: node inputs: %s\n", who, strerror(-r));
		ret = 1;
		goto out;
	}
	if (o->zone)
		snprintf(in.node_zone, sizeof(in.node_zone), "%s", o->zone);
	if (o->local_addrs && set_local_addrs(&in, o->local_addrs))
		goto out;

	ret = 1;
	if (kpx_store_new(&store)) {
		fprintf(stderr, "kpx %s: out of memory\n", who);
		goto out;
	}
	t0 = mono_ms();
	kpx_manifests_set_node(cfg->hostname);
	r = kpx_manifests_load(cfg->manifests, store, &n_errors);
	if (r) {
		fprintf(stderr, "kpx %s: cannot read %s: %s\n", who,
			cfg->manifests, strerror(-r));
		goto out;
	}
	if (n_errors)
		fprintf(stderr, "kpx %s: %zu object(s) skipped (see above)\n",
			who, n_errors);
	t1 = mono_ms();
	/* The own Node in DIR gives the zone unless --node-zone said it. */
	if (!o->zone && kpx_store_node(store))
		snprintf(in.node_zone, sizeof(in.node_zone), "%s",
			 kpx_store_node(store)->zone);
	r = kpx_plan_build(store, &in, out);
	if (r) {
		fprintf(stderr, "kpx %s: %s\n", who, strerror(-r));
		goto out;
	}
	t2 = mono_ms();
	/* perf/plan_bench.sh reads this line. */
	kpx_dbg(1, "plan: load %.1f ms, build %.1f ms; "
		   "%zu svcports, %zu frontends, %zu endpoints",
		t1 - t0, t2 - t1, (*out)->n_svcports, (*out)->n_frontends,
		(*out)->n_endpoints);
	ret = 0;
out:
	kpx_store_free(store);
	free(cfg);
	free(args);
	return ret;
}

int kpx_cli_plan_json(int argc, char **argv, const char *who,
		      struct json_object **out)
{
	struct plan_opts o = { 0 };
	struct kpx_plan *plan;
	int ret;

	*out = NULL;
	ret = plan_load(argc, argv, who, &o, &plan);
	if (ret)
		return ret < 0 ? 0 : ret;
	*out = kpx_plan_to_json(plan);
	kpx_plan_free(plan);
	return *out ? 0 : 1;
}

int kpx_cmd_plan(int argc, char **argv)
{
	struct plan_opts o = { 0 };
	struct kpx_plan *plan = NULL;
	double t0;
	int ret;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			plan_usage(stdout);
			return 0;
		}
	}
	ret = plan_load(argc, argv, "plan", &o, &plan);
	if (ret == 2 && !plan)
		plan_usage(stderr);
	if (ret)
		return ret < 0 ? 0 : ret;
	t0 = mono_ms();
	if (o.json) {
		struct json_object *j = kpx_plan_to_json(plan);

		if (!j) {
			fprintf(stderr, "kpx plan: out of memory\n");
			kpx_plan_free(plan);
			return 1;
		}
		fputs(json_object_to_json_string_ext(j, JSON_C_TO_STRING_PRETTY |
							JSON_C_TO_STRING_SPACED |
							JSON_C_TO_STRING_NOSLASHESCAPE),
		      stdout);
		fputc('\n', stdout);
		json_object_put(j);
	} else {
		kpx_plan_print(plan, stdout);
	}
	ret = fflush(stdout) ? 1 : 0;
	kpx_dbg(1, "plan: output %.1f ms", mono_ms() - t0);
	kpx_plan_free(plan);
	return ret;
}
