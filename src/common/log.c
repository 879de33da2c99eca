/* log.c - leveled logging to stderr. */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

static const char *log_program = "kiln";
static enum log_level log_level_max = LOG_INFO;

static const char *const log_level_names[] = {
	[LOG_ERROR] = "error",
	[LOG_WARN] = "warning",
	[LOG_INFO] = "info",
	[LOG_DEBUG] = "debug",
};

void log_set_program(const char *name)
{
	if (name)
		log_program = name;
}

void log_set_level(enum log_level level)
{
	log_level_max = level;
}

enum log_level log_get_level(void)
{
	return log_level_max;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n, m;

	if (level > log_level_max)
		return;
	n = snprintf(line, sizeof(line), "%s: %s: ", log_program, log_level_names[level]);
	if (n < 0 || (size_t)n >= sizeof(line))
		return;
	va_start(ap, fmt);
	m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		return;
	n += m;
	if ((size_t)n > sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	/* One write so concurrent lines stay whole; a short write is not retried. */
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
}
