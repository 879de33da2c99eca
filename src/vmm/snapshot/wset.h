/* wset.h - a snapshot's working set: the guest RAM pages a restored VM
 * touched between its restore and its first answer, kept in a small file
 * beside (or apart from) the snapshot, and brought in ahead of the guest on
 * later restores of the same snapshot (the REAP / FaaSnap idea): one
 * madvise(MADV_POPULATE_READ) per run of pages instead of one host page
 * fault per page the guest touches (docs/snapshots.md, "Working-set
 * prefetch").
 *
 * The file (little-endian):
 *   "KILNWSET"        magic, 8 bytes
 *   u32 version       1
 *   u32 snapshot_crc  the state-file checksum of the snapshot it was
 *                     recorded on (its identity: another snapshot, or the
 *                     same directory rewritten, has another)
 *   u64 mem_size      guest RAM bytes
 *   u64 n             runs that follow
 *   n x (u64 page, u64 npages)  sorted, disjoint, inside mem_size
 *   u32 crc32c        of every byte before it
 * A file that fails any check is never used: the restore goes on without
 * it and says why.
 */
#ifndef KILN_VMM_SNAPSHOT_WSET_H
#define KILN_VMM_SNAPSHOT_WSET_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/memory.h"
#include "vmm/snapshot/memfile.h"

#define WSET_MAGIC   "KILNWSET"
#define WSET_VERSION 1

/* Encodes a working set of `e` (the runs of pages to prefetch) for the
 * snapshot with state checksum `crc` and RAM of mem_size bytes. Returns 0
 * and a malloc'ed buffer (*out, *len; the caller frees), or -ENOMEM. */
int wset_encode(const struct snap_extents *e, uint32_t crc, uint64_t mem_size, uint8_t **out,
		size_t *len);

/* Decodes and checks buf[0..len) for the snapshot with checksum `crc` and
 * RAM of mem_size bytes into *e (empty on entry; the caller releases it).
 * Returns 0; -EBADMSG when the file is damaged (magic, version, length,
 * checksum, a run out of order or outside RAM), -ESTALE when it was
 * recorded on another snapshot or RAM size, -ENOMEM; why says which. */
int wset_decode(const uint8_t *buf, size_t len, uint32_t crc, uint64_t mem_size,
		struct snap_extents *e, char *why, size_t why_len);

/* Writes the working set to `path` (through path.tmp, renamed over it).
 * Returns 0 or -errno. */
int wset_save(const char *path, const struct snap_extents *e, uint32_t crc, uint64_t mem_size);

/* Reads `path` and decodes it as wset_decode. Returns as wset_decode, or
 * -errno when it cannot be read (-ENOENT: no file; -EFBIG: larger than a
 * working set of mem_size can be). */
int wset_load(const char *path, uint32_t crc, uint64_t mem_size, struct snap_extents *e,
	      char *why, size_t why_len);

/* Brings the pages of `e` into guest RAM's host mapping (page tables
 * filled from the page cache; nothing is copied or written), so the
 * guest's first touches of them cost no host page fault. Returns the pages
 * asked for, or -errno from madvise. */
int64_t wset_prefetch(const struct guest_mem *mem, const struct snap_extents *e);

#endif
