/* elf.c - loading a vmlinux (an ELF64 x86-64 executable) into guest RAM.
 *
 * Linux's vmlinux carries the physical load address of every segment in
 * p_paddr and the physical address of startup_64 in e_entry; kiln's tiny
 * test guests are linked the same way. Headers are copied out of the buffer
 * with memcpy (the file gives no alignment guarantee) and every offset and
 * size is checked against the buffer before use.
 */
#include "vmm/boot/elf.h"

#include "common/log.h"
#include "vmm/layout.h"

#include <elf.h>
#include <errno.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "kiln reads little-endian ELF headers in place: build it on a little-endian host"
#endif

_Static_assert(sizeof(Elf64_Ehdr) == 64, "ELF64 header is 64 bytes");
_Static_assert(sizeof(Elf64_Phdr) == 56, "ELF64 program header is 56 bytes");

static const char *elf_machine_name(unsigned int machine)
{
	switch (machine) {
	case EM_386:
		return "i386";
	case EM_ARM:
		return "32-bit ARM";
	case EM_AARCH64:
		return "arm64 (AArch64)";
	case EM_RISCV:
		return "RISC-V";
	case EM_PPC:
		return "PowerPC";
	case EM_PPC64:
		return "64-bit PowerPC";
	case EM_S390:
		return "s390";
	case EM_MIPS:
		return "MIPS";
	case EM_SPARCV9:
		return "SPARC64";
	case EM_IA_64:
		return "IA-64";
	case 258: /* EM_LOONGARCH, missing from older <elf.h> */
		return "LoongArch";
	default:
		return NULL;
	}
}

static const char *elf_type_name(unsigned int type)
{
	switch (type) {
	case ET_REL:
		return "a relocatable object (ET_REL)";
	case ET_DYN:
		return "a position-independent executable or shared object (ET_DYN)";
	case ET_CORE:
		return "a core dump (ET_CORE)";
	default:
		return "of an unknown type";
	}
}

bool boot_elf_is_elf(const uint8_t *buf, size_t len)
{
	return len >= SELFMAG && memcmp(buf, ELFMAG, SELFMAG) == 0;
}

/* Checks the ELF header; returns 0 or -ENOEXEC, logged. */
static int elf_check_header(const char *path, const Elf64_Ehdr *eh, size_t len)
{
	const char *arch;
	uint64_t table;

	if (eh->e_ident[EI_CLASS] != ELFCLASS64) {
		log_error("kernel %s is a %s ELF; kiln boots 64-bit x86-64 kernels", path,
			  eh->e_ident[EI_CLASS] == ELFCLASS32 ? "32-bit" : "malformed");
		return -ENOEXEC;
	}
	if (eh->e_ident[EI_DATA] != ELFDATA2LSB) {
		log_error("kernel %s is not a little-endian ELF, so not an x86-64 kernel", path);
		return -ENOEXEC;
	}
	if (eh->e_ident[EI_VERSION] != EV_CURRENT || eh->e_version != EV_CURRENT) {
		log_error("kernel %s has an unknown ELF version", path);
		return -ENOEXEC;
	}
	if (eh->e_machine != EM_X86_64) {
		arch = elf_machine_name(eh->e_machine);
		if (arch)
			log_error("kernel %s is an ELF for %s, not x86-64", path, arch);
		else
			log_error("kernel %s is an ELF for machine type %u, not x86-64", path,
				  eh->e_machine);
		return -ENOEXEC;
	}
	if (eh->e_type != ET_EXEC) {
		log_error("kernel %s is %s, not an executable vmlinux (ET_EXEC)", path,
			  elf_type_name(eh->e_type));
		return -ENOEXEC;
	}
	if (eh->e_phentsize != sizeof(Elf64_Phdr)) {
		log_error("kernel %s has program headers of %u bytes; ELF64 ones are %zu", path,
			  eh->e_phentsize, sizeof(Elf64_Phdr));
		return -ENOEXEC;
	}
	if (eh->e_phnum == 0 || eh->e_phnum == PN_XNUM) {
		log_error("kernel %s has %s program headers", path,
			  eh->e_phnum == 0 ? "no" : "too many");
		return -ENOEXEC;
	}
	table = (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr);
	if (eh->e_phoff > len || table > len - eh->e_phoff) {
		log_error("kernel %s is truncated (its %u program headers at offset %llu need "
			  "%llu bytes; the file has %zu)",
			  path, eh->e_phnum, (unsigned long long)eh->e_phoff,
			  (unsigned long long)table, len);
		return -ENOEXEC;
	}
	return 0;
}

/* Checks one PT_LOAD program header; returns 0 or -errno, logged. */
static int elf_check_segment(const struct guest_mem *m, const char *path, unsigned int i,
			     const Elf64_Phdr *ph, size_t len)
{
	uint64_t end;

	if (ph->p_offset > len || ph->p_filesz > len - ph->p_offset) {
		log_error("kernel %s is truncated (segment %u has %llu bytes at offset %llu; "
			  "the file has %zu)",
			  path, i, (unsigned long long)ph->p_filesz,
			  (unsigned long long)ph->p_offset, len);
		return -ENOEXEC;
	}
	if (ph->p_filesz > ph->p_memsz) {
		log_error("kernel %s: segment %u has more file bytes (%llu) than memory "
			  "bytes (%llu)",
			  path, i, (unsigned long long)ph->p_filesz,
			  (unsigned long long)ph->p_memsz);
		return -ENOEXEC;
	}
	if (ph->p_memsz == 0)
		return 0;
	if (ph->p_paddr > UINT64_MAX - ph->p_memsz) {
		log_error("kernel %s: segment %u at 0x%llx of %llu bytes wraps around the "
			  "address space",
			  path, i, (unsigned long long)ph->p_paddr,
			  (unsigned long long)ph->p_memsz);
		return -ENOEXEC;
	}
	end = ph->p_paddr + ph->p_memsz;
	if (ph->p_paddr < LAYOUT_HIMEM_START) {
		log_error("kernel %s: segment %u loads at 0x%llx, below 1 MiB where kiln keeps "
			  "its boot structures",
			  path, i, (unsigned long long)ph->p_paddr);
		return -ENOEXEC;
	}
	if (end > m->low_size) {
		if (end <= LAYOUT_MMIO_GAP_START) {
			log_error("kernel %s needs guest memory up to %llu MiB; the guest has "
				  "%llu MiB; use --mem",
				  path, (unsigned long long)((end + (1 << 20) - 1) >> 20),
				  (unsigned long long)(m->size >> 20));
			return -ENOMEM;
		}
		log_error("kernel %s: segment %u loads at [0x%llx, 0x%llx), which is not guest "
			  "RAM below 3 GiB",
			  path, i, (unsigned long long)ph->p_paddr, (unsigned long long)end);
		return -ENOEXEC;
	}
	if (!guest_mem_contains(m, ph->p_paddr, ph->p_memsz)) {
		log_error("kernel %s: segment %u at 0x%llx is not guest RAM", path, i,
			  (unsigned long long)ph->p_paddr);
		return -ENOMEM;
	}
	return 0;
}

int boot_elf_load(struct guest_mem *m, const char *path, const uint8_t *buf, size_t len,
		  struct boot_kernel *out)
{
	uint64_t start = UINT64_MAX, end = 0;
	bool entry_found = false;
	unsigned int i, loads = 0;
	Elf64_Ehdr eh;
	Elf64_Phdr ph;
	uint8_t *dst;
	int ret;

	memset(out, 0, sizeof(*out));
	if (!boot_elf_is_elf(buf, len)) {
		log_error("kernel %s is not an ELF file", path);
		return -ENOEXEC;
	}
	if (len < sizeof(eh)) {
		log_error("kernel %s is truncated (%zu bytes; an ELF64 header alone is %zu)", path,
			  len, sizeof(eh));
		return -ENOEXEC;
	}
	memcpy(&eh, buf, sizeof(eh));
	ret = elf_check_header(path, &eh, len);
	if (ret < 0)
		return ret;

	/* Pass 1: validate every segment before writing anything. */
	for (i = 0; i < eh.e_phnum; i++) {
		memcpy(&ph, buf + eh.e_phoff + (uint64_t)i * sizeof(ph), sizeof(ph));
		if (ph.p_type != PT_LOAD)
			continue;
		ret = elf_check_segment(m, path, i, &ph, len);
		if (ret < 0)
			return ret;
		if (ph.p_memsz == 0)
			continue;
		loads++;
		if (ph.p_paddr < start)
			start = ph.p_paddr;
		if (ph.p_paddr + ph.p_memsz > end)
			end = ph.p_paddr + ph.p_memsz;
		if (eh.e_entry >= ph.p_paddr && eh.e_entry - ph.p_paddr < ph.p_filesz)
			entry_found = true;
	}
	if (loads == 0) {
		log_error("kernel %s has no loadable segments", path);
		return -ENOEXEC;
	}
	if (!entry_found) {
		log_error("kernel %s: entry point 0x%llx is not inside a loaded segment", path,
			  (unsigned long long)eh.e_entry);
		return -ENOEXEC;
	}

	/* Pass 2: copy. Every range was checked above. */
	for (i = 0; i < eh.e_phnum; i++) {
		memcpy(&ph, buf + eh.e_phoff + (uint64_t)i * sizeof(ph), sizeof(ph));
		if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
			continue;
		dst = guest_mem_ptr(m, ph.p_paddr, ph.p_memsz);
		if (!dst)
			return -ENOMEM; /* unreachable: checked in pass 1 */
		memcpy(dst, buf + ph.p_offset, ph.p_filesz);
		memset(dst + ph.p_filesz, 0, ph.p_memsz - ph.p_filesz);
		log_debug("kernel %s: segment %u: %llu bytes at 0x%llx (%llu in memory)", path, i,
			  (unsigned long long)ph.p_filesz, (unsigned long long)ph.p_paddr,
			  (unsigned long long)ph.p_memsz);
	}
	out->entry = eh.e_entry;
	out->start = start;
	out->end = end;
	out->bzimage = false;
	return 0;
}
