// SPDX-License-Identifier: Apache-2.0
/*
 * The intern table: open addressing over entry pointers (8 bytes a slot),
 * the hash kept in the entry. An entry is one allocation: header, then the
 * characters; the interned pointer is the characters, so a reference is
 * dropped without a lookup and freed (one lookup) at zero.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/intern.h"

struct istr {
	uint32_t ref; /* UINT32_MAX: saturated, never freed */
	uint32_t hash;
	char s[];
};

const char kpx_intern_empty[1] = "";

static struct istr **tab;
static size_t tab_cap, tab_n, tab_bytes;

static uint32_t hash_of(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ULL;

	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211ULL;
	}
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return (uint32_t)h;
}

static struct istr *entry_of(const char *is)
{
	return (struct istr *)(is - offsetof(struct istr, s));
}

static int grow(void)
{
	size_t ncap = tab_cap ? tab_cap * 2 : 256;
	struct istr **nt = calloc(ncap, sizeof(*nt));

	if (!nt)
		return -ENOMEM;
	for (size_t i = 0; i < tab_cap; i++) {
		size_t j;

		if (!tab[i])
			continue;
		for (j = tab[i]->hash & (ncap - 1); nt[j]; j = (j + 1) & (ncap - 1))
			;
		nt[j] = tab[i];
	}
	free(tab);
	tab = nt;
	tab_cap = ncap;
	return 0;
}

const char *kpx_intern_n(const char *s, size_t n)
{
	uint32_t h;
	size_t i;
	struct istr *e;

	if (!n)
		return kpx_intern_empty;
	h = hash_of(s, n);
	if (tab_cap) {
		for (i = h & (tab_cap - 1); tab[i]; i = (i + 1) & (tab_cap - 1)) {
			e = tab[i];
			if (e->hash == h && !strncmp(e->s, s, n) && !e->s[n]) {
				if (e->ref != UINT32_MAX)
					e->ref++;
				return e->s;
			}
		}
	}
	if ((tab_n + 1) * 4 > tab_cap * 3 && grow())
		return NULL;
	e = malloc(sizeof(*e) + n + 1);
	if (!e)
		return NULL;
	e->ref = 1;
	e->hash = h;
	memcpy(e->s, s, n);
	e->s[n] = '\0';
	for (i = h & (tab_cap - 1); tab[i]; i = (i + 1) & (tab_cap - 1))
		;
	tab[i] = e;
	tab_n++;
	tab_bytes += sizeof(*e) + n + 1;
	return e->s;
}

const char *kpx_intern(const char *s)
{
	return kpx_intern_n(s, strlen(s));
}

const char *kpx_intern_ref(const char *is)
{
	struct istr *e;

	if (!is || is == kpx_intern_empty)
		return is;
	e = entry_of(is);
	if (e->ref != UINT32_MAX)
		e->ref++;
	return is;
}

/* Removes slot i, keeping probe chains intact (backward shift). */
static void remove_slot(size_t i)
{
	size_t j = i;

	tab[i] = NULL;
	tab_n--;
	for (;;) {
		size_t k;

		j = (j + 1) & (tab_cap - 1);
		if (!tab[j])
			break;
		k = tab[j]->hash & (tab_cap - 1);
		if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
			continue;
		tab[i] = tab[j];
		tab[j] = NULL;
		i = j;
	}
}

void kpx_intern_put(const char *is)
{
	struct istr *e;

	if (!is || is == kpx_intern_empty)
		return;
	e = entry_of(is);
	if (e->ref == UINT32_MAX || --e->ref)
		return;
	for (size_t i = e->hash & (tab_cap - 1);; i = (i + 1) & (tab_cap - 1)) {
		if (tab[i] == e) {
			remove_slot(i);
			break;
		}
	}
	tab_bytes -= sizeof(*e) + strlen(e->s) + 1;
	free(e);
}

size_t kpx_intern_count(void)
{
	return tab_n;
}

size_t kpx_intern_bytes(void)
{
	return tab_bytes + tab_cap * sizeof(*tab);
}

int kpx_intern_set(const char **slot, const char *s)
{
	const char *is = kpx_intern(s);

	if (!is)
		return -ENOMEM;
	kpx_intern_put(*slot);
	*slot = is;
	return 0;
}
