/* test_proto.c - the wire protocol's parser and encoders (common/proto.c).
 *
 * Every input that is parsed is first copied to the very end of a mapping
 * followed by a PROT_NONE guard page, so that reading one byte too far
 * crashes the test. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/proto.h"

/* ---- guarded buffers ------------------------------------------------------ */

struct guard {
	uint8_t *map;
	size_t map_len;
	uint8_t *p; /* len bytes ending at the guard page */
};

static void guard_copy(struct guard *g, const void *src, size_t len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t data_pages = (len + page - 1) / page;

	if (data_pages == 0)
		data_pages = 1;
	g->map_len = (data_pages + 1) * page;
	g->map = mmap(NULL, g->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(g->map != MAP_FAILED);
	assert_int_equal(mprotect(g->map + data_pages * page, page, PROT_NONE), 0);
	g->p = g->map + data_pages * page - len;
	if (len)
		memcpy(g->p, src, len);
}

static void guard_free(struct guard *g)
{
	munmap(g->map, g->map_len);
}

/* ---- helpers ---------------------------------------------------------------- */

static uint8_t frame_buf[2 * 1024 * 1024];

/* Parses the frame at buf[0..len) through a guarded copy; checks that it is
 * whole, of type, and returns the payload copied into out (static). */
static const uint8_t *parse_whole(const uint8_t *buf, size_t len, uint8_t type,
				  struct proto_header *h)
{
	static uint8_t out[2 * 1024 * 1024];
	const uint8_t *payload = NULL;
	struct guard g;
	ssize_t n;

	guard_copy(&g, buf, len);
	n = proto_parse_frame(g.p, len, h, &payload);
	assert_int_equal(n, (ssize_t)len);
	assert_int_equal(h->type, type);
	assert_int_equal(h->magic, PROTO_MAGIC);
	assert_int_equal(h->version, PROTO_VERSION);
	assert_int_equal(h->length, len - PROTO_HEADER_SIZE);
	assert_ptr_equal(payload, g.p + PROTO_HEADER_SIZE);
	memcpy(out, payload, h->length);
	guard_free(&g);
	return out;
}

/* Every strict prefix of a frame needs more; every strict prefix of its
 * payload is malformed for its decoder (len > 0). */
typedef int (*decode_fn)(const uint8_t *p, size_t len);

static void check_truncations(const uint8_t *buf, size_t len, decode_fn decode)
{
	for (size_t cut = 0; cut < len; cut++) {
		struct proto_header h;
		const uint8_t *payload;
		struct guard g;

		guard_copy(&g, buf, cut);
		assert_int_equal(proto_parse_frame(g.p, cut, &h, &payload), -EAGAIN);
		guard_free(&g);
	}
	if (!decode)
		return;
	for (size_t cut = 0; cut < len - PROTO_HEADER_SIZE; cut++) {
		struct guard g;

		guard_copy(&g, buf + PROTO_HEADER_SIZE, cut);
		assert_int_equal(decode(g.p, cut), -EBADMSG);
		guard_free(&g);
	}
}

/* Each encoder refuses every buffer that is too small. */
typedef ssize_t (*encode_fn)(void *buf, size_t size);

static void check_small_buffers(encode_fn enc, size_t full)
{
	for (size_t size = 0; size < full; size++)
		assert_int_equal(enc(frame_buf, size), -ENOSPC);
	assert_int_equal(enc(frame_buf, full), (ssize_t)full);
}

static struct proto_bytes S(const char *s) {
	struct proto_bytes b = {(const uint8_t *)s, (uint32_t)strlen(s)};

	return b;
}

static void
assert_view(struct proto_bytes b, const char *s)
{
	assert_int_equal(b.len, strlen(s));
	if (b.len)
		assert_memory_equal(b.ptr, s, b.len);
}

/* A kv list: count + pairs, built with the writer. */
static uint8_t kv_buf[4096];

static struct proto_kv make_kv(const char *const *pairs, uint32_t count)
{
	struct proto_writer w;
	struct proto_kv kv;

	proto_writer_init(&w, kv_buf, sizeof(kv_buf));
	for (uint32_t i = 0; i < count * 2; i++)
		proto_put_str(&w, pairs[i]);
	assert_false(w.overflow);
	kv.ptr = kv_buf;
	kv.len = (uint32_t)w.len;
	kv.count = count;
	return kv;
}

/* ---- round trips -------------------------------------------------------------- */

static int dec_hello(const uint8_t *p, size_t len)
{
	uint32_t v;

	return proto_decode_hello(p, len, &v);
}

static ssize_t enc_hello(void *buf, size_t size)
{
	return proto_encode_hello(buf, size, 7, 1);
}

static void test_hello(void **state)
{
	struct proto_header h;
	const uint8_t *p;
	uint32_t v = 0;
	ssize_t n;

	(void)state;
	n = proto_encode_hello(frame_buf, sizeof(frame_buf), 7, 1);
	assert_int_equal(n, PROTO_HEADER_SIZE + 4);
	p = parse_whole(frame_buf, (size_t)n, PROTO_HELLO, &h);
	assert_int_equal(h.id, 7);
	assert_int_equal(h.flags, 0);
	assert_int_equal(proto_decode_hello(p, h.length, &v), 0);
	assert_int_equal(v, 1);
	check_truncations(frame_buf, (size_t)n, dec_hello);
	check_small_buffers(enc_hello, (size_t)n);
	/* Trailing bytes are malformed too. */
	assert_int_equal(proto_decode_hello((const uint8_t *)"12345", 5, &v), -EBADMSG);
}

static struct proto_hello_ok hello_ok_msg(void)
{
	struct proto_hello_ok m = {
		.version = 1,
		.agent = S("kiln-init"),
		.agent_version = S("0.1"),
		.generation = 3,
		.state = PROTO_FN_READY,
		.runtime = S("python"),
		.mode = S("server"),
		.handler = S("handler.handle"),
	};

	return m;
}

static int dec_hello_ok(const uint8_t *p, size_t len)
{
	struct proto_hello_ok m;

	return proto_decode_hello_ok(p, len, &m);
}

static ssize_t enc_hello_ok(void *buf, size_t size)
{
	struct proto_hello_ok m = hello_ok_msg();

	return proto_encode_hello_ok(buf, size, 1, &m);
}

static void test_hello_ok(void **state)
{
	struct proto_hello_ok m = hello_ok_msg(), d;
	struct proto_header h;
	const uint8_t *p;
	ssize_t n;

	(void)state;
	n = proto_encode_hello_ok(frame_buf, sizeof(frame_buf), 1, &m);
	assert_true(n > 0);
	p = parse_whole(frame_buf, (size_t)n, PROTO_HELLO_OK, &h);
	assert_int_equal(proto_decode_hello_ok(p, h.length, &d), 0);
	assert_int_equal(d.version, 1);
	assert_view(d.agent, "kiln-init");
	assert_view(d.agent_version, "0.1");
	assert_int_equal(d.generation, 3);
	assert_int_equal(d.state, PROTO_FN_READY);
	assert_view(d.runtime, "python");
	assert_view(d.mode, "server");
	assert_view(d.handler, "handler.handle");
	check_truncations(frame_buf, (size_t)n, dec_hello_ok);
	check_small_buffers(enc_hello_ok, (size_t)n);
}

static const char *const env_pairs[] = {"A", "1", "LONGER_NAME", "a value with spaces", "E", ""};
static const uint8_t archive_bytes[] = {1, 2, 3, 0, 255, 4};

static struct proto_load load_msg(void)
{
	struct proto_load m = {
		.runtime = S("python"),
		.mode = S("server"),
		.handler = S("handler.handle"),
		.init_timeout_ms = 5000,
		.memory_mb = 128,
		.env = make_kv(env_pairs, 3),
		.archive = {archive_bytes, sizeof(archive_bytes)},
	};

	return m;
}

static int dec_load(const uint8_t *p, size_t len)
{
	struct proto_load m;

	return proto_decode_load(p, len, &m);
}

static ssize_t enc_load(void *buf, size_t size)
{
	struct proto_load m = load_msg();

	return proto_encode_load(buf, size, 2, &m);
}

static void test_load(void **state)
{
	struct proto_load m = load_msg(), d;
	struct proto_bytes k, v;
	struct proto_header h;
	const uint8_t *p;
	uint32_t pos = 0, i = 0;
	ssize_t n;

	(void)state;
	n = proto_encode_load(frame_buf, sizeof(frame_buf), 2, &m);
	assert_true(n > 0);
	p = parse_whole(frame_buf, (size_t)n, PROTO_LOAD, &h);
	assert_int_equal(proto_decode_load(p, h.length, &d), 0);
	assert_view(d.runtime, "python");
	assert_view(d.mode, "server");
	assert_view(d.handler, "handler.handle");
	assert_int_equal(d.init_timeout_ms, 5000);
	assert_int_equal(d.memory_mb, 128);
	assert_int_equal(d.env.count, 3);
	while (proto_kv_next(&d.env, &pos, &k, &v)) {
		assert_view(k, env_pairs[2 * i]);
		assert_view(v, env_pairs[2 * i + 1]);
		i++;
	}
	assert_int_equal(i, 3);
	assert_int_equal(d.archive.len, sizeof(archive_bytes));
	assert_memory_equal(d.archive.ptr, archive_bytes, sizeof(archive_bytes));
	check_truncations(frame_buf, (size_t)n, dec_load);
	check_small_buffers(enc_load, (size_t)n);
}

static int dec_load_ok(const uint8_t *p, size_t len)
{
	uint32_t g, u;

	return proto_decode_load_ok(p, len, &g, &u);
}

static ssize_t enc_load_ok(void *buf, size_t size)
{
	return proto_encode_load_ok(buf, size, 2, 9, 12345);
}

static void test_load_ok(void **state)
{
	struct proto_header h;
	const uint8_t *p;
	uint32_t g, u;
	ssize_t n;

	(void)state;
	n = enc_load_ok(frame_buf, sizeof(frame_buf));
	p = parse_whole(frame_buf, (size_t)n, PROTO_LOAD_OK, &h);
	assert_int_equal(proto_decode_load_ok(p, h.length, &g, &u), 0);
	assert_int_equal(g, 9);
	assert_int_equal(u, 12345);
	check_truncations(frame_buf, (size_t)n, dec_load_ok);
	check_small_buffers(enc_load_ok, (size_t)n);
}

static const char *const ctx_pairs[] = {"function_name", "echo", "request_id", "abc-123"};

static struct proto_invoke invoke_msg(void)
{
	static const char body[] = "{\"hello\": \"world\"}";
	struct proto_invoke m = {
		.deadline_ms = 3000,
		.context = make_kv(ctx_pairs, 2),
		.payload = {(const uint8_t *)body, sizeof(body) - 1},
	};

	return m;
}

static int dec_invoke(const uint8_t *p, size_t len)
{
	struct proto_invoke m;

	return proto_decode_invoke(p, len, &m);
}

static ssize_t enc_invoke(void *buf, size_t size)
{
	struct proto_invoke m = invoke_msg();

	return proto_encode_invoke(buf, size, 44, &m);
}

static void test_invoke(void **state)
{
	struct proto_invoke m = invoke_msg(), d;
	struct proto_bytes k, v;
	struct proto_header h;
	const uint8_t *p;
	uint32_t pos = 0;
	ssize_t n;

	(void)state;
	n = enc_invoke(frame_buf, sizeof(frame_buf));
	p = parse_whole(frame_buf, (size_t)n, PROTO_INVOKE, &h);
	assert_int_equal(h.id, 44);
	assert_int_equal(proto_decode_invoke(p, h.length, &d), 0);
	assert_int_equal(d.deadline_ms, 3000);
	assert_int_equal(d.context.count, 2);
	assert_true(proto_kv_next(&d.context, &pos, &k, &v));
	assert_view(k, "function_name");
	assert_view(v, "echo");
	assert_true(proto_kv_next(&d.context, &pos, &k, &v));
	assert_view(k, "request_id");
	assert_view(v, "abc-123");
	assert_false(proto_kv_next(&d.context, &pos, &k, &v));
	assert_int_equal(d.payload.len, m.payload.len);
	assert_memory_equal(d.payload.ptr, m.payload.ptr, m.payload.len);
	check_truncations(frame_buf, (size_t)n, dec_invoke);
	check_small_buffers(enc_invoke, (size_t)n);
}

static struct proto_result result_msg(void)
{
	struct proto_result m = {
		.status = PROTO_STATUS_HANDLED,
		.duration_us = 777,
		.body = S("{\"errorMessage\": \"boom\"}"),
		.error_type = S("ValueError"),
		.error_msg = S("boom"),
	};

	return m;
}

static int dec_result(const uint8_t *p, size_t len)
{
	struct proto_result m;

	return proto_decode_result(p, len, &m);
}

static ssize_t enc_result(void *buf, size_t size)
{
	struct proto_result m = result_msg();

	return proto_encode_result(buf, size, 44, &m);
}

static void test_result(void **state)
{
	struct proto_result d;
	struct proto_header h;
	const uint8_t *p;
	ssize_t n;

	(void)state;
	n = enc_result(frame_buf, sizeof(frame_buf));
	p = parse_whole(frame_buf, (size_t)n, PROTO_RESULT, &h);
	assert_int_equal(proto_decode_result(p, h.length, &d), 0);
	assert_int_equal(d.status, PROTO_STATUS_HANDLED);
	assert_int_equal(d.duration_us, 777);
	assert_view(d.body, "{\"errorMessage\": \"boom\"}");
	assert_view(d.error_type, "ValueError");
	assert_view(d.error_msg, "boom");
	check_truncations(frame_buf, (size_t)n, dec_result);
	check_small_buffers(enc_result, (size_t)n);
	/* An unknown status is malformed. */
	frame_buf[PROTO_HEADER_SIZE] = PROTO_STATUS_MAX + 1;
	assert_int_equal(proto_decode_result(frame_buf + PROTO_HEADER_SIZE, h.length, &d),
			 -EBADMSG);
}

static int dec_log(const uint8_t *p, size_t len)
{
	struct proto_log m;

	return proto_decode_log(p, len, &m);
}

static ssize_t enc_log(void *buf, size_t size)
{
	return proto_encode_log(buf, size, 44, PROTO_STREAM_STDERR, "line\n", 5);
}

static void test_log(void **state)
{
	struct proto_header h;
	struct proto_log d;
	const uint8_t *p;
	ssize_t n;

	(void)state;
	n = enc_log(frame_buf, sizeof(frame_buf));
	p = parse_whole(frame_buf, (size_t)n, PROTO_LOG, &h);
	assert_int_equal(proto_decode_log(p, h.length, &d), 0);
	assert_int_equal(d.stream, PROTO_STREAM_STDERR);
	assert_view(d.data, "line\n");
	check_truncations(frame_buf, (size_t)n, dec_log);
	check_small_buffers(enc_log, (size_t)n);
	/* Stream 3 does not exist. */
	n = proto_encode_log(frame_buf, sizeof(frame_buf), 1, 3, "x", 1);
	assert_int_equal(proto_decode_log(frame_buf + PROTO_HEADER_SIZE, (size_t)n - 16, &d),
			 -EBADMSG);
}

static int dec_time(const uint8_t *p, size_t len)
{
	uint64_t ns;

	return proto_decode_time(p, len, &ns);
}

static ssize_t enc_time(void *buf, size_t size)
{
	return proto_encode_time(buf, size, 5, 0x0123456789abcdefULL);
}

static void test_time(void **state)
{
	struct proto_header h;
	const uint8_t *p;
	uint64_t ns = 0;
	ssize_t n;

	(void)state;
	n = enc_time(frame_buf, sizeof(frame_buf));
	assert_int_equal(n, PROTO_HEADER_SIZE + 8);
	p = parse_whole(frame_buf, (size_t)n, PROTO_TIME, &h);
	assert_int_equal(proto_decode_time(p, h.length, &ns), 0);
	assert_true(ns == 0x0123456789abcdefULL);
	check_truncations(frame_buf, (size_t)n, dec_time);
	check_small_buffers(enc_time, (size_t)n);
}

static int dec_prestart(const uint8_t *p, size_t len)
{
	struct proto_prestart m;

	return proto_decode_prestart(p, len, &m);
}

static ssize_t enc_prestart(void *buf, size_t size)
{
	struct proto_prestart m = {.runtime = {(const uint8_t *)"python", 6},
				   .init_timeout_ms = 60000};

	return proto_encode_prestart(buf, size, 9, &m);
}

static void test_prestart(void **state)
{
	struct proto_prestart d;
	struct proto_header h;
	const uint8_t *p;
	ssize_t n;

	(void)state;
	n = enc_prestart(frame_buf, sizeof(frame_buf));
	assert_int_equal(n, PROTO_HEADER_SIZE + 4 + 6 + 4);
	p = parse_whole(frame_buf, (size_t)n, PROTO_PRESTART, &h);
	assert_int_equal(h.id, 9);
	assert_int_equal(proto_decode_prestart(p, h.length, &d), 0);
	assert_view(d.runtime, "python");
	assert_int_equal(d.init_timeout_ms, 60000);
	assert_string_equal(proto_type_name(PROTO_PRESTART), "PRESTART");
	check_truncations(frame_buf, (size_t)n, dec_prestart);
	check_small_buffers(enc_prestart, (size_t)n);
	/* A NUL in the runtime's name; a trailing byte. */
	{
		uint8_t nul[] = {2, 0, 0, 0, 'p', 0, 1, 0, 0, 0};
		uint8_t extra[] = {1, 0, 0, 0, 'p', 1, 0, 0, 0, 7};

		assert_int_equal(proto_decode_prestart(nul, sizeof(nul), &d), -EBADMSG);
		assert_int_equal(proto_decode_prestart(extra, sizeof(extra), &d), -EBADMSG);
		assert_int_equal(proto_decode_prestart(extra, sizeof(extra) - 1, &d), 0);
	}
}

static int dec_error(const uint8_t *p, size_t len)
{
	struct proto_errmsg m;

	return proto_decode_error(p, len, &m);
}

static ssize_t enc_error(void *buf, size_t size)
{
	return proto_encode_error(buf, size, 5, PROTO_ERR_NOT_LOADED, "no function loaded");
}

static void test_error(void **state)
{
	struct proto_errmsg d;
	struct proto_header h;
	const uint8_t *p;
	ssize_t n;

	(void)state;
	n = enc_error(frame_buf, sizeof(frame_buf));
	p = parse_whole(frame_buf, (size_t)n, PROTO_ERROR, &h);
	assert_int_equal(proto_decode_error(p, h.length, &d), 0);
	assert_int_equal(d.code, PROTO_ERR_NOT_LOADED);
	assert_view(d.message, "no function loaded");
	check_truncations(frame_buf, (size_t)n, dec_error);
	check_small_buffers(enc_error, (size_t)n);
}

/* ENTROPY, ACK, PING, PONG: raw payloads, up to the default maximum. */
static void test_raw_types(void **state)
{
	static const uint8_t types[] = {PROTO_ENTROPY, PROTO_ACK, PROTO_PING, PROTO_PONG};
	static uint8_t data[PROTO_MAX_DEFAULT + 1];

	(void)state;
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7 + 3);
	for (size_t t = 0; t < sizeof(types); t++) {
		static const size_t sizes[] = {0, 1, 4096, PROTO_MAX_DEFAULT};

		for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
			struct proto_header h;
			const uint8_t *p;
			ssize_t n = proto_encode_raw(frame_buf, sizeof(frame_buf), types[t], 9,
						     data, sizes[s]);

			assert_int_equal(n, (ssize_t)(PROTO_HEADER_SIZE + sizes[s]));
			p = parse_whole(frame_buf, (size_t)n, types[t], &h);
			if (sizes[s])
				assert_memory_equal(p, data, sizes[s]);
		}
		/* One byte above the maximum cannot be encoded... */
		assert_int_equal(proto_encode_raw(frame_buf, sizeof(frame_buf), types[t], 9, data,
						  PROTO_MAX_DEFAULT + 1),
				 -EMSGSIZE);
	}
	/* Short PONG truncations (a big one would take too long byte by byte). */
	{
		ssize_t n =
			proto_encode_raw(frame_buf, sizeof(frame_buf), PROTO_PONG, 1, data, 100);

		check_truncations(frame_buf, (size_t)n, NULL);
	}
}

/* ---- headers ------------------------------------------------------------------------ */

static void put_header(uint8_t *b, uint32_t magic, uint8_t version, uint8_t type, uint32_t length,
		       uint32_t id)
{
	struct proto_writer w;

	proto_writer_init(&w, b, PROTO_HEADER_SIZE);
	proto_put_u32(&w, magic);
	proto_put_u8(&w, version);
	proto_put_u8(&w, type);
	proto_put_u16(&w, 0);
	proto_put_u32(&w, length);
	proto_put_u32(&w, id);
	assert_false(w.overflow);
}

static int parse_guarded_header(const uint8_t *b, struct proto_header *h)
{
	struct guard g;
	int ret;

	guard_copy(&g, b, PROTO_HEADER_SIZE);
	ret = proto_parse_header(g.p, PROTO_HEADER_SIZE, h);
	guard_free(&g);
	return ret;
}

static void test_header_limits(void **state)
{
	struct proto_header h;
	uint8_t b[PROTO_HEADER_SIZE];

	(void)state;
	/* 4 GiB - 1 is too big for every type, known or not. */
	for (unsigned int t = 0; t < 256; t++) {
		put_header(b, PROTO_MAGIC, PROTO_VERSION, (uint8_t)t, UINT32_MAX, 77);
		assert_int_equal(parse_guarded_header(b, &h), -EMSGSIZE);
		assert_int_equal(h.id, 77); /* still there for the ERROR reply */
		assert_int_equal(h.type, t);
	}
	/* The per-type maxima, exactly. */
	put_header(b, PROTO_MAGIC, PROTO_VERSION, PROTO_LOAD, PROTO_MAX_LOAD, 1);
	assert_int_equal(parse_guarded_header(b, &h), PROTO_HEADER_SIZE);
	put_header(b, PROTO_MAGIC, PROTO_VERSION, PROTO_LOAD, PROTO_MAX_LOAD + 1, 1);
	assert_int_equal(parse_guarded_header(b, &h), -EMSGSIZE);
	put_header(b, PROTO_MAGIC, PROTO_VERSION, PROTO_INVOKE, PROTO_MAX_INVOKE, 1);
	assert_int_equal(parse_guarded_header(b, &h), PROTO_HEADER_SIZE);
	put_header(b, PROTO_MAGIC, PROTO_VERSION, PROTO_INVOKE, PROTO_MAX_INVOKE + 1, 1);
	assert_int_equal(parse_guarded_header(b, &h), -EMSGSIZE);
	put_header(b, PROTO_MAGIC, PROTO_VERSION, PROTO_RESULT, PROTO_MAX_INVOKE, 1);
	assert_int_equal(parse_guarded_header(b, &h), PROTO_HEADER_SIZE);
	put_header(b, PROTO_MAGIC, PROTO_VERSION, PROTO_PING, PROTO_MAX_DEFAULT, 1);
	assert_int_equal(parse_guarded_header(b, &h), PROTO_HEADER_SIZE);
	put_header(b, PROTO_MAGIC, PROTO_VERSION, PROTO_PING, PROTO_MAX_DEFAULT + 1, 1);
	assert_int_equal(parse_guarded_header(b, &h), -EMSGSIZE);
	put_header(b, PROTO_MAGIC, PROTO_VERSION, PROTO_HELLO, PROTO_MAX_INVOKE, 1);
	assert_int_equal(parse_guarded_header(b, &h), -EMSGSIZE);
}

static void test_header_bad(void **state)
{
	struct proto_header h;
	uint8_t b[PROTO_HEADER_SIZE];

	(void)state;
	put_header(b, PROTO_MAGIC ^ 1, PROTO_VERSION, PROTO_PING, 0, 1);
	assert_int_equal(parse_guarded_header(b, &h), -EPROTO);
	put_header(b, 0x20544547 /* "GET " */, PROTO_VERSION, PROTO_PING, 0, 1);
	assert_int_equal(parse_guarded_header(b, &h), -EPROTO);
	put_header(b, PROTO_MAGIC, 0, PROTO_PING, 0, 1);
	assert_int_equal(parse_guarded_header(b, &h), -EPROTO);
	put_header(b, PROTO_MAGIC, PROTO_VERSION + 1, PROTO_PING, 0, 1);
	assert_int_equal(parse_guarded_header(b, &h), -EPROTO);
	/* Bad magic wins over a bad length: both end the stream anyway. */
	put_header(b, 0, 9, PROTO_PING, UINT32_MAX, 1);
	assert_int_equal(parse_guarded_header(b, &h), -EPROTO);
	/* Flags are ignored. */
	put_header(b, PROTO_MAGIC, PROTO_VERSION, PROTO_PING, 0, 1);
	b[6] = 0xff;
	assert_int_equal(parse_guarded_header(b, &h), PROTO_HEADER_SIZE);
	assert_int_equal(h.flags, 0xff);
}

static void test_unknown_types(void **state)
{
	uint8_t b[PROTO_HEADER_SIZE + 8];
	struct proto_header h;
	const uint8_t *payload;
	unsigned int known = 0;

	(void)state;
	for (unsigned int t = 0; t < 256; t++) {
		if (proto_type_known((uint8_t)t)) {
			known++;
			assert_string_not_equal(proto_type_name((uint8_t)t), "UNKNOWN");
			continue;
		}
		assert_string_equal(proto_type_name((uint8_t)t), "UNKNOWN");
		assert_int_equal(proto_max_payload((uint8_t)t), PROTO_MAX_DEFAULT);
		/* A sane length parses: the payload can be skipped. */
		put_header(b, PROTO_MAGIC, PROTO_VERSION, (uint8_t)t, 8, 3);
		memset(b + PROTO_HEADER_SIZE, 0xaa, 8);
		assert_int_equal(proto_parse_frame(b, sizeof(b), &h, &payload), (ssize_t)sizeof(b));
		assert_false(proto_type_known(h.type));
	}
	assert_int_equal(known, 16); /* HELLO .. PRESTART */
}

/* ---- malformed payloads ------------------------------------------------------------ */

static void test_lengths_past_end(void **state)
{
	struct proto_writer w;
	struct proto_load ld;
	struct proto_invoke inv;
	struct proto_errmsg em;
	uint8_t b[256];
	struct guard g;

	(void)state;
	/* A str announcing more than the payload holds. */
	proto_writer_init(&w, b, sizeof(b));
	proto_put_u32(&w, 1000);
	proto_put_raw(&w, "python", 6);
	guard_copy(&g, b, w.len);
	assert_int_equal(proto_decode_load(g.p, w.len, &ld), -EBADMSG);
	guard_free(&g);

	/* 4 GiB - 1 as a str length. */
	proto_writer_init(&w, b, sizeof(b));
	proto_put_u32(&w, PROTO_ERR_BUSY);
	proto_put_u32(&w, UINT32_MAX);
	proto_put_raw(&w, "abc", 3);
	guard_copy(&g, b, w.len);
	assert_int_equal(proto_decode_error(g.p, w.len, &em), -EBADMSG);
	guard_free(&g);

	/* A kv count far above what the bytes could hold. */
	proto_writer_init(&w, b, sizeof(b));
	proto_put_u32(&w, 100);	       /* deadline */
	proto_put_u32(&w, 0x10000000); /* count */
	proto_put_str(&w, "k");
	proto_put_str(&w, "v");
	proto_put_bytes(&w, "x", 1);
	guard_copy(&g, b, w.len);
	assert_int_equal(proto_decode_invoke(g.p, w.len, &inv), -EBADMSG);
	guard_free(&g);

	/* A kv count one above the pairs present. */
	proto_writer_init(&w, b, sizeof(b));
	proto_put_u32(&w, 100);
	proto_put_u32(&w, 2);
	proto_put_str(&w, "k");
	proto_put_str(&w, "v");
	proto_put_bytes(&w, "x", 1);
	guard_copy(&g, b, w.len);
	assert_int_equal(proto_decode_invoke(g.p, w.len, &inv), -EBADMSG);
	guard_free(&g);

	/* An empty key. */
	proto_writer_init(&w, b, sizeof(b));
	proto_put_u32(&w, 100);
	proto_put_u32(&w, 1);
	proto_put_str(&w, "");
	proto_put_str(&w, "v");
	proto_put_bytes(&w, "x", 1);
	assert_int_equal(proto_decode_invoke(b, w.len, &inv), -EBADMSG);

	/* A NUL inside a str. */
	proto_writer_init(&w, b, sizeof(b));
	proto_put_u32(&w, 1);
	proto_put_bytes(&w, "a\0b", 3);
	assert_int_equal(proto_decode_error(b, w.len, &em), -EBADMSG);
	/* ... but bytes may hold anything. */
	proto_writer_init(&w, b, sizeof(b));
	proto_put_u32(&w, 0);
	proto_put_u32(&w, 0);
	proto_put_bytes(&w, "a\0b", 3);
	assert_int_equal(proto_decode_invoke(b, w.len, &inv), 0);
	assert_int_equal(inv.payload.len, 3);

	/* NULL with length 0 is an empty (malformed) payload, not a crash. */
	assert_int_equal(proto_decode_invoke(NULL, 0, &inv), -EBADMSG);
	assert_int_equal(proto_decode_load(NULL, 0, &ld), -EBADMSG);
}

static void test_invoke_body_limit(void **state)
{
	struct proto_invoke inv = {0}, d;
	uint8_t *body = calloc(1, PROTO_MAX_BODY + 1);
	uint8_t *buf = malloc(PROTO_MAX_INVOKE + PROTO_HEADER_SIZE);
	ssize_t n;

	(void)state;
	assert_non_null(body);
	assert_non_null(buf);
	inv.payload.ptr = body;
	inv.payload.len = PROTO_MAX_BODY;
	n = proto_encode_invoke(buf, PROTO_MAX_INVOKE + PROTO_HEADER_SIZE, 1, &inv);
	assert_true(n > 0);
	assert_int_equal(proto_decode_invoke(buf + PROTO_HEADER_SIZE, (size_t)n - 16, &d), 0);
	/* One byte more fits the frame but not the body limit. */
	inv.payload.len = PROTO_MAX_BODY + 1;
	n = proto_encode_invoke(buf, PROTO_MAX_INVOKE + PROTO_HEADER_SIZE, 1, &inv);
	assert_true(n > 0);
	assert_int_equal(proto_decode_invoke(buf + PROTO_HEADER_SIZE, (size_t)n - 16, &d),
			 -EBADMSG);
	free(body);
	free(buf);
}

/* Two frames back to back: the first parse consumes exactly one. */
static void test_stream_of_frames(void **state)
{
	struct proto_writer w;
	struct proto_header h;
	const uint8_t *payload;
	ssize_t n1, n2;

	(void)state;
	proto_writer_init(&w, frame_buf, sizeof(frame_buf));
	proto_begin(&w, PROTO_PING, 1);
	proto_put_raw(&w, "abc", 3);
	n1 = proto_end(&w);
	proto_begin(&w, PROTO_PING, 2);
	proto_put_raw(&w, "defg", 4);
	n2 = proto_end(&w);
	assert_int_equal(n1, 19);
	assert_int_equal(n2, 20);
	assert_int_equal(proto_parse_frame(frame_buf, w.len, &h, &payload), 19);
	assert_int_equal(h.id, 1);
	assert_memory_equal(payload, "abc", 3);
	assert_int_equal(proto_parse_frame(frame_buf + 19, w.len - 19, &h, &payload), 20);
	assert_int_equal(h.id, 2);
	assert_memory_equal(payload, "defg", 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hello),
		cmocka_unit_test(test_hello_ok),
		cmocka_unit_test(test_load),
		cmocka_unit_test(test_load_ok),
		cmocka_unit_test(test_invoke),
		cmocka_unit_test(test_result),
		cmocka_unit_test(test_log),
		cmocka_unit_test(test_time),
		cmocka_unit_test(test_prestart),
		cmocka_unit_test(test_error),
		cmocka_unit_test(test_raw_types),
		cmocka_unit_test(test_header_limits),
		cmocka_unit_test(test_header_bad),
		cmocka_unit_test(test_unknown_types),
		cmocka_unit_test(test_lengths_past_end),
		cmocka_unit_test(test_invoke_body_limit),
		cmocka_unit_test(test_stream_of_frames),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
