// SPDX-License-Identifier: Apache-2.0
/*
 * Manifest loading (k8s/yaml.c and the decoders): a file of the manifests
 * directory, YAML or JSON, multi-document, Lists, anchors and aliases,
 * converted, each document decoded and hashed the way manifests.c does
 * (the hash serializes the whole tree: an alias bomb shows up here as a
 * timeout or an RSS overrun).
 * Corpus: corpus/yaml (tests/fixtures/manifests, goldens, the alias bomb).
 */
#include <json-c/json.h>

#include "fuzz.h"
#include "k8s/manifests.h"
#include "k8s/objects.h"

static void doc_err(void *arg, const char *msg)
{
	(void)msg;
	(*(size_t *)arg)++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct json_object *docs = NULL;
	char err[256];
	size_t refused = 0;

	if (size > (1 << 20))
		return 0;
	if (kpx_yaml_to_json_ex((const char *)data, size, &docs, err,
				sizeof(err), doc_err, &refused))
		return 0;
	for (size_t i = 0; i < json_object_array_length(docs); i++) {
		struct json_object *o = json_object_array_get_idx(docs, i);
		void *obj = NULL;
		int kind = kpx_object_kind(o), rc;

		/* content_rv in manifests.c */
		json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
		if (kind == KPX_KIND_SERVICE)
			rc = kpx_service_decode(o, (struct kpx_service **)&obj,
						err, sizeof(err));
		else if (kind == KPX_KIND_SLICE)
			rc = kpx_slice_decode(o,
					      (struct kpx_endpoint_slice **)&obj,
					      err, sizeof(err));
		else if (kind == KPX_KIND_NODE)
			rc = kpx_node_decode(o, (struct kpx_node **)&obj, err,
					     sizeof(err));
		else
			continue;
		if (!rc)
			kpx_object_free(kind, obj);
	}
	json_object_put(docs);
	return 0;
}
