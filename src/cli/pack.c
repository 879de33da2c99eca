/* pack.c - client-side code packing into ustar archives (see pack.h). */
#include "cli/pack.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BLOCK 512

struct tar {
	uint8_t *buf;
	size_t len, cap;
	size_t entries;
	uint64_t bytes;
	char *err;
	size_t err_size;
};

static int tar_fail(struct tar *t, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int tar_fail(struct tar *t, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(t->err, t->err_size, fmt, ap);
	va_end(ap);
	return rc;
}

/* Makes room for n more bytes, zeroed. */
static uint8_t *tar_grow(struct tar *t, size_t n)
{
	uint8_t *p;

	if (t->len + n > t->cap || !t->buf) {
		size_t cap = t->cap ? t->cap : 64 * 1024;

		while (cap < t->len + n)
			cap *= 2;
		p = realloc(t->buf, cap);
		if (!p)
			return NULL;
		t->buf = p;
		t->cap = cap;
	}
	p = t->buf + t->len;
	memset(p, 0, n);
	t->len += n;
	return p;
}

static void octal(char *field, size_t width, uint64_t v)
{
	/* width - 1 digits, then NUL */
	snprintf(field, width, "%0*llo", (int)(width - 1), (unsigned long long)v);
}

/* Appends a header for path (relative, '/'-separated). type: '0' file, '5'
 * directory, '2' symlink. */
static int tar_header(struct tar *t, const char *path, char type, unsigned mode, uint64_t size,
		      const char *link)
{
	char name[PATH_MAX + 2];
	size_t len, split = 0;
	uint8_t *h;
	unsigned sum = 0;

	if (++t->entries > PACK_MAX_ENTRIES)
		return tar_fail(t, -E2BIG, "more than %d files and directories", PACK_MAX_ENTRIES);
	len = (size_t)snprintf(name, sizeof(name), "%s%s", path, type == '5' ? "/" : "");
	if (len >= sizeof(name))
		return tar_fail(t, -ENAMETOOLONG, "%s: path too long", path);
	if (len > 100) {
		/* ustar: prefix (<= 155) '/' name (<= 100). */
		for (size_t i = len - 1; i > 0; i--) {
			if (name[i] == '/' && i <= 155 && len - i - 1 <= 100 && len - i - 1 > 0) {
				split = i;
				break;
			}
		}
		if (!split)
			return tar_fail(t, -ENAMETOOLONG, "%s: path too long for a tar header",
					path);
	}
	if (link && strlen(link) > 100)
		return tar_fail(t, -ENAMETOOLONG, "%s: link target too long", path);
	h = tar_grow(t, BLOCK);
	if (!h)
		return tar_fail(t, -ENOMEM, "out of memory");
	if (split) {
		memcpy(h + 345, name, split);
		memcpy(h, name + split + 1, len - split - 1);
	} else {
		memcpy(h, name, len);
	}
	octal((char *)h + 100, 8, mode & 0777);
	octal((char *)h + 108, 8, 0);
	octal((char *)h + 116, 8, 0);
	octal((char *)h + 124, 12, size);
	octal((char *)h + 136, 12, 0);
	h[156] = (uint8_t)type;
	if (link)
		memcpy(h + 157, link, strlen(link));
	memcpy(h + 257, "ustar", 6);
	memcpy(h + 263, "00", 2);
	memset(h + 148, ' ', 8);
	for (size_t i = 0; i < BLOCK; i++)
		sum += h[i];
	snprintf((char *)h + 148, 8, "%06o", sum);
	h[155] = ' ';
	return 0;
}

/* Appends the contents of the regular file fd (st_size bytes). */
static int tar_data(struct tar *t, int fd, const char *path, uint64_t size)
{
	size_t padded = (size_t)((size + BLOCK - 1) / BLOCK * BLOCK);
	size_t start = t->len, got = 0;
	uint8_t *p;

	if (t->bytes + size > PACK_MAX_BYTES)
		return tar_fail(t, -E2BIG, "more than %u MiB of files (at %s)",
				PACK_MAX_BYTES >> 20, path);
	t->bytes += size;
	p = tar_grow(t, padded);
	if (!p)
		return tar_fail(t, -ENOMEM, "out of memory");
	while (got < size) {
		ssize_t n = read(fd, t->buf + start + got, (size_t)size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return tar_fail(t, -errno, "%s: %s", path, strerror(errno));
		if (n == 0)
			return tar_fail(t, -EIO, "%s: file shrank while being read", path);
		got += (size_t)n;
	}
	return 0;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* True when the relative link target, seen from a link at depth `depth`
 * (0: top level), stays inside the tree. */
static bool link_inside(const char *target, int depth)
{
	const char *s = target;

	if (*s == '/' || *s == '\0')
		return false;
	while (*s) {
		const char *e = strchr(s, '/');
		size_t n = e ? (size_t)(e - s) : strlen(s);

		if (n == 2 && s[0] == '.' && s[1] == '.') {
			if (--depth < 0)
				return false;
		} else if (n && !(n == 1 && s[0] == '.')) {
			depth++;
		}
		s += n;
		if (*s == '/')
			s++;
	}
	return true;
}

static int pack_dir(struct tar *t, int dirfd, const char *prefix, int depth);

static int pack_entry(struct tar *t, int dirfd, const char *name, const char *rel, int depth)
{
	struct stat st;
	int fd, rc;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW))
		return tar_fail(t, -errno, "%s: %s", rel, strerror(errno));
	if (S_ISDIR(st.st_mode)) {
		if (strcmp(name, ".git") == 0 || strcmp(name, "__pycache__") == 0) {
			return 0;
		}
		if (depth + 1 >= PACK_MAX_DEPTH)
			return tar_fail(t, -E2BIG, "%s: more than %d levels of directories", rel,
					PACK_MAX_DEPTH);
		rc = tar_header(t, rel, '5', st.st_mode | 0700, 0, NULL);
		if (rc)
			return rc;
		fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return tar_fail(t, -errno, "%s: %s", rel, strerror(errno));
		return pack_dir(t, fd, rel, depth + 1); /* closes fd */
	}
	if (S_ISREG(st.st_mode)) {
		fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return tar_fail(t, -errno, "%s: %s", rel, strerror(errno));
		rc = tar_header(t, rel, '0', st.st_mode | 0400, (uint64_t)st.st_size, NULL);
		if (!rc)
			rc = tar_data(t, fd, rel, (uint64_t)st.st_size);
		close(fd);
		return rc;
	}
	if (S_ISLNK(st.st_mode)) {
		char target[PATH_MAX];
		ssize_t n = readlinkat(dirfd, name, target, sizeof(target) - 1);

		if (n < 0)
			return tar_fail(t, -errno, "%s: %s", rel, strerror(errno));
		target[n] = '\0';
		if (!link_inside(target, depth))
			return tar_fail(t, -EINVAL,
					"%s: symbolic link to %s points outside the code directory",
					rel, target);
		return tar_header(t, rel, '2', 0777, 0, target);
	}
	return tar_fail(t, -EINVAL, "%s: not a regular file, directory or symbolic link", rel);
}

/* Packs the entries of dirfd (closed here) under prefix ("" at the top). */
static int pack_dir(struct tar *t, int dirfd, const char *prefix, int depth)
{
	DIR *d = fdopendir(dirfd);
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	int rc = 0;

	if (!d) {
		rc = tar_fail(t, -errno, "%s: %s", *prefix ? prefix : ".", strerror(errno));
		close(dirfd);
		return rc;
	}
	while ((errno = 0, de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 32;
			char **nn =
				n >= PACK_MAX_ENTRIES ? NULL : realloc(names, ncap * sizeof(*nn));

			if (!nn) {
				rc = n >= PACK_MAX_ENTRIES
					     ? tar_fail(t, -E2BIG,
							"more than %d files and directories",
							PACK_MAX_ENTRIES)
					     : tar_fail(t, -ENOMEM, "out of memory");
				goto free_names;
			}
			names = nn;
			cap = ncap;
		}
		names[n] = strdup(de->d_name);
		if (!names[n]) {
			rc = tar_fail(t, -ENOMEM, "out of memory");
			goto free_names;
		}
		n++;
	}
	if (errno) {
		rc = tar_fail(t, -errno, "%s: %s", *prefix ? prefix : ".", strerror(errno));
		goto free_names;
	}
	if (n > 1)
		qsort(names, n, sizeof(*names), cmp_names);
	for (size_t i = 0; i < n && !rc; i++) {
		char rel[PATH_MAX];

		if ((size_t)snprintf(rel, sizeof(rel), "%s%s%s", prefix, *prefix ? "/" : "",
				     names[i]) >= sizeof(rel)) {
			rc = tar_fail(t, -ENAMETOOLONG, "%s/%s: path too long", prefix, names[i]);
			break;
		}
		rc = pack_entry(t, dirfd, names[i], rel, depth);
	}
free_names:
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	closedir(d);
	return rc;
}

bool pack_is_archive(const uint8_t *d, size_t len)
{
	if (len >= 2 && d[0] == 0x1f && d[1] == 0x8b)
		return true; /* gzip */
	if (len >= 6 && memcmp(d,
			       "\xfd"
			       "7zXZ\0",
			       6) == 0)
		return true; /* xz */
	if (len >= 3 && memcmp(d, "BZh", 3) == 0)
		return true; /* bzip2 */
	if (len >= 4 && memcmp(d, "\x28\xb5\x2f\xfd", 4) == 0)
		return true; /* zstd */
	if (len >= 4 && (memcmp(d, "PK\x03\x04", 4) == 0 || memcmp(d, "PK\x05\x06", 4) == 0))
		return true; /* zip */
	if (len >= 262 && memcmp(d + 257, "ustar", 5) == 0)
		return true; /* tar */
	return false;
}

/* Reads a whole regular file (at most PACK_MAX_BYTES). */
static int read_file(struct tar *t, int fd, const char *path, uint64_t size)
{
	if (size > PACK_MAX_BYTES)
		return tar_fail(t, -E2BIG, "%s: larger than %u MiB", path, PACK_MAX_BYTES >> 20);
	if (!tar_grow(t, (size_t)size))
		return tar_fail(t, -ENOMEM, "out of memory");
	t->len = 0;
	for (size_t got = 0; got < size;) {
		ssize_t n = read(fd, t->buf + got, (size_t)size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return tar_fail(t, -errno, "%s: %s", path, strerror(errno));
		if (n == 0)
			return tar_fail(t, -EIO, "%s: file shrank while being read", path);
		got += (size_t)n;
		t->len = got;
	}
	return 0;
}

int pack_path(const char *path, uint8_t **out, size_t *out_len, char *err, size_t err_size)
{
	struct tar t = {.err = err, .err_size = err_size};
	struct stat st;
	int fd, rc;

	if (err_size)
		err[0] = '\0';
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return tar_fail(&t, -errno, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st)) {
		rc = tar_fail(&t, -errno, "%s: %s", path, strerror(errno));
		goto close_fd;
	}
	if (S_ISDIR(st.st_mode)) {
		int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);

		if (dfd < 0) {
			rc = tar_fail(&t, -errno, "%s: %s", path, strerror(errno));
			goto close_fd;
		}
		rc = pack_dir(&t, dfd, "", 0);
		if (rc)
			goto free_buf;
		if (t.entries == 0) {
			rc = tar_fail(&t, -EINVAL, "%s: the directory is empty", path);
			goto free_buf;
		}
		if (!tar_grow(&t, 2 * BLOCK)) {
			rc = tar_fail(&t, -ENOMEM, "out of memory");
			goto free_buf;
		}
	} else if (S_ISREG(st.st_mode)) {
		const char *base = strrchr(path, '/');

		rc = read_file(&t, fd, path, (uint64_t)st.st_size);
		if (rc)
			goto free_buf;
		if (!pack_is_archive(t.buf, t.len)) {
			uint8_t *data = t.buf;
			size_t len = t.len;

			base = base ? base + 1 : path;
			t.buf = NULL;
			t.len = t.cap = 0;
			rc = tar_header(&t, base, '0', st.st_mode | 0400, len, NULL);
			if (!rc && !tar_grow(&t, (len + BLOCK - 1) / BLOCK * BLOCK + 2 * BLOCK))
				rc = tar_fail(&t, -ENOMEM, "out of memory");
			if (!rc)
				memcpy(t.buf + BLOCK, data, len);
			free(data);
			if (rc)
				goto free_buf;
		}
	} else {
		rc = tar_fail(&t, -EINVAL, "%s: not a directory or a regular file", path);
		goto close_fd;
	}
	*out = t.buf;
	*out_len = t.len;
	close(fd);
	return 0;
free_buf:
	free(t.buf);
close_fd:
	close(fd);
	return rc;
}

char *pack_base64(const uint8_t *d, size_t len)
{
	static const char tbl[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *out, *o;
	size_t i;

	if (len > (SIZE_MAX - 1) / 4 * 3 - 3)
		return NULL;
	out = malloc((len + 2) / 3 * 4 + 1);
	if (!out)
		return NULL;
	o = out;
	for (i = 0; i + 2 < len; i += 3) {
		uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8 | d[i + 2];

		*o++ = tbl[v >> 18];
		*o++ = tbl[(v >> 12) & 63];
		*o++ = tbl[(v >> 6) & 63];
		*o++ = tbl[v & 63];
	}
	if (i < len) {
		uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < len ? (uint32_t)d[i + 1] << 8 : 0);

		*o++ = tbl[v >> 18];
		*o++ = tbl[(v >> 12) & 63];
		*o++ = i + 1 < len ? tbl[(v >> 6) & 63] : '=';
		*o++ = '=';
	}
	*o = '\0';
	return out;
}
