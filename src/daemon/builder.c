/* builder.c - the builder microVM's conversation (see builder.h). */
#include "daemon/builder.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/archive.h"
#include "common/atomicfile.h"
#include "common/readfile.h"
#include "common/proto.h"
#include "daemon/agentconn.h"
#include "daemon/util.h"

/* Frame ids: 1 and 2 are the reseed's. */
/* The executable's name in the archive a build makes. */
static const char exe_name[] = "bootstrap";

enum { BUILDER_LOAD_ID = 3, BUILDER_INVOKE_ID = 4 };

int builder_command(const char *language, bool release, char *buf, size_t size)
{
	if (strcmp(language, "c") && strcmp(language, "rust"))
		return -EINVAL;
	return util_fmt(buf, size, "%s %s %s", BUILDER_SCRIPT, language,
			release ? "release" : "debug")
		       ? -ENOSPC
		       : 0;
}

/* LOAD then INVOKE, encoded into one new buffer. */
static int encode_frames(const char *command, const void *source, size_t source_len, int timeout_ms,
			 uint8_t **out, size_t *out_len)
{
	struct proto_load ld = {0};
	struct proto_invoke inv = {0};
	size_t cap = source_len + strlen(command) + 1024;
	uint8_t *buf;
	ssize_t n, m;

	ld.runtime.ptr = (const uint8_t *)"builder";
	ld.runtime.len = 7;
	ld.mode.ptr = (const uint8_t *)"exec";
	ld.mode.len = 4;
	ld.handler.ptr = (const uint8_t *)command;
	ld.handler.len = (uint32_t)strlen(command);
	ld.memory_mb = BUILDER_MEMORY_MB;
	ld.archive.ptr = source;
	ld.archive.len = (uint32_t)source_len;
	inv.deadline_ms = (uint32_t)timeout_ms;
	buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	n = proto_encode_load(buf, cap, BUILDER_LOAD_ID, &ld);
	m = n < 0 ? n : proto_encode_invoke(buf + n, cap - (size_t)n, BUILDER_INVOKE_ID, &inv);
	if (m < 0) {
		free(buf);
		return (int)m;
	}
	*out = buf;
	*out_len = (size_t)(n + m);
	return 0;
}

/* The RESULT of the build: the executable, or why there is none. */
static int take_result(const uint8_t *p, uint32_t len, uint8_t **exe, size_t *exe_len, char *err,
		       size_t esz)
{
	struct proto_result res;

	if (proto_decode_result(p, len, &res)) {
		util_fmt(err, esz, "the builder's agent sent a malformed RESULT");
		return -EPROTO;
	}
	if (res.status == PROTO_STATUS_TIMEOUT) {
		util_fmt(err, esz, "the build did not finish in %d s", BUILDER_TIMEOUT_MS / 1000);
		return -ETIMEDOUT;
	}
	if (res.status != PROTO_STATUS_OK) {
		util_fmt(err, esz, "the build failed: %.*s", (int)res.error_msg.len,
			 (const char *)res.error_msg.ptr);
		return -ENOEXEC;
	}
	if (res.body.len == 0) {
		util_fmt(err, esz, "the build wrote no executable");
		return -ENOEXEC;
	}
	*exe = malloc(res.body.len);
	if (!*exe)
		return -ENOMEM;
	memcpy(*exe, res.body.ptr, res.body.len);
	*exe_len = res.body.len;
	return 0;
}

int builder_run(struct agentconn *c, const char *command, const void *source, size_t source_len,
		int timeout_ms, builder_log_fn log, void *opaque, uint8_t **exe, size_t *exe_len,
		char *err, size_t esz)
{
	int64_t deadline = util_now_ms() + timeout_ms + 30000; /* the agent's own kill first */
	uint8_t *frames = NULL;
	size_t frames_len = 0;
	int r;

	r = encode_frames(command, source, source_len, timeout_ms, &frames, &frames_len);
	if (!r) {
		r = agentconn_send(c, frames, frames_len);
		free(frames);
	}
	if (r) {
		util_fmt(err, esz, "cannot send the source to the builder: %s", strerror(-r));
		return r;
	}
	for (;;) {
		int64_t left = deadline - util_now_ms();
		struct proto_header h;
		const uint8_t *p;

		r = agentconn_wait(c, &h, &p, left > 0 ? (int)left : 1);
		if (r == -ETIMEDOUT) {
			util_fmt(err, esz, "the builder did not answer in %d s",
				 (int)((timeout_ms + 30000) / 1000));
			return r;
		}
		if (r != 1) {
			util_fmt(err, esz, "the builder's agent went away: %s",
				 strerror(r ? -r : EIO));
			return r ? r : -EIO;
		}
		if (h.type == PROTO_LOG) {
			struct proto_log lg;
			if (log && !proto_decode_log(p, h.length, &lg))
				log(opaque, lg.data.ptr, lg.data.len);
		} else if (h.type == PROTO_ERROR) {
			struct proto_errmsg em;
			if (proto_decode_error(p, h.length, &em) == 0)
				util_fmt(err, esz, "the builder refused the source: %.*s",
					 (int)em.message.len, (const char *)em.message.ptr);
			else
				util_fmt(err, esz, "the builder refused the source");
			return -ENOEXEC;
		} else if (h.type == PROTO_RESULT && h.id == BUILDER_INVOKE_ID) {
			return take_result(p, h.length, exe, exe_len, err, esz);
		}
		/* ACKs of the reseed and LOAD_OK: nothing to do */
	}
}

int builder_archive(const uint8_t *exe, size_t exe_len, uint8_t **out, size_t *out_len)
{
	struct archive_entry e = {.kind = ARCHIVE_FILE,
				  .mode = 0755,
				  .path = exe_name,
				  .path_len = sizeof(exe_name) - 1,
				  .data = exe,
				  .size = (uint32_t)exe_len};

	if (!exe_len)
		return -EINVAL;
	if (exe_len > ARCHIVE_MAX_TOTAL)
		return -E2BIG;
	return archive_write(&e, 1, out, out_len);
}

int builder_cache_key(const char *image_key, const char *runtime, bool release, const void *source,
		      size_t source_len, char out[65])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	uint8_t md[32];
	unsigned mdlen = 0;

	if (!ctx)
		return -ENOMEM;
	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	/* NUL-separated, so no two inputs run together the same way */
	EVP_DigestUpdate(ctx, image_key, strlen(image_key) + 1);
	EVP_DigestUpdate(ctx, runtime, strlen(runtime) + 1);
	EVP_DigestUpdate(ctx, release ? "release" : "debug", release ? 8 : 6);
	EVP_DigestUpdate(ctx, source, source_len);
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	EVP_MD_CTX_free(ctx);
	for (unsigned i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	return 0;
}

static int cache_path(const char *cache_dir, const char *key, char *path, size_t size)
{
	return util_fmt(path, size, "%s/builds/%s", cache_dir, key) ? -ENAMETOOLONG : 0;
}

int builder_cache_get(const char *cache_dir, const char *key, uint8_t **archive, size_t *len)
{
	struct archive_reader rd;
	struct archive_entry e;
	char path[PATH_MAX];
	uint8_t *buf;
	size_t n;
	int fd, r;

	r = cache_path(cache_dir, key, path, sizeof(path));
	if (r)
		return r;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	r = readfile_fd(fd, ARCHIVE_MAX_TOTAL + 4096, &buf, &n);
	close(fd);
	if (r)
		return r;
	/* Exactly what builder_archive writes: one executable, `bootstrap`. */
	if (archive_check(buf, n, NULL) || archive_open(&rd, buf, n) ||
	    archive_next(&rd, &e) != 1 || e.kind != ARCHIVE_FILE || e.size == 0 ||
	    e.path_len != sizeof(exe_name) - 1 || memcmp(e.path, exe_name, e.path_len) ||
	    archive_next(&rd, &e) != 0) {
		free(buf);
		unlink(path);
		return -EBADMSG;
	}
	*archive = buf;
	*len = n;
	return 0;
}

int builder_cache_put(const char *cache_dir, const char *key, const uint8_t *archive, size_t len)
{
	char path[PATH_MAX];
	int r;

	r = util_fmt(path, sizeof(path), "%s/builds", cache_dir) ? -ENAMETOOLONG : 0;
	if (!r)
		r = util_mkdirs(path, 0755);
	if (!r)
		r = cache_path(cache_dir, key, path, sizeof(path));
	return r ? r : atomicfile_write(path, archive, len, 0644);
}
