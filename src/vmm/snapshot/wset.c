/* wset.c - a snapshot's working set file and its prefetch (see wset.h). */
#include "vmm/snapshot/wset.h"

#include "common/atomicfile.h"
#include "common/le.h"
#include "common/readfile.h"
#include "common/reason.h"
#include "vmm/snapshot/format.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22 /* Linux 5.14 */
#endif

#define WSET_HEAD 32 /* magic, version, crc, mem_size, n */
#define WSET_RUN  16

int wset_encode(const struct snap_extents *e, uint32_t crc, uint64_t mem_size, uint8_t **out,
		size_t *len)
{
	size_t n = WSET_HEAD + e->n * WSET_RUN + 4;
	uint8_t *b = malloc(n), *p;

	if (!b)
		return -ENOMEM;
	memcpy(b, WSET_MAGIC, 8);
	le32_put(b + 8, WSET_VERSION);
	le32_put(b + 12, crc);
	le64_put(b + 16, mem_size);
	le64_put(b + 24, e->n);
	p = b + WSET_HEAD;
	for (size_t i = 0; i < e->n; i++, p += WSET_RUN) {
		le64_put(p, e->v[i].page);
		le64_put(p + 8, e->v[i].npages);
	}
	le32_put(p, snap_crc32c(0, b, (size_t)(p - b)));
	*out = b;
	*len = n;
	return 0;
}

int wset_decode(const uint8_t *buf, size_t len, uint32_t crc, uint64_t mem_size,
		struct snap_extents *e, char *why, size_t why_len)
{
	uint64_t n, pages = mem_size / SNAP_PAGE_SIZE, next = 0;
	const uint8_t *p;
	int ret;

	if (len < WSET_HEAD + 4 || memcmp(buf, WSET_MAGIC, 8))
		return reason_fail(why, why_len, -EBADMSG, "not a working-set file");
	if (le32_get(buf + 8) != WSET_VERSION)
		return reason_fail(why, why_len, -EBADMSG, "working-set version %u, not %u",
				   le32_get(buf + 8), WSET_VERSION);
	n = le64_get(buf + 24);
	if (n > (len - WSET_HEAD - 4) / WSET_RUN || WSET_HEAD + n * WSET_RUN + 4 != len)
		return reason_fail(why, why_len, -EBADMSG,
				   "%zu bytes do not hold the %llu runs the header says", len,
				   (unsigned long long)n);
	if (le32_get(buf + len - 4) != snap_crc32c(0, buf, len - 4))
		return reason_fail(why, why_len, -EBADMSG, "its checksum does not match");
	if (le32_get(buf + 12) != crc || le64_get(buf + 16) != mem_size)
		return reason_fail(why, why_len, -ESTALE,
				   "recorded on another snapshot (state checksum %08x, %llu MiB; "
				   "this one is %08x, %llu MiB)",
				   le32_get(buf + 12),
				   (unsigned long long)(le64_get(buf + 16) >> 20), crc,
				   (unsigned long long)(mem_size >> 20));
	p = buf + WSET_HEAD;
	for (uint64_t i = 0; i < n; i++, p += WSET_RUN) {
		uint64_t page = le64_get(p), np = le64_get(p + 8);

		if (np == 0 || page < next || page >= pages || np > pages - page) {
			snap_extents_release(e);
			return reason_fail(why, why_len, -EBADMSG,
					   "run %llu (page %llu, %llu pages) is out of order or "
					   "outside guest RAM",
					   (unsigned long long)i, (unsigned long long)page,
					   (unsigned long long)np);
		}
		ret = snap_extents_add(e, page, np);
		if (ret < 0) {
			snap_extents_release(e);
			return reason_fail(why, why_len, ret, "out of memory");
		}
		next = page + np;
	}
	return 0;
}

int wset_save(const char *path, const struct snap_extents *e, uint32_t crc, uint64_t mem_size)
{
	uint8_t *buf;
	size_t len;
	int ret = wset_encode(e, crc, mem_size, &buf, &len);

	if (ret < 0)
		return ret;
	ret = atomicfile_write(path, buf, len, 0644);
	free(buf);
	return ret;
}

int wset_load(const char *path, uint32_t crc, uint64_t mem_size, struct snap_extents *e, char *why,
	      size_t why_len)
{
	/* At most one run per page. */
	uint64_t max = WSET_HEAD + (mem_size / SNAP_PAGE_SIZE) * WSET_RUN + 4;
	uint8_t *buf;
	size_t len;
	int fd, ret;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return reason_fail(why, why_len, -errno, "cannot open it: %s", strerror(errno));
	ret = readfile_fd(fd, (size_t)max, &buf, &len);
	close(fd);
	if (ret == -EINVAL || ret == -EFBIG)
		return reason_fail(why, why_len, -EFBIG, "not a regular file of at most %llu bytes",
				   (unsigned long long)max);
	if (ret < 0)
		return reason_fail(why, why_len, ret, "cannot read it: %s", strerror(-ret));
	/* A file that shrank while read fails the length check. */
	ret = wset_decode(buf, len, crc, mem_size, e, why, why_len);
	free(buf);
	return ret;
}

int64_t wset_prefetch(const struct guest_mem *mem, const struct snap_extents *e)
{
	int64_t pages = 0;
	int advice = MADV_POPULATE_READ;

	for (size_t i = 0; i < e->n; i++) {
		uint8_t *p = mem->host + e->v[i].page * SNAP_PAGE_SIZE;
		size_t len = (size_t)(e->v[i].npages * SNAP_PAGE_SIZE);

		int r = madvise(p, len, advice);

		if (r < 0 && errno == EINVAL && advice == MADV_POPULATE_READ) {
			/* Before Linux 5.14: read-ahead into the page cache only. */
			advice = MADV_WILLNEED;
			r = madvise(p, len, advice);
		}
		if (r < 0)
			return -errno;
		pages += (int64_t)e->v[i].npages;
	}
	return pages;
}
