/* fuzz_codepack - the code-archive reader: kilnd's codepack.c turns a
 * tar/tar.gz/tar.xz/zip (libarchive) into kiln's own archive; whatever it
 * accepts must then pass common/archive.c's checks, which kiln-init runs
 * before it unpacks. The raw input is also given to archive.c's reader. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/archive.h"
#include "daemon/codepack.h"
#include "fuzz.h"

static void read_all(const void *buf, size_t len)
{
	struct archive_reader r;
	struct archive_entry e;
	int rc;

	if (archive_open(&r, buf, len))
		return;
	while ((rc = archive_next(&r, &e)) == 1)
		;
	FUZZ_ASSERT(rc <= 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *out = NULL;
	size_t out_len = 0;
	uint32_t count;
	char err[512];
	int rc;

	err[0] = 0;
	rc = codepack_from_archive(data, size, &out, &out_len, err, sizeof(err));
	FUZZ_ASSERT(memchr(err, 0, sizeof(err)));
	if (rc == 0) {
		FUZZ_ASSERT(out);
		FUZZ_ASSERT(archive_check(out, out_len, &count) == 0);
		read_all(out, out_len);
		free(out);
	}
	read_all(data, size);
	archive_check(data, size, &count);
	return 0;
}
