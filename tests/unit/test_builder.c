/* test_builder.c - the builder's conversation, archive and cache
 * (daemon/builder.c). The agent is a thread on a unix socket that speaks
 * the VM side: the vsock handshake, then frames. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/archive.h"
#include "common/proto.h"
#include "daemon/agentconn.h"
#include "daemon/builder.h"

/* ---- a fake agent --------------------------------------------------------------------- */

enum fake_answer {
	ANSWER_EXE,	/* LOAD_OK, a LOG line, RESULT OK "\x7fELF..." */
	ANSWER_FAILED,	/* a LOG line, RESULT UNHANDLED with a message */
	ANSWER_REFUSED, /* ERROR to the LOAD */
	ANSWER_CLOSE,	/* closes after reading the frames */
	ANSWER_SILENT,	/* reads, answers nothing, waits to be closed */
};

struct fake {
	int listen_fd;
	char path[108];
	enum fake_answer answer;
	pthread_t thread;
	/* what it saw */
	char handler[256];
	char runtime[32];
	size_t archive_len;
	uint32_t deadline_ms;
};

static ssize_t read_full(int fd, void *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = read(fd, (uint8_t *)buf + got, n - got);
		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

static void send_frame(int fd, const void *buf, ssize_t n)
{
	assert_true(n > 0);
	assert_int_equal(write(fd, buf, (size_t)n), n);
}

/* Reads one frame into a new buffer (header included). */
static uint8_t *read_frame(int fd, struct proto_header *h, const uint8_t **payload)
{
	uint8_t head[PROTO_HEADER_SIZE], *buf;

	if (read_full(fd, head, sizeof(head)) < 0)
		return NULL;
	assert_int_equal(proto_parse_header(head, sizeof(head), h), PROTO_HEADER_SIZE);
	buf = malloc(PROTO_HEADER_SIZE + h->length + 1);
	assert_non_null(buf);
	memcpy(buf, head, sizeof(head));
	if (h->length)
		assert_true(read_full(fd, buf + PROTO_HEADER_SIZE, h->length) >= 0);
	*payload = buf + PROTO_HEADER_SIZE;
	return buf;
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	uint8_t out[4096];
	char line[32];
	size_t n = 0;
	int fd = accept(f->listen_fd, NULL, NULL);

	assert_true(fd >= 0);
	while (n < sizeof(line) - 1 && read(fd, line + n, 1) == 1 && line[n] != '\n')
		n++;
	line[n] = 0;
	assert_string_equal(line, "CONNECT 1024");
	assert_int_equal(write(fd, "OK 1\n", 5), 5);
	for (;;) {
		struct proto_header h;
		const uint8_t *p;
		uint8_t *frame = read_frame(fd, &h, &p);

		if (!frame)
			break;
		if (h.type == PROTO_LOAD) {
			struct proto_load ld;
			assert_int_equal(proto_decode_load(p, h.length, &ld), 0);
			snprintf(f->handler, sizeof(f->handler), "%.*s", (int)ld.handler.len,
				 (const char *)ld.handler.ptr);
			snprintf(f->runtime, sizeof(f->runtime), "%.*s", (int)ld.runtime.len,
				 (const char *)ld.runtime.ptr);
			f->archive_len = ld.archive.len;
			if (f->answer == ANSWER_REFUSED)
				send_frame(fd, out,
					   proto_encode_error(out, sizeof(out), h.id, 1,
							      "bad archive: nope"));
			else if (f->answer == ANSWER_EXE)
				send_frame(fd, out,
					   proto_encode_load_ok(out, sizeof(out), h.id, 1, 0));
		} else if (h.type == PROTO_INVOKE) {
			struct proto_invoke inv;
			assert_int_equal(proto_decode_invoke(p, h.length, &inv), 0);
			f->deadline_ms = inv.deadline_ms;
			if (f->answer == ANSWER_EXE || f->answer == ANSWER_FAILED) {
				static const char msg[] = "build: rustc main.rs\n";
				send_frame(fd, out,
					   proto_encode_log(out, sizeof(out), h.id,
							    PROTO_STREAM_STDERR, msg,
							    sizeof(msg) - 1));
			}
			if (f->answer == ANSWER_EXE) {
				struct proto_result res = {.status = PROTO_STATUS_OK};
				res.body.ptr = (const uint8_t *)"\x7f"
								"ELF-exe";
				res.body.len = 8;
				send_frame(fd, out,
					   proto_encode_result(out, sizeof(out), h.id, &res));
			} else if (f->answer == ANSWER_FAILED) {
				struct proto_result res = {.status = PROTO_STATUS_UNHANDLED};
				res.error_type.ptr = (const uint8_t *)"Runtime.ExitError";
				res.error_type.len = 17;
				res.error_msg.ptr =
					(const uint8_t *)"error[E0308]: mismatched types";
				res.error_msg.len = 30;
				send_frame(fd, out,
					   proto_encode_result(out, sizeof(out), h.id, &res));
			} else if (f->answer == ANSWER_CLOSE) {
				free(frame);
				break;
			}
		}
		free(frame);
	}
	close(fd);
	return NULL;
}

static void fake_start(struct fake *f, enum fake_answer answer)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};

	memset(f, 0, sizeof(*f));
	f->answer = answer;
	snprintf(f->path, sizeof(f->path), "/tmp/kiln-test-builder-%d.sock", (int)getpid());
	unlink(f->path);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->path);
	f->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(f->listen_fd >= 0);
	assert_int_equal(bind(f->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(f->listen_fd, 1), 0);
	assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

static void fake_stop(struct fake *f)
{
	pthread_join(f->thread, NULL);
	close(f->listen_fd);
	unlink(f->path);
}

struct logged {
	char text[256];
	size_t len;
};

static void collect(void *opaque, const void *data, size_t len)
{
	struct logged *l = opaque;

	if (l->len + len < sizeof(l->text)) {
		memcpy(l->text + l->len, data, len);
		l->len += len;
		l->text[l->len] = 0;
	}
}

/* Runs one build against a fake agent answering `answer`. */
static int run_build(struct fake *f, enum fake_answer answer, int timeout_ms, struct logged *l,
		     uint8_t **exe, size_t *exe_len, char *err, size_t esz)
{
	static const uint8_t source[] = {'K', 'L', 'N', 'A', 0, 0, 0, 0};
	struct agentconn *c;
	int r;

	fake_start(f, answer);
	assert_int_equal(agentconn_open(f->path, 1024, &c), 0);
	r = builder_run(c, BUILDER_SCRIPT " rust release", source, sizeof(source), timeout_ms,
			collect, l, exe, exe_len, err, esz);
	agentconn_destroy(c); /* the silent agent's read ends here */
	fake_stop(f);
	return r;
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_command(void **state)
{
	char buf[256];

	(void)state;
	assert_int_equal(builder_command("rust", true, buf, sizeof(buf)), 0);
	assert_string_equal(buf, BUILDER_SCRIPT " rust release");
	assert_int_equal(builder_command("c", false, buf, sizeof(buf)), 0);
	assert_string_equal(buf, BUILDER_SCRIPT " c debug");
	assert_int_equal(builder_command("python", true, buf, sizeof(buf)), -EINVAL);
	assert_int_equal(builder_command("c; rm -rf /", true, buf, sizeof(buf)), -EINVAL);
	assert_int_equal(builder_command("c", true, buf, 10), -ENOSPC);
}

static void test_run_gives_the_executable(void **state)
{
	struct fake f;
	struct logged l = {0};
	uint8_t *exe = NULL;
	size_t exe_len = 0;
	char err[256] = "";

	(void)state;
	assert_int_equal(run_build(&f, ANSWER_EXE, 60000, &l, &exe, &exe_len, err, sizeof(err)), 0);
	assert_int_equal(exe_len, 8);
	assert_memory_equal(exe,
			    "\x7f"
			    "ELF-exe",
			    8);
	free(exe);
	/* exec mode, the script's command line, the source, the deadline */
	assert_string_equal(f.runtime, "builder");
	assert_string_equal(f.handler, BUILDER_SCRIPT " rust release");
	assert_int_equal(f.archive_len, 8);
	assert_int_equal(f.deadline_ms, 60000);
	assert_string_equal(l.text, "build: rustc main.rs\n");
}

static void test_run_failures(void **state)
{
	struct fake f;
	struct logged l = {0};
	uint8_t *exe = NULL;
	size_t exe_len = 0;
	char err[256] = "";

	(void)state;
	/* The compiler's message, and its output in the log. */
	assert_int_equal(run_build(&f, ANSWER_FAILED, 60000, &l, &exe, &exe_len, err, sizeof(err)),
			 -ENOEXEC);
	assert_non_null(strstr(err, "the build failed: error[E0308]: mismatched types"));
	assert_string_equal(l.text, "build: rustc main.rs\n");
	assert_null(exe);
	/* The agent refuses the LOAD. */
	assert_int_equal(run_build(&f, ANSWER_REFUSED, 60000, &l, &exe, &exe_len, err, sizeof(err)),
			 -ENOEXEC);
	assert_non_null(strstr(err, "refused the source: bad archive: nope"));
	/* The agent goes away. */
	assert_true(run_build(&f, ANSWER_CLOSE, 60000, &l, &exe, &exe_len, err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "went away"));
	assert_null(exe);
	/* It never answers: the wait ends (the deadline plus the agent's grace). */
	assert_int_equal(run_build(&f, ANSWER_SILENT, -29900, &l, &exe, &exe_len, err, sizeof(err)),
			 -ETIMEDOUT);
	assert_non_null(strstr(err, "did not answer"));
	assert_null(exe);
}

static void test_archive_of_the_executable(void **state)
{
	static const uint8_t exe[] = "\x7f"
				     "ELF...";
	struct archive_reader r;
	struct archive_entry e;
	uint8_t *out;
	size_t len;

	(void)state;
	assert_int_equal(builder_archive(exe, sizeof(exe), &out, &len), 0);
	assert_int_equal(archive_open(&r, out, len), 0);
	assert_int_equal(archive_next(&r, &e), 1);
	assert_int_equal(e.kind, ARCHIVE_FILE);
	assert_int_equal(e.mode, 0755);
	assert_int_equal(e.path_len, 9);
	assert_memory_equal(e.path, "bootstrap", 9);
	assert_int_equal(e.size, sizeof(exe));
	assert_int_equal(archive_next(&r, &e), 0);
	free(out);
	assert_int_equal(builder_archive(exe, 0, &out, &len), -EINVAL);
}

static void test_cache_key(void **state)
{
	char a[65], b[65];

	(void)state;
	assert_int_equal(builder_cache_key("img", "rust", true, "src", 3, a), 0);
	assert_int_equal(strlen(a), 64);
	assert_int_equal(builder_cache_key("img", "rust", true, "src", 3, b), 0);
	assert_string_equal(a, b);
	/* each input changes it */
	assert_int_equal(builder_cache_key("img2", "rust", true, "src", 3, b), 0);
	assert_string_not_equal(a, b);
	assert_int_equal(builder_cache_key("img", "c", true, "src", 3, b), 0);
	assert_string_not_equal(a, b);
	assert_int_equal(builder_cache_key("img", "rust", false, "src", 3, b), 0);
	assert_string_not_equal(a, b);
	assert_int_equal(builder_cache_key("img", "rust", true, "srd", 3, b), 0);
	assert_string_not_equal(a, b);
	/* no two inputs run together the same way */
	assert_int_equal(builder_cache_key("im", "grust", true, "src", 3, b), 0);
	assert_string_not_equal(a, b);
}

static void write_file(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	close(fd);
}

static void test_cache(void **state)
{
	static const uint8_t exe[] = "\x7f"
				     "ELF cached";
	char dir[] = "/tmp/kiln-test-builder-XXXXXX", path[PATH_MAX], key[65];
	uint8_t *arch, *got;
	size_t len, got_len;
	struct archive_entry two[2] = {
		{.kind = ARCHIVE_FILE,
		 .mode = 0755,
		 .path = "bootstrap",
		 .path_len = 9,
		 .data = exe,
		 .size = sizeof(exe)},
		{.kind = ARCHIVE_FILE,
		 .mode = 0644,
		 .path = "extra",
		 .path_len = 5,
		 .data = exe,
		 .size = sizeof(exe)},
	};

	(void)state;
	assert_non_null(mkdtemp(dir));
	assert_int_equal(builder_cache_key("img", "c", true, "x", 1, key), 0);
	assert_int_equal(builder_cache_get(dir, key, &got, &got_len), -ENOENT);
	assert_int_equal(builder_archive(exe, sizeof(exe), &arch, &len), 0);
	assert_int_equal(builder_cache_put(dir, key, arch, len), 0);
	assert_int_equal(builder_cache_get(dir, key, &got, &got_len), 0);
	assert_int_equal(got_len, len);
	assert_memory_equal(got, arch, len);
	free(got);
	snprintf(path, sizeof(path), "%s/builds/%s", dir, key);

	/* Damaged: a byte past the end, a cut, another archive. Each is
	 * refused and removed. */
	{
		uint8_t *longer = malloc(len + 1);
		assert_non_null(longer);
		memcpy(longer, arch, len);
		longer[len] = 0;
		write_file(path, longer, len + 1);
		free(longer);
	}
	assert_int_equal(builder_cache_get(dir, key, &got, &got_len), -EBADMSG);
	assert_int_equal(access(path, F_OK), -1);
	write_file(path, arch, len - 3);
	assert_int_equal(builder_cache_get(dir, key, &got, &got_len), -EBADMSG);
	assert_int_equal(access(path, F_OK), -1);
	free(arch);
	assert_int_equal(archive_write(two, 2, &arch, &len), 0);
	write_file(path, arch, len);
	assert_int_equal(builder_cache_get(dir, key, &got, &got_len), -EBADMSG);
	free(arch);
	two[0].path = "bootstra";
	two[0].path_len = 8;
	assert_int_equal(archive_write(two, 1, &arch, &len), 0);
	write_file(path, arch, len);
	assert_int_equal(builder_cache_get(dir, key, &got, &got_len), -EBADMSG);
	free(arch);
	/* A symbolic link is not followed. */
	assert_int_equal(symlink("/etc/passwd", path), 0);
	assert_true(builder_cache_get(dir, key, &got, &got_len) < 0);
	unlink(path);
	snprintf(path, sizeof(path), "%s/builds", dir);
	rmdir(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_command),
		cmocka_unit_test(test_run_gives_the_executable),
		cmocka_unit_test(test_run_failures),
		cmocka_unit_test(test_archive_of_the_executable),
		cmocka_unit_test(test_cache_key),
		cmocka_unit_test(test_cache),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
