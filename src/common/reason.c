/* reason.c - formatting the reason of a failure (reason.h). */
#include "common/reason.h"

#include <stdarg.h>
#include <stdio.h>

int reason_fail(char *why, size_t why_len, int err, const char *fmt, ...)
{
	va_list ap;

	if (why && why_len) {
		va_start(ap, fmt);
		vsnprintf(why, why_len, fmt, ap);
		va_end(ap);
	}
	return err;
}
