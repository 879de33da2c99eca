/* token.c - reading kiln's bearer token (see token.h). */
#include "cli/token.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKEN_MAX 4096
#define FILE_MAX  65536

int token_check(const char *token)
{
	size_t n = strlen(token);

	if (n == 0 || n > TOKEN_MAX)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)token[i] < 0x21 || (unsigned char)token[i] > 0x7e)
			return -EINVAL;
	return 0;
}

int token_read_file(const char *path, char **out, char *err, size_t err_size)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL, *line, *save = NULL;
	size_t len;
	int rc = -EINVAL;

	if (!f) {
		rc = -errno;
		snprintf(err, err_size, "--token-file %s: %s", path, strerror(errno));
		return rc;
	}
	buf = malloc(FILE_MAX + 1);
	if (!buf) {
		fclose(f);
		snprintf(err, err_size, "out of memory");
		return -ENOMEM;
	}
	len = fread(buf, 1, FILE_MAX + 1, f);
	if (ferror(f)) {
		rc = -EIO;
		snprintf(err, err_size, "--token-file %s: cannot read it", path);
		goto out_free;
	}
	if (len > FILE_MAX) {
		snprintf(err, err_size, "--token-file %s: larger than %d bytes", path, FILE_MAX);
		goto out_free;
	}
	buf[len] = 0;
	snprintf(err, err_size, "--token-file %s: no token in the file", path);
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		size_t n;

		line += strspn(line, " \t\r");
		n = strlen(line);
		while (n && strchr(" \t\r", line[n - 1]))
			line[--n] = 0;
		if (!n || line[0] == '#')
			continue;
		if (token_check(line)) {
			snprintf(err, err_size,
				 "--token-file %s: the token must be printable ASCII without "
				 "spaces, at most %d bytes",
				 path, TOKEN_MAX);
			break;
		}
		*out = strdup(line);
		rc = *out ? 0 : -ENOMEM;
		if (rc)
			snprintf(err, err_size, "out of memory");
		break;
	}
out_free:
	memset(buf, 0, FILE_MAX + 1);
	free(buf);
	fclose(f);
	return rc;
}
