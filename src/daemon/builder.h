/* builder.h - c and rust functions, the Cloudlet way: their source is
 * compiled inside a builder microVM (an image holding gcc and rustc,
 * images/rootfs/build-runtime.sh builder), never on the host, and the
 * executable becomes a native function (docs/runtimes.md).
 *
 * This is the conversation with the builder VM's agent: one LOAD of the
 * source in exec mode with runtimes/builder/build as the handler, one
 * INVOKE, and its RESULT: the executable on success, the compiler's
 * messages on failure. deploy.c owns the VM (a restore of the builder's
 * base snapshot) around it.
 */
#ifndef KILN_DAEMON_BUILDER_H
#define KILN_DAEMON_BUILDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct agentconn;

/* The build script in the builder image (runtimes/builder/build). */
#define BUILDER_SCRIPT "/usr/lib/kiln/runtimes/builder/build"

/* The builder VM's shape: rustc needs a few hundred MiB for a small crate. */
#define BUILDER_MEMORY_MB 1024
#define BUILDER_VCPUS	  1

/* One build's run time, at most: guest kernel code is emulated on nested
 * KVM, and a compiler is thousands of page faults. */
#define BUILDER_TIMEOUT_MS (20 * 60 * 1000)

/* Output of the build as it comes (compiler messages), for the deploy log. */
typedef void (*builder_log_fn)(void *opaque, const void *data, size_t len);

/* Writes the handler command line that builds `language` (c or rust),
 * optimised when release, into buf (size bytes). Returns 0, or -EINVAL for
 * another language, -ENOSPC when buf is too small. */
int builder_command(const char *language, bool release, char *buf, size_t size);

/* On c, an open connection to an agent that was just restored (ids 1 and 2
 * taken by its ENTROPY and TIME): LOADs the source archive (KLNA,
 * borrowed) with `command` as an exec-mode handler, INVOKEs it once and
 * waits up to timeout_ms for the result, passing the output it logs to
 * log (may be NULL). On success *exe (malloc'd, the caller frees) and
 * *exe_len are what the command wrote on stdout. Returns 0; -ENOEXEC when
 * the command failed (err: its message, which ends with the compiler's
 * last lines); -ETIMEDOUT; -EPROTO or the connection's -errno when the
 * agent went away or misbehaved (err says which). */
int builder_run(struct agentconn *c, const char *command, const void *source, size_t source_len,
		int timeout_ms, builder_log_fn log, void *opaque, uint8_t **exe, size_t *exe_len,
		char *err, size_t esz);

/* The code archive of the native function a build made: exe as
 * `bootstrap`, mode 0755. Returns 0 with *out (malloc'd, the caller frees)
 * and *out_len, -EINVAL for an empty executable, or an archive_write
 * error. */
int builder_archive(const uint8_t *exe, size_t exe_len, uint8_t **out, size_t *out_len);

/* The build cache, CACHE_DIR/builds/<key>: the archive builder_archive
 * made, so that a new version that changes only settings (env, memory,
 * limits), or the same source deployed again, is not compiled again. */

/* The key of one build: sha256 (hex, 64 characters and a NUL into out) of
 * the builder's identity (image_key: its image, kernel and kiln-vmm), the
 * runtime, the profile and the source archive. Returns 0 or -ENOMEM. */
int builder_cache_key(const char *image_key, const char *runtime, bool release, const void *source,
		      size_t source_len, char out[65]);

/* Reads the cached archive of key: 0 and *archive (malloc'd, the caller
 * frees) and *len; -ENOENT when there is none; -EBADMSG when the file is
 * not a valid one-executable archive (it is removed); or -errno. */
int builder_cache_get(const char *cache_dir, const char *key, uint8_t **archive, size_t *len);

/* Stores archive under key (atomically: readers see all or nothing).
 * Returns 0 or -errno. */
int builder_cache_put(const char *cache_dir, const char *key, const uint8_t *archive, size_t len);

#endif
