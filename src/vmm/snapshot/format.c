/* format.c - the snapshot state file: writer, verifying parser, field
 * readers, CRC32C. See format.h and docs/snapshots.md. */
#include "vmm/snapshot/format.h"

#include "common/le.h"
#include "common/reason.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SNAP_OFF_VERSION 8
#define SNAP_OFF_HDRSIZE 12
#define SNAP_OFF_BODYLEN 16
#define SNAP_OFF_CRC	 24
#define SNAP_OFF_RESV	 28

/* ---- CRC32C ----------------------------------------------------------------- */

static uint32_t snap_crc_table[256];
static bool snap_crc_ready;

static void snap_crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0x82f63b78U : c >> 1;
		snap_crc_table[i] = c;
	}
	__atomic_store_n(&snap_crc_ready, true, __ATOMIC_RELEASE);
}

#if defined(__x86_64__)
/* SSE 4.2's crc32 instruction computes this very CRC (Castagnoli,
 * reflected), eight bytes at a time: a snapshot's ~20 KiB of state is
 * checked in a few microseconds instead of some fifty. */
__attribute__((target("sse4.2"))) static uint32_t snap_crc32c_sse42(uint32_t crc, const uint8_t *p,
								    size_t len)
{
	uint64_t c = crc;

	for (; len && ((uintptr_t)p & 7); len--)
		c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
	for (; len >= 8; len -= 8, p += 8) {
		uint64_t v;

		memcpy(&v, p, sizeof(v));
		c = __builtin_ia32_crc32di(c, v);
	}
	for (; len; len--)
		c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
	return (uint32_t)c;
}
#endif

uint32_t snap_crc32c(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	crc = ~crc;
#if defined(__x86_64__)
	if (__builtin_cpu_supports("sse4.2"))
		return ~snap_crc32c_sse42(crc, p, len);
#endif
	/* Filling the table twice from two threads writes the same values. */
	if (!__atomic_load_n(&snap_crc_ready, __ATOMIC_ACQUIRE))
		snap_crc_init();
	while (len--)
		crc = snap_crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

/* ---- writer ------------------------------------------------------------------- */

int snap_writer_init(struct snap_writer *w)
{
	memset(w, 0, sizeof(*w));
	w->section = SIZE_MAX;
	w->cap = 16384;
	w->buf = calloc(1, w->cap);
	if (!w->buf) {
		w->err = -ENOMEM;
		return -ENOMEM;
	}
	w->len = SNAP_HEADER_SIZE;
	return 0;
}

void snap_writer_release(struct snap_writer *w)
{
	if (!w)
		return;
	free(w->buf);
	w->buf = NULL;
	w->len = w->cap = 0;
}

/* Makes room for `more` bytes. Returns false (and records -ENOMEM) when it cannot. */
static bool snap_reserve(struct snap_writer *w, size_t more)
{
	size_t need, cap;
	uint8_t *p;

	if (w->err || !w->buf)
		return false;
	if (more > SNAP_MAX_STATE_BYTES || w->len + more > SNAP_MAX_STATE_BYTES) {
		w->err = -EINVAL;
		return false;
	}
	need = w->len + more;
	if (need <= w->cap)
		return true;
	cap = w->cap;
	while (cap < need)
		cap *= 2;
	p = realloc(w->buf, cap);
	if (!p) {
		w->err = -ENOMEM;
		return false;
	}
	w->buf = p;
	w->cap = cap;
	return true;
}

void snap_put_bytes(struct snap_writer *w, const void *p, size_t len)
{
	if (!snap_reserve(w, len))
		return;
	if (len)
		memcpy(w->buf + w->len, p, len);
	w->len += len;
}

static void snap_put_le(struct snap_writer *w, uint64_t v, unsigned int bytes)
{
	if (!snap_reserve(w, bytes))
		return;
	le_put(w->buf + w->len, v, bytes);
	w->len += bytes;
}

void snap_put_u8(struct snap_writer *w, uint8_t v)
{
	snap_put_le(w, v, 1);
}

void snap_put_u16(struct snap_writer *w, uint16_t v)
{
	snap_put_le(w, v, 2);
}

void snap_put_u32(struct snap_writer *w, uint32_t v)
{
	snap_put_le(w, v, 4);
}

void snap_put_u64(struct snap_writer *w, uint64_t v)
{
	snap_put_le(w, v, 8);
}

void snap_begin(struct snap_writer *w, uint16_t type, uint16_t instance)
{
	if (w->err)
		return;
	if (w->section != SIZE_MAX) {
		w->err = -EINVAL; /* sections do not nest */
		return;
	}
	w->section = w->len;
	snap_put_u16(w, type);
	snap_put_u16(w, instance);
	snap_put_u32(w, 0); /* length, filled by snap_end */
}

void snap_end(struct snap_writer *w)
{
	size_t payload;

	if (w->err)
		return;
	if (w->section == SIZE_MAX) {
		w->err = -EINVAL;
		return;
	}
	payload = w->len - w->section - SNAP_SECTION_HDR;
	if (payload > UINT32_MAX) {
		w->err = -EINVAL;
		return;
	}
	le_put(w->buf + w->section + 4, payload, 4);
	w->section = SIZE_MAX;
}

void snap_put_section(struct snap_writer *w, uint16_t type, uint16_t instance, const void *p,
		      size_t len)
{
	snap_begin(w, type, instance);
	snap_put_bytes(w, p, len);
	snap_end(w);
}

int snap_writer_seal(struct snap_writer *w, uint32_t *crc)
{
	uint32_t c;

	if (w->err)
		return w->err;
	if (!w->buf || w->section != SIZE_MAX)
		return -EINVAL;
	memcpy(w->buf, SNAP_MAGIC, SNAP_MAGIC_LEN);
	le_put(w->buf + SNAP_OFF_VERSION, SNAP_FORMAT_VERSION, 4);
	le_put(w->buf + SNAP_OFF_HDRSIZE, SNAP_HEADER_SIZE, 4);
	le_put(w->buf + SNAP_OFF_BODYLEN, w->len - SNAP_HEADER_SIZE, 8);
	le_put(w->buf + SNAP_OFF_CRC, 0, 4);
	le_put(w->buf + SNAP_OFF_RESV, 0, 4);
	c = snap_crc32c(0, w->buf, w->len);
	le_put(w->buf + SNAP_OFF_CRC, c, 4);
	if (crc)
		*crc = c;
	return 0;
}

/* ---- parser ------------------------------------------------------------------- */

int snap_parse(const uint8_t *buf, size_t len, struct snap_file *f, char *why, size_t why_len)
{
	uint64_t body, off;
	uint32_t version, hdr_size, stored, crc;
	uint8_t zero[4] = {0, 0, 0, 0};
	size_t n = 0;

	memset(f, 0, sizeof(*f));
	if (len < SNAP_MAGIC_LEN || memcmp(buf, SNAP_MAGIC, SNAP_MAGIC_LEN) != 0)
		return reason_fail(why, why_len, -EINVAL,
				   "not a kiln snapshot state file (wrong magic)");
	if (len < SNAP_HEADER_SIZE)
		return reason_fail(why, why_len, -EINVAL,
				   "state file truncated: %zu bytes, the header alone is %u", len,
				   SNAP_HEADER_SIZE);
	version = (uint32_t)le_get(buf + SNAP_OFF_VERSION, 4);
	if (version != SNAP_FORMAT_VERSION)
		return reason_fail(
			why, why_len, -EINVAL,
			"snapshot format version %u is not supported (this kiln-vmm reads "
			"version %u)",
			version, SNAP_FORMAT_VERSION);
	hdr_size = (uint32_t)le_get(buf + SNAP_OFF_HDRSIZE, 4);
	if (hdr_size != SNAP_HEADER_SIZE)
		return reason_fail(why, why_len, -EINVAL, "state file header size %u, expected %u",
				   hdr_size, SNAP_HEADER_SIZE);
	body = le_get(buf + SNAP_OFF_BODYLEN, 8);
	if (body > SNAP_MAX_STATE_BYTES)
		return reason_fail(why, why_len, -EINVAL,
				   "state file body of %llu bytes is too large",
				   (unsigned long long)body);
	if (len - SNAP_HEADER_SIZE < body)
		return reason_fail(why, why_len, -EINVAL,
				   "state file truncated: %zu bytes, expected %llu", len,
				   (unsigned long long)(body + SNAP_HEADER_SIZE));
	if (len - SNAP_HEADER_SIZE > body)
		return reason_fail(why, why_len, -EINVAL, "state file has %zu bytes after its end",
				   (size_t)(len - SNAP_HEADER_SIZE - body));
	stored = (uint32_t)le_get(buf + SNAP_OFF_CRC, 4);
	crc = snap_crc32c(0, buf, SNAP_OFF_CRC);
	crc = snap_crc32c(crc, zero, sizeof(zero));
	crc = snap_crc32c(crc, buf + SNAP_OFF_RESV, len - SNAP_OFF_RESV);
	if (crc != stored)
		return reason_fail(
			why, why_len, -EINVAL,
			"state file checksum mismatch (stored %08x, computed %08x): the file "
			"is corrupted",
			stored, crc);
	/* The sections must tile the body exactly. */
	for (off = SNAP_HEADER_SIZE; off < len; n++) {
		uint64_t plen;

		if (len - off < SNAP_SECTION_HDR)
			return reason_fail(why, why_len, -EINVAL,
					   "section header at offset %llu runs past the end",
					   (unsigned long long)off);
		plen = le_get(buf + off + 4, 4);
		if (plen > len - off - SNAP_SECTION_HDR)
			return reason_fail(
				why, why_len, -EINVAL,
				"section %u at offset %llu claims %llu bytes past the end",
				(unsigned int)le_get(buf + off, 2), (unsigned long long)off,
				(unsigned long long)plen);
		off += SNAP_SECTION_HDR + plen;
	}
	f->buf = buf;
	f->len = len;
	f->version = version;
	f->crc = stored;
	f->nsections = n;
	return 0;
}

bool snap_section_at(const struct snap_file *f, size_t i, struct snap_section *s)
{
	size_t off = SNAP_HEADER_SIZE;

	if (i >= f->nsections)
		return false;
	for (;;) {
		/* snap_parse proved every header and payload lies in the buffer. */
		uint32_t plen = (uint32_t)le_get(f->buf + off + 4, 4);

		if (i-- == 0) {
			s->type = (uint16_t)le_get(f->buf + off, 2);
			s->instance = (uint16_t)le_get(f->buf + off + 2, 2);
			s->len = plen;
			s->data = f->buf + off + SNAP_SECTION_HDR;
			return true;
		}
		off += SNAP_SECTION_HDR + plen;
	}
}

bool snap_find(const struct snap_file *f, uint16_t type, uint16_t instance, struct snap_section *s)
{
	size_t off = SNAP_HEADER_SIZE;

	for (size_t i = 0; i < f->nsections; i++) {
		uint32_t plen = (uint32_t)le_get(f->buf + off + 4, 4);

		if (le_get(f->buf + off, 2) == type && le_get(f->buf + off + 2, 2) == instance) {
			s->type = type;
			s->instance = instance;
			s->len = plen;
			s->data = f->buf + off + SNAP_SECTION_HDR;
			return true;
		}
		off += SNAP_SECTION_HDR + plen;
	}
	return false;
}

/* ---- field reader --------------------------------------------------------------- */

void snap_rd_init(struct snap_rd *r, const struct snap_section *s)
{
	r->p = s->data;
	r->len = s->len;
	r->off = 0;
	r->err = false;
}

static const uint8_t *snap_take(struct snap_rd *r, size_t n)
{
	const uint8_t *p;

	if (r->err || n > r->len - r->off) {
		r->err = true;
		return NULL;
	}
	p = r->p + r->off;
	r->off += n;
	return p;
}

static uint64_t snap_get_le(struct snap_rd *r, unsigned int bytes)
{
	const uint8_t *p = snap_take(r, bytes);

	return p ? le_get(p, bytes) : 0;
}

uint8_t snap_get_u8(struct snap_rd *r)
{
	return (uint8_t)snap_get_le(r, 1);
}

uint16_t snap_get_u16(struct snap_rd *r)
{
	return (uint16_t)snap_get_le(r, 2);
}

uint32_t snap_get_u32(struct snap_rd *r)
{
	return (uint32_t)snap_get_le(r, 4);
}

uint64_t snap_get_u64(struct snap_rd *r)
{
	return snap_get_le(r, 8);
}

void snap_get_bytes(struct snap_rd *r, void *dst, size_t len)
{
	const uint8_t *p = snap_take(r, len);

	if (p)
		memcpy(dst, p, len);
	else if (len)
		memset(dst, 0, len);
}

bool snap_rd_done(const struct snap_rd *r)
{
	return !r->err && r->off == r->len;
}
