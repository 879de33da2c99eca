/* snap_touch.S - writes its page number into every 4 KiB page of
 * [4 MiB, 34 MiB) (30 MiB of guest memory in use), then counts like
 * snap_count ("tick N\n"), checking one of those pages per tick and printing
 * "BAD PAGE" if it does not hold its number: a snapshot of it must hold
 * about 30 MiB, and a restore must bring every page back. */
#include "guest.h"

#define TOUCH_START 0x400000
#define TOUCH_PAGES 7680

	GUEST_START
	mov $TOUCH_START, %eax
	xor %ecx, %ecx
1:	mov %rcx, (%rax)
	add $4096, %rax
	inc %ecx
	cmp $TOUCH_PAGES, %ecx
	jb 1b

	xor %ebx, %ebx
2:	inc %rbx
	PRINT "tick "
	mov %rbx, %rdi
	call put_dec
	mov $'\n', %edi
	call putc
	/* check page (rbx * 7) % TOUCH_PAGES */
	imul $7, %rbx, %rax
	xor %edx, %edx
	mov $TOUCH_PAGES, %ecx
	div %rcx
	mov %rdx, %rax
	shl $12, %rax
	add $TOUCH_START, %rax
	cmp %rdx, (%rax)
	je 3f
	PRINT "BAD PAGE\n"
3:	mov $2000, %ecx
4:	dec %ecx
	jnz 4b
	jmp 2b

	GUEST_LIB
