/* codepack.h - turns the code a user deploys (a tar, tar.gz or zip
 * archive, or a directory or archive on the host) into kiln's KLNA code
 * archive (common/archive.h), checking it as it goes. Reading uses
 * libarchive; sizes claimed by headers are never trusted: bytes are counted
 * as they are read and the limits below stop the read.
 *
 * Rules (each violation is an error whose message names the entry):
 *   - regular files and directories only; a symbolic link is followed only
 *     when it is relative and stays inside the tree, and is stored as a copy
 *     of its target (a link out of the tree, absolute, or dangling is an
 *     error); hard links inside the tree are stored as copies; devices,
 *     FIFOs and sockets are errors;
 *   - paths are made relative ("./a" -> "a"); absolute paths and any ".."
 *     component are errors; paths must pass archive_path_ok();
 *   - at most ARCHIVE_MAX_ENTRIES entries and ARCHIVE_MAX_TOTAL bytes of file
 *     data in all (an entry claiming 10 GiB fails when the limit is passed,
 *     without allocating it);
 *   - modes are kept to their permission bits (& 0777) and files are
 *     readable by their owner (| 0400).
 * A single top-level directory is not stripped: paths are as in the archive.
 */
#ifndef KILN_DAEMON_CODEPACK_H
#define KILN_DAEMON_CODEPACK_H

#include <stddef.h>
#include <stdint.h>

/* Packs the archive in buf[0..len) (tar, tar.gz, tar.xz, zip: detected by
 * content) into a malloc'd KLNA buffer (*out, *out_len; caller frees).
 * Returns 0, or -EINVAL (bad entry / not an archive), -E2BIG (limits), or
 * -errno, with a one-line message in err (err_size bytes, always
 * NUL-terminated). */
int codepack_from_archive(const void *buf, size_t len, uint8_t **out, size_t *out_len,
			  char *err, size_t err_size);

/* Packs a directory tree (walked with openat/O_NOFOLLOW, symlinks as
 * above) or an archive file at an absolute host path. A single regular file
 * that is not an archive becomes a one-file archive under its base name.
 * Same returns as codepack_from_archive; -ENOENT for a missing path. */
int codepack_from_path(const char *path, uint8_t **out, size_t *out_len, char *err,
		       size_t err_size);

#endif
