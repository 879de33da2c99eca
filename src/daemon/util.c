/* util.c - small helpers shared by kilnd's files. */
#include "daemon/util.h"

#include "common/atomicfile.h"
#include "common/readfile.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int64_t util_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t util_now_ms(void)
{
	return util_mono_ns() / 1000000;
}

int64_t util_wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int util_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int util_read_all(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = read(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EPIPE;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

char *util_header_key(char *out, size_t size, const char *name)
{
	size_t n = (size_t)snprintf(out, size, "http_header_");

	for (const char *p = name; *p && n + 1 < size; p++)
		out[n++] = *p == '-' ? '_' : (char)tolower((unsigned char)*p);
	if (n < size)
		out[n] = '\0';
	return out;
}

int util_write_file(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	int r;

	if (fd < 0)
		return -errno;
	r = util_write_all(fd, buf, len);
	close(fd);
	return r;
}

int util_copy_file(const char *src, const char *dst, size_t max, char *err, size_t esz)
{
	uint8_t *buf = NULL;
	size_t len;
	int fd, r;

	fd = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		r = -errno;
		util_fmt(err, esz, "%s: %s", src, strerror(errno));
		return r;
	}
	r = readfile_fd(fd, max, &buf, &len);
	close(fd);
	if (r == -EINVAL || r == -EFBIG) {
		util_fmt(err, esz, "%s: not a regular file of at most %zu bytes", src, max);
		return -EFBIG;
	}
	if (r) {
		util_fmt(err, esz, "%s: %s", src, strerror(-r));
		return r;
	}
	r = atomicfile_write(dst, buf, len, 0644);
	if (r)
		util_fmt(err, esz, "%s: %s", dst, strerror(-r));
	free(buf);
	return r;
}

void util_deadline(int timeout_ms, struct timespec *out)
{
	clock_gettime(CLOCK_REALTIME, out);
	out->tv_sec += timeout_ms / 1000;
	out->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (out->tv_nsec >= 1000000000L) {
		out->tv_sec++;
		out->tv_nsec -= 1000000000L;
	}
}

void util_uuid(char out[37])
{
	uint8_t b[16];

	if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
		for (size_t i = 0; i < sizeof(b); i++)
			b[i] = (uint8_t)rand();
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
		 b[13], b[14], b[15]);
}

void util_rfc3339(int64_t ts_ns, char out[32])
{
	time_t s = (time_t)(ts_ns / 1000000000);
	struct tm tm;

	char date[24];

	gmtime_r(&s, &tm);
	strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, 32, "%.19s.%06uZ", date, (unsigned)((ts_ns % 1000000000) / 1000) % 1000000U);
}

int util_mkdirs(const char *path, unsigned mode)
{
	char tmp[PATH_MAX];
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof(tmp))
		return -ENAMETOOLONG;
	memcpy(tmp, path, n + 1);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(tmp, mode) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, mode) && errno != EEXIST)
		return -errno;
	return 0;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *util_b64_encode(const void *in, size_t len)
{
	const uint8_t *p = in;
	char *out = malloc((len + 2) / 3 * 4 + 1), *o = out;

	if (!out)
		return NULL;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < len)
			v |= p[i + 2];
		*o++ = b64[(v >> 18) & 63];
		*o++ = b64[(v >> 12) & 63];
		*o++ = i + 1 < len ? b64[(v >> 6) & 63] : '=';
		*o++ = i + 2 < len ? b64[v & 63] : '=';
	}
	*o = 0;
	return out;
}

int util_b64_decode(const char *in, size_t len, uint8_t **out, size_t *out_len)
{
	uint8_t *buf = malloc(len / 4 * 3 + 3);
	uint32_t acc = 0;
	size_t n = 0;
	int bits = 0, pad = 0;

	if (!buf)
		return -ENOMEM;
	for (size_t i = 0; i < len; i++) {
		char c = in[i];
		const char *pos;
		if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
			continue;
		if (c == '=') {
			pad++;
			continue;
		}
		pos = c ? strchr(b64, c) : NULL;
		if (!pos || pad)
			goto out_bad;
		acc = (acc << 6) | (uint32_t)(pos - b64);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			buf[n++] = (uint8_t)(acc >> bits);
		}
	}
	if (pad > 2 || bits >= 6)
		goto out_bad;
	*out = buf;
	*out_len = n;
	return 0;
out_bad:
	free(buf);
	return -EINVAL;
}

int util_fmt(char *out, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(out, size, fmt, ap);
	va_end(ap);
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

#define RM_MAX_DEPTH 64

/* Removes dirfd/name and everything under it, never following symbolic
 * links. -ENOENT when it does not exist. */
static int rm_tree(int dirfd, const char *name, int depth)
{
	struct stat st;
	struct dirent *de;
	DIR *dir;
	int fd, ret = 0;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return unlinkat(dirfd, name, 0) < 0 ? -errno : 0;
	if (depth > RM_MAX_DEPTH)
		return -ELOOP;
	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	dir = fdopendir(fd);
	if (!dir) {
		ret = -errno;
		close(fd);
		return ret;
	}
	while ((errno = 0, de = readdir(dir))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		ret = rm_tree(fd, de->d_name, depth + 1);
		if (ret && ret != -ENOENT)
			goto close_dir;
		ret = 0;
	}
	if (errno)
		ret = -errno;
close_dir:
	closedir(dir);
	if (ret)
		return ret;
	return unlinkat(dirfd, name, AT_REMOVEDIR) < 0 ? -errno : 0;
}

int util_rm_tree_at(int dirfd, const char *name)
{
	return rm_tree(dirfd, name, 0);
}
