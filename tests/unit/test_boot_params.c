/* test_boot_params.c - boot_prepare() with a vmlinux: boot_params fields,
 * the e820 map for small and large guests, the command line limit, initrd
 * placement and the errors for missing or unusable files. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "vmm/boot/boot.h"
#include "vmm/boot/bootparams.h"
#include "vmm/boot/initrd.h"
#include "vmm/layout.h"

#define MiB	   (1ULL << 20)
#define GiB	   (1ULL << 30)
#define GUEST_SIZE (64 * MiB)

#define KERNEL_PA   (16 * MiB)
#define KERNEL_FILE 0x2000
#define KERNEL_MEM  (4 * MiB)

struct fixture {
	struct guest_mem mem;
	char dir[64];
	char kernel[96];
	char initrd[96];
	char subdir[96];
};

static void write_file(const char *path, const void *data, size_t len)
{
	FILE *fp = fopen(path, "wb");

	assert_non_null(fp);
	assert_int_equal(fwrite(data, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
}

/* A vmlinux-like ELF: one segment of KERNEL_FILE bytes (KERNEL_MEM in memory)
 * at KERNEL_PA, entry at its start. */
static void write_vmlinux(const char *path)
{
	static uint8_t img[0x1000 + KERNEL_FILE];
	Elf64_Ehdr eh;
	Elf64_Phdr ph;

	memset(img, 0x90, sizeof(img));
	memset(&eh, 0, sizeof(eh));
	memcpy(eh.e_ident, ELFMAG, SELFMAG);
	eh.e_ident[EI_CLASS] = ELFCLASS64;
	eh.e_ident[EI_DATA] = ELFDATA2LSB;
	eh.e_ident[EI_VERSION] = EV_CURRENT;
	eh.e_type = ET_EXEC;
	eh.e_machine = EM_X86_64;
	eh.e_version = EV_CURRENT;
	eh.e_entry = KERNEL_PA;
	eh.e_phoff = sizeof(eh);
	eh.e_ehsize = sizeof(eh);
	eh.e_phentsize = sizeof(ph);
	eh.e_phnum = 1;
	memset(&ph, 0, sizeof(ph));
	ph.p_type = PT_LOAD;
	ph.p_offset = 0x1000;
	ph.p_paddr = KERNEL_PA;
	ph.p_vaddr = 0xffffffff81000000ULL;
	ph.p_filesz = KERNEL_FILE;
	ph.p_memsz = KERNEL_MEM;
	memcpy(img, &eh, sizeof(eh));
	memcpy(img + sizeof(eh), &ph, sizeof(ph));
	write_file(path, img, sizeof(img));
}

static void write_initrd(const char *path, size_t len)
{
	uint8_t *data = malloc(len ? len : 1);

	assert_non_null(data);
	memset(data, 0x5e, len);
	write_file(path, data, len);
	free(data);
}

static int open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	while (d && readdir(d))
		n++;
	if (d)
		closedir(d);
	return n;
}

static int setup_size(void **state, uint64_t size)
{
	struct fixture *f = test_calloc(1, sizeof(*f));

	if (!f || guest_mem_init(&f->mem, size) < 0)
		return -1;
	strcpy(f->dir, "/tmp/kiln-test-bp-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->kernel, sizeof(f->kernel), "%s/vmlinux", f->dir);
	snprintf(f->initrd, sizeof(f->initrd), "%s/initrd", f->dir);
	snprintf(f->subdir, sizeof(f->subdir), "%s/subdir", f->dir);
	write_vmlinux(f->kernel);
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_size(state, GUEST_SIZE);
}

static int setup_big(void **state)
{
	return setup_size(state, 4 * GiB + 64 * MiB); /* 3 GiB low, 1 GiB + 64 MiB high */
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	unlink(f->kernel);
	unlink(f->initrd);
	rmdir(f->subdir);
	rmdir(f->dir);
	guest_mem_release(&f->mem);
	test_free(f);
	return 0;
}

static struct boot_params *params(struct fixture *f)
{
	return guest_mem_ptr(&f->mem, LAYOUT_BOOT_PARAMS, sizeof(struct boot_params));
}

static void check_e820(const struct boot_params *bp, unsigned int i, uint64_t addr, uint64_t size,
		       uint32_t type)
{
	assert_true(i < bp->e820_entries);
	assert_int_equal(bp->e820_table[i].addr, addr);
	assert_int_equal(bp->e820_table[i].size, size);
	assert_int_equal(bp->e820_table[i].type, type);
}

static void test_vmlinux_boot_params(void **state)
{
	struct fixture *f = *state;
	struct boot_args args = {.kernel_path = f->kernel, .cmdline = "console=ttyS0", .vcpus = 1};
	struct boot_info info;
	struct boot_params *bp;

	/* Dirty the page: boot_params must start from zero. */
	memset(params(f), 0xff, sizeof(*bp));
	assert_int_equal(boot_prepare(&f->mem, &args, &info), 0);
	assert_int_equal(info.entry, KERNEL_PA);
	assert_int_equal(info.boot_params, LAYOUT_BOOT_PARAMS);
	assert_int_equal(info.pml4, LAYOUT_PML4);
	assert_int_equal(info.gdt_base, LAYOUT_GDT);
	assert_int_equal(info.gdt_limit, 31);
	assert_int_equal(info.kernel_start, KERNEL_PA);
	assert_int_equal(info.kernel_end, KERNEL_PA + KERNEL_MEM);
	assert_int_equal(info.initrd_start, 0);
	assert_int_equal(info.initrd_size, 0);

	bp = params(f);
	assert_int_equal(bp->hdr.boot_flag, 0xaa55);
	assert_memory_equal(&((uint8_t *)bp)[0x202], "HdrS", 4);
	assert_int_equal(bp->hdr.version, BOOT_VERSION_VMLINUX);
	assert_int_equal(bp->hdr.type_of_loader, 0xff);
	assert_true(bp->hdr.loadflags & BOOT_LOADED_HIGH);
	assert_int_equal(bp->hdr.cmd_line_ptr, LAYOUT_CMDLINE);
	assert_int_equal(bp->ext_cmd_line_ptr, 0);
	assert_int_equal(bp->hdr.cmdline_size, 2047);
	assert_int_equal(bp->hdr.ramdisk_image, 0);
	assert_int_equal(bp->hdr.ramdisk_size, 0);
	assert_int_not_equal(bp->hdr.kernel_alignment, 0);
	assert_int_equal(bp->sentinel, 0);
	assert_int_equal(((uint8_t *)bp)[0], 0);
	assert_int_equal(((uint8_t *)bp)[0xfff], 0);
	assert_string_equal((char *)guest_mem_ptr(&f->mem, LAYOUT_CMDLINE, 1), "console=ttyS0");
	/* Segment loaded, bss zero. */
	assert_int_equal(*(uint8_t *)guest_mem_ptr(&f->mem, KERNEL_PA, 1), 0x90);
	assert_int_equal(*(uint8_t *)guest_mem_ptr(&f->mem, KERNEL_PA + KERNEL_FILE, 1), 0);
}

/* boot_params.hdr.setup_data points at one SETUP_RNG_SEED entry with 32
 * fresh bytes of host entropy; a second boot gets different bytes. */
static void test_rng_seed(void **state)
{
	struct fixture *f = *state;
	struct boot_args args = {.kernel_path = f->kernel, .cmdline = "x", .vcpus = 1};
	struct boot_info info;
	const uint8_t zero[32] = {0};
	uint8_t first[32];
	const uint8_t *sd;

	assert_int_equal(boot_prepare(&f->mem, &args, &info), 0);
	assert_int_equal(params(f)->hdr.setup_data, LAYOUT_SETUP_DATA);
	sd = guest_mem_ptr(&f->mem, LAYOUT_SETUP_DATA, 16 + 32);
	assert_non_null(sd);
	assert_int_equal(*(const uint64_t *)(const void *)sd, 0);	/* next: end of list */
	assert_int_equal(*(const uint32_t *)(const void *)(sd + 8), 9); /* SETUP_RNG_SEED */
	assert_int_equal(*(const uint32_t *)(const void *)(sd + 12), 32);
	assert_memory_not_equal(sd + 16, zero, 32);
	memcpy(first, sd + 16, 32);
	assert_int_equal(boot_prepare(&f->mem, &args, &info), 0);
	assert_memory_not_equal(sd + 16, first, 32);
}

static void test_e820_small(void **state)
{
	struct fixture *f = *state;
	struct boot_args args = {.kernel_path = f->kernel, .cmdline = "", .vcpus = 1};
	struct boot_info info;
	struct boot_params *bp;

	assert_int_equal(boot_prepare(&f->mem, &args, &info), 0);
	bp = params(f);
	assert_int_equal(bp->e820_entries, 3);
	check_e820(bp, 0, 0, LAYOUT_EBDA_START, BOOT_E820_RAM);
	check_e820(bp, 1, LAYOUT_EBDA_START, MiB - LAYOUT_EBDA_START, BOOT_E820_RESERVED);
	check_e820(bp, 2, MiB, GUEST_SIZE - MiB, BOOT_E820_RAM);
}

static void test_e820_big(void **state)
{
	struct fixture *f = *state;
	struct boot_args args = {.kernel_path = f->kernel, .cmdline = "", .vcpus = 1};
	struct boot_info info;
	struct boot_params *bp;

	assert_int_equal(boot_prepare(&f->mem, &args, &info), 0);
	bp = params(f);
	assert_int_equal(bp->e820_entries, 4);
	check_e820(bp, 0, 0, LAYOUT_EBDA_START, BOOT_E820_RAM);
	check_e820(bp, 1, LAYOUT_EBDA_START, MiB - LAYOUT_EBDA_START, BOOT_E820_RESERVED);
	check_e820(bp, 2, MiB, 3 * GiB - MiB, BOOT_E820_RAM);
	check_e820(bp, 3, 4 * GiB, GiB + 64 * MiB, BOOT_E820_RAM);
	assert_int_equal(bp->e820_table[3].addr + bp->e820_table[3].size, guest_mem_end(&f->mem));
}

static void test_e820_exactly_3gib(void **state)
{
	struct boot_params *bp = test_calloc(1, sizeof(*bp));
	struct guest_mem m;

	(void)state;
	assert_int_equal(guest_mem_init(&m, 3 * GiB), 0);
	assert_int_equal(boot_params_fill_e820(bp, &m), 3);
	check_e820(bp, 2, MiB, 3 * GiB - MiB, BOOT_E820_RAM);
	guest_mem_release(&m);
	test_free(bp);
}

static void test_initrd_high_ram_guest(void **state)
{
	struct fixture *f = *state;
	struct boot_args args = {
		.kernel_path = f->kernel, .initrd_path = f->initrd, .cmdline = "", .vcpus = 1};
	struct boot_info info;
	struct boot_params *bp;

	write_initrd(f->initrd, 10000);
	assert_int_equal(boot_prepare(&f->mem, &args, &info), 0);
	/* Highest page-aligned spot below the MMIO hole. */
	assert_int_equal(info.initrd_start, (3 * GiB - 10000) & ~0xfffULL);
	bp = params(f);
	assert_int_equal(bp->hdr.ramdisk_image, info.initrd_start);
	assert_int_equal(bp->ext_ramdisk_image, 0);
	assert_int_equal(bp->hdr.ramdisk_size, 10000);
	assert_int_equal(bp->ext_ramdisk_size, 0);
}

static void test_cmdline_limit(void **state)
{
	struct fixture *f = *state;
	char *line = malloc(LAYOUT_CMDLINE_MAX + 1);
	struct boot_args args = {.kernel_path = f->kernel, .cmdline = line, .vcpus = 1};
	struct boot_info info;
	char *dst;

	assert_non_null(line);
	memset(line, 'x', LAYOUT_CMDLINE_MAX);
	line[LAYOUT_CMDLINE_MAX] = 0; /* 2048 bytes */
	assert_int_equal(boot_prepare(&f->mem, &args, &info), -E2BIG);
	line[LAYOUT_CMDLINE_MAX - 1] = 0; /* 2047 bytes */
	assert_int_equal(boot_prepare(&f->mem, &args, &info), 0);
	dst = guest_mem_ptr(&f->mem, LAYOUT_CMDLINE, LAYOUT_CMDLINE_MAX);
	assert_int_equal(strlen(dst), LAYOUT_CMDLINE_MAX - 1);
	assert_int_equal(dst[LAYOUT_CMDLINE_MAX - 1], 0);
	/* A NULL command line is an empty one. */
	args.cmdline = NULL;
	assert_int_equal(boot_prepare(&f->mem, &args, &info), 0);
	assert_int_equal(dst[0], 0);
	assert_int_equal(boot_cmdline_write(&f->mem, line, 2048, 4096), -E2BIG);
	free(line);
}

static void test_initrd_placement(void **state)
{
	struct fixture *f = *state;
	struct boot_args args = {
		.kernel_path = f->kernel, .initrd_path = f->initrd, .cmdline = "", .vcpus = 1};
	struct boot_info info;
	const size_t len = 3 * MiB + 123;
	uint8_t *p;

	write_initrd(f->initrd, len);
	assert_int_equal(boot_prepare(&f->mem, &args, &info), 0);
	assert_int_equal(info.initrd_size, len);
	assert_int_equal(info.initrd_start & 0xfff, 0);
	assert_true(info.initrd_start + len <= GUEST_SIZE);
	assert_true(info.initrd_start >= info.kernel_end ||
		    info.initrd_start + len <= info.kernel_start);
	assert_int_equal(info.initrd_start, (GUEST_SIZE - len) & ~0xfffULL);
	p = guest_mem_ptr(&f->mem, info.initrd_start, len);
	assert_int_equal(p[0], 0x5e);
	assert_int_equal(p[len - 1], 0x5e);
	assert_int_equal(params(f)->hdr.ramdisk_image, info.initrd_start);
	assert_int_equal(params(f)->hdr.ramdisk_size, len);
}

static void test_initrd_fit_edges(void **state)
{
	struct fixture *f = *state;
	struct boot_args args = {
		.kernel_path = f->kernel, .initrd_path = f->initrd, .cmdline = "", .vcpus = 1};
	struct boot_info info;

	/* The kernel takes [16, 20) MiB: 44 MiB above it, 15 MiB below. */
	write_initrd(f->initrd, 44 * MiB);
	assert_int_equal(boot_prepare(&f->mem, &args, &info), 0);
	assert_int_equal(info.initrd_start, info.kernel_end);
	write_initrd(f->initrd, 44 * MiB + 1);
	assert_int_equal(boot_prepare(&f->mem, &args, &info), -ENOMEM);
}

static void test_initrd_place_function(void **state)
{
	struct fixture *f = *state;
	struct boot_kernel k = {.start = 16 * MiB, .end = 60 * MiB};
	uint64_t start;

	/* Above the kernel: [60, 64) MiB. */
	assert_true(boot_initrd_place(&f->mem, 4 * MiB, UINT64_MAX, &k, &start));
	assert_int_equal(start, 60 * MiB);
	/* Too big above: goes below the kernel, ending at or before 16 MiB. */
	assert_true(boot_initrd_place(&f->mem, 4 * MiB + 1, UINT64_MAX, &k, &start));
	assert_int_equal(start, 12 * MiB - 0x1000);
	assert_true(start + 4 * MiB + 1 <= 16 * MiB);
	/* Never below 1 MiB. */
	assert_true(boot_initrd_place(&f->mem, 15 * MiB, UINT64_MAX, &k, &start));
	assert_int_equal(start, MiB);
	assert_false(boot_initrd_place(&f->mem, 15 * MiB + 1, UINT64_MAX, &k, &start));
	/* The limit is honoured. */
	assert_true(boot_initrd_place(&f->mem, 0x1000, 10 * MiB, &k, &start));
	assert_int_equal(start, 10 * MiB - 0x1000);
	assert_false(boot_initrd_place(&f->mem, 0, UINT64_MAX, &k, &start));
	assert_false(boot_initrd_place(&f->mem, UINT64_MAX, UINT64_MAX, &k, &start));
}

static void test_initrd_errors(void **state)
{
	struct fixture *f = *state;
	struct boot_args args = {
		.kernel_path = f->kernel, .initrd_path = f->initrd, .cmdline = "", .vcpus = 1};
	struct boot_info info;
	int fds = open_fds();

	assert_int_equal(boot_prepare(&f->mem, &args, &info), -ENOENT);
	assert_int_equal(mkdir(f->subdir, 0755), 0);
	args.initrd_path = f->subdir;
	assert_int_equal(boot_prepare(&f->mem, &args, &info), -EISDIR);
	args.initrd_path = f->initrd;
	write_initrd(f->initrd, 0);
	assert_int_equal(boot_prepare(&f->mem, &args, &info), -EINVAL);
	args.initrd_path = "/dev/null";
	assert_int_equal(boot_prepare(&f->mem, &args, &info), -EINVAL);
	args.initrd_path = f->initrd;
	write_initrd(f->initrd, 70 * MiB);
	assert_int_equal(boot_prepare(&f->mem, &args, &info), -ENOMEM);
	if (geteuid() != 0) {
		write_initrd(f->initrd, 100);
		chmod(f->initrd, 0);
		assert_int_equal(boot_prepare(&f->mem, &args, &info), -EACCES);
	}
	assert_int_equal(open_fds(), fds);
}

static void test_kernel_errors(void **state)
{
	struct fixture *f = *state;
	struct boot_args args = {.kernel_path = f->initrd, .cmdline = "", .vcpus = 1};
	static const char text[] = "#!/bin/sh\necho not a kernel\n";
	struct boot_info info;
	int fds = open_fds();

	assert_int_equal(boot_prepare(&f->mem, &args, &info), -ENOENT);
	assert_int_equal(mkdir(f->subdir, 0755), 0);
	args.kernel_path = f->subdir;
	assert_int_equal(boot_prepare(&f->mem, &args, &info), -EISDIR);
	args.kernel_path = f->initrd;
	write_file(f->initrd, text, sizeof(text));
	assert_int_equal(boot_prepare(&f->mem, &args, &info), -ENOEXEC);
	write_file(f->initrd, "", 0);
	assert_int_equal(boot_prepare(&f->mem, &args, &info), -ENOEXEC);
	write_file(f->initrd,
		   "\x7f"
		   "ELF\x02\x01",
		   6);
	assert_int_equal(boot_prepare(&f->mem, &args, &info), -ENOEXEC);
	args.kernel_path = NULL;
	assert_int_equal(boot_prepare(&f->mem, &args, &info), -EINVAL);
	assert_int_equal(open_fds(), fds);
}

static void test_bad_vcpus(void **state)
{
	struct fixture *f = *state;
	struct boot_args args = {.kernel_path = f->kernel, .cmdline = "", .vcpus = 0};
	struct boot_info info;

	assert_int_equal(boot_prepare(&f->mem, &args, &info), -EINVAL);
	args.vcpus = BOOT_MAX_VCPUS + 1;
	assert_int_equal(boot_prepare(&f->mem, &args, &info), -EINVAL);
	args.vcpus = BOOT_MAX_VCPUS;
	assert_int_equal(boot_prepare(&f->mem, &args, &info), 0);
}

static void test_tiny_guest(void **state)
{
	struct boot_args args = {.kernel_path = "/nonexistent", .cmdline = "", .vcpus = 1};
	struct boot_info info;
	struct guest_mem m;

	(void)state;
	assert_int_equal(guest_mem_init(&m, MiB), 0);
	assert_int_equal(boot_prepare(&m, &args, &info), -ENOMEM);
	guest_mem_release(&m);
	/* The kernel at 16 MiB does not fit in 8 MiB. */
	assert_int_equal(guest_mem_init(&m, 8 * MiB), 0);
	args.kernel_path = ((struct fixture *)*state)->kernel;
	assert_int_equal(boot_prepare(&m, &args, &info), -ENOMEM);
	guest_mem_release(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_vmlinux_boot_params, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rng_seed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_e820_small, setup, teardown),
		cmocka_unit_test_setup_teardown(test_e820_big, setup_big, teardown),
		cmocka_unit_test(test_e820_exactly_3gib),
		cmocka_unit_test_setup_teardown(test_initrd_high_ram_guest, setup_big, teardown),
		cmocka_unit_test_setup_teardown(test_cmdline_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_initrd_placement, setup, teardown),
		cmocka_unit_test_setup_teardown(test_initrd_fit_edges, setup, teardown),
		cmocka_unit_test_setup_teardown(test_initrd_place_function, setup, teardown),
		cmocka_unit_test_setup_teardown(test_initrd_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kernel_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_vcpus, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tiny_guest, setup, teardown),
	};

	log_set_level(LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
