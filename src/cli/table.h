/* table.h - aligned text tables (kiln list): a header row and rows of
 * cells, columns separated by three spaces, every cell sanitized for the
 * terminal (output.h), widths counted in code points. */
#ifndef KILN_CLI_TABLE_H
#define KILN_CLI_TABLE_H

#include <stddef.h>

struct table;

/* A table with ncols columns (1..32) named headers[0..ncols). Returns NULL
 * when out of memory or ncols is out of range. */
struct table *table_create(size_t ncols, const char *const *headers);

/* Frees the table. Accepts NULL. */
void table_destroy(struct table *t);

/* Right-aligns column col (numbers). Returns 0 or -EINVAL. */
int table_align_right(struct table *t, size_t col);

/* Adds a row of ncols cells (copied; NULL cells print as "-"). Returns 0,
 * -ENOMEM. */
int table_add_row(struct table *t, const char *const *cells);

/* Number of rows added. */
size_t table_rows(const struct table *t);

/* Renders the table: one line per row, the header first, no trailing
 * blanks. Returns a malloc'd string (caller frees) or NULL when out of
 * memory. */
char *table_render(const struct table *t);

#endif
