/* test_cli_pack.c - client-side code packing (cli/pack.c): ustar archives
 * read back with libarchive, single files, archives passed through, the
 * errors, and base64. */
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
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <cmocka.h>

#include "cli/pack.h"

static char root[64];

static void put(const char *rel, const char *text, mode_t mode)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	assert_int_equal(chmod(path, mode), 0);
}

static void dir(const char *rel)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	assert_int_equal(mkdir(path, 0755), 0);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static int setup(void **state)
{
	(void)state;
	snprintf(root, sizeof(root), "/tmp/kiln-pack-XXXXXX");
	return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	return nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Reads the tar in buf back into "path mode type size content;" lines. */
static char *listing(const uint8_t *buf, size_t len)
{
	struct archive *a = archive_read_new();
	struct archive_entry *e;
	char *out = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&out, &size);

	archive_read_support_format_all(a);
	archive_read_support_filter_all(a);
	assert_int_equal(archive_read_open_memory(a, buf, len), ARCHIVE_OK);
	while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
		char data[256] = "";
		la_ssize_t n = archive_read_data(a, data, sizeof(data) - 1);

		fprintf(f, "%s %o %c %lld", archive_entry_pathname(e),
			(unsigned)archive_entry_perm(e),
			archive_entry_filetype(e) == AE_IFDIR	? 'd'
			: archive_entry_filetype(e) == AE_IFLNK ? 'l'
								: 'f',
			(long long)archive_entry_size(e));
		if (archive_entry_filetype(e) == AE_IFLNK)
			fprintf(f, " ->%s", archive_entry_symlink(e));
		else if (n > 0)
			fprintf(f, " %.*s", (int)n, data);
		assert_int_equal(archive_entry_mtime(e), 0);
		assert_int_equal(archive_entry_uid(e), 0);
		fputs(";", f);
	}
	assert_int_equal(archive_read_free(a), ARCHIVE_OK);
	fclose(f);
	return out;
}

static void test_directory(void **state)
{
	(void)state;
	uint8_t *buf = NULL, *buf2 = NULL;
	size_t len = 0, len2 = 0;
	char err[256], *l;

	put("handler.py", "def handle(e, c): pass\n", 0644);
	put("run.sh", "echo hi\n", 0755);
	dir("lib");
	put("lib/util.py", "X = 1\n", 0600);
	dir("lib/sub");
	put("lib/sub/z.txt", "z", 0444);
	{
		char p[512];

		snprintf(p, sizeof(p), "%s/lib/link.py", root);
		assert_int_equal(symlink("sub/../util.py", p), 0);
	}
	dir(".git");
	put(".git/HEAD", "ref\n", 0644);
	dir("__pycache__");
	put("__pycache__/x.pyc", "junk", 0644);
	assert_int_equal(pack_path(root, &buf, &len, err, sizeof(err)), 0);
	assert_int_equal(len % 512, 0);
	assert_true(pack_is_archive(buf, len));
	l = listing(buf, len);
	/* Sorted by name, .git and __pycache__ left out, modes kept. */
	assert_string_equal(l, "handler.py 644 f 23 def handle(e, c): pass\n;"
			       "lib/ 755 d 0;"
			       "lib/link.py 777 l 0 ->sub/../util.py;"
			       "lib/sub/ 755 d 0;"
			       "lib/sub/z.txt 444 f 1 z;"
			       "lib/util.py 600 f 6 X = 1\n;"
			       "run.sh 755 f 8 echo hi\n;");
	free(l);
	/* Reproducible: the same tree packs to the same bytes. */
	assert_int_equal(pack_path(root, &buf2, &len2, err, sizeof(err)), 0);
	assert_int_equal(len, len2);
	assert_memory_equal(buf, buf2, len);
	free(buf);
	free(buf2);
}

static void test_long_path(void **state)
{
	(void)state;
	char rel[512] = "", name[80];
	uint8_t *buf = NULL;
	size_t len = 0;
	char err[256], *l;

	/* 3 directories of 60 characters: the path needs ustar's prefix field. */
	for (int i = 0; i < 3; i++) {
		memset(name, 'a' + i, 60);
		name[60] = '\0';
		strcat(rel, name);
		dir(rel);
		strcat(rel, "/");
	}
	strcat(rel, "file.txt");
	put(rel, "deep", 0644);
	assert_int_equal(pack_path(root, &buf, &len, err, sizeof(err)), 0);
	l = listing(buf, len);
	assert_non_null(strstr(l, rel));
	assert_non_null(strstr(l, " deep;"));
	free(l);
	free(buf);
}

static void test_single_files(void **state)
{
	(void)state;
	static const uint8_t gz[] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3,
				     3,	   0,	 0, 0, 0, 0, 0, 0, 0, 0};
	uint8_t *buf = NULL;
	size_t len = 0;
	char err[256], path[512], *l;
	FILE *f;

	put("main.py", "print('hello')\n", 0640);
	snprintf(path, sizeof(path), "%s/main.py", root);
	assert_int_equal(pack_path(path, &buf, &len, err, sizeof(err)), 0);
	l = listing(buf, len);
	assert_string_equal(l, "main.py 640 f 15 print('hello')\n;");
	free(l);
	free(buf);
	/* An empty file is a one-file archive too. */
	put("empty.py", "", 0644);
	snprintf(path, sizeof(path), "%s/empty.py", root);
	assert_int_equal(pack_path(path, &buf, &len, err, sizeof(err)), 0);
	l = listing(buf, len);
	assert_string_equal(l, "empty.py 644 f 0;");
	free(l);
	free(buf);
	/* An archive is sent as it is. */
	snprintf(path, sizeof(path), "%s/code.tar.gz", root);
	f = fopen(path, "w");
	assert_non_null(f);
	fwrite(gz, 1, sizeof(gz), f);
	fclose(f);
	assert_int_equal(pack_path(path, &buf, &len, err, sizeof(err)), 0);
	assert_int_equal(len, sizeof(gz));
	assert_memory_equal(buf, gz, sizeof(gz));
	free(buf);
}

static void test_errors(void **state)
{
	(void)state;
	uint8_t *buf = (uint8_t *)(uintptr_t)1;
	size_t len = 7;
	char err[256], path[512];

	assert_int_equal(pack_path("/nonexistent/kiln", &buf, &len, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/kiln"));
	/* Empty directory. */
	assert_int_equal(pack_path(root, &buf, &len, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "empty"));
	/* A link out of the tree names the entry. */
	snprintf(path, sizeof(path), "%s/evil", root);
	assert_int_equal(symlink("../../etc/passwd", path), 0);
	assert_int_equal(pack_path(root, &buf, &len, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "evil: symbolic link to ../../etc/passwd points outside"));
	unlink(path);
	assert_int_equal(symlink("/etc/passwd", path), 0);
	assert_int_equal(pack_path(root, &buf, &len, err, sizeof(err)), -EINVAL);
	unlink(path);
	assert_int_equal(mkfifo(path, 0644), 0);
	assert_int_equal(pack_path(root, &buf, &len, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "evil: not a regular file"));
	unlink(path);
	assert_ptr_equal(buf, (uint8_t *)(uintptr_t)1);
	assert_int_equal(len, 7);
	assert_int_equal(pack_path("/dev/null", &buf, &len, err, sizeof(err)), -EINVAL);
}

static void check_b64(const char *in, const char *want)
{
	char *s = pack_base64((const uint8_t *)in, strlen(in));

	assert_non_null(s);
	assert_string_equal(s, want);
	free(s);
}

static void test_base64(void **state)
{
	(void)state;
	/* RFC 4648 test vectors. */
	check_b64("", "");
	check_b64("f", "Zg==");
	check_b64("fo", "Zm8=");
	check_b64("foo", "Zm9v");
	check_b64("foob", "Zm9vYg==");
	check_b64("fooba", "Zm9vYmE=");
	check_b64("foobar", "Zm9vYmFy");
	{
		const uint8_t bin[] = {0xff, 0xfe, 0x00, 0x3e, 0x3f};
		char *s = pack_base64(bin, sizeof(bin));

		assert_string_equal(s, "//4APj8=");
		free(s);
	}
}

static void test_is_archive(void **state)
{
	(void)state;
	uint8_t tar[512] = {0};

	memcpy(tar + 257, "ustar", 5);
	assert_true(pack_is_archive(tar, sizeof(tar)));
	assert_true(pack_is_archive((const uint8_t *)"PK\x03\x04rest", 8));
	assert_true(pack_is_archive((const uint8_t *)"\xfd"
						     "7zXZ\0..",
				    8));
	assert_true(pack_is_archive((const uint8_t *)"BZh91AY", 7));
	assert_false(pack_is_archive((const uint8_t *)"print(1)\n", 9));
	assert_false(pack_is_archive((const uint8_t *)"", 0));
	assert_false(pack_is_archive(tar, 261));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_directory, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_path, setup, teardown),
		cmocka_unit_test_setup_teardown(test_single_files, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
		cmocka_unit_test(test_base64),
		cmocka_unit_test(test_is_archive),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
