/* registry.c - kilnd's registry in SQLite (registry.h). */
#include "daemon/registry.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "common/log.h"

#define REGISTRY_SCHEMA_VERSION 1
#define REGISTRY_BUSY_MS	5000

static const char registry_schema[] =
	"CREATE TABLE version_counters ("
	"  name TEXT PRIMARY KEY,"
	"  last_version INTEGER NOT NULL);"
	"CREATE TABLE functions ("
	"  name TEXT PRIMARY KEY,"
	"  created_ns INTEGER NOT NULL);"
	"CREATE TABLE versions ("
	"  name TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,"
	"  version INTEGER NOT NULL,"
	"  spec_json TEXT NOT NULL,"
	"  snapshot TEXT NOT NULL DEFAULT '',"
	"  status TEXT NOT NULL CHECK (status IN ('deploying', 'ready', 'failed')),"
	"  error TEXT NOT NULL DEFAULT '',"
	"  created_ns INTEGER NOT NULL,"
	"  updated_ns INTEGER NOT NULL,"
	"  PRIMARY KEY (name, version));"
	"CREATE TABLE calls ("
	"  id TEXT PRIMARY KEY,"
	"  function TEXT NOT NULL,"
	"  state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done')),"
	"  request_json TEXT NOT NULL,"
	"  body BLOB NOT NULL,"
	"  callback_url TEXT NOT NULL DEFAULT '',"
	"  status_code INTEGER NOT NULL DEFAULT 0,"
	"  result BLOB NOT NULL DEFAULT x'',"
	"  result_headers TEXT NOT NULL DEFAULT '',"
	"  callback_status TEXT NOT NULL DEFAULT '',"
	"  attempts INTEGER NOT NULL DEFAULT 0,"
	"  created_ns INTEGER NOT NULL,"
	"  started_ns INTEGER NOT NULL DEFAULT 0,"
	"  finished_ns INTEGER NOT NULL DEFAULT 0);"
	"CREATE INDEX calls_by_state ON calls (state, created_ns);"
	"CREATE INDEX calls_by_function ON calls (function);";

#define CALL_COLUMNS                                                                               \
	"id, function, state, request_json, body, callback_url, status_code, result, "             \
	"result_headers, callback_status, attempts, created_ns, started_ns, finished_ns"

#define VERSION_COLUMNS "name, version, spec_json, snapshot, status, error, created_ns, updated_ns"

enum registry_stmt {
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_COUNTER_NEXT,
	ST_FUNCTION_ADD,
	ST_VERSION_ADD,
	ST_VERSION_SET,
	ST_VERSION_LIST,
	ST_FUNCTION_EXISTS,
	ST_VERSIONS_DELETE,
	ST_FUNCTION_DELETE,
	ST_CALL_INSERT,
	ST_CALL_START,
	ST_CALL_FINISH,
	ST_CALL_CALLBACK,
	ST_CALL_GET,
	ST_CALL_PENDING,
	ST_CALL_REQUEUE,
	ST_CALL_DELETE_FUNCTION,
	ST_COUNT,
};

static const char *const registry_sql[ST_COUNT] = {
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_COUNTER_NEXT] = "INSERT INTO version_counters (name, last_version) VALUES (?1, 1) "
			    "ON CONFLICT (name) DO UPDATE SET last_version = last_version + 1 "
			    "RETURNING last_version",
	[ST_FUNCTION_ADD] = "INSERT OR IGNORE INTO functions (name, created_ns) VALUES (?1, ?2)",
	[ST_VERSION_ADD] = "INSERT INTO versions (name, version, spec_json, status, created_ns, "
			   "updated_ns) VALUES (?1, ?2, ?3, 'deploying', ?4, ?4)",
	[ST_VERSION_SET] = "UPDATE versions SET status = coalesce(?3, status), "
			   "snapshot = coalesce(?4, snapshot), error = coalesce(?5, error), "
			   "updated_ns = ?6 WHERE name = ?1 AND version = ?2",
	[ST_VERSION_LIST] = "SELECT " VERSION_COLUMNS " FROM versions ORDER BY name, version",
	[ST_FUNCTION_EXISTS] = "SELECT 1 FROM functions WHERE name = ?1",
	[ST_VERSIONS_DELETE] = "DELETE FROM versions WHERE name = ?1",
	[ST_FUNCTION_DELETE] = "DELETE FROM functions WHERE name = ?1",
	[ST_CALL_INSERT] = "INSERT INTO calls (id, function, state, request_json, body, "
			   "callback_url, created_ns) VALUES (?1, ?2, 'queued', ?3, ?4, ?5, ?6)",
	[ST_CALL_START] = "UPDATE calls SET state = 'running', attempts = attempts + 1, "
			  "started_ns = ?2 WHERE id = ?1",
	[ST_CALL_FINISH] = "UPDATE calls SET state = 'done', status_code = ?2, result = ?3, "
			   "result_headers = ?4, finished_ns = ?5 WHERE id = ?1",
	[ST_CALL_CALLBACK] = "UPDATE calls SET callback_status = ?2 WHERE id = ?1",
	[ST_CALL_GET] = "SELECT " CALL_COLUMNS " FROM calls WHERE id = ?1",
	[ST_CALL_PENDING] = "SELECT " CALL_COLUMNS " FROM calls WHERE state != 'done' "
			    "ORDER BY created_ns, rowid",
	[ST_CALL_REQUEUE] = "UPDATE calls SET state = 'queued' WHERE state = 'running'",
	[ST_CALL_DELETE_FUNCTION] = "DELETE FROM calls WHERE function = ?1",
};

struct registry {
	pthread_mutex_t lock;
	sqlite3 *db;
	sqlite3_stmt *st[ST_COUNT];
};

static int64_t registry_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Maps an SQLite result code to -errno, logging the database's message. */
static int registry_err(struct registry *r, int rc, const char *what)
{
	switch (rc & 0xff) {
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_FULL:
		log_error("registry: %s: disk full", what);
		return -ENOSPC;
	case SQLITE_CONSTRAINT:
		return -EEXIST;
	default:
		log_error("registry: %s: %s", what,
			  r && r->db ? sqlite3_errmsg(r->db) : sqlite3_errstr(rc));
		return -EIO;
	}
}

static sqlite3_stmt *registry_stmt(struct registry *r, enum registry_stmt which)
{
	sqlite3_stmt *st = r->st[which];

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return st;
}

/* Runs a statement that returns no rows. */
static int registry_exec_stmt(struct registry *r, sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return registry_err(r, rc, what);
	return 0;
}

static int registry_begin(struct registry *r)
{
	return registry_exec_stmt(r, registry_stmt(r, ST_BEGIN), "begin");
}

static int registry_commit(struct registry *r)
{
	int ret = registry_exec_stmt(r, registry_stmt(r, ST_COMMIT), "commit");

	if (ret && !sqlite3_get_autocommit(r->db))
		registry_exec_stmt(r, registry_stmt(r, ST_ROLLBACK), "rollback");
	return ret;
}

static void registry_rollback(struct registry *r)
{
	if (!sqlite3_get_autocommit(r->db))
		registry_exec_stmt(r, registry_stmt(r, ST_ROLLBACK), "rollback");
}

static int registry_exec(struct registry *r, const char *sql)
{
	char *msg = NULL;
	int rc = sqlite3_exec(r->db, sql, NULL, NULL, &msg);

	if (rc != SQLITE_OK) {
		log_error("registry: %s: %s", sql, msg ? msg : sqlite3_errstr(rc));
		sqlite3_free(msg);
		return (rc & 0xff) == SQLITE_NOMEM ? -ENOMEM : -EIO;
	}
	return 0;
}

/* Reads PRAGMA user_version. */
static int registry_user_version(struct registry *r, int *version)
{
	sqlite3_stmt *st;
	int rc;

	rc = sqlite3_prepare_v2(r->db, "PRAGMA user_version", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return registry_err(r, rc, "user_version");
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*version = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 0 : registry_err(r, rc, "user_version");
}

/* Creates or checks the schema, in one transaction. */
static int registry_schema_setup(struct registry *r)
{
	char sql[64];
	int version = 0, ret;

	ret = registry_exec(r, "BEGIN IMMEDIATE");
	if (ret)
		return ret;
	ret = registry_user_version(r, &version);
	if (ret)
		goto rollback;
	if (version == REGISTRY_SCHEMA_VERSION)
		return registry_exec(r, "COMMIT");
	if (version != 0) {
		log_error("registry: database schema version %d, this kilnd knows %d", version,
			  REGISTRY_SCHEMA_VERSION);
		ret = -EPROTO;
		goto rollback;
	}
	ret = registry_exec(r, registry_schema);
	if (ret)
		goto rollback;
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", REGISTRY_SCHEMA_VERSION);
	ret = registry_exec(r, sql);
	if (ret)
		goto rollback;
	return registry_exec(r, "COMMIT");

rollback:
	registry_exec(r, "ROLLBACK");
	return ret;
}

int registry_open(const char *path, struct registry **out)
{
	struct registry *r;
	sqlite3_stmt *st;
	int rc, ret;

	if (!path || !*path || !out)
		return -EINVAL;
	*out = NULL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	if (pthread_mutex_init(&r->lock, NULL) != 0) {
		free(r);
		return -ENOMEM;
	}
	rc = sqlite3_open_v2(path, &r->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
			     NULL);
	if (rc != SQLITE_OK) {
		ret = registry_err(r, rc, path);
		goto close_db;
	}
	sqlite3_extended_result_codes(r->db, 1);
	rc = sqlite3_busy_timeout(r->db, REGISTRY_BUSY_MS);
	if (rc != SQLITE_OK) {
		ret = registry_err(r, rc, "busy_timeout");
		goto close_db;
	}
	/* journal_mode answers with the mode it got: insist on WAL. */
	rc = sqlite3_prepare_v2(r->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
	if (rc != SQLITE_OK) {
		ret = registry_err(r, rc, "journal_mode");
		goto close_db;
	}
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW || strcmp((const char *)sqlite3_column_text(st, 0), "wal") != 0) {
		sqlite3_finalize(st);
		log_error("registry: %s: cannot switch to WAL mode", path);
		ret = -EIO;
		goto close_db;
	}
	sqlite3_finalize(st);
	/* FULL: a commit (a deployed function, an accepted async call) is
	 * on disk when it returns, even across a power loss. */
	ret = registry_exec(r, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;");
	if (ret)
		goto close_db;
	ret = registry_schema_setup(r);
	if (ret)
		goto close_db;
	for (int i = 0; i < ST_COUNT; i++) {
		rc = sqlite3_prepare_v3(r->db, registry_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
					&r->st[i], NULL);
		if (rc != SQLITE_OK) {
			ret = registry_err(r, rc, registry_sql[i]);
			goto close_db;
		}
	}
	*out = r;
	return 0;

close_db:
	registry_close(r);
	return ret;
}

void registry_close(struct registry *r)
{
	if (!r)
		return;
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(r->st[i]);
	if (r->db)
		sqlite3_close(r->db);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

void registry_version_free(struct registry_version *v)
{
	if (!v)
		return;
	free(v->name);
	free(v->spec_json);
	free(v->snapshot);
	free(v->status);
	free(v->error);
	memset(v, 0, sizeof(*v));
}

void registry_versions_free(struct registry_version *v, size_t n)
{
	if (!v)
		return;
	for (size_t i = 0; i < n; i++)
		registry_version_free(&v[i]);
	free(v);
}

/* A malloc'd copy of a text column ("" for NULL); NULL when out of memory. */
static char *registry_col_text(sqlite3_stmt *st, int col)
{
	const unsigned char *t = sqlite3_column_text(st, col);
	int n = sqlite3_column_bytes(st, col);
	char *s = malloc((size_t)n + 1);

	if (!s)
		return NULL;
	if (t && n > 0)
		memcpy(s, t, (size_t)n);
	s[n] = '\0';
	return s;
}

/* A malloc'd copy of a blob column (never NULL on success, even empty). */
static int registry_col_blob(sqlite3_stmt *st, int col, uint8_t **out, size_t *len)
{
	const void *b = sqlite3_column_blob(st, col);
	int n = sqlite3_column_bytes(st, col);

	*out = malloc(n > 0 ? (size_t)n : 1);
	if (!*out)
		return -ENOMEM;
	if (b && n > 0)
		memcpy(*out, b, (size_t)n);
	*len = (size_t)n;
	return 0;
}

static bool registry_status_ok(const char *status)
{
	return !strcmp(status, "deploying") || !strcmp(status, "ready") ||
	       !strcmp(status, "failed");
}

int registry_version_add(struct registry *r, const char *name, const char *spec_json,
			 int64_t *version)
{
	sqlite3_stmt *st;
	int64_t now = registry_now_ns(), v;
	int rc, ret;

	if (!r || !name || !*name || !spec_json || !version)
		return -EINVAL;
	pthread_mutex_lock(&r->lock);
	ret = registry_begin(r);
	if (ret)
		goto unlock;
	st = registry_stmt(r, ST_COUNTER_NEXT);
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		ret = registry_err(r, rc, "version counter");
		goto rollback;
	}
	v = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);

	st = registry_stmt(r, ST_FUNCTION_ADD);
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, now);
	ret = registry_exec_stmt(r, st, "add function");
	if (ret)
		goto rollback;

	st = registry_stmt(r, ST_VERSION_ADD);
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, v);
	sqlite3_bind_text(st, 3, spec_json, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, now);
	ret = registry_exec_stmt(r, st, "add version");
	if (ret)
		goto rollback;
	ret = registry_commit(r);
	if (ret)
		goto unlock;
	*version = v;
	goto unlock;

rollback:
	registry_rollback(r);
unlock:
	pthread_mutex_unlock(&r->lock);
	return ret;
}

int registry_version_set(struct registry *r, const char *name, int64_t version, const char *status,
			 const char *snapshot, const char *error)
{
	sqlite3_stmt *st;
	int ret;

	if (!r || !name || (status && !registry_status_ok(status)))
		return -EINVAL;
	pthread_mutex_lock(&r->lock);
	st = registry_stmt(r, ST_VERSION_SET);
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, version);
	if (status)
		sqlite3_bind_text(st, 3, status, -1, SQLITE_STATIC);
	if (snapshot)
		sqlite3_bind_text(st, 4, snapshot, -1, SQLITE_STATIC);
	if (error)
		sqlite3_bind_text(st, 5, error, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, registry_now_ns());
	ret = registry_exec_stmt(r, st, "set version");
	if (!ret && sqlite3_changes(r->db) == 0)
		ret = -ENOENT;
	pthread_mutex_unlock(&r->lock);
	return ret;
}

static int registry_read_version(sqlite3_stmt *st, struct registry_version *v)
{
	memset(v, 0, sizeof(*v));
	v->name = registry_col_text(st, 0);
	v->version = sqlite3_column_int64(st, 1);
	v->spec_json = registry_col_text(st, 2);
	v->snapshot = registry_col_text(st, 3);
	v->status = registry_col_text(st, 4);
	v->error = registry_col_text(st, 5);
	v->created_ns = sqlite3_column_int64(st, 6);
	v->updated_ns = sqlite3_column_int64(st, 7);
	if (!v->name || !v->spec_json || !v->snapshot || !v->status || !v->error) {
		registry_version_free(v);
		return -ENOMEM;
	}
	return 0;
}

/* Doubles the capacity (*cap elements of size bytes, 16 at first) of the
 * array *list. Returns 0 or -ENOMEM (the array is left as it was). */
static int grow_list(void **list, size_t *cap, size_t size)
{
	size_t ncap = *cap ? *cap * 2 : 16;
	void *nl = realloc(*list, ncap * size);

	if (!nl)
		return -ENOMEM;
	*list = nl;
	*cap = ncap;
	return 0;
}

int registry_version_list(struct registry *r, struct registry_version **out, size_t *n)
{
	struct registry_version *list = NULL;
	size_t count = 0, cap = 0;
	sqlite3_stmt *st;
	int rc, ret = 0;

	if (!r || !out || !n)
		return -EINVAL;
	pthread_mutex_lock(&r->lock);
	st = registry_stmt(r, ST_VERSION_LIST);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (count == cap && (ret = grow_list((void **)&list, &cap, sizeof(*list))))
			goto free_list;
		ret = registry_read_version(st, &list[count]);
		if (ret)
			goto free_list;
		count++;
	}
	if (rc != SQLITE_DONE) {
		ret = registry_err(r, rc, "list versions");
		goto free_list;
	}
	sqlite3_reset(st);
	pthread_mutex_unlock(&r->lock);
	*out = list;
	*n = count;
	return 0;

free_list:
	sqlite3_reset(st);
	pthread_mutex_unlock(&r->lock);
	registry_versions_free(list, count);
	return ret;
}

int registry_function_exists(struct registry *r, const char *name)
{
	sqlite3_stmt *st;
	int rc, ret;

	if (!r || !name)
		return -EINVAL;
	pthread_mutex_lock(&r->lock);
	st = registry_stmt(r, ST_FUNCTION_EXISTS);
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		ret = 1;
	else if (rc == SQLITE_DONE)
		ret = 0;
	else
		ret = registry_err(r, rc, "function exists");
	sqlite3_reset(st);
	pthread_mutex_unlock(&r->lock);
	return ret;
}

int registry_function_delete(struct registry *r, const char *name)
{
	sqlite3_stmt *st;
	int ret;

	if (!r || !name)
		return -EINVAL;
	pthread_mutex_lock(&r->lock);
	ret = registry_begin(r);
	if (ret)
		goto unlock;
	st = registry_stmt(r, ST_VERSIONS_DELETE);
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	ret = registry_exec_stmt(r, st, "delete versions");
	if (ret)
		goto rollback;
	st = registry_stmt(r, ST_FUNCTION_DELETE);
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	ret = registry_exec_stmt(r, st, "delete function");
	if (ret)
		goto rollback;
	if (sqlite3_changes(r->db) == 0) {
		ret = -ENOENT;
		goto rollback;
	}
	ret = registry_commit(r);
	goto unlock;

rollback:
	registry_rollback(r);
unlock:
	pthread_mutex_unlock(&r->lock);
	return ret;
}

/* ---- async calls ------------------------------------------------------ */

void registry_call_free(struct registry_call *c)
{
	if (!c)
		return;
	free(c->id);
	free(c->function);
	free(c->state);
	free(c->request_json);
	free(c->body);
	free(c->callback_url);
	free(c->result);
	free(c->result_headers);
	free(c->callback_status);
	memset(c, 0, sizeof(*c));
}

static int registry_read_call(sqlite3_stmt *st, struct registry_call *c)
{
	int ret;

	memset(c, 0, sizeof(*c));
	c->id = registry_col_text(st, 0);
	c->function = registry_col_text(st, 1);
	c->state = registry_col_text(st, 2);
	c->request_json = registry_col_text(st, 3);
	ret = registry_col_blob(st, 4, &c->body, &c->body_len);
	c->callback_url = registry_col_text(st, 5);
	c->status_code = sqlite3_column_int(st, 6);
	if (!ret)
		ret = registry_col_blob(st, 7, &c->result, &c->result_len);
	c->result_headers = registry_col_text(st, 8);
	c->callback_status = registry_col_text(st, 9);
	c->attempts = sqlite3_column_int(st, 10);
	c->created_ns = sqlite3_column_int64(st, 11);
	c->started_ns = sqlite3_column_int64(st, 12);
	c->finished_ns = sqlite3_column_int64(st, 13);
	if (ret || !c->id || !c->function || !c->state || !c->request_json || !c->callback_url ||
	    !c->result_headers || !c->callback_status) {
		registry_call_free(c);
		return -ENOMEM;
	}
	return 0;
}

/* Binds buf[0..len) as a blob (an empty blob, never NULL, for len 0). */
static void registry_bind_blob(sqlite3_stmt *st, int col, const void *buf, size_t len)
{
	if (len == 0 || !buf)
		sqlite3_bind_zeroblob(st, col, 0);
	else
		sqlite3_bind_blob64(st, col, buf, len, SQLITE_STATIC);
}

int registry_call_insert(struct registry *r, const struct registry_call *c)
{
	sqlite3_stmt *st;
	int rc, ret = 0;

	if (!r || !c || !c->id || !*c->id || !c->function || !c->request_json ||
	    (!c->body && c->body_len))
		return -EINVAL;
	pthread_mutex_lock(&r->lock);
	st = registry_stmt(r, ST_CALL_INSERT);
	sqlite3_bind_text(st, 1, c->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, c->function, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, c->request_json, -1, SQLITE_STATIC);
	registry_bind_blob(st, 4, c->body, c->body_len);
	sqlite3_bind_text(st, 5, c->callback_url ? c->callback_url : "", -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, registry_now_ns());
	rc = sqlite3_step(st);
	if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE)
		ret = -EEXIST;
	else if (rc != SQLITE_DONE)
		ret = registry_err(r, rc, "insert call");
	sqlite3_reset(st);
	pthread_mutex_unlock(&r->lock);
	return ret;
}

/* Runs an UPDATE of one call by id (bound as ?1); -ENOENT when none. */
static int registry_call_update(struct registry *r, sqlite3_stmt *st, const char *what)
{
	int ret = registry_exec_stmt(r, st, what);

	if (!ret && sqlite3_changes(r->db) == 0)
		ret = -ENOENT;
	return ret;
}

int registry_call_start(struct registry *r, const char *id)
{
	sqlite3_stmt *st;
	int ret;

	if (!r || !id)
		return -EINVAL;
	pthread_mutex_lock(&r->lock);
	st = registry_stmt(r, ST_CALL_START);
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, registry_now_ns());
	ret = registry_call_update(r, st, "start call");
	pthread_mutex_unlock(&r->lock);
	return ret;
}

int registry_call_finish(struct registry *r, const char *id, int status_code, const void *result,
			 size_t result_len, const char *result_headers)
{
	sqlite3_stmt *st;
	int ret;

	if (!r || !id || (!result && result_len))
		return -EINVAL;
	pthread_mutex_lock(&r->lock);
	st = registry_stmt(r, ST_CALL_FINISH);
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, status_code);
	registry_bind_blob(st, 3, result, result_len);
	sqlite3_bind_text(st, 4, result_headers ? result_headers : "", -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, registry_now_ns());
	ret = registry_call_update(r, st, "finish call");
	pthread_mutex_unlock(&r->lock);
	return ret;
}

int registry_call_set_callback_status(struct registry *r, const char *id, const char *status)
{
	sqlite3_stmt *st;
	int ret;

	if (!r || !id || !status)
		return -EINVAL;
	pthread_mutex_lock(&r->lock);
	st = registry_stmt(r, ST_CALL_CALLBACK);
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, status, -1, SQLITE_STATIC);
	ret = registry_call_update(r, st, "callback status");
	pthread_mutex_unlock(&r->lock);
	return ret;
}

int registry_call_get(struct registry *r, const char *id, struct registry_call *out)
{
	sqlite3_stmt *st;
	int rc, ret;

	if (!r || !id || !out)
		return -EINVAL;
	pthread_mutex_lock(&r->lock);
	st = registry_stmt(r, ST_CALL_GET);
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		ret = registry_read_call(st, out);
	else if (rc == SQLITE_DONE)
		ret = -ENOENT;
	else
		ret = registry_err(r, rc, "get call");
	sqlite3_reset(st);
	pthread_mutex_unlock(&r->lock);
	return ret;
}

static void registry_calls_free(struct registry_call *calls, size_t n)
{
	for (size_t i = 0; i < n; i++)
		registry_call_free(&calls[i]);
	free(calls);
}

int registry_call_recover(struct registry *r, struct registry_call **out, size_t *n)
{
	struct registry_call *list = NULL;
	size_t count = 0, cap = 0;
	sqlite3_stmt *st;
	int rc, ret;

	if (!r || !out || !n)
		return -EINVAL;
	pthread_mutex_lock(&r->lock);
	ret = registry_begin(r);
	if (ret)
		goto unlock;
	st = registry_stmt(r, ST_CALL_PENDING);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (count == cap && (ret = grow_list((void **)&list, &cap, sizeof(*list))))
			goto rollback;
		ret = registry_read_call(st, &list[count]);
		if (ret)
			goto rollback;
		count++;
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		ret = registry_err(r, rc, "pending calls");
		goto rollback;
	}
	ret = registry_exec_stmt(r, registry_stmt(r, ST_CALL_REQUEUE), "requeue calls");
	if (ret)
		goto rollback;
	ret = registry_commit(r);
	if (ret)
		goto free_list;
	for (size_t i = 0; i < count; i++) {
		if (strcmp(list[i].state, "queued") != 0) {
			char *q = strdup("queued");

			if (!q) {
				/* Committed already: report the old state. */
				continue;
			}
			free(list[i].state);
			list[i].state = q;
		}
	}
	pthread_mutex_unlock(&r->lock);
	*out = list;
	*n = count;
	return 0;

rollback:
	sqlite3_reset(st);
	registry_rollback(r);
free_list:
	registry_calls_free(list, count);
unlock:
	pthread_mutex_unlock(&r->lock);
	return ret;
}

int registry_call_delete_function(struct registry *r, const char *function)
{
	sqlite3_stmt *st;
	int ret;

	if (!r || !function)
		return -EINVAL;
	pthread_mutex_lock(&r->lock);
	st = registry_stmt(r, ST_CALL_DELETE_FUNCTION);
	sqlite3_bind_text(st, 1, function, -1, SQLITE_STATIC);
	ret = registry_exec_stmt(r, st, "delete calls");
	pthread_mutex_unlock(&r->lock);
	return ret;
}
