/* snapshot.h - a snapshot directory: DIR/state (format.h) and DIR/memory
 * (memfile.h), written atomically and loaded with its chain of parents.
 *
 * Writing: snap_dir_prepare() removes DIR/state first, so a directory being
 * rewritten never looks like a valid snapshot; then DIR/memory and last
 * DIR/state are each written to a temporary name, fsync'ed and renamed, and
 * the directory is fsync'ed. A crash leaves either no DIR/state or a
 * complete snapshot.
 *
 * Loading: snap_image_load() reads and verifies DIR/state and, for a diff
 * snapshot, each parent's (whose checksum must be the one the child
 * recorded), and opens every memory file read-only (checking its size); it
 * touches no VM. snap_image_map() then maps the chain over guest RAM. Files
 * are only ever opened O_RDONLY: a restore never modifies a snapshot.
 */
#ifndef KILN_VMM_SNAPSHOT_SNAPSHOT_H
#define KILN_VMM_SNAPSHOT_SNAPSHOT_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/memory.h"
#include "vmm/snapshot/format.h"
#include "vmm/snapshot/memfile.h"

#define SNAP_VMM_VERSION "kiln-vmm 0.1"
#define SNAP_META_DIFF	 1U

/* SNAP_SEC_META's payload. */
struct snap_meta {
	uint64_t mem_size;
	uint32_t vcpus;
	uint32_t flags;	     /* SNAP_META_DIFF */
	uint64_t created_ns; /* CLOCK_REALTIME */
	char version[33];    /* kiln-vmm version that wrote it, NUL-terminated */
};

/* Writes the META section. */
void snap_put_meta(struct snap_writer *w, uint64_t mem_size, unsigned int vcpus, bool diff);

/* Reads the META section of `f`. Returns 0 or -EINVAL with a reason. */
int snap_get_meta(const struct snap_file *f, struct snap_meta *m, char *why, size_t why_len);

/* ---- writing ----------------------------------------------------------------------- */

/* Creates DIR if missing (one level) and removes DIR/state. Returns 0 or
 * -errno with a reason. */
int snap_dir_prepare(const char *dir, char *why, size_t why_len);

/* Writes guest RAM to DIR/memory atomically (see snap_mem_write for `b`,
 * `diff` and `ext`). When `reopen` is non-NULL it receives the new file
 * opened read-only (caller closes). Returns 0 or -errno with a reason. */
int snap_write_memory(const char *dir, const struct guest_mem *mem, const struct snap_backing *b,
		      bool diff, struct snap_extents *ext, struct snap_mem_stats *st, int *reopen,
		      char *why, size_t why_len);

/* Writes the sealed state file `buf` to DIR/state atomically and fsyncs
 * the directory. Returns 0 or -errno with a reason. */
int snap_write_state(const char *dir, const void *buf, size_t len, char *why, size_t why_len);

/* ---- loading ------------------------------------------------------------------------- */

struct snap_layer {
	char dir[PATH_MAX]; /* absolute */
	uint32_t crc;	    /* its state file's checksum */
	bool diff;
	int mem_fd;		     /* DIR/memory, O_RDONLY */
	struct snap_extents extents; /* diff layers: the pages its file holds */
};

struct snap_image {
	uint8_t *state; /* the top snapshot's state file (owned) */
	size_t state_len;
	struct snap_file file; /* parsed from `state` */
	struct snap_meta meta;
	struct snap_layer layers[SNAP_MAX_DEPTH]; /* [0] the full base ... [n-1] DIR */
	unsigned int nlayers;
};

/* Loads the snapshot in `dir` and its parents (see above), refusing a guest
 * larger than `max_mem` bytes. Returns 0, or -errno with a clear reason
 * (naming the file) in `why`; on failure `img` holds nothing. */
int snap_image_load(const char *dir, uint64_t max_mem, struct snap_image *img, char *why,
		    size_t why_len);

/* Frees everything and closes the files. Accepts a zeroed image. */
void snap_image_release(struct snap_image *img);

/* Maps the image's memory chain over `mem` (whose size must be the
 * snapshot's) and makes `b` (released first) describe it; the base file's
 * fd moves into `b`. Returns 0 or -errno with a reason. */
int snap_image_map(struct snap_image *img, struct guest_mem *mem, struct snap_backing *b, char *why,
		   size_t why_len);

#endif
