/* test_codepack.c - user code to KLNA (daemon/codepack.c). Inputs are built
 * here with libarchive's writer (tar, tar.gz, tar.xz, zip, cpio) or by hand
 * (a tar header that lies about its size), and as trees in a temporary
 * directory; outputs are checked with common/archive.c's reader. */
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
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cmocka.h>

/* common/archive.h and libarchive both name a `struct archive_entry`. */
#define archive_entry kiln_archive_entry
#include "common/archive.h"
#undef archive_entry

#include <archive.h>
#include <archive_entry.h>

#include "daemon/codepack.h"

/* ---- building inputs ------------------------------------------------------------ */

enum fmt { TAR, TAR_GZ, TAR_XZ, ZIP, CPIO };

struct in {
	struct archive *a;
	uint8_t *buf;
	size_t cap, used;
};

static void in_start(struct in *in, enum fmt fmt, size_t cap)
{
	in->a = archive_write_new();
	assert_non_null(in->a);
	in->cap = cap;
	in->buf = malloc(cap);
	assert_non_null(in->buf);
	switch (fmt) {
	case TAR:
		assert_int_equal(archive_write_set_format_pax_restricted(in->a), ARCHIVE_OK);
		break;
	case TAR_GZ:
		assert_int_equal(archive_write_set_format_pax_restricted(in->a), ARCHIVE_OK);
		assert_int_equal(archive_write_add_filter_gzip(in->a), ARCHIVE_OK);
		break;
	case TAR_XZ:
		assert_int_equal(archive_write_set_format_pax_restricted(in->a), ARCHIVE_OK);
		assert_int_equal(archive_write_add_filter_xz(in->a), ARCHIVE_OK);
		break;
	case ZIP:
		assert_int_equal(archive_write_set_format_zip(in->a), ARCHIVE_OK);
		break;
	case CPIO:
		assert_int_equal(archive_write_set_format_cpio_newc(in->a), ARCHIVE_OK);
		break;
	}
	assert_int_equal(archive_write_open_memory(in->a, in->buf, in->cap, &in->used), ARCHIVE_OK);
}

static void in_entry(struct in *in, const char *path, unsigned int type, unsigned int perm,
		     const void *data, size_t len, const char *symlink, const char *hardlink)
{
	struct archive_entry *e = archive_entry_new();

	assert_non_null(e);
	archive_entry_set_pathname(e, path);
	archive_entry_set_filetype(e, type);
	archive_entry_set_perm(e, perm);
	archive_entry_set_size(e, (la_int64_t)len);
	if (symlink)
		archive_entry_set_symlink(e, symlink);
	if (hardlink) {
		archive_entry_set_hardlink(e, hardlink);
		archive_entry_set_size(e, 0);
	}
	if (type == AE_IFCHR)
		archive_entry_set_rdev(e, makedev(1, 3));
	assert_int_equal(archive_write_header(in->a, e), ARCHIVE_OK);
	if (len)
		assert_int_equal(archive_write_data(in->a, data, len), (la_ssize_t)len);
	archive_entry_free(e);
}

static void in_file(struct in *in, const char *path, const char *data, unsigned int perm)
{
	in_entry(in, path, AE_IFREG, perm, data, strlen(data), NULL, NULL);
}

static void in_dir(struct in *in, const char *path, unsigned int perm)
{
	in_entry(in, path, AE_IFDIR, perm, NULL, 0, NULL, NULL);
}

static void in_symlink(struct in *in, const char *path, const char *target)
{
	in_entry(in, path, AE_IFLNK, 0777, NULL, 0, target, NULL);
}

static void in_hardlink(struct in *in, const char *path, const char *target)
{
	in_entry(in, path, AE_IFREG, 0644, NULL, 0, NULL, target);
}

/* Closes the writer; the input is in->buf[0..in->used). */
static void in_done(struct in *in)
{
	assert_int_equal(archive_write_close(in->a), ARCHIVE_OK);
	archive_write_free(in->a);
	in->a = NULL;
}

/* ---- checking outputs --------------------------------------------------------------- */

struct out {
	uint8_t *buf;
	size_t len;
	char err[256];
	int ret;
};

static void pack(struct out *o, const struct in *in)
{
	memset(o, 0, sizeof(*o));
	o->ret = codepack_from_archive(in->buf, in->used, &o->buf, &o->len, o->err, sizeof(o->err));
	if (o->ret == 0) {
		assert_int_equal(archive_check(o->buf, o->len, NULL), 0);
		assert_string_equal(o->err, "");
	} else {
		assert_null(o->buf);
		assert_true(strlen(o->err) > 0);
	}
}

/* Packs in and expects the error ret with a message containing want. */
static void expect_error(struct in *in, int ret, const char *want)
{
	struct out o;

	in_done(in);
	pack(&o, in);
	if (o.ret != ret || !strstr(o.err, want))
		fail_msg("expected %d \"%s\", got %d \"%s\"", ret, want, o.ret, o.err);
	free(in->buf);
}

/* The entry at path in the KLNA archive (or fails). */
static struct kiln_archive_entry find(const struct out *o, const char *path)
{
	struct archive_reader r;
	struct kiln_archive_entry e;

	assert_int_equal(archive_open(&r, o->buf, o->len), 0);
	while (archive_next(&r, &e) == 1)
		if (e.path_len == strlen(path) && !memcmp(e.path, path, e.path_len))
			return e;
	fail_msg("no entry %s", path);
	return e;
}

static bool has(const struct out *o, const char *path)
{
	struct archive_reader r;
	struct kiln_archive_entry e;

	assert_int_equal(archive_open(&r, o->buf, o->len), 0);
	while (archive_next(&r, &e) == 1)
		if (e.path_len == strlen(path) && !memcmp(e.path, path, e.path_len))
			return true;
	return false;
}

static uint32_t count(const struct out *o)
{
	uint32_t n = 0;

	assert_int_equal(archive_check(o->buf, o->len, &n), 0);
	return n;
}

static void expect_file(const struct out *o, const char *path, const char *data, unsigned mode)
{
	struct kiln_archive_entry e = find(o, path);

	assert_int_equal(e.kind, ARCHIVE_FILE);
	assert_int_equal(e.size, strlen(data));
	if (e.size)
		assert_memory_equal(e.data, data, e.size);
	assert_int_equal(e.mode, mode);
}

static void expect_dir(const struct out *o, const char *path)
{
	assert_int_equal(find(o, path).kind, ARCHIVE_DIR);
}

/* ---- archives ---------------------------------------------------------------------- */

static void test_tar_basic(void **state)
{
	struct out o;
	struct in in;

	(void)state;
	in_start(&in, TAR, 1 << 20);
	in_dir(&in, "./", 0755);
	in_dir(&in, "./src/", 0750);
	in_file(&in, "./src/app.py", "print('hi')\n", 0644);
	in_file(&in, "run.sh", "#!/bin/sh\n", 0755);
	in_file(&in, "secret", "s", 0200); /* made owner-readable */
	in_file(&in, "suid", "x", 04755);  /* permission bits only */
	in_file(&in, "empty", "", 0644);
	in_done(&in);
	pack(&o, &in);
	assert_int_equal(o.ret, 0);
	assert_int_equal(count(&o), 6);
	expect_dir(&o, "src");
	assert_int_equal(find(&o, "src").mode, 0750);
	expect_file(&o, "src/app.py", "print('hi')\n", 0644);
	expect_file(&o, "run.sh", "#!/bin/sh\n", 0755);
	expect_file(&o, "secret", "s", 0600);
	expect_file(&o, "suid", "x", 0755);
	expect_file(&o, "empty", "", 0644);
	free(o.buf);
	free(in.buf);
}

static void test_sorted_and_deterministic(void **state)
{
	struct out o1, o2;
	struct in a, b;
	struct archive_reader r;
	struct kiln_archive_entry e;
	char prev[ARCHIVE_MAX_PATH + 1] = "";

	(void)state;
	in_start(&a, TAR, 1 << 20);
	in_file(&a, "z", "1", 0644);
	in_file(&a, "a/b", "2", 0644);
	in_dir(&a, "a", 0755);
	in_file(&a, "a-b", "3", 0644);
	in_done(&a);
	in_start(&b, ZIP, 1 << 20);
	in_dir(&b, "a", 0755);
	in_file(&b, "a-b", "3", 0644);
	in_file(&b, "a/b", "2", 0644);
	in_file(&b, "z", "1", 0644);
	in_done(&b);
	pack(&o1, &a);
	pack(&o2, &b);
	assert_int_equal(o1.ret, 0);
	assert_int_equal(o2.ret, 0);
	assert_int_equal(o1.len, o2.len);
	assert_memory_equal(o1.buf, o2.buf, o1.len);
	assert_int_equal(archive_open(&r, o1.buf, o1.len), 0);
	while (archive_next(&r, &e) == 1) {
		char cur[ARCHIVE_MAX_PATH + 1];

		memcpy(cur, e.path, e.path_len);
		cur[e.path_len] = '\0';
		assert_true(strcmp(prev, cur) < 0);
		strcpy(prev, cur);
	}
	free(o1.buf);
	free(o2.buf);
	free(a.buf);
	free(b.buf);
}

static void test_implicit_parents(void **state)
{
	struct out o;
	struct in in;

	(void)state;
	in_start(&in, TAR, 1 << 20);
	in_file(&in, "a/b/c/d.txt", "deep", 0644);
	in_file(&in, "a/b/e.txt", "e", 0644);
	in_dir(&in, "a/b", 0700); /* after its children: replaces the implicit one */
	in_done(&in);
	pack(&o, &in);
	assert_int_equal(o.ret, 0);
	assert_int_equal(count(&o), 5);
	expect_dir(&o, "a");
	assert_int_equal(find(&o, "a").mode, 0755);
	assert_int_equal(find(&o, "a/b").mode, 0700);
	expect_dir(&o, "a/b/c");
	expect_file(&o, "a/b/c/d.txt", "deep", 0644);
	free(o.buf);
	free(in.buf);
}

static void test_extracts(void **state)
{
	const char *tmp = getenv("TMPDIR");
	char dir[256], path[512], bad[64];
	struct out o;
	struct in in;
	struct stat st;
	int fd;

	(void)state;
	in_start(&in, TAR_GZ, 1 << 20);
	in_file(&in, "x/y/z.txt", "zz", 0640);
	in_symlink(&in, "x/link", "y/z.txt");
	in_done(&in);
	pack(&o, &in);
	assert_int_equal(o.ret, 0);
	snprintf(dir, sizeof(dir), "%s/kiln-codepack-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	assert_non_null(mkdtemp(dir));
	fd = open(dir, O_RDONLY | O_DIRECTORY);
	assert_true(fd >= 0);
	assert_int_equal(archive_extract(fd, o.buf, o.len, bad, sizeof(bad)), 0);
	close(fd);
	snprintf(path, sizeof(path), "%s/x/link", dir);
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode)); /* a copy, not a link */
	assert_int_equal(st.st_size, 2);
	unlink(path);
	snprintf(path, sizeof(path), "%s/x/y/z.txt", dir);
	assert_int_equal(unlink(path), 0);
	snprintf(path, sizeof(path), "%s/x/y", dir);
	assert_int_equal(rmdir(path), 0);
	snprintf(path, sizeof(path), "%s/x", dir);
	assert_int_equal(rmdir(path), 0);
	assert_int_equal(rmdir(dir), 0);
	free(o.buf);
	free(in.buf);
}

static void test_traversal(void **state)
{
	struct in in;
	char err[256];
	struct out o;

	(void)state;
	in_start(&in, TAR, 1 << 20);
	in_file(&in, "../etc/passwd", "root::0:0", 0644);
	in_done(&in);
	pack(&o, &in);
	assert_int_equal(o.ret, -EINVAL);
	assert_string_equal(o.err, "../etc/passwd: path escapes the function directory");
	free(in.buf);

	in_start(&in, TAR, 1 << 20);
	in_file(&in, "ok", "1", 0644);
	in_file(&in, "a/../../x", "1", 0644);
	expect_error(&in, -EINVAL, "a/../../x: path escapes the function directory");

	/* Even a ".." that would stay inside is refused. */
	in_start(&in, ZIP, 1 << 20);
	in_file(&in, "a/../b", "1", 0644);
	expect_error(&in, -EINVAL, "path escapes");

	in_start(&in, TAR, 1 << 20);
	in_file(&in, "/etc/cron.d/x", "1", 0644);
	expect_error(&in, -EINVAL, "/etc/cron.d/x: absolute path");

	/* A tiny error buffer is still NUL-terminated. */
	in_start(&in, TAR, 1 << 20);
	in_file(&in, "../x", "1", 0644);
	in_done(&in);
	memset(err, 'Z', sizeof(err));
	assert_int_equal(codepack_from_archive(in.buf, in.used, &o.buf, &o.len, err, 6), -EINVAL);
	assert_int_equal(strlen(err), 5);
	assert_int_equal(codepack_from_archive(in.buf, in.used, &o.buf, &o.len, NULL, 0), -EINVAL);
	free(in.buf);
}

static void test_bad_paths(void **state)
{
	char long_name[ARCHIVE_MAX_PATH + 16], deep[ARCHIVE_MAX_DEPTH * 2 + 8];
	char comp[ARCHIVE_MAX_COMPONENT + 8];
	struct in in;
	size_t n = 0;

	(void)state;
	memset(long_name, 'a', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	for (int i = 0; i < 20; i++)
		long_name[50 * i + 49] = '/';
	in_start(&in, TAR, 1 << 20);
	in_file(&in, long_name, "1", 0644);
	expect_error(&in, -EINVAL, "bad path");

	for (int i = 0; i <= ARCHIVE_MAX_DEPTH; i++) {
		deep[n++] = 'd';
		deep[n++] = '/';
	}
	deep[n - 1] = '\0';
	in_start(&in, TAR, 1 << 20);
	in_file(&in, deep, "1", 0644);
	expect_error(&in, -EINVAL, "bad path");

	memset(comp, 'c', ARCHIVE_MAX_COMPONENT + 1);
	comp[ARCHIVE_MAX_COMPONENT + 1] = '\0';
	in_start(&in, TAR, 1 << 20);
	in_file(&in, comp, "1", 0644);
	expect_error(&in, -EINVAL, "bad path");

	in_start(&in, TAR, 1 << 20);
	in_file(&in, "./", "1", 0644); /* a file named like the top directory */
	expect_error(&in, -EINVAL, "name");
}

static void test_duplicates(void **state)
{
	struct in in;

	(void)state;
	in_start(&in, TAR, 1 << 20);
	in_file(&in, "a.py", "1", 0644);
	in_file(&in, "./a.py", "2", 0644);
	expect_error(&in, -EINVAL, "a.py: duplicate entry");

	in_start(&in, TAR, 1 << 20);
	in_dir(&in, "d", 0755);
	in_dir(&in, "d/", 0755);
	expect_error(&in, -EINVAL, "d: duplicate entry");

	in_start(&in, TAR, 1 << 20);
	in_file(&in, "d/x", "1", 0644);
	in_file(&in, "d", "file over a directory", 0644);
	expect_error(&in, -EINVAL, "d: duplicate entry");

	in_start(&in, TAR, 1 << 20);
	in_file(&in, "f", "1", 0644);
	in_file(&in, "f/x", "under a file", 0644);
	expect_error(&in, -EINVAL, "f/x: a parent is not a directory");
}

static void test_symlinks_inside(void **state)
{
	struct out o;
	struct in in;

	(void)state;
	in_start(&in, TAR, 1 << 20);
	in_file(&in, "lib/real.py", "REAL", 0755);
	in_symlink(&in, "top.py", "lib/real.py");
	in_symlink(&in, "lib/same.py", "./real.py");
	in_symlink(&in, "lib/sub/up.py", "../real.py");
	in_symlink(&in, "chain", "top.py");
	in_symlink(&in, "libdir", "lib");
	in_symlink(&in, "via", "libdir/real.py");
	in_symlink(&in, "dotdot", "libdir/../lib/real.py");
	in_done(&in);
	pack(&o, &in);
	assert_int_equal(o.ret, 0);
	expect_file(&o, "top.py", "REAL", 0755);
	expect_file(&o, "lib/same.py", "REAL", 0755);
	expect_file(&o, "lib/sub/up.py", "REAL", 0755);
	expect_file(&o, "chain", "REAL", 0755);
	expect_file(&o, "via", "REAL", 0755);
	expect_file(&o, "dotdot", "REAL", 0755);
	/* The directory link is a copy of the directory, links in it included. */
	expect_dir(&o, "libdir");
	expect_file(&o, "libdir/real.py", "REAL", 0755);
	expect_file(&o, "libdir/same.py", "REAL", 0755);
	expect_file(&o, "libdir/sub/up.py", "REAL", 0755);
	free(o.buf);
	free(in.buf);
}

static void test_symlinks_bad(void **state)
{
	struct in in;

	(void)state;
	in_start(&in, TAR, 1 << 20);
	in_symlink(&in, "passwd", "../../etc/passwd");
	expect_error(&in, -EINVAL, "passwd: symbolic link points outside the function directory");

	in_start(&in, TAR, 1 << 20);
	in_file(&in, "a/x", "1", 0644);
	in_symlink(&in, "a/out", "../../x");
	expect_error(&in, -EINVAL, "a/out: symbolic link points outside");

	in_start(&in, TAR, 1 << 20);
	in_symlink(&in, "abs", "/etc/passwd");
	expect_error(&in, -EINVAL, "abs: symbolic link to an absolute path");

	in_start(&in, TAR, 1 << 20);
	in_symlink(&in, "dangling", "nothere");
	expect_error(&in, -EINVAL, "dangling: dangling symbolic link");

	in_start(&in, TAR, 1 << 20);
	in_file(&in, "f", "1", 0644);
	in_symlink(&in, "through-file", "f/x");
	expect_error(&in, -EINVAL, "through-file: dangling symbolic link");

	in_start(&in, TAR, 1 << 20);
	in_symlink(&in, "a", "b");
	in_symlink(&in, "b", "a");
	expect_error(&in, -EINVAL, "too many levels of symbolic links");

	in_start(&in, TAR, 1 << 20);
	in_file(&in, "d/f", "1", 0644);
	in_symlink(&in, "d/loop", "..");
	expect_error(&in, -EINVAL, "d/loop: symbolic link loop");

	in_start(&in, TAR, 1 << 20);
	in_file(&in, "d/f", "1", 0644);
	in_symlink(&in, "d/self", ".");
	expect_error(&in, -EINVAL, "d/self: symbolic link loop");

	/* Two directories linking into each other. */
	in_start(&in, TAR, 1 << 20);
	in_symlink(&in, "x/toy", "../y");
	in_symlink(&in, "y/tox", "../x");
	expect_error(&in, -EINVAL, "symbolic link loop");

	/* A link to a directory outside, through another link. */
	in_start(&in, TAR, 1 << 20);
	in_symlink(&in, "up", "..");
	in_symlink(&in, "etc", "up/etc");
	expect_error(&in, -EINVAL, "points outside the function directory");

	/* Writing through a symbolic link (the classic tar attack). */
	in_start(&in, TAR, 1 << 20);
	in_dir(&in, "d", 0755);
	in_symlink(&in, "l", "d");
	in_file(&in, "l/evil", "1", 0644);
	expect_error(&in, -EINVAL, "l/evil: path goes through a symbolic link");

	in_start(&in, TAR, 1 << 20);
	in_symlink(&in, "l", "/tmp");
	in_file(&in, "l/evil", "1", 0644);
	expect_error(&in, -EINVAL, "l/evil: path goes through a symbolic link");
}

static void test_hardlinks(void **state)
{
	struct out o;
	struct in in;

	(void)state;
	in_start(&in, TAR, 1 << 20);
	in_file(&in, "orig", "DATA", 0700);
	in_hardlink(&in, "copy", "orig");
	in_hardlink(&in, "sub/copy2", "./orig");
	in_done(&in);
	pack(&o, &in);
	assert_int_equal(o.ret, 0);
	expect_file(&o, "copy", "DATA", 0700);
	expect_file(&o, "sub/copy2", "DATA", 0700);
	free(o.buf);
	free(in.buf);

	in_start(&in, TAR, 1 << 20);
	in_hardlink(&in, "passwd", "../../etc/passwd");
	expect_error(&in, -EINVAL, "passwd: hard link: ../../etc/passwd: path escapes");

	in_start(&in, TAR, 1 << 20);
	in_hardlink(&in, "shadow", "/etc/shadow");
	expect_error(&in, -EINVAL, "shadow: hard link: /etc/shadow: absolute path");

	in_start(&in, TAR, 1 << 20);
	in_hardlink(&in, "early", "later");
	in_file(&in, "later", "1", 0644);
	expect_error(&in, -EINVAL, "early: hard link to later, not a regular file read before it");

	in_start(&in, TAR, 1 << 20);
	in_dir(&in, "d", 0755);
	in_hardlink(&in, "hd", "d");
	expect_error(&in, -EINVAL, "hd: hard link to d");
}

static void test_special_files(void **state)
{
	struct in in;

	(void)state;
	in_start(&in, TAR, 1 << 20);
	in_file(&in, "ok", "1", 0644);
	in_entry(&in, "dev/null", AE_IFCHR, 0666, NULL, 0, NULL, NULL);
	expect_error(&in, -EINVAL, "dev/null: device nodes are not allowed");

	in_start(&in, TAR, 1 << 20);
	in_entry(&in, "disk", AE_IFBLK, 0666, NULL, 0, NULL, NULL);
	expect_error(&in, -EINVAL, "disk: device nodes are not allowed");

	in_start(&in, TAR, 1 << 20);
	in_entry(&in, "pipe", AE_IFIFO, 0666, NULL, 0, NULL, NULL);
	expect_error(&in, -EINVAL, "pipe: FIFOs are not allowed");
}

/* A ustar header for a regular file claiming `size` bytes (base-256 when
 * it does not fit the octal field), followed by data_len zero bytes. */
static uint8_t *lying_tar(uint64_t size, size_t data_len, size_t *len)
{
	uint8_t *t = calloc(1, 512 + data_len + 1024);
	unsigned int sum = 0;

	assert_non_null(t);
	strcpy((char *)t, "big.bin");
	memcpy(t + 100, "0000644", 8);
	memcpy(t + 108, "0000000", 8);
	memcpy(t + 116, "0000000", 8);
	t[124] = 0x80; /* base-256 */
	for (int i = 0; i < 8; i++)
		t[135 - i] = (uint8_t)(size >> (8 * i));
	memcpy(t + 136, "00000000000", 12);
	t[156] = '0';
	memcpy(t + 257, "ustar", 6);
	memcpy(t + 263, "00", 2);
	memset(t + 148, ' ', 8);
	for (int i = 0; i < 512; i++)
		sum += t[i];
	snprintf((char *)t + 148, 8, "%06o", sum);
	*len = 512 + data_len + 1024;
	return t;
}

static void test_huge_claimed_size(void **state)
{
	uint8_t *t, *out = NULL;
	size_t len, out_len;
	char err[256];

	(void)state;
	/* 10 GiB claimed, 65 MiB really there: stops at 64 MiB. */
	t = lying_tar(10ULL << 30, 65U << 20, &len);
	assert_int_equal(codepack_from_archive(t, len, &out, &out_len, err, sizeof(err)), -E2BIG);
	assert_non_null(strstr(err, "big.bin: code exceeds 64 MiB"));
	assert_null(out);
	free(t);
	/* 10 GiB claimed, 1 MiB there: a truncated archive, nothing huge allocated. */
	t = lying_tar(10ULL << 30, 1U << 20, &len);
	assert_int_equal(codepack_from_archive(t, len, &out, &out_len, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "big.bin"));
	free(t);
}

static void test_too_much_data(void **state)
{
	uint8_t *zeros = calloc(1, 40U << 20);
	struct in in;

	(void)state;
	assert_non_null(zeros);
	/* A gzip "bomb": two 40 MiB files of zeros, small compressed. */
	in_start(&in, TAR_GZ, 1 << 20);
	in_entry(&in, "a", AE_IFREG, 0644, zeros, 40U << 20, NULL, NULL);
	in_entry(&in, "b", AE_IFREG, 0644, zeros, 40U << 20, NULL, NULL);
	expect_error(&in, -E2BIG, "b: code exceeds 64 MiB");

	/* Copies made for links count too. */
	in_start(&in, TAR_GZ, 1 << 20);
	in_entry(&in, "a", AE_IFREG, 0644, zeros, 40U << 20, NULL, NULL);
	in_hardlink(&in, "b", "a");
	expect_error(&in, -E2BIG, "b: code exceeds 64 MiB");

	in_start(&in, TAR_GZ, 1 << 20);
	in_entry(&in, "a", AE_IFREG, 0644, zeros, 40U << 20, NULL, NULL);
	in_symlink(&in, "b", "a");
	expect_error(&in, -E2BIG, "b: code exceeds 64 MiB");
	free(zeros);
}

static void test_entry_limit(void **state)
{
	struct out o;
	struct in in;
	char name[32];

	(void)state;
	in_start(&in, TAR, 8 << 20);
	for (int i = 0; i < ARCHIVE_MAX_ENTRIES; i++) {
		snprintf(name, sizeof(name), "f%05d", i);
		in_file(&in, name, "", 0644);
	}
	in_done(&in);
	pack(&o, &in);
	assert_int_equal(o.ret, 0);
	assert_int_equal(count(&o), ARCHIVE_MAX_ENTRIES);
	free(o.buf);
	free(in.buf);

	in_start(&in, TAR, 8 << 20);
	for (int i = 0; i <= ARCHIVE_MAX_ENTRIES; i++) {
		snprintf(name, sizeof(name), "f%05d", i);
		in_file(&in, name, "", 0644);
	}
	expect_error(&in, -E2BIG, "f04096: too many entries");

	/* Implicit directories count in the archive written. */
	in_start(&in, TAR, 8 << 20);
	for (int i = 0; i < ARCHIVE_MAX_ENTRIES; i++) {
		snprintf(name, sizeof(name), "d%05d/f", i);
		in_file(&in, name, "", 0644);
	}
	expect_error(&in, -E2BIG, "too many entries");
}

static void test_zip_and_compressed(void **state)
{
	static const enum fmt fmts[] = {ZIP, TAR_GZ, TAR_XZ};
	struct out o;
	struct in in;

	(void)state;
	for (size_t i = 0; i < sizeof(fmts) / sizeof(fmts[0]); i++) {
		in_start(&in, fmts[i], 1 << 20);
		in_dir(&in, "pkg/", 0755);
		in_file(&in, "pkg/__init__.py", "", 0644);
		in_file(&in, "pkg/mod.py", "x = 1\n", 0644);
		in_file(&in, "handler.py", "def handle(e): return e\n", 0755);
		in_symlink(&in, "h.py", "handler.py");
		in_done(&in);
		pack(&o, &in);
		assert_int_equal(o.ret, 0);
		assert_int_equal(count(&o), 5);
		expect_file(&o, "pkg/mod.py", "x = 1\n", 0644);
		expect_file(&o, "handler.py", "def handle(e): return e\n", 0755);
		expect_file(&o, "h.py", "def handle(e): return e\n", 0755);
		assert_true(has(&o, "pkg/__init__.py"));
		free(o.buf);
		free(in.buf);
	}
	/* A zip with a traversal. */
	in_start(&in, ZIP, 1 << 20);
	in_file(&in, "../../evil.sh", "1", 0755);
	expect_error(&in, -EINVAL, "../../evil.sh: path escapes the function directory");
}

static void test_not_an_archive(void **state)
{
	static const char text[] = "def handle(event):\n    return event\n";
	uint8_t *out = NULL;
	size_t out_len;
	char err[256];
	struct in in;
	struct archive *a;
	uint8_t gz[4096];
	size_t gz_len = 0;

	(void)state;
	assert_int_equal(
		codepack_from_archive(text, strlen(text), &out, &out_len, err, sizeof(err)),
		-EINVAL);
	assert_non_null(strstr(err, "not a tar or zip archive"));
	assert_int_equal(codepack_from_archive("", 0, &out, &out_len, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not a tar or zip archive"));
	assert_int_equal(codepack_from_archive(NULL, 0, &out, &out_len, err, sizeof(err)), -EINVAL);
	assert_null(out);

	/* gzip of plain text: a filter, but no archive format inside. */
	a = archive_write_new();
	assert_int_equal(archive_write_set_format_raw(a), ARCHIVE_OK);
	assert_int_equal(archive_write_add_filter_gzip(a), ARCHIVE_OK);
	assert_int_equal(archive_write_open_memory(a, gz, sizeof(gz), &gz_len), ARCHIVE_OK);
	{
		struct archive_entry *e = archive_entry_new();

		archive_entry_set_pathname(e, "x");
		archive_entry_set_filetype(e, AE_IFREG);
		archive_entry_set_size(e, (la_int64_t)strlen(text));
		assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
		assert_int_equal(archive_write_data(a, text, strlen(text)),
				 (la_ssize_t)strlen(text));
		archive_entry_free(e);
	}
	assert_int_equal(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
	assert_int_equal(codepack_from_archive(gz, gz_len, &out, &out_len, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "not a tar or zip archive"));

	/* cpio is an archive, but not one we take. */
	in_start(&in, CPIO, 1 << 20);
	in_file(&in, "a", "1", 0644);
	expect_error(&in, -EINVAL, "not a tar or zip archive");

	/* A truncated tar.gz. */
	in_start(&in, TAR_GZ, 1 << 20);
	in_file(&in, "a", "some content that compresses", 0644);
	in_done(&in);
	assert_int_not_equal(
		codepack_from_archive(in.buf, in.used / 2, &out, &out_len, err, sizeof(err)), 0);
	assert_null(out);
	free(in.buf);
}

static void test_empty_tar(void **state)
{
	struct out o;
	struct in in;

	(void)state;
	in_start(&in, TAR, 1 << 20);
	in_done(&in);
	pack(&o, &in);
	assert_int_equal(o.ret, 0);
	assert_int_equal(count(&o), 0);
	free(o.buf);
	free(in.buf);
}

/* ---- host paths --------------------------------------------------------------------- */

struct tree {
	char dir[256];
};

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	chmod(path, 0700);
	return remove(path);
}

static int tree_setup(void **state)
{
	struct tree *t = calloc(1, sizeof(*t));
	const char *tmp = getenv("TMPDIR");

	assert_non_null(t);
	snprintf(t->dir, sizeof(t->dir), "%s/kiln-codepack-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	assert_non_null(mkdtemp(t->dir));
	*state = t;
	return 0;
}

static int tree_teardown(void **state)
{
	struct tree *t = *state;

	nftw(t->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(t);
	return 0;
}

static void put(const struct tree *t, const char *rel, const char *data, mode_t mode)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", t->dir, rel);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, strlen(data)), (ssize_t)strlen(data));
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static void mk(const struct tree *t, const char *rel)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", t->dir, rel);
	assert_int_equal(mkdir(path, 0755), 0);
}

static void ln(const struct tree *t, const char *target, const char *rel)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", t->dir, rel);
	assert_int_equal(symlink(target, path), 0);
}

static void pack_path(struct out *o, const char *path)
{
	memset(o, 0, sizeof(*o));
	o->ret = codepack_from_path(path, &o->buf, &o->len, o->err, sizeof(o->err));
	if (o->ret == 0)
		assert_int_equal(archive_check(o->buf, o->len, NULL), 0);
	else
		assert_null(o->buf);
}

static void expect_path_error(const char *path, int ret, const char *want)
{
	struct out o;

	pack_path(&o, path);
	if (o.ret != ret || !strstr(o.err, want))
		fail_msg("expected %d \"%s\", got %d \"%s\"", ret, want, o.ret, o.err);
}

static void make_code_tree(const struct tree *t)
{
	mk(t, "code");
	mk(t, "code/lib");
	put(t, "code/handler.py", "def handle(e): return e\n", 0755);
	put(t, "code/lib/util.py", "X = 1\n", 0640);
	put(t, "code/lib/empty", "", 0644);
	ln(t, "lib/util.py", "code/util.py");
	ln(t, "lib", "code/libdir");
}

static void test_path_directory(void **state)
{
	struct tree *t = *state;
	char path[512];
	struct out o, o2;
	struct in in;

	make_code_tree(t);
	snprintf(path, sizeof(path), "%s/code", t->dir);
	pack_path(&o, path);
	assert_int_equal(o.ret, 0);
	expect_file(&o, "handler.py", "def handle(e): return e\n", 0755);
	expect_file(&o, "lib/util.py", "X = 1\n", 0640);
	expect_file(&o, "lib/empty", "", 0644);
	expect_file(&o, "util.py", "X = 1\n", 0640);
	expect_dir(&o, "libdir");
	expect_file(&o, "libdir/util.py", "X = 1\n", 0640);
	assert_int_equal(count(&o), 8);

	/* The same files as a tar give the same bytes. */
	in_start(&in, TAR, 1 << 20);
	in_file(&in, "handler.py", "def handle(e): return e\n", 0755);
	in_dir(&in, "lib", 0755);
	in_file(&in, "lib/util.py", "X = 1\n", 0640);
	in_file(&in, "lib/empty", "", 0644);
	in_symlink(&in, "util.py", "lib/util.py");
	in_symlink(&in, "libdir", "lib");
	in_done(&in);
	pack(&o2, &in);
	assert_int_equal(o2.ret, 0);
	assert_int_equal(o.len, o2.len);
	assert_memory_equal(o.buf, o2.buf, o.len);
	free(o.buf);
	free(o2.buf);
	free(in.buf);

	/* A trailing slash, and a symbolic link to the directory itself. */
	snprintf(path, sizeof(path), "%s/code/", t->dir);
	pack_path(&o, path);
	assert_int_equal(o.ret, 0);
	free(o.buf);
	ln(t, "code", "code-link");
	snprintf(path, sizeof(path), "%s/code-link", t->dir);
	pack_path(&o, path);
	assert_int_equal(o.ret, 0);
	assert_int_equal(count(&o), 8);
	free(o.buf);
}

static void test_path_directory_bad(void **state)
{
	struct tree *t = *state;
	char path[512], fifo[512];

	mk(t, "out");
	put(t, "secret", "s", 0600);
	put(t, "out/ok.py", "", 0644);
	ln(t, "../secret", "out/leak");
	snprintf(path, sizeof(path), "%s/out", t->dir);
	expect_path_error(path, -EINVAL,
			  "leak: symbolic link points outside the function directory");

	mk(t, "abs");
	ln(t, "/etc/passwd", "abs/passwd");
	snprintf(path, sizeof(path), "%s/abs", t->dir);
	expect_path_error(path, -EINVAL, "passwd: symbolic link to an absolute path");

	mk(t, "dang");
	ln(t, "missing", "dang/x");
	snprintf(path, sizeof(path), "%s/dang", t->dir);
	expect_path_error(path, -EINVAL, "x: dangling symbolic link");

	mk(t, "updir");
	ln(t, "..", "updir/parent");
	snprintf(path, sizeof(path), "%s/updir", t->dir);
	expect_path_error(path, -EINVAL, "parent: symbolic link points outside");

	mk(t, "fifo");
	snprintf(fifo, sizeof(fifo), "%s/fifo/p", t->dir);
	assert_int_equal(mkfifo(fifo, 0644), 0);
	snprintf(path, sizeof(path), "%s/fifo", t->dir);
	expect_path_error(path, -EINVAL, "p: FIFOs are not allowed");

	snprintf(path, sizeof(path), "%s/nothing", t->dir);
	expect_path_error(path, -ENOENT, "nothing");
	expect_path_error("relative/path", -EINVAL, "not an absolute path");
	expect_path_error(fifo, -EINVAL, "not a regular file or directory");
	expect_path_error("/dev/null", -EINVAL, "not a regular file or directory");
}

static void test_path_files(void **state)
{
	struct tree *t = *state;
	char path[512];
	struct out o, o2;
	struct in in;
	int fd;

	/* A plain file: a one-file archive. */
	put(t, "handler.py", "def handle(e): return e\n", 0755);
	snprintf(path, sizeof(path), "%s/handler.py", t->dir);
	pack_path(&o, path);
	assert_int_equal(o.ret, 0);
	assert_int_equal(count(&o), 1);
	expect_file(&o, "handler.py", "def handle(e): return e\n", 0755);
	free(o.buf);

	put(t, "empty", "", 0644);
	snprintf(path, sizeof(path), "%s/empty", t->dir);
	pack_path(&o, path);
	assert_int_equal(o.ret, 0);
	expect_file(&o, "empty", "", 0644);
	free(o.buf);

	/* An archive file: its contents. */
	in_start(&in, ZIP, 1 << 20);
	in_file(&in, "a.py", "A", 0644);
	in_done(&in);
	snprintf(path, sizeof(path), "%s/code.zip", t->dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, in.buf, in.used), (ssize_t)in.used);
	close(fd);
	pack_path(&o, path);
	assert_int_equal(o.ret, 0);
	pack(&o2, &in);
	assert_int_equal(o.len, o2.len);
	assert_memory_equal(o.buf, o2.buf, o.len);
	free(o.buf);
	free(o2.buf);
	free(in.buf);

	/* A bad archive file stays an error (not a one-file archive). */
	in_start(&in, TAR, 1 << 20);
	in_file(&in, "../x", "A", 0644);
	in_done(&in);
	snprintf(path, sizeof(path), "%s/bad.tar", t->dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, in.buf, in.used), (ssize_t)in.used);
	close(fd);
	free(in.buf);
	expect_path_error(path, -EINVAL, "../x: path escapes the function directory");
}

static void test_path_limits(void **state)
{
	struct tree *t = *state;
	char path[512], name[64];

	mk(t, "many");
	for (int i = 0; i <= ARCHIVE_MAX_ENTRIES; i++) {
		snprintf(name, sizeof(name), "many/f%05d", i);
		put(t, name, "", 0644);
	}
	snprintf(path, sizeof(path), "%s/many", t->dir);
	expect_path_error(path, -E2BIG, "too many entries");

	mk(t, "big");
	snprintf(path, sizeof(path), "%s/big/huge", t->dir);
	{
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		assert_true(fd >= 0);
		assert_int_equal(write(fd, "x", 1), 1); /* all zeros would be an empty tar */
		assert_int_equal(ftruncate(fd, (off_t)ARCHIVE_MAX_TOTAL + 1), 0); /* sparse */
		close(fd);
	}
	snprintf(path, sizeof(path), "%s/big", t->dir);
	expect_path_error(path, -E2BIG, "huge: code exceeds 64 MiB");
	snprintf(path, sizeof(path), "%s/big/huge", t->dir);
	expect_path_error(path, -E2BIG, "code exceeds 64 MiB");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tar_basic),
		cmocka_unit_test(test_sorted_and_deterministic),
		cmocka_unit_test(test_implicit_parents),
		cmocka_unit_test(test_extracts),
		cmocka_unit_test(test_traversal),
		cmocka_unit_test(test_bad_paths),
		cmocka_unit_test(test_duplicates),
		cmocka_unit_test(test_symlinks_inside),
		cmocka_unit_test(test_symlinks_bad),
		cmocka_unit_test(test_hardlinks),
		cmocka_unit_test(test_special_files),
		cmocka_unit_test(test_huge_claimed_size),
		cmocka_unit_test(test_too_much_data),
		cmocka_unit_test(test_entry_limit),
		cmocka_unit_test(test_zip_and_compressed),
		cmocka_unit_test(test_not_an_archive),
		cmocka_unit_test(test_empty_tar),
		cmocka_unit_test_setup_teardown(test_path_directory, tree_setup, tree_teardown),
		cmocka_unit_test_setup_teardown(test_path_directory_bad, tree_setup, tree_teardown),
		cmocka_unit_test_setup_teardown(test_path_files, tree_setup, tree_teardown),
		cmocka_unit_test_setup_teardown(test_path_limits, tree_setup, tree_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
