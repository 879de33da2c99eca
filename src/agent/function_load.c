/* function_load.c - LOAD: checks the request (names, environment), replaces
 * the previous function, extracts the code archive into a fresh directory
 * and starts the function (exec mode: at once; server mode: the runtime). */
#include "agent/function_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/archive.h"
#include "common/clock.h"
#include "common/log.h"

static int fn_rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if ((type == FTW_DP ? rmdir(path) : unlink(path)) < 0 && errno != ENOENT)
		log_debug("cannot remove %s: %s", path, strerror(errno));
	return 0;
}

static void fn_rmtree(const char *path)
{
	nftw(path, fn_rm_one, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

static void fn_free_env(struct fn *f)
{
	for (char **e = f->env; e && *e; e++)
		free(*e);
	free(f->env);
	f->env = NULL;
}

void fn_unload(struct fn *f, const char *why)
{
	fn_proc_close(f);
	f->spare = FN_SPARE_NONE;
	if (f->load_pending)
		fn_send_error(f, f->load_conn, f->load_id, PROTO_ERR_REPLACED, "%s", why);
	f->load_pending = false;
	fn_fail_jobs(f, true, PROTO_ERR_REPLACED, why);
	fn_job_done(f);
	if (f->dir[0])
		fn_rmtree(f->dir);
	f->dir[0] = '\0';
	fn_free_env(f);
	free(f->handler);
	f->handler = NULL;
	f->runtime[0] = f->mode[0] = '\0';
	f->state = PROTO_FN_NONE;
}

bool fn_name_ok(struct proto_bytes b)
{
	if (b.len == 0 || b.len > FN_NAME_MAX)
		return false;
	for (uint32_t i = 0; i < b.len; i++) {
		char c = (char)b.ptr[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
		      c == '.'))
			return false;
	}
	return true;
}

bool fn_is_native(const char *runtime, size_t len)
{
	return len == strlen(FN_NATIVE_RUNTIME) && !memcmp(runtime, FN_NATIVE_RUNTIME, len);
}

/* In server mode, a native handler must be an executable regular file of
 * the extracted code. Returns 0 or -errno (-EACCES: not executable). */
static int fn_native_check(const struct fn *f)
{
	struct stat st;
	int dfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), err = 0;

	if (dfd < 0)
		return -errno;
	if (fstatat(dfd, f->handler, &st, 0) < 0)
		err = -errno;
	else if (!S_ISREG(st.st_mode))
		err = -EISDIR;
	else if (faccessat(dfd, f->handler, X_OK, 0) < 0 || !(st.st_mode & 0111))
		err = -EACCES;
	close(dfd);
	return err;
}

bool fn_env_name_ok(struct proto_bytes b)
{
	for (uint32_t i = 0; i < b.len; i++) {
		char c = (char)b.ptr[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
		      (i > 0 && c >= '0' && c <= '9')))
			return false;
	}
	return b.len > 0;
}

/* 0 when rt's interpreter can be run and its bootstrap read, else -errno. */
static int fn_interp_available(const struct fn *f, const struct fn_interp *rt)
{
	char boot[PATH_MAX];
	const char *interp = rt->interp ? rt->interp : f->python;

	snprintf(boot, sizeof(boot), "%s/%s", f->runtime_dir, rt->boot);
	return access(interp, X_OK) < 0 || access(boot, R_OK) < 0 ? -errno : 0;
}

bool fn_env_bindable(const struct proto_kv *env)
{
	/* Read by python, node, glibc or the dynamic loader at start-up. */
	static const char *const prefixes[] = {"PYTHON", "NODE_",  "UV_",    "LD_",
					       "LC_",	 "GLIBC_", "MALLOC_"};
	static const char *const names[] = {"LANG", "LANGUAGE", "TZ", "HOME"};
	struct proto_bytes k, v;
	uint32_t pos = 0;

	while (proto_kv_next(env, &pos, &k, &v)) {
		for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
			if (k.len >= strlen(prefixes[i]) &&
			    !memcmp(k.ptr, prefixes[i], strlen(prefixes[i])))
				return false;
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			if (proto_bytes_eq(k, names[i]))
				return false;
	}
	return true;
}

static int fn_copy_env(struct fn *f, const struct proto_kv *kv)
{
	struct proto_bytes k, v;
	uint32_t pos = 0, i = 0;

	f->env = calloc((size_t)kv->count + 1, sizeof(*f->env));
	if (!f->env)
		return -ENOMEM;
	while (proto_kv_next(kv, &pos, &k, &v)) {
		char *s = malloc((size_t)k.len + v.len + 2);

		if (!s)
			return -ENOMEM;
		memcpy(s, k.ptr, k.len);
		s[k.len] = '=';
		memcpy(s + k.len + 1, v.ptr, v.len);
		s[k.len + 1 + v.len] = '\0';
		f->env[i++] = s;
	}
	return 0;
}

/* Makes the fresh directory base_dir/<generation>. Returns 0 or -errno. */
static int fn_make_dir(struct fn *f)
{
	char *s;

	/* mkdir -p base_dir */
	snprintf(f->dir, sizeof(f->dir), "%s", f->base_dir);
	for (s = strchr(f->dir + 1, '/');; s = strchr(s + 1, '/')) {
		if (s)
			*s = '\0';
		if (mkdir(f->dir, 0755) < 0 && errno != EEXIST)
			return -errno;
		if (!s)
			break;
		*s = '/';
	}
	snprintf(f->dir, sizeof(f->dir), "%s/%" PRIu32, f->base_dir, f->generation);
	if (mkdir(f->dir, 0755) == 0)
		return 0;
	if (errno != EEXIST)
		return -errno;
	/* Left by an earlier kiln-init (tests): start afresh. */
	fn_rmtree(f->dir);
	return mkdir(f->dir, 0755) < 0 ? -errno : 0;
}

void fn_load(struct fn *f, uint64_t conn, uint32_t id, const struct proto_load *m)
{
	char bad[ARCHIVE_MAX_PATH + 1], boot[PATH_MAX];
	struct proto_bytes k, v;
	uint32_t pos = 0;
	bool server, adopt;
	int err, dfd;

	/* Check everything before the current function is touched. */
	if (!fn_name_ok(m->runtime)) {
		fn_send_error(f, conn, id, PROTO_ERR_UNSUPPORTED, "bad runtime name");
		return;
	}
	if (proto_bytes_eq(m->mode, "server")) {
		server = true;
	} else if (proto_bytes_eq(m->mode, "exec")) {
		server = false;
	} else {
		fn_send_error(f, conn, id, PROTO_ERR_UNSUPPORTED,
			      "unknown mode \"%.*s\" (exec or server)",
			      (int)(m->mode.len < 32 ? m->mode.len : 32),
			      (const char *)m->mode.ptr);
		return;
	}
	if (m->handler.len == 0 || m->handler.len > FN_HANDLER_MAX) {
		fn_send_error(f, conn, id, PROTO_ERR_BAD_PAYLOAD, "empty or oversized handler");
		return;
	}
	while (proto_kv_next(&m->env, &pos, &k, &v)) {
		if (!fn_env_name_ok(k)) {
			fn_send_error(f, conn, id, PROTO_ERR_BAD_PAYLOAD,
				      "bad environment variable name");
			return;
		}
	}
	if (server && fn_is_native((const char *)m->runtime.ptr, m->runtime.len)) {
		if (!archive_path_ok((const char *)m->handler.ptr, m->handler.len)) {
			fn_send_error(f, conn, id, PROTO_ERR_BAD_PAYLOAD,
				      "native handler must be a relative path in the code "
				      "archive (no '/' first, no '.' or '..')");
			return;
		}
	} else if (server) {
		const struct fn_interp *rt =
			fn_interp_find((const char *)m->runtime.ptr, m->runtime.len);

		if (rt) {
			err = fn_interp_available(f, rt);
		} else {
			snprintf(boot, sizeof(boot), "%s/%.*s/bootstrap", f->runtime_dir,
				 (int)m->runtime.len, (const char *)m->runtime.ptr);
			err = access(boot, X_OK) < 0 ? -errno : 0;
		}
		if (err) {
			fn_send_error(f, conn, id, PROTO_ERR_UNSUPPORTED,
				      "runtime %.*s is not available here (%s)",
				      (int)m->runtime.len, (const char *)m->runtime.ptr,
				      strerror(-err));
			return;
		}
	}
	err = archive_check(m->archive.ptr, m->archive.len, NULL);
	if (err) {
		archive_extract(-1, m->archive.ptr, m->archive.len, bad, sizeof(bad));
		fn_send_error(f, conn, id, PROTO_ERR_BAD_ARCHIVE, "bad archive: %s%s%s",
			      strerror(-err), bad[0] ? ": " : "", bad);
		return;
	}

	/* An idle spare of this runtime takes the function (no function is
	 * loaded while there is one); otherwise it goes with the rest. */
	adopt = server && f->spare == FN_SPARE_IDLE &&
		proto_bytes_eq(m->runtime, f->spare_runtime) && fn_env_bindable(&m->env);
	if (!adopt)
		fn_unload(f, "replaced by a new LOAD");
	f->generation++;
	err = fn_make_dir(f);
	if (err) {
		fn_send_error(f, conn, id, PROTO_ERR_INTERNAL, "cannot create %s: %s", f->dir,
			      strerror(-err));
		f->dir[0] = '\0';
		return;
	}
	dfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	err = dfd < 0 ? -errno
		      : archive_extract(dfd, m->archive.ptr, m->archive.len, bad, sizeof(bad));
	if (dfd >= 0)
		close(dfd);
	if (err) {
		fn_send_error(f, conn, id, PROTO_ERR_BAD_ARCHIVE, "cannot extract %s: %s", bad,
			      strerror(-err));
		fn_unload(f, "failed load");
		return;
	}
	f->server = server;
	memcpy(f->runtime, m->runtime.ptr, m->runtime.len);
	f->runtime[m->runtime.len] = '\0';
	snprintf(f->mode, sizeof(f->mode), "%s", server ? "server" : "exec");
	f->handler = strndup((const char *)m->handler.ptr, m->handler.len);
	f->memory_mb = m->memory_mb;
	f->init_timeout_ms = m->init_timeout_ms;
	if (!f->handler || fn_copy_env(f, &m->env) < 0) {
		fn_send_error(f, conn, id, PROTO_ERR_INTERNAL, "out of memory");
		fn_unload(f, "failed load");
		return;
	}
	f->failure[0] = '\0';
	if (server && fn_is_native(f->runtime, strlen(f->runtime)) &&
	    (err = fn_native_check(f)) < 0) {
		fn_send_error(f, conn, id, PROTO_ERR_LOAD_FAILED,
			      "native handler '%.256s' is not an executable file in the code "
			      "archive: %s",
			      f->handler, strerror(-err));
		fn_unload(f, "failed load");
		return;
	}
	log_debug("function %" PRIu32 " in %s: %s %s %s", f->generation, f->dir, f->runtime,
		  f->mode, f->handler);
	if (!server) {
		size_t max = PROTO_HEADER_SIZE + 8;
		uint8_t *p = f->sink.reserve(f->sink.opaque, conn, max);
		ssize_t n = p ? proto_encode_load_ok(p, max, id, f->generation, 0) : -ENOMEM;

		f->state = PROTO_FN_READY;
		if (n > 0)
			f->sink.commit(f->sink.opaque, conn, (size_t)n);
		return;
	}
	f->load_pending = true;
	f->load_conn = conn;
	f->load_id = id;
	if (adopt) /* every failure above returned, the spare unharmed or stopped */
		fn_bind_runtime(f);
	else
		fn_start_runtime(f, false);
}

void fn_prestart(struct fn *f, uint64_t conn, uint32_t id, const struct proto_prestart *m)
{
	const struct fn_interp *rt;
	int err;

	if (!fn_name_ok(m->runtime)) {
		fn_send_error(f, conn, id, PROTO_ERR_UNSUPPORTED, "bad runtime name");
		return;
	}
	rt = fn_interp_find((const char *)m->runtime.ptr, m->runtime.len);
	if (!rt) {
		fn_send_error(f, conn, id, PROTO_ERR_UNSUPPORTED,
			      "runtime %.*s cannot be pre-started (python and node can)",
			      (int)m->runtime.len, (const char *)m->runtime.ptr);
		return;
	}
	err = fn_interp_available(f, rt);
	if (err) {
		fn_send_error(f, conn, id, PROTO_ERR_UNSUPPORTED,
			      "runtime %s is not available here (%s)", rt->name, strerror(-err));
		return;
	}
	fn_unload(f, "replaced by a PRESTART");
	snprintf(f->spare_runtime, sizeof(f->spare_runtime), "%s", rt->name);
	f->init_timeout_ms = m->init_timeout_ms;
	f->load_pending = true;
	f->load_conn = conn;
	f->load_id = id;
	log_debug("pre-starting a spare %s runtime", rt->name);
	fn_start_spare(f);
}
