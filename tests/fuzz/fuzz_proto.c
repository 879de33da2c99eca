/* fuzz_proto - the host-guest frame decoder (common/proto.c): a byte
 * stream is cut into frames with proto_parse_frame and each payload goes to
 * its type's decoder; the whole input is also given to every decoder as a
 * payload. Decoded views must lie inside the buffer; re-encoding a decoded
 * LOAD, INVOKE or RESULT must give the same payload back. */
#include <string.h>

#include "common/proto.h"
#include "fuzz.h"

static const uint8_t *lo, *hi; /* the buffer being decoded */

static void inside(struct proto_bytes b)
{
	FUZZ_ASSERT(b.len == 0 || (b.ptr >= lo && b.ptr + b.len <= hi));
}

static void walk_kv(const struct proto_kv *kv)
{
	struct proto_bytes k, v;
	uint32_t pos = 0, n = 0;

	while (proto_kv_next(kv, &pos, &k, &v)) {
		inside(k);
		inside(v);
		FUZZ_ASSERT(!k.len || !memchr(k.ptr, 0, k.len));
		n++;
	}
	FUZZ_ASSERT(n == kv->count);
}

/* Encodes m again and checks that its payload equals p[0..len). */
static void same_payload(ssize_t n, const uint8_t *buf, const uint8_t *p, size_t len)
{
	FUZZ_ASSERT(n == (ssize_t)(PROTO_HEADER_SIZE + len));
	FUZZ_ASSERT(memcmp(buf + PROTO_HEADER_SIZE, p, len) == 0);
}

static void decode(uint8_t type, const uint8_t *p, size_t len)
{
	static uint8_t out[PROTO_HEADER_SIZE + 4 * 1024 * 1024];
	struct proto_hello_ok hok;
	struct proto_load load;
	struct proto_invoke inv;
	struct proto_result res;
	struct proto_log log;
	struct proto_errmsg em;
	struct proto_prestart ps;
	uint32_t a, b;
	uint64_t ns;

	lo = p;
	hi = p + len;
	switch (type) {
	case PROTO_HELLO:
		proto_decode_hello(p, len, &a);
		break;
	case PROTO_HELLO_OK:
		if (proto_decode_hello_ok(p, len, &hok) == 0) {
			inside(hok.agent);
			inside(hok.agent_version);
			inside(hok.runtime);
			inside(hok.mode);
			inside(hok.handler);
		}
		break;
	case PROTO_LOAD:
		if (proto_decode_load(p, len, &load) == 0) {
			inside(load.runtime);
			inside(load.mode);
			inside(load.handler);
			inside(load.archive);
			walk_kv(&load.env);
			if (len + PROTO_HEADER_SIZE <= sizeof(out))
				same_payload(proto_encode_load(out, sizeof(out), 1, &load), out, p,
					     len);
		}
		break;
	case PROTO_LOAD_OK:
		proto_decode_load_ok(p, len, &a, &b);
		break;
	case PROTO_INVOKE:
		if (proto_decode_invoke(p, len, &inv) == 0) {
			inside(inv.payload);
			walk_kv(&inv.context);
			if (len + PROTO_HEADER_SIZE <= sizeof(out))
				same_payload(proto_encode_invoke(out, sizeof(out), 1, &inv), out, p,
					     len);
		}
		break;
	case PROTO_RESULT:
		if (proto_decode_result(p, len, &res) == 0) {
			inside(res.body);
			inside(res.error_type);
			inside(res.error_msg);
			if (len + PROTO_HEADER_SIZE <= sizeof(out))
				same_payload(proto_encode_result(out, sizeof(out), 1, &res), out, p,
					     len);
		}
		break;
	case PROTO_LOG:
		if (proto_decode_log(p, len, &log) == 0)
			inside(log.data);
		break;
	case PROTO_TIME:
		proto_decode_time(p, len, &ns);
		break;
	case PROTO_PRESTART:
		if (proto_decode_prestart(p, len, &ps) == 0)
			inside(ps.runtime);
		break;
	case PROTO_ERROR:
		if (proto_decode_error(p, len, &em) == 0)
			inside(em.message);
		break;
	default:
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t off = 0;

	/* The input as a stream of frames. */
	while (off < size) {
		struct proto_header h;
		const uint8_t *payload;
		ssize_t n = proto_parse_frame(data + off, size - off, &h, &payload);

		if (n < 0)
			break;
		FUZZ_ASSERT(n >= PROTO_HEADER_SIZE && (size_t)n <= size - off);
		FUZZ_ASSERT(payload == data + off + PROTO_HEADER_SIZE);
		FUZZ_ASSERT(h.length == (size_t)n - PROTO_HEADER_SIZE);
		FUZZ_ASSERT(h.length <= proto_max_payload(h.type));
		proto_type_name(h.type);
		decode(h.type, payload, h.length);
		off += (size_t)n;
	}
	/* The input as a payload of each type: the last byte of the buffer is
	 * the last byte libFuzzer allocated, so any over-read is caught. */
	for (unsigned t = PROTO_HELLO; t <= PROTO_ERROR; t++)
		decode((uint8_t)t, data, size);
	return 0;
}
