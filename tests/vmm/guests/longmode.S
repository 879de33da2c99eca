/* longmode.S - checks the CPU state kiln-vmm promises at the entry point:
 * CR0.PE|PG, CR4.PAE, EFER.LME|LMA, CS = 0x10, DS/ES/SS = 0x18,
 * RFLAGS = 0x2, IDT limit 0, and that the identity map works at 100 MiB
 * (RAM) and at 0xd0000000 (the control page). Prints each value and
 * "long mode ok"; exits 0, or 1 when a check failed. Needs --mem > 101.
 */
#include "guest.h"

	GUEST_START

	mov %r13, %rax
	EXPECT "rflags", 0x2

	mov %cr0, %rax
	and $0x80000001, %eax
	EXPECT "cr0 & (PG|PE)", 0x80000001

	mov %cr4, %rax
	and $0x20, %eax
	EXPECT "cr4 & PAE", 0x20

	mov $0xc0000080, %ecx		/* IA32_EFER */
	rdmsr
	and $0x500, %eax
	EXPECT "efer & (LMA|LME)", 0x500

	mov %cs, %eax
	movzwl %ax, %eax
	EXPECT "cs", 0x10
	mov %ds, %eax
	movzwl %ax, %eax
	EXPECT "ds", 0x18
	mov %es, %eax
	movzwl %ax, %eax
	EXPECT "es", 0x18
	mov %ss, %eax
	movzwl %ax, %eax
	EXPECT "ss", 0x18

	sidt idtr(%rip)
	movzwl idtr(%rip), %eax
	EXPECT "idt limit", 0

	/* The identity map: what is stored at 100 MiB is read back there. */
	mov $0x6400000, %ebx
	movl $0x600df00d, (%rbx)
	movl $0x12345678, 4092(%rbx)
	mov (%rbx), %eax
	EXPECT "[100 MiB]", 0x600df00d
	mov 4092(%rbx), %eax
	EXPECT "[100 MiB + 4092]", 0x12345678

	/* ...and reaches MMIO high under 4 GiB. */
	mov $CTL_BASE, %ebx
	mov CTL_MAGIC(%rbx), %eax
	EXPECT "[0xd0000000]", 0x4e4c494b

	FINISH "long mode ok"

	GUEST_LIB

	.data
idtr:	.skip 10
