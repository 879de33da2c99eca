/* test_archive.c - the code archive: validation and extraction
 * (common/archive.c). Parsed inputs end at a PROT_NONE guard page. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/archive.h"

/* ---- building archives --------------------------------------------------------- */

struct ar {
	uint8_t *buf;
	size_t len, cap;
	uint32_t count;
};

static void ar_raw(struct ar *a, const void *p, size_t n)
{
	if (a->len + n > a->cap) {
		a->cap = (a->len + n) * 2 + 64;
		a->buf = realloc(a->buf, a->cap);
		assert_non_null(a->buf);
	}
	memcpy(a->buf + a->len, p, n);
	a->len += n;
}

static void ar_le(struct ar *a, uint32_t v, size_t n)
{
	uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};

	ar_raw(a, b, n);
}

static void ar_init(struct ar *a)
{
	memset(a, 0, sizeof(*a));
	ar_le(a, ARCHIVE_MAGIC, 4);
	ar_le(a, 0, 4); /* count, patched by ar_done */
}

/* An entry with explicit fields (size may lie: data_len bytes follow). */
static void ar_entry_raw(struct ar *a, uint8_t kind, uint16_t mode, const char *path,
			 size_t path_len, uint32_t size, const void *data, size_t data_len)
{
	uint8_t fixed[2] = {kind, 0};

	ar_raw(a, fixed, 2);
	ar_le(a, mode, 2);
	ar_le(a, (uint32_t)path_len, 2);
	ar_le(a, size, 4);
	ar_raw(a, path, path_len);
	if (data_len)
		ar_raw(a, data, data_len);
	a->count++;
}

static void ar_file(struct ar *a, const char *path, uint16_t mode, const char *data)
{
	ar_entry_raw(a, ARCHIVE_FILE, mode, path, strlen(path), (uint32_t)strlen(data), data,
		     strlen(data));
}

static void ar_dir(struct ar *a, const char *path, uint16_t mode)
{
	ar_entry_raw(a, ARCHIVE_DIR, mode, path, strlen(path), 0, NULL, 0);
}

static void ar_done(struct ar *a)
{
	a->buf[4] = (uint8_t)a->count;
	a->buf[5] = (uint8_t)(a->count >> 8);
	a->buf[6] = (uint8_t)(a->count >> 16);
	a->buf[7] = (uint8_t)(a->count >> 24);
}

static void ar_free(struct ar *a)
{
	free(a->buf);
}

/* ---- guarded checking ------------------------------------------------------------- */

static int check_guarded(const uint8_t *buf, size_t len, uint32_t *count)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t pages = len / page + 1;
	uint8_t *map = mmap(NULL, (pages + 1) * page, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int ret;

	assert_true(map != MAP_FAILED);
	assert_int_equal(mprotect(map + pages * page, page, PROT_NONE), 0);
	if (len)
		memcpy(map + pages * page - len, buf, len);
	ret = archive_check(map + pages * page - len, len, count);
	munmap(map, (pages + 1) * page);
	return ret;
}

/* A single-entry archive with this path: the result of archive_check. */
static int check_path(const char *path, size_t len)
{
	struct ar a;
	int ret;

	ar_init(&a);
	ar_entry_raw(&a, ARCHIVE_FILE, 0644, path, len, 1, "x", 1);
	ar_done(&a);
	ret = check_guarded(a.buf, a.len, NULL);
	ar_free(&a);
	return ret;
}

static int rm_one(const char *p, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return type == FTW_DP ? rmdir(p) : unlink(p);
}

struct tmp {
	char root[64]; /* holds fn/ (where we extract) and nothing else */
	char fn[96];
	int fd;
};

static void tmp_make(struct tmp *t)
{
	snprintf(t->root, sizeof(t->root), "/tmp/kiln-test-archive.XXXXXX");
	assert_non_null(mkdtemp(t->root));
	snprintf(t->fn, sizeof(t->fn), "%s/fn", t->root);
	assert_int_equal(mkdir(t->fn, 0755), 0);
	t->fd = open(t->fn, O_RDONLY | O_DIRECTORY);
	assert_true(t->fd >= 0);
}

static void tmp_remove(struct tmp *t)
{
	close(t->fd);
	nftw(t->root, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

/* Number of entries directly in dir. */
static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			n++;
	}
	closedir(d);
	return n;
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_valid_and_extract(void **state)
{
	struct tmp t;
	struct stat st;
	uint32_t count = 0;
	char bad[64], path[256], got[64];
	struct ar a;
	int fd;
	ssize_t n;

	(void)state;
	ar_init(&a);
	ar_dir(&a, "lib", 0755);
	ar_file(&a, "handler.py", 0644, "def handle(e, c):\n    return e\n");
	ar_file(&a, "bin/run.sh", 0755, "#!/bin/sh\necho hi\n");
	ar_file(&a, "lib/deep/er/mod.py", 0600, "X = 1\n");
	ar_file(&a, "empty", 0644, "");
	ar_dir(&a, "ro", 0555);
	ar_file(&a, "ro/inside", 0444, "r");
	ar_file(&a, "..dots..", 0644, "names that only contain dots are fine");
	ar_done(&a);
	assert_int_equal(check_guarded(a.buf, a.len, &count), 0);
	assert_int_equal(count, 8);

	tmp_make(&t);
	assert_int_equal(archive_extract(t.fd, a.buf, a.len, bad, sizeof(bad)), 0);
	snprintf(path, sizeof(path), "%s/bin/run.sh", t.fn);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0755); /* the executable bit is kept */
	snprintf(path, sizeof(path), "%s/lib/deep/er/mod.py", t.fn);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	fd = open(path, O_RDONLY);
	n = read(fd, got, sizeof(got));
	close(fd);
	assert_int_equal(n, 6);
	assert_memory_equal(got, "X = 1\n", 6);
	snprintf(path, sizeof(path), "%s/empty", t.fn);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 0);
	snprintf(path, sizeof(path), "%s/ro", t.fn);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0555);
	chmod(path, 0755);
	assert_int_equal(count_entries(t.root), 1); /* only fn/ */
	tmp_remove(&t);
	ar_free(&a);
}

static void test_bad_paths(void **state)
{
	static const char *const bad[] = {
		"../evil", "/etc/x", "a/../../b", "..", ".",   "./a",  "a/.",
		"a/./b",   "a//b",   "a/",	  "/",	"//a", "a/..", "x/../y",
	};
	char longc[ARCHIVE_MAX_COMPONENT + 2], deep[3 * (ARCHIVE_MAX_DEPTH + 1) + 1];
	char longp[ARCHIVE_MAX_PATH + 2];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_false(archive_path_ok(bad[i], strlen(bad[i])));
		assert_int_equal(check_path(bad[i], strlen(bad[i])), -EINVAL);
	}
	/* Empty name. */
	assert_false(archive_path_ok("", 0));
	assert_int_equal(check_path("", 0), -EINVAL);
	/* A NUL inside. */
	assert_int_equal(check_path("a\0b", 3), -EINVAL);
	/* Component of 255 bytes is fine, 256 is not. */
	memset(longc, 'c', sizeof(longc));
	assert_true(archive_path_ok(longc, ARCHIVE_MAX_COMPONENT));
	assert_false(archive_path_ok(longc, ARCHIVE_MAX_COMPONENT + 1));
	/* Depth. */
	for (int i = 0; i <= ARCHIVE_MAX_DEPTH; i++)
		memcpy(deep + 2 * i, "d/", 2);
	assert_true(archive_path_ok(deep, 2 * ARCHIVE_MAX_DEPTH - 1));
	assert_false(archive_path_ok(deep, 2 * ARCHIVE_MAX_DEPTH + 1));
	/* Whole path length. */
	memset(longp, 'p', sizeof(longp));
	for (int i = 100; i < ARCHIVE_MAX_PATH; i += 101)
		longp[i] = '/';
	assert_true(archive_path_ok(longp, ARCHIVE_MAX_PATH));
	assert_false(archive_path_ok(longp, ARCHIVE_MAX_PATH + 1));
	/* Good ones, for contrast. */
	assert_true(archive_path_ok("a", 1));
	assert_true(archive_path_ok("a/b/c.py", 8));
	assert_true(archive_path_ok("...", 3));
	assert_true(archive_path_ok(".hidden", 7));
}

static void test_bad_entries(void **state)
{
	struct ar a;

	(void)state;
	/* Symlinks (3), devices (4, 5), FIFOs and anything else. */
	for (uint8_t kind = 0; kind < 10; kind++) {
		if (kind == ARCHIVE_DIR || kind == ARCHIVE_FILE)
			continue;
		ar_init(&a);
		ar_entry_raw(&a, kind, 0644, "link", 4, 0, NULL, 0);
		ar_done(&a);
		assert_int_equal(check_guarded(a.buf, a.len, NULL), -ENOTSUP);
		ar_free(&a);
	}
	/* setuid and friends. */
	ar_init(&a);
	ar_file(&a, "suid", 04755, "x");
	ar_done(&a);
	assert_int_equal(check_guarded(a.buf, a.len, NULL), -EBADMSG);
	ar_free(&a);
	/* A directory with a size. */
	ar_init(&a);
	ar_entry_raw(&a, ARCHIVE_DIR, 0755, "d", 1, 1, "x", 1);
	ar_done(&a);
	assert_int_equal(check_guarded(a.buf, a.len, NULL), -EBADMSG);
	ar_free(&a);
	/* Reserved byte set. */
	ar_init(&a);
	ar_file(&a, "f", 0644, "x");
	ar_done(&a);
	a.buf[ARCHIVE_HEADER_SIZE + 1] = 1;
	assert_int_equal(check_guarded(a.buf, a.len, NULL), -EBADMSG);
	ar_free(&a);
	/* Bad magic. */
	ar_init(&a);
	ar_done(&a);
	a.buf[0] ^= 1;
	assert_int_equal(check_guarded(a.buf, a.len, NULL), -EBADMSG);
	ar_free(&a);
	/* Shorter than a header. */
	assert_int_equal(check_guarded((const uint8_t *)"KLNA", 4, NULL), -EBADMSG);
	assert_int_equal(check_guarded(NULL, 0, NULL), -EBADMSG);
}

static void test_lying_sizes(void **state)
{
	struct ar a;

	(void)state;
	/* size says 100, 3 bytes follow. */
	ar_init(&a);
	ar_entry_raw(&a, ARCHIVE_FILE, 0644, "f", 1, 100, "abc", 3);
	ar_done(&a);
	assert_int_equal(check_guarded(a.buf, a.len, NULL), -EBADMSG);
	ar_free(&a);
	/* 4 GiB - 1. */
	ar_init(&a);
	ar_entry_raw(&a, ARCHIVE_FILE, 0644, "f", 1, UINT32_MAX, "abc", 3);
	ar_done(&a);
	assert_int_equal(check_guarded(a.buf, a.len, NULL), -EBADMSG);
	ar_free(&a);
	/* path_len past the end. */
	ar_init(&a);
	ar_entry_raw(&a, ARCHIVE_FILE, 0644, "abc", 3, 0, NULL, 0);
	ar_done(&a);
	a.buf[ARCHIVE_HEADER_SIZE + 4] = 200;
	assert_int_equal(check_guarded(a.buf, a.len, NULL), -EBADMSG);
	ar_free(&a);
	/* size too small: the rest is read as a bogus next entry or trailing bytes. */
	ar_init(&a);
	ar_entry_raw(&a, ARCHIVE_FILE, 0644, "f", 1, 1, "abc", 3);
	ar_done(&a);
	assert_int_equal(check_guarded(a.buf, a.len, NULL), -EBADMSG);
	ar_free(&a);
	/* count says 3, 2 entries present. */
	ar_init(&a);
	ar_file(&a, "a", 0644, "1");
	ar_file(&a, "b", 0644, "2");
	a.count = 3;
	ar_done(&a);
	assert_int_equal(check_guarded(a.buf, a.len, NULL), -EBADMSG);
	ar_free(&a);
	/* count says 1, 2 entries present: trailing bytes. */
	ar_init(&a);
	ar_file(&a, "a", 0644, "1");
	ar_file(&a, "b", 0644, "2");
	a.count = 1;
	ar_done(&a);
	assert_int_equal(check_guarded(a.buf, a.len, NULL), -EBADMSG);
	ar_free(&a);
}

static void test_truncated_everywhere(void **state)
{
	struct ar a;

	(void)state;
	ar_init(&a);
	ar_dir(&a, "d", 0755);
	ar_file(&a, "d/file.txt", 0644, "some content here");
	ar_file(&a, "x", 0755, "#!/bin/sh\n");
	ar_done(&a);
	assert_int_equal(check_guarded(a.buf, a.len, NULL), 0);
	for (size_t cut = 0; cut < a.len; cut++)
		assert_true(check_guarded(a.buf, cut, NULL) < 0);
	ar_free(&a);
}

static void test_limits(void **state)
{
	struct ar a;
	uint8_t *big;
	uint32_t half = ARCHIVE_MAX_TOTAL / 2 + 1;

	(void)state;
	/* Too many entries: refused from the header alone. */
	ar_init(&a);
	a.count = ARCHIVE_MAX_ENTRIES + 1;
	ar_done(&a);
	assert_int_equal(check_guarded(a.buf, a.len, NULL), -E2BIG);
	ar_free(&a);
	/* Exactly the maximum number of (empty) files is fine. */
	ar_init(&a);
	for (int i = 0; i < ARCHIVE_MAX_ENTRIES; i++) {
		char name[16];

		snprintf(name, sizeof(name), "f%d", i);
		ar_file(&a, name, 0644, "");
	}
	ar_done(&a);
	assert_int_equal(archive_check(a.buf, a.len, NULL), 0);
	ar_free(&a);
	/* More file bytes than ARCHIVE_MAX_TOTAL, with sizes that are true. */
	big = calloc(1, half);
	assert_non_null(big);
	ar_init(&a);
	ar_entry_raw(&a, ARCHIVE_FILE, 0644, "a", 1, half, big, half);
	ar_entry_raw(&a, ARCHIVE_FILE, 0644, "b", 1, half, big, half);
	ar_done(&a);
	assert_int_equal(archive_check(a.buf, a.len, NULL), -E2BIG);
	ar_free(&a);
	free(big);
}

/* Nothing is written when any entry is bad, even a late one. */
static void test_extract_validates_first(void **state)
{
	static const char *const evil[] = {"../evil", "/etc/kiln-test-x", "a/../../b"};
	char bad[64];
	struct tmp t;

	(void)state;
	for (size_t i = 0; i < sizeof(evil) / sizeof(evil[0]); i++) {
		struct ar a;

		ar_init(&a);
		ar_file(&a, "good.txt", 0644, "fine");
		ar_file(&a, evil[i], 0644, "evil");
		ar_done(&a);
		tmp_make(&t);
		assert_int_equal(archive_extract(t.fd, a.buf, a.len, bad, sizeof(bad)), -EINVAL);
		assert_string_equal(bad, evil[i]);
		assert_int_equal(count_entries(t.fn), 0);
		assert_int_equal(count_entries(t.root), 1);
		tmp_remove(&t);
		ar_free(&a);
	}
	assert_int_equal(access("/etc/kiln-test-x", F_OK), -1);
}

static void test_extract_conflicts(void **state)
{
	char bad[64];
	struct tmp t;
	struct ar a;

	(void)state;
	/* The same file twice. */
	ar_init(&a);
	ar_file(&a, "f", 0644, "1");
	ar_file(&a, "f", 0644, "2");
	ar_done(&a);
	tmp_make(&t);
	assert_int_equal(archive_extract(t.fd, a.buf, a.len, bad, sizeof(bad)), -EEXIST);
	assert_string_equal(bad, "f");
	tmp_remove(&t);
	ar_free(&a);
	/* A file, then a path through it. */
	ar_init(&a);
	ar_file(&a, "f", 0644, "1");
	ar_file(&a, "f/g", 0644, "2");
	ar_done(&a);
	tmp_make(&t);
	assert_true(archive_extract(t.fd, a.buf, a.len, bad, sizeof(bad)) < 0);
	assert_string_equal(bad, "f/g");
	tmp_remove(&t);
	ar_free(&a);
	/* A file where a directory is. */
	ar_init(&a);
	ar_dir(&a, "d", 0755);
	ar_file(&a, "d", 0644, "x");
	ar_done(&a);
	tmp_make(&t);
	assert_int_equal(archive_extract(t.fd, a.buf, a.len, bad, sizeof(bad)), -EEXIST);
	tmp_remove(&t);
	ar_free(&a);
	/* A directory twice is fine. */
	ar_init(&a);
	ar_dir(&a, "d", 0755);
	ar_dir(&a, "d", 0700);
	ar_done(&a);
	tmp_make(&t);
	assert_int_equal(archive_extract(t.fd, a.buf, a.len, bad, sizeof(bad)), 0);
	tmp_remove(&t);
	ar_free(&a);
}

/* A symlink planted in the target (not by us) is not followed. */
static void test_extract_no_follow(void **state)
{
	char bad[64], link[200];
	struct tmp t;
	struct ar a;

	(void)state;
	tmp_make(&t);
	snprintf(link, sizeof(link), "%s/f", t.fn);
	assert_int_equal(symlink("/tmp/kiln-test-archive-target", link), 0);
	ar_init(&a);
	ar_file(&a, "f", 0644, "x");
	ar_done(&a);
	assert_true(archive_extract(t.fd, a.buf, a.len, bad, sizeof(bad)) < 0);
	assert_int_equal(access("/tmp/kiln-test-archive-target", F_OK), -1);
	ar_free(&a);
	tmp_remove(&t);
}

/* archive_write: what it writes reads back entry by entry; what breaks the
 * rules is refused and nothing is returned. */
static void test_write(void **state)
{
	static const char data[] = "int main(void) { return 0; }\n";
	struct archive_entry in[3] = {
		{.kind = ARCHIVE_DIR, .mode = 0755, .path = "src", .path_len = 3},
		{.kind = ARCHIVE_FILE,
		 .mode = 0644,
		 .path = "src/main.c",
		 .path_len = 10,
		 .data = (const uint8_t *)data,
		 .size = sizeof(data) - 1},
		{.kind = ARCHIVE_FILE, .mode = 0600, .path = "empty", .path_len = 5},
	};
	struct archive_reader r;
	struct archive_entry e;
	uint8_t *out = NULL;
	size_t len = 0;
	uint32_t count;

	(void)state;
	assert_int_equal(archive_write(in, 3, &out, &len), 0);
	assert_int_equal(archive_check(out, len, &count), 0);
	assert_int_equal(count, 3);
	assert_int_equal(archive_open(&r, out, len), 0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(archive_next(&r, &e), 1);
		assert_int_equal(e.kind, in[i].kind);
		assert_int_equal(e.mode, in[i].mode);
		assert_int_equal(e.path_len, in[i].path_len);
		assert_memory_equal(e.path, in[i].path, e.path_len);
		assert_int_equal(e.size, in[i].size);
		if (e.size)
			assert_memory_equal(e.data, in[i].data, e.size);
	}
	assert_int_equal(archive_next(&r, &e), 0);
	free(out);

	/* No entries: just the header. */
	out = NULL;
	assert_int_equal(archive_write(NULL, 0, &out, &len), 0);
	assert_int_equal(len, ARCHIVE_HEADER_SIZE);
	assert_int_equal(archive_check(out, len, &count), 0);
	assert_int_equal(count, 0);
	free(out);

	/* Bad paths, a bad mode and a bad kind are refused; out is untouched. */
	out = NULL;
	in[1].path = "../main.c";
	in[1].path_len = 9;
	assert_int_equal(archive_write(in, 3, &out, &len), -EINVAL);
	in[1].path = "src/main.c";
	in[1].path_len = 10;
	in[2].mode = 01777;
	assert_int_equal(archive_write(in, 3, &out, &len), -EBADMSG);
	in[2].mode = 0600;
	in[2].kind = 3;
	assert_int_equal(archive_write(in, 3, &out, &len), -ENOTSUP);
	in[2].kind = ARCHIVE_FILE;
	assert_int_equal(archive_write(in, ARCHIVE_MAX_ENTRIES + 1, &out, &len), -E2BIG);
	assert_null(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_write),
		cmocka_unit_test(test_valid_and_extract),
		cmocka_unit_test(test_bad_paths),
		cmocka_unit_test(test_bad_entries),
		cmocka_unit_test(test_lying_sizes),
		cmocka_unit_test(test_truncated_everywhere),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_extract_validates_first),
		cmocka_unit_test(test_extract_conflicts),
		cmocka_unit_test(test_extract_no_follow),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
