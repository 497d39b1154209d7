/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Interned, reference-counted strings: one copy of every distinct string
 * held by the decoded objects and the plan (namespaces, names, node names,
 * zones, port names). At 100,000 Services x 10 endpoints the same few
 * namespace, node and port names repeat a million times; fixed-size name
 * arrays cost about 600 bytes per endpoint, interned pointers 8.
 * Owns: the string table. Single-threaded, as the agent's event loop.
 * Must not: know what the strings mean.
 */
#ifndef KPX_INTERN_H
#define KPX_INTERN_H

#include <stddef.h>

/* The interned "" : never freed, valid without a reference. */
extern const char kpx_intern_empty[];

/* A new reference to the interned copy of s (s[0..n), no NUL inside);
 * NULL when out of memory. */
const char *kpx_intern_n(const char *s, size_t n);
const char *kpx_intern(const char *s);
/* One more reference to an interned string (no lookup). */
const char *kpx_intern_ref(const char *is);
/* Drops a reference; NULL and kpx_intern_empty are ignored. */
void kpx_intern_put(const char *is);
/* Distinct strings held, and their bytes (for tests and stats). */
size_t kpx_intern_count(void);
size_t kpx_intern_bytes(void);

/* Replaces *slot (an interned string or NULL) with an interned copy of s:
 * 0, or -ENOMEM with *slot unchanged. */
int kpx_intern_set(const char **slot, const char *s);

#endif
