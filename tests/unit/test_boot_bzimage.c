/* test_boot_bzimage.c - the bzImage loader and boot_prepare() with a
 * bzImage: header checks, load address choice, setup header copy into
 * boot_params, the kernel's own command line and initrd limits. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/log.h"
#include "vmm/boot/boot.h"
#include "vmm/boot/bootparams.h"
#include "vmm/boot/bzimage.h"
#include "vmm/layout.h"

#define MiB	   (1ULL << 20)
#define GUEST_SIZE (64 * MiB)

#define BZ_SETUP_SECTS 3
#define BZ_KOFS	       ((BZ_SETUP_SECTS + 1) * 512)
#define BZ_PAYLOAD     0x3000
#define BZ_SIZE	       (BZ_KOFS + BZ_PAYLOAD)
#define BZ_INIT_SIZE   (8 * MiB)
#define BZ_PREF	       (16 * MiB)

struct fixture {
	struct guest_mem mem;
	_Alignas(8) uint8_t img[BZ_SIZE];
	char dir[64];
	char kernel[96];
	char initrd[96];
};

static struct boot_setup_header *hdr_of(uint8_t *img)
{
	return (struct boot_setup_header *)(img + BOOT_SETUP_HEADER_OFFSET);
}

static void build_bzimage(uint8_t *img)
{
	struct boot_setup_header *h = hdr_of(img);
	size_t i;

	memset(img, 0, BZ_SIZE);
	for (i = 0; i < BOOT_SETUP_HEADER_OFFSET; i++)
		img[i] = 0xee; /* boot sector junk that must not reach boot_params */
	h->setup_sects = BZ_SETUP_SECTS;
	h->syssize = BZ_PAYLOAD / 16;
	h->boot_flag = BOOT_FLAG_MAGIC;
	h->jump = (uint16_t)(0xeb | ((0x26c - 0x202) << 8)); /* jmp over the header */
	memcpy(&img[0x202], "HdrS", 4);
	h->version = 0x020f;
	h->kernel_version = 0x1234;
	h->loadflags = BOOT_LOADED_HIGH | BOOT_CAN_USE_HEAP;
	h->code32_start = 0x100000;
	h->initrd_addr_max = 0x7fffffff;
	h->kernel_alignment = 0x200000;
	h->relocatable_kernel = 1;
	h->min_alignment = 21;
	h->xloadflags = BOOT_XLF_KERNEL_64 | BOOT_XLF_CAN_BE_LOADED_ABOVE_4G;
	h->cmdline_size = 2047;
	h->pref_address = BZ_PREF;
	h->init_size = BZ_INIT_SIZE;
	for (i = 0; i < BZ_PAYLOAD; i++)
		img[BZ_KOFS + i] = (uint8_t)(i * 13 + 5);
}

static void write_file(const char *path, const void *data, size_t len)
{
	FILE *fp = fopen(path, "wb");

	assert_non_null(fp);
	assert_int_equal(fwrite(data, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
}

static int setup(void **state)
{
	struct fixture *f = test_calloc(1, sizeof(*f));

	if (!f || guest_mem_init(&f->mem, GUEST_SIZE) < 0)
		return -1;
	build_bzimage(f->img);
	strcpy(f->dir, "/tmp/kiln-test-bz-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->kernel, sizeof(f->kernel), "%s/bzImage", f->dir);
	snprintf(f->initrd, sizeof(f->initrd), "%s/initrd", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	unlink(f->kernel);
	unlink(f->initrd);
	rmdir(f->dir);
	guest_mem_release(&f->mem);
	test_free(f);
	return 0;
}

static int load(struct fixture *f, size_t len, struct boot_kernel *k)
{
	return boot_bzimage_load(&f->mem, "test-bzImage", f->img, len, k);
}

static void test_detect(void **state)
{
	struct fixture *f = *state;

	assert_true(boot_bzimage_is_bzimage(f->img, BZ_SIZE));
	assert_false(boot_bzimage_is_bzimage(f->img, 0x205));
	f->img[0x202] = 'X';
	assert_false(boot_bzimage_is_bzimage(f->img, BZ_SIZE));
}

static void test_load_ok(void **state)
{
	struct fixture *f = *state;
	struct boot_kernel k;

	assert_int_equal(load(f, BZ_SIZE, &k), 0);
	assert_true(k.bzimage);
	assert_int_equal(k.start, BZ_PREF);
	assert_int_equal(k.end, BZ_PREF + BZ_INIT_SIZE);
	assert_int_equal(k.entry, BZ_PREF + 0x200);
	assert_memory_equal(guest_mem_ptr(&f->mem, BZ_PREF, BZ_PAYLOAD), f->img + BZ_KOFS,
			    BZ_PAYLOAD);
	assert_memory_equal(&k.hdr, hdr_of(f->img), sizeof(k.hdr));
}

static void test_setup_sects_zero_means_four(void **state)
{
	struct fixture *f = *state;
	struct boot_kernel k;

	hdr_of(f->img)->setup_sects = 0;
	hdr_of(f->img)->syssize = (BZ_SIZE - 5 * 512) / 16;
	assert_int_equal(load(f, BZ_SIZE, &k), 0);
	assert_memory_equal(guest_mem_ptr(&f->mem, BZ_PREF, BZ_SIZE - 5 * 512), f->img + 5 * 512,
			    BZ_SIZE - 5 * 512);
}

static void test_header_copied_up_to_jump(void **state)
{
	struct fixture *f = *state;
	struct boot_kernel k;

	/* A header that ends at 0x264 (jump offset 0x62): init_size is its last
	 * field; later bytes in the file are not header. */
	hdr_of(f->img)->jump = (uint16_t)(0xeb | (0x62 << 8));
	hdr_of(f->img)->handover_offset = 0xdeadbeef;
	assert_int_equal(load(f, BZ_SIZE, &k), 0);
	assert_int_equal(k.hdr.init_size, BZ_INIT_SIZE);
	assert_int_equal(k.hdr.handover_offset, 0);
	/* Ending before init_size is too short for protocol 2.12+. */
	hdr_of(f->img)->jump = (uint16_t)(0xeb | (0x50 << 8));
	assert_int_equal(load(f, BZ_SIZE, &k), -ENOEXEC);
}

static void test_old_protocol(void **state)
{
	struct fixture *f = *state;
	struct boot_kernel k;

	hdr_of(f->img)->version = 0x020b;
	assert_int_equal(load(f, BZ_SIZE, &k), -ENOEXEC);
}

static void test_no_64bit_entry(void **state)
{
	struct fixture *f = *state;
	struct boot_kernel k;

	hdr_of(f->img)->xloadflags = 0;
	assert_int_equal(load(f, BZ_SIZE, &k), -ENOEXEC);
}

static void test_zimage(void **state)
{
	struct fixture *f = *state;
	struct boot_kernel k;

	hdr_of(f->img)->loadflags = 0;
	assert_int_equal(load(f, BZ_SIZE, &k), -ENOEXEC);
}

static void test_bad_boot_flag(void **state)
{
	struct fixture *f = *state;
	struct boot_kernel k;

	hdr_of(f->img)->boot_flag = 0x1234;
	assert_int_equal(load(f, BZ_SIZE, &k), -ENOEXEC);
}

static void test_truncated(void **state)
{
	struct fixture *f = *state;
	struct boot_kernel k;

	/* Header promises more kernel than the file has. */
	assert_int_equal(load(f, BZ_SIZE - 16, &k), -ENOEXEC);
	/* File ends inside the setup code. */
	assert_int_equal(load(f, BZ_KOFS, &k), -ENOEXEC);
	assert_int_equal(load(f, 0x260, &k), -ENOEXEC);
	/* Kernel too short to contain the 64-bit entry point. */
	hdr_of(f->img)->syssize = 0;
	assert_int_equal(load(f, BZ_KOFS + 0x200, &k), -ENOEXEC);
	assert_int_equal(load(f, BZ_KOFS + 0x201, &k), 0);
}

static void test_no_init_size(void **state)
{
	struct fixture *f = *state;
	struct boot_kernel k;

	hdr_of(f->img)->init_size = 0;
	assert_int_equal(load(f, BZ_SIZE, &k), -ENOEXEC);
}

static void test_relocated_when_pref_unusable(void **state)
{
	struct fixture *f = *state;
	struct boot_kernel k;

	hdr_of(f->img)->pref_address = 0x10000; /* below 1 MiB */
	assert_int_equal(load(f, BZ_SIZE, &k), 0);
	assert_int_equal(k.start, BOOT_BZIMAGE_DEFAULT_LOAD);
	assert_int_equal(k.entry, BOOT_BZIMAGE_DEFAULT_LOAD + 0x200);
	hdr_of(f->img)->pref_address = 0xfff00000ULL; /* not RAM */
	assert_int_equal(load(f, BZ_SIZE, &k), 0);
	assert_int_equal(k.start, BOOT_BZIMAGE_DEFAULT_LOAD);
	/* Misaligned for a relocatable kernel. */
	hdr_of(f->img)->pref_address = 0x1100000;
	assert_int_equal(load(f, BZ_SIZE, &k), 0);
	assert_int_equal(k.start, BOOT_BZIMAGE_DEFAULT_LOAD);
	/* Alignment larger than 16 MiB rounds the default up. */
	hdr_of(f->img)->kernel_alignment = 32 * MiB;
	assert_int_equal(load(f, BZ_SIZE, &k), 0);
	assert_int_equal(k.start, 32 * MiB);
	hdr_of(f->img)->kernel_alignment = 3 * MiB;
	assert_int_equal(load(f, BZ_SIZE, &k), -ENOEXEC);
}

static void test_not_relocatable(void **state)
{
	struct fixture *f = *state;
	struct boot_kernel k;

	hdr_of(f->img)->relocatable_kernel = 0;
	hdr_of(f->img)->pref_address = 0x10000;
	assert_int_equal(load(f, BZ_SIZE, &k), -ENOEXEC);
	hdr_of(f->img)->pref_address = 60 * MiB; /* init_size runs past 64 MiB */
	assert_int_equal(load(f, BZ_SIZE, &k), -ENOMEM);
	hdr_of(f->img)->pref_address = 2 * MiB;
	assert_int_equal(load(f, BZ_SIZE, &k), 0);
	assert_int_equal(k.start, 2 * MiB);
}

static void test_does_not_fit(void **state)
{
	struct fixture *f = *state;
	struct boot_kernel k;

	hdr_of(f->img)->init_size = 49 * MiB; /* 16 + 49 > 64 */
	assert_int_equal(load(f, BZ_SIZE, &k), -ENOMEM);
	hdr_of(f->img)->init_size = 48 * MiB;
	assert_int_equal(load(f, BZ_SIZE, &k), 0);
	assert_int_equal(k.end, GUEST_SIZE);
}

static void test_guard_page(void **state)
{
	struct fixture *f = *state;
	long page = sysconf(_SC_PAGESIZE);
	struct boot_kernel k;
	uint8_t *area, *buf;

	area = mmap(NULL, (size_t)page * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		    0);
	assert_true(area != MAP_FAILED);
	assert_int_equal(mprotect(area + page, (size_t)page, PROT_NONE), 0);
	/* 0x206 bytes: just up to the magic; the header claims to run to 0x26c. */
	buf = area + page - 0x206;
	memcpy(buf, f->img, 0x206);
	assert_true(boot_bzimage_is_bzimage(buf, 0x206));
	assert_int_equal(boot_bzimage_load(&f->mem, "guard", buf, 0x206, &k), -ENOEXEC);
	/* The whole header, ending at the guard page. */
	buf = area + page - 0x26c;
	memcpy(buf, f->img, 0x26c);
	assert_int_equal(boot_bzimage_load(&f->mem, "guard", buf, 0x26c, &k), -ENOEXEC);
	munmap(area, (size_t)page * 2);
}

static void test_boot_prepare_bzimage(void **state)
{
	struct fixture *f = *state;
	static const char cmdline[] = "console=ttyS0 reboot=k";
	struct boot_args args = {
		.kernel_path = f->kernel,
		.initrd_path = f->initrd,
		.cmdline = cmdline,
		.vcpus = 2,
	};
	uint8_t initrd[5000];
	struct boot_info info;
	struct boot_params *bp;
	struct boot_setup_header expect;

	memset(initrd, 0x42, sizeof(initrd));
	write_file(f->kernel, f->img, BZ_SIZE);
	write_file(f->initrd, initrd, sizeof(initrd));
	assert_int_equal(boot_prepare(&f->mem, &args, &info), 0);
	assert_int_equal(info.entry, BZ_PREF + 0x200);
	assert_int_equal(info.kernel_start, BZ_PREF);
	assert_int_equal(info.kernel_end, BZ_PREF + BZ_INIT_SIZE);
	assert_int_equal(info.initrd_size, sizeof(initrd));
	assert_int_equal(info.initrd_start, (GUEST_SIZE - sizeof(initrd)) & ~0xfffULL);
	assert_memory_equal(guest_mem_ptr(&f->mem, info.initrd_start, sizeof(initrd)), initrd,
			    sizeof(initrd));

	bp = guest_mem_ptr(&f->mem, LAYOUT_BOOT_PARAMS, sizeof(*bp));
	/* The file's setup header, with the loader's fields filled in. */
	expect = *hdr_of(f->img);
	expect.type_of_loader = BOOT_LOADER_UNDEF;
	expect.loadflags = BOOT_LOADED_HIGH;
	expect.cmd_line_ptr = (uint32_t)LAYOUT_CMDLINE;
	expect.ramdisk_image = (uint32_t)info.initrd_start;
	expect.ramdisk_size = sizeof(initrd);
	expect.setup_data = LAYOUT_SETUP_DATA; /* the RNG seed entry */
	assert_memory_equal(&bp->hdr, &expect, sizeof(expect));
	assert_int_equal(bp->sentinel, 0);
	assert_int_equal(bp->e820_entries, 3);
	assert_string_equal((char *)guest_mem_ptr(&f->mem, LAYOUT_CMDLINE, 1), cmdline);
	/* Nothing from the boot sector before 0x1f1 reached boot_params. */
	assert_int_equal(((uint8_t *)bp)[0x1f0], 0);
	assert_int_equal(((uint8_t *)bp)[0], 0);
}

static void test_kernel_cmdline_size(void **state)
{
	struct fixture *f = *state;
	char cmdline[102];
	struct boot_args args = {.kernel_path = f->kernel, .cmdline = cmdline, .vcpus = 1};
	struct boot_info info;

	hdr_of(f->img)->cmdline_size = 100;
	write_file(f->kernel, f->img, BZ_SIZE);
	memset(cmdline, 'a', sizeof(cmdline) - 1);
	cmdline[101] = 0;
	assert_int_equal(boot_prepare(&f->mem, &args, &info), -E2BIG);
	cmdline[100] = 0;
	assert_int_equal(boot_prepare(&f->mem, &args, &info), 0);
}

static void test_initrd_addr_max(void **state)
{
	struct fixture *f = *state;
	struct boot_args args = {
		.kernel_path = f->kernel, .initrd_path = f->initrd, .cmdline = "", .vcpus = 1};
	static uint8_t initrd[3 * MiB];
	struct boot_info info;

	/* The kernel takes [16, 24) MiB and accepts an initrd only below 26 MiB. */
	hdr_of(f->img)->initrd_addr_max = 26 * MiB - 1;
	write_file(f->kernel, f->img, BZ_SIZE);
	memset(initrd, 0x17, sizeof(initrd));
	write_file(f->initrd, initrd, sizeof(initrd));
	assert_int_equal(boot_prepare(&f->mem, &args, &info), 0);
	assert_int_equal(info.initrd_start, 16 * MiB - sizeof(initrd));
	/* Room neither above nor below the kernel: it takes [2, 17) MiB and
	 * the initrd must end below 18 MiB. */
	hdr_of(f->img)->initrd_addr_max = 18 * MiB - 1;
	hdr_of(f->img)->pref_address = 2 * MiB;
	hdr_of(f->img)->init_size = 15 * MiB;
	write_file(f->kernel, f->img, BZ_SIZE);
	assert_int_equal(boot_prepare(&f->mem, &args, &info), -ENOMEM);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_detect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_ok, setup, teardown),
		cmocka_unit_test_setup_teardown(test_setup_sects_zero_means_four, setup, teardown),
		cmocka_unit_test_setup_teardown(test_header_copied_up_to_jump, setup, teardown),
		cmocka_unit_test_setup_teardown(test_old_protocol, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_64bit_entry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_zimage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_boot_flag, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_init_size, setup, teardown),
		cmocka_unit_test_setup_teardown(test_relocated_when_pref_unusable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_relocatable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_does_not_fit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_guard_page, setup, teardown),
		cmocka_unit_test_setup_teardown(test_boot_prepare_bzimage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kernel_cmdline_size, setup, teardown),
		cmocka_unit_test_setup_teardown(test_initrd_addr_max, setup, teardown),
	};

	log_set_level(LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
