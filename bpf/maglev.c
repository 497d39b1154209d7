// SPDX-License-Identifier: Apache-2.0
/* Maglev table population (see maglev.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bpf/maglev.h"

static uint32_t rotl32(uint32_t x, int r)
{
	return (x << r) | (x >> (32 - r));
}

uint32_t kpx_maglev_hash(const void *data, size_t len, uint32_t seed)
{
	const uint8_t *p = data;
	const uint32_t c1 = 0xcc9e2d51, c2 = 0x1b873593;
	uint32_t h = seed, k;
	size_t i;

	for (i = 0; i + 4 <= len; i += 4) {
		memcpy(&k, p + i, 4);
		k *= c1;
		k = rotl32(k, 15);
		k *= c2;
		h ^= k;
		h = rotl32(h, 13);
		h = h * 5 + 0xe6546b64;
	}
	k = 0;
	switch (len & 3) {
	case 3:
		k ^= (uint32_t)p[i + 2] << 16;
		/* fallthrough */
	case 2:
		k ^= (uint32_t)p[i + 1] << 8;
		/* fallthrough */
	case 1:
		k ^= p[i];
		k *= c1;
		k = rotl32(k, 15);
		k *= c2;
		h ^= k;
	}
	h ^= (uint32_t)len;
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

int kpx_maglev_size_valid(uint32_t m)
{
	if (m <= 2 || m > (1u << 24) || !(m & 1))
		return 0;
	for (uint32_t d = 3; d * d <= m; d += 2)
		if (m % d == 0)
			return 0;
	return 1;
}

int kpx_maglev_build(const struct kpx_maglev_backend *b, size_t n, uint32_t m,
		     uint32_t seed, uint32_t *table)
{
	uint32_t *offset, *skip, *next;
	uint32_t filled = 0;

	if (n == 0 || !kpx_maglev_size_valid(m))
		return -EINVAL;
	offset = calloc(n, sizeof(*offset));
	skip = calloc(n, sizeof(*skip));
	next = calloc(n, sizeof(*next));
	if (!offset || !skip || !next) {
		free(offset);
		free(skip);
		free(next);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		offset[i] = kpx_maglev_hash(b[i].id, b[i].len, seed) % m;
		skip[i] = kpx_maglev_hash(b[i].id, b[i].len,
					  seed ^ 0x9e3779b9u) % (m - 1) + 1;
	}
	memset(table, 0xff, (size_t)m * sizeof(*table));
	/* Each round gives every backend its next preferred free slot; m
	 * prime and skip < m make each permutation visit every slot, so
	 * this terminates after at most m * n probes in total. */
	for (;;) {
		for (size_t i = 0; i < n; i++) {
			uint32_t c = (uint32_t)(((uint64_t)offset[i] +
						 (uint64_t)next[i] * skip[i]) % m);

			while (table[c] != UINT32_MAX) {
				next[i]++;
				c = (uint32_t)(((uint64_t)offset[i] +
						(uint64_t)next[i] * skip[i]) % m);
			}
			table[c] = (uint32_t)i;
			next[i]++;
			if (++filled == m)
				goto out;
		}
	}
out:
	free(offset);
	free(skip);
	free(next);
	return 0;
}
