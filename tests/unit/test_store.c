/* test_store.c - kilnd's content-addressed stores (daemon/store.c), in a
 * temporary state directory. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon/store.h"

struct fixture {
	char dir[256];
	char state[300];
	struct store *s;
};

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	const char *tmp = getenv("TMPDIR");

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "%s/kiln-store-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	assert_non_null(mkdtemp(f->dir));
	/* The state directory itself does not exist yet: store_open makes it. */
	snprintf(f->state, sizeof(f->state), "%s/state", f->dir);
	assert_int_equal(store_open(f->state, &f->s), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	store_close(f->s);
	nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static void write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

static bool exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

static void test_sha256(void **state)
{
	char hex[65];

	(void)state;
	store_sha256_hex("abc", 3, hex);
	assert_string_equal(hex,
			    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	store_sha256_hex(NULL, 0, hex);
	assert_string_equal(hex,
			    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

static void test_open_creates_layout(void **state)
{
	struct fixture *f = *state;
	char path[512];
	struct stat st;

	snprintf(path, sizeof(path), "%s/code", f->state);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0700);
	snprintf(path, sizeof(path), "%s/snapshots", f->state);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(store_open(NULL, &f->s), -EINVAL);
	assert_non_null(f->s); /* untouched on a bad argument... */
	store_close(NULL);
}

static void test_code_roundtrip(void **state)
{
	struct fixture *f = *state;
	static const char data[] = "KLNA pretend archive";
	char hex[65], hex2[65], path[512];
	uint8_t *buf;
	size_t len;
	struct stat st;

	assert_int_equal(store_code_put(f->s, data, sizeof(data), hex), 0);
	snprintf(path, sizeof(path), "%s/code/%s.klna", f->state, hex);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, sizeof(data));
	assert_int_equal(st.st_mode & 0777, 0600);
	/* Idempotent. */
	assert_int_equal(store_code_put(f->s, data, sizeof(data), hex2), 0);
	assert_string_equal(hex, hex2);
	assert_int_equal(store_code_get(f->s, hex, &buf, &len), 0);
	assert_int_equal(len, sizeof(data));
	assert_memory_equal(buf, data, len);
	free(buf);
	/* Empty content is content too. */
	assert_int_equal(store_code_put(f->s, NULL, 0, hex2), 0);
	assert_int_equal(store_code_get(f->s, hex2, &buf, &len), 0);
	assert_int_equal(len, 0);
	free(buf);
}

static void test_code_get_validates(void **state)
{
	struct fixture *f = *state;
	static const char *const bad[] = {
		"",
		"abc",
		"../../../../etc/passwd",
		"BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
		"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a",
		"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad0",
		"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a/",
		"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f2001g5a",
	};
	uint8_t *buf = NULL;
	size_t len;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(store_code_get(f->s, bad[i], &buf, &len), -EINVAL);
	assert_int_equal(store_code_get(f->s, NULL, &buf, &len), -EINVAL);
	assert_int_equal(
		store_code_get(f->s,
			       "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
			       &buf, &len),
		-ENOENT);
	assert_null(buf);
}

static void test_code_corrupt(void **state)
{
	struct fixture *f = *state;
	char hex[65], path[512];
	uint8_t *buf;
	size_t len;

	assert_int_equal(store_code_put(f->s, "good", 4, hex), 0);
	snprintf(path, sizeof(path), "%s/code/%s.klna", f->state, hex);
	write_file(path, "evil", 4);
	assert_int_equal(store_code_get(f->s, hex, &buf, &len), -EBADMSG);
	/* Putting the right content again repairs it. */
	assert_int_equal(store_code_put(f->s, "good", 4, hex), 0);
	assert_int_equal(store_code_get(f->s, hex, &buf, &len), 0);
	assert_memory_equal(buf, "good", 4);
	free(buf);
	/* A symbolic link in place of an object is not followed. */
	unlink(path);
	assert_int_equal(symlink("/etc/passwd", path), 0);
	assert_int_equal(store_code_get(f->s, hex, &buf, &len), -EBADMSG);
}

static void test_snapshot_path(void **state)
{
	struct fixture *f = *state;
	static const char *const bad[] = {
		"",	   ".",
		"..",	   "../x",
		"a/b",	   "A",
		"abc_def", "abc.def",
		"a b",	   "/abs",
		"x\n",	   "0123456789012345678901234567890123456789012345678901234567890123x",
	};
	char out[512], want[512];

	assert_int_equal(store_snapshot_path(f->s, "fn-1-abc", out, sizeof(out)), 0);
	snprintf(want, sizeof(want), "%s/snapshots/fn-1-abc", f->state);
	assert_string_equal(out, want);
	assert_int_equal(store_snapshot_path(
				 f->s,
				 "0123456789012345678901234567890123456789012345678901234567890123",
				 out, sizeof(out)),
			 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(store_snapshot_path(f->s, bad[i], out, sizeof(out)), -EINVAL);
	assert_int_equal(store_snapshot_path(f->s, NULL, out, sizeof(out)), -EINVAL);
	assert_int_equal(store_snapshot_path(f->s, "abc", out, 8), -ENAMETOOLONG);
}

static void make_snapshot_files(const char *dir, size_t mem_data)
{
	char path[512];
	char *page = calloc(1, mem_data);
	int fd;

	assert_non_null(page);
	memset(page, 0xab, mem_data);
	snprintf(path, sizeof(path), "%s/memory", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 64 << 20), 0); /* sparse: 64 MiB, little data */
	assert_int_equal(pwrite(fd, page, mem_data, 1 << 20), (ssize_t)mem_data);
	close(fd);
	free(page);
	snprintf(path, sizeof(path), "%s/state", dir);
	write_file(path, "0123456789", 10);
}

static void test_snapshot_lifecycle(void **state)
{
	struct fixture *f = *state;
	char tmp[512], tmp2[512], path[512];
	uint64_t mem = 0, st = 0;

	assert_int_equal(store_snapshot_tmpdir(f->s, tmp, sizeof(tmp)), 0);
	assert_non_null(strstr(tmp, "/snapshots/.tmp-"));
	assert_true(exists(tmp));
	make_snapshot_files(tmp, 8192);
	assert_int_equal(store_snapshot_commit(f->s, tmp, "fn-1"), 0);
	assert_false(exists(tmp));
	assert_int_equal(store_snapshot_path(f->s, "fn-1", path, sizeof(path)), 0);
	assert_true(exists(path));
	assert_int_equal(store_snapshot_sizes(f->s, "fn-1", &mem, &st), 0);
	assert_int_equal(st, 10);
	assert_true(mem >= 8192);
	assert_true(mem < (16U << 20)); /* allocated, not apparent, size */

	/* The same id again. */
	assert_int_equal(store_snapshot_tmpdir(f->s, tmp2, sizeof(tmp2)), 0);
	assert_string_not_equal(tmp, tmp2);
	make_snapshot_files(tmp2, 4096);
	assert_int_equal(store_snapshot_commit(f->s, tmp2, "fn-1"), -EEXIST);
	assert_true(exists(tmp2));
	assert_int_equal(store_snapshot_commit(f->s, tmp2, "fn-2"), 0);

	assert_int_equal(store_snapshot_remove(f->s, "fn-1"), 0);
	assert_false(exists(path));
	assert_int_equal(store_snapshot_remove(f->s, "fn-1"), -ENOENT);
	assert_int_equal(store_snapshot_sizes(f->s, "fn-1", &mem, &st), -ENOENT);
	assert_int_equal(store_snapshot_sizes(f->s, "../code", &mem, &st), -EINVAL);
	assert_int_equal(store_snapshot_remove(f->s, "../code"), -EINVAL);
	assert_int_equal(store_snapshot_remove(f->s, "fn-2"), 0);
}

/* The manifest written at commit; verify catches a flipped byte, a
 * truncated or missing file; holes and zero pages hash alike. */
static void test_snapshot_verify(void **state)
{
	struct fixture *f = *state;
	char tmp[512], path[600], why[256];
	static const uint8_t zeros[4096];
	int fd;

	assert_int_equal(store_snapshot_tmpdir(f->s, tmp, sizeof(tmp)), 0);
	make_snapshot_files(tmp, 8192);
	assert_int_equal(store_snapshot_commit(f->s, tmp, "v-1"), 0);
	assert_int_equal(store_snapshot_verify(f->s, "v-1", why, sizeof(why)), 0);
	assert_int_equal(store_snapshot_verify(f->s, "../code", why, sizeof(why)), -EINVAL);
	assert_int_equal(store_snapshot_verify(f->s, "none", why, sizeof(why)), -ENOENT);

	/* A page of zeros written where a hole was: the same content. */
	snprintf(path, sizeof(path), "%s/snapshots/v-1/memory", f->state);
	fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, zeros, sizeof(zeros), 8 << 20), (ssize_t)sizeof(zeros));
	close(fd);
	assert_int_equal(store_snapshot_verify(f->s, "v-1", why, sizeof(why)), 0);

	/* One flipped byte in the memory file's data. */
	fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "\x54", 1, (1 << 20) + 5), 1);
	close(fd);
	assert_int_equal(store_snapshot_verify(f->s, "v-1", why, sizeof(why)), -EBADMSG);
	assert_non_null(strstr(why, "memory"));

	/* The state file truncated; then missing. */
	assert_int_equal(store_snapshot_tmpdir(f->s, tmp, sizeof(tmp)), 0);
	make_snapshot_files(tmp, 4096);
	assert_int_equal(store_snapshot_commit(f->s, tmp, "v-2"), 0);
	snprintf(path, sizeof(path), "%s/snapshots/v-2/state", f->state);
	assert_int_equal(truncate(path, 5), 0);
	assert_int_equal(store_snapshot_verify(f->s, "v-2", why, sizeof(why)), -EBADMSG);
	assert_non_null(strstr(why, "state"));
	assert_int_equal(unlink(path), 0);
	assert_int_equal(store_snapshot_verify(f->s, "v-2", why, sizeof(why)), -EBADMSG);

	/* No manifest (a snapshot from before manifests): -ENODATA. */
	snprintf(path, sizeof(path), "%s/snapshots/v-1/sha256sums", f->state);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(store_snapshot_verify(f->s, "v-1", why, sizeof(why)), -ENODATA);
	/* A manifest naming a file it may not: refused. */
	write_file(path, "0000000000000000000000000000000000000000000000000000000000000000 ../x\n",
		   70);
	assert_int_equal(store_snapshot_verify(f->s, "v-1", why, sizeof(why)), -EBADMSG);
}

static void test_snapshot_commit_validates(void **state)
{
	struct fixture *f = *state;
	char tmp[512], bad[600];

	assert_int_equal(store_snapshot_tmpdir(f->s, tmp, sizeof(tmp)), 0);
	assert_int_equal(store_snapshot_commit(f->s, tmp, "../escape"), -EINVAL);
	assert_int_equal(store_snapshot_commit(f->s, tmp, "Bad"), -EINVAL);
	assert_int_equal(store_snapshot_commit(f->s, "/tmp", "ok"), -EINVAL);
	assert_int_equal(store_snapshot_commit(f->s, NULL, "ok"), -EINVAL);
	snprintf(bad, sizeof(bad), "%s/snapshots/../code", f->state);
	assert_int_equal(store_snapshot_commit(f->s, bad, "ok"), -EINVAL);
	snprintf(bad, sizeof(bad), "%s/snapshots/.tmp-../../x", f->state);
	assert_int_equal(store_snapshot_commit(f->s, bad, "ok"), -EINVAL);
	snprintf(bad, sizeof(bad), "%s/snapshots/.tmp-", f->state);
	assert_int_equal(store_snapshot_commit(f->s, bad, "ok"), -EINVAL);
	snprintf(bad, sizeof(bad), "%s/snapshots/.tmp-0123456789abcdef", f->state);
	assert_int_equal(store_snapshot_commit(f->s, bad, "ok"), -ENOENT);
	assert_int_equal(store_snapshot_tmpdir(f->s, tmp, 10), -ENAMETOOLONG);

	/* A failed snapshot's temporary directory is discarded, nothing else. */
	assert_int_equal(store_snapshot_tmpdir(f->s, tmp, sizeof(tmp)), 0);
	make_snapshot_files(tmp, 4096);
	assert_int_equal(store_snapshot_discard(f->s, tmp), 0);
	assert_false(exists(tmp));
	assert_int_equal(store_snapshot_discard(f->s, "/tmp"), -EINVAL);
	snprintf(bad, sizeof(bad), "%s/snapshots/.tmp-../../x", f->state);
	assert_int_equal(store_snapshot_discard(f->s, bad), -EINVAL);
}

static void test_open_removes_leftovers(void **state)
{
	struct fixture *f = *state;
	char path[600], keep[600], tmp[512];
	char hex[65];

	assert_int_equal(store_code_put(f->s, "keep", 4, hex), 0);
	snprintf(path, sizeof(path), "%s/code/.tmp-deadbeef", f->state);
	write_file(path, "half", 4);
	assert_int_equal(store_snapshot_tmpdir(f->s, tmp, sizeof(tmp)), 0);
	make_snapshot_files(tmp, 4096);
	snprintf(path, sizeof(path), "%s/sub", tmp);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/sub/f", tmp);
	write_file(path, "x", 1);
	snprintf(path, sizeof(path), "%s/sub/link", tmp);
	assert_int_equal(symlink(f->dir, path), 0); /* never followed */
	assert_int_equal(store_snapshot_tmpdir(f->s, keep, sizeof(keep)), 0);
	make_snapshot_files(keep, 4096);
	assert_int_equal(store_snapshot_commit(f->s, keep, "kept"), 0);

	store_close(f->s);
	f->s = NULL;
	assert_int_equal(store_open(f->state, &f->s), 0);
	snprintf(path, sizeof(path), "%s/code/.tmp-deadbeef", f->state);
	assert_false(exists(path));
	assert_false(exists(tmp));
	assert_true(exists(f->dir));
	snprintf(path, sizeof(path), "%s/snapshots/kept/memory", f->state);
	assert_true(exists(path));
	snprintf(path, sizeof(path), "%s/code/%s.klna", f->state, hex);
	assert_true(exists(path));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sha256),
		cmocka_unit_test_setup_teardown(test_open_creates_layout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_code_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_code_get_validates, setup, teardown),
		cmocka_unit_test_setup_teardown(test_code_corrupt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_path, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_lifecycle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_verify, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_commit_validates, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_removes_leftovers, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
