/* memfile.c - writing guest RAM to a sparse snapshot memory file and mapping
 * memory files back MAP_PRIVATE. See memfile.h. */
#include "vmm/snapshot/memfile.h"

#include "common/reason.h"
#include "vmm/snapshot/format.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* /proc/self/pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst). */
#define PM_PRESENT   (1ULL << 63)
#define PM_SWAPPED   (1ULL << 62)
#define PM_FILE	     (1ULL << 61)
#define PM_CHUNK     4096 /* entries read per pread */
#define SNAP_NO_PAGE UINT64_MAX

int snap_extents_add(struct snap_extents *e, uint64_t page, uint64_t npages)
{
	struct snap_extent *v;

	if (npages == 0)
		return 0;
	if (e->n && e->v[e->n - 1].page + e->v[e->n - 1].npages == page) {
		e->v[e->n - 1].npages += npages;
		return 0;
	}
	if (e->n == e->cap) {
		size_t cap = e->cap ? e->cap * 2 : 64;

		v = realloc(e->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		e->v = v;
		e->cap = cap;
	}
	e->v[e->n++] = (struct snap_extent){.page = page, .npages = npages};
	return 0;
}

void snap_extents_release(struct snap_extents *e)
{
	if (!e)
		return;
	free(e->v);
	memset(e, 0, sizeof(*e));
}

bool snap_extent_fits(uint64_t prev_end, uint64_t page, uint64_t npages, uint64_t ram_pages)
{
	return npages != 0 && page >= prev_end && page < ram_pages && npages <= ram_pages - page;
}

void snap_backing_init(struct snap_backing *b)
{
	memset(b, 0, sizeof(*b));
	b->base_fd = -1;
}

void snap_backing_release(struct snap_backing *b)
{
	if (!b)
		return;
	if (b->base_fd >= 0)
		close(b->base_fd);
	snap_extents_release(&b->overlays);
	snap_backing_init(b);
}

/* ---- helpers ------------------------------------------------------------------ */

static int snap_pwrite_all(int fd, const uint8_t *p, size_t len, uint64_t off)
{
	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static bool snap_page_is_zero(const uint8_t *p)
{
	const uint64_t *q = (const uint64_t *)(const void *)p;

	for (size_t i = 0; i < SNAP_PAGE_SIZE / sizeof(*q); i++)
		if (q[i])
			return false;
	return true;
}

/* Reads the pagemap entries of pages [first, first + n) of guest RAM. */
static int snap_pagemap_read(int pm, const struct guest_mem *mem, uint64_t first, size_t n,
			     uint64_t *out)
{
	uint64_t vpn = (uint64_t)(uintptr_t)mem->host / SNAP_PAGE_SIZE + first;
	size_t done = 0, want = n * sizeof(*out);

	while (done < want) {
		ssize_t r = pread(pm, (uint8_t *)out + done, want - done,
				  (off_t)(vpn * sizeof(*out) + done));

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EIO;
		done += (size_t)r;
	}
	return 0;
}

int snap_mem_resident(const struct guest_mem *mem, struct snap_extents *out, char *why,
		      size_t why_len)
{
	uint64_t pages = mem->size / SNAP_PAGE_SIZE, *ents;
	int pm, ret = 0;

	pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (pm < 0)
		return reason_fail(why, why_len, -errno, "cannot open /proc/self/pagemap: %s",
				   strerror(errno));
	ents = malloc(PM_CHUNK * sizeof(*ents));
	if (!ents) {
		close(pm);
		return reason_fail(why, why_len, -ENOMEM, "out of memory");
	}
	for (uint64_t p = 0; p < pages && !ret; p += PM_CHUNK) {
		size_t n = (size_t)(pages - p < PM_CHUNK ? pages - p : PM_CHUNK);

		ret = snap_pagemap_read(pm, mem, p, n, ents);
		if (ret < 0) {
			reason_fail(why, why_len, ret, "cannot read /proc/self/pagemap: %s",
				    strerror(-ret));
			break;
		}
		for (size_t i = 0; i < n && !ret; i++)
			if (ents[i] & PM_PRESENT)
				ret = snap_extents_add(out, p + i, 1);
		if (ret == -ENOMEM)
			reason_fail(why, why_len, ret, "out of memory");
	}
	free(ents);
	close(pm);
	if (ret < 0)
		snap_extents_release(out);
	return ret;
}

static void snap_bit_set(uint64_t *bm, uint64_t page)
{
	bm[page / 64] |= 1ULL << (page % 64);
}

static bool snap_bit_test(const uint64_t *bm, uint64_t page)
{
	return bm[page / 64] & (1ULL << (page % 64));
}

static void snap_bit_range(uint64_t *bm, uint64_t page, uint64_t n, uint64_t npages)
{
	if (page >= npages)
		return;
	if (n > npages - page)
		n = npages - page;
	for (uint64_t i = 0; i < n; i++)
		snap_bit_set(bm, page + i);
}

/* Marks the pages of `fd` that hold data (SEEK_DATA / SEEK_HOLE); every page
 * when the file system cannot tell. */
static void snap_mark_file_data(int fd, uint64_t *bm, uint64_t npages)
{
	off_t off = 0, data, hole;

	for (;;) {
		data = lseek(fd, off, SEEK_DATA);
		if (data < 0) {
			if (errno != ENXIO)
				snap_bit_range(bm, 0, npages, npages);
			return;
		}
		hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0 || hole <= data) {
			snap_bit_range(bm, 0, npages, npages);
			return;
		}
		snap_bit_range(bm, (uint64_t)data / SNAP_PAGE_SIZE,
			       ((uint64_t)hole + SNAP_PAGE_SIZE - 1) / SNAP_PAGE_SIZE -
				       (uint64_t)data / SNAP_PAGE_SIZE,
			       npages);
		off = hole;
	}
}

/* ---- full ----------------------------------------------------------------------- */

/* Writes the run of non-zero pages [start, end) if any. */
static int snap_flush_run(int fd, const struct guest_mem *mem, uint64_t start, uint64_t end,
			  struct snap_mem_stats *st)
{
	size_t len;

	if (start == SNAP_NO_PAGE || end <= start)
		return 0;
	len = (size_t)((end - start) * SNAP_PAGE_SIZE);
	st->pages_written += end - start;
	st->bytes_written += len;
	st->extents++;
	return snap_pwrite_all(fd, mem->host + start * SNAP_PAGE_SIZE, len, start * SNAP_PAGE_SIZE);
}

static int snap_mem_write_full(int fd, int pm, const struct guest_mem *mem,
			       const struct snap_backing *b, struct snap_mem_stats *st, char *why,
			       size_t why_len)
{
	uint64_t npages = mem->size / SNAP_PAGE_SIZE, run = SNAP_NO_PAGE;
	uint64_t *cand, *ents;
	int ret = 0;

	cand = calloc((size_t)(npages + 63) / 64, sizeof(*cand));
	ents = malloc(PM_CHUNK * sizeof(*ents));
	if (!cand || !ents) {
		ret = reason_fail(why, why_len, -ENOMEM, "out of memory");
		goto out_free;
	}
	for (uint64_t p = 0; p < npages; p += PM_CHUNK) {
		size_t n = npages - p < PM_CHUNK ? (size_t)(npages - p) : PM_CHUNK;

		ret = snap_pagemap_read(pm, mem, p, n, ents);
		if (ret < 0) {
			reason_fail(why, why_len, ret, "cannot read /proc/self/pagemap: %s",
				    strerror(-ret));
			goto out_free;
		}
		for (size_t i = 0; i < n; i++)
			if (ents[i] & (PM_PRESENT | PM_SWAPPED))
				snap_bit_set(cand, p + i);
	}
	if (b && b->file_backed) {
		/* Pages not faulted in yet still have the files' contents. */
		if (b->base_fd >= 0)
			snap_mark_file_data(b->base_fd, cand, npages);
		for (size_t i = 0; i < b->overlays.n; i++)
			snap_bit_range(cand, b->overlays.v[i].page, b->overlays.v[i].npages,
				       npages);
	}
	for (uint64_t p = 0; p < npages; p++) {
		bool data = false;

		if (snap_bit_test(cand, p)) {
			st->pages_scanned++;
			data = !snap_page_is_zero(mem->host + p * SNAP_PAGE_SIZE);
		}
		if (data && run == SNAP_NO_PAGE)
			run = p;
		if (!data && run != SNAP_NO_PAGE) {
			ret = snap_flush_run(fd, mem, run, p, st);
			run = SNAP_NO_PAGE;
			if (ret < 0)
				break;
		}
	}
	if (!ret)
		ret = snap_flush_run(fd, mem, run, npages, st);
	if (ret < 0)
		reason_fail(why, why_len, ret, "cannot write the memory file: %s", strerror(-ret));
out_free:
	free(ents);
	free(cand);
	return ret;
}

/* ---- diff ------------------------------------------------------------------------- */

static int snap_mem_write_diff(int fd, int pm, const struct guest_mem *mem,
			       struct snap_extents *ext, struct snap_mem_stats *st, char *why,
			       size_t why_len)
{
	uint64_t npages = mem->size / SNAP_PAGE_SIZE;
	uint64_t run = SNAP_NO_PAGE, end = 0;
	uint64_t *ents = malloc(PM_CHUNK * sizeof(*ents));
	int ret = 0;

	if (!ents)
		return reason_fail(why, why_len, -ENOMEM, "out of memory");
	for (uint64_t p = 0; p < npages && !ret; p += PM_CHUNK) {
		size_t n = npages - p < PM_CHUNK ? (size_t)(npages - p) : PM_CHUNK;

		ret = snap_pagemap_read(pm, mem, p, n, ents);
		if (ret < 0) {
			reason_fail(why, why_len, ret, "cannot read /proc/self/pagemap: %s",
				    strerror(-ret));
			break;
		}
		for (size_t i = 0; i < n && !ret; i++) {
			uint64_t e = ents[i], page = p + i;
			bool dirty = (e & PM_SWAPPED) || ((e & PM_PRESENT) && !(e & PM_FILE));

			if (!dirty)
				continue;
			if (run != SNAP_NO_PAGE && page - end <= SNAP_DIFF_GAP) {
				end = page + 1;
				continue;
			}
			if (run != SNAP_NO_PAGE)
				ret = snap_extents_add(ext, run, end - run);
			run = page;
			end = page + 1;
		}
	}
	if (!ret && run != SNAP_NO_PAGE)
		ret = snap_extents_add(ext, run, end - run);
	if (ret < 0 && why && !*why)
		reason_fail(why, why_len, ret, "out of memory");
	for (size_t i = 0; i < ext->n && !ret; i++) {
		uint64_t off = ext->v[i].page * SNAP_PAGE_SIZE;
		size_t len = (size_t)(ext->v[i].npages * SNAP_PAGE_SIZE);

		ret = snap_pwrite_all(fd, mem->host + off, len, off);
		if (ret < 0) {
			reason_fail(why, why_len, ret, "cannot write the memory file: %s",
				    strerror(-ret));
			break;
		}
		st->pages_scanned += ext->v[i].npages;
		st->pages_written += ext->v[i].npages;
		st->bytes_written += len;
	}
	st->extents = ext->n;
	free(ents);
	return ret;
}

int snap_mem_write(int fd, const struct guest_mem *mem, const struct snap_backing *b, bool diff,
		   struct snap_extents *extents, struct snap_mem_stats *st, char *why,
		   size_t why_len)
{
	int pm, ret;

	memset(st, 0, sizeof(*st));
	if (why && why_len)
		why[0] = '\0';
	if (!mem->host || mem->size % SNAP_PAGE_SIZE)
		return reason_fail(why, why_len, -EINVAL, "no guest memory");
	if (diff && (!b || !b->file_backed))
		return reason_fail(why, why_len, -EINVAL,
				   "a diff snapshot needs a parent: restore this VM from a "
				   "snapshot, or take a full snapshot first");
	if (ftruncate(fd, (off_t)mem->size) < 0)
		return reason_fail(why, why_len, -errno, "cannot size the memory file: %s",
				   strerror(errno));
	pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (pm < 0)
		return reason_fail(why, why_len, -errno, "cannot open /proc/self/pagemap: %s",
				   strerror(errno));
	if (diff)
		ret = snap_mem_write_diff(fd, pm, mem, extents, st, why, why_len);
	else
		ret = snap_mem_write_full(fd, pm, mem, b, st, why, why_len);
	close(pm);
	return ret;
}

int snap_mem_map(struct guest_mem *mem, int fd)
{
	if (!mem->host)
		return -EINVAL;
	if (mmap(mem->host, mem->size, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE, fd, 0) == MAP_FAILED)
		return -errno;
	mem->unmapped = false;
	return 0;
}

/* Which layer of the chain holds page `pos`: the topmost whose extents
 * cover it (0, the base, when none does), with *end the first page after
 * pos where that may change (its extent ends, or a layer above it starts
 * one). cur[l] is layer l's cursor into its sorted extents; pos only grows. */
static unsigned int snap_mem_owner(const struct snap_mem_layer *layers, unsigned int n, size_t *cur,
				   uint64_t pos, uint64_t *end)
{
	for (unsigned int l = n - 1; l > 0; l--) {
		const struct snap_extents *e = layers[l].ext;
		const struct snap_extent *x;

		while (cur[l] < e->n && e->v[cur[l]].page + e->v[cur[l]].npages <= pos)
			cur[l]++;
		if (cur[l] == e->n)
			continue;
		x = &e->v[cur[l]];
		if (x->page <= pos) {
			if (x->page + x->npages < *end)
				*end = x->page + x->npages;
			return l;
		}
		if (x->page < *end)
			*end = x->page;
	}
	return 0;
}

/* Maps pages [page, page + npages) of guest RAM from `fd` at their own
 * offset, with `fixed` MAP_FIXED or MAP_FIXED_NOREPLACE. */
static int snap_mem_map_run(struct guest_mem *mem, int fd, int fixed, uint64_t page,
			    uint64_t npages)
{
	const size_t len = (size_t)(npages * SNAP_PAGE_SIZE);
	uint8_t *want = mem->host + page * SNAP_PAGE_SIZE;
	void *p = mmap(want, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE | fixed, fd,
		       (off_t)(page * SNAP_PAGE_SIZE));

	if (p == MAP_FAILED)
		return -errno;
	if (p != want) { /* MAP_FIXED_NOREPLACE unknown: taken as a hint */
		munmap(p, len);
		return -EEXIST;
	}
	mem->unmapped = false;
	return 0;
}

int snap_mem_map_chain(struct guest_mem *mem, const struct snap_mem_layer *layers, unsigned int n)
{
	const uint64_t npages = mem->size / SNAP_PAGE_SIZE;
	size_t cur[SNAP_MAX_DEPTH] = {0};
	/* Decided once: after the first run, the rest of a hole is still one. */
	const int fixed = mem->unmapped ? MAP_FIXED_NOREPLACE : MAP_FIXED;
	uint64_t pos = 0, run = 0;
	unsigned int owner = 0;
	int ret = 0;

	if (!mem->host || n == 0 || n > SNAP_MAX_DEPTH || layers[0].ext)
		return -EINVAL;
	for (unsigned int l = 1; l < n; l++) {
		const struct snap_extents *e = layers[l].ext;

		if (!e)
			return -EINVAL;
		for (size_t k = 0; k < e->n; k++)
			if (!snap_extent_fits(k ? e->v[k - 1].page + e->v[k - 1].npages : 0,
					      e->v[k].page, e->v[k].npages, npages))
				return -EINVAL;
	}
	/* Runs from one layer that meet are mapped as one. */
	while (pos < npages && !ret) {
		uint64_t end = npages;
		unsigned int l = snap_mem_owner(layers, n, cur, pos, &end);

		if (pos > run && l != owner) {
			ret = snap_mem_map_run(mem, layers[owner].fd, fixed, run, pos - run);
			run = pos;
		}
		owner = l;
		pos = end;
	}
	if (!ret)
		ret = snap_mem_map_run(mem, layers[owner].fd, fixed, run, npages - run);
	return ret;
}
