/* toml.h - a small strict parser for the subset of TOML 1.0 that kiln's
 * configuration files use (Cloudlet's run configs, kilnd's --config).
 *
 * Accepted:
 *   - tables [a], [a.b], [ "quoted" . 'keys' ]; each defined at most once;
 *   - key = value with bare keys [A-Za-z0-9_-]+, "basic" or 'literal' quoted
 *     keys, and dotted keys (a.b = 1), following TOML's rules for which
 *     tables dotted keys and headers may extend; a key defined twice is an
 *     error;
 *   - values: basic strings "..." with the escapes \b \t \n \f \r \" \\
 *     \uXXXX \UXXXXXXXX (a Unicode scalar value, not U+0000), literal strings
 *     '...', decimal integers (optional sign, '_' between digits, no leading
 *     zeros, 64-bit range), true and false;
 *   - comments (#...), blank lines, LF or CRLF line ends, a leading BOM.
 * Everything else TOML allows (arrays, array tables [[x]], inline tables,
 * floats, dates and times, hexadecimal/octal/binary integers, multi-line
 * strings) is rejected with an error that names the line and says what is
 * not supported. The input must be valid UTF-8 without control characters
 * other than tab (and newlines between lines).
 *
 * The result is a tree of struct toml_value owned by the caller (toml_free).
 */
#ifndef KILN_COMMON_TOML_H
#define KILN_COMMON_TOML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum toml_type {
	TOML_TABLE = 1,
	TOML_STRING,
	TOML_INTEGER,
	TOML_BOOLEAN,
};

struct toml_value;

/* Where and why parsing failed: 1-based line and column (bytes), and a
 * one-line message without the position. */
struct toml_error {
	int line;
	int column;
	char msg[160];
};

/* Parses text[0..len) (need not be NUL-terminated). On success returns 0 and
 * the root table in *root (caller frees with toml_free). Returns -EINVAL for
 * a syntax error or unsupported construct (details in *err when err is not
 * NULL), -E2BIG for input over 16 MiB or nesting deeper than 64 tables,
 * -ENOMEM. On failure *root is left alone. */
int toml_parse(const char *text, size_t len, struct toml_value **root, struct toml_error *err);

/* Frees a tree returned by toml_parse. Accepts NULL. */
void toml_free(struct toml_value *root);

/* The type of v. */
enum toml_type toml_type_of(const struct toml_value *v);

/* Human name of a type ("table", "string", "integer", "boolean"). */
const char *toml_type_name(enum toml_type type);

/* The 1-based line where v was defined (its key, or its table header). */
int toml_line(const struct toml_value *v);

/* The value at key (one key, not a dotted path) in table t, or NULL when t
 * is NULL, not a table, or has no such key. */
const struct toml_value *toml_get(const struct toml_value *t, const char *key);

/* Number of keys of table t (0 when t is not a table). */
size_t toml_table_size(const struct toml_value *t);

/* The i-th key of table t in definition order, and its value; NULL when out
 * of range or t is not a table. */
const char *toml_table_key(const struct toml_value *t, size_t i);
const struct toml_value *toml_table_value(const struct toml_value *t, size_t i);

/* The string of v (NUL-terminated, valid UTF-8, no NUL inside), or NULL
 * when v is NULL or not a string. */
const char *toml_string(const struct toml_value *v);

/* Stores v's integer in *out. Returns 0, or -EINVAL when v is NULL or not
 * an integer. */
int toml_integer(const struct toml_value *v, int64_t *out);

/* Stores v's boolean in *out. Returns 0, or -EINVAL when v is NULL or not a
 * boolean. */
int toml_boolean(const struct toml_value *v, bool *out);

#endif
