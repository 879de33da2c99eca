/* archive.h - kiln's code archive: the files of a function, as sent in a
 * LOAD frame (docs/protocol.md, "Code archive").
 *
 *   u32 magic ARCHIVE_MAGIC ("KLNA"), u32 count, then count entries:
 *   u8 kind (1 directory, 2 regular file), u8 reserved (0), u16 mode
 *   (permission bits, <= 0777), u16 path_len, u32 size (0 for directories),
 *   path_len bytes of path, size bytes of data.
 *
 * Paths are relative ("src/app.py"), components separated by single '/',
 * no empty, "." or ".." component, no NUL, at most ARCHIVE_MAX_PATH bytes,
 * components at most 255 bytes, at most ARCHIVE_MAX_DEPTH components.
 * Nothing may follow the last entry. Symbolic links, devices, FIFOs and
 * sockets cannot be expressed (kinds other than 1 and 2 are rejected).
 *
 * Like the protocol parser, the reader never allocates and never reads past
 * the length it is given.
 */
#ifndef KILN_COMMON_ARCHIVE_H
#define KILN_COMMON_ARCHIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ARCHIVE_MAGIC	      0x414e4c4bU /* "KLNA" */
#define ARCHIVE_HEADER_SIZE   8
#define ARCHIVE_ENTRY_SIZE    10 /* fixed part of an entry */
#define ARCHIVE_MAX_ENTRIES   4096
#define ARCHIVE_MAX_PATH      1024
#define ARCHIVE_MAX_COMPONENT 255
#define ARCHIVE_MAX_DEPTH     32
#define ARCHIVE_MAX_TOTAL     (64U * 1024U * 1024U) /* file bytes, all entries */

enum archive_kind {
	ARCHIVE_DIR = 1,
	ARCHIVE_FILE = 2,
};

struct archive_entry {
	uint8_t kind;	     /* enum archive_kind */
	uint16_t mode;	     /* permission bits, <= 0777 */
	const char *path;    /* into the buffer, NOT NUL-terminated */
	uint16_t path_len;   /* 1..ARCHIVE_MAX_PATH */
	const uint8_t *data; /* into the buffer; NULL when size is 0 */
	uint32_t size;
};

struct archive_reader {
	const uint8_t *p;
	size_t left;
	uint32_t remaining; /* entries not yet returned */
	uint64_t total;	    /* file bytes so far */
};

/* True when path[0..len) is an acceptable relative path (rules above). */
bool archive_path_ok(const char *path, size_t len);

/* Starts reading the archive buf[0..len). Returns 0, -EBADMSG for a short
 * header or a bad magic, -E2BIG for more than ARCHIVE_MAX_ENTRIES entries. */
int archive_open(struct archive_reader *r, const void *buf, size_t len);

/* Reads the next entry into *e (views into the buffer). Returns 1 for an
 * entry, 0 at the end (when nothing is left over), or: -EBADMSG for a
 * truncated entry, a size past the end, reserved bits set, or bytes after the
 * last entry; -EINVAL for a bad path; -ENOTSUP for a kind that is neither a
 * directory nor a regular file; -E2BIG when the file bytes exceed
 * ARCHIVE_MAX_TOTAL. */
int archive_next(struct archive_reader *r, struct archive_entry *e);

/* Validates the whole archive: every entry and the end. Stores the number of
 * entries in *count (may be NULL). Returns 0 or an error of archive_open /
 * archive_next. */
int archive_check(const void *buf, size_t len, uint32_t *count);

/* Writes n entries, in the order given, as a new archive (*out malloc'd,
 * the caller frees; *out_len its length), and checks it. Returns 0,
 * -ENOMEM, -E2BIG (more than ARCHIVE_MAX_ENTRIES entries or the total past
 * ARCHIVE_MAX_TOTAL), or an archive_check error for an entry that breaks
 * the rules above (nothing is returned then). */
int archive_write(const struct archive_entry *entries, size_t n, uint8_t **out, size_t *out_len);

/* Extracts the archive (validated first: on a validation error nothing is
 * written) into the directory dirfd, which should be new and empty. Creates
 * missing parent directories (0755); files are created with O_EXCL and
 * O_NOFOLLOW and get exactly their mode; directory modes are applied at the
 * end. On failure returns -errno and, when bad_path is not NULL, copies the
 * offending path (NUL-terminated, truncated to bad_path_size) there; the
 * directory may then hold part of the archive. Returns 0 on success. */
int archive_extract(int dirfd, const void *buf, size_t len, char *bad_path, size_t bad_path_size);

#endif
