// SPDX-License-Identifier: Apache-2.0
/*
 * Times the plan alone (no kernel, no agent): loads a manifests directory
 * into a store, builds the full plan, then N one-endpoint changes (the
 * readiness of one endpoint of one service flips), each followed by an
 * incremental update (kpx_plan_update + commit) and, for comparison, a
 * full kpx_plan_build; checks that both agree on every svcport hash.
 * --reload re-reads the whole directory before each change, as the
 * manifests source does, so the update runs after that allocation churn.
 * Usage: kpx_plan_bench DIR [--changes N] [--node NAME] [--reload]
 * Prints one line per measure: "name min median max" in milliseconds.
 */
#include <errno.h>
#include <stdbool.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "k8s/manifests.h"
#include "k8s/objects.h"
#include "model/store.h"
#include "plan/plan.h"

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void report(const char *name, double *v, int n)
{
	qsort(v, n, sizeof(*v), cmp_d);
	printf("%s %.3f %.3f %.3f\n", name, v[0], v[n / 2], v[n - 1]);
}

/* The slice svc-00001-abcde of gen_manifests.py, endpoint 0 flipped. */
static struct kpx_endpoint_slice *flipped_slice(int k)
{
	char buf[2048], err[256];
	struct kpx_endpoint_slice *sl = NULL;
	struct json_object *o;
	size_t off;

	off = (size_t)snprintf(buf, sizeof(buf),
		"{\"apiVersion\":\"discovery.k8s.io/v1\",\"kind\":\"EndpointSlice\","
		"\"metadata\":{\"name\":\"svc-00001-abcde\",\"namespace\":\"ns-1\","
		"\"resourceVersion\":\"%d\",\"labels\":{\"kubernetes.io/service-name\":"
		"\"svc-00001\"}},\"addressType\":\"IPv4\",\"ports\":[{\"name\":\"http\","
		"\"port\":8080,\"protocol\":\"TCP\"}],\"endpoints\":[",
		10000000 + k);
	for (int e = 0; e < 10; e++)
		off += (size_t)snprintf(buf + off, sizeof(buf) - off,
			"%s{\"addresses\":[\"198.18.0.%d\"],\"conditions\":{\"ready\":%s},"
			"\"nodeName\":\"node-%d\"}",
			e ? "," : "", 10 + e, e == 0 && k % 2 ? "false" : "true", e);
	snprintf(buf + off, sizeof(buf) - off, "]}");
	o = json_tokener_parse(buf);
	if (!o || kpx_slice_decode(o, &sl, err, sizeof(err))) {
		fprintf(stderr, "slice: %s\n", err);
		sl = NULL;
	}
	json_object_put(o);
	return sl;
}

int main(int argc, char **argv)
{
	struct kpx_plan_input in = { 0 };
	struct kpx_store *st = NULL;
	struct kpx_plan *plan = NULL, *full = NULL;
	const char *dir = NULL, *node = "node-1";
	int n = 20, rc = 1;
	bool reload = false;
	double t, *inc, *fb, *rl;
	size_t errs = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--changes") && i + 1 < argc)
			n = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--reload"))
			reload = true;
		else if (!strcmp(argv[i], "--node") && i + 1 < argc)
			node = argv[++i];
		else
			dir = argv[i];
	}
	if (!dir || n < 1) {
		fprintf(stderr, "usage: kpx_plan_bench DIR [--changes N] [--node NAME] [--reload]\n");
		return 2;
	}
	inc = calloc(n, sizeof(*inc));
	fb = calloc(n, sizeof(*fb));
	rl = calloc(n, sizeof(*rl));
	snprintf(in.node_name, sizeof(in.node_name), "%s", node);
	kpx_addr_parse("198.18.0.11", &in.node_ips[0]);
	in.n_node_ips = 1;
	kpx_manifests_set_node(node);
	if (!inc || !fb || !rl || kpx_store_new(&st) ||
	    kpx_manifests_load(dir, st, &errs)) {
		fprintf(stderr, "loading %s failed\n", dir);
		goto out;
	}
	t = now_ms();
	if (kpx_plan_build(st, &in, &plan))
		goto out;
	printf("full_build_first %.3f\n", now_ms() - t);
	printf("svcports %zu endpoints %zu\n", plan->n_svcports, plan->n_endpoints);
	kpx_store_clear_dirty(st);
	for (int k = 0; k < n; k++) {
		struct kpx_plan_undo *undo = NULL;
		struct kpx_endpoint_slice *sl;

		if (reload) {
			/* Back to the files' state, then the flip. */
			kpx_manifests_load(dir, st, &errs);
			t = now_ms();
			if (kpx_plan_update(plan, st, &in, &undo))
				goto out;
			kpx_plan_commit(undo);
			rl[k] = now_ms() - t;
			undo = NULL;
			kpx_store_clear_dirty(st);
		}
		sl = flipped_slice(k + 1);
		if (!sl)
			goto out;
		kpx_store_upsert(st, KPX_KIND_SLICE, sl);
		t = now_ms();
		if (kpx_plan_update(plan, st, &in, &undo))
			goto out;
		kpx_plan_commit(undo);
		inc[k] = now_ms() - t;
		t = now_ms();
		if (kpx_plan_build(st, &in, &full))
			goto out;
		fb[k] = now_ms() - t;
		if (full->n_svcports != plan->n_svcports) {
			fprintf(stderr, "incremental != full (count)\n");
			goto out;
		}
		for (size_t i = 0; i < full->n_svcports; i++)
			if (full->svcports[i].hash != plan->svcports[i].hash) {
				fprintf(stderr, "incremental != full at %s\n",
					full->svcports[i].id);
				goto out;
			}
		kpx_plan_free(full);
		full = NULL;
		kpx_store_clear_dirty(st);
	}
	report("incremental_update", inc, n);
	report("full_build", fb, n);
	if (reload)
		report("update_after_reload", rl, n);
	rc = 0;
out:
	kpx_plan_free(full);
	kpx_plan_free(plan);
	kpx_store_free(st);
	free(inc);
	free(fb);
	free(rl);
	return rc;
}
