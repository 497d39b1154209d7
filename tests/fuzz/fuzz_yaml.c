// SPDX-License-Identifier: Apache-2.0
/*
 * Manifest loading (k8s/yaml.c and the decoders): a file of the manifests
 * directory, YAML or JSON, multi-document, Lists, anchors and aliases,
 * converted document by document (kpx_yaml_each_doc), each decoded and
 * hashed the way manifests.c does
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

/* What manifests.c does with each document (decode_object, content_rv). */
static void doc(void *arg, struct json_object *o)
{
	char err[256];
	void *obj = NULL;
	int kind = kpx_object_kind(o), rc;

	(void)arg;
	json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	if (kind == KPX_KIND_SERVICE)
		rc = kpx_service_decode(o, (struct kpx_service **)&obj, err,
					sizeof(err));
	else if (kind == KPX_KIND_SLICE)
		rc = kpx_slice_decode(o, (struct kpx_endpoint_slice **)&obj,
				      err, sizeof(err));
	else if (kind == KPX_KIND_NODE)
		rc = kpx_node_decode(o, (struct kpx_node **)&obj, err,
				     sizeof(err));
	else
		return;
	if (!rc)
		kpx_object_free(kind, obj);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];
	size_t refused = 0;

	if (size > (1 << 20))
		return 0;
	/* The manifests source's path: documents one by one. */
	kpx_yaml_each_doc((const char *)data, size, doc, NULL, err,
			  sizeof(err), doc_err, &refused);
	return 0;
}
