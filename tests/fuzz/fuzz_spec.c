/* fuzz_spec - a deploy body as kilnd reads it: JSON (jansson) into a
 * function spec (daemon/spec.c spec_from_json). An accepted spec is written
 * back (spec_to_json), read again, and must describe the same image. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "daemon/spec.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fn_spec a, b;

	char err[512], *text;
	json_t *obj, *again;
	int rc;

	obj = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
	if (!obj)
		return 0;
	err[0] = 0;
	rc = spec_from_json(obj, &a, err, sizeof(err));
	FUZZ_ASSERT(memchr(err, 0, sizeof(err)));
	json_decref(obj);
	if (rc) {
		FUZZ_ASSERT(rc == -EINVAL || rc == -ENOMEM);
		return 0;
	}
	FUZZ_ASSERT(spec_name_ok(a.name));
	again = spec_to_json(&a);
	FUZZ_ASSERT(again);
	text = json_dumps(again, JSON_COMPACT);
	json_decref(again);
	FUZZ_ASSERT(text);
	rc = spec_from_text(text, &b, err, sizeof(err));
	if (rc)
		fprintf(stderr, "spec written back is refused: %s\n%s\n", err, text);
	FUZZ_ASSERT(rc == 0);
	FUZZ_ASSERT(spec_same_image(&a, &b));
	spec_clear(&b);
	if (spec_copy(&b, &a) == 0) {
		FUZZ_ASSERT(spec_same_image(&a, &b));
		spec_clear(&b);
	}
	free(text);
	spec_clear(&a);
	return 0;
}
