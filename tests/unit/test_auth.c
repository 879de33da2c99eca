/* Unit tests for daemon/auth: the constant-time compare, token files and
 * bearer checks. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon/auth.h"

#define MANAGE "m-0123456789abcdef0123"
#define INVOKE "i-0123456789abcdef0123"

static char dir[64];

static int make_dir(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/kiln-auth-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int remove_dir(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* Writes text to dir/name with mode; returns the path (static buffer). */
static const char *write_file(const char *name, const char *text, mode_t mode)
{
	static char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	unlink(path);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	assert_int_equal(chmod(path, mode), 0);
	return path;
}

static void test_equal(void **state)
{
	(void)state;
	assert_true(auth_equal("secret", 6, "secret", 6));
	assert_false(auth_equal("secret", 6, "secreT", 6));
	assert_false(auth_equal("secret", 6, "secret!", 7));
	assert_false(auth_equal("secret", 6, "", 0));
	assert_true(auth_equal("", 0, "", 0));
	/* Embedded NULs count: lengths, not C strings. */
	assert_false(auth_equal("a\0b", 3, "a\0c", 3));
	assert_true(auth_equal("a\0b", 3, "a\0b", 3));
}

static void test_buffer(void **state)
{
	struct auth *a = auth_create();
	char err[256];

	(void)state;
	assert_non_null(a);
	assert_false(auth_enabled(a));
	assert_int_equal(auth_check(a, AUTH_SCOPE_MANAGE, NULL), AUTH_OK);
	/* Comments, blank lines, CRLF and spaces around tokens. */
	assert_int_equal(auth_load_buffer(a, AUTH_SCOPE_MANAGE,
					  "# kilnd tokens\n\n  " MANAGE
					  " \r\nold-token-0123456789\n",
					  strlen("# kilnd tokens\n\n  " MANAGE
						 " \r\nold-token-0123456789\n"),
					  "t", err, sizeof(err)),
			 0);
	assert_true(auth_enabled(a));
	assert_true(auth_has_manage(a));
	assert_int_equal(auth_check(a, AUTH_SCOPE_MANAGE, "Bearer " MANAGE), AUTH_OK);
	assert_int_equal(auth_check(a, AUTH_SCOPE_MANAGE, "Bearer old-token-0123456789"), AUTH_OK);
	auth_destroy(a);
	auth_destroy(NULL);
}

static void test_buffer_refused(void **state)
{
	struct auth *a = auth_create();
	char err[256];

	(void)state;
	assert_int_equal(auth_load_buffer(a, AUTH_SCOPE_MANAGE, "", 0, "t", err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "no token"));
	assert_int_equal(
		auth_load_buffer(a, AUTH_SCOPE_MANAGE, "# only\n\n", 8, "t", err, sizeof(err)),
		-EINVAL);
	assert_int_equal(
		auth_load_buffer(a, AUTH_SCOPE_MANAGE, "short\n", 6, "t", err, sizeof(err)),
		-EINVAL);
	assert_non_null(strstr(err, "t:1: a token must be 16"));
	assert_int_equal(auth_load_buffer(a, AUTH_SCOPE_MANAGE, "0123456789 abcdef\n", 18, "t", err,
					  sizeof(err)),
			 -EINVAL);
	assert_int_equal(auth_load_buffer(a, AUTH_SCOPE_MANAGE, "0123456789\x01xabcdef", 17, "t",
					  err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(
		auth_load_buffer(a, AUTH_SCOPE_OPEN, MANAGE, strlen(MANAGE), "t", err, sizeof(err)),
		-EINVAL);
	assert_false(auth_enabled(a));
	auth_destroy(a);
}

static void test_file_modes(void **state)
{
	struct auth *a = auth_create();
	char err[512];

	(void)state;
	assert_int_equal(auth_load_file(a, AUTH_SCOPE_MANAGE, write_file("open", MANAGE "\n", 0644),
					err, sizeof(err)),
			 -EPERM);
	assert_non_null(strstr(err, "mode 0644"));
	assert_int_equal(auth_load_file(a, AUTH_SCOPE_MANAGE, write_file("grp", MANAGE "\n", 0640),
					err, sizeof(err)),
			 -EPERM);
	assert_int_equal(auth_load_file(a, AUTH_SCOPE_MANAGE, write_file("gw", MANAGE "\n", 0620),
					err, sizeof(err)),
			 -EPERM);
	assert_false(auth_enabled(a));
	assert_int_equal(auth_load_file(a, AUTH_SCOPE_MANAGE, dir, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not a regular file"));
	assert_int_equal(
		auth_load_file(a, AUTH_SCOPE_MANAGE, "/nonexistent/kiln-token", err, sizeof(err)),
		-ENOENT);
	assert_int_equal(auth_load_file(a, AUTH_SCOPE_MANAGE, write_file("ok", MANAGE "\n", 0600),
					err, sizeof(err)),
			 0);
	assert_int_equal(auth_load_file(a, AUTH_SCOPE_INVOKE, write_file("ro", INVOKE, 0400), err,
					sizeof(err)),
			 0);
	assert_int_equal(auth_check(a, AUTH_SCOPE_MANAGE, "Bearer " MANAGE), AUTH_OK);
	assert_int_equal(auth_check(a, AUTH_SCOPE_INVOKE, "Bearer " INVOKE), AUTH_OK);
	auth_destroy(a);
}

static void test_file_too_large(void **state)
{
	struct auth *a = auth_create();
	char *big = malloc(AUTH_FILE_MAX + 100), err[512];

	(void)state;
	memset(big, 'x', AUTH_FILE_MAX + 99);
	big[AUTH_FILE_MAX + 99] = 0;
	assert_int_equal(auth_load_file(a, AUTH_SCOPE_MANAGE, write_file("big", big, 0600), err,
					sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "larger than"));
	free(big);
	auth_destroy(a);
}

static void test_check(void **state)
{
	struct auth *a = auth_create();
	char err[256];

	(void)state;
	assert_int_equal(auth_load_buffer(a, AUTH_SCOPE_MANAGE, MANAGE, strlen(MANAGE), "m", err,
					  sizeof(err)),
			 0);
	assert_int_equal(auth_load_buffer(a, AUTH_SCOPE_INVOKE, INVOKE, strlen(INVOKE), "i", err,
					  sizeof(err)),
			 0);
	/* Open routes never need a token. */
	assert_int_equal(auth_check(a, AUTH_SCOPE_OPEN, NULL), AUTH_OK);
	/* Missing or not a bearer token. */
	assert_int_equal(auth_check(a, AUTH_SCOPE_MANAGE, NULL), AUTH_MISSING);
	assert_int_equal(auth_check(a, AUTH_SCOPE_INVOKE, ""), AUTH_MISSING);
	assert_int_equal(auth_check(a, AUTH_SCOPE_INVOKE, "Basic dXNlcjpwYXNz"), AUTH_MISSING);
	assert_int_equal(auth_check(a, AUTH_SCOPE_INVOKE, "Bearer"), AUTH_MISSING);
	assert_int_equal(auth_check(a, AUTH_SCOPE_INVOKE, "Bearer   "), AUTH_MISSING);
	assert_int_equal(auth_check(a, AUTH_SCOPE_INVOKE, "Bearer" MANAGE), AUTH_MISSING);
	/* The scheme is case-insensitive; extra blanks are fine. */
	assert_int_equal(auth_check(a, AUTH_SCOPE_MANAGE, "bearer  " MANAGE " "), AUTH_OK);
	/* Wrong tokens: a prefix, a longer one, another case. */
	assert_int_equal(auth_check(a, AUTH_SCOPE_MANAGE, "Bearer m-0123456789abcdef012"),
			 AUTH_BAD_TOKEN);
	assert_int_equal(auth_check(a, AUTH_SCOPE_MANAGE, "Bearer " MANAGE "4"), AUTH_BAD_TOKEN);
	assert_int_equal(auth_check(a, AUTH_SCOPE_MANAGE, "Bearer M-0123456789ABCDEF0123"),
			 AUTH_BAD_TOKEN);
	/* Scopes: the manage token does everything, the invoke token invokes. */
	assert_int_equal(auth_check(a, AUTH_SCOPE_INVOKE, "Bearer " MANAGE), AUTH_OK);
	assert_int_equal(auth_check(a, AUTH_SCOPE_INVOKE, "Bearer " INVOKE), AUTH_OK);
	assert_int_equal(auth_check(a, AUTH_SCOPE_MANAGE, "Bearer " INVOKE), AUTH_WRONG_SCOPE);
	auth_destroy(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_equal),	       cmocka_unit_test(test_buffer),
		cmocka_unit_test(test_buffer_refused), cmocka_unit_test(test_file_modes),
		cmocka_unit_test(test_file_too_large), cmocka_unit_test(test_check),
	};
	return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
