// SPDX-License-Identifier: Apache-2.0
/* The intern table: one copy per distinct string, freed with its last
 * reference; decoded objects hold their names through it. */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "common/intern.h"
#include "k8s/objects.h"

Test(intern, equal_strings_share_one_copy_until_the_last_reference)
{
	size_t n0 = kpx_intern_count();
	char buf[16];
	const char *a, *b, *c;

	strcpy(buf, "node-a");
	a = kpx_intern(buf);
	strcpy(buf, "node-b");
	b = kpx_intern_n("node-a-long", 6);
	cr_assert(a && b);
	cr_assert_eq(a, b, "equal strings get one copy");
	cr_assert_str_eq(a, "node-a");
	cr_assert_eq(kpx_intern_count(), n0 + 1);
	c = kpx_intern(buf);
	cr_assert_neq(c, a);
	cr_assert_eq(kpx_intern_count(), n0 + 2);
	kpx_intern_put(a);
	cr_assert_eq(kpx_intern_count(), n0 + 2, "b still holds node-a");
	cr_assert_str_eq(b, "node-a");
	kpx_intern_put(b);
	kpx_intern_put(c);
	cr_assert_eq(kpx_intern_count(), n0, "freed with the last reference");
}

Test(intern, empty_string_is_static_and_put_tolerates_null)
{
	size_t n0 = kpx_intern_count();

	cr_assert_eq(kpx_intern(""), kpx_intern_empty);
	kpx_intern_put(kpx_intern_empty);
	kpx_intern_put(NULL);
	cr_assert_eq(kpx_intern_count(), n0);
	cr_assert_str_eq(kpx_intern_empty, "");
}

Test(intern, many_strings_grow_and_shrink_the_table)
{
	size_t n0 = kpx_intern_count();
	static const char *v[5000];
	char buf[32];

	for (size_t i = 0; i < 5000; i++) {
		snprintf(buf, sizeof(buf), "svc-%zu", i);
		v[i] = kpx_intern(buf);
		cr_assert(v[i]);
	}
	cr_assert_eq(kpx_intern_count(), n0 + 5000);
	for (size_t i = 0; i < 5000; i += 2)
		kpx_intern_put(v[i]);
	for (size_t i = 1; i < 5000; i += 2) {
		snprintf(buf, sizeof(buf), "svc-%zu", i);
		cr_assert_eq(kpx_intern(buf), v[i], "still found after removals");
		kpx_intern_put(v[i]);
		kpx_intern_put(v[i]);
	}
	cr_assert_eq(kpx_intern_count(), n0);
}

/* A decoded slice's names are interned: a million endpoints on a few
 * nodes hold a few node names, and freeing the slice releases them. */
Test(intern, decoded_slices_share_node_names_and_release_them)
{
	const char *js =
		"{\"apiVersion\":\"discovery.k8s.io/v1\",\"kind\":\"EndpointSlice\","
		"\"metadata\":{\"name\":\"web-abc\",\"namespace\":\"demo\","
		"\"labels\":{\"kubernetes.io/service-name\":\"web\"}},"
		"\"addressType\":\"IPv4\",\"ports\":[{\"name\":\"http\",\"port\":80}],"
		"\"endpoints\":[{\"addresses\":[\"198.18.1.1\"],\"nodeName\":\"node-zz\","
		"\"zone\":\"zone-q\",\"hints\":{\"forZones\":[{\"name\":\"zone-q\"}]}},"
		"{\"addresses\":[\"198.18.1.2\"],\"nodeName\":\"node-zz\"}]}";
	struct json_object *o = json_tokener_parse(js);
	struct kpx_endpoint_slice *a, *b;
	size_t n0 = kpx_intern_count();
	char err[256];

	cr_assert(o);
	cr_assert_eq(kpx_slice_decode(o, &a, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(kpx_slice_decode(o, &b, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(a->endpoints[0].node_name, a->endpoints[1].node_name);
	cr_assert_eq(a->endpoints[0].node_name, b->endpoints[0].node_name);
	cr_assert_eq(a->endpoints[0].zone, a->endpoints[0].hint_zones[0]);
	cr_assert_str_eq(b->endpoints[1].zone, "");
	cr_assert_str_eq(a->service_name, "web");
	cr_assert_str_eq(a->ports[0].name, "http");
	kpx_slice_free(a);
	kpx_slice_free(b);
	cr_assert_eq(kpx_intern_count(), n0, "the slices' strings are released");
	json_object_put(o);
}
