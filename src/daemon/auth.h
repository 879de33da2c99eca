/* auth.h - kilnd's API tokens (docs/security.md).
 *
 * Tokens come from files that only their owner can read (mode 0600 or
 * 0400), one token per line (blank lines and lines starting with '#' are
 * skipped, so a file can hold an old and a new token during a rotation).
 * Each token is kept only as its SHA-256 digest; a request's bearer token
 * is hashed and compared with every stored digest in constant time
 * (CRYPTO_memcmp), so neither its content nor its length shows in the time
 * an answer takes.
 *
 * Two scopes: a *manage* token may call every route, an *invoke* token only
 * the invoke routes (/function/, /async-function/, Lambda's Invoke).
 */
#ifndef KILN_DAEMON_AUTH_H
#define KILN_DAEMON_AUTH_H

#include <stdbool.h>
#include <stddef.h>

/* What a route needs. MANAGE is 0 so a route that says nothing is the most
 * protected. */
enum auth_scope {
	AUTH_SCOPE_MANAGE = 0, /* a manage token */
	AUTH_SCOPE_INVOKE,     /* a manage or an invoke token */
	AUTH_SCOPE_OPEN,       /* nothing (/healthz) */
};

/* The outcome of a check. */
enum auth_result {
	AUTH_OK = 0,
	AUTH_MISSING,	  /* no Authorization header, or not "Bearer ..." */
	AUTH_BAD_TOKEN,	  /* a bearer token that matches no token */
	AUTH_WRONG_SCOPE, /* an invoke token on a manage route */
};

#define AUTH_TOKEN_MIN 16   /* bytes: shorter tokens are refused at load */
#define AUTH_TOKEN_MAX 4096 /* bytes */
#define AUTH_FILE_MAX  65536

struct auth;

/* An empty token set (auth_enabled false: every check passes). Returns NULL
 * when out of memory. The caller owns it (auth_destroy). */
struct auth *auth_create(void);

/* Frees a. Accepts NULL. */
void auth_destroy(struct auth *a);

/* Reads the tokens of path into a with scope AUTH_SCOPE_MANAGE or
 * AUTH_SCOPE_INVOKE. Refuses (with a one-line message naming the file in
 * err) a file that is not a regular file, is not owned by this user or
 * root, is readable or writable by group or others, is larger than 64 KiB,
 * holds no token, or holds a token shorter than AUTH_TOKEN_MIN or longer
 * than AUTH_TOKEN_MAX bytes or with bytes other than printable ASCII.
 * Returns 0, -EPERM (mode or owner), -EINVAL (content), -ENOMEM, or the
 * -errno of open/read. */
int auth_load_file(struct auth *a, enum auth_scope scope, const char *path, char *err,
		   size_t err_size);

/* The same from a buffer (what auth_load_file does after its checks); name
 * is used in messages. */
int auth_load_buffer(struct auth *a, enum auth_scope scope, const char *text, size_t len,
		     const char *name, char *err, size_t err_size);

/* True when a holds at least one token (a NULL a holds none). */
bool auth_enabled(const struct auth *a);

/* True when a holds manage tokens. */
bool auth_has_manage(const struct auth *a);

/* Checks an Authorization header value (NULL when absent) for a route that
 * needs scope. Always AUTH_OK when scope is AUTH_SCOPE_OPEN or a holds no
 * token. */
enum auth_result auth_check(const struct auth *a, enum auth_scope scope, const char *authorization);

/* Compares a[0..alen) with b[0..blen) without an early exit: both are
 * hashed with SHA-256 (time depending only on the lengths) and the digests
 * compared with CRYPTO_memcmp, so where they differ does not show. True
 * when equal. (auth_check hashes stored tokens at load time: only the
 * length of the presented token, which its sender knows, affects the
 * time.) */
bool auth_equal(const void *a, size_t alen, const void *b, size_t blen);

#endif
