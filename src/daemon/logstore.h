/* logstore.h - the handlers' log lines, per function, as NDJSON files:
 *
 *   DIR/<function>.log     current file
 *   DIR/<function>.log.1   the previous one (rotation at max_bytes)
 *   DIR/<function>.log.N   older ones, 2 <= N <= keep (logstore_set_keep;
 *                          default keep 1: none), on disk for the operator,
 *                          not served by the readers below
 *
 * So a function's logs take at most (keep + 1) * max_bytes of disk, however
 * much its guests print.
 *
 * Each line is one JSON object (jansson):
 *   {"name","instance","call_id","stream","timestamp","text"}
 * with timestamp RFC 3339 in UTC with microseconds
 * ("2026-12-04T17:00:00.123456Z"). Thread-safe (one mutex).
 * "instance" and "call_id" are null when passed as NULL; they are cut at
 * 1 KiB and, like "text", made valid UTF-8 (U+FFFD).
 *
 * Lines are written with O_APPEND, whole lines per write(2); a line torn by
 * a crash (bytes after the last '\n') is never returned by readers and is
 * cut off before the next append.
 *
 * Cursors (logstore_read, logstore_follow): bits 63..40 hold a generation,
 * bits 39..0 a byte offset into the file of that generation. The store
 * gives each function's current and .1 file a generation (from one
 * store-wide counter, in memory only); a rotation moves the current file's
 * generation to .1 and gives the new current file a fresh one;
 * logstore_remove forgets both. So a follower whose cursor is in .1 finishes
 * .1 and continues in the current file; one whose file was rotated out
 * entirely starts at the beginning of .1 (the lines in between are lost,
 * never repeated). Cursor 0 means "before everything". A cursor is only
 * meaningful to the logstore that made it (not across restarts).
 */
#ifndef KILN_DAEMON_LOGSTORE_H
#define KILN_DAEMON_LOGSTORE_H

#include <stddef.h>
#include <stdint.h>

struct logstore;

/* Opens the store in dir (created 0700 when missing, parent must exist);
 * max_bytes is the rotation size (0: 8 MiB; at most 64 GiB, else -EINVAL).
 * Returns 0 and *out, or -errno. */
int logstore_open(const char *dir, uint64_t max_bytes, struct logstore **out);

/* Largest number of rotated files kept per function. */
#define LOGSTORE_KEEP_MAX 99U

/* Sets how many rotated files each function keeps (1..LOGSTORE_KEEP_MAX;
 * the default is 1: only .1). Rotation shifts .1 -> .2 ... and removes the
 * file past .keep. Returns 0 or -EINVAL. */
int logstore_set_keep(struct logstore *ls, unsigned keep);

/* Closes it. Accepts NULL. */
void logstore_close(struct logstore *ls);

/* Appends the lines of text[0..len) (split at '\n'; a trailing partial line
 * is one line; invalid UTF-8 is replaced by U+FFFD; a line over 16 KiB is
 * cut) with the given fields. ts_ns is CLOCK_REALTIME ns. stream is
 * "stdout" or "stderr". Rotates when the file passes max_bytes. Returns 0 or
 * -errno. Function names are [a-z0-9][a-z0-9_-]{0,62} (else -EINVAL).
 * The 16 KiB cut is of the repaired UTF-8 text, on a character boundary;
 * the rest of that line is dropped. A symlink in place of a file is refused
 * (-ELOOP). */
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
 * with an empty result and *cursor 0). q may be NULL (everything), cursor
 * may be NULL. Timestamps are kept in microseconds: since_ns matches lines
 * whose microsecond time is >= since_ns. */
int logstore_read(struct logstore *ls, const char *function, const struct logstore_query *q,
		  char **out, size_t *len, uint64_t *cursor);

/* The lines appended after *cursor (advancing it), at most max bytes of
 * complete lines (max 0: 1 MiB), but always at least one line when one is
 * there, even a longer one. Lines lost to rotation are skipped (see the
 * cursor above). *out is malloc'd even when empty (caller frees). Returns 0
 * (with *len 0 when nothing new) or -errno. */
int logstore_follow(struct logstore *ls, const char *function, uint64_t *cursor, char **out,
		    size_t *len, size_t max);

/* The last `max` bytes of text (the "text" fields joined with '\n') of one
 * call's lines, from the current file, for Lambda's X-Amz-Log-Result. The
 * cut starts on a UTF-8 character boundary (so it may be a little shorter).
 * Returns 0 with a malloc'd *out (caller frees; "" when none) or -errno. */
int logstore_call_tail(struct logstore *ls, const char *function, const char *call_id, size_t max,
		       char **out, size_t *len);

/* Removes the function's files, archived ones included. Returns 0 or
 * -errno (missing is 0). */
int logstore_remove(struct logstore *ls, const char *function);

#endif
