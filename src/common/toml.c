/* toml.c - a small strict TOML subset parser (see toml.h). */
#include "common/toml.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/utf8.h"

#define TOML_MAX_INPUT	    (16U * 1024U * 1024U)
#define TOML_MAX_PARTS	    64	 /* parts of one dotted key or header */
#define TOML_MAX_TABLE_KEYS 4096 /* keys of one table */

/* How a table came to exist; decides what may extend it later. */
enum {
	TF_IMPLICIT = 1, /* a parent of a [header], not yet defined itself */
	TF_EXPLICIT = 2, /* defined by a [header] (or the root) */
	TF_DOTTED = 4,	 /* created by a dotted key */
};

struct toml_kv {
	char *key;
	struct toml_value *val;
};

struct toml_value {
	enum toml_type type;
	int line;
	int flags;
	union {
		char *s;
		int64_t i;
		bool b;
		struct {
			struct toml_kv *kv;
			size_t n, cap;
		} t;
	} u;
};

struct parser {
	const char *p, *end;
	const char *line_start;
	int line;
	struct toml_value *root, *cur;
	struct toml_error *err;
	int rc; /* set by fail(): -EINVAL, -E2BIG, -ENOMEM */
};

/* A growable NUL-terminated byte string. */
struct sbuf {
	char *s;
	size_t n, cap;
};

static int fail_at(struct parser *ps, const char *at, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail_at(struct parser *ps, const char *at, int rc, const char *fmt, ...)
{
	ps->rc = rc;
	if (ps->err) {
		va_list ap;

		ps->err->line = ps->line;
		ps->err->column = (int)(at - ps->line_start) + 1;
		va_start(ap, fmt);
		vsnprintf(ps->err->msg, sizeof(ps->err->msg), fmt, ap);
		va_end(ap);
	}
	return rc;
}

static int sbuf_put(struct sbuf *b, const char *data, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 32;
		char *s;

		while (cap < b->n + n + 1)
			cap *= 2;
		s = realloc(b->s, cap);
		if (!s)
			return -ENOMEM;
		b->s = s;
		b->cap = cap;
	}
	memcpy(b->s + b->n, data, n);
	b->n += n;
	b->s[b->n] = '\0';
	return 0;
}

/* ---- values ------------------------------------------------------------ */

static struct toml_value *value_new(enum toml_type type, int line)
{
	struct toml_value *v = calloc(1, sizeof(*v));

	if (v) {
		v->type = type;
		v->line = line;
	}
	return v;
}

void toml_free(struct toml_value *v)
{
	if (!v)
		return;
	if (v->type == TOML_TABLE) {
		for (size_t i = 0; i < v->u.t.n; i++) {
			free(v->u.t.kv[i].key);
			toml_free(v->u.t.kv[i].val);
		}
		free(v->u.t.kv);
	} else if (v->type == TOML_STRING) {
		free(v->u.s);
	}
	free(v);
}

static struct toml_value *table_find(const struct toml_value *t, const char *key)
{
	for (size_t i = 0; i < t->u.t.n; i++)
		if (strcmp(t->u.t.kv[i].key, key) == 0)
			return t->u.t.kv[i].val;
	return NULL;
}

/* Adds key -> val to table t; takes ownership of val on success. */
static int table_insert(struct parser *ps, const char *at, struct toml_value *t, const char *key,
			struct toml_value *val)
{
	char *k;

	if (t->u.t.n >= TOML_MAX_TABLE_KEYS)
		return fail_at(ps, at, -E2BIG, "more than %d keys in one table",
			       TOML_MAX_TABLE_KEYS);
	if (t->u.t.n == t->u.t.cap) {
		size_t cap = t->u.t.cap ? t->u.t.cap * 2 : 8;
		struct toml_kv *kv = realloc(t->u.t.kv, cap * sizeof(*kv));

		if (!kv)
			return fail_at(ps, at, -ENOMEM, "out of memory");
		t->u.t.kv = kv;
		t->u.t.cap = cap;
	}
	k = strdup(key);
	if (!k)
		return fail_at(ps, at, -ENOMEM, "out of memory");
	t->u.t.kv[t->u.t.n].key = k;
	t->u.t.kv[t->u.t.n].val = val;
	t->u.t.n++;
	return 0;
}

/* ---- lexing helpers -------------------------------------------------------- */

static bool at_eol(const struct parser *ps)
{
	return ps->p == ps->end || *ps->p == '\n' || *ps->p == '\r' || *ps->p == '#';
}

static void skip_ws(struct parser *ps)
{
	while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t'))
		ps->p++;
}

static bool is_bare(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-';
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Describes the byte c for a message: 'x' when printable, else its code. */
static const char *char_text(char c, char *buf, size_t size)
{
	if (c > 0x20 && c < 0x7f)
		snprintf(buf, size, "'%c'", c);
	else
		snprintf(buf, size, "byte 0x%02x", (unsigned char)c);
	return buf;
}

/* After a key/value or header: optional blanks, an optional comment, then a
 * newline or the end. Consumes the newline. */
static int expect_eol(struct parser *ps)
{
	char cbuf[16];

	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == '#') {
		while (ps->p < ps->end && *ps->p != '\n' && *ps->p != '\r') {
			unsigned char c = (unsigned char)*ps->p;

			if ((c < 0x20 && c != '\t') || c == 0x7f)
				return fail_at(ps, ps->p, -EINVAL,
					       "control character 0x%02x in a comment", c);
			ps->p++;
		}
	}
	if (ps->p == ps->end)
		return 0;
	if (*ps->p == '\r') {
		if (ps->p + 1 >= ps->end || ps->p[1] != '\n')
			return fail_at(ps, ps->p, -EINVAL,
				       "carriage return not followed by a newline");
		ps->p++;
	}
	if (*ps->p != '\n')
		return fail_at(ps, ps->p, -EINVAL, "expected the end of the line, found %s",
			       char_text(*ps->p, cbuf, sizeof(cbuf)));
	ps->p++;
	ps->line++;
	ps->line_start = ps->p;
	return 0;
}

static int put_utf8(struct sbuf *b, uint32_t cp)
{
	char u[4];
	size_t n;

	if (cp < 0x80) {
		u[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (char)(0xc0 | (cp >> 6));
		u[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (char)(0xe0 | (cp >> 12));
		u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		u[0] = (char)(0xf0 | (cp >> 18));
		u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	return sbuf_put(b, u, n);
}

/* Parses a one-line string starting at the quote into b (reset first). */
static int parse_string(struct parser *ps, struct sbuf *b)
{
	char q = *ps->p;
	const char *open = ps->p;

	b->n = 0;
	if (sbuf_put(b, "", 0))
		return fail_at(ps, ps->p, -ENOMEM, "out of memory");
	if (ps->end - ps->p >= 3 && ps->p[1] == q && ps->p[2] == q)
		return fail_at(ps, ps->p, -EINVAL, "multi-line strings are not supported");
	ps->p++;
	for (;;) {
		unsigned char c;

		if (ps->p == ps->end || *ps->p == '\n' || *ps->p == '\r')
			return fail_at(ps, open, -EINVAL, "unterminated string");
		c = (unsigned char)*ps->p;
		if (c == (unsigned char)q) {
			ps->p++;
			return 0;
		}
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return fail_at(ps, ps->p, -EINVAL, "control character 0x%02x in a string",
				       c);
		if (c == '\\' && q == '"') {
			const char *esc = ps->p;
			uint32_t cp = 0;
			int digits = 0;
			char ch;

			if (ps->p + 1 >= ps->end)
				return fail_at(ps, esc, -EINVAL, "unterminated string");
			ch = ps->p[1];
			ps->p += 2;
			switch (ch) {
			case 'b':
				cp = '\b';
				break;
			case 't':
				cp = '\t';
				break;
			case 'n':
				cp = '\n';
				break;
			case 'f':
				cp = '\f';
				break;
			case 'r':
				cp = '\r';
				break;
			case '"':
				cp = '"';
				break;
			case '\\':
				cp = '\\';
				break;
			case 'u':
				digits = 4;
				break;
			case 'U':
				digits = 8;
				break;
			default:
				return fail_at(ps, esc, -EINVAL,
					       "invalid escape sequence in a string");
			}
			for (int i = 0; i < digits; i++, ps->p++) {
				char h = ps->p < ps->end ? *ps->p : '\0';

				cp <<= 4;
				if (h >= '0' && h <= '9')
					cp |= (uint32_t)(h - '0');
				else if (h >= 'a' && h <= 'f')
					cp |= (uint32_t)(h - 'a' + 10);
				else if (h >= 'A' && h <= 'F')
					cp |= (uint32_t)(h - 'A' + 10);
				else
					return fail_at(ps, esc, -EINVAL,
						       "\\%c needs %d hexadecimal digits", ch,
						       digits);
			}
			if (digits && (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)))
				return fail_at(ps, esc, -EINVAL,
					       "\\%c escape is not a Unicode scalar value", ch);
			if (cp == 0)
				return fail_at(ps, esc, -EINVAL,
					       "NUL characters are not supported");
			if (put_utf8(b, cp))
				return fail_at(ps, esc, -ENOMEM, "out of memory");
			continue;
		}
		if (sbuf_put(b, ps->p, 1))
			return fail_at(ps, ps->p, -ENOMEM, "out of memory");
		ps->p++;
	}
}

/* Parses a dotted key (or a header's key) into parts[], their number in *n. */
static int parse_key(struct parser *ps, char **parts, int *n)
{
	struct sbuf b = {0};
	char cbuf[16];
	int rc;

	*n = 0;
	for (;;) {
		const char *start;

		skip_ws(ps);
		start = ps->p;
		if (*n == TOML_MAX_PARTS) {
			rc = fail_at(ps, start, -E2BIG, "more than %d parts in a dotted key",
				     TOML_MAX_PARTS);
			goto free_buf;
		}
		if (ps->p < ps->end && (*ps->p == '"' || *ps->p == '\'')) {
			rc = parse_string(ps, &b);
			if (rc)
				goto free_buf;
			parts[*n] = strdup(b.s);
		} else {
			while (ps->p < ps->end && is_bare(*ps->p))
				ps->p++;
			if (ps->p == start) {
				if (ps->p == ps->end || *ps->p == '\n' || *ps->p == '\r')
					rc = fail_at(ps, start, -EINVAL, "expected a key");
				else
					rc = fail_at(ps, start, -EINVAL, "expected a key, found %s",
						     char_text(*ps->p, cbuf, sizeof(cbuf)));
				goto free_buf;
			}
			parts[*n] = strndup(start, (size_t)(ps->p - start));
		}
		if (!parts[*n]) {
			rc = fail_at(ps, start, -ENOMEM, "out of memory");
			goto free_buf;
		}
		(*n)++;
		skip_ws(ps);
		if (ps->p < ps->end && *ps->p == '.') {
			ps->p++;
			continue;
		}
		rc = 0;
		goto free_buf;
	}
free_buf:
	free(b.s);
	return rc;
}

static void free_parts(char **parts, int n)
{
	for (int i = 0; i < n; i++)
		free(parts[i]);
}

/* A scalar that is not a string: integer, boolean or an unsupported kind. */
static int parse_bare_value(struct parser *ps, struct toml_value *v)
{
	const char *start = ps->p, *q;
	size_t len;
	bool neg = false, sign = false, prev_digit = false;
	uint64_t acc = 0, limit;

	while (ps->p < ps->end &&
	       (is_bare(*ps->p) || *ps->p == '+' || *ps->p == '.' || *ps->p == ':'))
		ps->p++;
	len = (size_t)(ps->p - start);
	if (len == 0)
		return fail_at(ps, start, -EINVAL, "expected a value");
	if (len == 4 && memcmp(start, "true", 4) == 0) {
		v->type = TOML_BOOLEAN;
		v->u.b = true;
		return 0;
	}
	if (len == 5 && memcmp(start, "false", 5) == 0) {
		v->type = TOML_BOOLEAN;
		v->u.b = false;
		return 0;
	}
	q = start;
	if (*q == '+' || *q == '-') {
		sign = true;
		neg = *q == '-';
		q++;
	}
	if ((size_t)(ps->p - q) == 3 && (memcmp(q, "inf", 3) == 0 || memcmp(q, "nan", 3) == 0))
		return fail_at(ps, start, -EINVAL, "floats are not supported");
	if (q == ps->p || !is_digit(*q))
		return fail_at(ps, start, -EINVAL, "expected a value, found '%.*s'",
			       (int)(len > 40 ? 40 : len), start);
	if (!sign && q[0] == '0' && ps->p - q > 1 && (q[1] == 'x' || q[1] == 'o' || q[1] == 'b'))
		return fail_at(ps, start, -EINVAL,
			       "only decimal integers are supported (not 0%c...)", q[1]);
	if (memchr(q, ':', (size_t)(ps->p - q)))
		return fail_at(ps, start, -EINVAL, "dates and times are not supported");
	for (const char *r = q; r < ps->p; r++) {
		if (*r == '.' || *r == 'e' || *r == 'E')
			return fail_at(ps, start, -EINVAL, "floats are not supported");
	}
	if (memchr(q, '-', (size_t)(ps->p - q)))
		return fail_at(ps, start, -EINVAL, "dates and times are not supported");
	if (q[0] == '0' && ps->p - q > 1)
		return fail_at(ps, start, -EINVAL, "leading zeros are not allowed in integers");
	limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (const char *r = q; r < ps->p; r++) {
		if (*r == '_') {
			if (!prev_digit || r + 1 >= ps->p || !is_digit(r[1]))
				return fail_at(ps, r, -EINVAL,
					       "'_' in an integer must be between digits");
			prev_digit = false;
			continue;
		}
		if (!is_digit(*r))
			return fail_at(ps, start, -EINVAL, "invalid integer '%.*s'",
				       (int)(len > 40 ? 40 : len), start);
		if (acc > (limit - (uint64_t)(*r - '0')) / 10)
			return fail_at(ps, start, -EINVAL, "integer out of the 64-bit range");
		acc = acc * 10 + (uint64_t)(*r - '0');
		prev_digit = true;
	}
	v->type = TOML_INTEGER;
	v->u.i = neg ? (int64_t)(0 - acc) : (int64_t)acc;
	return 0;
}

static int parse_value(struct parser *ps, struct toml_value **out)
{
	const char *start = ps->p;
	struct toml_value *v;
	int rc;

	if (ps->p == ps->end || *ps->p == '\n' || *ps->p == '\r' || *ps->p == '#')
		return fail_at(ps, start, -EINVAL, "expected a value after '='");
	if (*ps->p == '[')
		return fail_at(ps, start, -EINVAL, "arrays are not supported");
	if (*ps->p == '{')
		return fail_at(ps, start, -EINVAL, "inline tables are not supported");
	v = value_new(TOML_STRING, ps->line);
	if (!v)
		return fail_at(ps, start, -ENOMEM, "out of memory");
	if (*ps->p == '"' || *ps->p == '\'') {
		struct sbuf b = {0};

		rc = parse_string(ps, &b);
		if (rc) {
			free(b.s);
			free(v);
			return rc;
		}
		v->u.s = b.s;
	} else {
		rc = parse_bare_value(ps, v);
		if (rc) {
			free(v);
			return rc;
		}
	}
	*out = v;
	return 0;
}

/* Prints parts[0..n) as a dotted key into buf, for messages. */
static const char *key_text(char *const *parts, int n, char *buf, size_t size)
{
	size_t off = 0;

	buf[0] = '\0';
	for (int i = 0; i < n && off < size; i++) {
		int w = snprintf(buf + off, size - off, "%s%s", i ? "." : "", parts[i]);

		if (w < 0)
			break;
		off += (size_t)w;
	}
	return buf;
}

static int parse_header(struct parser *ps)
{
	char *parts[TOML_MAX_PARTS];
	char name[96];
	const char *open = ps->p;
	struct toml_value *t = ps->root;
	int n = 0, rc;

	if (ps->p + 1 < ps->end && ps->p[1] == '[')
		return fail_at(ps, open, -EINVAL, "arrays of tables ([[...]]) are not supported");
	ps->p++;
	rc = parse_key(ps, parts, &n);
	if (rc)
		goto free_parts;
	if (ps->p == ps->end || *ps->p != ']') {
		rc = fail_at(ps, ps->p, -EINVAL, "expected ']' to close the table header");
		goto free_parts;
	}
	ps->p++;
	for (int i = 0; i < n; i++) {
		struct toml_value *v = table_find(t, parts[i]);
		bool last = i == n - 1;

		if (!v) {
			v = value_new(TOML_TABLE, ps->line);
			if (!v) {
				rc = fail_at(ps, open, -ENOMEM, "out of memory");
				goto free_parts;
			}
			v->flags = last ? TF_EXPLICIT : TF_IMPLICIT;
			rc = table_insert(ps, open, t, parts[i], v);
			if (rc) {
				toml_free(v);
				goto free_parts;
			}
		} else if (v->type != TOML_TABLE) {
			rc = fail_at(ps, open, -EINVAL, "'%s' is already defined as a %s",
				     key_text(parts, i + 1, name, sizeof(name)),
				     toml_type_name(v->type));
			goto free_parts;
		} else if (last) {
			if (v->flags != TF_IMPLICIT) {
				rc = fail_at(ps, open, -EINVAL, "table [%s] is defined twice",
					     key_text(parts, n, name, sizeof(name)));
				goto free_parts;
			}
			v->flags = TF_EXPLICIT;
			v->line = ps->line;
		}
		t = v;
	}
	ps->cur = t;
	rc = 0;
free_parts:
	free_parts(parts, n);
	return rc;
}

static int parse_keyval(struct parser *ps)
{
	char *parts[TOML_MAX_PARTS];
	char name[96];
	const char *start = ps->p;
	struct toml_value *t = ps->cur, *val = NULL;
	int n = 0, rc;

	rc = parse_key(ps, parts, &n);
	if (rc)
		goto free_parts;
	if (ps->p == ps->end || *ps->p != '=') {
		rc = fail_at(ps, ps->p, -EINVAL, "expected '=' after the key '%s'",
			     key_text(parts, n, name, sizeof(name)));
		goto free_parts;
	}
	ps->p++;
	skip_ws(ps);
	rc = parse_value(ps, &val);
	if (rc)
		goto free_parts;
	for (int i = 0; i < n - 1; i++) {
		struct toml_value *v = table_find(t, parts[i]);

		if (!v) {
			v = value_new(TOML_TABLE, ps->line);
			if (!v) {
				rc = fail_at(ps, start, -ENOMEM, "out of memory");
				goto free_val;
			}
			v->flags = TF_DOTTED;
			rc = table_insert(ps, start, t, parts[i], v);
			if (rc) {
				toml_free(v);
				goto free_val;
			}
		} else if (v->type != TOML_TABLE) {
			rc = fail_at(ps, start, -EINVAL, "'%s' is already defined as a %s",
				     key_text(parts, i + 1, name, sizeof(name)),
				     toml_type_name(v->type));
			goto free_val;
		} else if (!(v->flags & TF_DOTTED)) {
			rc = fail_at(ps, start, -EINVAL,
				     "dotted key '%s' extends table [%s] defined elsewhere",
				     key_text(parts, n, name, sizeof(name)), parts[i]);
			goto free_val;
		}
		t = v;
	}
	if (table_find(t, parts[n - 1])) {
		rc = fail_at(ps, start, -EINVAL, "duplicate key '%s'",
			     key_text(parts, n, name, sizeof(name)));
		goto free_val;
	}
	rc = table_insert(ps, start, t, parts[n - 1], val);
	if (rc)
		goto free_val;
	val = NULL;
free_val:
	toml_free(val);
free_parts:
	free_parts(parts, n);
	return rc;
}

/* Whole-document checks before parsing: valid UTF-8, and no NUL. Reports
 * the first bad byte's line. */
static int check_utf8(struct parser *ps)
{
	const char *s = ps->p, *ls = ps->p;
	int line = 1;

	while (s < ps->end) {
		size_t len = utf8_decode(s, (size_t)(ps->end - s), NULL);

		if (len == 0 || *s == 0) {
			ps->line = line;
			ps->line_start = ls;
			return fail_at(ps, s, -EINVAL,
				       len ? "NUL byte in the input" : "invalid UTF-8");
		}
		if (*s == '\n') {
			line++;
			ls = s + 1;
		}
		s += len;
	}
	return 0;
}

int toml_parse(const char *text, size_t len, struct toml_value **root, struct toml_error *err)
{
	struct parser ps = {0};
	int rc;

	if (err) {
		err->line = 0;
		err->column = 0;
		err->msg[0] = '\0';
	}
	ps.err = err;
	ps.p = text;
	ps.end = text + len;
	ps.line_start = text;
	ps.line = 1;
	if (len > TOML_MAX_INPUT)
		return fail_at(&ps, text, -E2BIG, "input larger than %u bytes", TOML_MAX_INPUT);
	if (len && !text)
		return fail_at(&ps, text, -EINVAL, "no input");
	rc = check_utf8(&ps);
	if (rc)
		return rc;
	ps.line = 1;
	ps.line_start = text;
	if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0) {
		ps.p += 3;
		ps.line_start = ps.p;
	}
	ps.root = value_new(TOML_TABLE, 1);
	if (!ps.root)
		return -ENOMEM;
	ps.root->flags = TF_EXPLICIT;
	ps.cur = ps.root;
	while (ps.p < ps.end) {
		skip_ws(&ps);
		if (at_eol(&ps)) {
			rc = expect_eol(&ps);
		} else if (*ps.p == '[') {
			rc = parse_header(&ps);
			if (!rc)
				rc = expect_eol(&ps);
		} else {
			rc = parse_keyval(&ps);
			if (!rc)
				rc = expect_eol(&ps);
		}
		if (rc)
			goto free_root;
	}
	*root = ps.root;
	return 0;
free_root:
	toml_free(ps.root);
	return rc;
}

enum toml_type toml_type_of(const struct toml_value *v)
{
	return v->type;
}

const char *toml_type_name(enum toml_type type)
{
	switch (type) {
	case TOML_TABLE:
		return "table";
	case TOML_STRING:
		return "string";
	case TOML_INTEGER:
		return "integer";
	case TOML_BOOLEAN:
		return "boolean";
	}
	return "value";
}

int toml_line(const struct toml_value *v)
{
	return v ? v->line : 0;
}

const struct toml_value *toml_get(const struct toml_value *t, const char *key)
{
	if (!t || t->type != TOML_TABLE || !key)
		return NULL;
	return table_find(t, key);
}

size_t toml_table_size(const struct toml_value *t)
{
	return t && t->type == TOML_TABLE ? t->u.t.n : 0;
}

const char *toml_table_key(const struct toml_value *t, size_t i)
{
	return i < toml_table_size(t) ? t->u.t.kv[i].key : NULL;
}

const struct toml_value *toml_table_value(const struct toml_value *t, size_t i)
{
	return i < toml_table_size(t) ? t->u.t.kv[i].val : NULL;
}

const char *toml_string(const struct toml_value *v)
{
	return v && v->type == TOML_STRING ? v->u.s : NULL;
}

int toml_integer(const struct toml_value *v, int64_t *out)
{
	if (!v || v->type != TOML_INTEGER)
		return -EINVAL;
	*out = v->u.i;
	return 0;
}

int toml_boolean(const struct toml_value *v, bool *out)
{
	if (!v || v->type != TOML_BOOLEAN)
		return -EINVAL;
	*out = v->u.b;
	return 0;
}
