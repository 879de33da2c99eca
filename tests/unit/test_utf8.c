/* Unit tests for common/utf8: strict decoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/utf8.h"

static void decode(const char *s, size_t want_len, uint32_t want_cp)
{
	uint32_t cp = 0xffffffff;

	assert_int_equal(utf8_decode(s, strlen(s) ? strlen(s) : 1, &cp), want_len);
	if (want_len)
		assert_int_equal(cp, want_cp);
}

static void test_valid(void **state)
{
	(void)state;
	decode("A", 1, 'A');
	decode("", 1, 0); /* NUL is a valid one-byte sequence */
	decode("\xc3\xa9", 2, 0xe9);
	decode("\xe2\x82\xac", 3, 0x20ac);
	decode("\xf0\x9f\x98\x80", 4, 0x1f600);
	decode("\xf4\x8f\xbf\xbf", 4, 0x10ffff);
	assert_int_equal(utf8_decode("\xc3\xa9", 2, NULL), 2);
}

static void test_invalid(void **state)
{
	(void)state;
	decode("\x80", 0, 0);		  /* stray continuation */
	decode("\xc0\xaf", 0, 0);	  /* overlong '/' */
	decode("\xe0\x80\xaf", 0, 0);	  /* overlong */
	decode("\xed\xa0\x80", 0, 0);	  /* surrogate */
	decode("\xf4\x90\x80\x80", 0, 0); /* above U+10FFFF */
	decode("\xf8\x88\x80\x80", 0, 0); /* five-byte form */
	decode("\xc3\x28", 0, 0);	  /* bad continuation */
}

static void test_truncated_never_overreads(void **state)
{
	/* Only n bytes are looked at, whatever follows in memory. */
	(void)state;
	assert_int_equal(utf8_decode("\xe2\x82\xac", 2, NULL), 0);
	assert_int_equal(utf8_decode("\xf0\x9f\x98\x80", 3, NULL), 0);
	assert_int_equal(utf8_decode("\xc3\xa9", 1, NULL), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_truncated_never_overreads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
