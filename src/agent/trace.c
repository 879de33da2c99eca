/* trace.c - a connection's timeline (trace.h). */
#include "agent/trace.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "common/proto.h"

void trace_restart(struct trace *t, enum trace_what what, uint64_t now_ns)
{
	t->start_ns = now_ns;
	t->n = 0;
	t->dropped = 0;
	trace_add(t, what, 0, 0, now_ns);
}

void trace_add(struct trace *t, enum trace_what what, uint8_t type, uint32_t bytes, uint64_t now_ns)
{
	if (t->n >= TRACE_MAX_EVENTS) {
		t->dropped++;
		return;
	}
	t->ev[t->n++] = (struct trace_event){
		.ns = now_ns, .bytes = bytes, .what = (uint8_t)what, .type = type};
}

size_t trace_format(const struct trace *t, char *buf, size_t size)
{
	static const char *const whats[TRACE_WHATS] = {
		[TRACE_ACCEPT] = "accept",
		[TRACE_RECV] = "recv",
		[TRACE_QUEUED] = "queued",
		[TRACE_WROTE] = "wrote",
	};
	size_t used = 0;

	if (size == 0)
		return 0;
	buf[0] = '\0';
	for (uint32_t i = 0; i <= t->n && i <= TRACE_MAX_EVENTS; i++) {
		char line[96];
		int n;

		if (i == t->n) {
			if (!t->dropped)
				break;
			n = snprintf(line, sizeof(line), "dropped %" PRIu32 "\n", t->dropped);
		} else {
			const struct trace_event *e = &t->ev[i];
			uint64_t us = e->ns >= t->start_ns ? (e->ns - t->start_ns) / 1000 : 0;
			bool typed = e->what == TRACE_RECV || e->what == TRACE_QUEUED;

			n = snprintf(line, sizeof(line), "+%" PRIu64 " %s%s%s %" PRIu32 "\n", us,
				     e->what < TRACE_WHATS ? whats[e->what] : "?", typed ? " " : "",
				     typed ? proto_type_name(e->type) : "", e->bytes);
		}
		if (n < 0 || (size_t)n >= size - used)
			break;
		memcpy(buf + used, line, (size_t)n + 1);
		used += (size_t)n;
	}
	return used;
}

/* The decimal after "KEY " at the start of a line of `stat`; false when no
 * line starts with it. */
static bool trace_stat_value(const char *stat, size_t len, const char *key, uint64_t *out)
{
	size_t klen = strlen(key);

	for (size_t i = 0; i < len;) {
		size_t end = i;

		while (end < len && stat[end] != '\n')
			end++;
		if (end - i > klen && memcmp(stat + i, key, klen) == 0 && stat[i + klen] == ' ') {
			uint64_t v = 0;
			size_t k = i + klen + 1;
			bool any = false;

			for (; k < end && stat[k] >= '0' && stat[k] <= '9'; k++) {
				if (v > (UINT64_MAX - 9) / 10)
					return false;
				v = v * 10 + (uint64_t)(stat[k] - '0');
				any = true;
			}
			if (!any)
				return false;
			*out = v;
			return true;
		}
		i = end + 1;
	}
	return false;
}

size_t trace_format_counts(const char *stat, size_t len, char *buf, size_t size)
{
	uint64_t calls = 0, intr = 0, ctxt = 0;
	bool has_calls = trace_stat_value(stat, len, "syscalls", &calls);
	bool has_intr = trace_stat_value(stat, len, "intr", &intr);
	bool has_ctxt = trace_stat_value(stat, len, "ctxt", &ctxt);
	char calls_text[40] = "";
	int n;

	if (size == 0)
		return 0;
	buf[0] = '\0';
	if (!has_intr && !has_ctxt)
		return 0;
	if (has_calls)
		snprintf(calls_text, sizeof(calls_text), " syscalls %" PRIu64, calls);
	n = snprintf(buf, size, "counts%s interrupts %" PRIu64 " switches %" PRIu64 "\n",
		     calls_text, intr, ctxt);
	if (n < 0 || (size_t)n >= size) {
		buf[0] = '\0';
		return 0;
	}
	return (size_t)n;
}
