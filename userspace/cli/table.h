/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Aligned text tables for the CLI (`kpx services`, `kpx status`):
 * columns sized to their content, shrunk to a width limit with ".."
 * marking cut cells, bold headers only when printing to a terminal.
 * Owns: the cell copies. Must not: know what the cells mean.
 */
#ifndef KPX_TABLE_H
#define KPX_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct kpx_table;

struct kpx_table *kpx_table_new(size_t ncols, const char *const *headers);
/* cells: ncols strings (NULL prints "-"). 0 or -ENOMEM. */
int kpx_table_add(struct kpx_table *t, const char *const *cells);
/* max_width 0: no limit; else the widest columns are cut first. */
void kpx_table_print(const struct kpx_table *t, FILE *f, size_t max_width);
void kpx_table_free(struct kpx_table *t);
size_t kpx_table_rows(const struct kpx_table *t);

/* Colour only on a terminal, and never with NO_COLOR set. */
bool kpx_use_color(FILE *f);
#define KPX_BOLD(f) (kpx_use_color(f) ? "\033[1m" : "")
#define KPX_RED(f) (kpx_use_color(f) ? "\033[31m" : "")
#define KPX_GREEN(f) (kpx_use_color(f) ? "\033[32m" : "")
#define KPX_RESET(f) (kpx_use_color(f) ? "\033[0m" : "")

#endif
