// SPDX-License-Identifier: Apache-2.0
/* Maglev table properties (bpf/maglev.c), no root needed. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bpf/maglev.h"

#define M 16381

struct ids {
	char name[32][24];
	struct kpx_maglev_backend b[32];
};

static void ids_init(struct ids *x, size_t n, size_t skip)
{
	size_t j = 0;

	for (size_t i = 0; i < n; i++) {
		if (i == skip)
			continue;
		snprintf(x->name[j], sizeof(x->name[j]), "198.18.0.%zu:80", i);
		x->b[j].id = x->name[j];
		x->b[j].len = strlen(x->name[j]);
		j++;
	}
}

Test(maglev, size_validation)
{
	cr_assert(kpx_maglev_size_valid(16381));
	cr_assert(kpx_maglev_size_valid(65537));
	cr_assert_not(kpx_maglev_size_valid(16383)); /* 3 * 43 * 127 */
	cr_assert_not(kpx_maglev_size_valid(16384));
	cr_assert_not(kpx_maglev_size_valid(2));
	uint32_t t[7];
	struct kpx_maglev_backend b = { "x", 1 };
	cr_assert_eq(kpx_maglev_build(&b, 1, 8, 0, t), -EINVAL);
	cr_assert_eq(kpx_maglev_build(&b, 0, 7, 0, t), -EINVAL);
}

Test(maglev, every_backend_gets_about_m_over_n)
{
	static uint32_t t[M];
	struct ids x;

	for (size_t n = 1; n <= 32; n = n * 2 + 1) {
		size_t cnt[32] = { 0 };

		ids_init(&x, n, SIZE_MAX);
		cr_assert_eq(kpx_maglev_build(x.b, n, M, 42, t), 0);
		for (size_t i = 0; i < M; i++) {
			cr_assert_lt(t[i], n, "slot %zu unfilled", i);
			cnt[t[i]]++;
		}
		for (size_t i = 0; i < n; i++) {
			double share = (double)cnt[i] * n / M;

			cr_expect(share > 0.97 && share < 1.03,
				  "n=%zu backend %zu has %zu entries (%.3f of M/N)",
				  n, i, cnt[i], share);
		}
	}
}

Test(maglev, same_input_same_table_seed_matters)
{
	static uint32_t a[M], b[M];
	struct ids x;
	size_t diff = 0;

	ids_init(&x, 10, SIZE_MAX);
	cr_assert_eq(kpx_maglev_build(x.b, 10, M, 7, a), 0);
	cr_assert_eq(kpx_maglev_build(x.b, 10, M, 7, b), 0);
	cr_assert_eq(memcmp(a, b, sizeof(a)), 0);
	cr_assert_eq(kpx_maglev_build(x.b, 10, M, 8, b), 0);
	for (size_t i = 0; i < M; i++)
		diff += a[i] != b[i];
	cr_assert_gt(diff, M / 2, "another seed should give another table");
}

Test(maglev, removing_one_backend_moves_little_more_than_its_share)
{
	static uint32_t before[M], after[M];
	struct ids all, less;
	const size_t n = 10, gone = 3;
	size_t moved = 0;

	ids_init(&all, n, SIZE_MAX);
	ids_init(&less, n, gone);
	cr_assert_eq(kpx_maglev_build(all.b, n, M, 1, before), 0);
	cr_assert_eq(kpx_maglev_build(less.b, n - 1, M, 1, after), 0);
	for (size_t i = 0; i < M; i++) {
		/* Map the reduced table's index back to the full list. */
		size_t idx = after[i] >= gone ? after[i] + 1 : after[i];

		if (before[i] != gone && before[i] != idx)
			moved++;
	}
	/* Entries of surviving backends that changed owner: Maglev's
	 * paper reports a few percent; the removed share is 10 %. */
	cr_assert_lt(moved, M * 3 / 100, "moved %zu of %d entries", moved, M);
}
