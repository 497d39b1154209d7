// SPDX-License-Identifier: Apache-2.0
/* The object store and its change tracker, as the sync loop sees them. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "k8s/objects.h"
#include "model/store.h"
#include "obj_builders.h"

static struct kpx_store *st;

static void setup(void)
{
	cr_assert_eq(kpx_store_new(&st), 0);
}

static void teardown(void)
{
	kpx_store_free(st);
	st = NULL;
}

TestSuite(store, .init = setup, .fini = teardown);

static struct kpx_service *svc_rv(const char *ns, const char *name,
				  const char *rv)
{
	struct kpx_service *s = b_svc(ns, name, KPX_SVC_CLUSTER_IP, "198.18.0.1");

	snprintf(s->resource_version, sizeof(s->resource_version), "%s", rv);
	return s;
}

static struct kpx_endpoint_slice *slice_rv(const char *ns, const char *name,
					   const char *svc, const char *rv)
{
	struct kpx_endpoint_slice *sl = b_slice(ns, name, svc, AF_INET);

	snprintf(sl->resource_version, sizeof(sl->resource_version), "%s", rv);
	return sl;
}

struct names {
	char v[64][600];
	size_t n;
};

static void collect_svc(const struct kpx_service *svc, void *arg)
{
	struct names *n = arg;

	snprintf(n->v[n->n++], sizeof(n->v[0]), "%s/%s", svc->ns, svc->name);
}

static void collect_slice(const struct kpx_endpoint_slice *sl, void *arg)
{
	struct names *n = arg;

	snprintf(n->v[n->n++], sizeof(n->v[0]), "%s", sl->name);
}

static void collect_dirty(const char *ns, const char *name, void *arg)
{
	struct names *n = arg;

	snprintf(n->v[n->n++], sizeof(n->v[0]), "%s/%s", ns, name);
}

Test(store, services_iterate_in_namespace_name_order)
{
	struct names n = { 0 };

	kpx_store_upsert(st, KPX_KIND_SERVICE, svc_rv("b", "a", "1"));
	kpx_store_upsert(st, KPX_KIND_SERVICE, svc_rv("a", "z", "1"));
	kpx_store_upsert(st, KPX_KIND_SERVICE, svc_rv("a", "b", "1"));
	kpx_store_for_each_service(st, collect_svc, &n);
	cr_assert_eq(n.n, 3);
	cr_assert_str_eq(n.v[0], "a/b");
	cr_assert_str_eq(n.v[1], "a/z");
	cr_assert_str_eq(n.v[2], "b/a");
	cr_assert_not_null(kpx_store_service(st, "a", "z"));
	cr_assert_null(kpx_store_service(st, "a", "y"));
}

Test(store, same_resource_version_is_not_a_change)
{
	struct kpx_store_stats stats;

	kpx_store_upsert(st, KPX_KIND_SERVICE, svc_rv("ns", "web", "7"));
	kpx_store_clear_dirty(st);
	kpx_store_upsert(st, KPX_KIND_SERVICE, svc_rv("ns", "web", "7"));
	cr_assert_not(kpx_store_dirty(st));
	kpx_store_get_stats(st, &stats);
	cr_assert_eq(stats.service_changes_total, 1);
	cr_assert_eq(stats.service_changes_pending, 0);
	cr_assert_eq(stats.last_queued_wall, 0);

	kpx_store_upsert(st, KPX_KIND_SERVICE, svc_rv("ns", "web", "8"));
	cr_assert(kpx_store_dirty(st));
	kpx_store_get_stats(st, &stats);
	cr_assert_eq(stats.service_changes_total, 2);
	cr_assert_eq(stats.service_changes_pending, 1);
	cr_assert_gt(stats.last_queued_wall, 1e9);
	cr_assert_str_eq(kpx_store_service(st, "ns", "web")->resource_version,
			 "8");
}

Test(store, empty_resource_version_is_always_a_change)
{
	kpx_store_upsert(st, KPX_KIND_SERVICE, svc_rv("ns", "web", ""));
	kpx_store_clear_dirty(st);
	kpx_store_upsert(st, KPX_KIND_SERVICE, svc_rv("ns", "web", ""));
	cr_assert(kpx_store_dirty(st));
}

Test(store, slice_change_dirties_its_service)
{
	struct names d = { 0 }, sl = { 0 };
	struct kpx_store_stats stats;

	kpx_store_upsert(st, KPX_KIND_SERVICE, svc_rv("ns", "web", "1"));
	kpx_store_clear_dirty(st);
	kpx_store_upsert(st, KPX_KIND_SLICE, slice_rv("ns", "web-b", "web", "1"));
	kpx_store_upsert(st, KPX_KIND_SLICE, slice_rv("ns", "web-a", "web", "1"));
	kpx_store_upsert(st, KPX_KIND_SLICE, slice_rv("other", "web-c", "web", "1"));
	kpx_store_for_each_dirty(st, collect_dirty, &d);
	cr_assert_eq(d.n, 2);
	cr_assert_str_eq(d.v[0], "ns/web");
	cr_assert_str_eq(d.v[1], "other/web");
	kpx_store_get_stats(st, &stats);
	cr_assert_eq(stats.endpoint_changes_total, 3);
	cr_assert_eq(stats.endpoint_changes_pending, 3);
	cr_assert_eq(stats.service_changes_pending, 0);
	cr_assert_eq(stats.n_slices, 3);

	kpx_store_for_each_slice_of(st, "ns", "web", collect_slice, &sl);
	cr_assert_eq(sl.n, 2);
	cr_assert_str_eq(sl.v[0], "web-a");
	cr_assert_str_eq(sl.v[1], "web-b");
}

Test(store, relabelled_slice_moves_and_dirties_both_services)
{
	struct names d = { 0 }, a = { 0 }, b = { 0 };

	kpx_store_upsert(st, KPX_KIND_SLICE, slice_rv("ns", "s1", "old", "1"));
	kpx_store_clear_dirty(st);
	kpx_store_upsert(st, KPX_KIND_SLICE, slice_rv("ns", "s1", "new", "2"));
	kpx_store_for_each_dirty(st, collect_dirty, &d);
	cr_assert_eq(d.n, 2);
	cr_assert_str_eq(d.v[0], "ns/new");
	cr_assert_str_eq(d.v[1], "ns/old");
	kpx_store_for_each_slice_of(st, "ns", "old", collect_slice, &a);
	kpx_store_for_each_slice_of(st, "ns", "new", collect_slice, &b);
	cr_assert_eq(a.n, 0);
	cr_assert_eq(b.n, 1);
}

Test(store, delete_removes_and_dirties)
{
	struct names sl = { 0 };
	struct kpx_store_stats stats;

	kpx_store_upsert(st, KPX_KIND_SERVICE, svc_rv("ns", "web", "1"));
	kpx_store_upsert(st, KPX_KIND_SLICE, slice_rv("ns", "web-a", "web", "1"));
	kpx_store_clear_dirty(st);
	kpx_store_delete(st, KPX_KIND_SLICE, "ns", "web-a");
	cr_assert(kpx_store_dirty(st));
	kpx_store_for_each_slice_of(st, "ns", "web", collect_slice, &sl);
	cr_assert_eq(sl.n, 0);
	kpx_store_delete(st, KPX_KIND_SERVICE, "ns", "web");
	cr_assert_null(kpx_store_service(st, "ns", "web"));
	kpx_store_get_stats(st, &stats);
	cr_assert_eq(stats.n_services, 0);
	cr_assert_eq(stats.n_slices, 0);
	cr_assert_eq(stats.service_changes_pending, 1);
	cr_assert_eq(stats.endpoint_changes_pending, 1);

	/* Deleting what is absent changes nothing. */
	kpx_store_clear_dirty(st);
	kpx_store_delete(st, KPX_KIND_SERVICE, "ns", "web");
	cr_assert_not(kpx_store_dirty(st));
}

Test(store, replace_deletes_unseen_objects_and_marks_synced)
{
	struct names n = { 0 }, d = { 0 };

	cr_assert_not(kpx_store_kind_synced(st, KPX_KIND_SERVICE));
	kpx_store_upsert(st, KPX_KIND_SERVICE, svc_rv("ns", "keep", "1"));
	kpx_store_upsert(st, KPX_KIND_SERVICE, svc_rv("ns", "gone", "1"));
	kpx_store_upsert(st, KPX_KIND_SLICE, slice_rv("ns", "gone-1", "gone", "1"));
	kpx_store_clear_dirty(st);

	kpx_store_replace_begin(st, KPX_KIND_SERVICE);
	kpx_store_upsert(st, KPX_KIND_SERVICE, svc_rv("ns", "keep", "1"));
	kpx_store_upsert(st, KPX_KIND_SERVICE, svc_rv("ns", "new", "1"));
	kpx_store_replace_end(st, KPX_KIND_SERVICE);

	cr_assert(kpx_store_kind_synced(st, KPX_KIND_SERVICE));
	cr_assert_not(kpx_store_kind_synced(st, KPX_KIND_SLICE));
	kpx_store_for_each_service(st, collect_svc, &n);
	cr_assert_eq(n.n, 2);
	cr_assert_str_eq(n.v[0], "ns/keep");
	cr_assert_str_eq(n.v[1], "ns/new");
	kpx_store_for_each_dirty(st, collect_dirty, &d);
	cr_assert_eq(d.n, 2, "unchanged 'keep' must stay clean");
	cr_assert_str_eq(d.v[0], "ns/gone");
	cr_assert_str_eq(d.v[1], "ns/new");

	/* Slices are replaced independently of services. */
	kpx_store_replace_begin(st, KPX_KIND_SLICE);
	kpx_store_replace_end(st, KPX_KIND_SLICE);
	cr_assert(kpx_store_kind_synced(st, KPX_KIND_SLICE));
	struct kpx_store_stats stats;
	kpx_store_get_stats(st, &stats);
	cr_assert_eq(stats.n_slices, 0);
}

Test(store, many_services_survive_growth_and_removal)
{
	char name[32];
	struct kpx_store_stats stats;

	for (int i = 0; i < 5000; i++) {
		snprintf(name, sizeof(name), "s%05d", i);
		kpx_store_upsert(st, KPX_KIND_SERVICE, svc_rv("ns", name, "1"));
	}
	for (int i = 0; i < 5000; i += 2) {
		snprintf(name, sizeof(name), "s%05d", i);
		kpx_store_delete(st, KPX_KIND_SERVICE, "ns", name);
	}
	for (int i = 0; i < 5000; i++) {
		snprintf(name, sizeof(name), "s%05d", i);
		if (i % 2)
			cr_assert_not_null(kpx_store_service(st, "ns", name),
					   "%s lost", name);
		else
			cr_assert_null(kpx_store_service(st, "ns", name),
				       "%s not deleted", name);
	}
	/* A replace that keeps only a third sweeps the rest. */
	kpx_store_replace_begin(st, KPX_KIND_SERVICE);
	for (int i = 1; i < 5000; i += 6) {
		snprintf(name, sizeof(name), "s%05d", i);
		kpx_store_upsert(st, KPX_KIND_SERVICE, svc_rv("ns", name, "1"));
	}
	kpx_store_replace_end(st, KPX_KIND_SERVICE);
	kpx_store_get_stats(st, &stats);
	cr_assert_eq(stats.n_services, 834);
	for (int i = 1; i < 5000; i += 2) {
		snprintf(name, sizeof(name), "s%05d", i);
		cr_assert_eq(kpx_store_service(st, "ns", name) != NULL,
			     (i - 1) % 6 == 0, "%s", name);
	}
}

Test(store, node_zone_change_is_a_change_heartbeat_is_not)
{
	struct kpx_node *n = calloc(1, sizeof(*n));

	strcpy(n->name, "node-a");
	strcpy(n->zone, "z1");
	kpx_store_upsert(st, KPX_KIND_NODE, n);
	cr_assert(kpx_store_dirty(st));
	cr_assert_str_eq(kpx_store_node(st)->zone, "z1");
	kpx_store_clear_dirty(st);

	n = calloc(1, sizeof(*n));
	strcpy(n->name, "node-a");
	strcpy(n->zone, "z1");
	kpx_store_upsert(st, KPX_KIND_NODE, n);
	cr_assert_not(kpx_store_dirty(st));

	n = calloc(1, sizeof(*n));
	strcpy(n->name, "node-a");
	strcpy(n->zone, "z2");
	kpx_store_upsert(st, KPX_KIND_NODE, n);
	cr_assert(kpx_store_dirty(st));
	cr_assert_str_eq(kpx_store_node(st)->zone, "z2");

	kpx_store_delete(st, KPX_KIND_NODE, "", "node-a");
	cr_assert_null(kpx_store_node(st));
}

/* Network programming latency starts at the EndpointSlice controller's
 * last-change-trigger-time: decoded to the fraction, kept per change until
 * the sync clears them. */
Test(store, slice_trigger_times_are_kept_until_the_sync_clears_them)
{
	static const char *slice_json =
		"{\"apiVersion\":\"discovery.k8s.io/v1\",\"kind\":\"EndpointSlice\","
		"\"metadata\":{\"name\":\"w-1\",\"namespace\":\"ns\",\"resourceVersion\":\"%d\","
		"\"labels\":{\"kubernetes.io/service-name\":\"w\"},"
		"\"annotations\":{\"endpoints.kubernetes.io/last-change-trigger-time\":"
		"\"%s\"}},\"addressType\":\"IPv4\",\"endpoints\":[],\"ports\":[]}";
	struct kpx_endpoint_slice *sl;
	const double *t;
	char buf[1024], err[256];
	struct json_object *o;

	snprintf(buf, sizeof(buf), slice_json, 1, "2026-12-07T01:02:03.250000Z");
	o = json_tokener_parse(buf);
	cr_assert_eq(kpx_slice_decode(o, &sl, err, sizeof(err)), 0, "%s", err);
	json_object_put(o);
	cr_assert_float_eq(sl->trigger_wall, 1796605323.25, 1e-6);
	kpx_store_upsert(st, KPX_KIND_SLICE, sl);
	/* no annotation (or a bad one): not a sample */
	snprintf(buf, sizeof(buf), slice_json, 2, "yesterday");
	o = json_tokener_parse(buf);
	cr_assert_eq(kpx_slice_decode(o, &sl, err, sizeof(err)), 0, "%s", err);
	json_object_put(o);
	cr_assert_eq(sl->trigger_wall, 0);
	kpx_store_upsert(st, KPX_KIND_SLICE, sl);
	cr_assert_eq(kpx_store_trigger_times(st, &t), 1);
	cr_assert_float_eq(t[0], 1796605323.25, 1e-6);
	kpx_store_clear_dirty(st);
	cr_assert_eq(kpx_store_trigger_times(st, &t), 0);
}
