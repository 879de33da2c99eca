/* token.h - the bearer token kiln sends to kilnd (docs/security.md): from
 * --token-file FILE, else $KILN_TOKEN_FILE, else $KILN_TOKEN. */
#ifndef KILN_CLI_TOKEN_H
#define KILN_CLI_TOKEN_H

#include <stddef.h>

/* Reads the first token of the file at path: its first line that is not
 * blank and does not start with '#', without surrounding blanks (kilnd's
 * token files hold one token per line). Returns 0 and a malloc'd token in
 * *out (the caller frees it), -EINVAL when the file holds no token or one
 * with bytes other than printable ASCII (message in err), or the -errno of
 * open/read (message in err). */
int token_read_file(const char *path, char **out, char *err, size_t err_size);

/* Checks a token given directly ($KILN_TOKEN): 0 when it is 1 to 4096 bytes
 * of printable ASCII without spaces, else -EINVAL (it would break the
 * Authorization header). */
int token_check(const char *token);

#endif
