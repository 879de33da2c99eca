/* test_argv.c - shell-like splitting and kernel command-line lookups. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/argv.h"

/* Splits s, checks it gives exactly the n words in want. */
static void check_split(const char *s, const char *const *want, int n)
{
	char **argv = NULL;
	int argc = -1;

	assert_int_equal(argv_split(s, &argv, &argc), 0);
	assert_non_null(argv);
	assert_int_equal(argc, n);
	for (int i = 0; i < n; i++)
		assert_string_equal(argv[i], want[i]);
	assert_null(argv[n]);
	argv_free(argv);
}

static void check_split_fails(const char *s, int err)
{
	char **argv = (char **)(uintptr_t)0x1;
	int argc = -1;

	assert_int_equal(argv_split(s, &argv, &argc), err);
	/* Outputs untouched on failure. */
	assert_ptr_equal(argv, (char **)(uintptr_t)0x1);
	assert_int_equal(argc, -1);
}

static void test_split_plain(void **state)
{
	(void)state;
	const char *const w[] = {"echo", "hello", "world"};

	check_split("echo hello world", w, 3);
	check_split("  \techo\n hello   world \n", w, 3);
}

static void test_split_empty_input(void **state)
{
	(void)state;
	check_split("", NULL, 0);
	check_split("   \t\n ", NULL, 0);
}

static void test_split_quotes(void **state)
{
	(void)state;
	const char *const w1[] = {"sh", "-c", "uname -a; exit 7"};
	const char *const w2[] = {"a b", "c'd", "e\"f"};
	const char *const w3[] = {"abc", "x y z"};
	const char *const w4[] = {"$HOME", "a*b", "1;2|3&"};

	check_split("sh -c 'uname -a; exit 7'", w1, 3);
	check_split("\"a b\" \"c'd\" 'e\"f'", w2, 3);
	/* Adjacent quoted and unquoted parts join into one word. */
	check_split("a\"b\"'c' x' 'y\" z\"", w3, 2);
	/* No expansion, no operators. */
	check_split("$HOME a*b 1;2|3&", w4, 3);
}

static void test_split_empty_words(void **state)
{
	(void)state;
	const char *const w1[] = {""};
	const char *const w2[] = {"a", "", "b", ""};

	check_split("\"\"", w1, 1);
	check_split("''", w1, 1);
	check_split("a '' b \"\"", w2, 4);
}

static void test_split_escapes(void **state)
{
	(void)state;
	const char *const w1[] = {"a b", "c'd", "\\", "x"};
	/* In double quotes only \" \\ \$ \` lose the backslash. */
	const char *const w2[] = {"q\"\\$`\\n"};
	/* In single quotes a backslash is literal. */
	const char *const w3[] = {"a\\b"};
	/* Backslash-newline is a line continuation. */
	const char *const w4[] = {"ab", "c"};

	check_split("a\\ b c\\'d \\\\ \\x", w1, 4);
	check_split("\"q\\\"\\\\\\$\\`\\n\"", w2, 1);
	check_split("'a\\b'", w3, 1);
	check_split("a\\\nb \\\n c", w4, 2);
}

static void test_split_unterminated(void **state)
{
	(void)state;
	check_split_fails("echo 'abc", -EINVAL);
	check_split_fails("echo \"abc", -EINVAL);
	check_split_fails("echo \"abc\\\"", -EINVAL);
	check_split_fails("echo abc\\", -EINVAL);
	check_split_fails("'", -EINVAL);
}

static void test_split_limits(void **state)
{
	(void)state;
	char *s;
	char **argv = NULL;
	int argc = 0;

	/* Exactly ARGV_MAX_ARGS one-letter words fit; one more does not. */
	s = malloc(2 * (ARGV_MAX_ARGS + 1) + 1);
	assert_non_null(s);
	for (int i = 0; i < ARGV_MAX_ARGS; i++)
		memcpy(s + 2 * i, "x ", 2);
	s[2 * ARGV_MAX_ARGS] = '\0';
	assert_int_equal(argv_split(s, &argv, &argc), 0);
	assert_int_equal(argc, ARGV_MAX_ARGS);
	argv_free(argv);
	strcat(s, "y");
	check_split_fails(s, -E2BIG);
	free(s);

	/* One word of ARGV_MAX_BYTES - 1 characters (plus its NUL) fits. */
	s = malloc(ARGV_MAX_BYTES + 2);
	assert_non_null(s);
	memset(s, 'a', ARGV_MAX_BYTES - 1);
	s[ARGV_MAX_BYTES - 1] = '\0';
	assert_int_equal(argv_split(s, &argv, &argc), 0);
	assert_int_equal(argc, 1);
	assert_int_equal(strlen(argv[0]), ARGV_MAX_BYTES - 1);
	argv_free(argv);
	s[ARGV_MAX_BYTES - 1] = 'a';
	s[ARGV_MAX_BYTES] = '\0';
	check_split_fails(s, -E2BIG);
	free(s);
}

static void test_split_bad_args(void **state)
{
	(void)state;
	char **argv = NULL;
	int argc = 0;

	assert_int_equal(argv_split(NULL, &argv, &argc), -EINVAL);
	assert_int_equal(argv_split("a", NULL, &argc), -EINVAL);
	assert_int_equal(argv_split("a", &argv, NULL), -EINVAL);
	argv_free(NULL);
}

static void test_find_command(void **state)
{
	(void)state;
	const char *c;

	c = argv_find_command("console=ttyS0 reboot=k -- sh -c 'exit 7'\n");
	assert_non_null(c);
	assert_string_equal(c, "sh -c 'exit 7'\n");

	/* Only the first separator counts; the rest belongs to the command. */
	c = argv_find_command("a -- echo -- b");
	assert_non_null(c);
	assert_string_equal(c, "echo -- b");

	/* At the very start, and after tabs. */
	c = argv_find_command("--\tls");
	assert_non_null(c);
	assert_string_equal(c, "ls");
}

static void test_find_command_none(void **state)
{
	(void)state;
	assert_null(argv_find_command("console=ttyS0 reboot=k"));
	assert_null(argv_find_command(""));
	assert_null(argv_find_command(NULL));
	/* A separator with nothing after it. */
	assert_null(argv_find_command("console=ttyS0 --"));
	assert_null(argv_find_command("console=ttyS0 -- \n"));
	/* Not standalone. */
	assert_null(argv_find_command("a --b c-- ---"));
	/* Inside a double-quoted parameter value (the kernel groups it). */
	assert_null(argv_find_command("foo=\"a -- b\" bar"));
}

static void test_find_command_after_quoted(void **state)
{
	(void)state;
	const char *c = argv_find_command("foo=\"a -- b\" -- echo hi");

	assert_non_null(c);
	assert_string_equal(c, "echo hi");
}

static void test_get_param(void **state)
{
	(void)state;
	char v[32];

	assert_int_equal(
		argv_get_param("console=ttyS0 kiln.ctl=0xd0000000 -- sh", "kiln.ctl", v, sizeof(v)),
		0);
	assert_string_equal(v, "0xd0000000");
	assert_int_equal(argv_get_param("kiln.ctl=0xd0000000\n", "kiln.ctl", v, sizeof(v)), 0);
	assert_string_equal(v, "0xd0000000");

	/* Last one wins; quotes stripped; empty value. */
	assert_int_equal(argv_get_param("k=1 k=2", "k", v, sizeof(v)), 0);
	assert_string_equal(v, "2");
	assert_int_equal(argv_get_param("k=\"a b\" x", "k", v, sizeof(v)), 0);
	assert_string_equal(v, "a b");
	assert_int_equal(argv_get_param("\"k=c d\"", "k", v, sizeof(v)), 0);
	assert_string_equal(v, "c d");
	assert_int_equal(argv_get_param("k=", "k", v, sizeof(v)), 0);
	assert_string_equal(v, "");
}

static void test_get_param_absent(void **state)
{
	(void)state;
	char v[8];

	/* After "--" it is the command's, not a kernel parameter. */
	assert_int_equal(
		argv_get_param("console=ttyS0 -- kiln.ctl=0xd0000000", "kiln.ctl", v, sizeof(v)),
		-ENOENT);
	/* Prefixes and suffixes of the key do not match; a bare key has no value. */
	assert_int_equal(
		argv_get_param("xkiln.ctl=1 kiln.ctlx=2 kiln.ctl", "kiln.ctl", v, sizeof(v)),
		-ENOENT);
	assert_int_equal(argv_get_param("", "k", v, sizeof(v)), -ENOENT);
	/* Too long for the buffer; bad arguments. */
	assert_int_equal(argv_get_param("k=12345678", "k", v, sizeof(v)), -ENOSPC);
	assert_int_equal(argv_get_param("k=1234567", "k", v, sizeof(v)), 0);
	assert_int_equal(argv_get_param("=1", "", v, sizeof(v)), -EINVAL);
	assert_int_equal(argv_get_param("k=1", "k", v, 0), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split_plain),
		cmocka_unit_test(test_split_empty_input),
		cmocka_unit_test(test_split_quotes),
		cmocka_unit_test(test_split_empty_words),
		cmocka_unit_test(test_split_escapes),
		cmocka_unit_test(test_split_unterminated),
		cmocka_unit_test(test_split_limits),
		cmocka_unit_test(test_split_bad_args),
		cmocka_unit_test(test_find_command),
		cmocka_unit_test(test_find_command_none),
		cmocka_unit_test(test_find_command_after_quoted),
		cmocka_unit_test(test_get_param),
		cmocka_unit_test(test_get_param_absent),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
