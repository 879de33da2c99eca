/* test_boot_elf.c - the vmlinux ELF loader: valid images land where their
 * program headers say, every malformed header is refused without writing to
 * guest memory or reading past the end of the file. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <elf.h>
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/log.h"
#include "vmm/boot/elf.h"
#include "vmm/layout.h"

#define MiB	   (1ULL << 20)
#define GUEST_SIZE (64 * MiB)

/* The test image: ELF header, two PT_LOAD headers and a PT_NOTE, then
 * segment 0 (0x1000 file bytes, 0x3000 in memory: bss) at 1 MiB and
 * segment 1 (0x100 bytes) at 3 MiB. */
#define IMG_PHNUM    3
#define IMG_SEG0_OFF 0x1000
#define IMG_SEG0_LEN 0x1000
#define IMG_SEG0_MEM 0x3000
#define IMG_SEG0_PA  (1 * MiB)
#define IMG_SEG1_OFF 0x2000
#define IMG_SEG1_LEN 0x100
#define IMG_SEG1_PA  (3 * MiB)
#define IMG_SIZE     (IMG_SEG1_OFF + IMG_SEG1_LEN)
#define IMG_ENTRY    (IMG_SEG0_PA + 0x10)

struct image {
	_Alignas(8) uint8_t bytes[IMG_SIZE];
};

struct fixture {
	struct guest_mem mem;
	struct image img;
};

static Elf64_Ehdr *img_ehdr(struct image *img)
{
	return (Elf64_Ehdr *)img->bytes;
}

static Elf64_Phdr *img_phdr(struct image *img, unsigned int i)
{
	return (Elf64_Phdr *)(img->bytes + sizeof(Elf64_Ehdr) + i * sizeof(Elf64_Phdr));
}

static void build_image(struct image *img)
{
	Elf64_Ehdr *eh = img_ehdr(img);
	Elf64_Phdr *ph;
	size_t i;

	memset(img, 0, sizeof(*img));
	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_ident[EI_VERSION] = EV_CURRENT;
	eh->e_type = ET_EXEC;
	eh->e_machine = EM_X86_64;
	eh->e_version = EV_CURRENT;
	eh->e_entry = IMG_ENTRY;
	eh->e_phoff = sizeof(Elf64_Ehdr);
	eh->e_ehsize = sizeof(Elf64_Ehdr);
	eh->e_phentsize = sizeof(Elf64_Phdr);
	eh->e_phnum = IMG_PHNUM;

	ph = img_phdr(img, 0);
	ph->p_type = PT_LOAD;
	ph->p_offset = IMG_SEG0_OFF;
	ph->p_vaddr = 0xffffffff81000000ULL;
	ph->p_paddr = IMG_SEG0_PA;
	ph->p_filesz = IMG_SEG0_LEN;
	ph->p_memsz = IMG_SEG0_MEM;
	ph = img_phdr(img, 1);
	ph->p_type = PT_NOTE;
	ph->p_offset = 0xffffffffffff0000ULL; /* not PT_LOAD: ignored */
	ph->p_filesz = 0x1000;
	ph = img_phdr(img, 2);
	ph->p_type = PT_LOAD;
	ph->p_offset = IMG_SEG1_OFF;
	ph->p_paddr = IMG_SEG1_PA;
	ph->p_filesz = IMG_SEG1_LEN;
	ph->p_memsz = IMG_SEG1_LEN;

	for (i = 0; i < IMG_SEG0_LEN; i++)
		img->bytes[IMG_SEG0_OFF + i] = (uint8_t)(i * 7 + 1);
	for (i = 0; i < IMG_SEG1_LEN; i++)
		img->bytes[IMG_SEG1_OFF + i] = (uint8_t)(0xa0 + i);
}

static int setup(void **state)
{
	struct fixture *f = test_calloc(1, sizeof(*f));

	if (!f || guest_mem_init(&f->mem, GUEST_SIZE) < 0)
		return -1;
	build_image(&f->img);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	guest_mem_release(&f->mem);
	test_free(f);
	return 0;
}

static int load(struct fixture *f, size_t len)
{
	struct boot_kernel k;

	return boot_elf_load(&f->mem, "test.elf", f->img.bytes, len, &k);
}

static void test_load_ok(void **state)
{
	struct fixture *f = *state;
	struct boot_kernel k;
	uint8_t *p;
	size_t i;

	/* Dirty the bss first: the loader must zero it. */
	memset(guest_mem_ptr(&f->mem, IMG_SEG0_PA, IMG_SEG0_MEM), 0xcc, IMG_SEG0_MEM);
	assert_int_equal(boot_elf_load(&f->mem, "test.elf", f->img.bytes, IMG_SIZE, &k), 0);
	assert_int_equal(k.entry, IMG_ENTRY);
	assert_int_equal(k.start, IMG_SEG0_PA);
	assert_int_equal(k.end, IMG_SEG1_PA + IMG_SEG1_LEN);
	assert_false(k.bzimage);
	p = guest_mem_ptr(&f->mem, IMG_SEG0_PA, IMG_SEG0_MEM);
	assert_memory_equal(p, f->img.bytes + IMG_SEG0_OFF, IMG_SEG0_LEN);
	for (i = IMG_SEG0_LEN; i < IMG_SEG0_MEM; i++)
		assert_int_equal(p[i], 0);
	p = guest_mem_ptr(&f->mem, IMG_SEG1_PA, IMG_SEG1_LEN);
	assert_memory_equal(p, f->img.bytes + IMG_SEG1_OFF, IMG_SEG1_LEN);
	/* Nothing below 1 MiB was touched. */
	p = guest_mem_ptr(&f->mem, 0, IMG_SEG0_PA);
	for (i = 0; i < IMG_SEG0_PA; i++)
		if (p[i])
			fail_msg("byte at 0x%zx written", i);
}

static void test_not_elf(void **state)
{
	struct fixture *f = *state;

	f->img.bytes[0] = 'M';
	assert_false(boot_elf_is_elf(f->img.bytes, IMG_SIZE));
	assert_int_equal(load(f, IMG_SIZE), -ENOEXEC);
	assert_false(boot_elf_is_elf(f->img.bytes, 3));
}

static void test_wrong_class(void **state)
{
	struct fixture *f = *state;

	img_ehdr(&f->img)->e_ident[EI_CLASS] = ELFCLASS32;
	assert_int_equal(load(f, IMG_SIZE), -ENOEXEC);
	img_ehdr(&f->img)->e_ident[EI_CLASS] = 7;
	assert_int_equal(load(f, IMG_SIZE), -ENOEXEC);
}

static void test_big_endian(void **state)
{
	struct fixture *f = *state;

	img_ehdr(&f->img)->e_ident[EI_DATA] = ELFDATA2MSB;
	assert_int_equal(load(f, IMG_SIZE), -ENOEXEC);
}

static void test_bad_version(void **state)
{
	struct fixture *f = *state;

	img_ehdr(&f->img)->e_version = 2;
	assert_int_equal(load(f, IMG_SIZE), -ENOEXEC);
}

static void test_wrong_arch(void **state)
{
	struct fixture *f = *state;
	const unsigned int machines[] = {EM_AARCH64, EM_386, EM_RISCV, 0x1234};
	size_t i;

	for (i = 0; i < sizeof(machines) / sizeof(machines[0]); i++) {
		img_ehdr(&f->img)->e_machine = (uint16_t)machines[i];
		assert_int_equal(load(f, IMG_SIZE), -ENOEXEC);
	}
}

static void test_wrong_type(void **state)
{
	struct fixture *f = *state;
	const unsigned int types[] = {ET_DYN, ET_REL, ET_CORE, ET_NONE};
	size_t i;

	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		img_ehdr(&f->img)->e_type = (uint16_t)types[i];
		assert_int_equal(load(f, IMG_SIZE), -ENOEXEC);
	}
}

static void test_bad_phentsize(void **state)
{
	struct fixture *f = *state;

	img_ehdr(&f->img)->e_phentsize = 32;
	assert_int_equal(load(f, IMG_SIZE), -ENOEXEC);
}

static void test_no_phdrs(void **state)
{
	struct fixture *f = *state;

	img_ehdr(&f->img)->e_phnum = 0;
	assert_int_equal(load(f, IMG_SIZE), -ENOEXEC);
	img_ehdr(&f->img)->e_phnum = PN_XNUM;
	assert_int_equal(load(f, IMG_SIZE), -ENOEXEC);
}

static void test_no_load_segments(void **state)
{
	struct fixture *f = *state;

	img_phdr(&f->img, 0)->p_type = PT_NOTE;
	img_phdr(&f->img, 2)->p_type = PT_NOTE;
	assert_int_equal(load(f, IMG_SIZE), -ENOEXEC);
}

static void test_truncated_header(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(load(f, 4), -ENOEXEC);
	assert_int_equal(load(f, sizeof(Elf64_Ehdr) - 1), -ENOEXEC);
}

static void test_phdrs_past_eof(void **state)
{
	struct fixture *f = *state;
	size_t end = sizeof(Elf64_Ehdr) + IMG_PHNUM * sizeof(Elf64_Phdr);

	/* The file ends one byte into the last program header. */
	assert_int_equal(load(f, end - 1), -ENOEXEC);
	img_ehdr(&f->img)->e_phoff = IMG_SIZE - sizeof(Elf64_Phdr);
	assert_int_equal(load(f, IMG_SIZE), -ENOEXEC);
	img_ehdr(&f->img)->e_phoff = IMG_SIZE + 1;
	assert_int_equal(load(f, IMG_SIZE), -ENOEXEC);
	img_ehdr(&f->img)->e_phoff = UINT64_MAX - 8;
	assert_int_equal(load(f, IMG_SIZE), -ENOEXEC);
}

static void test_segment_past_eof(void **state)
{
	struct fixture *f = *state;

	/* One byte short of segment 1. */
	assert_int_equal(load(f, IMG_SIZE - 1), -ENOEXEC);
	build_image(&f->img);
	img_phdr(&f->img, 2)->p_offset = IMG_SIZE + 1;
	assert_int_equal(load(f, IMG_SIZE), -ENOEXEC);
	build_image(&f->img);
	img_phdr(&f->img, 2)->p_offset = UINT64_MAX - 0x10; /* offset + filesz overflows */
	assert_int_equal(load(f, IMG_SIZE), -ENOEXEC);
	build_image(&f->img);
	img_phdr(&f->img, 2)->p_filesz = UINT64_MAX;
	img_phdr(&f->img, 2)->p_memsz = UINT64_MAX;
	assert_int_equal(load(f, IMG_SIZE), -ENOEXEC);
}

static void test_filesz_above_memsz(void **state)
{
	struct fixture *f = *state;

	img_phdr(&f->img, 0)->p_memsz = IMG_SEG0_LEN - 1;
	assert_int_equal(load(f, IMG_SIZE), -ENOEXEC);
}

static void test_segment_below_1mib(void **state)
{
	struct fixture *f = *state;

	img_phdr(&f->img, 2)->p_paddr = LAYOUT_HIMEM_START - 0x80;
	assert_int_equal(load(f, IMG_SIZE), -ENOEXEC);
	img_phdr(&f->img, 2)->p_paddr = 0;
	assert_int_equal(load(f, IMG_SIZE), -ENOEXEC);
}

static void test_segment_outside_ram(void **state)
{
	struct fixture *f = *state;

	/* Past the end of a 64 MiB guest: does not fit. */
	img_phdr(&f->img, 2)->p_paddr = GUEST_SIZE - 0x80;
	assert_int_equal(load(f, IMG_SIZE), -ENOMEM);
	img_phdr(&f->img, 2)->p_paddr = 100 * MiB;
	assert_int_equal(load(f, IMG_SIZE), -ENOMEM);
	/* In the MMIO hole or above 4 GiB: not a place for a kernel. */
	img_phdr(&f->img, 2)->p_paddr = 0xd0000000ULL;
	assert_int_equal(load(f, IMG_SIZE), -ENOEXEC);
	img_phdr(&f->img, 2)->p_paddr = 0x100000000ULL;
	assert_int_equal(load(f, IMG_SIZE), -ENOEXEC);
}

static void test_segment_overflow(void **state)
{
	struct fixture *f = *state;

	img_phdr(&f->img, 2)->p_paddr = UINT64_MAX - 0x10;
	assert_int_equal(load(f, IMG_SIZE), -ENOEXEC);
	img_phdr(&f->img, 2)->p_paddr = 2 * MiB;
	img_phdr(&f->img, 2)->p_memsz = UINT64_MAX - MiB;
	assert_int_equal(load(f, IMG_SIZE), -ENOEXEC);
}

static void test_entry_outside_segments(void **state)
{
	struct fixture *f = *state;

	img_ehdr(&f->img)->e_entry = 0;
	assert_int_equal(load(f, IMG_SIZE), -ENOEXEC);
	/* In segment 0's bss: not loaded from the file. */
	img_ehdr(&f->img)->e_entry = IMG_SEG0_PA + IMG_SEG0_LEN + 8;
	assert_int_equal(load(f, IMG_SIZE), -ENOEXEC);
	img_ehdr(&f->img)->e_entry = IMG_SEG1_PA + IMG_SEG1_LEN - 1;
	assert_int_equal(load(f, IMG_SIZE), 0);
}

static void test_nothing_written_on_error(void **state)
{
	struct fixture *f = *state;
	uint8_t *p = guest_mem_ptr(&f->mem, IMG_SEG0_PA, IMG_SEG0_MEM);
	size_t i;

	memset(p, 0x5a, IMG_SEG0_MEM);
	img_phdr(&f->img, 2)->p_paddr = 100 * MiB; /* the second segment is bad */
	assert_int_equal(load(f, IMG_SIZE), -ENOMEM);
	for (i = 0; i < IMG_SEG0_MEM; i++)
		assert_int_equal(p[i], 0x5a);
}

/* picohttpparser-style: the image ends exactly at a page boundary followed by
 * a PROT_NONE page, so any read past its end faults. */
static void test_guard_page(void **state)
{
	struct fixture *f = *state;
	long page = sysconf(_SC_PAGESIZE);
	uint8_t *area, *buf;
	Elf64_Ehdr *eh;
	Elf64_Phdr ph;
	struct boot_kernel k;
	size_t len, phoff;

	area = mmap(NULL, (size_t)page * 3, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		    0);
	assert_true(area != MAP_FAILED);
	assert_int_equal(mprotect(area + 2 * page, (size_t)page, PROT_NONE), 0);

	/* A valid image whose program header table is the last thing in it:
	 * header, one segment's bytes, then the phdrs ending at the guard. */
	len = 2 * (size_t)page;
	buf = area;
	phoff = len - sizeof(Elf64_Phdr);
	memcpy(buf, f->img.bytes, sizeof(Elf64_Ehdr));
	eh = (Elf64_Ehdr *)buf;
	eh->e_phoff = phoff;
	eh->e_phnum = 1;
	memset(&ph, 0, sizeof(ph));
	ph.p_type = PT_LOAD;
	ph.p_offset = 0x100;
	ph.p_paddr = IMG_SEG0_PA;
	ph.p_filesz = phoff - 0x100;
	ph.p_memsz = ph.p_filesz + 0x1000;
	eh->e_entry = IMG_SEG0_PA;
	memset(buf + 0x100, 0x90, ph.p_filesz);
	memcpy(buf + phoff, &ph, sizeof(ph));
	assert_int_equal(boot_elf_load(&f->mem, "guard.elf", buf, len, &k), 0);
	assert_int_equal(k.end, IMG_SEG0_PA + ph.p_memsz);

	/* Claims two program headers: the second lies in the guard page. */
	eh->e_phnum = 2;
	assert_int_equal(boot_elf_load(&f->mem, "guard.elf", buf, len, &k), -ENOEXEC);
	eh->e_phnum = 1;

	/* Segment reaching one byte into the guard page. */
	ph.p_filesz += 1;
	ph.p_offset = len - ph.p_filesz + 1;
	memcpy(buf + phoff, &ph, sizeof(ph));
	assert_int_equal(boot_elf_load(&f->mem, "guard.elf", buf, len, &k), -ENOEXEC);

	/* A truncated ELF header ending at the guard page. */
	buf = area + 2 * page - 40;
	memcpy(buf, f->img.bytes, 40);
	assert_int_equal(boot_elf_load(&f->mem, "guard.elf", buf, 40, &k), -ENOEXEC);
	/* Just the magic, ending at the guard page. */
	buf = area + 2 * page - 4;
	memcpy(buf, ELFMAG, SELFMAG);
	assert_true(boot_elf_is_elf(buf, 4));
	assert_int_equal(boot_elf_load(&f->mem, "guard.elf", buf, 4, &k), -ENOEXEC);

	munmap(area, (size_t)page * 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_load_ok, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_elf, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_class, setup, teardown),
		cmocka_unit_test_setup_teardown(test_big_endian, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_version, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_arch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_type, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_phentsize, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_phdrs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_load_segments, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncated_header, setup, teardown),
		cmocka_unit_test_setup_teardown(test_phdrs_past_eof, setup, teardown),
		cmocka_unit_test_setup_teardown(test_segment_past_eof, setup, teardown),
		cmocka_unit_test_setup_teardown(test_filesz_above_memsz, setup, teardown),
		cmocka_unit_test_setup_teardown(test_segment_below_1mib, setup, teardown),
		cmocka_unit_test_setup_teardown(test_segment_outside_ram, setup, teardown),
		cmocka_unit_test_setup_teardown(test_segment_overflow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_entry_outside_segments, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nothing_written_on_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_guard_page, setup, teardown),
	};

	log_set_level(LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
