/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Maglev consistent hashing (Eisenbud et al., NSDI 2016): fills a lookup
 * table of prime size M with backend indices so that every backend gets
 * about M/N entries and removing one backend moves little more than its
 * own share. Pure function: the same backends (by identity bytes, in the
 * same order) and seed give the same table on every node.
 * Owns: nothing. Must not: do I/O.
 */
#ifndef KPX_BPF_MAGLEV_H
#define KPX_BPF_MAGLEV_H

#include <stddef.h>
#include <stdint.h>

/* Backend identities are byte strings (e.g. family+addr+port+proto). */
struct kpx_maglev_backend {
	const void *id;
	size_t len;
};

/* True when m is a usable table size (prime, 2 < m <= 1<<24). */
int kpx_maglev_size_valid(uint32_t m);
/* Fills table[m] with indices into b[n]. n == 0 fills nothing and returns
 * -EINVAL, as does an invalid m. Returns 0 or -ENOMEM. */
int kpx_maglev_build(const struct kpx_maglev_backend *b, size_t n, uint32_t m,
		     uint32_t seed, uint32_t *table);
/* Seeded 32-bit hash (MurmurHash3 x86_32) used for offset/skip. */
uint32_t kpx_maglev_hash(const void *data, size_t len, uint32_t seed);

#endif
