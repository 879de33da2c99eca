/* output.c - one-line messages and terminal-safe text (see output.h). */
#include "cli/output.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/utf8.h"

char *out_sanitize(const char *s, size_t len, int flags)
{
	const unsigned char *p = (const unsigned char *)s;
	char *out = malloc(len + 1);
	size_t o = 0;

	if (!out)
		return NULL;
	for (size_t i = 0; i < len;) {
		uint32_t cp;
		size_t n = utf8_decode(p + i, len - i, &cp);

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
