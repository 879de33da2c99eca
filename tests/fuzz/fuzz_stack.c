/* fuzz_stack - the stack-file (kiln.yml) parser, cli/stack.c (libyaml
 * underneath). */
#include <errno.h>
#include <string.h>

#include "cli/stack.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct stack *s = NULL;
	char err[512];
	int rc;

	err[0] = 0;
	rc = stack_parse((const char *)data, size, "kiln.yml", "/base", &s, err, sizeof(err));
	FUZZ_ASSERT(rc == 0 ? s != NULL : (rc == -EINVAL || rc == -ENOMEM));
	FUZZ_ASSERT(memchr(err, 0, sizeof(err)));
	stack_destroy(s);
	return 0;
}
