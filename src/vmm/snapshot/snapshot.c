/* snapshot.c - snapshot directories: atomic writes, loading a chain of
 * parents, mapping it over guest RAM. See snapshot.h. */
#include "vmm/snapshot/snapshot.h"

#include "common/readfile.h"
#include "common/reason.h"

#include "vmm/boot/boot.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SNAP_META_VERSION_LEN 32

/* Joins dir and name into out; -ENAMETOOLONG when it does not fit. */
static int snap_path(char *out, size_t len, const char *dir, const char *name)
{
	int n = snprintf(out, len, "%s/%s", dir, name);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* ---- META ----------------------------------------------------------------------- */

void snap_put_meta(struct snap_writer *w, uint64_t mem_size, unsigned int vcpus, bool diff)
{
	char version[SNAP_META_VERSION_LEN] = {0};
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	strncpy(version, SNAP_VMM_VERSION, sizeof(version) - 1);
	snap_begin(w, SNAP_SEC_META, 0);
	snap_put_u64(w, mem_size);
	snap_put_u32(w, vcpus);
	snap_put_u32(w, diff ? SNAP_META_DIFF : 0);
	snap_put_u64(w, (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec);
	snap_put_bytes(w, version, sizeof(version));
	snap_end(w);
}

int snap_get_meta(const struct snap_file *f, struct snap_meta *m, char *why, size_t why_len)
{
	struct snap_section s;
	struct snap_rd r;

	memset(m, 0, sizeof(*m));
	if (!snap_find(f, SNAP_SEC_META, 0, &s))
		return reason_fail(why, why_len, -EINVAL, "state file has no META section");
	snap_rd_init(&r, &s);
	m->mem_size = snap_get_u64(&r);
	m->vcpus = snap_get_u32(&r);
	m->flags = snap_get_u32(&r);
	m->created_ns = snap_get_u64(&r);
	snap_get_bytes(&r, m->version, SNAP_META_VERSION_LEN);
	m->version[SNAP_META_VERSION_LEN] = '\0';
	if (!snap_rd_done(&r))
		return reason_fail(why, why_len, -EINVAL,
				   "state file META section has %u bytes, "
				   "expected %u",
				   s.len, 24 + SNAP_META_VERSION_LEN);
	if (m->mem_size == 0 || m->mem_size % SNAP_PAGE_SIZE)
		return reason_fail(why, why_len, -EINVAL,
				   "snapshot memory size %llu is not whole pages",
				   (unsigned long long)m->mem_size);
	if (m->vcpus < 1 || m->vcpus > BOOT_MAX_VCPUS)
		return reason_fail(why, why_len, -EINVAL,
				   "snapshot has %u vCPUs; kiln-vmm supports 1 to %d", m->vcpus,
				   BOOT_MAX_VCPUS);
	if (m->flags & ~SNAP_META_DIFF)
		return reason_fail(why, why_len, -EINVAL, "snapshot has unknown flags 0x%x",
				   m->flags);
	return 0;
}

/* ---- writing ------------------------------------------------------------------------- */

int snap_dir_prepare(const char *dir, char *why, size_t why_len)
{
	char path[PATH_MAX];
	struct stat st;

	if (!dir || !*dir)
		return reason_fail(why, why_len, -EINVAL, "no snapshot directory given");
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return reason_fail(why, why_len, -errno, "cannot create snapshot directory %s: %s",
				   dir, strerror(errno));
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
		return reason_fail(why, why_len, -ENOTDIR, "%s is not a directory", dir);
	if (snap_path(path, sizeof(path), dir, "state") < 0)
		return reason_fail(why, why_len, -ENAMETOOLONG, "snapshot path too long");
	if (unlink(path) < 0 && errno != ENOENT)
		return reason_fail(why, why_len, -errno, "cannot remove the old %s: %s", path,
				   strerror(errno));
	return 0;
}

static int snap_fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), ret = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

/* Opens DIR/.NAME.tmp.PID for writing; fills tmp and final paths. */
static int snap_open_tmp(const char *dir, const char *name, char *tmp, char *final, size_t len)
{
	char base[64];
	int fd;

	snprintf(base, sizeof(base), ".%s.tmp.%ld", name, (long)getpid());
	if (snap_path(tmp, len, dir, base) < 0 || snap_path(final, len, dir, name) < 0)
		return -ENAMETOOLONG;
	fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	return fd < 0 ? -errno : fd;
}

/* fsyncs and closes fd, renames tmp to final, fsyncs dir. Unlinks tmp on failure. */
static int snap_commit(int fd, const char *dir, const char *tmp, const char *final)
{
	int ret = 0;

	if (fsync(fd) < 0)
		ret = -errno;
	if (close(fd) < 0 && !ret)
		ret = -errno;
	if (!ret && rename(tmp, final) < 0)
		ret = -errno;
	if (ret) {
		unlink(tmp);
		return ret;
	}
	return snap_fsync_dir(dir);
}

int snap_write_memory(const char *dir, const struct guest_mem *mem, const struct snap_backing *b,
		      bool diff, struct snap_extents *ext, struct snap_mem_stats *st, int *reopen,
		      char *why, size_t why_len)
{
	char tmp[PATH_MAX], final[PATH_MAX];
	int fd, ret;

	fd = snap_open_tmp(dir, "memory", tmp, final, sizeof(tmp));
	if (fd < 0)
		return reason_fail(why, why_len, fd, "cannot create the memory file in %s: %s", dir,
				   strerror(-fd));
	ret = snap_mem_write(fd, mem, b, diff, ext, st, why, why_len);
	if (ret < 0) {
		close(fd);
		unlink(tmp);
		return ret;
	}
	ret = snap_commit(fd, dir, tmp, final);
	if (ret < 0)
		return reason_fail(why, why_len, ret, "cannot save %s: %s", final, strerror(-ret));
	if (reopen) {
		*reopen = open(final, O_RDONLY | O_CLOEXEC);
		if (*reopen < 0)
			return reason_fail(why, why_len, -errno, "cannot reopen %s: %s", final,
					   strerror(errno));
	}
	return 0;
}

int snap_write_state(const char *dir, const void *buf, size_t len, char *why, size_t why_len)
{
	char tmp[PATH_MAX], final[PATH_MAX];
	const uint8_t *p = buf;
	int fd, ret = 0;

	fd = snap_open_tmp(dir, "state", tmp, final, sizeof(tmp));
	if (fd < 0)
		return reason_fail(why, why_len, fd, "cannot create the state file in %s: %s", dir,
				   strerror(-fd));
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ret = n < 0 ? -errno : -EIO;
			break;
		}
		p += n;
		len -= (size_t)n;
	}
	if (ret) {
		close(fd);
		unlink(tmp);
	} else {
		ret = snap_commit(fd, dir, tmp, final);
	}
	if (ret < 0)
		return reason_fail(why, why_len, ret, "cannot save %s: %s", final, strerror(-ret));
	return 0;
}

/* ---- loading -------------------------------------------------------------------------- */

/* Reads a whole state file (at most SNAP_MAX_STATE_BYTES). A file that
 * shrank while read is caught as truncated by snap_parse. */
static int snap_read_file(const char *path, uint8_t **out, size_t *out_len, char *why,
			  size_t why_len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), ret;

	if (fd < 0)
		return reason_fail(why, why_len, -errno, "cannot open %s: %s%s", path,
				   strerror(errno),
				   errno == ENOENT ? " (not a snapshot directory, or an incomplete "
						     "snapshot)"
						   : "");
	ret = readfile_fd(fd, SNAP_MAX_STATE_BYTES, out, out_len);
	close(fd);
	if (ret == -EINVAL)
		return reason_fail(why, why_len, ret, "%s is not a regular file", path);
	if (ret == -EFBIG)
		return reason_fail(why, why_len, ret, "%s is larger than %u bytes", path,
				   SNAP_MAX_STATE_BYTES);
	if (ret < 0)
		return reason_fail(why, why_len, ret, "cannot read %s: %s", path, strerror(-ret));
	return 0;
}

static int snap_get_parent(const struct snap_file *f, char *dir, size_t dir_len, uint32_t *crc,
			   char *why, size_t why_len)
{
	struct snap_section s;
	struct snap_rd r;
	uint32_t n;

	if (!snap_find(f, SNAP_SEC_PARENT, 0, &s))
		return reason_fail(why, why_len, -EINVAL, "diff snapshot without a PARENT section");
	snap_rd_init(&r, &s);
	*crc = snap_get_u32(&r);
	n = snap_get_u32(&r);
	if (r.err || n == 0 || n >= dir_len || n != r.len - r.off)
		return reason_fail(why, why_len, -EINVAL, "malformed PARENT section");
	snap_get_bytes(&r, dir, n);
	dir[n] = '\0';
	if (strlen(dir) != n || dir[0] != '/')
		return reason_fail(why, why_len, -EINVAL,
				   "malformed parent path in PARENT section");
	return 0;
}

static int snap_get_extents(const struct snap_file *f, uint64_t npages, struct snap_extents *e,
			    char *why, size_t why_len)
{
	struct snap_section s;
	struct snap_rd r;
	uint64_t n, prev_end = 0;

	if (!snap_find(f, SNAP_SEC_MEM_EXTENTS, 0, &s))
		return reason_fail(why, why_len, -EINVAL,
				   "diff snapshot without a MEM_EXTENTS section");
	snap_rd_init(&r, &s);
	n = snap_get_u64(&r);
	if (r.err || n > (r.len - r.off) / 16 || n * 16 != r.len - r.off)
		return reason_fail(why, why_len, -EINVAL, "malformed MEM_EXTENTS section");
	for (uint64_t i = 0; i < n; i++) {
		uint64_t page = snap_get_u64(&r), cnt = snap_get_u64(&r);

		if (!snap_extent_fits(prev_end, page, cnt, npages))
			return reason_fail(
				why, why_len, -EINVAL,
				"MEM_EXTENTS entry %llu is out of order or outside guest RAM",
				(unsigned long long)i);
		prev_end = page + cnt;
		if (snap_extents_add(e, page, cnt) < 0)
			return reason_fail(why, why_len, -ENOMEM, "out of memory");
	}
	return 0;
}

static void snap_layer_release(struct snap_layer *l)
{
	if (l->mem_fd >= 0)
		close(l->mem_fd);
	l->mem_fd = -1;
	snap_extents_release(&l->extents);
}

void snap_image_release(struct snap_image *img)
{
	if (!img)
		return;
	for (unsigned int i = 0; i < img->nlayers; i++)
		snap_layer_release(&img->layers[i]);
	free(img->state);
	memset(img, 0, sizeof(*img));
}

/* Loads one level: state of `dir` (checked against `want_crc` unless it is
 * the top), memory file, extents. Fills `l`; top level keeps its buffer. */
static int snap_load_level(struct snap_image *img, const char *dir, bool top, uint32_t want_crc,
			   uint64_t max_mem, struct snap_layer *l, char *next, size_t next_len,
			   uint32_t *next_crc, char *why, size_t why_len)
{
	char path[PATH_MAX], sub[256];
	struct snap_file f;
	struct snap_meta meta;
	struct stat st;
	uint8_t *buf = NULL;
	size_t len = 0;
	int ret;

	/* A parent's path comes from its child's PARENT section: absolute, and
	 * resolved when that snapshot was taken. Only the caller's is resolved
	 * here (a readlink per path component). */
	if (!top) {
		if (strlen(dir) >= sizeof(l->dir))
			return reason_fail(why, why_len, -ENAMETOOLONG, "snapshot path too long");
		memcpy(l->dir, dir, strlen(dir) + 1);
	} else if (!realpath(dir, l->dir)) {
		return reason_fail(why, why_len, -errno, "snapshot directory %s: %s", dir,
				   strerror(errno));
	}
	if (snap_path(path, sizeof(path), l->dir, "state") < 0)
		return reason_fail(why, why_len, -ENAMETOOLONG, "snapshot path too long");
	ret = snap_read_file(path, &buf, &len, why, why_len);
	if (ret < 0)
		return ret;
	ret = snap_parse(buf, len, &f, sub, sizeof(sub));
	if (ret < 0) {
		reason_fail(why, why_len, ret, "%s: %s", path, sub);
		goto out_free;
	}
	ret = snap_get_meta(&f, &meta, sub, sizeof(sub));
	if (ret < 0) {
		reason_fail(why, why_len, ret, "%s: %s", path, sub);
		goto out_free;
	}
	if (top) {
		if (meta.mem_size > max_mem) {
			ret = reason_fail(
				why, why_len, -E2BIG,
				"snapshot %s needs %llu MiB of guest memory, more than the "
				"limit of %llu MiB",
				l->dir, (unsigned long long)(meta.mem_size >> 20),
				(unsigned long long)(max_mem >> 20));
			goto out_free;
		}
		img->meta = meta;
	} else if (f.crc != want_crc) {
		ret = reason_fail(
			why, why_len, -ESTALE,
			"parent snapshot %s has changed since the diff was taken (checksum "
			"%08x, the diff expects %08x)",
			l->dir, f.crc, want_crc);
		goto out_free;
	} else if (meta.mem_size != img->meta.mem_size || meta.vcpus != img->meta.vcpus) {
		ret = reason_fail(why, why_len, -EINVAL,
				  "parent snapshot %s has another memory size or vCPU count",
				  l->dir);
		goto out_free;
	}
	l->crc = f.crc;
	l->diff = meta.flags & SNAP_META_DIFF;
	if (snap_path(path, sizeof(path), l->dir, "memory") < 0) {
		ret = reason_fail(why, why_len, -ENAMETOOLONG, "snapshot path too long");
		goto out_free;
	}
	l->mem_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (l->mem_fd < 0) {
		ret = reason_fail(why, why_len, -errno, "cannot open %s: %s", path,
				  strerror(errno));
		goto out_free;
	}
	if (fstat(l->mem_fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size != img->meta.mem_size) {
		ret = reason_fail(why, why_len, -EINVAL,
				  "%s has %llu bytes; the snapshot's guest memory is %llu bytes",
				  path, (unsigned long long)st.st_size,
				  (unsigned long long)img->meta.mem_size);
		goto out_free;
	}
	if (l->diff) {
		ret = snap_get_extents(&f, img->meta.mem_size / SNAP_PAGE_SIZE, &l->extents, sub,
				       sizeof(sub));
		if (!ret)
			ret = snap_get_parent(&f, next, next_len, next_crc, sub, sizeof(sub));
		if (ret < 0) {
			reason_fail(why, why_len, ret, "%s/state: %s", l->dir, sub);
			goto out_free;
		}
	}
	if (top) {
		img->state = buf;
		img->state_len = len;
		img->file = f;
		return 0;
	}
out_free:
	free(buf);
	return ret;
}

int snap_image_load(const char *dir, uint64_t max_mem, struct snap_image *img, char *why,
		    size_t why_len)
{
	struct snap_layer chain[SNAP_MAX_DEPTH];
	char next[PATH_MAX];
	uint32_t want = 0;
	unsigned int n = 0;
	int ret = 0;

	memset(img, 0, sizeof(*img));
	for (unsigned int i = 0; i < SNAP_MAX_DEPTH; i++) {
		memset(&chain[i], 0, sizeof(chain[i]));
		chain[i].mem_fd = -1;
	}
	snprintf(next, sizeof(next), "%s", dir ? dir : "");
	for (;;) {
		char cur[PATH_MAX];

		if (n == SNAP_MAX_DEPTH) {
			ret = reason_fail(why, why_len, -ELOOP,
					  "snapshot %s: chain of diff snapshots deeper than %d",
					  dir, SNAP_MAX_DEPTH);
			break;
		}
		memcpy(cur, next, sizeof(cur));
		ret = snap_load_level(img, cur, n == 0, want, max_mem, &chain[n], next,
				      sizeof(next), &want, why, why_len);
		if (ret < 0)
			break;
		n++;
		if (!chain[n - 1].diff)
			break;
		for (unsigned int i = 0; i < n; i++) {
			if (strcmp(chain[i].dir, next) == 0) {
				ret = reason_fail(why, why_len, -ELOOP,
						  "snapshot %s: its chain of parents loops", dir);
				break;
			}
		}
		if (ret < 0)
			break;
	}
	if (ret < 0) {
		for (unsigned int i = 0; i <= n && i < SNAP_MAX_DEPTH; i++)
			snap_layer_release(&chain[i]);
		free(img->state);
		memset(img, 0, sizeof(*img));
		return ret;
	}
	/* chain[0] is the top; layers[] goes base first. */
	for (unsigned int i = 0; i < n; i++)
		img->layers[i] = chain[n - 1 - i];
	img->nlayers = n;
	return 0;
}

int snap_image_map(struct snap_image *img, struct guest_mem *mem, struct snap_backing *b, char *why,
		   size_t why_len)
{
	struct snap_mem_layer chain[SNAP_MAX_DEPTH];
	struct snap_layer *top;
	int ret;

	if (img->nlayers == 0 || img->nlayers > SNAP_MAX_DEPTH || mem->size != img->meta.mem_size)
		return reason_fail(why, why_len, -EINVAL,
				   "guest memory size does not match the snapshot");
	snap_backing_release(b);
	for (unsigned int i = 0; i < img->nlayers; i++)
		chain[i] = (struct snap_mem_layer){.fd = img->layers[i].mem_fd,
						   .ext = i ? &img->layers[i].extents : NULL};
	ret = snap_mem_map_chain(mem, chain, img->nlayers);
	if (ret == -EEXIST)
		return reason_fail(why, why_len, ret,
				   "cannot map %s/memory: another mapping took part of guest RAM's "
				   "address range",
				   img->layers[img->nlayers - 1].dir);
	if (ret < 0)
		return reason_fail(why, why_len, ret, "cannot map %s/memory: %s",
				   img->layers[img->nlayers - 1].dir, strerror(-ret));
	for (unsigned int i = 1; i < img->nlayers; i++) {
		struct snap_layer *l = &img->layers[i];

		for (size_t k = 0; k < l->extents.n; k++) {
			ret = snap_extents_add(&b->overlays, l->extents.v[k].page,
					       l->extents.v[k].npages);
			if (ret < 0)
				return reason_fail(why, why_len, ret, "out of memory");
		}
	}
	top = &img->layers[img->nlayers - 1];
	b->file_backed = true;
	b->base_fd = img->layers[0].mem_fd;
	img->layers[0].mem_fd = -1;
	memcpy(b->parent_dir, top->dir, sizeof(b->parent_dir));
	b->parent_crc = top->crc;
	return 0;
}
