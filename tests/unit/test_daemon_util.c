/* Unit tests for daemon/util: header context keys, read/write all, times. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon/util.h"

static void test_header_key(void **state)
{
	char key[32];

	(void)state;
	assert_string_equal(util_header_key(key, sizeof(key), "Content-Type"),
			    "http_header_content_type");
	assert_string_equal(util_header_key(key, sizeof(key), "X-AMZ-Date"),
			    "http_header_x_amz_date");
	assert_string_equal(util_header_key(key, sizeof(key), ""), "http_header_");
	/* Cut to fit, always terminated. */
	assert_string_equal(util_header_key(key, sizeof(key), "A-Very-Long-Header-Name-Indeed"),
			    "http_header_a_very_long_header_");
	assert_int_equal(strlen(key), sizeof(key) - 1);
	/* A buffer smaller than the prefix. */
	assert_string_equal(util_header_key(key, 5, "x"), "http");
}

static void test_read_write_all(void **state)
{
	int p[2];
	char out[6] = "";

	(void)state;
	assert_int_equal(pipe(p), 0);
	assert_int_equal(util_write_all(p[1], "hello!", 6), 0);
	assert_int_equal(util_read_all(p[0], out, 3), 0);
	assert_int_equal(util_read_all(p[0], out + 3, 3), 0);
	assert_memory_equal(out, "hello!", 6);
	assert_int_equal(util_write_all(p[1], "ab", 2), 0);
	close(p[1]);
	/* Two bytes, then the end: not the four asked for. */
	assert_int_equal(util_read_all(p[0], out, 4), -EPIPE);
	close(p[0]);
	assert_int_equal(util_read_all(p[0], out, 1), -EBADF);
}

static void test_rfc3339(void **state)
{
	char out[32];

	(void)state;
	util_rfc3339(1700000000123456789LL, out);
	assert_string_equal(out, "2023-11-14T22:13:20.123456Z");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_key),
		cmocka_unit_test(test_read_write_all),
		cmocka_unit_test(test_rfc3339),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
