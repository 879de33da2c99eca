/* progress.c - the live progress line (see progress.h). */
#include "cli/progress.h"

#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cli/output.h"
#include "cli/units.h"

struct progress {
	FILE *out;
	bool tty;
	bool line_open; /* a live line is on screen without its newline */
	char *label;
	char last[64];
	unsigned ticks;
	struct timespec start;
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct progress *progress_create(FILE *out, bool tty, const char *label)
{
	struct progress *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->label = out_sanitize(label, strlen(label), 0);
	if (!p->label) {
		free(p);
		return NULL;
	}
	p->out = out;
	p->tty = tty;
	clock_gettime(CLOCK_MONOTONIC, &p->start);
	return p;
}

void progress_destroy(struct progress *p)
{
	if (!p)
		return;
	if (p->line_open) {
		fputc('\n', p->out);
		fflush(p->out);
	}
	free(p->label);
	free(p);
}

int64_t progress_elapsed_ms(const struct progress *p)
{
	return now_ms() - ((int64_t)p->start.tv_sec * 1000 + p->start.tv_nsec / 1000000);
}

int progress_format(char *buf, size_t size, const char *label, const char *stage,
		    int64_t elapsed_ms, char spin, size_t columns)
{
	char el[32];
	int n;

	units_format_elapsed(elapsed_ms, el, sizeof(el));
	if (spin)
		n = snprintf(buf, size, "%c %s: %s (%s)", spin, label, stage, el);
	else
		n = snprintf(buf, size, "%s: %s (%s)", label, stage, el);
	if (n < 0 || size == 0)
		return n;
	if (columns > 0) {
		size_t cp = 0, i;

		for (i = 0; buf[i]; i++) {
			if (((unsigned char)buf[i] & 0xc0) != 0x80 && ++cp > columns)
				break;
		}
		buf[i] = '\0';
		n = (int)i;
	}
	return n;
}

static size_t term_columns(FILE *out)
{
	struct winsize ws;

	if (ioctl(fileno(out), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1)
		return (size_t)ws.ws_col - 1;
	return 79;
}

static void draw(struct progress *p, const char *stage, bool final)
{
	static const char spinner[] = "|/-\\";
	char line[512];
	char *clean = out_sanitize(stage, strlen(stage), 0);
	const char *st = clean ? clean : "?";

	if (p->tty) {
		progress_format(line, sizeof(line), p->label, st, progress_elapsed_ms(p),
				final ? '\0' : spinner[p->ticks++ % 4], term_columns(p->out));
		fprintf(p->out, "\r%s\033[K", line);
		p->line_open = true;
		if (final) {
			fputc('\n', p->out);
			p->line_open = false;
		}
	} else {
		progress_format(line, sizeof(line), p->label, st, progress_elapsed_ms(p), '\0', 0);
		fprintf(p->out, "%s\n", line);
	}
	fflush(p->out);
	snprintf(p->last, sizeof(p->last), "%s", stage);
	free(clean);
}

void progress_update(struct progress *p, const char *stage)
{
	if (!p)
		return;
	if (p->tty || strcmp(p->last, stage) != 0)
		draw(p, stage, false);
}

void progress_finish(struct progress *p, const char *stage)
{
	if (p)
		draw(p, stage, true);
}
