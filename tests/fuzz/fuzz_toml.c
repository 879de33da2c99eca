/* fuzz_toml - the TOML parser (common/toml.c) and the Cloudlet config
 * reader on top of it (cli/cloudlet.c). Every accepted tree is walked: its
 * strings must be NUL-terminated UTF-8 of their own length. */
#include <errno.h>
#include <string.h>

#include "cli/cloudlet.h"
#include "common/toml.h"
#include "common/utf8.h"
#include "fuzz.h"

static void walk(const struct toml_value *t, int depth)
{
	FUZZ_ASSERT(depth <= 65);
	for (size_t i = 0; i < toml_table_size(t); i++) {
		const struct toml_value *v = toml_table_value(t, i);
		const char *k = toml_table_key(t, i), *s;
		int64_t n;
		bool b;

		FUZZ_ASSERT(k && v);
		FUZZ_ASSERT(toml_get(t, k) == v);
		FUZZ_ASSERT(toml_line(v) >= 1);
		toml_type_name(toml_type_of(v));
		switch (toml_type_of(v)) {
		case TOML_TABLE:
			walk(v, depth + 1);
			break;
		case TOML_STRING:
			s = toml_string(v);
			FUZZ_ASSERT(s);
			for (size_t j = 0, len = strlen(s); j < len;) {
				size_t m = utf8_decode(s + j, len - j, NULL);
				FUZZ_ASSERT(m > 0);
				j += m;
			}
			break;
		case TOML_INTEGER:
			FUZZ_ASSERT(toml_integer(v, &n) == 0);
			break;
		case TOML_BOOLEAN:
			FUZZ_ASSERT(toml_boolean(v, &b) == 0);
			break;
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct toml_value *root = NULL;
	struct cloudlet_config *c = NULL;
	struct toml_error terr;
	char err[512];
	int rc;

	rc = toml_parse((const char *)data, size, &root, &terr);
	if (rc == 0) {
		FUZZ_ASSERT(root && toml_type_of(root) == TOML_TABLE);
		walk(root, 0);
		toml_free(root);
	} else {
		FUZZ_ASSERT(rc == -EINVAL || rc == -E2BIG || rc == -ENOMEM);
		FUZZ_ASSERT(memchr(terr.msg, 0, sizeof(terr.msg)));
	}
	err[0] = 0;
	rc = cloudlet_parse((const char *)data, size, "fuzz.toml", &c, err, sizeof(err));
	FUZZ_ASSERT(rc == 0 ? c != NULL : (rc == -EINVAL || rc == -ENOMEM));
	FUZZ_ASSERT(memchr(err, 0, sizeof(err)));
	cloudlet_destroy(c);
	return 0;
}
