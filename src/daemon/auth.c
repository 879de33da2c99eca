/* auth.c - kilnd's API tokens (see auth.h). */
#include "daemon/auth.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define DIGEST 32

struct token {
	uint8_t digest[DIGEST];
	enum auth_scope scope;
};

struct auth {
	struct token *tokens;
	size_t n, cap;
	bool has_manage;
};

struct auth *auth_create(void)
{
	return calloc(1, sizeof(struct auth));
}

void auth_destroy(struct auth *a)
{
	if (!a)
		return;
	if (a->tokens)
		OPENSSL_cleanse(a->tokens, a->cap * sizeof(*a->tokens));
	free(a->tokens);
	free(a);
}

bool auth_enabled(const struct auth *a)
{
	return a && a->n > 0;
}

bool auth_has_manage(const struct auth *a)
{
	return a && a->has_manage;
}

static void sha256(const void *data, size_t len, uint8_t out[DIGEST])
{
	unsigned n = 0;

	EVP_Digest(data, len, out, &n, EVP_sha256(), NULL);
}

bool auth_equal(const void *a, size_t alen, const void *b, size_t blen)
{
	uint8_t da[DIGEST], db[DIGEST];
	bool eq;

	sha256(a, alen, da);
	sha256(b, blen, db);
	eq = CRYPTO_memcmp(da, db, DIGEST) == 0;
	OPENSSL_cleanse(da, sizeof(da));
	OPENSSL_cleanse(db, sizeof(db));
	return eq;
}

static int add_token(struct auth *a, enum auth_scope scope, const char *tok, size_t len)
{
	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 4;
		struct token *t = calloc(cap, sizeof(*t));

		if (!t)
			return -ENOMEM;
		if (a->tokens) {
			memcpy(t, a->tokens, a->n * sizeof(*t));
			OPENSSL_cleanse(a->tokens, a->cap * sizeof(*t));
			free(a->tokens);
		}
		a->tokens = t;
		a->cap = cap;
	}
	sha256(tok, len, a->tokens[a->n].digest);
	a->tokens[a->n].scope = scope;
	a->n++;
	if (scope == AUTH_SCOPE_MANAGE)
		a->has_manage = true;
	return 0;
}

int auth_load_buffer(struct auth *a, enum auth_scope scope, const char *text, size_t len,
		     const char *name, char *err, size_t err_size)
{
	size_t pos = 0, added = 0;
	unsigned line = 0;

	if (scope != AUTH_SCOPE_MANAGE && scope != AUTH_SCOPE_INVOKE) {
		snprintf(err, err_size, "%s: a token file is for manage or invoke tokens", name);
		return -EINVAL;
	}
	while (pos < len) {
		const char *s = text + pos, *nl = memchr(s, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - s) : len - pos;
		int rc;

		pos += n + (nl ? 1 : 0);
		line++;
		while (n && (s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
			n--;
		while (n && (*s == ' ' || *s == '\t')) {
			s++;
			n--;
		}
		if (!n || *s == '#')
			continue;
		if (n < AUTH_TOKEN_MIN || n > AUTH_TOKEN_MAX) {
			snprintf(err, err_size,
				 "%s:%u: a token must be %d to %d bytes long (this one is %zu); "
				 "make one with: openssl rand -hex 32",
				 name, line, AUTH_TOKEN_MIN, AUTH_TOKEN_MAX, n);
			return -EINVAL;
		}
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e) {
				snprintf(err, err_size,
					 "%s:%u: a token is printable ASCII without spaces", name,
					 line);
				return -EINVAL;
			}
		rc = add_token(a, scope, s, n);
		if (rc) {
			snprintf(err, err_size, "%s: out of memory", name);
			return rc;
		}
		added++;
	}
	if (!added) {
		snprintf(err, err_size, "%s: no token in the file (one token per line)", name);
		return -EINVAL;
	}
	return 0;
}

int auth_load_file(struct auth *a, enum auth_scope scope, const char *path, char *err,
		   size_t err_size)
{
	char *buf = NULL;
	struct stat st;
	size_t len = 0;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, err_size, "%s: %s", path, strerror(errno));
		return rc;
	}
	if (fstat(fd, &st)) {
		rc = -errno;
		snprintf(err, err_size, "%s: %s", path, strerror(errno));
		goto out_close;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, err_size, "%s: not a regular file", path);
		rc = -EINVAL;
		goto out_close;
	}
	if (st.st_mode & 077) {
		snprintf(err, err_size,
			 "%s: mode %04o lets group or others see the token; it must be 0600 "
			 "or 0400 (chmod 600 %s)",
			 path, (unsigned)(st.st_mode & 07777), path);
		rc = -EPERM;
		goto out_close;
	}
	if (st.st_uid != geteuid() && st.st_uid != 0) {
		snprintf(err, err_size,
			 "%s: owned by uid %u; it must belong to kilnd's user (%u) or root", path,
			 (unsigned)st.st_uid, (unsigned)geteuid());
		rc = -EPERM;
		goto out_close;
	}
	if (st.st_size > AUTH_FILE_MAX) {
		snprintf(err, err_size, "%s: larger than %d bytes", path, AUTH_FILE_MAX);
		rc = -EINVAL;
		goto out_close;
	}
	buf = malloc(AUTH_FILE_MAX + 1);
	if (!buf) {
		snprintf(err, err_size, "%s: out of memory", path);
		rc = -ENOMEM;
		goto out_close;
	}
	for (;;) {
		ssize_t n = read(fd, buf + len, AUTH_FILE_MAX + 1 - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			snprintf(err, err_size, "%s: %s", path, strerror(errno));
			goto out_free;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > AUTH_FILE_MAX) {
			snprintf(err, err_size, "%s: larger than %d bytes", path, AUTH_FILE_MAX);
			rc = -EINVAL;
			goto out_free;
		}
	}
	rc = auth_load_buffer(a, scope, buf, len, path, err, err_size);
out_free:
	OPENSSL_cleanse(buf, AUTH_FILE_MAX + 1);
	free(buf);
out_close:
	close(fd);
	return rc;
}

enum auth_result auth_check(const struct auth *a, enum auth_scope scope, const char *authorization)
{
	uint8_t digest[DIGEST];
	const char *tok;
	size_t len;
	int found = -1;

	if (scope == AUTH_SCOPE_OPEN || !auth_enabled(a))
		return AUTH_OK;
	if (!authorization || strncasecmp(authorization, "Bearer", 6) != 0 ||
	    (authorization[6] != ' ' && authorization[6] != '\t'))
		return AUTH_MISSING;
	tok = authorization + 6;
	while (*tok == ' ' || *tok == '\t')
		tok++;
	len = strlen(tok);
	while (len && (tok[len - 1] == ' ' || tok[len - 1] == '\t'))
		len--;
	if (!len)
		return AUTH_MISSING;
	sha256(tok, len, digest);
	/* Every stored digest is compared: no early exit on a match. */
	for (size_t i = 0; i < a->n; i++)
		if (CRYPTO_memcmp(digest, a->tokens[i].digest, DIGEST) == 0)
			found = (int)i;
	OPENSSL_cleanse(digest, sizeof(digest));
	if (found < 0)
		return AUTH_BAD_TOKEN;
	if (scope == AUTH_SCOPE_MANAGE && a->tokens[found].scope != AUTH_SCOPE_MANAGE)
		return AUTH_WRONG_SCOPE;
	return AUTH_OK;
}
