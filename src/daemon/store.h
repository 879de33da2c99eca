/* store.h - kilnd's content-addressed stores under the state directory:
 *
 *   STATE/code/<sha256>.klna      code archives (KLNA, common/archive.h)
 *   STATE/snapshots/<id>/         function snapshots (kiln-vmm directories)
 *
 * Writes are atomic: a temporary file in the same directory, fsync, rename,
 * fsync of the directory; a crash leaves either nothing or the whole file.
 * Temporary leftovers (".tmp-*") are removed by store_open.
 */
#ifndef KILN_DAEMON_STORE_H
#define KILN_DAEMON_STORE_H

#include <stddef.h>
#include <stdint.h>

struct store;

/* Opens the stores under state_dir (creating code/ and snapshots/, mode
 * 0700). Returns 0 and *out, or -errno. */
int store_open(const char *state_dir, struct store **out);

/* Frees the handle. Accepts NULL. */
void store_close(struct store *s);

/* Lower-case hex sha256 of buf[0..len) into hex (65 bytes with the NUL). */
void store_sha256_hex(const void *buf, size_t len, char hex[65]);

/* Stores an archive (idempotent: an existing identical object is kept).
 * Writes its sha256 hex into hex. Returns 0 or -errno. */
int store_code_put(struct store *s, const void *buf, size_t len, char hex[65]);

/* Reads the archive with this sha256 into a malloc'd buffer (*buf, *len;
 * caller frees), verifying its hash. Returns 0, -ENOENT, -EBADMSG (the
 * content does not match its name), or -errno. hex is validated
 * (64 lower-case hex digits, else -EINVAL). */
int store_code_get(struct store *s, const char *hex, uint8_t **buf, size_t *len);

/* Path of a snapshot directory for id into out (size bytes). The id must be
 * [a-z0-9-]{1,64}, else -EINVAL; -ENAMETOOLONG when out is too small.
 * Does not create it. */
int store_snapshot_path(struct store *s, const char *id, char *out, size_t size);

/* A new empty temporary directory under snapshots/ for kiln-vmm to write
 * a snapshot into (path in out); publish it with store_snapshot_commit.
 * Returns 0 or -errno. */
int store_snapshot_tmpdir(struct store *s, char *out, size_t size);

/* Renames the temporary directory tmp to the snapshot `id`, after writing
 * its manifest (see store_snapshot_verify) and fsyncing the files in it and
 * the parent. -EEXIST when id exists. Returns 0 or -errno. */
int store_snapshot_commit(struct store *s, const char *tmp, const char *id);

/* Removes a temporary directory from store_snapshot_tmpdir that will not
 * be committed (a failed snapshot: its partial files would hold space until
 * the next store_open). Returns 0, -EINVAL when tmp is not one of ours, or
 * -errno. */
int store_snapshot_discard(struct store *s, const char *tmp);

/* Checks snapshot `id` against the manifest store_snapshot_commit wrote
 * into it (STATE/snapshots/<id>/sha256sums: a digest of each file's
 * content, holes and zero pages alike). Returns 0 when every file matches;
 * -EBADMSG when one does not, is missing, or the manifest is malformed;
 * -ENODATA when the snapshot has no manifest (made before they existed);
 * -ENOENT / -errno otherwise. why (size bytes) gets a one-line reason
 * naming the file. */
int store_snapshot_verify(struct store *s, const char *id, char *why, size_t size);

/* Removes snapshot `id` (recursively). Returns 0, -ENOENT, or -errno. */
int store_snapshot_remove(struct store *s, const char *id);

/* Allocated bytes (st_blocks * 512) of the snapshot's memory file and size
 * of its state file. Returns 0 or -errno. */
int store_snapshot_sizes(struct store *s, const char *id, uint64_t *memory_bytes,
			 uint64_t *state_bytes);

#endif
