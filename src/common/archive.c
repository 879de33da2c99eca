/* archive.c - kiln's code archive: validation and extraction. */
#include "common/archive.h"

#include "common/le.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

bool archive_path_ok(const char *path, size_t len)
{
	size_t start = 0, depth = 0;

	if (!path || len == 0 || len > ARCHIVE_MAX_PATH || path[0] == '/')
		return false;
	if (memchr(path, '\0', len))
		return false;
	while (start <= len) {
		const char *slash = memchr(path + start, '/', len - start);
		size_t end = slash ? (size_t)(slash - path) : len;
		size_t n = end - start;
		const char *c = path + start;

		if (n == 0 || n > ARCHIVE_MAX_COMPONENT)
			return false; /* "a//b", "a/" or a long name */
		if ((n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
			return false;
		if (++depth > ARCHIVE_MAX_DEPTH)
			return false;
		start = end + 1;
	}
	return true;
}

int archive_open(struct archive_reader *r, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	memset(r, 0, sizeof(*r));
	if (!p || len < ARCHIVE_HEADER_SIZE || le32_get(p) != ARCHIVE_MAGIC)
		return -EBADMSG;
	r->remaining = le32_get(p + 4);
	if (r->remaining > ARCHIVE_MAX_ENTRIES)
		return -E2BIG;
	r->p = p + ARCHIVE_HEADER_SIZE;
	r->left = len - ARCHIVE_HEADER_SIZE;
	return 0;
}

int archive_next(struct archive_reader *r, struct archive_entry *e)
{
	const uint8_t *p = r->p;

	if (r->remaining == 0)
		return r->left == 0 ? 0 : -EBADMSG;
	if (r->left < ARCHIVE_ENTRY_SIZE)
		return -EBADMSG;
	e->kind = p[0];
	e->mode = le16_get(p + 2);
	e->path_len = le16_get(p + 4);
	e->size = le32_get(p + 6);
	if (p[1] != 0 || e->mode > 0777)
		return -EBADMSG;
	if (e->kind != ARCHIVE_DIR && e->kind != ARCHIVE_FILE)
		return -ENOTSUP;
	if (e->kind == ARCHIVE_DIR && e->size != 0)
		return -EBADMSG;
	/* The sizes must fit in what is left: a lying size is caught here. */
	if (r->left - ARCHIVE_ENTRY_SIZE < e->path_len ||
	    r->left - ARCHIVE_ENTRY_SIZE - e->path_len < e->size)
		return -EBADMSG;
	e->path = (const char *)p + ARCHIVE_ENTRY_SIZE;
	if (!archive_path_ok(e->path, e->path_len))
		return -EINVAL;
	e->data = e->size ? p + ARCHIVE_ENTRY_SIZE + e->path_len : NULL;
	r->total += e->size;
	if (r->total > ARCHIVE_MAX_TOTAL)
		return -E2BIG;
	r->p = p + ARCHIVE_ENTRY_SIZE + e->path_len + e->size;
	r->left -= ARCHIVE_ENTRY_SIZE + (size_t)e->path_len + e->size;
	r->remaining--;
	return 1;
}

int archive_check(const void *buf, size_t len, uint32_t *count)
{
	struct archive_reader r;
	struct archive_entry e;
	uint32_t n = 0;
	int ret;

	ret = archive_open(&r, buf, len);
	if (ret)
		return ret;
	while ((ret = archive_next(&r, &e)) == 1)
		n++;
	if (ret < 0)
		return ret;
	if (count)
		*count = n;
	return 0;
}

static void archive_set_bad(char *bad, size_t size, const char *path, size_t len)
{
	if (!bad || size == 0)
		return;
	if (len >= size)
		len = size - 1;
	memcpy(bad, path, len);
	bad[len] = '\0';
}

/* Creates each parent directory of path (NUL-terminated) that is missing. */
static int archive_mkparents(int dirfd, char *path)
{
	for (char *s = strchr(path, '/'); s; s = strchr(s + 1, '/')) {
		struct stat st;

		*s = '\0';
		if (mkdirat(dirfd, path, 0755) < 0 && errno != EEXIST) {
			int err = -errno;

			*s = '/';
			return err;
		}
		/* Only our own directories can be there: check anyway. */
		if (fstatat(dirfd, path, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode)) {
			*s = '/';
			return -ENOTDIR;
		}
		*s = '/';
	}
	return 0;
}

static int archive_write_file(int dirfd, const char *path, const struct archive_entry *e)
{
	const uint8_t *p = e->data;
	size_t left = e->size;
	int fd, err = 0;

	fd = openat(dirfd, path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	while (left > 0) {
		ssize_t n = write(fd, p, left);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			err = n < 0 ? -errno : -EIO;
			break;
		}
		p += n;
		left -= (size_t)n;
	}
	if (!err && fchmod(fd, e->mode) < 0)
		err = -errno;
	if (close(fd) < 0 && !err)
		err = -errno;
	return err;
}

static int archive_make_dir(int dirfd, const char *path)
{
	struct stat st;

	if (mkdirat(dirfd, path, 0755) == 0)
		return 0;
	if (errno != EEXIST)
		return -errno;
	if (fstatat(dirfd, path, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	return S_ISDIR(st.st_mode) ? 0 : -EEXIST;
}

int archive_extract(int dirfd, const void *buf, size_t len, char *bad_path, size_t bad_path_size)
{
	struct archive_reader r;
	struct archive_entry e;
	char path[ARCHIVE_MAX_PATH + 1];
	int ret;

	if (bad_path && bad_path_size)
		bad_path[0] = '\0';
	/* Validate everything before writing anything. */
	ret = archive_open(&r, buf, len);
	while (ret == 0 || ret == 1) {
		ret = archive_next(&r, &e);
		if (ret == 0)
			break;
		if (ret < 0 && r.left >= ARCHIVE_ENTRY_SIZE) {
			/* Name the entry when its path is readable. */
			uint16_t plen = le16_get(r.p + 4);

			if (plen <= r.left - ARCHIVE_ENTRY_SIZE)
				archive_set_bad(bad_path, bad_path_size,
						(const char *)r.p + ARCHIVE_ENTRY_SIZE, plen);
		}
	}
	if (ret < 0)
		return ret;

	archive_open(&r, buf, len);
	while (archive_next(&r, &e) == 1) {
		memcpy(path, e.path, e.path_len);
		path[e.path_len] = '\0';
		ret = archive_mkparents(dirfd, path);
		if (!ret)
			ret = e.kind == ARCHIVE_DIR ? archive_make_dir(dirfd, path)
						    : archive_write_file(dirfd, path, &e);
		if (ret) {
			archive_set_bad(bad_path, bad_path_size, e.path, e.path_len);
			return ret;
		}
	}
	/* Directory modes last, so that a read-only directory can be filled. */
	archive_open(&r, buf, len);
	while (archive_next(&r, &e) == 1) {
		if (e.kind != ARCHIVE_DIR)
			continue;
		memcpy(path, e.path, e.path_len);
		path[e.path_len] = '\0';
		if (fchmodat(dirfd, path, e.mode, 0) < 0) {
			archive_set_bad(bad_path, bad_path_size, e.path, e.path_len);
			return -errno;
		}
	}
	return 0;
}

int archive_write(const struct archive_entry *entries, size_t n, uint8_t **out, size_t *out_len)
{
	size_t len = ARCHIVE_HEADER_SIZE;
	uint64_t total = 0;
	uint8_t *buf, *p;
	int r;

	if (n > ARCHIVE_MAX_ENTRIES)
		return -E2BIG;
	for (size_t i = 0; i < n; i++) {
		total += entries[i].size;
		len += ARCHIVE_ENTRY_SIZE + entries[i].path_len + entries[i].size;
	}
	if (total > ARCHIVE_MAX_TOTAL)
		return -E2BIG;
	buf = malloc(len);
	if (!buf)
		return -ENOMEM;
	le32_put(buf, ARCHIVE_MAGIC);
	le32_put(buf + 4, (uint32_t)n);
	p = buf + ARCHIVE_HEADER_SIZE;
	for (size_t i = 0; i < n; i++) {
		const struct archive_entry *e = &entries[i];

		p[0] = e->kind;
		p[1] = 0;
		le16_put(p + 2, e->mode);
		le16_put(p + 4, e->path_len);
		le32_put(p + 6, e->size);
		p += ARCHIVE_ENTRY_SIZE;
		memcpy(p, e->path, e->path_len);
		p += e->path_len;
		if (e->size)
			memcpy(p, e->data, e->size);
		p += e->size;
	}
	r = archive_check(buf, len, NULL);
	if (r) {
		free(buf);
		return r;
	}
	*out = buf;
	*out_len = len;
	return 0;
}
