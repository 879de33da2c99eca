/* logstore.h - the handlers' log lines, per function, as NDJSON files:
 *
 *   DIR/<function>.log     current file
 *   DIR/<function>.log.1   the previous one (rotation at max_bytes; two
 *                          files kept, so at most 2 * max_bytes per function)
 *
 * Each line is one JSON object (jansson):
 *   {"name","instance","call_id","stream","timestamp","text"}
 * with timestamp RFC 3339 in UTC with microseconds
 * ("2026-12-04T17:00:00.123456Z"). Thread-safe (one mutex).
 */
#ifndef KILN_DAEMON_LOGSTORE_H
#define KILN_DAEMON_LOGSTORE_H

#include <stddef.h>
#include <stdint.h>

struct logstore;

/* Opens the store in dir (created 0700 when missing); max_bytes is the
 * rotation size (0: 8 MiB). Returns 0 and *out, or -errno. */
int logstore_open(const char *dir, uint64_t max_bytes, struct logstore **out);

/* Closes it. Accepts NULL. */
void logstore_close(struct logstore *ls);

/* Appends the lines of text[0..len) (split at '\n'; a trailing partial line
 * is one line; invalid UTF-8 is replaced by U+FFFD; a line over 16 KiB is
 * cut) with the given fields. ts_ns is CLOCK_REALTIME ns. stream is
 * "stdout" or "stderr". Rotates when the file passes max_bytes. Returns 0 or
 * -errno. Function names are [a-z0-9][a-z0-9_-]{0,62} (else -EINVAL). */
int logstore_append(struct logstore *ls, const char *function, const char *instance,
		    const char *call_id, const char *stream, int64_t ts_ns, const char *text,
		    size_t len);

/* A query's result: NDJSON text (complete lines) in a malloc'd buffer. */
struct logstore_query {
	int64_t since_ns; /* lines with timestamp >= since_ns (0: all) */
	long tail;	  /* keep only the last `tail` matching lines (<0: all) */
};

/* Reads the function's lines (the .1 file, then the current one) that
 * match q into *out and *len (caller frees; empty when none). *cursor receives
 * an opaque position after the last line read, for logstore_follow.
 * Returns 0 or -errno (-EINVAL for a bad name; a function with no log is 0
 * with an empty result). */
int logstore_read(struct logstore *ls, const char *function, const struct logstore_query *q,
		  char **out, size_t *len, uint64_t *cursor);

/* The lines appended after *cursor (advancing it), at most max bytes of
 * complete lines. Lines lost to rotation are skipped. Returns 0 (with *len
 * 0 when nothing new) or -errno. */
int logstore_follow(struct logstore *ls, const char *function, uint64_t *cursor, char **out,
		    size_t *len, size_t max);

/* The last `max` bytes of text (the "text" fields joined with '\n') of one
 * call's lines, from the current file, for Lambda's X-Amz-Log-Result.
 * Returns 0 with a malloc'd *out (caller frees) or -errno. */
int logstore_call_tail(struct logstore *ls, const char *function, const char *call_id,
		       size_t max, char **out, size_t *len);

/* Removes the function's files. Returns 0 or -errno (missing is 0). */
int logstore_remove(struct logstore *ls, const char *function);

#endif
