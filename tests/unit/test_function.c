/* test_function.c - the pure helpers of kiln-init's function module
 * (src/agent/function_internal.h), built with the agent's sources: the
 * stderr tail kept for error messages, and the name checks of LOAD; and
 * kiln-init's task limit (src/agent/tasklimit.c, built with the same
 * sources) against a file standing in for /proc/sys/kernel/threads-max. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "agent/function_internal.h"
#include "agent/tasklimit.h"

static struct proto_bytes view(const char *s)
{
	return (struct proto_bytes){(const uint8_t *)s, (uint32_t)strlen(s)};
}

static void tail_add_str(struct fn_tail *t, const char *s)
{
	fn_tail_add(t, (const uint8_t *)s, strlen(s));
}

static void test_tail_last_line(void **state)
{
	struct fn_tail t = {0};
	char out[128];

	(void)state;
	tail_add_str(&t, "Traceback (most recent call last):\n  File \"x\"\n");
	tail_add_str(&t, "ValueError: bad input \r\n\n  \t");
	fn_tail_message(&t, false, out, sizeof(out));
	assert_string_equal(out, "ValueError: bad input");
	fn_tail_message(&t, true, out, sizeof(out));
	assert_string_equal(out, "Traceback (most recent call last):\n  File \"x\"\n"
				 "ValueError: bad input");
}

static void test_tail_empty_and_blank(void **state)
{
	struct fn_tail t = {0};
	char out[16] = "junk";

	(void)state;
	fn_tail_message(&t, false, out, sizeof(out));
	assert_string_equal(out, "");
	tail_add_str(&t, "\n \n\t\r\n");
	fn_tail_message(&t, true, out, sizeof(out));
	assert_string_equal(out, "");
}

/* The tail keeps the last FN_TAIL_MAX bytes, whether they come in one
 * piece or many; a message is cut to the room given, keeping its end. */
static void test_tail_keeps_the_end(void **state)
{
	static char big[FN_TAIL_MAX * 2 + 1];
	struct fn_tail t = {0};
	char out[8];

	(void)state;
	for (size_t i = 0; i < sizeof(big) - 1; i++)
		big[i] = (char)('a' + i % 26);
	fn_tail_add(&t, (const uint8_t *)big, sizeof(big) - 1);
	assert_int_equal(t.len, FN_TAIL_MAX);
	assert_memory_equal(t.buf, big + FN_TAIL_MAX, FN_TAIL_MAX);
	for (int i = 0; i < 3 * FN_TAIL_MAX / 100; i++)
		tail_add_str(
			&t, "0123456789012345678901234567890123456789012345678901234567890123456789"
			    "012345678901234567890123456789");
	assert_int_equal(t.len, FN_TAIL_MAX);
	assert_memory_equal(t.buf + FN_TAIL_MAX - 10, "0123456789", 10);
	fn_tail_message(&t, false, out, sizeof(out));
	assert_string_equal(out, "3456789");
}

static void test_tail_nul_replaced(void **state)
{
	struct fn_tail t = {0};
	char out[16];

	(void)state;
	fn_tail_add(&t, (const uint8_t *)"a\0b\n", 4);
	fn_tail_message(&t, false, out, sizeof(out));
	assert_string_equal(out, "a?b");
}

static void test_name_ok(void **state)
{
	(void)state;
	assert_true(fn_name_ok(view("python")));
	assert_true(fn_name_ok(view("node-20.x_1")));
	assert_true(fn_name_ok(view("abcdefghijklmnopqrstuvwxyz012345"))); /* 32 */
	assert_false(fn_name_ok(view("abcdefghijklmnopqrstuvwxyz0123456")));
	assert_false(fn_name_ok(view("")));
	assert_false(fn_name_ok(view("Python")));
	assert_false(fn_name_ok(view("../sh")));
	assert_false(fn_name_ok(view("a b")));
}

static void test_env_name_ok(void **state)
{
	(void)state;
	assert_true(fn_env_name_ok(view("PATH")));
	assert_true(fn_env_name_ok(view("_x9")));
	assert_false(fn_env_name_ok(view("")));
	assert_false(fn_env_name_ok(view("9X")));
	assert_false(fn_env_name_ok(view("A=B")));
	assert_false(fn_env_name_ok(view("A-B")));
}

static void sysctl_file(char *path, const char *content)
{
	FILE *fp;
	int fd;

	strcpy(path, "/tmp/kiln-test-threads-max-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(content, fp);
	fclose(fp);
}

static void sysctl_expect(const char *path, const char *want)
{
	char buf[64] = "";
	FILE *fp = fopen(path, "r");
	size_t n;

	assert_non_null(fp);
	n = fread(buf, 1, sizeof(buf) - 1, fp);
	buf[n] = '\0';
	fclose(fp);
	assert_string_equal(buf, want);
}

/* The limit is lowered, never raised; garbage is refused untouched. */
static void test_tasklimit(void **state)
{
	char path[64];

	(void)state;
	sysctl_file(path, "15890\n");
	assert_int_equal(tasklimit_apply(path, 512), 0);
	sysctl_expect(path, "512\n");
	assert_int_equal(tasklimit_apply(path, 4096), 0);
	sysctl_expect(path, "512\n");
	assert_int_equal(tasklimit_apply(path, 0), -EINVAL);
	unlink(path);

	sysctl_file(path, "100\n");
	assert_int_equal(tasklimit_apply(path, 512), 0);
	sysctl_expect(path, "100\n");
	unlink(path);

	sysctl_file(path, "12x\n");
	assert_int_equal(tasklimit_apply(path, 512), -EINVAL);
	sysctl_expect(path, "12x\n");
	unlink(path);

	sysctl_file(path, "");
	assert_int_equal(tasklimit_apply(path, 512), -EIO);
	unlink(path);
	assert_int_equal(tasklimit_apply(path, 512), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tail_last_line),
		cmocka_unit_test(test_tail_empty_and_blank),
		cmocka_unit_test(test_tail_keeps_the_end),
		cmocka_unit_test(test_tail_nul_replaced),
		cmocka_unit_test(test_name_ok),
		cmocka_unit_test(test_env_name_ok),
		cmocka_unit_test(test_tasklimit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
