/* pio.S - port I/O: an unhandled port (0x510) reads all ones at every
 * width and ignores writes; COM1's scratch register keeps what is written.
 * Prints each value and "pio ok"; exits 0, or 1 when a check failed.
 */
#include "guest.h"

#define NOPORT 0x510

	GUEST_START

	mov $NOPORT, %dx
	xor %eax, %eax
	inb %dx, %al
	EXPECT "inb 0x510", 0xff
	xor %eax, %eax
	inw %dx, %ax
	EXPECT "inw 0x510", 0xffff
	xor %eax, %eax
	inl %dx, %eax
	EXPECT "inl 0x510", 0xffffffff

	/* Writes to it are ignored... */
	mov $0x12, %al
	outb %al, %dx
	mov $0x1234, %ax
	outw %ax, %dx
	mov $0x12345678, %eax
	outl %eax, %dx
	/* ...and it still reads all ones. */
	xor %eax, %eax
	inb %dx, %al
	EXPECT "inb 0x510 after writes", 0xff
	xor %eax, %eax
	inl %dx, %eax
	EXPECT "inl 0x510 after writes", 0xffffffff

	/* Another unhandled port, with the immediate-port forms. */
	xor %eax, %eax
	inb $0xe9, %al
	EXPECT "inb 0xe9", 0xff

	/* COM1 scratch register. */
	mov $COM1_SCR, %dx
	mov $0x5a, %al
	outb %al, %dx
	xor %eax, %eax
	inb %dx, %al
	EXPECT "com1 scratch (0x5a)", 0x5a
	mov $0xa5, %al
	outb %al, %dx
	xor %eax, %eax
	inb %dx, %al
	EXPECT "com1 scratch (0xa5)", 0xa5

	FINISH "pio ok"

	GUEST_LIB
