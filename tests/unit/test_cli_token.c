/* Unit tests for cli/token: reading the bearer token kiln sends. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli/token.h"

static const char *write_tmp(const char *text)
{
	static char path[64];
	int fd;

	snprintf(path, sizeof(path), "/tmp/kiln-token-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

static void read_ok(const char *text, const char *want)
{
	const char *path = write_tmp(text);
	char err[256], *tok = NULL;

	assert_int_equal(token_read_file(path, &tok, err, sizeof(err)), 0);
	assert_string_equal(tok, want);
	free(tok);
	unlink(path);
}

static void read_bad(const char *text, const char *msg)
{
	const char *path = write_tmp(text);
	char err[256], *tok = NULL;

	assert_int_equal(token_read_file(path, &tok, err, sizeof(err)), -EINVAL);
	assert_null(tok);
	assert_non_null(strstr(err, msg));
	unlink(path);
}

static void test_read(void **state)
{
	(void)state;
	read_ok("abc123\n", "abc123");
	read_ok("  abc123 \r\n", "abc123");
	read_ok("# kilnd token\n\nfirst\nsecond\n", "first");
	read_ok("no-newline", "no-newline");
	read_bad("", "no token");
	read_bad("# only a comment\n", "no token");
	read_bad("two words\n", "printable ASCII");
	read_bad("tab\there\n", "printable ASCII");
}

static void test_missing(void **state)
{
	char err[256], *tok = NULL;

	(void)state;
	assert_int_equal(token_read_file("/nonexistent/kiln", &tok, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/kiln"));
}

static void test_check(void **state)
{
	(void)state;
	assert_int_equal(token_check("abc"), 0);
	assert_int_equal(token_check(""), -EINVAL);
	assert_int_equal(token_check("a b"), -EINVAL);
	assert_int_equal(token_check("a\r\nX-Injected: 1"), -EINVAL);
	assert_int_equal(token_check("caf\xc3\xa9"), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_read),
		cmocka_unit_test(test_missing),
		cmocka_unit_test(test_check),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
