/* proto.c - kiln's host <-> guest wire protocol: parsing and encoding. */
#include "common/proto.h"

#include <errno.h>
#include <string.h>

#include "common/le.h"

/* ---- types ---------------------------------------------------------------- */

static const char *const proto_names[] = {
	[PROTO_HELLO] = "HELLO",       [PROTO_HELLO_OK] = "HELLO_OK", [PROTO_LOAD] = "LOAD",
	[PROTO_LOAD_OK] = "LOAD_OK",   [PROTO_INVOKE] = "INVOKE",     [PROTO_RESULT] = "RESULT",
	[PROTO_LOG] = "LOG",	       [PROTO_ENTROPY] = "ENTROPY",   [PROTO_TIME] = "TIME",
	[PROTO_ACK] = "ACK",	       [PROTO_PING] = "PING",	      [PROTO_PONG] = "PONG",
	[PROTO_ERROR] = "ERROR",       [PROTO_TRACE] = "TRACE",	      [PROTO_NET] = "NET",
	[PROTO_PRESTART] = "PRESTART",
};

bool proto_type_known(uint8_t type)
{
	return type < sizeof(proto_names) / sizeof(proto_names[0]) && proto_names[type];
}

const char *proto_type_name(uint8_t type)
{
	return proto_type_known(type) ? proto_names[type] : "UNKNOWN";
}

uint32_t proto_max_payload(uint8_t type)
{
	switch (type) {
	case PROTO_LOAD:
		return PROTO_MAX_LOAD;
	case PROTO_INVOKE:
	case PROTO_RESULT:
		return PROTO_MAX_INVOKE;
	default:
		return PROTO_MAX_DEFAULT;
	}
}

/* ---- parsing -------------------------------------------------------------- */

int proto_parse_header(const void *buf, size_t len, struct proto_header *h)
{
	const uint8_t *p = buf;

	if (len < PROTO_HEADER_SIZE)
		return -EAGAIN;
	h->magic = le32_get(p);
	h->version = p[4];
	h->type = p[5];
	h->flags = le16_get(p + 6);
	h->length = le32_get(p + 8);
	h->id = le32_get(p + 12);
	if (h->magic != PROTO_MAGIC || h->version != PROTO_VERSION)
		return -EPROTO;
	if (h->length > proto_max_payload(h->type))
		return -EMSGSIZE;
	return PROTO_HEADER_SIZE;
}

ssize_t proto_parse_frame(const void *buf, size_t len, struct proto_header *h,
			  const uint8_t **payload)
{
	int ret = proto_parse_header(buf, len, h);

	if (ret < 0)
		return ret;
	/* length <= PROTO_MAX_LOAD: no overflow. */
	if (len - PROTO_HEADER_SIZE < h->length)
		return -EAGAIN;
	*payload = (const uint8_t *)buf + PROTO_HEADER_SIZE;
	return (ssize_t)(PROTO_HEADER_SIZE + (size_t)h->length);
}

/* A cursor over a payload: every get checks the bytes left first. */
struct proto_reader {
	const uint8_t *p;
	size_t left;
	bool bad;
};

static bool proto_need(struct proto_reader *r, size_t n)
{
	if (r->bad || r->left < n) {
		r->bad = true;
		return false;
	}
	return true;
}

static uint8_t proto_get_u8(struct proto_reader *r)
{
	uint8_t v;

	if (!proto_need(r, 1))
		return 0;
	v = r->p[0];
	r->p++;
	r->left--;
	return v;
}

static uint32_t proto_get_u32(struct proto_reader *r)
{
	uint32_t v;

	if (!proto_need(r, 4))
		return 0;
	v = le32_get(r->p);
	r->p += 4;
	r->left -= 4;
	return v;
}

static uint64_t proto_get_u64(struct proto_reader *r)
{
	uint64_t v;

	if (!proto_need(r, 8))
		return 0;
	v = le64_get(r->p);
	r->p += 8;
	r->left -= 8;
	return v;
}

static struct proto_bytes proto_get_bytes(struct proto_reader *r)
{
	struct proto_bytes b = {NULL, 0};
	uint32_t n = proto_get_u32(r);

	if (!proto_need(r, n))
		return b;
	b.ptr = r->p;
	b.len = n;
	r->p += n;
	r->left -= n;
	return b;
}

/* A str: bytes without NUL (they become C strings on the receiving side). */
static struct proto_bytes proto_get_str(struct proto_reader *r)
{
	struct proto_bytes b = proto_get_bytes(r);

	if (!r->bad && b.len && memchr(b.ptr, '\0', b.len)) {
		r->bad = true;
		b.ptr = NULL;
		b.len = 0;
	}
	return b;
}

static struct proto_kv proto_get_kv(struct proto_reader *r)
{
	struct proto_kv kv = {NULL, 0, 0};
	const uint8_t *start;
	size_t before;

	kv.count = proto_get_u32(r);
	if (r->bad)
		return kv;
	start = r->p;
	before = r->left;
	/* Each pair takes at least 8 bytes: a huge count fails fast. */
	if (kv.count > r->left / 8) {
		r->bad = true;
		return kv;
	}
	for (uint32_t i = 0; i < kv.count && !r->bad; i++) {
		struct proto_bytes k = proto_get_str(r);

		proto_get_str(r);
		if (!r->bad && k.len == 0)
			r->bad = true; /* empty keys mean nothing */
	}
	if (r->bad)
		return kv;
	kv.ptr = start;
	kv.len = (uint32_t)(before - r->left);
	return kv;
}

static void proto_reader_init(struct proto_reader *r, const uint8_t *p, size_t len)
{
	r->p = p;
	r->left = len;
	r->bad = p == NULL && len != 0;
}

/* The end of every decoder: all fields read, nothing left over. */
static int proto_reader_done(const struct proto_reader *r)
{
	return r->bad || r->left != 0 ? -EBADMSG : 0;
}

int proto_decode_hello(const uint8_t *p, size_t len, uint32_t *version)
{
	struct proto_reader r;

	proto_reader_init(&r, p, len);
	*version = proto_get_u32(&r);
	return proto_reader_done(&r);
}

int proto_decode_hello_ok(const uint8_t *p, size_t len, struct proto_hello_ok *out)
{
	struct proto_reader r;

	proto_reader_init(&r, p, len);
	memset(out, 0, sizeof(*out));
	out->version = proto_get_u32(&r);
	out->agent = proto_get_str(&r);
	out->agent_version = proto_get_str(&r);
	out->generation = proto_get_u32(&r);
	out->state = proto_get_u8(&r);
	out->runtime = proto_get_str(&r);
	out->mode = proto_get_str(&r);
	out->handler = proto_get_str(&r);
	if (out->state > PROTO_FN_FAILED)
		return -EBADMSG;
	return proto_reader_done(&r);
}

int proto_decode_load(const uint8_t *p, size_t len, struct proto_load *out)
{
	struct proto_reader r;

	proto_reader_init(&r, p, len);
	memset(out, 0, sizeof(*out));
	out->runtime = proto_get_str(&r);
	out->mode = proto_get_str(&r);
	out->handler = proto_get_str(&r);
	out->init_timeout_ms = proto_get_u32(&r);
	out->memory_mb = proto_get_u32(&r);
	out->env = proto_get_kv(&r);
	out->archive = proto_get_bytes(&r);
	return proto_reader_done(&r);
}

int proto_decode_load_ok(const uint8_t *p, size_t len, uint32_t *generation, uint32_t *init_us)
{
	struct proto_reader r;

	proto_reader_init(&r, p, len);
	*generation = proto_get_u32(&r);
	*init_us = proto_get_u32(&r);
	return proto_reader_done(&r);
}

int proto_decode_invoke(const uint8_t *p, size_t len, struct proto_invoke *out)
{
	struct proto_reader r;

	proto_reader_init(&r, p, len);
	memset(out, 0, sizeof(*out));
	out->deadline_ms = proto_get_u32(&r);
	out->context = proto_get_kv(&r);
	out->payload = proto_get_bytes(&r);
	if (!r.bad && out->payload.len > PROTO_MAX_BODY)
		return -EBADMSG;
	return proto_reader_done(&r);
}

int proto_decode_result(const uint8_t *p, size_t len, struct proto_result *out)
{
	struct proto_reader r;

	proto_reader_init(&r, p, len);
	memset(out, 0, sizeof(*out));
	out->status = proto_get_u8(&r);
	out->duration_us = proto_get_u32(&r);
	out->body = proto_get_bytes(&r);
	out->error_type = proto_get_str(&r);
	out->error_msg = proto_get_str(&r);
	if (out->status > PROTO_STATUS_MAX || out->body.len > PROTO_MAX_BODY)
		return -EBADMSG;
	return proto_reader_done(&r);
}

int proto_decode_log(const uint8_t *p, size_t len, struct proto_log *out)
{
	struct proto_reader r;

	proto_reader_init(&r, p, len);
	out->stream = proto_get_u8(&r);
	out->data = proto_get_bytes(&r);
	if (out->stream != PROTO_STREAM_STDOUT && out->stream != PROTO_STREAM_STDERR)
		return -EBADMSG;
	return proto_reader_done(&r);
}

int proto_decode_time(const uint8_t *p, size_t len, uint64_t *ns)
{
	struct proto_reader r;

	proto_reader_init(&r, p, len);
	*ns = proto_get_u64(&r);
	return proto_reader_done(&r);
}

int proto_decode_prestart(const uint8_t *p, size_t len, struct proto_prestart *out)
{
	struct proto_reader r;

	proto_reader_init(&r, p, len);
	out->runtime = proto_get_str(&r);
	out->init_timeout_ms = proto_get_u32(&r);
	return proto_reader_done(&r);
}

int proto_decode_error(const uint8_t *p, size_t len, struct proto_errmsg *out)
{
	struct proto_reader r;

	proto_reader_init(&r, p, len);
	out->code = proto_get_u32(&r);
	out->message = proto_get_str(&r);
	return proto_reader_done(&r);
}

bool proto_kv_next(const struct proto_kv *kv, uint32_t *pos, struct proto_bytes *key,
		   struct proto_bytes *val)
{
	struct proto_reader r;

	if (*pos >= kv->len)
		return false;
	proto_reader_init(&r, kv->ptr + *pos, kv->len - *pos);
	*key = proto_get_str(&r);
	*val = proto_get_str(&r);
	if (r.bad)
		return false; /* cannot happen for a validated list */
	*pos = kv->len - (uint32_t)r.left;
	return true;
}

bool proto_bytes_eq(struct proto_bytes b, const char *s)
{
	size_t n = strlen(s);

	return n == b.len && (n == 0 || memcmp(b.ptr, s, n) == 0);
}

/* ---- encoding -------------------------------------------------------------- */

void proto_writer_init(struct proto_writer *w, void *buf, size_t size)
{
	w->buf = buf;
	w->size = buf ? size : 0;
	w->len = 0;
	w->frame = 0;
	w->overflow = false;
}

static uint8_t *proto_room(struct proto_writer *w, size_t n)
{
	uint8_t *p;

	if (w->overflow || w->size - w->len < n) {
		w->overflow = true;
		return NULL;
	}
	p = w->buf + w->len;
	w->len += n;
	return p;
}

void proto_put_u8(struct proto_writer *w, uint8_t v)
{
	uint8_t *p = proto_room(w, 1);

	if (p)
		p[0] = v;
}

void proto_put_u16(struct proto_writer *w, uint16_t v)
{
	uint8_t *p = proto_room(w, 2);

	if (p)
		le16_put(p, v);
}

void proto_put_u32(struct proto_writer *w, uint32_t v)
{
	uint8_t *p = proto_room(w, 4);

	if (p)
		le32_put(p, v);
}

void proto_put_u64(struct proto_writer *w, uint64_t v)
{
	proto_put_u32(w, (uint32_t)v);
	proto_put_u32(w, (uint32_t)(v >> 32));
}

void proto_put_raw(struct proto_writer *w, const void *p, size_t len)
{
	uint8_t *d;

	if (len == 0)
		return;
	d = proto_room(w, len);
	if (d)
		memcpy(d, p, len);
}

void proto_put_bytes(struct proto_writer *w, const void *p, size_t len)
{
	if (len > UINT32_MAX) {
		w->overflow = true;
		return;
	}
	proto_put_u32(w, (uint32_t)len);
	proto_put_raw(w, p, len);
}

void proto_put_str(struct proto_writer *w, const char *s)
{
	proto_put_bytes(w, s, s ? strlen(s) : 0);
}

static void proto_put_view(struct proto_writer *w, struct proto_bytes b)
{
	proto_put_bytes(w, b.ptr, b.len);
}

static void proto_put_kv(struct proto_writer *w, const struct proto_kv *kv)
{
	proto_put_u32(w, kv->count);
	proto_put_raw(w, kv->ptr, kv->len);
}

void proto_begin(struct proto_writer *w, uint8_t type, uint32_t id)
{
	w->frame = w->len;
	proto_put_u32(w, PROTO_MAGIC);
	proto_put_u8(w, PROTO_VERSION);
	proto_put_u8(w, type);
	proto_put_u16(w, 0);
	proto_put_u32(w, 0); /* length, patched by proto_end */
	proto_put_u32(w, id);
}

ssize_t proto_end(struct proto_writer *w)
{
	size_t payload;

	if (w->overflow || w->len - w->frame < PROTO_HEADER_SIZE)
		return -ENOSPC;
	payload = w->len - w->frame - PROTO_HEADER_SIZE;
	if (payload > proto_max_payload(w->buf[w->frame + 5]))
		return -EMSGSIZE;
	le32_put(w->buf + w->frame + 8, (uint32_t)payload);
	return (ssize_t)(w->len - w->frame);
}

ssize_t proto_encode_hello(void *buf, size_t size, uint32_t id, uint32_t version)
{
	struct proto_writer w;

	proto_writer_init(&w, buf, size);
	proto_begin(&w, PROTO_HELLO, id);
	proto_put_u32(&w, version);
	return proto_end(&w);
}

ssize_t proto_encode_hello_ok(void *buf, size_t size, uint32_t id, const struct proto_hello_ok *m)
{
	struct proto_writer w;

	proto_writer_init(&w, buf, size);
	proto_begin(&w, PROTO_HELLO_OK, id);
	proto_put_u32(&w, m->version);
	proto_put_view(&w, m->agent);
	proto_put_view(&w, m->agent_version);
	proto_put_u32(&w, m->generation);
	proto_put_u8(&w, m->state);
	proto_put_view(&w, m->runtime);
	proto_put_view(&w, m->mode);
	proto_put_view(&w, m->handler);
	return proto_end(&w);
}

ssize_t proto_encode_load(void *buf, size_t size, uint32_t id, const struct proto_load *m)
{
	struct proto_writer w;

	proto_writer_init(&w, buf, size);
	proto_begin(&w, PROTO_LOAD, id);
	proto_put_view(&w, m->runtime);
	proto_put_view(&w, m->mode);
	proto_put_view(&w, m->handler);
	proto_put_u32(&w, m->init_timeout_ms);
	proto_put_u32(&w, m->memory_mb);
	proto_put_kv(&w, &m->env);
	proto_put_view(&w, m->archive);
	return proto_end(&w);
}

ssize_t proto_encode_load_ok(void *buf, size_t size, uint32_t id, uint32_t generation,
			     uint32_t init_us)
{
	struct proto_writer w;

	proto_writer_init(&w, buf, size);
	proto_begin(&w, PROTO_LOAD_OK, id);
	proto_put_u32(&w, generation);
	proto_put_u32(&w, init_us);
	return proto_end(&w);
}

ssize_t proto_encode_invoke(void *buf, size_t size, uint32_t id, const struct proto_invoke *m)
{
	struct proto_writer w;

	proto_writer_init(&w, buf, size);
	proto_begin(&w, PROTO_INVOKE, id);
	proto_put_u32(&w, m->deadline_ms);
	proto_put_kv(&w, &m->context);
	proto_put_view(&w, m->payload);
	return proto_end(&w);
}

ssize_t proto_encode_result(void *buf, size_t size, uint32_t id, const struct proto_result *m)
{
	struct proto_writer w;

	proto_writer_init(&w, buf, size);
	proto_begin(&w, PROTO_RESULT, id);
	proto_put_u8(&w, m->status);
	proto_put_u32(&w, m->duration_us);
	proto_put_view(&w, m->body);
	proto_put_view(&w, m->error_type);
	proto_put_view(&w, m->error_msg);
	return proto_end(&w);
}

ssize_t proto_encode_log(void *buf, size_t size, uint32_t id, uint8_t stream, const void *data,
			 size_t len)
{
	struct proto_writer w;

	proto_writer_init(&w, buf, size);
	proto_begin(&w, PROTO_LOG, id);
	proto_put_u8(&w, stream);
	proto_put_bytes(&w, data, len);
	return proto_end(&w);
}

ssize_t proto_encode_time(void *buf, size_t size, uint32_t id, uint64_t ns)
{
	struct proto_writer w;

	proto_writer_init(&w, buf, size);
	proto_begin(&w, PROTO_TIME, id);
	proto_put_u64(&w, ns);
	return proto_end(&w);
}

ssize_t proto_encode_prestart(void *buf, size_t size, uint32_t id, const struct proto_prestart *m)
{
	struct proto_writer w;

	proto_writer_init(&w, buf, size);
	proto_begin(&w, PROTO_PRESTART, id);
	proto_put_bytes(&w, m->runtime.ptr, m->runtime.len);
	proto_put_u32(&w, m->init_timeout_ms);
	return proto_end(&w);
}

ssize_t proto_encode_raw(void *buf, size_t size, uint8_t type, uint32_t id, const void *data,
			 size_t len)
{
	struct proto_writer w;

	proto_writer_init(&w, buf, size);
	proto_begin(&w, type, id);
	proto_put_raw(&w, data, len);
	return proto_end(&w);
}

ssize_t proto_encode_error(void *buf, size_t size, uint32_t id, uint32_t code, const char *message)
{
	struct proto_writer w;

	proto_writer_init(&w, buf, size);
	proto_begin(&w, PROTO_ERROR, id);
	proto_put_u32(&w, code);
	proto_put_str(&w, message);
	return proto_end(&w);
}
