/* test_cli_table.c - aligned tables, terminal-safe text and the progress
 * line's text (cli/table.c, cli/output.c, cli/progress.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli/output.h"
#include "cli/progress.h"
#include "cli/table.h"

static void test_table_alignment(void **state)
{
	(void)state;
	static const char *const h[] = {"NAME", "STATUS", "VERSION", "MEMORY"};
	static const char *const r1[] = {"echo", "ready", "3", "128Mi"};
	static const char *const r2[] = {"a-much-longer-name", "deploying", "12", "1024Mi"};
	struct table *t = table_create(4, h);
	char *out;

	assert_non_null(t);
	assert_int_equal(table_align_right(t, 2), 0);
	assert_int_equal(table_align_right(t, 4), -EINVAL);
	assert_int_equal(table_add_row(t, r1), 0);
	assert_int_equal(table_add_row(t, r2), 0);
	assert_int_equal(table_rows(t), 2);
	out = table_render(t);
	assert_non_null(out);
	assert_string_equal(out, "NAME                 STATUS      VERSION   MEMORY\n"
				 "echo                 ready             3   128Mi\n"
				 "a-much-longer-name   deploying        12   1024Mi\n");
	free(out);
	table_destroy(t);
	table_destroy(NULL);
}

static void test_table_cells(void **state)
{
	(void)state;
	static const char *const h[] = {"A", "B", "C"};
	/* NULL prints "-", control characters become '?', UTF-8 counts as one
	 * column per code point, an empty last cell leaves no trailing blanks. */
	const char *r1[] = {NULL, "x\033[31my", ""};
	const char *r2[] = {"\xc3\xa9t\xc3\xa9", "tab\there", "z"};
	struct table *t = table_create(3, h);
	char *out;

	assert_non_null(t);
	assert_int_equal(table_add_row(t, r1), 0);
	assert_int_equal(table_add_row(t, r2), 0);
	out = table_render(t);
	assert_string_equal(out, "A     B          C\n"
				 "-     x?[31my\n"
				 "\xc3\xa9t\xc3\xa9   tab here   z\n");
	free(out);
	table_destroy(t);
	assert_null(table_create(0, h));
	assert_null(table_create(33, h));
}

static void test_table_header_only(void **state)
{
	(void)state;
	static const char *const h[] = {"NAME", "STATUS"};
	struct table *t = table_create(2, h);
	char *out = table_render(t);

	assert_string_equal(out, "NAME   STATUS\n");
	assert_int_equal(table_rows(t), 0);
	free(out);
	table_destroy(t);
}

static void check_sanitize(const char *in, size_t len, int flags, const char *want)
{
	char *s = out_sanitize(in, len, flags);

	assert_non_null(s);
	assert_string_equal(s, want);
	free(s);
}

static void test_sanitize(void **state)
{
	(void)state;
	check_sanitize("plain", 5, 0, "plain");
	check_sanitize("a\nb\tc", 5, 0, "a b c");
	check_sanitize("a\nb\tc", 5, OUT_KEEP_NEWLINES | OUT_KEEP_TABS, "a\nb\tc");
	check_sanitize("\033]0;title\007", 10, 0, "?]0;title?");
	check_sanitize("nul\0x", 5, 0, "nul?x");
	check_sanitize("\x7f", 1, 0, "?");
	check_sanitize("\xc2\x9b"
		       "31m",
		       5, 0, "?31m");			      /* C1 CSI */
	check_sanitize("\xff\xfe", 2, 0, "??");		      /* not UTF-8 */
	check_sanitize("\xc3", 1, 0, "?");		      /* truncated sequence */
	check_sanitize("\xe2\x82\xac", 3, 0, "\xe2\x82\xac"); /* euro sign kept */
	check_sanitize("\xed\xa0\x80", 3, 0, "???");	      /* surrogate */
	check_sanitize("\xc0\xaf", 2, 0, "??");		      /* overlong */
	check_sanitize("\r", 1, 0, "?");
	assert_int_equal(out_width("\xc3\xa9t\xc3\xa9"), 3);
	assert_int_equal(out_width(""), 0);
}

static void test_progress_format(void **state)
{
	(void)state;
	char b[128];

	progress_format(b, sizeof(b), "deploying echo", "loading", 3249, '\0', 0);
	assert_string_equal(b, "deploying echo: loading (3.2s)");
	progress_format(b, sizeof(b), "deploying echo", "base-snapshot", 125000, '|', 0);
	assert_string_equal(b, "| deploying echo: base-snapshot (2m05s)");
	/* Cut to the terminal's width, counting code points. */
	progress_format(b, sizeof(b), "d\xc3\xa9ploying", "restoring", 0, '/', 8);
	assert_string_equal(b, "/ d\xc3\xa9ploy");
	assert_int_equal(progress_format(b, 8, "deploying echo", "queued", 0, '\0', 0), 29);
	assert_string_equal(b, "deployi");
	assert_int_equal(strlen(b), 7);
}

static void test_progress_plain(void **state)
{
	(void)state;
	char *buf = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&buf, &size);
	struct progress *p;

	assert_non_null(f);
	p = progress_create(f, false, "deploying echo");
	assert_non_null(p);
	/* Not a terminal: one line per stage change. */
	progress_update(p, "queued");
	progress_update(p, "queued");
	progress_update(p, "loading");
	progress_update(p, "loading");
	progress_finish(p, "ready");
	progress_destroy(p);
	progress_destroy(NULL);
	fclose(f);
	assert_string_equal(buf, "deploying echo: queued (0.0s)\n"
				 "deploying echo: loading (0.0s)\n"
				 "deploying echo: ready (0.0s)\n");
	free(buf);
}

static void test_progress_tty(void **state)
{
	(void)state;
	char *buf = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&buf, &size);
	struct progress *p = progress_create(f, true, "deploying echo");

	/* A terminal: every update redraws the line in place. */
	progress_update(p, "queued");
	progress_update(p, "queued");
	progress_finish(p, "ready");
	progress_destroy(p);
	fclose(f);
	assert_string_equal(buf, "\r| deploying echo: queued (0.0s)\033[K"
				 "\r/ deploying echo: queued (0.0s)\033[K"
				 "\rdeploying echo: ready (0.0s)\033[K\n");
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table_alignment),	  cmocka_unit_test(test_table_cells),
		cmocka_unit_test(test_table_header_only), cmocka_unit_test(test_sanitize),
		cmocka_unit_test(test_progress_format),	  cmocka_unit_test(test_progress_plain),
		cmocka_unit_test(test_progress_tty),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
