/* bootfile.h - opening and reading the kernel and initrd files.
 *
 * Every error is logged once, naming what the file is ("kernel", "initrd")
 * and its path.
 */
#ifndef KILN_VMM_BOOT_BOOTFILE_H
#define KILN_VMM_BOOT_BOOTFILE_H

#include <stddef.h>
#include <stdint.h>

struct boot_file {
	uint8_t *data; /* malloc'd, owned; NULL after boot_file_release */
	size_t size;
};

/* Opens `path` read-only and checks it is a regular file. Returns 0 and
 * stores an fd the caller owns (and must close) and the file size, or -errno
 * (-ENOENT, -EACCES, -EISDIR for a directory, -EINVAL for another kind of
 * file), logged as "<what> <path>: ...". */
int boot_file_open(const char *path, const char *what, int *fd_out, uint64_t *size_out);

/* Reads exactly `len` bytes from the start of `fd` into `dst`. Returns 0 or
 * -errno, logged; -EIO when the file turns out shorter than `len` (it
 * changed while kiln read it). */
int boot_file_read_exact(int fd, const char *path, const char *what, void *dst, size_t len);

/* Reads the whole of `path` into memory owned by `out` (free it with
 * boot_file_release). Files larger than `max_size` are refused with -EFBIG.
 * Returns 0 or -errno, logged. */
int boot_file_load(const char *path, const char *what, uint64_t max_size, struct boot_file *out);

/* Frees what boot_file_load allocated. Accepts NULL and released files. */
void boot_file_release(struct boot_file *f);

#endif
