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
