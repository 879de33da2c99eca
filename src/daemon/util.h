/* util.h - small helpers shared by kilnd's files. */
#ifndef KILN_DAEMON_UTIL_H
#define KILN_DAEMON_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* CLOCK_MONOTONIC in milliseconds / nanoseconds. */
int64_t util_now_ms(void);

/* The CLOCK_REALTIME instant timeout_ms from now, for
 * pthread_cond_timedwait. */
void util_deadline(int timeout_ms, struct timespec *out);
int64_t util_mono_ns(void);
/* CLOCK_REALTIME in nanoseconds. */
int64_t util_wall_ns(void);

/* Writes all of buf to fd (retrying short writes and EINTR). 0 or -errno. */
int util_write_all(int fd, const void *buf, size_t len);
/* Reads exactly len bytes into buf (retrying short reads and EINTR). 0,
 * -EPIPE at end of file before len, or -errno. */
int util_read_all(int fd, void *buf, size_t len);

/* The invocation context key of an HTTP header: "http_header_" and the
 * name in lower case with '-' as '_', cut to fit out[0..size). Returns out. */
char *util_header_key(char *out, size_t size, const char *name);

/* Removes dirfd/name (AT_FDCWD: a path) and everything under it, never
 * following symbolic links, at most 64 directories deep. Returns 0, -ENOENT
 * when it does not exist, -ELOOP when deeper, or -errno. */
int util_rm_tree_at(int dirfd, const char *name);

/* Creates/truncates path with exactly buf[0..len) (mode 0600). 0 or -errno. */
int util_write_file(const char *path, const void *buf, size_t len);

/* Copies the regular file src (at most max bytes) to dst through dst.tmp,
 * renamed over dst (mode 0644). Returns 0 or -errno with a message in err
 * (-EFBIG: src is larger than max). */
int util_copy_file(const char *src, const char *dst, size_t max, char *err, size_t esz);

/* A random version-4 UUID into out (37 bytes with the NUL). */
void util_uuid(char out[37]);

/* RFC 3339 UTC time of ts_ns with microseconds into out (32 bytes). */
void util_rfc3339(int64_t ts_ns, char out[32]);

/* mkdir -p with mode. 0 or -errno. */
int util_mkdirs(const char *path, unsigned mode);

/* Base64 (standard alphabet, padded). util_b64_encode returns a malloc'd
 * NUL-terminated string or NULL. util_b64_decode decodes in[0..len) into a
 * malloc'd buffer (*out, *out_len), ignoring whitespace; returns 0,
 * -EINVAL for bad input, -ENOMEM. */
char *util_b64_encode(const void *in, size_t len);
int util_b64_decode(const char *in, size_t len, uint8_t **out, size_t *out_len);

/* snprintf that says whether it fit: returns 0, or -ENAMETOOLONG when the
 * output was truncated (out is still NUL-terminated). */
int util_fmt(char *out, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
