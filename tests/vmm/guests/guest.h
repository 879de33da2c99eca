/* guest.h - shared start-up code and helpers for kiln-vmm's tiny test guests.
 *
 * A guest is one .S file that does `#include "guest.h"`, starts with
 * GUEST_START, and ends with GUEST_LIB (which emits the helper routines).
 * It is entered by kiln-vmm in 64-bit mode at _start with an identity map
 * of [0, 4 GiB), interrupts off, an IDT of limit 0 and RSI = boot_params.
 *
 * After GUEST_START:  %rsp = a 16 KiB stack in .bss,
 *                     %r15 = RSI at entry (the boot_params address),
 *                     %r13 = RFLAGS at entry,
 *                     %r14 = 0 (failure counter used by EXPECT).
 *
 * Helpers (all preserve every register except %rax; arguments as in the
 * SysV ABI: %rdi, %rsi, %rdx):
 *   putc(dil)                 one byte to COM1 (polls LSR.THRE first)
 *   puts(rdi)                 a NUL-terminated string to COM1
 *   put_hex(rdi, esi)         "0x" and the low esi hex digits of rdi
 *   put_dec(rdi)              rdi in decimal
 *   expect(rdi, rsi, rdx)     prints "label = 0xVALUE ok" or "... FAIL",
 *                             counts failures in %r14 (use EXPECT)
 *   finish(rdi)               prints rdi and exits 0 if %r14 == 0; otherwise
 *                             prints the failure count and exits 1
 *   guest_exit(edi)           writes edi to the control page exit register
 *
 * Everything runs at CPL 0, which this host's nested KVM emulates at about
 * a million instructions per second: no delay loops, keep guests short.
 */
#ifndef KILN_TESTS_VMM_GUEST_H
#define KILN_TESTS_VMM_GUEST_H

#define COM1            0x3f8
#define COM1_THR        (COM1 + 0)
#define COM1_LSR        (COM1 + 5)
#define COM1_SCR        (COM1 + 7)
#define LSR_THRE        0x20

#define I8042_CMD       0x64

#define CTL_BASE        0xd0000000
#define CTL_MAGIC       0x00
#define CTL_VERSION     0x04
#define CTL_EXIT        0x08
#define CTL_READY       0x0c

/* struct boot_params offsets (Linux, arch/x86/include/uapi/asm/bootparam.h) */
#define BP_E820_ENTRIES 0x1e8
#define BP_RAMDISK_IMAGE 0x218
#define BP_RAMDISK_SIZE 0x21c
#define BP_CMD_LINE_PTR 0x228
#define BP_E820_TABLE   0x2d0
#define E820_ENTRY_SIZE 20
#define E820_RAM        1

	.code64

/* Entry point: stack, save the entry state, then fall into the guest body. */
.macro GUEST_START
	.section .text.start, "ax"
	.globl _start
_start:
	mov %rsi, %r15
	lea guest_stack_top(%rip), %rsp
	pushfq
	pop %r13
	xor %r14d, %r14d
.endm

/* EXPECT "label", expected: compares %eax with the 32-bit `expected`. */
.macro EXPECT label:req, expected:req
	.pushsection .rodata
.Lexpect_label\@:
	.asciz "\label"
	.popsection
	push %rdi
	push %rsi
	push %rdx
	mov %eax, %esi
	mov $(\expected), %edx
	lea .Lexpect_label\@(%rip), %rdi
	call expect
	pop %rdx
	pop %rsi
	pop %rdi
.endm

/* PRINT "text": puts of a string literal. */
.macro PRINT text:req
	.pushsection .rodata
.Lprint_text\@:
	.asciz "\text"
	.popsection
	push %rdi
	lea .Lprint_text\@(%rip), %rdi
	call puts
	pop %rdi
.endm

/* FAIL_UNLESS cc, "what": if condition code cc is false, prints
 * "FAIL: what" and exits 1. */
.macro FAIL_UNLESS cc:req, what:req
	j\cc .Lok\@
	.pushsection .rodata
.Lfail_text\@:
	.asciz "FAIL: \what\n"
	.popsection
	lea .Lfail_text\@(%rip), %rdi
	call puts
	mov $1, %edi
	jmp guest_exit
.Lok\@:
.endm

/* FINISH "text": see finish() above. */
.macro FINISH text:req
	.pushsection .rodata
.Lfinish_text\@:
	.asciz "\text"
	.popsection
	lea .Lfinish_text\@(%rip), %rdi
	jmp finish
.endm

.macro GUEST_LIB
	.text
putc:
	push %rcx
	push %rdx
	mov $1000, %ecx	/* bounded, like a driver: never hang here */
1:	mov $COM1_LSR, %dx
	in %dx, %al
	test $LSR_THRE, %al
	jnz 2f
	dec %ecx
	jnz 1b
2:	mov $COM1_THR, %dx
	mov %edi, %eax
	out %al, %dx
	pop %rdx
	pop %rcx
	ret

puts:
	push %rdi
	push %rsi
	mov %rdi, %rsi
1:	movzbl (%rsi), %edi
	test %edi, %edi
	jz 2f
	call putc
	inc %rsi
	jmp 1b
2:	pop %rsi
	pop %rdi
	ret

put_hex:
	push %rcx
	push %rdi
	push %r8
	mov %rdi, %r8
	mov $'0', %edi
	call putc
	mov $'x', %edi
	call putc
	mov %esi, %ecx
1:	dec %ecx
	js 3f
	mov %r8, %rdi
	push %rcx
	shl $2, %ecx
	shr %cl, %rdi
	pop %rcx
	and $0xf, %edi
	cmp $10, %edi
	jb 2f
	add $('a' - 10 - '0'), %edi
2:	add $'0', %edi
	call putc
	jmp 1b
3:	pop %r8
	pop %rdi
	pop %rcx
	ret

put_dec:
	push %rcx
	push %rdx
	push %rdi
	push %r8
	mov %rdi, %rax
	mov $10, %r8d
	xor %ecx, %ecx
1:	xor %edx, %edx
	div %r8
	push %rdx
	inc %ecx
	test %rax, %rax
	jnz 1b
2:	pop %rdi
	add $'0', %edi
	call putc
	dec %ecx
	jnz 2b
	pop %r8
	pop %rdi
	pop %rdx
	pop %rcx
	ret

expect:
	push %rdi
	push %rsi
	push %rdx
	push %rbx
	mov %rsi, %rbx
	call puts
	lea .Lexpect_eq(%rip), %rdi
	call puts
	mov %ebx, %edi
	mov $8, %esi
	call put_hex
	cmp %edx, %ebx
	jne 1f
	lea .Lexpect_ok(%rip), %rdi
	call puts
	jmp 2f
1:	inc %r14
	lea .Lexpect_want(%rip), %rdi
	call puts
	mov %edx, %edi
	mov $8, %esi
	call put_hex
	lea .Lexpect_fail(%rip), %rdi
	call puts
2:	pop %rbx
	pop %rdx
	pop %rsi
	pop %rdi
	ret

finish:
	test %r14, %r14
	jnz 1f
	call puts
	mov $'\n', %edi
	call putc
	xor %edi, %edi
	jmp guest_exit
1:	mov %r14, %rdi
	call put_dec
	lea .Lfinish_failed(%rip), %rdi
	call puts
	mov $1, %edi
	jmp guest_exit

guest_exit:
	mov $CTL_BASE, %eax	/* zero-extends: 0x00000000d0000000 */
	movl %edi, CTL_EXIT(%rax)
1:	hlt			/* not reached: the VMM stops the VM */
	jmp 1b

	.section .rodata
.Lexpect_eq:	.asciz " = "
.Lexpect_ok:	.asciz " ok\n"
.Lexpect_want:	.asciz ", expected "
.Lexpect_fail:	.asciz " FAIL\n"
.Lfinish_failed: .asciz " check(s) failed\n"

	.bss
	.balign 16
guest_stack:
	.skip 16384
guest_stack_top:
.endm

#endif
