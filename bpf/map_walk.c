// SPDX-License-Identifier: Apache-2.0
/* Batched whole-map reads (see map_walk.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/bpf.h>

#include "bpf/map_walk.h"

static int batch(struct kpx_map_walk *mw, void *in, void *out, void *keys,
		 void *vals, uint32_t *n)
{
	if (mw->lookup_batch)
		return mw->lookup_batch(mw->ctx, in, out, keys, vals, n);
	return bpf_map_lookup_batch(mw->fd, in, out, keys, vals, n, NULL)
		       ? -errno
		       : 0;
}

int kpx_map_walk(struct kpx_map_walk *mw, kpx_map_walk_fn cb, void *arg)
{
	uint32_t chunk = mw->chunk;
	/* Batch tokens: a bucket index (hash) or a key (array). */
	uint8_t in[64], out[64], *keys = NULL, *vals = NULL;
	bool first = true;
	int err;

	mw->first_err = 0;
	for (;;) {
		uint32_t n = chunk;

		if (!keys) {
			keys = malloc((size_t)chunk * mw->key_size);
			vals = malloc((size_t)chunk * mw->value_size);
			if (!keys || !vals) {
				err = -ENOMEM;
				break;
			}
		}
		err = batch(mw, first ? NULL : in, out, keys, vals, &n);
		if (err == -ENOSPC && n == 0 && chunk < (1u << 20)) {
			/* One hash bucket holds more than chunk entries. */
			chunk *= 2;
			free(keys);
			free(vals);
			keys = vals = NULL;
			continue;
		}
		if (err && err != -ENOENT) {
			if (first)
				mw->first_err = err;
			break;
		}
		if (n) {
			int r = cb(keys, vals, n, arg);

			if (r) {
				err = r < 0 ? r : 0;
				break;
			}
		}
		if (err == -ENOENT) {
			err = 0;
			break;
		}
		memcpy(in, out, sizeof(in));
		first = false;
	}
	free(keys);
	free(vals);
	return err;
}

bool kpx_map_no_batch(int err)
{
	return err == -EINVAL || err == -EOPNOTSUPP ||
	       err == -524 /* ENOTSUPP */;
}
