/* argv.c - shell-like command-line splitting and kernel command-line lookups. */
#include "common/argv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Where argv_scan writes: nothing on the counting pass (vec == NULL). */
struct argv_out {
	char **vec;
	char *buf;
	size_t words;
	size_t bytes;
};

static bool argv_is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static int argv_put(struct argv_out *o, char c)
{
	if (o->bytes >= ARGV_MAX_BYTES)
		return -E2BIG;
	if (o->buf)
		o->buf[o->bytes] = c;
	o->bytes++;
	return 0;
}

/* Scans the body of a double-quoted string; *pp points after the opening
 * quote and is left after the closing one. */
static int argv_scan_dquote(const char **pp, struct argv_out *o)
{
	const char *p = *pp;
	int err;

	for (;;) {
		if (*p == '\0')
			return -EINVAL;
		if (*p == '"')
			break;
		if (*p == '\\' && p[1] == '\n') {
			p += 2;
			continue;
		}
		if (*p == '\\' && (p[1] == '"' || p[1] == '\\' || p[1] == '$' || p[1] == '`'))
			p++;
		err = argv_put(o, *p++);
		if (err)
			return err;
	}
	*pp = p + 1;
	return 0;
}

/* Scans one word starting at *pp (not a blank, not the end). */
static int argv_scan_word(const char **pp, struct argv_out *o)
{
	const char *p = *pp;
	int err = 0;

	while (*p != '\0' && !argv_is_blank(*p) && !err) {
		char c = *p++;

		if (c == '\'') {
			while (*p != '\'' && !err) {
				if (*p == '\0')
					return -EINVAL;
				err = argv_put(o, *p++);
			}
			p++;
		} else if (c == '"') {
			err = argv_scan_dquote(&p, o);
		} else if (c == '\\') {
			if (*p == '\0')
				return -EINVAL;
			if (*p == '\n')
				p++;
			else
				err = argv_put(o, *p++);
		} else {
			err = argv_put(o, c);
		}
	}
	if (err)
		return err;
	*pp = p;
	return argv_put(o, '\0');
}

/* One pass over s: counts words and bytes, and stores them when o->vec is set. */
static int argv_scan(const char *s, struct argv_out *o)
{
	const char *p = s;
	int err;

	o->words = 0;
	o->bytes = 0;
	for (;;) {
		/* Blanks and line continuations between words. */
		while (argv_is_blank(*p) || (p[0] == '\\' && p[1] == '\n'))
			p += argv_is_blank(*p) ? 1 : 2;
		if (*p == '\0')
			return 0;
		if (o->words >= ARGV_MAX_ARGS)
			return -E2BIG;
		if (o->vec)
			o->vec[o->words] = o->buf + o->bytes;
		o->words++;
		err = argv_scan_word(&p, o);
		if (err)
			return err;
	}
}

int argv_split(const char *s, char ***argv_out, int *argc_out)
{
	struct argv_out o = {0};
	char **vec;
	int err;

	if (!s || !argv_out || !argc_out)
		return -EINVAL;
	err = argv_scan(s, &o);
	if (err)
		return err;
	/* words <= ARGV_MAX_ARGS and bytes <= ARGV_MAX_BYTES: no overflow. */
	vec = malloc((o.words + 1) * sizeof(*vec) + o.bytes);
	if (!vec)
		return -ENOMEM;
	o.vec = vec;
	o.buf = (char *)(vec + o.words + 1);
	err = argv_scan(s, &o);
	if (err) {
		free(vec);
		return err;
	}
	vec[o.words] = NULL;
	*argv_out = vec;
	*argc_out = (int)o.words;
	return 0;
}

void argv_free(char **argv)
{
	free(argv);
}

/* Kernel parameter words: blanks separate, double quotes group (as the
 * kernel's next_arg does). Returns the end of the word found at or after p
 * and stores its start in *start, or returns NULL at the end of the string. */
static const char *argv_next_kparam(const char *p, const char **start)
{
	bool in_quote = false;

	while (argv_is_blank(*p))
		p++;
	if (*p == '\0')
		return NULL;
	*start = p;
	for (; *p != '\0'; p++) {
		if (argv_is_blank(*p) && !in_quote)
			break;
		if (*p == '"')
			in_quote = !in_quote;
	}
	return p;
}

static bool argv_is_separator(const char *start, const char *end)
{
	return end - start == 2 && start[0] == '-' && start[1] == '-';
}

const char *argv_find_command(const char *cmdline)
{
	const char *p = cmdline, *start = NULL;

	if (!cmdline)
		return NULL;
	while ((p = argv_next_kparam(p, &start)) != NULL) {
		if (argv_is_separator(start, p)) {
			while (argv_is_blank(*p))
				p++;
			return *p != '\0' ? p : NULL;
		}
	}
	return NULL;
}

int argv_get_param(const char *cmdline, const char *key, char *val, size_t val_size)
{
	const char *p = cmdline, *start = NULL, *found = NULL;
	size_t key_len, found_len = 0;

	if (!cmdline || !key || !*key || !val || val_size == 0)
		return -EINVAL;
	key_len = strlen(key);
	while ((p = argv_next_kparam(p, &start)) != NULL) {
		const char *tok = start, *eq, *v;
		size_t len = (size_t)(p - start), vlen;
		bool quoted = false;

		if (argv_is_separator(start, p))
			break;
		if (tok[0] == '"') {
			tok++;
			len--;
			quoted = true;
		}
		eq = memchr(tok, '=', len);
		if (!eq || (size_t)(eq - tok) != key_len || memcmp(tok, key, key_len) != 0)
			continue;
		v = eq + 1;
		vlen = len - key_len - 1;
		if (vlen > 0 && v[0] == '"') {
			v++;
			vlen--;
			quoted = true;
		}
		if (quoted && vlen > 0 && v[vlen - 1] == '"')
			vlen--;
		found = v;
		found_len = vlen;
	}
	if (!found)
		return -ENOENT;
	if (found_len >= val_size)
		return -ENOSPC;
	memcpy(val, found, found_len);
	val[found_len] = '\0';
	return 0;
}
