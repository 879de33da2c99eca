/* bootparams.S - checks RSI = 0x7000 at entry, then prints what
 * boot_params holds for the test to check against the options:
 *   "boot_params 0x...."
 *   "e820 entries N"
 *   "e820 ADDR SIZE TYPE"         for every entry (64-bit hex, decimal type)
 *   "ram end 0x...."              end of the RAM entry that covers 1 MiB
 *   "cmdline 0x...."              cmd_line_ptr
 *   "initrd 0x.... size 0x.... first 0x...."  (first: its first 4 bytes)
 * and "bootparams ok" when RSI is right, there are 1..128 e820 entries and
 * one RAM entry covers [1 MiB, 1 MiB + 1); exits 0, or 1 on failure.
 */
#include "guest.h"

	GUEST_START

	PRINT "boot_params "
	mov %r15, %rdi
	mov $8, %esi
	call put_hex
	PRINT "\n"
	mov %r15, %rax
	EXPECT "rsi", 0x7000

	movzbl BP_E820_ENTRIES(%r15), %ecx
	PRINT "e820 entries "
	mov %ecx, %edi
	call put_dec
	PRINT "\n"
	test %ecx, %ecx
	FAIL_UNLESS nz, "no e820 entries"
	cmp $128, %ecx
	FAIL_UNLESS be, "more than 128 e820 entries"

	lea BP_E820_TABLE(%r15), %rbx
	xor %r12d, %r12d		/* end of the RAM entry covering 1 MiB */
1:	PRINT "e820 "
	mov (%rbx), %rdi
	mov $16, %esi
	call put_hex
	PRINT " "
	mov 8(%rbx), %rdi
	call put_hex
	PRINT " "
	mov 16(%rbx), %edi
	call put_dec
	PRINT "\n"
	cmpl $E820_RAM, 16(%rbx)
	jne 2f
	cmpq $0x100000, (%rbx)		/* addr <= 1 MiB */
	ja 2f
	mov (%rbx), %rax
	add 8(%rbx), %rax		/* end = addr + size */
	cmp $0x100000, %rax		/* end > 1 MiB */
	jbe 2f
	mov %rax, %r12
2:	add $E820_ENTRY_SIZE, %rbx
	dec %ecx
	jnz 1b

	test %r12, %r12
	FAIL_UNLESS nz, "no e820 RAM entry covers 1 MiB"
	PRINT "ram end "
	mov %r12, %rdi
	mov $16, %esi
	call put_hex
	PRINT "\n"

	PRINT "cmdline "
	movl BP_CMD_LINE_PTR(%r15), %edi
	mov $8, %esi
	call put_hex
	PRINT "\n"

	PRINT "initrd "
	movl BP_RAMDISK_IMAGE(%r15), %ebx
	mov %rbx, %rdi
	call put_hex
	PRINT " size "
	movl BP_RAMDISK_SIZE(%r15), %edi
	call put_hex
	test %edi, %edi
	jz 3f
	PRINT " first "
	movl (%rbx), %edi
	call put_hex
3:	PRINT "\n"

	FINISH "bootparams ok"

	GUEST_LIB
