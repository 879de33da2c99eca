/* table.c - aligned text tables (see table.h). */
#include "cli/table.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/output.h"

#define TABLE_MAX_COLS 32
#define TABLE_GAP      3

struct table {
	size_t ncols;
	char **cells; /* (rows + 1) * ncols, the header first */
	size_t rows, cap;
	bool right[TABLE_MAX_COLS];
};

static int add_row(struct table *t, const char *const *cells)
{
	if (t->rows == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		char **c = realloc(t->cells, cap * t->ncols * sizeof(*c));

		if (!c)
			return -ENOMEM;
		t->cells = c;
		t->cap = cap;
	}
	for (size_t i = 0; i < t->ncols; i++) {
		const char *s = cells[i] ? cells[i] : "-";
		char *c = out_sanitize(s, strlen(s), 0);

		if (!c) {
			for (size_t j = 0; j < i; j++)
				free(t->cells[t->rows * t->ncols + j]);
			return -ENOMEM;
		}
		t->cells[t->rows * t->ncols + i] = c;
	}
	t->rows++;
	return 0;
}

struct table *table_create(size_t ncols, const char *const *headers)
{
	struct table *t;

	if (ncols == 0 || ncols > TABLE_MAX_COLS)
		return NULL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->ncols = ncols;
	if (add_row(t, headers)) {
		table_destroy(t);
		return NULL;
	}
	return t;
}

void table_destroy(struct table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->rows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t);
}

int table_align_right(struct table *t, size_t col)
{
	if (col >= t->ncols)
		return -EINVAL;
	t->right[col] = true;
	return 0;
}

int table_add_row(struct table *t, const char *const *cells)
{
	return add_row(t, cells);
}

size_t table_rows(const struct table *t)
{
	return t->rows - 1;
}

char *table_render(const struct table *t)
{
	size_t width[TABLE_MAX_COLS] = {0};
	char *out = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&out, &size);

	if (!f)
		return NULL;
	for (size_t r = 0; r < t->rows; r++)
		for (size_t c = 0; c < t->ncols; c++) {
			size_t w = out_width(t->cells[r * t->ncols + c]);

			if (w > width[c])
				width[c] = w;
		}
	for (size_t r = 0; r < t->rows; r++) {
		size_t pending = 0; /* blanks owed before the next text */

		for (size_t c = 0; c < t->ncols; c++) {
			const char *s = t->cells[r * t->ncols + c];
			size_t w = out_width(s), pad = width[c] - w;
			bool last = c + 1 == t->ncols;

			if (c)
				pending += TABLE_GAP;
			if (t->right[c])
				pending += pad;
			if (*s) {
				fprintf(f, "%*s%s", (int)pending, "", s);
				pending = 0;
			}
			if (!t->right[c] && !last)
				pending += pad;
		}
		fputc('\n', f);
	}
	if (fclose(f)) {
		free(out);
		return NULL;
	}
	return out;
}
