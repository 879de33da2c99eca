/* memfile.h - a snapshot's guest memory file: writing it sparse (full or
 * diff) and mapping chains of them MAP_PRIVATE over guest RAM.
 *
 * DIR/memory is always exactly the size of guest RAM; byte N of it is byte
 * N of kiln-vmm's host mapping of guest RAM (struct guest_mem: the low
 * region, then the region above 4 GiB). A *full* snapshot's file holds
 * every page that may be non-zero, and holes (never written) read as zero.
 * A *diff* snapshot's file holds only the pages listed in its
 * SNAP_SEC_MEM_EXTENTS section (written even when they are zero), the rest
 * being holes that mean "as in the parent".
 *
 * Which pages changed since the parent is read from /proc/self/pagemap:
 * guest RAM of a restored VM (and of a VM after a full snapshot, which is
 * re-mapped from the file it just wrote) is a MAP_PRIVATE file mapping, and
 * a page that anyone wrote (the guest through KVM, or a device in kiln-vmm)
 * has been copied on write into an anonymous page: present and not a file
 * page. This costs nothing while the guest runs and sees device writes,
 * which KVM's dirty log would not (docs/snapshots.md).
 */
#ifndef KILN_VMM_SNAPSHOT_MEMFILE_H
#define KILN_VMM_SNAPSHOT_MEMFILE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/memory.h"

#define SNAP_PAGE_SIZE 4096ULL
/* Clean pages between two dirty runs merged into one extent of a diff: each
 * extent is an mmap call at restore (~10 us on the nested hosts kiln is
 * built on), each page merged 4 KiB more of the file. 128 took a Python
 * function's diff from 36 extents to 7 for 3.7 MiB (docs/snapshots.md). */
#define SNAP_DIFF_GAP 128

/* A run of pages [page, page + npages) of the memory file. */
struct snap_extent {
	uint64_t page, npages;
};

struct snap_extents {
	struct snap_extent *v;
	size_t n, cap;
};

/* Appends a run (merged with the last one when adjacent). Returns 0 or -ENOMEM. */
int snap_extents_add(struct snap_extents *e, uint64_t page, uint64_t npages);

/* Frees the array. Accepts a zeroed struct. */
void snap_extents_release(struct snap_extents *e);

/* True when run [page, page + npages) may follow a run that ended at page
 * prev_end (0 for the first) in a snapshot's extents of guest RAM of
 * ram_pages pages: non-empty, sorted, disjoint, inside RAM. */
bool snap_extent_fits(uint64_t prev_end, uint64_t page, uint64_t npages, uint64_t ram_pages);

/* Where guest RAM's contents come from. */
struct snap_backing {
	bool file_backed;	      /* RAM is a MAP_PRIVATE chain of snapshot files */
	int base_fd;		      /* the full snapshot's memory file, or -1 */
	struct snap_extents overlays; /* pages mapped from diff files above the base */
	char parent_dir[PATH_MAX];    /* the snapshot RAM layers on (absolute) */
	uint32_t parent_crc;	      /* its state file's checksum */
};

/* Initialises an anonymous backing. */
void snap_backing_init(struct snap_backing *b);

/* Closes the base fd and frees the overlays; leaves an anonymous backing. */
void snap_backing_release(struct snap_backing *b);

struct snap_mem_stats {
	uint64_t pages_scanned; /* candidate pages looked at */
	uint64_t pages_written; /* pages written to the file */
	uint64_t extents;	/* pwrite runs (diff: extents recorded) */
	uint64_t bytes_written;
};

/* Writes guest RAM to `fd` (an empty file, truncated to mem->size here):
 * full (`diff` false): every page present in the host mapping or backed by
 * `b`'s files, skipping all-zero pages; diff: the pages written since RAM
 * was mapped from b's files, recorded in `extents` (which must be empty).
 * Does not fsync. Returns 0 or -errno with a reason in `why`. The caller
 * makes sure nothing writes guest RAM meanwhile. A diff needs a file-backed
 * `b` (-EINVAL otherwise). */
int snap_mem_write(int fd, const struct guest_mem *mem, const struct snap_backing *b, bool diff,
		   struct snap_extents *extents, struct snap_mem_stats *st, char *why,
		   size_t why_len);

/* The pages of guest RAM present in kiln-vmm's host mapping now (read
 * from /proc/self/pagemap), as runs appended to `out` (empty on entry):
 * after a restore, the pages touched since, by the guest or a device.
 * Returns 0 or -errno with a reason in `why`. */
int snap_mem_resident(const struct guest_mem *mem, struct snap_extents *out, char *why,
		      size_t why_len);

/* Maps `fd` (a memory file of mem->size bytes) MAP_PRIVATE over the whole of
 * guest RAM (MAP_FIXED: whatever was there is replaced). Returns 0 or
 * -errno; after a failure the RAM contents are undefined. */
int snap_mem_map(struct guest_mem *mem, int fd);

/* The longest chain of snapshots: a full one and up to 7 diffs on it. */
#define SNAP_MAX_DEPTH 8

/* A memory file of a snapshot chain: layer 0 (ext NULL) covers all of guest
 * RAM, each later one its extents (sorted, disjoint, inside RAM: as
 * snap_image_load checks them), over the layers below it. */
struct snap_mem_layer {
	int fd;
	const struct snap_extents *ext;
};

/* Maps a chain of `n` layers over guest RAM, each page from the topmost
 * layer that holds it, as one mapping per run of pages from one file, in
 * address order: each page is mapped once, so no mapping replaces another
 * (the extents are checked first; nothing is allocated). Into a hole
 * (mem->unmapped, guest_mem_init_hole) they go with MAP_FIXED_NOREPLACE:
 * -EEXIST when something else took part of it, which is left alone; over
 * mapped RAM with MAP_FIXED. Clears mem->unmapped once anything is mapped.
 * Returns 0, -EINVAL for a malformed chain (or more than SNAP_MAX_DEPTH
 * layers), or mmap's -errno; after a failure the RAM contents are
 * undefined. */
int snap_mem_map_chain(struct guest_mem *mem, const struct snap_mem_layer *layers, unsigned int n);

#endif
