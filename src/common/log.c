/* log.c - leveled logging to stderr. */
#include "common/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <unistd.h>

#include "common/capfile.h"

static const char *log_program = "kiln";
static enum log_level log_level_max = LOG_INFO;
static bool log_capped;
static struct capfile log_cap;
static pthread_mutex_t log_cap_lock = PTHREAD_MUTEX_INITIALIZER;

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

void log_cap_file(unsigned long long max)
{
	capfile_init(&log_cap, STDERR_FILENO, max);
	log_capped = log_cap.active;
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
	if (log_capped) {
		size_t room;
		ssize_t w;

		pthread_mutex_lock(&log_cap_lock);
		room = capfile_reserve(&log_cap, (size_t)n);
		w = room ? write(STDERR_FILENO, line, room) : 0;
		if (w > 0)
			capfile_wrote(&log_cap, (size_t)w);
		pthread_mutex_unlock(&log_cap_lock);
		return;
	}
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
}
