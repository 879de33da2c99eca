/* trace.h - a connection's timeline in kiln-init: when it was accepted,
 * when each frame was handled, when output was queued and written, from
 * the guest's CLOCK_MONOTONIC. The host asks for it with a TRACE frame
 * (docs/protocol.md) to see where a restore's first answer spends its
 * time inside the guest. Fixed size, no allocation: the first
 * TRACE_MAX_EVENTS events after the accept (or the last TRACE, or an
 * ENTROPY on a connection that already carried LOAD or INVOKE: one a
 * snapshot kept open, whose timeline starts over at the restore's first
 * frame) are kept, later ones only counted.
 */
#ifndef KILN_AGENT_TRACE_H
#define KILN_AGENT_TRACE_H

#include <stddef.h>
#include <stdint.h>

#define TRACE_MAX_EVENTS 32

enum trace_what {
	TRACE_ACCEPT, /* the connection was accepted (t = 0) */
	TRACE_RECV,   /* a complete frame was handed to its handler */
	TRACE_QUEUED, /* a frame was queued for the host */
	TRACE_WROTE,  /* bytes were written to the socket */
	TRACE_WHATS,
};

struct trace_event {
	uint64_t ns;	/* CLOCK_MONOTONIC */
	uint32_t bytes; /* frame payload or bytes written */
	uint8_t what;	/* enum trace_what */
	uint8_t type;	/* frame type (RECV, QUEUED) */
};

struct trace {
	uint64_t start_ns; /* the accept, or the last trace_restart */
	uint32_t n;	   /* events kept */
	uint32_t dropped;  /* events past TRACE_MAX_EVENTS */
	struct trace_event ev[TRACE_MAX_EVENTS];
};

/* Starts a new timeline at now_ns with an event `what` (TRACE_ACCEPT for a
 * new connection). */
void trace_restart(struct trace *t, enum trace_what what, uint64_t now_ns);

/* Records one event at now_ns. */
void trace_add(struct trace *t, enum trace_what what, uint8_t type, uint32_t bytes,
	       uint64_t now_ns);

/* Formats the timeline as text lines "+US WHAT [TYPE] BYTES" (microseconds
 * since the start), then "dropped N" when events were lost. Returns the
 * length written (always NUL-terminated when size > 0; truncated at a line
 * boundary when the buffer is short). */
size_t trace_format(const struct trace *t, char *buf, size_t size);

/* Formats the guest-wide counters of /proc/stat's text (`stat`, `len`
 * bytes, need not be NUL-terminated) as one line "counts syscalls N
 * interrupts N switches N\n": system calls (the "syscalls" line kiln's
 * kernel adds; the key is left out when the line is absent), interrupts
 * ("intr", the total) and context switches ("ctxt") since boot. Returns
 * the length written (NUL-terminated when size > 0), 0 when the line does
 * not fit or `stat` has neither "intr" nor "ctxt". */
size_t trace_format_counts(const char *stat, size_t len, char *buf, size_t size);

#endif
