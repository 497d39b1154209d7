// SPDX-License-Identifier: Apache-2.0
/*
 * The object decoders (k8s/objects.c): one JSON value, as the API source
 * and the manifests source hand it over, through the Service,
 * EndpointSlice and Node decoders and the kind/ref helpers.
 * Corpus: corpus/objects (real objects from tests/fixtures and goldens).
 * Decoded names are interned (common/intern.h): every reference a decoder
 * takes, also on a failed decode, is dropped by the free functions, so
 * the table is back to empty after each input.
 */
#include <json-c/json.h>

#include "fuzz.h"
#include "k8s/objects.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256], ref[KPX_NS_MAX + KPX_NAME_MAX + 2];
	struct kpx_endpoint_slice *sl;
	struct kpx_service *svc;
	struct kpx_node *node;
	struct json_object *o;
	json_tokener *tok;

	if (size > (1 << 20))
		return 0;
	tok = json_tokener_new();
	if (!tok)
		return 0;
	o = json_tokener_parse_ex(tok, (const char *)data, (int)size);
	json_tokener_free(tok);
	if (!o)
		return 0;
	if (kpx_intern_count())
		abort();
	kpx_object_kind(o);
	kpx_object_ref(o, ref, sizeof(ref));
	if (!kpx_service_decode(o, &svc, err, sizeof(err)))
		kpx_service_free(svc);
	else if (svc)
		abort(); /* an error never returns an object */
	if (!kpx_slice_decode(o, &sl, err, sizeof(err)))
		kpx_slice_free(sl);
	else if (sl)
		abort();
	if (!kpx_node_decode(o, &node, err, sizeof(err)))
		kpx_node_free(node);
	else if (node)
		abort();
	json_object_put(o);
	if (kpx_intern_count())
		abort(); /* a reference leaked */
	return 0;
}
