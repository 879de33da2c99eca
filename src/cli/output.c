/* output.c - one-line messages and terminal-safe text (see output.h). */
#include "cli/output.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at s (at most n bytes) and its code
 * point, or 0 when the bytes are not valid UTF-8. */
static size_t utf8_seq(const unsigned char *s, size_t n, uint32_t *cp)
{
	size_t need;
	uint32_t c, min;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	if ((s[0] & 0xe0) == 0xc0) {
		need = 1;
		c = s[0] & 0x1f;
		min = 0x80;
	} else if ((s[0] & 0xf0) == 0xe0) {
		need = 2;
		c = s[0] & 0x0f;
		min = 0x800;
	} else if ((s[0] & 0xf8) == 0xf0) {
		need = 3;
		c = s[0] & 0x07;
		min = 0x10000;
	} else {
		return 0;
	}
	if (n <= need)
		return 0;
	for (size_t i = 1; i <= need; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return need + 1;
}

char *out_sanitize(const char *s, size_t len, int flags)
{
	const unsigned char *p = (const unsigned char *)s;
	char *out = malloc(len + 1);
	size_t o = 0;

	if (!out)
		return NULL;
	for (size_t i = 0; i < len;) {
		uint32_t cp;
		size_t n = utf8_seq(p + i, len - i, &cp);

		if (n == 0) {
			out[o++] = '?';
			i++;
			continue;
		}
		if (cp == '\n') {
			out[o++] = (flags & OUT_KEEP_NEWLINES) ? '\n' : ' ';
		} else if (cp == '\t') {
			out[o++] = (flags & OUT_KEEP_TABS) ? '\t' : ' ';
		} else if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0)) {
			out[o++] = '?';
		} else {
			memcpy(out + o, p + i, n);
			o += n;
		}
		i += n;
	}
	out[o] = '\0';
	return out;
}

size_t out_width(const char *s)
{
	size_t w = 0;

	for (; *s; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			w++;
	return w;
}

static void vmessage(const char *prefix, const char *fmt, va_list ap)
{
	char buf[2048];
	char *clean;
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);

	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(buf))
		n = sizeof(buf) - 1;
	/* Trailing newlines from server messages are not part of the line. */
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
		n--;
	clean = out_sanitize(buf, (size_t)n, 0);
	fprintf(stderr, "kiln: %s: %s\n", prefix, clean ? clean : "(out of memory)");
	free(clean);
}

void out_error(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	va_start(ap, fmt);
	vmessage("error", fmt, ap);
	va_end(ap);
}

void out_warn(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	va_start(ap, fmt);
	vmessage("warning", fmt, ap);
	va_end(ap);
}

int out_json(FILE *f, const json_t *j)
{
	if (json_dumpf(j, f, JSON_INDENT(2) | JSON_REAL_PRECISION(10)) || fputc('\n', f) == EOF)
		return -EIO;
	return 0;
}

void out_text(FILE *f, const char *s, int flags)
{
	size_t len = strlen(s);
	char *clean = out_sanitize(s, len, flags);

	if (!clean)
		return;
	fputs(clean, f);
	if (!len || clean[strlen(clean) - 1] != '\n')
		fputc('\n', f);
	free(clean);
}
