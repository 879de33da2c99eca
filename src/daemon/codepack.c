/* codepack.c - user code (tar, tar.gz, zip, a directory, a file) to kiln's
 * KLNA code archive (codepack.h).
 *
 * Everything is first read into a table of entries (path -> directory, file
 * or symbolic link), with every parent directory present (implicit ones
 * added). Symbolic links are then resolved inside that table, never on the
 * host: a link to a file becomes a copy of the file, a link to a directory a
 * copy of the directory's entries. The table is written out sorted by path,
 * so the same files give the same archive (and the same sha256) however they
 * were sent.
 */
/* common/archive.h and libarchive both name a `struct archive_entry`. */
#define archive_entry kiln_archive_entry
#include "common/archive.h"
#undef archive_entry

#include "daemon/codepack.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#define CP_TABLE_SIZE  16384 /* power of two, > 2 * ARCHIVE_MAX_ENTRIES */
#define CP_MAX_HOPS    40    /* symbolic links followed for one path, like Linux */
#define CP_CHUNK       (1U << 20)
#define CP_INPUT_MAX   (96U * 1024U * 1024U) /* an archive file read from the host */
#define CP_LINK_WORK   (64U * 1024U * 1024U) /* entry comparisons resolving links */
#define CP_NAME_IN_ERR 160

enum cp_kind {
	CP_DIR = ARCHIVE_DIR,
	CP_FILE = ARCHIVE_FILE,
	CP_LINK = 3,
};

struct cp_entry {
	char *path; /* normalised, passes archive_path_ok */
	uint8_t kind;
	bool implicit; /* a parent directory the input did not list */
	uint16_t mode;
	uint8_t *data; /* files; NULL when size is 0 */
	uint32_t size;
	char *target; /* links: the link's text */
};

struct cp {
	struct cp_entry *e;
	size_t n, cap;
	uint32_t table[CP_TABLE_SIZE]; /* index + 1 into e; 0: empty */
	uint64_t total;		       /* file bytes in e */
	size_t seen;		       /* entries read from the input */
	char *err;
	size_t err_size;
};

/* ---- errors ----------------------------------------------------------------- */

/* Writes "name: message" into the error buffer (name made printable and
 * shortened) and returns ret. name may be NULL. */
__attribute__((format(printf, 4, 5))) static int cp_fail(struct cp *cp, int ret, const char *name,
							 const char *fmt, ...)
{
	char safe[CP_NAME_IN_ERR + 4];
	size_t i, len = 0;
	va_list ap;
	int n = 0;

	if (!cp->err || cp->err_size == 0)
		return ret;
	if (name) {
		for (i = 0; name[i] && len < CP_NAME_IN_ERR; i++) {
			unsigned char c = (unsigned char)name[i];

			safe[len++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
		}
		if (name[i])
			safe[len++] = '.', safe[len++] = '.', safe[len++] = '.';
		safe[len] = '\0';
		n = snprintf(cp->err, cp->err_size, "%s: ", safe);
		if (n < 0 || (size_t)n >= cp->err_size)
			return ret;
	}
	va_start(ap, fmt);
	vsnprintf(cp->err + n, cp->err_size - (size_t)n, fmt, ap);
	va_end(ap);
	return ret;
}

/* ---- the table of entries ------------------------------------------------------- */

static uint32_t cp_hash(const char *s, size_t len)
{
	uint32_t h = 2166136261U;

	for (size_t i = 0; i < len; i++)
		h = (h ^ (uint8_t)s[i]) * 16777619U;
	return h;
}

/* Index of the entry path[0..len), or -1. */
static long cp_find(const struct cp *cp, const char *path, size_t len)
{
	uint32_t slot = cp_hash(path, len) & (CP_TABLE_SIZE - 1);

	while (cp->table[slot]) {
		const struct cp_entry *e = &cp->e[cp->table[slot] - 1];

		if (strlen(e->path) == len && memcmp(e->path, path, len) == 0)
			return (long)cp->table[slot] - 1;
		slot = (slot + 1) & (CP_TABLE_SIZE - 1);
	}
	return -1;
}

static void cp_entry_free(struct cp_entry *e)
{
	free(e->path);
	free(e->data);
	free(e->target);
}

static void cp_free(struct cp *cp)
{
	if (!cp)
		return;
	for (size_t i = 0; i < cp->n; i++)
		cp_entry_free(&cp->e[i]);
	free(cp->e);
	free(cp);
}

/* Appends an entry (taking ownership of e's allocations, freed on failure)
 * without looking at its parents. */
static int cp_append(struct cp *cp, struct cp_entry *e, const char *name)
{
	uint32_t slot;

	if (cp->n >= ARCHIVE_MAX_ENTRIES) {
		cp_entry_free(e);
		return cp_fail(cp, -E2BIG, name, "too many entries (at most %d with directories)",
			       ARCHIVE_MAX_ENTRIES);
	}
	if (cp->n == cp->cap) {
		size_t ncap = cp->cap ? cp->cap * 2 : 64;
		struct cp_entry *ne = realloc(cp->e, ncap * sizeof(*ne));

		if (!ne) {
			cp_entry_free(e);
			return cp_fail(cp, -ENOMEM, NULL, "out of memory");
		}
		cp->e = ne;
		cp->cap = ncap;
	}
	slot = cp_hash(e->path, strlen(e->path)) & (CP_TABLE_SIZE - 1);
	while (cp->table[slot])
		slot = (slot + 1) & (CP_TABLE_SIZE - 1);
	cp->e[cp->n] = *e;
	cp->table[slot] = (uint32_t)++cp->n;
	return 0;
}

/* Adds an entry at e->path (normalised, checked), creating the parent
 * directories it lacks. Takes ownership of e's allocations (freed on
 * failure). A directory may replace an implicit one; anything else already
 * there is a duplicate. */
static int cp_add(struct cp *cp, struct cp_entry *e)
{
	char *path = e->path;
	long i;
	int ret;

	for (char *s = strchr(path, '/'); s; s = strchr(s + 1, '/')) {
		size_t plen = (size_t)(s - path);

		i = cp_find(cp, path, plen);
		if (i >= 0 && cp->e[i].kind == CP_LINK) {
			ret = cp_fail(cp, -EINVAL, path, "path goes through a symbolic link");
			goto free_entry;
		}
		if (i >= 0 && cp->e[i].kind != CP_DIR) {
			ret = cp_fail(cp, -EINVAL, path, "a parent is not a directory");
			goto free_entry;
		}
		if (i < 0) {
			struct cp_entry dir = {.kind = CP_DIR, .implicit = true, .mode = 0755};

			dir.path = strndup(path, plen);
			if (!dir.path) {
				ret = cp_fail(cp, -ENOMEM, NULL, "out of memory");
				goto free_entry;
			}
			ret = cp_append(cp, &dir, path);
			if (ret)
				goto free_entry;
		}
	}
	i = cp_find(cp, path, strlen(path));
	if (i >= 0) {
		struct cp_entry *old = &cp->e[i];

		if (old->kind == CP_DIR && old->implicit && e->kind == CP_DIR) {
			old->implicit = false;
			old->mode = e->mode;
			cp_entry_free(e);
			return 0;
		}
		ret = cp_fail(cp, -EINVAL, path, "duplicate entry");
		goto free_entry;
	}
	if (e->kind == CP_FILE) {
		if (cp->total + e->size > ARCHIVE_MAX_TOTAL) {
			ret = cp_fail(cp, -E2BIG, path, "code exceeds %u MiB",
				      ARCHIVE_MAX_TOTAL >> 20);
			goto free_entry;
		}
		cp->total += e->size;
	}
	ret = cp_append(cp, e, path);
	if (ret && e->kind == CP_FILE)
		cp->total -= e->size;
	return ret;

free_entry:
	cp_entry_free(e);
	return ret;
}

/* Normalises an input path: "./a//b/" -> "a/b". *out is malloc'd; "" for
 * the top directory itself. Absolute paths and ".." are errors. */
static int cp_normalize(struct cp *cp, const char *raw, char **out)
{
	const char *p = raw;
	char *norm;
	size_t len = 0;

	*out = NULL;
	if (!raw || !*raw)
		return cp_fail(cp, -EINVAL, NULL, "an entry has no name");
	if (raw[0] == '/')
		return cp_fail(cp, -EINVAL, raw, "absolute path");
	norm = malloc(strlen(raw) + 1);
	if (!norm)
		return cp_fail(cp, -ENOMEM, NULL, "out of memory");
	while (*p) {
		const char *end = strchrnul(p, '/');
		size_t n = (size_t)(end - p);

		if (n == 2 && p[0] == '.' && p[1] == '.') {
			free(norm);
			return cp_fail(cp, -EINVAL, raw, "path escapes the function directory");
		}
		if (n > 0 && !(n == 1 && p[0] == '.')) {
			if (len)
				norm[len++] = '/';
			memcpy(norm + len, p, n);
			len += n;
		}
		p = *end ? end + 1 : end;
	}
	norm[len] = '\0';
	if (len && !archive_path_ok(norm, len)) {
		free(norm);
		return cp_fail(
			cp, -EINVAL, raw,
			"bad path (longer than %d bytes, deeper than %d or a name over %d bytes)",
			ARCHIVE_MAX_PATH, ARCHIVE_MAX_DEPTH, ARCHIVE_MAX_COMPONENT);
	}
	*out = norm;
	return 0;
}

/* One entry counted against ARCHIVE_MAX_ENTRIES as it is read. */
static int cp_count(struct cp *cp, const char *name)
{
	if (++cp->seen > ARCHIVE_MAX_ENTRIES)
		return cp_fail(cp, -E2BIG, name, "too many entries (at most %d)",
			       ARCHIVE_MAX_ENTRIES);
	return 0;
}

static uint16_t cp_file_mode(unsigned int mode)
{
	return (uint16_t)((mode & 0777) | 0400);
}

static uint16_t cp_dir_mode(unsigned int mode)
{
	return (uint16_t)((mode & 0777) | 0700);
}

/* ---- symbolic links ------------------------------------------------------------- */

/* Resolves the link e[li] inside the table to a path with no link in it
 * (*canon, malloc'd) and the index of what is there. Errors name the link. */
static int cp_resolve(struct cp *cp, size_t li, char **canon, long *idx)
{
	const char *lpath = cp->e[li].path;
	char *cur, *pending, *p;
	size_t clen, hops = 0;
	const char *slash;
	int ret;

	*canon = NULL;
	cur = malloc(ARCHIVE_MAX_PATH + 2);
	pending = malloc(2 * ARCHIVE_MAX_PATH + 4);
	if (!cur || !pending) {
		ret = cp_fail(cp, -ENOMEM, NULL, "out of memory");
		goto free_bufs;
	}
	slash = strrchr(lpath, '/');
	clen = slash ? (size_t)(slash - lpath) : 0;
	memcpy(cur, lpath, clen);
	cur[clen] = '\0';
	if (cp->e[li].target[0] == '/') {
		ret = cp_fail(cp, -EINVAL, lpath, "symbolic link to an absolute path");
		goto free_bufs;
	}
	snprintf(pending, 2 * ARCHIVE_MAX_PATH + 4, "%s", cp->e[li].target);
	p = pending;
	while (*p) {
		char *end = strchrnul(p, '/');
		size_t n = (size_t)(end - p);
		long i;

		if (n == 0 || (n == 1 && p[0] == '.')) {
			p = *end ? end + 1 : end;
			continue;
		}
		if (n == 2 && p[0] == '.' && p[1] == '.') {
			char *up;

			if (clen == 0) {
				ret = cp_fail(
					cp, -EINVAL, lpath,
					"symbolic link points outside the function directory");
				goto free_bufs;
			}
			up = strrchr(cur, '/');
			clen = up ? (size_t)(up - cur) : 0;
			cur[clen] = '\0';
			p = *end ? end + 1 : end;
			continue;
		}
		if (clen + 1 + n > ARCHIVE_MAX_PATH) {
			ret = cp_fail(cp, -EINVAL, lpath, "symbolic link target is too long");
			goto free_bufs;
		}
		if (clen)
			cur[clen++] = '/';
		memcpy(cur + clen, p, n);
		clen += n;
		cur[clen] = '\0';
		p = *end ? end + 1 : end;
		i = cp_find(cp, cur, clen);
		if (i < 0 || (cp->e[i].kind == CP_FILE && *p)) {
			ret = cp_fail(cp, -EINVAL, lpath, "dangling symbolic link (to %s)",
				      cp->e[li].target);
			goto free_bufs;
		}
		if (cp->e[i].kind == CP_LINK) {
			const char *t = cp->e[i].target;
			size_t tlen = strlen(t), rest = strlen(p);
			char *up;

			if (++hops > CP_MAX_HOPS) {
				ret = cp_fail(cp, -EINVAL, lpath,
					      "too many levels of symbolic links");
				goto free_bufs;
			}
			if (t[0] == '/') {
				ret = cp_fail(cp, -EINVAL, lpath,
					      "symbolic link through %s to an absolute path",
					      cp->e[i].path);
				goto free_bufs;
			}
			/* pending = t + "/" + rest (rest may be empty). */
			if (tlen + 1 + rest + 1 > 2 * ARCHIVE_MAX_PATH + 4) {
				ret = cp_fail(cp, -EINVAL, lpath,
					      "symbolic link target is too long");
				goto free_bufs;
			}
			memmove(pending + tlen + 1, p, rest + 1);
			memcpy(pending, t, tlen);
			pending[tlen] = '/';
			p = pending;
			up = strrchr(cur, '/');
			clen = up ? (size_t)(up - cur) : 0;
			cur[clen] = '\0';
		}
	}
	if (clen == 0) {
		ret = cp_fail(cp, -EINVAL, lpath,
			      "symbolic link loop (to the function directory itself)");
		goto free_bufs;
	}
	*idx = cp_find(cp, cur, clen);
	if (*idx < 0) {
		ret = cp_fail(cp, -EINVAL, lpath, "dangling symbolic link (to %s)",
			      cp->e[li].target);
		goto free_bufs;
	}
	*canon = cur;
	free(pending);
	return 0;

free_bufs:
	free(cur);
	free(pending);
	return ret;
}

static bool cp_under(const char *path, const char *dir, size_t dlen)
{
	return strncmp(path, dir, dlen) == 0 && path[dlen] == '/';
}

/* Replaces the link e[li] with a copy of the directory at canon (whose
 * entries hold no link). */
static int cp_copy_dir(struct cp *cp, size_t li, const char *canon, long di)
{
	size_t dlen = strlen(canon), n = cp->n;
	int ret;

	free(cp->e[li].target);
	cp->e[li].target = NULL;
	cp->e[li].kind = CP_DIR;
	cp->e[li].mode = cp->e[di].mode;
	/* Parents come before their children in the table: copy in order. */
	for (size_t j = 0; j < n; j++) {
		const struct cp_entry *src = &cp->e[j];
		struct cp_entry copy = {.kind = src->kind, .mode = src->mode, .size = src->size};
		const char *lpath = cp->e[li].path;

		if (!cp_under(src->path, canon, dlen))
			continue;
		if (asprintf(&copy.path, "%s%s", lpath, src->path + dlen) < 0)
			return cp_fail(cp, -ENOMEM, NULL, "out of memory");
		if (!archive_path_ok(copy.path, strlen(copy.path))) {
			ret = cp_fail(cp, -EINVAL, copy.path,
				      "path too long or too deep (through symbolic link %s)",
				      lpath);
			free(copy.path);
			return ret;
		}
		if (src->size) {
			copy.data = malloc(src->size);
			if (!copy.data) {
				free(copy.path);
				return cp_fail(cp, -ENOMEM, NULL, "out of memory");
			}
			memcpy(copy.data, src->data, src->size);
		}
		ret = cp_add(cp, &copy);
		if (ret)
			return ret;
	}
	return 0;
}

/* Turns every link into a copy of its target. A link to a directory waits
 * until the directory holds no link itself; no progress means a loop. */
static int cp_resolve_links(struct cp *cp)
{
	uint64_t work = 0;
	bool progress = true;
	size_t links;

	for (;;) {
		long first = -1;

		links = 0;
		for (size_t i = 0; i < cp->n; i++) {
			if (cp->e[i].kind == CP_LINK) {
				links++;
				if (first < 0)
					first = (long)i;
			}
		}
		if (links == 0)
			return 0;
		if (!progress)
			return cp_fail(cp, -EINVAL, cp->e[first].path, "symbolic link loop");
		progress = false;
		for (size_t i = 0; i < cp->n; i++) {
			struct cp_entry *l = &cp->e[i];
			struct cp_entry *t;
			bool has_link = false;
			size_t dlen;
			char *canon;
			long ti = -1;
			int ret;

			if (l->kind != CP_LINK)
				continue;
			ret = cp_resolve(cp, i, &canon, &ti);
			if (ret)
				return ret;
			t = &cp->e[ti];
			if (t->kind == CP_FILE) {
				uint8_t *copy = NULL;

				free(canon);
				if (cp->total + t->size > ARCHIVE_MAX_TOTAL)
					return cp_fail(cp, -E2BIG, l->path,
						       "code exceeds %u MiB (with copies of "
						       "linked files)",
						       ARCHIVE_MAX_TOTAL >> 20);
				if (t->size) {
					copy = malloc(t->size);
					if (!copy)
						return cp_fail(cp, -ENOMEM, NULL, "out of memory");
					memcpy(copy, t->data, t->size);
				}
				free(l->target);
				l->target = NULL;
				l->kind = CP_FILE;
				l->mode = t->mode;
				l->data = copy;
				l->size = t->size;
				cp->total += t->size;
				progress = true;
				continue;
			}
			/* A directory: not the link's own ancestor (a loop). */
			dlen = strlen(canon);
			if (cp_under(l->path, canon, dlen)) {
				ret = cp_fail(cp, -EINVAL, l->path,
					      "symbolic link loop (to a parent directory)");
				free(canon);
				return ret;
			}
			work += cp->n;
			if (work > CP_LINK_WORK) {
				free(canon);
				return cp_fail(cp, -E2BIG, l->path,
					       "symbolic links to directories nest too deeply");
			}
			for (size_t j = 0; j < cp->n && !has_link; j++)
				has_link = cp->e[j].kind == CP_LINK &&
					   cp_under(cp->e[j].path, canon, dlen);
			if (has_link) {
				free(canon);
				continue;
			}
			ret = cp_copy_dir(cp, i, canon, ti);
			free(canon);
			if (ret)
				return ret;
			progress = true;
		}
	}
}

/* ---- writing KLNA ----------------------------------------------------------------- */

static int cp_cmp(const void *a, const void *b)
{
	const struct cp_entry *const *x = a, *const *y = b;

	return strcmp((*x)->path, (*y)->path);
}

/* Stores v little-endian at p; returns the byte after it. */
/* Writes the table, sorted by path, as a KLNA archive and checks it. */
static int cp_write(struct cp *cp, uint8_t **out, size_t *out_len)
{
	const struct cp_entry **sorted;
	struct kiln_archive_entry *ae;
	int ret;

	sorted = malloc((cp->n ? cp->n : 1) * sizeof(*sorted));
	ae = malloc((cp->n ? cp->n : 1) * sizeof(*ae));
	if (!sorted || !ae) {
		ret = cp_fail(cp, -ENOMEM, NULL, "out of memory");
		goto free_arrays;
	}
	for (size_t i = 0; i < cp->n; i++)
		sorted[i] = &cp->e[i];
	qsort(sorted, cp->n, sizeof(*sorted), cp_cmp);
	for (size_t i = 0; i < cp->n; i++)
		ae[i] = (struct kiln_archive_entry){.kind = sorted[i]->kind,
						    .mode = sorted[i]->mode,
						    .path = sorted[i]->path,
						    .path_len = (uint16_t)strlen(sorted[i]->path),
						    .data = sorted[i]->data,
						    .size = sorted[i]->size};
	ret = archive_write(ae, cp->n, out, out_len);
	if (ret == -ENOMEM)
		ret = cp_fail(cp, ret, NULL, "out of memory");
	else if (ret)
		ret = cp_fail(cp, ret, NULL, "internal error: the archive written does not check");
free_arrays:
	free(ae);
	free(sorted);
	return ret;
}

static struct cp *cp_new(char *err, size_t err_size)
{
	struct cp *cp = calloc(1, sizeof(*cp));

	if (cp) {
		cp->err = err;
		cp->err_size = err_size;
	}
	return cp;
}

/* Resolves links and writes the archive. */
static int cp_finish(struct cp *cp, uint8_t **out, size_t *out_len)
{
	int ret = cp_resolve_links(cp);

	return ret ? ret : cp_write(cp, out, out_len);
}

/* ---- archives, with libarchive ------------------------------------------------ */

/* Reads the current entry's data, counting bytes as they come: never more
 * than what is left of ARCHIVE_MAX_TOTAL is held, whatever the header says. */
static int cp_read_data(struct cp *cp, struct archive *a, const char *name, uint8_t **data,
			uint32_t *size)
{
	uint64_t left = ARCHIVE_MAX_TOTAL - cp->total;
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0;
	int ret;

	for (;;) {
		size_t want = CP_CHUNK;
		la_ssize_t n;

		/* Room for one byte past the limit, to notice passing it. */
		if (len > left)
			break;
		if (want > left + 1 - len)
			want = (size_t)(left + 1 - len);
		if (cap - len < want) {
			size_t ncap = cap ? cap * 2 : 64 * 1024;
			uint8_t *nb;

			if (ncap < len + want)
				ncap = len + want;
			if (ncap > left + 1)
				ncap = (size_t)left + 1;
			nb = realloc(buf, ncap);
			if (!nb) {
				ret = cp_fail(cp, -ENOMEM, NULL, "out of memory");
				goto free_buf;
			}
			buf = nb;
			cap = ncap;
		}
		n = archive_read_data(a, buf + len, want);
		if (n < 0) {
			ret = cp_fail(cp, -EINVAL, name, "%s", archive_error_string(a));
			goto free_buf;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > left) {
		ret = cp_fail(cp, -E2BIG, name, "code exceeds %u MiB", ARCHIVE_MAX_TOTAL >> 20);
		goto free_buf;
	}
	if (len == 0) {
		free(buf);
		buf = NULL;
	}
	*data = buf;
	*size = (uint32_t)len;
	return 0;

free_buf:
	free(buf);
	return ret;
}

/* A hard link: a copy of a regular file read before it. */
static int cp_hardlink(struct cp *cp, const char *name, char *path, const char *target)
{
	struct cp_entry e = {.kind = CP_FILE, .path = path};
	char *tpath;
	long ti;
	int ret;

	ret = cp_normalize(cp, target, &tpath);
	if (ret) {
		/* Name the link, not (only) its target. */
		char why[128];

		snprintf(why, sizeof(why), "%s", cp->err ? cp->err : "");
		free(path);
		return cp_fail(cp, ret, name, "hard link: %s", why);
	}
	ti = cp_find(cp, tpath, strlen(tpath));
	free(tpath);
	if (ti < 0 || cp->e[ti].kind != CP_FILE) {
		free(path);
		return cp_fail(cp, -EINVAL, name,
			       "hard link to %s, not a regular file read before it", target);
	}
	e.mode = cp->e[ti].mode;
	e.size = cp->e[ti].size;
	if (e.size) {
		e.data = malloc(e.size);
		if (!e.data) {
			free(path);
			return cp_fail(cp, -ENOMEM, NULL, "out of memory");
		}
		memcpy(e.data, cp->e[ti].data, e.size);
	}
	return cp_add(cp, &e);
}

/* Adds the current libarchive entry. */
static int cp_archive_entry(struct cp *cp, struct archive *a, struct archive_entry *ae)
{
	const char *name = archive_entry_pathname(ae);
	const char *hard = archive_entry_hardlink(ae);
	unsigned int type = archive_entry_filetype(ae);
	unsigned int perm = archive_entry_perm(ae);
	struct cp_entry e = {0};
	char *path;
	int ret;

	if (!name)
		name = archive_entry_pathname_utf8(ae);
	ret = cp_count(cp, name);
	if (ret)
		return ret;
	ret = cp_normalize(cp, name, &path);
	if (ret)
		return ret;
	if (!*path) {
		free(path);
		if (type == AE_IFDIR && !hard)
			return 0; /* "./": the top directory itself */
		return cp_fail(cp, -EINVAL, name, "not a name for a file");
	}
	if (hard)
		return cp_hardlink(cp, name, path, hard);
	e.path = path;
	switch (type) {
	case AE_IFREG:
		e.kind = CP_FILE;
		e.mode = cp_file_mode(perm);
		ret = cp_read_data(cp, a, name, &e.data, &e.size);
		if (ret) {
			free(path);
			return ret;
		}
		return cp_add(cp, &e);
	case AE_IFDIR:
		e.kind = CP_DIR;
		e.mode = cp_dir_mode(perm);
		return cp_add(cp, &e);
	case AE_IFLNK: {
		const char *t = archive_entry_symlink(ae);

		if (!t)
			t = archive_entry_symlink_utf8(ae);
		if (!t || !*t || strlen(t) > ARCHIVE_MAX_PATH) {
			free(path);
			return cp_fail(cp, -EINVAL, name, "symbolic link with a bad target");
		}
		e.kind = CP_LINK;
		e.target = strdup(t);
		if (!e.target) {
			free(path);
			return cp_fail(cp, -ENOMEM, NULL, "out of memory");
		}
		return cp_add(cp, &e);
	}
	case AE_IFCHR:
	case AE_IFBLK:
		free(path);
		return cp_fail(cp, -EINVAL, name, "device nodes are not allowed");
	case AE_IFIFO:
		free(path);
		return cp_fail(cp, -EINVAL, name, "FIFOs are not allowed");
	case AE_IFSOCK:
		free(path);
		return cp_fail(cp, -EINVAL, name, "sockets are not allowed");
	default:
		free(path);
		return cp_fail(cp, -EINVAL, name, "not a regular file, directory or symbolic link");
	}
}

/* Reads the archive buf[0..len) into cp. *not_archive is set when the
 * content is no tar or zip archive at all (nothing recognised). */
static int cp_read_archive(struct cp *cp, const void *buf, size_t len, bool *not_archive)
{
	struct archive_entry *ae;
	struct archive *a;
	bool first = true;
	int rc, ret = 0;

	*not_archive = false;
	if (len == 0) {
		*not_archive = true;
		return cp_fail(cp, -EINVAL, NULL, "empty input: not a tar or zip archive");
	}
	a = archive_read_new();
	if (!a)
		return cp_fail(cp, -ENOMEM, NULL, "out of memory");
	archive_read_support_filter_all(a);
	archive_read_support_format_tar(a);
	archive_read_support_format_gnutar(a);
	archive_read_support_format_zip(a);
	rc = archive_read_open_memory(a, buf, len);
	if (rc != ARCHIVE_OK) {
		*not_archive = archive_format(a) == 0;
		ret = cp_fail(cp, -EINVAL, NULL, "not a tar or zip archive: %s",
			      archive_error_string(a) ? archive_error_string(a) : "unreadable");
		goto free_archive;
	}
	for (;;) {
		rc = archive_read_next_header(a, &ae);
		if (rc == ARCHIVE_EOF)
			break;
		if (rc < ARCHIVE_WARN) {
			const char *why = archive_error_string(a);

			if (first && archive_format(a) == 0) {
				*not_archive = true;
				ret = cp_fail(cp, -EINVAL, NULL, "not a tar or zip archive");
			} else {
				ret = cp_fail(cp, -EINVAL, NULL, "bad archive: %s",
					      why ? why : "unreadable");
			}
			goto free_archive;
		}
		first = false;
		ret = cp_archive_entry(cp, a, ae);
		if (ret)
			goto free_archive;
	}
free_archive:
	archive_read_free(a);
	return ret;
}

int codepack_from_archive(const void *buf, size_t len, uint8_t **out, size_t *out_len, char *err,
			  size_t err_size)
{
	bool not_archive;
	struct cp *cp;
	int ret;

	if (err && err_size)
		err[0] = '\0';
	if ((!buf && len) || !out || !out_len)
		return -EINVAL;
	cp = cp_new(err, err_size);
	if (!cp)
		return -ENOMEM;
	ret = cp_read_archive(cp, buf, len, &not_archive);
	if (!ret)
		ret = cp_finish(cp, out, out_len);
	cp_free(cp);
	return ret;
}

/* ---- the host: directories and files ------------------------------------------------ */

/* Reads an open regular file (at most max bytes, else -E2BIG). */
static int cp_read_fd(struct cp *cp, int fd, const char *name, uint64_t max, uint8_t **data,
		      size_t *size)
{
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0;
	int ret;

	for (;;) {
		ssize_t n;

		if (cap - len < CP_CHUNK) {
			size_t ncap = cap ? cap * 2 : 64 * 1024;
			uint8_t *nb;

			if (ncap < len + CP_CHUNK)
				ncap = len + CP_CHUNK;
			nb = realloc(buf, ncap);
			if (!nb) {
				ret = cp_fail(cp, -ENOMEM, NULL, "out of memory");
				goto free_buf;
			}
			buf = nb;
			cap = ncap;
		}
		n = read(fd, buf + len, CP_CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = cp_fail(cp, -errno, name, "%s", strerror(errno));
			goto free_buf;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > max) {
			ret = cp_fail(cp, -E2BIG, name, "code exceeds %u MiB",
				      ARCHIVE_MAX_TOTAL >> 20);
			goto free_buf;
		}
	}
	if (len == 0) {
		free(buf);
		buf = NULL;
	}
	*data = buf;
	*size = len;
	return 0;

free_buf:
	free(buf);
	return ret;
}

static int cp_walk(struct cp *cp, int dirfd, const char *rel);

/* Adds dirfd/name (its path in the tree: path, owned) as found by lstat. */
static int cp_walk_one(struct cp *cp, int dirfd, const char *name, char *path)
{
	struct cp_entry e = {.path = path};
	struct stat st;
	int fd, ret;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		ret = cp_fail(cp, -errno, path, "%s", strerror(errno));
		goto free_path;
	}
	if (S_ISREG(st.st_mode)) {
		size_t size;

		fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0) {
			ret = cp_fail(cp, -errno, path, "%s", strerror(errno));
			goto free_path;
		}
		/* What was opened is what was looked at (no swap since). */
		if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
			close(fd);
			ret = cp_fail(cp, -EINVAL, path, "changed while being read");
			goto free_path;
		}
		ret = cp_read_fd(cp, fd, path, ARCHIVE_MAX_TOTAL - cp->total, &e.data, &size);
		close(fd);
		if (ret)
			goto free_path;
		e.kind = CP_FILE;
		e.size = (uint32_t)size;
		e.mode = cp_file_mode(st.st_mode);
		return cp_add(cp, &e);
	}
	if (S_ISDIR(st.st_mode)) {
		char *rel = strdup(path);

		if (!rel) {
			ret = cp_fail(cp, -ENOMEM, NULL, "out of memory");
			goto free_path;
		}
		e.kind = CP_DIR;
		e.mode = cp_dir_mode(st.st_mode);
		ret = cp_add(cp, &e); /* checks the depth before going down */
		if (!ret) {
			fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (fd < 0) {
				ret = cp_fail(cp, -errno, rel, "%s", strerror(errno));
			} else {
				ret = cp_walk(cp, fd, rel);
				close(fd);
			}
		}
		free(rel);
		return ret;
	}
	if (S_ISLNK(st.st_mode)) {
		char target[ARCHIVE_MAX_PATH + 2];
		ssize_t n = readlinkat(dirfd, name, target, sizeof(target));

		if (n < 0) {
			ret = cp_fail(cp, -errno, path, "%s", strerror(errno));
			goto free_path;
		}
		if (n == 0 || (size_t)n > ARCHIVE_MAX_PATH) {
			ret = cp_fail(cp, -EINVAL, path, "symbolic link with a bad target");
			goto free_path;
		}
		target[n] = '\0';
		e.kind = CP_LINK;
		e.target = strdup(target);
		if (!e.target) {
			ret = cp_fail(cp, -ENOMEM, NULL, "out of memory");
			goto free_path;
		}
		return cp_add(cp, &e);
	}
	if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))
		ret = cp_fail(cp, -EINVAL, path, "device nodes are not allowed");
	else if (S_ISFIFO(st.st_mode))
		ret = cp_fail(cp, -EINVAL, path, "FIFOs are not allowed");
	else if (S_ISSOCK(st.st_mode))
		ret = cp_fail(cp, -EINVAL, path, "sockets are not allowed");
	else
		ret = cp_fail(cp, -EINVAL, path, "not a regular file, directory or symbolic link");
free_path:
	free(path);
	return ret;
}

/* Adds everything under the open directory dirfd, whose path in the tree
 * is rel ("" for the top). */
static int cp_walk(struct cp *cp, int dirfd, const char *rel)
{
	const char *base = rel;
	struct dirent *de;
	DIR *dir;
	int fd, ret = 0;

	fd = dup(dirfd);
	if (fd < 0)
		return cp_fail(cp, -errno, rel, "%s", strerror(errno));
	dir = fdopendir(fd);
	if (!dir) {
		ret = cp_fail(cp, -errno, rel, "%s", strerror(errno));
		close(fd);
		return ret;
	}
	while ((errno = 0, de = readdir(dir))) {
		char *path;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (asprintf(&path, "%s%s%s", base, *base ? "/" : "", de->d_name) < 0) {
			ret = cp_fail(cp, -ENOMEM, NULL, "out of memory");
			goto close_dir;
		}
		ret = cp_count(cp, path);
		if (!ret && !archive_path_ok(path, strlen(path)))
			ret = cp_fail(cp, -EINVAL, path,
				      "bad path (longer than %d bytes, deeper than %d or a name "
				      "over %d bytes)",
				      ARCHIVE_MAX_PATH, ARCHIVE_MAX_DEPTH, ARCHIVE_MAX_COMPONENT);
		if (ret) {
			free(path);
			goto close_dir;
		}
		ret = cp_walk_one(cp, dirfd, de->d_name, path);
		if (ret)
			goto close_dir;
	}
	if (errno)
		ret = cp_fail(cp, -errno, base, "%s", strerror(errno));
close_dir:
	closedir(dir);
	return ret;
}

int codepack_from_path(const char *path, uint8_t **out, size_t *out_len, char *err, size_t err_size)
{
	bool not_archive = false;
	struct cp *cp;
	struct stat st;
	uint8_t *data = NULL;
	size_t len = 0;
	int fd, ret;

	if (err && err_size)
		err[0] = '\0';
	if (!out || !out_len)
		return -EINVAL;
	cp = cp_new(err, err_size);
	if (!cp)
		return -ENOMEM;
	if (!path || path[0] != '/') {
		ret = cp_fail(cp, -EINVAL, path, "not an absolute path");
		goto free_cp;
	}
	/* The path itself may be a symbolic link: the user named it. */
	fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		ret = cp_fail(cp, -errno, path, "%s", strerror(errno));
		goto free_cp;
	}
	if (fstat(fd, &st) < 0) {
		ret = cp_fail(cp, -errno, path, "%s", strerror(errno));
		goto close_fd;
	}
	if (S_ISDIR(st.st_mode)) {
		ret = cp_walk(cp, fd, "");
		if (!ret)
			ret = cp_finish(cp, out, out_len);
		goto close_fd;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = cp_fail(cp, -EINVAL, path, "not a regular file or directory");
		goto close_fd;
	}
	ret = cp_read_fd(cp, fd, path, CP_INPUT_MAX, &data, &len);
	if (ret)
		goto close_fd;
	ret = cp_read_archive(cp, data, len, &not_archive);
	if (ret && not_archive) {
		/* A plain file: a one-file archive under its base name. */
		const char *base = strrchr(path, '/') + 1;
		struct cp_entry e = {.kind = CP_FILE, .mode = cp_file_mode(st.st_mode)};

		/* Nothing was added: start again with a clean message. */
		cp->seen = 0;
		if (err && err_size)
			err[0] = '\0';
		if (len > ARCHIVE_MAX_TOTAL) {
			ret = cp_fail(cp, -E2BIG, base, "code exceeds %u MiB",
				      ARCHIVE_MAX_TOTAL >> 20);
			goto close_fd;
		}
		if (!*base || !archive_path_ok(base, strlen(base))) {
			ret = cp_fail(cp, -EINVAL, path, "bad file name");
			goto close_fd;
		}
		e.path = strdup(base);
		if (!e.path) {
			ret = cp_fail(cp, -ENOMEM, NULL, "out of memory");
			goto close_fd;
		}
		e.data = data;
		e.size = (uint32_t)len;
		data = NULL;
		ret = cp_add(cp, &e);
	}
	if (!ret)
		ret = cp_finish(cp, out, out_len);
close_fd:
	close(fd);
	free(data);
free_cp:
	cp_free(cp);
	return ret;
}
