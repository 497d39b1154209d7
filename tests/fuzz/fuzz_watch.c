// SPDX-License-Identifier: Apache-2.0
/*
 * The watch-stream parser (k8s/client.c, kpx_k8s_watch_feed): a watch
 * response body of newline-separated JSON events, fed in pieces as
 * libcurl hands them over, decoded into a store.
 * Input: byte 0 picks the kind (Service, EndpointSlice, Node), byte 1 the
 * piece size (0: the whole body at once), the rest is the body.
 * Corpus: corpus/watch.
 * Every interned name the store's objects hold is released with the
 * store: the intern table is empty after each input.
 */
#include "fuzz.h"
#include "common/intern.h"
#include "k8s/client.h"
#include "model/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kpx_store *store;
	char err[256];

	if (size < 2 || size > (1 << 20))
		return 0;
	if (kpx_store_new(&store))
		return 0;
	kpx_k8s_watch_feed(store, (enum kpx_kind)(data[0] % KPX_KIND_COUNT),
			   (const char *)data + 2, size - 2, data[1], err,
			   sizeof(err));
	kpx_store_free(store);
	if (kpx_intern_count())
		abort(); /* a reference leaked */
	return 0;
}
