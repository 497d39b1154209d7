/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reading a whole BPF map in batches (bpf_map_lookup_batch: a few thousand
 * entries per syscall instead of two syscalls per entry), for kpx status
 * counts, the loader's copy of a pin into a resized map and the map
 * writer's read of the pins.
 * Owns: the key/value buffers of one walk. Must not: change the map, fall
 * back key by key (callers do that their own way: count, copy, dump).
 */
#ifndef KPX_BPF_MAP_WALK_H
#define KPX_BPF_MAP_WALK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* bpf_map_lookup_batch() semantics, returning 0 or a negative errno: in ==
 * NULL starts; *count is in/out; -ENOENT ends the walk (with *count
 * entries still returned); -ENOSPC with *count == 0: buffers too small for
 * one hash bucket. */
typedef int (*kpx_lookup_batch_fn)(void *ctx, void *in, void *out,
				   void *keys, void *vals, uint32_t *count);

/* n > 0 entries, keys and vals packed. Returns 0 to go on, > 0 to end the
 * walk there (successfully), or a negative errno to abort it. */
typedef int (*kpx_map_walk_fn)(const void *keys, const void *vals,
			       uint32_t n, void *arg);

struct kpx_map_walk {
	int fd;				  /* read with bpf_map_lookup_batch */
	kpx_lookup_batch_fn lookup_batch; /* or with this when not NULL */
	void *ctx;			  /* for lookup_batch */
	size_t key_size; /* arrays: at most 64 (their batch token is a key) */
	size_t value_size;		  /* per entry, all CPUs */
	uint32_t chunk;			  /* entries per call to start with */
	/* Out: the error of the first batch call when the walk failed
	 * there, before any entry; 0 otherwise. */
	int first_err;
};

/* Calls cb for every chunk of the map. The chunk doubles (up to 1<<20)
 * while the map answers -ENOSPC with nothing returned. Returns 0 at the
 * end of the map or when cb ended the walk; cb's negative return; -ENOMEM
 * when the buffers cannot be allocated; else the batch call's error. */
int kpx_map_walk(struct kpx_map_walk *mw, kpx_map_walk_fn cb, void *arg);

/* True for the errors a first batch call gives when the map type has no
 * batch operations (LPM trie): -EINVAL, -EOPNOTSUPP, -ENOTSUPP (524). */
bool kpx_map_no_batch(int err);

#endif
