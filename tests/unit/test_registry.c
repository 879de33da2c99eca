/* test_registry.c - kilnd's registry (daemon/registry.c): versions, calls,
 * reopening, threads, and a kill -9 in the middle of inserting calls. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "daemon/registry.h"

struct fixture {
	char dir[256];
	char db[300];
	struct registry *r;
};

static void rm_dir(const char *dir)
{
	static const char *const files[] = {"registry.db", "registry.db-wal", "registry.db-shm"};
	char path[512];

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		unlink(path);
	}
	rmdir(dir);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	const char *tmp = getenv("TMPDIR");

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "%s/kiln-registry-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->db, sizeof(f->db), "%s/registry.db", f->dir);
	assert_int_equal(registry_open(f->db, &f->r), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	registry_close(f->r);
	rm_dir(f->dir);
	free(f);
	return 0;
}

static void reopen(struct fixture *f)
{
	registry_close(f->r);
	f->r = NULL;
	assert_int_equal(registry_open(f->db, &f->r), 0);
}

static int64_t add(struct registry *r, const char *name, const char *spec)
{
	int64_t v = -1;

	assert_int_equal(registry_version_add(r, name, spec, &v), 0);
	return v;
}

static void test_open_settings(void **state)
{
	struct fixture *f = *state;
	sqlite3 *db;
	sqlite3_stmt *st;

	assert_int_equal(registry_open(NULL, &f->r), -EINVAL);
	registry_close(NULL);
	registry_version_free(NULL);
	registry_versions_free(NULL, 0);
	registry_call_free(NULL);
	/* A second connection sees WAL mode and the schema version. */
	assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
	sqlite3_finalize(st);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(st, 0), 1);
	sqlite3_finalize(st);
	sqlite3_close(db);
}

static void test_newer_schema_refused(void **state)
{
	struct fixture *f = *state;
	struct registry *r2 = NULL;
	sqlite3 *db;

	registry_close(f->r);
	f->r = NULL;
	assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(registry_open(f->db, &r2), -EPROTO);
	assert_null(r2);
}

static void test_versions(void **state)
{
	struct fixture *f = *state;
	struct registry_version *v;
	size_t n;

	assert_int_equal(registry_function_exists(f->r, "echo"), 0);
	assert_int_equal(add(f->r, "echo", "{\"a\":1}"), 1);
	assert_int_equal(add(f->r, "echo", "{\"a\":2}"), 2);
	assert_int_equal(add(f->r, "alpha", "{}"), 1);
	assert_int_equal(registry_function_exists(f->r, "echo"), 1);
	assert_int_equal(registry_function_exists(f->r, "alpha"), 1);
	assert_int_equal(registry_function_exists(f->r, "ech"), 0);

	assert_int_equal(registry_version_list(f->r, &v, &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(v[0].name, "alpha");
	assert_int_equal(v[0].version, 1);
	assert_string_equal(v[1].name, "echo");
	assert_int_equal(v[1].version, 1);
	assert_string_equal(v[1].spec_json, "{\"a\":1}");
	assert_string_equal(v[1].status, "deploying");
	assert_string_equal(v[1].snapshot, "");
	assert_string_equal(v[1].error, "");
	assert_true(v[1].created_ns > 0);
	assert_int_equal(v[1].created_ns, v[1].updated_ns);
	assert_string_equal(v[2].name, "echo");
	assert_int_equal(v[2].version, 2);
	registry_versions_free(v, n);

	assert_int_equal(registry_version_set(f->r, "echo", 2, "ready", "echo-2-abc", NULL), 0);
	assert_int_equal(registry_version_set(f->r, "echo", 1, "failed", NULL, "boom"), 0);
	/* NULL leaves a field alone. */
	assert_int_equal(registry_version_set(f->r, "echo", 2, NULL, NULL, NULL), 0);
	assert_int_equal(registry_version_set(f->r, "echo", 3, "ready", "x", NULL), -ENOENT);
	assert_int_equal(registry_version_set(f->r, "nope", 1, "ready", "x", NULL), -ENOENT);
	assert_int_equal(registry_version_set(f->r, "echo", 1, "bogus", NULL, NULL), -EINVAL);
	assert_int_equal(registry_version_list(f->r, &v, &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(v[1].status, "failed");
	assert_string_equal(v[1].error, "boom");
	assert_string_equal(v[1].snapshot, "");
	assert_string_equal(v[2].status, "ready");
	assert_string_equal(v[2].snapshot, "echo-2-abc");
	assert_true(v[2].updated_ns >= v[2].created_ns);
	registry_versions_free(v, n);

	assert_int_equal(registry_version_add(f->r, NULL, "{}", &(int64_t){0}), -EINVAL);
	assert_int_equal(registry_version_add(f->r, "x", NULL, &(int64_t){0}), -EINVAL);
	assert_int_equal(registry_version_add(f->r, "", "{}", &(int64_t){0}), -EINVAL);
}

static void test_delete_never_reuses_versions(void **state)
{
	struct fixture *f = *state;
	struct registry_version *v;
	size_t n;

	add(f->r, "echo", "{}");
	add(f->r, "echo", "{}");
	add(f->r, "other", "{}");
	assert_int_equal(registry_function_delete(f->r, "echo"), 0);
	assert_int_equal(registry_function_exists(f->r, "echo"), 0);
	assert_int_equal(registry_function_delete(f->r, "echo"), -ENOENT);
	assert_int_equal(registry_function_delete(f->r, "never"), -ENOENT);
	assert_int_equal(registry_version_list(f->r, &v, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].name, "other");
	registry_versions_free(v, n);
	assert_int_equal(registry_version_set(f->r, "echo", 1, "ready", NULL, NULL), -ENOENT);

	/* Re-created: continues from 3, also after a reopen. */
	assert_int_equal(add(f->r, "echo", "{\"new\":true}"), 3);
	reopen(f);
	assert_int_equal(registry_function_delete(f->r, "echo"), 0);
	reopen(f);
	assert_int_equal(add(f->r, "echo", "{}"), 4);
	assert_int_equal(registry_version_list(f->r, &v, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(v[0].name, "echo");
	assert_int_equal(v[0].version, 4);
	registry_versions_free(v, n);
}

static void insert_call(struct registry *r, const char *id, const char *fn, const char *body,
			const char *callback)
{
	struct registry_call c = {
		.id = (char *)id,
		.function = (char *)fn,
		.request_json = (char *)"{\"method\":\"POST\",\"path\":\"/\"}",
		.body = (uint8_t *)body,
		.body_len = body ? strlen(body) : 0,
		.callback_url = (char *)callback,
		.state = (char *)"done", /* ignored */
		.attempts = 7,		 /* ignored */
	};

	assert_int_equal(registry_call_insert(r, &c), 0);
}

static void test_calls(void **state)
{
	struct fixture *f = *state;
	static const uint8_t binary[] = {0, 1, 2, 0xff, 0};
	const char *id = "123e4567-e89b-12d3-a456-426614174000";
	struct registry_call c;

	insert_call(f->r, id, "echo", "{\"x\":1}", "http://cb.example/x");
	insert_call(f->r, "id-empty", "echo", NULL, NULL);
	{
		struct registry_call dup = {.id = (char *)id,
					    .function = (char *)"other",
					    .request_json = (char *)"{}"};

		assert_int_equal(registry_call_insert(f->r, &dup), -EEXIST);
		dup.id = NULL;
		assert_int_equal(registry_call_insert(f->r, &dup), -EINVAL);
	}

	assert_int_equal(registry_call_get(f->r, id, &c), 0);
	assert_string_equal(c.id, id);
	assert_string_equal(c.function, "echo");
	assert_string_equal(c.state, "queued");
	assert_string_equal(c.request_json, "{\"method\":\"POST\",\"path\":\"/\"}");
	assert_int_equal(c.body_len, 7);
	assert_memory_equal(c.body, "{\"x\":1}", 7);
	assert_string_equal(c.callback_url, "http://cb.example/x");
	assert_int_equal(c.status_code, 0);
	assert_int_equal(c.result_len, 0);
	assert_non_null(c.result);
	assert_string_equal(c.result_headers, "");
	assert_string_equal(c.callback_status, "");
	assert_int_equal(c.attempts, 0);
	assert_true(c.created_ns > 0);
	assert_int_equal(c.started_ns, 0);
	assert_int_equal(c.finished_ns, 0);
	registry_call_free(&c);

	assert_int_equal(registry_call_get(f->r, "id-empty", &c), 0);
	assert_int_equal(c.body_len, 0);
	assert_non_null(c.body);
	assert_string_equal(c.callback_url, "");
	registry_call_free(&c);

	assert_int_equal(registry_call_start(f->r, id), 0);
	assert_int_equal(registry_call_get(f->r, id, &c), 0);
	assert_string_equal(c.state, "running");
	assert_int_equal(c.attempts, 1);
	assert_true(c.started_ns >= c.created_ns);
	registry_call_free(&c);

	assert_int_equal(registry_call_finish(f->r, id, 201, binary, sizeof(binary),
					      "{\"content-type\":\"application/octet-stream\"}"),
			 0);
	assert_int_equal(registry_call_set_callback_status(f->r, id, "sent 200"), 0);
	assert_int_equal(registry_call_get(f->r, id, &c), 0);
	assert_string_equal(c.state, "done");
	assert_int_equal(c.status_code, 201);
	assert_int_equal(c.result_len, sizeof(binary));
	assert_memory_equal(c.result, binary, sizeof(binary));
	assert_string_equal(c.result_headers, "{\"content-type\":\"application/octet-stream\"}");
	assert_string_equal(c.callback_status, "sent 200");
	assert_true(c.finished_ns >= c.started_ns);
	registry_call_free(&c);

	assert_int_equal(registry_call_start(f->r, "missing"), -ENOENT);
	assert_int_equal(registry_call_finish(f->r, "missing", 200, NULL, 0, NULL), -ENOENT);
	assert_int_equal(registry_call_set_callback_status(f->r, "missing", "x"), -ENOENT);
	assert_int_equal(registry_call_get(f->r, "missing", &c), -ENOENT);

	assert_int_equal(registry_call_delete_function(f->r, "echo"), 0);
	assert_int_equal(registry_call_get(f->r, id, &c), -ENOENT);
	assert_int_equal(registry_call_get(f->r, "id-empty", &c), -ENOENT);
}

static void test_recover(void **state)
{
	struct fixture *f = *state;
	struct registry_call *calls, c;
	size_t n;

	insert_call(f->r, "c1", "fn", "1", NULL);
	insert_call(f->r, "c2", "fn", "2", NULL);
	insert_call(f->r, "c3", "fn", "3", NULL);
	insert_call(f->r, "c4", "fn", "4", NULL);
	assert_int_equal(registry_call_start(f->r, "c1"), 0);
	assert_int_equal(registry_call_start(f->r, "c2"), 0);
	assert_int_equal(registry_call_finish(f->r, "c2", 200, "ok", 2, NULL), 0);
	assert_int_equal(registry_call_start(f->r, "c4"), 0);

	/* kilnd "crashes": a reopen, then recovery. */
	reopen(f);
	assert_int_equal(registry_call_recover(f->r, &calls, &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(calls[0].id, "c1");
	assert_string_equal(calls[1].id, "c3");
	assert_string_equal(calls[2].id, "c4");
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(calls[i].state, "queued");
		registry_call_free(&calls[i]);
	}
	free(calls);

	assert_int_equal(registry_call_get(f->r, "c1", &c), 0);
	assert_string_equal(c.state, "queued");
	assert_int_equal(c.attempts, 1); /* kept: it was tried once */
	registry_call_free(&c);
	assert_int_equal(registry_call_get(f->r, "c2", &c), 0);
	assert_string_equal(c.state, "done");
	registry_call_free(&c);

	assert_int_equal(registry_call_delete_function(f->r, "fn"), 0);
	assert_int_equal(registry_call_recover(f->r, &calls, &n), 0);
	assert_int_equal(n, 0);
	free(calls);
}

static void test_reopen_keeps_everything(void **state)
{
	struct fixture *f = *state;
	struct registry_version *v;
	struct registry_call c;
	size_t n;

	add(f->r, "a", "{\"spec\":1}");
	add(f->r, "a", "{\"spec\":2}");
	assert_int_equal(registry_version_set(f->r, "a", 2, "ready", "a-2", NULL), 0);
	insert_call(f->r, "call-1", "a", "payload", "http://x");
	assert_int_equal(registry_call_start(f->r, "call-1"), 0);
	reopen(f);
	assert_int_equal(registry_version_list(f->r, &v, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(v[1].spec_json, "{\"spec\":2}");
	assert_string_equal(v[1].status, "ready");
	assert_string_equal(v[1].snapshot, "a-2");
	registry_versions_free(v, n);
	assert_int_equal(registry_call_get(f->r, "call-1", &c), 0);
	assert_string_equal(c.state, "running");
	assert_memory_equal(c.body, "payload", 7);
	registry_call_free(&c);
	assert_int_equal(add(f->r, "a", "{}"), 3);
}

#define THREADS	   4
#define PER_THREAD 40

struct worker {
	struct registry *r;
	int index;
	int failures;
	int64_t versions[PER_THREAD];
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	for (int i = 0; i < PER_THREAD; i++) {
		char id[64], name[32];
		struct registry_call c = {.id = id,
					  .function = (char *)"shared",
					  .request_json = (char *)"{}",
					  .body = (uint8_t *)"b",
					  .body_len = 1};
		struct registry_call got;
		struct registry_version *v;
		size_t n;

		snprintf(id, sizeof(id), "t%d-%d", w->index, i);
		snprintf(name, sizeof(name), "own-%d", w->index);
		if (registry_version_add(w->r, "shared", "{}", &w->versions[i]) != 0)
			w->failures++;
		if (registry_version_add(w->r, name, "{}", &(int64_t){0}) != 0)
			w->failures++;
		if (registry_call_insert(w->r, &c) != 0 || registry_call_start(w->r, id) != 0 ||
		    registry_call_finish(w->r, id, 200, "r", 1, "") != 0)
			w->failures++;
		if (registry_call_get(w->r, id, &got) != 0 || strcmp(got.state, "done") != 0)
			w->failures++;
		registry_call_free(&got);
		if (i % 10 == 0) {
			if (registry_version_list(w->r, &v, &n) != 0)
				w->failures++;
			else
				registry_versions_free(v, n);
		}
	}
	return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

static void test_threads(void **state)
{
	struct fixture *f = *state;
	struct worker w[THREADS];
	pthread_t t[THREADS];
	int64_t all[THREADS * PER_THREAD];
	struct registry_version *v;
	size_t n;

	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){.r = f->r, .index = i};
		assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		assert_int_equal(w[i].failures, 0);
		memcpy(all + i * PER_THREAD, w[i].versions, sizeof(w[i].versions));
	}
	/* Every version of "shared" handed out once: 1..THREADS*PER_THREAD. */
	qsort(all, THREADS * PER_THREAD, sizeof(all[0]), cmp_i64);
	for (int i = 0; i < THREADS * PER_THREAD; i++)
		assert_int_equal(all[i], i + 1);
	assert_int_equal(registry_version_list(f->r, &v, &n), 0);
	assert_int_equal(n, 2 * THREADS * PER_THREAD);
	registry_versions_free(v, n);
}

/* A child inserts calls and reports each id once registry_call_insert has
 * returned; it is killed with SIGKILL midway. Every reported call must be
 * there after reopening. */
static void test_kill9_durability(void **state)
{
	struct fixture *f = *state;
	int pipefd[2], reported = 0, status;
	struct registry_call c;
	pid_t pid;
	char buf[16];

	registry_close(f->r);
	f->r = NULL;
	assert_int_equal(pipe(pipefd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct registry *r;

		close(pipefd[0]);
		if (registry_open(f->db, &r) != 0)
			_exit(2);
		for (int i = 0;; i++) {
			char id[16];
			struct registry_call nc = {
				.id = id, .function = (char *)"fn", .request_json = (char *)"{}"};

			snprintf(id, sizeof(id), "k%08d", i);
			if (registry_call_insert(r, &nc) != 0)
				_exit(3);
			if (i % 3 == 0 && registry_version_add(r, "fn", "{}", &(int64_t){0}) != 0)
				_exit(4);
			if (write(pipefd[1], id, 9) != 9)
				_exit(5);
		}
	}
	close(pipefd[1]);
	while (reported < 30 && read(pipefd[0], buf, 9) == 9)
		reported++;
	kill(pid, SIGKILL);
	/* Drain what was reported before the kill landed. */
	while (read(pipefd[0], buf, 9) == 9)
		reported++;
	close(pipefd[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_true(reported >= 30);

	assert_int_equal(registry_open(f->db, &f->r), 0);
	for (int i = 0; i < reported; i++) {
		snprintf(buf, sizeof(buf), "k%08d", i);
		assert_int_equal(registry_call_get(f->r, buf, &c), 0);
		assert_string_equal(c.state, "queued");
		registry_call_free(&c);
	}
	assert_int_equal(registry_function_exists(f->r, "fn"), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_open_settings, setup, teardown),
		cmocka_unit_test_setup_teardown(test_newer_schema_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_versions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete_never_reuses_versions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_calls, setup, teardown),
		cmocka_unit_test_setup_teardown(test_recover, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen_keeps_everything, setup, teardown),
		cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kill9_durability, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
