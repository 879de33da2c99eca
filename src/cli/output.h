/* output.h - how kiln prints: one-line errors and warnings on stderr, text
 * from the server made safe for a terminal, JSON pretty-printed. */
#ifndef KILN_CLI_OUTPUT_H
#define KILN_CLI_OUTPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

/* Prints "kiln: error: MESSAGE" as one line on stderr. The message is
 * sanitized (out_sanitize, newlines become spaces). */
void out_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints "kiln: warning: MESSAGE" as one line on stderr. */
void out_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Flags of out_sanitize. */
enum {
	OUT_KEEP_NEWLINES = 1, /* keep '\n' (else it becomes ' ') */
	OUT_KEEP_TABS = 2,     /* keep '\t' (else it becomes ' ') */
};

/* A copy of s[0..len) that is safe to print on a terminal: valid UTF-8
 * without control characters (C0, DEL, C1); each bad byte or control
 * character becomes '?', except newlines and tabs as `flags` say. Returns a
 * malloc'd NUL-terminated string, or NULL when out of memory. */
char *out_sanitize(const char *s, size_t len, int flags);

/* The number of terminal columns s takes: its UTF-8 code points (every code
 * point counts as one column; wide characters are not measured). */
size_t out_width(const char *s);

/* Prints j indented with two spaces and a final newline to f. Returns 0 or
 * -EIO. */
int out_json(FILE *f, const json_t *j);

/* Writes s sanitized with flags, then a newline when s does not end with
 * one, to f. */
void out_text(FILE *f, const char *s, int flags);

#endif
