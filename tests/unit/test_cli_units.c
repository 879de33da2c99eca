/* test_cli_units.c - durations, memory sizes and integers the CLI reads
 * (cli/units.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cli/units.h"

static void dur_ok(const char *s, int64_t want)
{
	int64_t ms = -1;

	if (units_parse_duration_ms(s, &ms) != 0)
		print_error("%s did not parse\n", s);
	assert_int_equal(units_parse_duration_ms(s, &ms), 0);
	assert_int_equal(ms, want);
}

static void dur_bad(const char *s, int err)
{
	int64_t ms = 1234;

	assert_int_equal(units_parse_duration_ms(s, &ms), err);
	assert_int_equal(ms, 1234);
}

static void test_durations(void **state)
{
	(void)state;
	dur_ok("30s", 30000);
	dur_ok("10m", 600000);
	dur_ok("2h", 7200000);
	dur_ok("500ms", 500);
	dur_ok("1.5s", 1500);
	dur_ok("0.1s", 100);
	dur_ok("1m30s", 90000);
	dur_ok("1h2m3s4ms", 3723004);
	dur_ok("30", 30000);
	dur_ok("0.5", 500);
	dur_ok("0", 0);
	dur_ok("0s", 0);
	dur_ok("0.25m", 15000);
	dur_ok("900s", 900000);
	dur_ok("1.000000000s", 1000);
	dur_bad("", -EINVAL);
	dur_bad("s", -EINVAL);
	dur_bad("10x", -EINVAL);
	dur_bad("-5s", -EINVAL);
	dur_bad("+5s", -EINVAL);
	dur_bad(" 5s", -EINVAL);
	dur_bad("5s ", -EINVAL);
	dur_bad("5 s", -EINVAL);
	dur_bad("1e3", -EINVAL);
	dur_bad("1.", -EINVAL);
	dur_bad(".5s", -EINVAL);
	dur_bad("0.0005s", -EINVAL); /* finer than a millisecond */
	dur_bad("1.5ms", -EINVAL);
	dur_bad("1m30", -EINVAL); /* a bare number only alone */
	dur_bad("5mss", -EINVAL);
	dur_bad("30S", -EINVAL);
	dur_bad("1000000000s", -ERANGE);
	dur_bad("25000h", -ERANGE);
	dur_bad("0.0000000001s", -EINVAL);
	assert_int_equal(units_parse_duration_ms(NULL, &(int64_t){0}), -EINVAL);
}

static void test_memory(void **state)
{
	(void)state;
	int64_t m = -1;

	assert_int_equal(units_parse_memory_mib("128", &m), 0);
	assert_int_equal(m, 128);
	assert_int_equal(units_parse_memory_mib("256M", &m), 0);
	assert_int_equal(m, 256);
	assert_int_equal(units_parse_memory_mib("256Mi", &m), 0);
	assert_int_equal(units_parse_memory_mib("256MiB", &m), 0);
	assert_int_equal(m, 256);
	assert_int_equal(units_parse_memory_mib("1G", &m), 0);
	assert_int_equal(m, 1024);
	assert_int_equal(units_parse_memory_mib("2Gi", &m), 0);
	assert_int_equal(m, 2048);
	assert_int_equal(units_parse_memory_mib("", &m), -EINVAL);
	assert_int_equal(units_parse_memory_mib("M", &m), -EINVAL);
	assert_int_equal(units_parse_memory_mib("128k", &m), -EINVAL);
	assert_int_equal(units_parse_memory_mib("1.5G", &m), -EINVAL);
	assert_int_equal(units_parse_memory_mib("-1", &m), -EINVAL);
	assert_int_equal(units_parse_memory_mib("128 M", &m), -EINVAL);
	assert_int_equal(units_parse_memory_mib("2048G", &m), -ERANGE);
	assert_int_equal(units_parse_memory_mib("99999999999999999999999", &m), -ERANGE);
	assert_int_equal(m, 2048);
}

static void test_ints(void **state)
{
	(void)state;
	int64_t v = -1;

	assert_int_equal(units_parse_int("0", 0, 10, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(units_parse_int("10", 0, 10, &v), 0);
	assert_int_equal(v, 10);
	assert_int_equal(units_parse_int("11", 0, 10, &v), -ERANGE);
	assert_int_equal(units_parse_int("-1", 0, 10, &v), -EINVAL);
	assert_int_equal(units_parse_int("-1", -5, 10, &v), 0);
	assert_int_equal(v, -1);
	assert_int_equal(units_parse_int("-", -5, 10, &v), -EINVAL);
	assert_int_equal(units_parse_int("1x", 0, 10, &v), -EINVAL);
	assert_int_equal(units_parse_int("", 0, 10, &v), -EINVAL);
	assert_int_equal(units_parse_int("99999999999999999999", 0, INT64_MAX, &v), -ERANGE);
}

static void test_format(void **state)
{
	(void)state;
	char b[32];

	units_format_elapsed(0, b, sizeof(b));
	assert_string_equal(b, "0.0s");
	units_format_elapsed(3249, b, sizeof(b));
	assert_string_equal(b, "3.2s");
	units_format_elapsed(59999, b, sizeof(b));
	assert_string_equal(b, "59.9s");
	units_format_elapsed(125000, b, sizeof(b));
	assert_string_equal(b, "2m05s");
	units_format_elapsed(3720000, b, sizeof(b));
	assert_string_equal(b, "1h02m");
	units_format_elapsed(-5, b, sizeof(b));
	assert_string_equal(b, "0.0s");
	units_format_duration(30000, b, sizeof(b));
	assert_string_equal(b, "30s");
	units_format_duration(1500, b, sizeof(b));
	assert_string_equal(b, "1.5s");
	units_format_duration(250, b, sizeof(b));
	assert_string_equal(b, "250ms");
	units_format_duration(600000, b, sizeof(b));
	assert_string_equal(b, "10m");
	units_format_duration(7200000, b, sizeof(b));
	assert_string_equal(b, "2h");
	units_format_duration(90000, b, sizeof(b));
	assert_string_equal(b, "90s");
	units_format_duration(0, b, sizeof(b));
	assert_string_equal(b, "0s");
	/* Round trip. */
	for (int64_t ms = 0; ms < 200000; ms += 137) {
		int64_t back = -1;

		units_format_duration(ms, b, sizeof(b));
		assert_int_equal(units_parse_duration_ms(b, &back), 0);
		assert_int_equal(back, ms);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_memory),
		cmocka_unit_test(test_ints),
		cmocka_unit_test(test_format),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
