// SPDX-License-Identifier: Apache-2.0
/* Aligned CLI tables; see table.h. */
#include "cli/table.h"

#include "common/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define COL_GAP 2
#define COL_MIN 6

struct kpx_table {
	size_t ncols;
	char **cells; /* rows * ncols, row 0 = headers */
	size_t rows, cap;
};

bool kpx_use_color(FILE *f)
{
	const char *nc = getenv("NO_COLOR");

	return (!nc || !*nc) && isatty(fileno(f));
}

struct kpx_table *kpx_table_new(size_t ncols, const char *const *headers)
{
	struct kpx_table *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->ncols = ncols;
	if (kpx_table_add(t, headers)) {
		free(t);
		return NULL;
	}
	return t;
}

int kpx_table_add(struct kpx_table *t, const char *const *cells)
{
	size_t i;

	if (t->rows == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		char **n = realloc(t->cells, cap * t->ncols * sizeof(*n));

		if (!n)
			return -ENOMEM;
		t->cells = n;
		t->cap = cap;
	}
	for (i = 0; i < t->ncols; i++) {
		const char *c = cells[i] && *cells[i] ? cells[i] : "-";
		size_t len = 4 * strlen(c) + 1;
		char *e = malloc(len);

		/* Cells carry names from objects: escaped, they cannot
		 * break a row or act on the terminal. */
		if (e)
			kpx_escape(c, e, len);
		t->cells[t->rows * t->ncols + i] = e;
		if (!e) {
			while (i--)
				free(t->cells[t->rows * t->ncols + i]);
			return -ENOMEM;
		}
	}
	t->rows++;
	return 0;
}

size_t kpx_table_rows(const struct kpx_table *t)
{
	return t->rows ? t->rows - 1 : 0;
}

void kpx_table_print(const struct kpx_table *t, FILE *f, size_t max_width)
{
	size_t w[32] = { 0 }, total, r, c, len, widest;
	size_t n = t->ncols < 32 ? t->ncols : 32;

	for (r = 0; r < t->rows; r++)
		for (c = 0; c < n; c++) {
			len = strlen(t->cells[r * t->ncols + c]);
			if (len > w[c])
				w[c] = len;
		}
	for (;;) {
		total = 0;
		for (c = 0; c < n; c++)
			total += w[c] + (c ? COL_GAP : 0);
		if (!max_width || total <= max_width)
			break;
		/* Shrink the widest column one step at a time, so the
		 * space is shared fairly among long columns. The first
		 * column is the row's key (an address): cut it last. */
		widest = n > 1 ? 1 : 0;
		for (c = 2; c < n; c++)
			if (w[c] > w[widest])
				widest = c;
		if (w[widest] <= COL_MIN)
			widest = 0;
		if (w[widest] <= COL_MIN)
			break;
		w[widest]--;
	}
	for (r = 0; r < t->rows; r++) {
		if (!r)
			fputs(KPX_BOLD(f), f);
		for (c = 0; c < n; c++) {
			const char *s = t->cells[r * t->ncols + c];
			bool last = c + 1 == n;

			len = strlen(s);
			if (c)
				fprintf(f, "%*s", COL_GAP, "");
			if (len > w[c])
				fprintf(f, "%.*s..", (int)(w[c] - 2), s);
			else if (last)
				fputs(s, f);
			else
				fprintf(f, "%-*s", (int)w[c], s);
		}
		if (!r)
			fputs(KPX_RESET(f), f);
		fputc('\n', f);
	}
}

void kpx_table_free(struct kpx_table *t)
{
	size_t i;

	if (!t)
		return;
	for (i = 0; i < t->rows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t);
}
