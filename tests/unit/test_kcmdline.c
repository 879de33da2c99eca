/* test_kcmdline.c - the guest kernel command line kiln-vmm assembles. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "vmm/kcmdline.h"

#include <stdlib.h>
#include <string.h>

static void test_base_only(void **state)
{
	char *s = kcmdline_build(NULL, false, 1);

	(void)state;
	assert_string_equal(s, KCMDLINE_BASE);
	free(s);
	s = kcmdline_build("   ", false, 1);
	assert_string_equal(s, KCMDLINE_BASE);
	free(s);
}

static void test_compat_before_user_and_init_args(void **state)
{
	char *s = kcmdline_build("quiet -- sh -c \"exit 7\"", true, 1);
	const char *dashes, *compat;

	(void)state;
	assert_non_null(s);
	dashes = strstr(s, " -- ");
	compat = strstr(s, "kiln_syscall_fixup=1");
	assert_non_null(dashes);
	assert_non_null(compat);
	assert_true(compat < dashes);
	assert_true(strncmp(s, KCMDLINE_BASE, strlen(KCMDLINE_BASE)) == 0);
	assert_non_null(strstr(s, "-- sh -c \"exit 7\""));
	free(s);
}

static void test_user_starting_with_dashes(void **state)
{
	char *s = kcmdline_build("-- true", false, 4);

	(void)state;
	assert_string_equal(s, KCMDLINE_BASE " -- true");
	free(s);
}

static void test_smp_on_nested_host(void **state)
{
	char *s = kcmdline_build("-- true", true, 2);
	char *one = kcmdline_build("-- true", true, 1);

	(void)state;
	assert_non_null(strstr(s, KCMDLINE_COMPAT_SMP));
	assert_true(strstr(s, KCMDLINE_COMPAT_SMP) < strstr(s, " -- "));
	assert_null(strstr(one, KCMDLINE_COMPAT_SMP));
	free(s);
	free(one);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_base_only),
		cmocka_unit_test(test_compat_before_user_and_init_args),
		cmocka_unit_test(test_user_starting_with_dashes),
		cmocka_unit_test(test_smp_on_nested_host),
	};

	return cmocka_run_group_tests_name("kcmdline", tests, NULL, NULL);
}
