/* test_logstore.c - per-function NDJSON logs: appending, queries, follow
 * across rotations, hostile input, torn lines, removal (daemon/logstore.c). */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon/logstore.h"

#define T0 1700000000123456789LL /* 2023-11-14T22:13:20.123456Z */

struct fixture {
	char dir[64];
	char path[128]; /* dir/logs */
	struct logstore *ls;
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int open_store(struct fixture *fx, uint64_t max)
{
	strcpy(fx->dir, "/tmp/kiln-logstore-XXXXXX");
	if (!mkdtemp(fx->dir))
		return -1;
	snprintf(fx->path, sizeof(fx->path), "%s/logs", fx->dir);
	return logstore_open(fx->path, max, &fx->ls);
}

static int setup_big(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	if (!fx || open_store(fx, 0) != 0)
		return -1;
	*state = fx;
	return 0;
}

static int setup_small(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	if (!fx || open_store(fx, 1000) != 0)
		return -1;
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	logstore_close(fx->ls);
	nftw(fx->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(fx);
	return 0;
}

static int append(struct fixture *fx, const char *fn, const char *call, int64_t ts,
		  const char *text)
{
	return logstore_append(fx->ls, fn, "vm-1", call, "stdout", ts, text, strlen(text));
}

/* The "text" fields of NDJSON out[0..len), checking every line is an
 * object with exactly the six fields. Returns the count; texts[] malloc'd. */
static size_t texts_of(const char *out, size_t len, char **texts, size_t max)
{
	const char *p = out, *end = out + len, *nl;
	size_t n = 0;
	json_t *o;
	json_error_t err;

	assert_int_equal(strlen(out), len);
	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		assert_non_null(nl);
		o = json_loadb(p, (size_t)(nl - p), JSON_ALLOW_NUL, &err);
		if (!o)
			fail_msg("bad line %.*s: %s", (int)(nl - p), p, err.text);
		assert_true(json_is_object(o));
		assert_int_equal(json_object_size(o), 6);
		assert_true(json_is_string(json_object_get(o, "name")));
		assert_true(json_is_string(json_object_get(o, "stream")));
		assert_true(json_is_string(json_object_get(o, "timestamp")));
		assert_true(json_is_string(json_object_get(o, "text")));
		assert_non_null(json_object_get(o, "instance"));
		assert_non_null(json_object_get(o, "call_id"));
		assert_true(n < max);
		texts[n++] = strdup(json_string_value(json_object_get(o, "text")));
		json_decref(o);
		p = nl + 1;
	}
	return n;
}

static void free_texts(char **texts, size_t n)
{
	while (n)
		free(texts[--n]);
}

static char *read_all(struct fixture *fx, const char *fn, int64_t since, long tail, size_t *len,
		      uint64_t *cursor)
{
	struct logstore_query q = {.since_ns = since, .tail = tail};
	char *out = NULL;

	assert_int_equal(logstore_read(fx->ls, fn, &q, &out, len, cursor), 0);
	assert_non_null(out);
	return out;
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* ---- tests ------------------------------------------------------------------ */

static void test_open_errors(void **state)
{
	struct logstore *ls = NULL;
	char path[160];
	int fd;

	(void)state;
	assert_int_equal(logstore_open("", 0, &ls), -EINVAL);
	assert_int_equal(logstore_open(NULL, 0, &ls), -EINVAL);
	assert_int_equal(logstore_open("/tmp", 1ULL << 50, &ls), -EINVAL);
	assert_int_equal(logstore_open("/nonexistent-kiln/a/b", 0, &ls), -ENOENT);
	snprintf(path, sizeof(path), "/tmp/kiln-logstore-file-%d", getpid());
	fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(logstore_open(path, 0, &ls), -ENOTDIR);
	unlink(path);
	logstore_close(NULL);
}

static void test_append_read(void **state)
{
	struct fixture *fx = *state;
	char file[200], *out, *texts[16];
	struct stat st;
	uint64_t cursor = 1;
	size_t len, n;

	assert_int_equal(stat(fx->path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);

	/* Nothing yet: empty, cursor 0 ("before everything"). */
	out = read_all(fx, "echo", 0, -1, &len, &cursor);
	assert_int_equal(len, 0);
	assert_string_equal(out, "");
	assert_int_equal(cursor, 0);
	free(out);
	assert_int_equal(logstore_read(fx->ls, "echo", NULL, &out, &len, NULL), 0);
	assert_int_equal(len, 0);
	free(out);

	assert_int_equal(append(fx, "echo", "c-1", T0, "hello\nworld\npartial"), 0);
	assert_int_equal(logstore_append(fx->ls, "echo", NULL, NULL, "stderr", T0 + 1000, "", 0),
			 0);
	assert_int_equal(
		logstore_append(fx->ls, "echo", NULL, NULL, "stderr", T0 + 1000, "oops\n", 5), 0);

	out = read_all(fx, "echo", 0, -1, &len, &cursor);
	assert_string_equal(
		out, "{\"name\":\"echo\",\"instance\":\"vm-1\",\"call_id\":\"c-1\",\"stream\":"
		     "\"stdout\","
		     "\"timestamp\":\"2023-11-14T22:13:20.123456Z\",\"text\":\"hello\"}\n"
		     "{\"name\":\"echo\",\"instance\":\"vm-1\",\"call_id\":\"c-1\",\"stream\":"
		     "\"stdout\","
		     "\"timestamp\":\"2023-11-14T22:13:20.123456Z\",\"text\":\"world\"}\n"
		     "{\"name\":\"echo\",\"instance\":\"vm-1\",\"call_id\":\"c-1\",\"stream\":"
		     "\"stdout\","
		     "\"timestamp\":\"2023-11-14T22:13:20.123456Z\",\"text\":\"partial\"}\n"
		     "{\"name\":\"echo\",\"instance\":null,\"call_id\":null,\"stream\":\"stderr\","
		     "\"timestamp\":\"2023-11-14T22:13:20.123457Z\",\"text\":\"oops\"}\n");
	assert_int_equal(cursor & ((1ULL << 40) - 1), len);
	n = texts_of(out, len, texts, 16);
	assert_int_equal(n, 4);
	free_texts(texts, n);
	free(out);

	snprintf(file, sizeof(file), "%s/echo.log", fx->path);
	assert_int_equal(stat(file, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal((size_t)st.st_size, len);

	/* Empty lines are lines; timestamps before 1970 clamp to the epoch. */
	assert_int_equal(append(fx, "other", NULL, -5, "\n\nx"), 0);
	out = read_all(fx, "other", 0, -1, &len, NULL);
	n = texts_of(out, len, texts, 16);
	assert_int_equal(n, 3);
	assert_string_equal(texts[0], "");
	assert_string_equal(texts[1], "");
	assert_string_equal(texts[2], "x");
	assert_non_null(strstr(out, "\"timestamp\":\"1970-01-01T00:00:00.000000Z\""));
	free_texts(texts, n);
	free(out);
}

static void test_bad_names(void **state)
{
	struct fixture *fx = *state;
	static const char *const bad[] = {
		"",
		"A",
		"Echo",
		"../x",
		"a/b",
		"-a",
		"_a",
		"a.b",
		"a\n",
		"a b",
		"..",
		".",
		"a\\b",
		"x\xc3\xa9",
		"a123456789012345678901234567890123456789012345678901234567890123", /* 64 */
	};
	char *out = NULL;
	size_t len, i;
	uint64_t cursor = 0;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(append(fx, bad[i], "c", T0, "x"), -EINVAL);
		assert_int_equal(logstore_read(fx->ls, bad[i], NULL, &out, &len, &cursor), -EINVAL);
		assert_int_equal(logstore_follow(fx->ls, bad[i], &cursor, &out, &len, 0), -EINVAL);
		assert_int_equal(logstore_call_tail(fx->ls, bad[i], "c", 10, &out, &len), -EINVAL);
		assert_int_equal(logstore_remove(fx->ls, bad[i]), -EINVAL);
	}
	assert_int_equal(append(fx, NULL, "c", T0, "x"), -EINVAL);
	assert_int_equal(logstore_read(fx->ls, NULL, NULL, &out, &len, NULL), -EINVAL);
	/* 63 characters, digits first, - and _ are fine. */
	assert_int_equal(append(fx,
				"0123456789012345678901234567890123456789012345678901234567890-_",
				"c", T0, "x"),
			 0);
	assert_int_equal(logstore_append(fx->ls, "ok", "i", "c", "stdin", T0, "x", 1), -EINVAL);
	assert_int_equal(logstore_append(fx->ls, "ok", "i", "c", NULL, T0, "x", 1), -EINVAL);
	assert_int_equal(logstore_append(fx->ls, "ok", "i", "c", "stdout", T0, NULL, 1), -EINVAL);
	assert_int_equal(logstore_append(NULL, "ok", "i", "c", "stdout", T0, "x", 1), -EINVAL);
}

static void test_hostile_text(void **state)
{
	struct fixture *fx = *state;
	/* invalid bytes, a truncated sequence, an overlong '/', a surrogate,
	 * control characters, a NUL and quotes/backslashes */
	static const char raw[] = "a\xff\xfe"
				  "b\xc3\n"
				  "\xc0\xaf|\xed\xa0\x80|\xf4\x90\x80\x80\n"
				  "\x01\t\x1b[0m\r\"q\"\\\n"
				  "nul:\0:end\n"
				  "\xe2\x82\xac ok \xf0\x9f\x98\x80";
	char *out, *texts[16];
	size_t len, n;
	json_t *o;

	assert_int_equal(
		logstore_append(fx->ls, "h", "i\xff", "c\"1\n", "stderr", T0, raw, sizeof(raw) - 1),
		0);
	out = read_all(fx, "h", 0, -1, &len, NULL);
	n = texts_of(out, len, texts, 16);
	assert_int_equal(n, 5);
	assert_string_equal(texts[0], "a\xef\xbf\xbd\xef\xbf\xbd"
				      "b\xef\xbf\xbd");
	assert_string_equal(texts[1], "\xef\xbf\xbd\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd\xef\xbf"
				      "\xbd|\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
	assert_string_equal(texts[2], "\x01\t\x1b[0m\r\"q\"\\");
	assert_string_equal(texts[3], "nul:"); /* strdup stops at the NUL... */
	assert_string_equal(texts[4], "\xe2\x82\xac ok \xf0\x9f\x98\x80");
	/* ...which is kept, escaped. */
	assert_non_null(strstr(out, "\"text\":\"nul:\\u0000:end\""));
	assert_non_null(strstr(out, "\"text\":\"\\u0001\\t\\u001B[0m\\r\\\"q\\\"\\\\\""));
	o = json_loadb(out, (size_t)(strchr(out, '\n') - out), 0, NULL);
	assert_string_equal(json_string_value(json_object_get(o, "instance")), "i\xef\xbf\xbd");
	assert_string_equal(json_string_value(json_object_get(o, "call_id")), "c\"1\n");
	json_decref(o);
	free_texts(texts, n);
	free(out);
}

static void test_long_lines(void **state)
{
	struct fixture *fx = *state;
	size_t big = 40000, len, n, i;
	char *text = malloc(big + 1), *out, *texts[8];

	/* ASCII: exactly 16 KiB kept. */
	memset(text, 'x', big);
	text[big] = '\0';
	assert_int_equal(append(fx, "long", "c", T0, text), 0);
	/* 3-byte characters: cut on a character boundary below 16 KiB. */
	for (i = 0; i + 3 <= big; i += 3)
		memcpy(text + i, "\xe2\x82\xac", 3);
	text[i] = '\0';
	assert_int_equal(append(fx, "long", "c", T0, text), 0);
	/* Invalid bytes grow 3x when replaced: still cut at 16 KiB. */
	memset(text, '\xff', big);
	text[big] = '\0';
	assert_int_equal(append(fx, "long", "c", T0, text), 0);
	/* Control characters grow 6x when escaped: the line stays valid. */
	memset(text, '\x01', big);
	assert_int_equal(append(fx, "long", "c", T0, text), 0);

	out = read_all(fx, "long", 0, -1, &len, NULL);
	n = texts_of(out, len, texts, 8);
	assert_int_equal(n, 4);
	assert_int_equal(strlen(texts[0]), 16384);
	assert_int_equal(strlen(texts[1]), 16383);
	assert_int_equal(strlen(texts[2]), 16383);
	assert_int_equal(strlen(texts[3]), 16384);
	assert_memory_equal(texts[2], "\xef\xbf\xbd\xef\xbf\xbd", 6);
	free_texts(texts, n);
	free(out);
	free(text);
}

static void test_since_tail(void **state)
{
	struct fixture *fx = *state;
	char *out, *texts[16];
	size_t len, n;

	assert_int_equal(append(fx, "q", "c", T0, "one\ntwo"), 0);
	assert_int_equal(append(fx, "q", "c", T0 + 2000000000LL, "three"), 0);
	assert_int_equal(append(fx, "q", "c", T0 + 3000000000LL, "four\nfive"), 0);
	/* Out of order timestamps are filtered line by line. */
	assert_int_equal(append(fx, "q", "c", T0 - 5000000000LL, "old"), 0);

	out = read_all(fx, "q", T0 + 2000000000LL - 1000, -1, &len, NULL);
	n = texts_of(out, len, texts, 16);
	assert_int_equal(n, 3);
	assert_string_equal(texts[0], "three");
	assert_string_equal(texts[2], "five");
	free_texts(texts, n);
	free(out);

	/* Timestamps are kept in microseconds: "three" is at ...22.123456, so
	 * its exact time (...22.123456789) or 1 ns after ...22.123457 exclude it. */
	out = read_all(fx, "q", T0 + 2000000000LL, -1, &len, NULL);
	n = texts_of(out, len, texts, 16);
	assert_int_equal(n, 2);
	free_texts(texts, n);
	free(out);
	out = read_all(fx, "q", T0 + 2000000000LL - 789 + 1000 + 1, -1, &len, NULL);
	n = texts_of(out, len, texts, 16);
	assert_int_equal(n, 2);
	assert_string_equal(texts[0], "four");
	free_texts(texts, n);
	free(out);
	out = read_all(fx, "q", T0 + 2000000000LL - 789, -1, &len, NULL);
	n = texts_of(out, len, texts, 16);
	assert_int_equal(n, 3);
	free_texts(texts, n);
	free(out);

	out = read_all(fx, "q", 0, 2, &len, NULL);
	n = texts_of(out, len, texts, 16);
	assert_int_equal(n, 2);
	assert_string_equal(texts[0], "five");
	assert_string_equal(texts[1], "old");
	free_texts(texts, n);
	free(out);

	out = read_all(fx, "q", 0, 0, &len, NULL);
	assert_int_equal(len, 0);
	free(out);

	out = read_all(fx, "q", 0, 100, &len, NULL);
	n = texts_of(out, len, texts, 16);
	assert_int_equal(n, 6);
	free_texts(texts, n);
	free(out);

	out = read_all(fx, "q", T0 + 1, 2, &len, NULL);
	n = texts_of(out, len, texts, 16);
	assert_int_equal(n, 2);
	assert_string_equal(texts[0], "four");
	assert_string_equal(texts[1], "five");
	free_texts(texts, n);
	free(out);

	out = read_all(fx, "q", T0 + 9000000000LL, -1, &len, NULL);
	assert_int_equal(len, 0);
	free(out);
}

/* Appends "line N" for N in [from, to), one append each. */
static void append_numbered(struct fixture *fx, const char *fn, int from, int to)
{
	char text[64];
	int i;

	for (i = from; i < to; i++) {
		snprintf(text, sizeof(text), "line %d", i);
		assert_int_equal(append(fx, fn, "c", T0 + i, text), 0);
	}
}

/* Parses the numbers of out's lines into nums; returns how many. */
static size_t numbers_of(const char *out, size_t len, int *nums, size_t max)
{
	char *texts[4096];
	size_t n = texts_of(out, len, texts, 4096), i;

	assert_true(n <= max);
	for (i = 0; i < n; i++)
		assert_int_equal(sscanf(texts[i], "line %d", &nums[i]), 1);
	free_texts(texts, n);
	return n;
}

static void test_rotation(void **state)
{
	struct fixture *fx = *state;
	char path[200], *out;
	int nums[256];
	struct stat st;
	size_t len, n, i;

	/* Lines are ~125 bytes; 1000-byte files hold 8. */
	append_numbered(fx, "rot", 0, 40);
	snprintf(path, sizeof(path), "%s/rot.log", fx->path);
	assert_int_equal(stat(path, &st), 0);
	assert_true(st.st_size > 0 && st.st_size <= 1000);
	snprintf(path, sizeof(path), "%s/rot.log.1", fx->path);
	assert_int_equal(stat(path, &st), 0);
	assert_true(st.st_size > 875 && st.st_size <= 1000);
	snprintf(path, sizeof(path), "%s/rot.log.2", fx->path);
	assert_int_not_equal(stat(path, &st), 0);

	out = read_all(fx, "rot", 0, -1, &len, NULL);
	n = numbers_of(out, len, nums, 256);
	assert_true(n >= 9 && n <= 16);
	for (i = 0; i < n; i++)
		assert_int_equal(nums[i], 40 - (int)n + (int)i);
	free(out);

	/* One append of many lines rotates in the middle too. */
	assert_int_equal(append(fx, "rot", "c", T0, "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\nk\nl\nm\nn"), 0);
	out = read_all(fx, "rot", 0, 1, &len, NULL);
	assert_non_null(strstr(out, "\"text\":\"n\""));
	free(out);
}

/* With keep 3, rotations shift .1 -> .2 -> .3 and drop what is older:
 * disk use stays at most 4 files of max_bytes however much is written;
 * the archived files hold older lines in order; a lower keep later drops
 * the file past it; remove takes every archived file. */
static void test_rotation_keep(void **state)
{
	struct fixture *fx = *state;
	char path[200], *text;
	struct stat st;
	size_t len;
	int first[5] = {-1, -1, -1, -1, -1};

	assert_int_equal(logstore_set_keep(fx->ls, 0), -EINVAL);
	assert_int_equal(logstore_set_keep(fx->ls, LOGSTORE_KEEP_MAX + 1), -EINVAL);
	assert_int_equal(logstore_set_keep(fx->ls, 3), 0);
	append_numbered(fx, "arc", 0, 400); /* ~50 rotations of 1000 bytes */
	for (int i = 0; i <= 3; i++) {
		if (i)
			snprintf(path, sizeof(path), "%s/arc.log.%d", fx->path, i);
		else
			snprintf(path, sizeof(path), "%s/arc.log", fx->path);
		assert_int_equal(stat(path, &st), 0);
		assert_true(st.st_size > 0 && st.st_size <= 1000);
		text = slurp(path, &len);
		assert_non_null(text);
		assert_int_equal(sscanf(strstr(text, "\"text\":\"line ") + 13, "%d", &first[i]), 1);
		free(text);
	}
	/* Newest first: current > .1 > .2 > .3, all from the end of the run. */
	assert_true(first[0] > first[1] && first[1] > first[2] && first[2] > first[3]);
	assert_true(first[3] >= 400 - 5 * 8);
	snprintf(path, sizeof(path), "%s/arc.log.4", fx->path);
	assert_int_not_equal(stat(path, &st), 0);

	/* keep lowered to 2: the next rotation removes .3 */
	assert_int_equal(logstore_set_keep(fx->ls, 2), 0);
	append_numbered(fx, "arc", 400, 410);
	snprintf(path, sizeof(path), "%s/arc.log.3", fx->path);
	assert_int_not_equal(stat(path, &st), 0);
	snprintf(path, sizeof(path), "%s/arc.log.2", fx->path);
	assert_int_equal(stat(path, &st), 0);

	assert_int_equal(logstore_remove(fx->ls, "arc"), 0);
	for (int i = 1; i <= 3; i++) {
		snprintf(path, sizeof(path), "%s/arc.log.%d", fx->path, i);
		assert_int_not_equal(stat(path, &st), 0);
	}
}

static void test_follow(void **state)
{
	struct fixture *fx = *state;
	uint64_t cursor, c2;
	char *out;
	int nums[256], next;
	size_t len, n, i;

	append_numbered(fx, "f", 0, 3);
	out = read_all(fx, "f", 0, -1, &len, &cursor);
	free(out);

	/* Nothing new. */
	assert_int_equal(logstore_follow(fx->ls, "f", &cursor, &out, &len, 0), 0);
	assert_int_equal(len, 0);
	free(out);

	/* New lines, no rotation. */
	append_numbered(fx, "f", 3, 5);
	assert_int_equal(logstore_follow(fx->ls, "f", &cursor, &out, &len, 0), 0);
	n = numbers_of(out, len, nums, 256);
	assert_int_equal(n, 2);
	assert_int_equal(nums[0], 3);
	assert_int_equal(nums[1], 4);
	free(out);

	/* One rotation: the lines now in .1 are still returned, nothing twice. */
	append_numbered(fx, "f", 5, 10);
	assert_int_equal(logstore_follow(fx->ls, "f", &cursor, &out, &len, 0), 0);
	n = numbers_of(out, len, nums, 256);
	assert_int_equal(n, 5);
	for (i = 0; i < n; i++)
		assert_int_equal(nums[i], 5 + (int)i);
	free(out);

	/* Several rotations: the lost lines are skipped, the rest come in
	 * order, and the last one is there. */
	append_numbered(fx, "f", 10, 40);
	assert_int_equal(logstore_follow(fx->ls, "f", &cursor, &out, &len, 0), 0);
	n = numbers_of(out, len, nums, 256);
	assert_true(n >= 7 && n < 30);
	for (i = 1; i < n; i++)
		assert_int_equal(nums[i], nums[i - 1] + 1);
	assert_int_equal(nums[n - 1], 39);
	free(out);

	/* A small max: at least one line per call, never more than max
	 * otherwise; walking .1 then the current file. */
	append_numbered(fx, "f", 40, 50);
	next = 40;
	for (;;) {
		assert_int_equal(logstore_follow(fx->ls, "f", &cursor, &out, &len, 200), 0);
		if (len == 0) {
			free(out);
			break;
		}
		n = numbers_of(out, len, nums, 256);
		assert_int_equal(n, 1);
		assert_true(nums[0] >= next);
		next = nums[0] + 1;
		free(out);
	}
	assert_int_equal(next, 50);

	/* Cursor 0: everything still kept. */
	c2 = 0;
	assert_int_equal(logstore_follow(fx->ls, "f", &c2, &out, &len, 0), 0);
	n = numbers_of(out, len, nums, 256);
	assert_true(n >= 7);
	assert_int_equal(nums[n - 1], 49);
	free(out);
	assert_int_equal(c2, cursor);

	/* A function without logs: nothing, cursor kept; its first lines then
	 * come from cursor 0. */
	c2 = 0;
	assert_int_equal(logstore_follow(fx->ls, "none", &c2, &out, &len, 0), 0);
	assert_int_equal(len, 0);
	assert_int_equal(c2, 0);
	free(out);
	append_numbered(fx, "none", 0, 1);
	assert_int_equal(logstore_follow(fx->ls, "none", &c2, &out, &len, 0), 0);
	n = numbers_of(out, len, nums, 256);
	assert_int_equal(n, 1);
	free(out);
}

static void test_torn_line(void **state)
{
	struct fixture *fx = *state;
	char path[200], *out, *file;
	uint64_t cursor;
	int fd, nums[16];
	size_t len, n;
	static const char torn[] = "{\"name\":\"t\",\"instance\":\"vm-1\",\"call_id\":\"c\",\"stre";

	append_numbered(fx, "t", 0, 2);
	out = read_all(fx, "t", 0, -1, &len, &cursor);
	free(out);
	snprintf(path, sizeof(path), "%s/t.log", fx->path);
	fd = open(path, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, torn, sizeof(torn) - 1), (ssize_t)sizeof(torn) - 1);
	close(fd);

	/* Readers skip it. */
	out = read_all(fx, "t", 0, -1, &len, NULL);
	assert_int_equal(numbers_of(out, len, nums, 16), 2);
	free(out);
	assert_int_equal(logstore_follow(fx->ls, "t", &cursor, &out, &len, 0), 0);
	assert_int_equal(len, 0);
	free(out);

	/* The next append cuts it, so no broken line stays in the middle. */
	append_numbered(fx, "t", 2, 3);
	file = slurp(path, &len);
	assert_non_null(file);
	assert_null(strstr(file, "\"stre{"));
	n = numbers_of(file, len, nums, 16);
	assert_int_equal(n, 3);
	free(file);
	assert_int_equal(logstore_follow(fx->ls, "t", &cursor, &out, &len, 0), 0);
	n = numbers_of(out, len, nums, 16);
	assert_int_equal(n, 1);
	assert_int_equal(nums[0], 2);
	free(out);

	/* A file that is nothing but a torn line. */
	fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, torn, sizeof(torn) - 1), (ssize_t)sizeof(torn) - 1);
	close(fd);
	append_numbered(fx, "t", 3, 4);
	out = read_all(fx, "t", 0, -1, &len, NULL);
	n = numbers_of(out, len, nums, 16);
	assert_int_equal(n, 1);
	assert_int_equal(nums[0], 3);
	free(out);
}

static void test_call_tail(void **state)
{
	struct fixture *fx = *state;
	char *out;
	size_t len;

	assert_int_equal(append(fx, "ct", "A", T0, "a1\na2"), 0);
	assert_int_equal(append(fx, "ct", "B", T0, "b1"), 0);
	assert_int_equal(append(fx, "ct", "A", T0,
				"\xe2\x82\xac"
				"3"),
			 0);
	assert_int_equal(append(fx, "ct", "AA", T0, "not A"), 0);
	assert_int_equal(append(fx, "ct", "q\"\\", T0, "quoted"), 0);
	assert_int_equal(append(fx, "ct", NULL, T0, "no call"), 0);

	assert_int_equal(logstore_call_tail(fx->ls, "ct", "A", 4096, &out, &len), 0);
	assert_string_equal(out, "a1\na2\n\xe2\x82\xac"
				 "3");
	assert_int_equal(len, strlen(out));
	free(out);
	/* The last max bytes, from a character boundary. */
	assert_int_equal(logstore_call_tail(fx->ls, "ct", "A", 5, &out, &len), 0);
	assert_string_equal(out, "\n\xe2\x82\xac"
				 "3");
	free(out);
	assert_int_equal(logstore_call_tail(fx->ls, "ct", "A", 4, &out, &len), 0);
	assert_string_equal(out, "\xe2\x82\xac"
				 "3");
	free(out);
	assert_int_equal(logstore_call_tail(fx->ls, "ct", "A", 3, &out, &len), 0);
	assert_string_equal(out, "3");
	assert_int_equal(len, 1);
	free(out);
	assert_int_equal(logstore_call_tail(fx->ls, "ct", "A", 0, &out, &len), 0);
	assert_int_equal(len, 0);
	free(out);
	assert_int_equal(logstore_call_tail(fx->ls, "ct", "q\"\\", 100, &out, &len), 0);
	assert_string_equal(out, "quoted");
	free(out);
	assert_int_equal(logstore_call_tail(fx->ls, "ct", "C", 100, &out, &len), 0);
	assert_int_equal(len, 0);
	assert_string_equal(out, "");
	free(out);
	assert_int_equal(logstore_call_tail(fx->ls, "nolog", "A", 100, &out, &len), 0);
	assert_int_equal(len, 0);
	free(out);
	assert_int_equal(logstore_call_tail(fx->ls, "ct", NULL, 100, &out, &len), -EINVAL);
}

static void test_remove(void **state)
{
	struct fixture *fx = *state;
	char path[200], *out;
	uint64_t cursor;
	struct stat st;
	int nums[64];
	size_t len, n;

	append_numbered(fx, "rm", 0, 20);
	out = read_all(fx, "rm", 0, -1, &len, &cursor);
	free(out);
	assert_int_equal(logstore_remove(fx->ls, "rm"), 0);
	snprintf(path, sizeof(path), "%s/rm.log", fx->path);
	assert_int_not_equal(stat(path, &st), 0);
	snprintf(path, sizeof(path), "%s/rm.log.1", fx->path);
	assert_int_not_equal(stat(path, &st), 0);
	out = read_all(fx, "rm", 0, -1, &len, NULL);
	assert_int_equal(len, 0);
	free(out);
	assert_int_equal(logstore_remove(fx->ls, "rm"), 0);
	assert_int_equal(logstore_remove(fx->ls, "never"), 0);

	/* A follower of the removed function sees the new function's lines
	 * from the start, once. */
	append_numbered(fx, "rm", 100, 102);
	assert_int_equal(logstore_follow(fx->ls, "rm", &cursor, &out, &len, 0), 0);
	n = numbers_of(out, len, nums, 64);
	assert_int_equal(n, 2);
	assert_int_equal(nums[0], 100);
	free(out);
	assert_int_equal(logstore_follow(fx->ls, "rm", &cursor, &out, &len, 0), 0);
	assert_int_equal(len, 0);
	free(out);
}

static void test_symlink_refused(void **state)
{
	struct fixture *fx = *state;
	char path[200];

	snprintf(path, sizeof(path), "%s/evil.log", fx->path);
	assert_int_equal(symlink("/etc/passwd", path), 0);
	assert_int_equal(append(fx, "evil", "c", T0, "x"), -ELOOP);
}

#define WRITERS 4
#define PER	300

static void *writer(void *arg)
{
	struct fixture *fx = arg;
	char text[64];
	int i;

	for (i = 0; i < PER; i++) {
		snprintf(text, sizeof(text), "w%p %d\nsecond", (void *)&i, i);
		if (append(fx, "conc", "c", T0, text) != 0)
			return (void *)1;
	}
	return NULL;
}

static void test_concurrent(void **state)
{
	struct fixture *fx = *state;
	pthread_t t[WRITERS];
	char *out, **texts;
	size_t len, n;
	void *ret;
	int i;

	for (i = 0; i < WRITERS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, writer, fx), 0);
	for (i = 0; i < WRITERS; i++) {
		assert_int_equal(pthread_join(t[i], &ret), 0);
		assert_null(ret);
	}
	out = read_all(fx, "conc", 0, -1, &len, NULL);
	texts = calloc(2 * WRITERS * PER, sizeof(*texts));
	n = texts_of(out, len, texts, 2 * WRITERS * PER);
	assert_int_equal(n, 2 * WRITERS * PER);
	/* One append's lines stay together. */
	for (i = 0; i < (int)n; i += 2)
		assert_string_equal(texts[i + 1], "second");
	free_texts(texts, n);
	free(texts);
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_errors),
		cmocka_unit_test_setup_teardown(test_append_read, setup_big, teardown),
		cmocka_unit_test_setup_teardown(test_bad_names, setup_big, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_text, setup_big, teardown),
		cmocka_unit_test_setup_teardown(test_long_lines, setup_big, teardown),
		cmocka_unit_test_setup_teardown(test_since_tail, setup_big, teardown),
		cmocka_unit_test_setup_teardown(test_rotation, setup_small, teardown),
		cmocka_unit_test_setup_teardown(test_rotation_keep, setup_small, teardown),
		cmocka_unit_test_setup_teardown(test_follow, setup_small, teardown),
		cmocka_unit_test_setup_teardown(test_torn_line, setup_big, teardown),
		cmocka_unit_test_setup_teardown(test_call_tail, setup_big, teardown),
		cmocka_unit_test_setup_teardown(test_remove, setup_small, teardown),
		cmocka_unit_test_setup_teardown(test_symlink_refused, setup_big, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent, setup_big, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
