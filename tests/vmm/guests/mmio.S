/* mmio.S - MMIO: the control page's magic and version; unhandled addresses
 * (0xd0100000 in the device window, 0xe0000000, and 1 GiB which is above
 * guest RAM with the default --mem 128) read all ones at every width and
 * ignore writes; writing the ready register does not stop the guest.
 * Prints each value and "mmio ok"; exits 0, or 1 on failure.
 */
#include "guest.h"

/* CHECK_HOLE addr, "name": reads at 8/16/32/64 bits, writes, reads again. */
.macro CHECK_HOLE addr:req, name:req
	mov $\addr, %ebx
	xor %eax, %eax
	movb (%rbx), %al
	EXPECT "readb \name", 0xff
	xor %eax, %eax
	movw (%rbx), %ax
	EXPECT "readw \name", 0xffff
	movl (%rbx), %eax
	EXPECT "readl \name", 0xffffffff
	movq (%rbx), %rax
	push %rax
	EXPECT "readq \name (low)", 0xffffffff
	pop %rax
	shr $32, %rax
	EXPECT "readq \name (high)", 0xffffffff
	movl $0x5a5a5a5a, (%rbx)
	movb $0x12, 1(%rbx)
	movl (%rbx), %eax
	EXPECT "readl \name after writes", 0xffffffff
.endm

	GUEST_START

	mov $CTL_BASE, %ebx
	movl CTL_MAGIC(%rbx), %eax
	EXPECT "ctl magic", 0x4e4c494b
	movl CTL_VERSION(%rbx), %eax
	EXPECT "ctl version", 1

	/* The "ready" event: noted by the VMM, the guest goes on running. */
	movl $1234, CTL_READY(%rbx)
	PRINT "ready written\n"

	CHECK_HOLE 0xd0100000, "0xd0100000"
	CHECK_HOLE 0xe0000000, "0xe0000000"
	CHECK_HOLE 0x40000000, "0x40000000"

	FINISH "mmio ok"

	GUEST_LIB
