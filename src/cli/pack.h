/* pack.h - the code a user deploys, packed on the client: a directory
 * becomes an uncompressed POSIX ustar archive in memory; a file that is
 * already an archive (tar, gzip, xz, bzip2, zstd, zip) is sent as it is;
 * any other single file becomes a one-file archive under its base name.
 * The result is sent as base64 in the spec's `code` field
 * (docs/http-api.md), so remote gateways work.
 *
 * Archives are reproducible: entries sorted by name, mtime 0, uid/gid 0,
 * no user names, modes kept to their permission bits. Directories named
 * `.git` or `__pycache__` are skipped. Symbolic links are stored as links
 * when relative and inside the tree (kilnd stores a copy of the target);
 * absolute or escaping links, devices, FIFOs and sockets are errors. Limits
 * follow kilnd's: 4096 entries, 64 MiB of file data, 32 levels.
 */
#ifndef KILN_CLI_PACK_H
#define KILN_CLI_PACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PACK_MAX_ENTRIES 4096
#define PACK_MAX_BYTES	 (64U * 1024U * 1024U)
#define PACK_MAX_DEPTH	 32

/* Packs the directory or file at path into a malloc'd buffer (*out,
 * *out_len; caller frees). Returns 0, or -ENOENT (missing), -EINVAL (an
 * entry that cannot be packed), -E2BIG (limits), -ENAMETOOLONG (a path a
 * ustar header cannot hold), -errno; with a one-line message naming the
 * entry in err (err_size bytes, always NUL-terminated). */
int pack_path(const char *path, uint8_t **out, size_t *out_len, char *err, size_t err_size);

/* True when data[0..len) starts like an archive kilnd reads (tar, gzip,
 * xz, bzip2, zstd, zip). */
bool pack_is_archive(const uint8_t *data, size_t len);

/* Standard base64 (with '=' padding) of data[0..len): a malloc'd
 * NUL-terminated string, or NULL when out of memory. */
char *pack_base64(const uint8_t *data, size_t len);

#endif
