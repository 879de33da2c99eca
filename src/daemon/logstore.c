/* logstore.c - per-function NDJSON log files with rotation: the current
 * file and .1 are served; .2 to .keep are archived copies on disk.
 *
 * Writing: the lines of one logstore_append are encoded first (outside the
 * lock), then written with O_APPEND in batches of whole lines, one write(2)
 * per batch, so a crash leaves at most a torn last line. Such a tail (bytes
 * after the last '\n') is cut off before the next append, and readers only
 * ever return complete lines.
 *
 * Cursors: bits 63..40 are a generation, bits 39..0 a byte offset. Every
 * function touched by this logstore gets a generation for its current file
 * and one for its .1 file from a store-wide counter; a rotation moves the
 * current generation to .1 and gives the new current file a fresh one, and
 * logstore_remove forgets both. Generation 0 is never given out, so cursor 0
 * means "before everything". Cursors are only meaningful to the logstore
 * that made them (generations are not stored on disk).
 */
#include "daemon/logstore.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/utf8.h"

#define TEXT_MAX       (16 * 1024) /* bytes of "text" per line, after UTF-8 repair */
#define FIELD_MAX      1024	   /* bytes of instance and call_id */
#define DEFAULT_MAX    (8ull << 20)
#define OFF_BITS       40
#define OFF_MASK       ((1ull << OFF_BITS) - 1)
#define GEN_MASK       0xffffffu
#define MAX_ROTATE     (1ull << 36)	 /* largest accepted max_bytes */
#define BATCH_MAX      (64 * 1024)	 /* bytes of lines per write(2) */
#define READ_MAX       ((size_t)1 << 31) /* refuse files larger than this */
#define FOLLOW_WINDOW  (256 * 1024)	 /* bytes read at once by follow */
#define FOLLOW_DEFAULT (1024 * 1024)	 /* follow's max when 0 */

struct fn {
	char name[64];
	uint32_t cur_gen, prev_gen;
	struct fn *next;
};

struct logstore {
	pthread_mutex_t lock;
	int dirfd;
	uint64_t max_bytes;
	unsigned keep; /* rotated files kept: .1 (served) to .keep (archived) */
	uint32_t next_gen;
	struct fn *fns;
};

/* ---- small helpers --------------------------------------------------------------- */

struct sbuf {
	char *p;
	size_t len, cap;
};

static int sbuf_reserve(struct sbuf *b, size_t n)
{
	size_t cap;
	char *p;

	if (n > SIZE_MAX / 2 - b->len)
		return -ENOMEM;
	if (b->len + n + 1 <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 256;
	while (cap < b->len + n + 1)
		cap *= 2;
	p = realloc(b->p, cap);
	if (!p)
		return -ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

static int sbuf_put(struct sbuf *b, const void *s, size_t n)
{
	if (sbuf_reserve(b, n))
		return -ENOMEM;
	if (n)
		memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

/* Hands the buffer over as a NUL-terminated malloc'd string (never NULL). */
static int sbuf_take(struct sbuf *b, char **out, size_t *len)
{
	if (sbuf_reserve(b, 0))
		return -ENOMEM;
	b->p[b->len] = '\0';
	*out = b->p;
	*len = b->len;
	b->p = NULL;
	b->len = b->cap = 0;
	return 0;
}

static int valid_function(const char *s)
{
	size_t i;

	if (!s || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')))
		return 0;
	for (i = 1; s[i]; i++) {
		if (i > 62)
			return 0;
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' ||
		      s[i] == '-'))
			return 0;
	}
	return 1;
}

static void file_names(const char *function, char cur[80], char old[80])
{
	snprintf(cur, 80, "%s.log", function);
	snprintf(old, 80, "%s.log.1", function);
}

/* Copies s[0..n) into b (reset first) as valid UTF-8: each invalid byte
 * becomes U+FFFD; stops before the character that would pass cap bytes. */
static int utf8_clean(struct sbuf *b, const char *s, size_t n, size_t cap)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, l;
	int ret;

	b->len = 0;
	if (sbuf_reserve(b, n < cap ? n : cap))
		return -ENOMEM;
	while (i < n) {
		l = utf8_decode(u + i, n - i, NULL);
		if (b->len + (l ? l : 3) > cap)
			break;
		ret = l ? sbuf_put(b, s + i, l) : sbuf_put(b, "\xef\xbf\xbd", 3);
		if (ret)
			return ret;
		i += l ? l : 1;
	}
	return 0;
}

/* "2026-12-04T17:00:00.123456Z" for a time in microseconds (>= 0). */
static void format_time_us(int64_t us, char out[80])
{
	time_t secs = (time_t)(us / 1000000);
	struct tm tm;

	if (!gmtime_r(&secs, &tm) || tm.tm_year > 9999 - 1900) {
		strcpy(out, "9999-12-31T23:59:59.999999Z");
		return;
	}
	snprintf(out, 80, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(us % 1000000));
}

/* ---- the store ----------------------------------------------------------------------- */

int logstore_open(const char *dir, uint64_t max_bytes, struct logstore **out)
{
	struct logstore *ls;
	int ret;

	if (!dir || !*dir || !out || max_bytes > MAX_ROTATE)
		return -EINVAL;
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return -errno;
	ls = calloc(1, sizeof(*ls));
	if (!ls)
		return -ENOMEM;
	ls->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (ls->dirfd < 0) {
		ret = -errno;
		goto free_ls;
	}
	ret = -pthread_mutex_init(&ls->lock, NULL);
	if (ret)
		goto close_dir;
	ls->max_bytes = max_bytes ? max_bytes : DEFAULT_MAX;
	ls->keep = 1;
	ls->next_gen = 1;
	*out = ls;
	return 0;

close_dir:
	close(ls->dirfd);
free_ls:
	free(ls);
	return ret;
}

int logstore_set_keep(struct logstore *ls, unsigned keep)
{
	if (!ls || keep < 1 || keep > LOGSTORE_KEEP_MAX)
		return -EINVAL;
	pthread_mutex_lock(&ls->lock);
	ls->keep = keep;
	pthread_mutex_unlock(&ls->lock);
	return 0;
}

/* Shifts the archived files up by one (.keep-1 -> .keep, ..., .1 -> .2)
 * and removes the one past .keep (left by a larger keep before). Lock
 * held. A missing file is no error. */
static int shift_archive(struct logstore *ls, const char *function)
{
	char from[80], to[80];

	snprintf(to, sizeof(to), "%s.log.%u", function, ls->keep + 1);
	if (unlinkat(ls->dirfd, to, 0) != 0 && errno != ENOENT)
		return -errno;
	for (unsigned i = ls->keep; i > 1; i--) {
		snprintf(from, sizeof(from), "%s.log.%u", function, i - 1);
		snprintf(to, sizeof(to), "%s.log.%u", function, i);
		if (renameat(ls->dirfd, from, ls->dirfd, to) != 0 && errno != ENOENT)
			return -errno;
	}
	return 0;
}

void logstore_close(struct logstore *ls)
{
	struct fn *f, *next;

	if (!ls)
		return;
	for (f = ls->fns; f; f = next) {
		next = f->next;
		free(f);
	}
	close(ls->dirfd);
	pthread_mutex_destroy(&ls->lock);
	free(ls);
}

static uint32_t new_gen(struct logstore *ls)
{
	uint32_t g = ls->next_gen;

	ls->next_gen = (ls->next_gen + 1) & GEN_MASK;
	if (ls->next_gen == 0)
		ls->next_gen = 1;
	return g;
}

/* The function's generations; created when `create`. Lock held. */
static struct fn *fn_get(struct logstore *ls, const char *function, int create)
{
	struct fn *f;

	for (f = ls->fns; f; f = f->next) {
		if (strcmp(f->name, function) == 0)
			return f;
	}
	if (!create)
		return NULL;
	f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	snprintf(f->name, sizeof(f->name), "%s", function);
	f->prev_gen = new_gen(ls);
	f->cur_gen = new_gen(ls);
	f->next = ls->fns;
	ls->fns = f;
	return f;
}

static void fn_drop(struct logstore *ls, const char *function)
{
	struct fn **pp, *f;

	for (pp = &ls->fns; (f = *pp); pp = &f->next) {
		if (strcmp(f->name, function) == 0) {
			*pp = f->next;
			free(f);
			return;
		}
	}
}

/* ---- appending ------------------------------------------------------------------------ */

/* Encodes the lines of text into out, each a JSON object and '\n'. */
static int encode_lines(struct sbuf *out, const char *function, const char *instance,
			const char *call_id, const char *stream, int64_t ts_ns, const char *text,
			size_t len)
{
	struct sbuf clean = {0};
	char ts[80], *line = NULL;
	const char *p, *end = text + len, *nl;
	json_t *obj;
	int ret = -ENOMEM;

	format_time_us(ts_ns > 0 ? ts_ns / 1000 : 0, ts);
	obj = json_object();
	if (!obj)
		return -ENOMEM;
	if (json_object_set_new(obj, "name", json_string(function)))
		goto put_obj;
	if (instance) {
		if (utf8_clean(&clean, instance, strlen(instance), FIELD_MAX) ||
		    json_object_set_new(obj, "instance", json_stringn(clean.p, clean.len)))
			goto put_obj;
	} else if (json_object_set_new(obj, "instance", json_null())) {
		goto put_obj;
	}
	if (call_id) {
		if (utf8_clean(&clean, call_id, strlen(call_id), FIELD_MAX) ||
		    json_object_set_new(obj, "call_id", json_stringn(clean.p, clean.len)))
			goto put_obj;
	} else if (json_object_set_new(obj, "call_id", json_null())) {
		goto put_obj;
	}
	if (json_object_set_new(obj, "stream", json_string(stream)) ||
	    json_object_set_new(obj, "timestamp", json_string(ts)) ||
	    json_object_set_new(obj, "text", json_string("")))
		goto put_obj;

	for (p = text; p < end; p = nl + 1) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			nl = end;
		if (utf8_clean(&clean, p, (size_t)(nl - p), TEXT_MAX) ||
		    json_object_set_new(obj, "text", json_stringn_nocheck(clean.p, clean.len)))
			goto put_obj;
		line = json_dumps(obj, JSON_COMPACT);
		if (!line || sbuf_put(out, line, strlen(line)) || sbuf_put(out, "\n", 1))
			goto free_line;
		free(line);
		line = NULL;
	}
	ret = 0;

free_line:
	free(line);
put_obj:
	json_decref(obj);
	free(clean.p);
	return ret;
}

/* Cuts whatever follows the file's last '\n' (a line torn by a crash). */
static int cut_torn_tail(int fd, uint64_t *size)
{
	char chunk[4096];
	uint64_t end = *size, start;
	ssize_t n;
	size_t i;

	while (end > 0) {
		start = end > sizeof(chunk) ? end - sizeof(chunk) : 0;
		n = pread(fd, chunk, (size_t)(end - start), (off_t)start);
		if (n < 0)
			return -errno;
		if ((uint64_t)n != end - start)
			return -EIO;
		for (i = (size_t)n; i > 0; i--) {
			if (chunk[i - 1] == '\n') {
				end = start + i;
				goto found;
			}
		}
		end = start;
	}
found:
	if (end == *size)
		return 0;
	if (ftruncate(fd, (off_t)end) != 0)
		return -errno;
	*size = end;
	return 0;
}

/* Opens the current file for appending (read too, for cut_torn_tail's
 * pread), its size in *size. Lock held. */
static int open_current(struct logstore *ls, const char *name, uint64_t *size)
{
	struct stat st;
	int fd, ret;

	fd = openat(ls->dirfd, name, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) != 0) {
		ret = -errno;
		goto close_fd;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = -EINVAL;
		goto close_fd;
	}
	*size = (uint64_t)st.st_size;
	if (*size > 0 && (ret = cut_torn_tail(fd, size)) != 0)
		goto close_fd;
	return fd;

close_fd:
	close(fd);
	return ret;
}

/* One write(2) of whole lines; on a short write the partial tail is cut. */
static int write_batch(int fd, const char *p, size_t n, uint64_t *size)
{
	ssize_t w;

	do {
		w = write(fd, p, n);
	} while (w < 0 && errno == EINTR);
	if (w == (ssize_t)n) {
		*size += n;
		return 0;
	}
	if (w > 0 && ftruncate(fd, (off_t)*size) != 0)
		return -errno;
	return w < 0 ? -errno : -ENOSPC;
}

int logstore_append(struct logstore *ls, const char *function, const char *instance,
		    const char *call_id, const char *stream, int64_t ts_ns, const char *text,
		    size_t len)
{
	char cur[80], old[80];
	struct sbuf lines = {0};
	size_t pos = 0, batch = 0, l;
	uint64_t size;
	struct fn *f;
	int fd, ret;
	const char *nl;

	if (!ls || !valid_function(function) || !stream || (!text && len))
		return -EINVAL;
	if (strcmp(stream, "stdout") != 0 && strcmp(stream, "stderr") != 0)
		return -EINVAL;
	if (len == 0)
		return 0;
	ret = encode_lines(&lines, function, instance, call_id, stream, ts_ns, text, len);
	if (ret)
		goto free_lines;
	file_names(function, cur, old);

	pthread_mutex_lock(&ls->lock);
	f = fn_get(ls, function, 1);
	if (!f) {
		ret = -ENOMEM;
		goto unlock;
	}
	fd = open_current(ls, cur, &size);
	if (fd < 0) {
		ret = fd;
		goto unlock;
	}
	/* Lines [pos, pos + batch) are waiting to be written. */
	while (pos + batch < lines.len) {
		nl = memchr(lines.p + pos + batch, '\n', lines.len - pos - batch);
		l = (size_t)(nl - (lines.p + pos + batch)) + 1;
		if (batch && (batch + l > BATCH_MAX || size + batch + l > ls->max_bytes)) {
			ret = write_batch(fd, lines.p + pos, batch, &size);
			if (ret)
				goto close_fd;
			pos += batch;
			batch = 0;
		}
		if (size > 0 && size + batch + l > ls->max_bytes) {
			close(fd);
			ret = shift_archive(ls, function);
			if (ret)
				goto unlock;
			if (renameat(ls->dirfd, cur, ls->dirfd, old) != 0) {
				ret = -errno;
				goto unlock;
			}
			f->prev_gen = f->cur_gen;
			f->cur_gen = new_gen(ls);
			fd = open_current(ls, cur, &size);
			if (fd < 0) {
				ret = fd;
				goto unlock;
			}
		}
		batch += l;
	}
	ret = batch ? write_batch(fd, lines.p + pos, batch, &size) : 0;

close_fd:
	close(fd);
unlock:
	pthread_mutex_unlock(&ls->lock);
free_lines:
	free(lines.p);
	return ret;
}

/* ---- reading ------------------------------------------------------------------------------ */

/* Reads up to `want` bytes of file `name` from offset off into b (reset).
 * *size gets the file size (0 when missing). */
static int read_part(struct logstore *ls, const char *name, uint64_t off, size_t want,
		     struct sbuf *b, uint64_t *size)
{
	struct stat st;
	ssize_t n;
	int fd, ret = 0;

	b->len = 0;
	*size = 0;
	if (sbuf_reserve(b, 0)) /* b->p is never NULL after this */
		return -ENOMEM;
	b->p[0] = '\0';
	fd = openat(ls->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	if (fstat(fd, &st) != 0) {
		ret = -errno;
		goto close_fd;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = -EINVAL;
		goto close_fd;
	}
	*size = (uint64_t)st.st_size;
	if (off >= *size)
		goto close_fd;
	if (want > *size - off)
		want = (size_t)(*size - off);
	if (want > READ_MAX) {
		ret = -EFBIG;
		goto close_fd;
	}
	ret = sbuf_reserve(b, want);
	if (ret)
		goto close_fd;
	while (b->len < want) {
		n = pread(fd, b->p + b->len, want - b->len, (off_t)(off + b->len));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			goto close_fd;
		}
		if (n == 0)
			break;
		b->len += (size_t)n;
	}
	b->p[b->len] = '\0';

close_fd:
	close(fd);
	return ret;
}

/* Length of the complete lines at the start of p[0..n). */
static size_t complete_len(const char *p, size_t n)
{
	const char *nl = n ? memrchr(p, '\n', n) : NULL;

	return nl ? (size_t)(nl - p) + 1 : 0;
}

/* True for something that looks like one of our lines (a JSON object). */
static int line_ok(const char *p, size_t n)
{
	return n >= 3 && p[0] == '{' && p[n - 2] == '}';
}

struct span {
	const char *p;
	size_t n;
};

struct spans {
	struct span *v;
	size_t n, cap;
};

static int spans_add(struct spans *s, const char *p, size_t n)
{
	struct span *v;
	size_t cap;

	if (s->n == s->cap) {
		cap = s->cap ? s->cap * 2 : 256;
		v = realloc(s->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n].p = p;
	s->v[s->n].n = n;
	s->n++;
	return 0;
}

/* The line's "timestamp" value (our writer puts it before "text", and a
 * quote inside a JSON string is always escaped, so the first match is the
 * key), or NULL. */
static const char *line_timestamp(const char *p, size_t n)
{
	static const char key[] = "\"timestamp\":\"";
	const char *t = memmem(p, n, key, sizeof(key) - 1);

	if (!t || (size_t)(p + n - t) < sizeof(key) - 1 + 28)
		return NULL;
	return t + sizeof(key) - 1;
}

/* Adds the lines of b (complete ones only) that match q to s. */
static int collect(const struct sbuf *b, const char *since, struct spans *s)
{
	const char *p = b->p, *end = b->p + complete_len(b->p, b->len), *nl, *ts;
	size_t n;
	int ret;

	for (; p < end; p = nl + 1) {
		nl = memchr(p, '\n', (size_t)(end - p));
		n = (size_t)(nl - p) + 1;
		if (!line_ok(p, n))
			continue;
		if (since) {
			ts = line_timestamp(p, n);
			if (!ts || memcmp(ts, since, 27) < 0)
				continue;
		}
		ret = spans_add(s, p, n);
		if (ret)
			return ret;
	}
	return 0;
}

int logstore_read(struct logstore *ls, const char *function, const struct logstore_query *q,
		  char **out, size_t *len, uint64_t *cursor)
{
	struct sbuf oldb = {0}, curb = {0}, res = {0};
	struct spans s = {0};
	char cur[80], old[80], since[80];
	uint64_t old_size, cur_size;
	size_t i, first = 0;
	struct fn *f;
	int ret;

	if (!ls || !valid_function(function) || !out || !len)
		return -EINVAL;
	if (q && q->since_ns > 0)
		format_time_us(q->since_ns / 1000 + (q->since_ns % 1000 != 0), since);
	file_names(function, cur, old);

	pthread_mutex_lock(&ls->lock);
	ret = read_part(ls, old, 0, SIZE_MAX, &oldb, &old_size);
	if (ret)
		goto unlock;
	ret = read_part(ls, cur, 0, SIZE_MAX, &curb, &cur_size);
	if (ret)
		goto unlock;
	if (cursor) {
		f = fn_get(ls, function, old_size || cur_size);
		if (!f && (old_size || cur_size)) {
			ret = -ENOMEM;
			goto unlock;
		}
		*cursor =
			f ? ((uint64_t)f->cur_gen << OFF_BITS | complete_len(curb.p, curb.len)) : 0;
	}
	pthread_mutex_unlock(&ls->lock);

	ret = collect(&oldb, q && q->since_ns > 0 ? since : NULL, &s);
	if (!ret)
		ret = collect(&curb, q && q->since_ns > 0 ? since : NULL, &s);
	if (ret)
		goto free_all;
	if (q && q->tail >= 0 && (size_t)q->tail < s.n)
		first = s.n - (size_t)q->tail;
	for (i = first; i < s.n; i++) {
		ret = sbuf_put(&res, s.v[i].p, s.v[i].n);
		if (ret)
			goto free_all;
	}
	ret = sbuf_take(&res, out, len);
	goto free_all;

unlock:
	pthread_mutex_unlock(&ls->lock);
free_all:
	free(res.p);
	free(s.v);
	free(oldb.p);
	free(curb.p);
	return ret;
}

/* Appends to res the complete lines of file `name` from *off, at most
 * *budget bytes but at least one line when res is empty; advances *off and
 * lowers *budget. *at_end: no complete line is left after *off. */
static int follow_file(struct logstore *ls, const char *name, uint64_t *off, size_t *budget,
		       struct sbuf *res, int *at_end)
{
	struct sbuf b = {0};
	uint64_t size;
	size_t want = *budget > FOLLOW_WINDOW ? *budget : FOLLOW_WINDOW, take = 0, n;
	const char *nl;
	int ret;

	*at_end = 0;
	ret = read_part(ls, name, *off, want, &b, &size);
	if (ret)
		goto free_b;
	if (*off > size)
		*off = size; /* the file shrank under us: skip, never repeat */
	while (take < b.len) {
		nl = memchr(b.p + take, '\n', b.len - take);
		if (!nl)
			break;
		n = (size_t)(nl - (b.p + take)) + 1;
		if (take + n > *budget && (take || res->len))
			break;
		take += n;
	}
	if (take == 0 && !res->len && b.len == want && *off + want < size &&
	    !memchr(b.p, '\n', b.len)) {
		/* A window without any newline: not ours; skip it. */
		*off += want;
		goto free_b;
	}
	if (take > *budget)
		*budget = 0;
	else
		*budget -= take;
	ret = sbuf_put(res, b.p, take);
	if (ret)
		goto free_b;
	*off += take;
	*at_end = !memchr(b.p + take, '\n', b.len - take) && *off + (b.len - take) >= size;

free_b:
	free(b.p);
	return ret;
}

int logstore_follow(struct logstore *ls, const char *function, uint64_t *cursor, char **out,
		    size_t *len, size_t max)
{
	struct sbuf res = {0};
	char cur[80], old[80];
	uint32_t gen;
	uint64_t off;
	size_t budget = max ? max : FOLLOW_DEFAULT;
	struct stat st;
	struct fn *f;
	int ret = 0, at_end;

	if (!ls || !valid_function(function) || !cursor || !out || !len)
		return -EINVAL;
	gen = (uint32_t)(*cursor >> OFF_BITS) & GEN_MASK;
	off = *cursor & OFF_MASK;
	file_names(function, cur, old);

	pthread_mutex_lock(&ls->lock);
	f = fn_get(ls, function, 0);
	if (!f) {
		/* Nothing touched yet: only create generations when files exist. */
		if (fstatat(ls->dirfd, cur, &st, AT_SYMLINK_NOFOLLOW) != 0 &&
		    fstatat(ls->dirfd, old, &st, AT_SYMLINK_NOFOLLOW) != 0)
			goto done;
		f = fn_get(ls, function, 1);
		if (!f) {
			ret = -ENOMEM;
			goto unlock;
		}
	}
	if (gen != f->cur_gen) {
		/* In .1, or older: then all of .1 is newer than the cursor. */
		if (gen != f->prev_gen)
			off = 0;
		gen = f->prev_gen;
		ret = follow_file(ls, old, &off, &budget, &res, &at_end);
		if (ret)
			goto unlock;
		if (at_end) {
			gen = f->cur_gen;
			off = 0;
		}
	}
	if (gen == f->cur_gen && budget > 0) {
		ret = follow_file(ls, cur, &off, &budget, &res, &at_end);
		if (ret)
			goto unlock;
	}
	*cursor = (uint64_t)gen << OFF_BITS | (off & OFF_MASK);
done:
	pthread_mutex_unlock(&ls->lock);
	ret = sbuf_take(&res, out, len);
	goto free_res;

unlock:
	pthread_mutex_unlock(&ls->lock);
free_res:
	free(res.p);
	return ret;
}

int logstore_call_tail(struct logstore *ls, const char *function, const char *call_id, size_t max,
		       char **out, size_t *len)
{
	struct sbuf curb = {0}, clean = {0}, res = {0};
	struct spans s = {0};
	char cur[80], old[80], *needle = NULL;
	const char *p, *end, *nl, *t;
	json_t *key = NULL, *line, *v, *t_json, **objs = NULL;
	size_t i, n, total = 0, start, nlen;
	uint64_t size;
	int ret, joined = 0;

	if (!ls || !valid_function(function) || !call_id || !out || !len)
		return -EINVAL;
	ret = utf8_clean(&clean, call_id, strlen(call_id), FIELD_MAX);
	if (ret)
		goto free_all;
	ret = -ENOMEM;
	key = json_stringn(clean.p, clean.len);
	if (!key)
		goto free_all;
	needle = json_dumps(key, JSON_ENCODE_ANY | JSON_COMPACT);
	if (!needle)
		goto free_all;
	nlen = strlen(needle);
	file_names(function, cur, old);

	pthread_mutex_lock(&ls->lock);
	ret = read_part(ls, cur, 0, SIZE_MAX, &curb, &size);
	pthread_mutex_unlock(&ls->lock);
	if (ret)
		goto free_all;

	/* Candidates: lines holding the encoded id right after "call_id":. */
	end = curb.p + complete_len(curb.p, curb.len);
	for (p = curb.p; p < end; p = nl + 1) {
		nl = memchr(p, '\n', (size_t)(end - p));
		n = (size_t)(nl - p);
		t = memmem(p, n, "\"call_id\":", 10);
		if (!t || (size_t)(p + n - t) < 10 + nlen || memcmp(t + 10, needle, nlen) != 0)
			continue;
		ret = spans_add(&s, p, n);
		if (ret)
			goto free_all;
	}
	/* Parse from the last line back until max bytes are had. */
	ret = -ENOMEM;
	objs = calloc(s.n ? s.n : 1, sizeof(*objs));
	if (!objs)
		goto free_all;
	for (i = s.n; i > 0 && total <= max; i--) {
		line = json_loadb(s.v[i - 1].p, s.v[i - 1].n, JSON_ALLOW_NUL, NULL);
		v = json_object_get(line, "call_id");
		t_json = json_object_get(line, "text");
		if (!json_is_string(v) || !json_equal(v, key) || !json_is_string(t_json)) {
			json_decref(line); /* not one of the call's lines after all */
			continue;
		}
		objs[i - 1] = line;
		total += json_string_length(t_json) + 1;
	}
	for (; i < s.n; i++) {
		if (!objs[i])
			continue;
		v = json_object_get(objs[i], "text");
		if ((joined && sbuf_put(&res, "\n", 1)) ||
		    sbuf_put(&res, json_string_value(v), json_string_length(v)))
			goto free_all;
		joined = 1;
	}
	/* The last max bytes, starting on a character boundary. */
	start = res.len > max ? res.len - max : 0;
	while (start < res.len && start > 0 && ((unsigned char)res.p[start] & 0xc0) == 0x80)
		start++;
	if (start) {
		memmove(res.p, res.p + start, res.len - start);
		res.len -= start;
	}
	ret = sbuf_take(&res, out, len);

free_all:
	for (i = 0; objs && i < s.n; i++)
		json_decref(objs[i]);
	free(objs);
	free(res.p);
	free(s.v);
	free(curb.p);
	free(clean.p);
	free(needle);
	json_decref(key);
	return ret;
}

int logstore_remove(struct logstore *ls, const char *function)
{
	char cur[80], old[80];
	int ret = 0;

	if (!ls || !valid_function(function))
		return -EINVAL;
	file_names(function, cur, old);
	pthread_mutex_lock(&ls->lock);
	if (unlinkat(ls->dirfd, cur, 0) != 0 && errno != ENOENT)
		ret = -errno;
	if (unlinkat(ls->dirfd, old, 0) != 0 && errno != ENOENT && !ret)
		ret = -errno;
	/* Every archived file a keep up to the largest could have left. */
	for (unsigned i = 2; i <= LOGSTORE_KEEP_MAX + 1; i++) {
		char name[80];

		snprintf(name, sizeof(name), "%s.log.%u", function, i);
		if (unlinkat(ls->dirfd, name, 0) != 0 && errno != ENOENT && !ret)
			ret = -errno;
	}
	fn_drop(ls, function);
	pthread_mutex_unlock(&ls->lock);
	return ret;
}
