/* test_snapshot_format.c - the snapshot state file (format.c): round trip,
 * CRC32C, refusal of every truncation and every flipped byte, section
 * lengths past the end, bounded field readers. Parsed buffers end at a page
 * boundary followed by an inaccessible page, so any over-read crashes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm/snapshot/format.h"

/* A copy of buf[0..len) that ends right before a PROT_NONE page. */
struct guarded {
	uint8_t *map;
	size_t map_len;
	uint8_t *p;
};

static void guarded_make(struct guarded *g, const uint8_t *buf, size_t len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t data_pages = (len + page - 1) / page + 1;

	g->map_len = (data_pages + 1) * page;
	g->map = mmap(NULL, g->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(g->map != MAP_FAILED);
	assert_int_equal(mprotect(g->map + data_pages * page, page, PROT_NONE), 0);
	g->p = g->map + data_pages * page - len;
	if (len)
		memcpy(g->p, buf, len);
}

static void guarded_free(struct guarded *g)
{
	munmap(g->map, g->map_len);
}

/* A small file with a few sections of different shapes. */
static void build_sample(struct snap_writer *w, uint32_t *crc)
{
	static const uint8_t blob[5] = {1, 2, 3, 4, 5};

	assert_int_equal(snap_writer_init(w), 0);
	snap_begin(w, SNAP_SEC_META, 0);
	snap_put_u64(w, 128ULL << 20);
	snap_put_u32(w, 2);
	snap_put_u16(w, 0xbeef);
	snap_put_u8(w, 0x7f);
	snap_end(w);
	snap_put_section(w, SNAP_SEC_VCPU_REGS, 1, blob, sizeof(blob));
	snap_put_section(w, SNAP_SEC_CTL, 0, NULL, 0); /* empty payload */
	snap_put_section(w, SNAP_SEC_VCPU_REGS, 0, blob, 3);
	assert_int_equal(snap_writer_seal(w, crc), 0);
}

static void test_crc32c_known_vector(void **state)
{
	(void)state;
	assert_int_equal(snap_crc32c(0, "123456789", 9), 0xe3069283U);
	/* Continuing over two halves gives the CRC of the whole. */
	assert_int_equal(snap_crc32c(snap_crc32c(0, "1234", 4), "56789", 5), 0xe3069283U);
	assert_int_equal(snap_crc32c(0, "", 0), 0);
}

/* The bit-at-a-time definition, to check snap_crc32c's fast paths against. */
static uint32_t crc32c_bitwise(uint32_t crc, const uint8_t *p, size_t len)
{
	crc = ~crc;
	while (len--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = (crc & 1) ? (crc >> 1) ^ 0x82f63b78U : crc >> 1;
	}
	return ~crc;
}

static void test_crc32c_any_length_and_alignment(void **state)
{
	static uint8_t buf[70000];
	uint32_t seed = 12345;

	(void)state;
	for (size_t i = 0; i < sizeof(buf); i++) {
		seed = seed * 1103515245U + 12345U;
		buf[i] = (uint8_t)(seed >> 16);
	}
	for (size_t off = 0; off < 9; off++)
		for (size_t len = 0; len < 80; len++)
			assert_int_equal(snap_crc32c(7, buf + off, len),
					 crc32c_bitwise(7, buf + off, len));
	assert_int_equal(snap_crc32c(0, buf + 3, sizeof(buf) - 3),
			 crc32c_bitwise(0, buf + 3, sizeof(buf) - 3));
}

static void test_round_trip(void **state)
{
	struct snap_writer w;
	struct snap_file f;
	struct snap_section s;
	struct snap_rd r;
	struct guarded g;
	uint32_t crc;
	char why[256];

	(void)state;
	build_sample(&w, &crc);
	guarded_make(&g, w.buf, w.len);
	assert_int_equal(snap_parse(g.p, w.len, &f, why, sizeof(why)), 0);
	assert_int_equal(f.nsections, 4);
	assert_int_equal(f.crc, crc);
	assert_int_equal(f.version, SNAP_FORMAT_VERSION);
	assert_memory_equal(g.p, SNAP_MAGIC, SNAP_MAGIC_LEN);

	assert_true(snap_find(&f, SNAP_SEC_META, 0, &s));
	snap_rd_init(&r, &s);
	assert_int_equal(snap_get_u64(&r), 128ULL << 20);
	assert_int_equal(snap_get_u32(&r), 2);
	assert_int_equal(snap_get_u16(&r), 0xbeef);
	assert_int_equal(snap_get_u8(&r), 0x7f);
	assert_true(snap_rd_done(&r));

	/* Same type, two instances: each is found by its instance. */
	assert_true(snap_find(&f, SNAP_SEC_VCPU_REGS, 1, &s));
	assert_int_equal(s.len, 5);
	assert_int_equal(s.data[4], 5);
	assert_true(snap_find(&f, SNAP_SEC_VCPU_REGS, 0, &s));
	assert_int_equal(s.len, 3);
	assert_true(snap_find(&f, SNAP_SEC_CTL, 0, &s));
	assert_int_equal(s.len, 0);
	assert_false(snap_find(&f, SNAP_SEC_VCPU_REGS, 2, &s));
	assert_false(snap_find(&f, SNAP_SEC_SERIAL, 0, &s));

	assert_true(snap_section_at(&f, 3, &s));
	assert_int_equal(s.type, SNAP_SEC_VCPU_REGS);
	assert_int_equal(s.instance, 0);
	assert_false(snap_section_at(&f, 4, &s));
	guarded_free(&g);
	snap_writer_release(&w);
}

static void test_every_truncation_refused(void **state)
{
	struct snap_writer w;
	struct snap_file f;
	uint32_t crc;
	char why[256];

	(void)state;
	build_sample(&w, &crc);
	for (size_t n = 0; n < w.len; n++) {
		struct guarded g;

		guarded_make(&g, w.buf, n);
		why[0] = '\0';
		assert_int_equal(snap_parse(g.p, n, &f, why, sizeof(why)), -EINVAL);
		assert_true(why[0] != '\0');
		if (n >= SNAP_HEADER_SIZE)
			assert_non_null(strstr(why, "truncated"));
		guarded_free(&g);
	}
	snap_writer_release(&w);
}

static void test_extra_bytes_refused(void **state)
{
	struct snap_writer w;
	struct snap_file f;
	uint32_t crc;
	char why[256];
	uint8_t *longer;

	(void)state;
	build_sample(&w, &crc);
	longer = calloc(1, w.len + 1);
	memcpy(longer, w.buf, w.len);
	assert_int_equal(snap_parse(longer, w.len + 1, &f, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "after its end"));
	free(longer);
	snap_writer_release(&w);
}

static void test_every_flipped_byte_refused(void **state)
{
	struct snap_writer w;
	struct snap_file f;
	uint32_t crc;
	char why[256];

	(void)state;
	build_sample(&w, &crc);
	for (size_t i = 0; i < w.len; i++) {
		for (int bit = 0; bit < 8; bit += 3) {
			struct guarded g;

			guarded_make(&g, w.buf, w.len);
			g.p[i] ^= (uint8_t)(1u << bit);
			assert_int_equal(snap_parse(g.p, w.len, &f, why, sizeof(why)), -EINVAL);
			if (i >= SNAP_HEADER_SIZE)
				assert_non_null(strstr(why, "checksum mismatch"));
			guarded_free(&g);
		}
	}
	snap_writer_release(&w);
}

static void test_wrong_magic_and_version(void **state)
{
	struct snap_writer w;
	struct snap_file f;
	uint32_t crc;
	char why[256];

	(void)state;
	build_sample(&w, &crc);
	w.buf[0] = 'X';
	assert_int_equal(snap_parse(w.buf, w.len, &f, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "wrong magic"));
	w.buf[0] = 'K';
	w.buf[8] = 2;
	assert_int_equal(snap_parse(w.buf, w.len, &f, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "version 2 is not supported"));
	snap_writer_release(&w);
}

/* Re-seals a hand-edited file so only the structure is wrong. */
static void reseal(uint8_t *buf, size_t len)
{
	uint32_t c;

	memset(buf + 24, 0, 4);
	c = snap_crc32c(0, buf, len);
	buf[24] = (uint8_t)c;
	buf[25] = (uint8_t)(c >> 8);
	buf[26] = (uint8_t)(c >> 16);
	buf[27] = (uint8_t)(c >> 24);
}

static void test_section_length_past_end(void **state)
{
	struct snap_writer w;
	struct snap_file f;
	uint32_t crc;
	char why[256];
	const uint32_t bad[] = {6, 1000, 0x7fffffff, 0xffffffff};

	(void)state;
	build_sample(&w, &crc);
	/* The last section (3 bytes) starts at len - 8 - 3. */
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		struct guarded g;
		size_t off = w.len - SNAP_SECTION_HDR - 3;

		guarded_make(&g, w.buf, w.len);
		g.p[off + 4] = (uint8_t)bad[k];
		g.p[off + 5] = (uint8_t)(bad[k] >> 8);
		g.p[off + 6] = (uint8_t)(bad[k] >> 16);
		g.p[off + 7] = (uint8_t)(bad[k] >> 24);
		reseal(g.p, w.len);
		assert_int_equal(snap_parse(g.p, w.len, &f, why, sizeof(why)), -EINVAL);
		assert_non_null(strstr(why, "past the end"));
		guarded_free(&g);
	}
	/* The first section's length in a file cut right after a header. */
	{
		struct guarded g;
		size_t len = SNAP_HEADER_SIZE + 4;

		guarded_make(&g, w.buf, len);
		g.p[16] = 4; /* body length 4: half a section header */
		memset(g.p + 17, 0, 7);
		reseal(g.p, len);
		assert_int_equal(snap_parse(g.p, len, &f, why, sizeof(why)), -EINVAL);
		assert_non_null(strstr(why, "runs past the end"));
		guarded_free(&g);
	}
	snap_writer_release(&w);
}

static void test_reader_never_over_reads(void **state)
{
	uint8_t payload[3] = {0xaa, 0xbb, 0xcc};
	struct snap_section s = {.type = 1, .instance = 0, .len = 3};
	struct snap_rd r;
	struct guarded g;
	uint8_t out[8];

	(void)state;
	guarded_make(&g, payload, sizeof(payload));
	s.data = g.p;
	snap_rd_init(&r, &s);
	assert_int_equal(snap_get_u16(&r), 0xbbaa);
	assert_int_equal(snap_get_u32(&r), 0); /* only one byte left */
	assert_true(r.err);
	assert_int_equal(snap_get_u8(&r), 0); /* stays failed */
	assert_false(snap_rd_done(&r));

	snap_rd_init(&r, &s);
	memset(out, 0x55, sizeof(out));
	snap_get_bytes(&r, out, 8);
	assert_true(r.err);
	for (int i = 0; i < 8; i++)
		assert_int_equal(out[i], 0);

	snap_rd_init(&r, &s);
	(void)snap_get_u16(&r);
	assert_false(snap_rd_done(&r)); /* a byte left over is an error too */
	(void)snap_get_u8(&r);
	assert_true(snap_rd_done(&r));
	guarded_free(&g);
}

static void test_writer_misuse(void **state)
{
	struct snap_writer w;

	(void)state;
	assert_int_equal(snap_writer_init(&w), 0);
	snap_begin(&w, 1, 0);
	assert_int_equal(snap_writer_seal(&w, NULL), -EINVAL); /* still open */
	snap_writer_release(&w);

	assert_int_equal(snap_writer_init(&w), 0);
	snap_begin(&w, 1, 0);
	snap_begin(&w, 2, 0); /* no nesting */
	snap_end(&w);
	assert_int_equal(snap_writer_seal(&w, NULL), -EINVAL);
	snap_writer_release(&w);

	assert_int_equal(snap_writer_init(&w), 0);
	snap_end(&w); /* no section open */
	assert_int_equal(snap_writer_seal(&w, NULL), -EINVAL);
	snap_writer_release(&w);
	snap_writer_release(NULL);
}

static void test_empty_file(void **state)
{
	struct snap_writer w;
	struct snap_file f;
	uint32_t crc;
	char why[64];

	(void)state;
	assert_int_equal(snap_writer_init(&w), 0);
	assert_int_equal(snap_writer_seal(&w, &crc), 0);
	assert_int_equal(w.len, SNAP_HEADER_SIZE);
	assert_int_equal(snap_parse(w.buf, w.len, &f, why, sizeof(why)), 0);
	assert_int_equal(f.nsections, 0);
	snap_writer_release(&w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc32c_known_vector),
		cmocka_unit_test(test_crc32c_any_length_and_alignment),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_every_truncation_refused),
		cmocka_unit_test(test_extra_bytes_refused),
		cmocka_unit_test(test_every_flipped_byte_refused),
		cmocka_unit_test(test_wrong_magic_and_version),
		cmocka_unit_test(test_section_length_past_end),
		cmocka_unit_test(test_reader_never_over_reads),
		cmocka_unit_test(test_writer_misuse),
		cmocka_unit_test(test_empty_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
