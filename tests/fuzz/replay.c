/* replay.c - runs a fuzz target (fuzz.h) over files without libFuzzer:
 * `replay_NAME DIR|FILE...` feeds each file (a directory: each regular file
 * in it, in name order) to LLVMFuzzerTestOneInput once. A crash is the
 * failure; the exit status is 0 after every file ran, 2 for a file that
 * cannot be read. Built with the normal compiler for `make unit-test`. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

/* Reads path whole into a malloc'd buffer of exactly its size (so that an
 * over-read is caught by ASan in the asan build). Returns 0 or -errno. */
static int read_all(const char *path, uint8_t **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	long size;
	int rc = 0;

	if (!f)
		return -errno;
	if (fseek(f, 0, SEEK_END) || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
		rc = -EIO;
		goto out_close;
	}
	buf = malloc(size ? (size_t)size : 1);
	if (!buf) {
		rc = -ENOMEM;
		goto out_close;
	}
	if (size && fread(buf, 1, (size_t)size, f) != (size_t)size) {
		free(buf);
		rc = -EIO;
		goto out_close;
	}
	*out = buf;
	*len = (size_t)size;
out_close:
	fclose(f);
	return rc;
}

static int run_file(const char *path, unsigned *count)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int rc = read_all(path, &buf, &len);

	if (rc) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(-rc));
		return rc;
	}
	LLVMFuzzerTestOneInput(buf, len);
	free(buf);
	(*count)++;
	return 0;
}

static int filter(const struct dirent *d)
{
	return d->d_name[0] != '.';
}

int main(int argc, char **argv)
{
	unsigned count = 0;
	int status = 0;

	for (int i = 1; i < argc; i++) {
		struct dirent **names;
		struct stat st;
		int n;

		if (stat(argv[i], &st)) {
			fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
			status = 2;
			continue;
		}
		if (!S_ISDIR(st.st_mode)) {
			if (run_file(argv[i], &count))
				status = 2;
			continue;
		}
		n = scandir(argv[i], &names, filter, alphasort);
		if (n < 0) {
			fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
			status = 2;
			continue;
		}
		for (int j = 0; j < n; j++) {
			char path[4096];

			snprintf(path, sizeof(path), "%s/%s", argv[i], names[j]->d_name);
			if (run_file(path, &count))
				status = 2;
			free(names[j]);
		}
		free(names);
	}
	printf("%s: %u inputs replayed\n", argv[0], count);
	return status;
}
