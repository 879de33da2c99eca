/* status.S - exits with the number given as "status=N" on the kernel
 * command line (N & 0xff), which shows the command line reaches the guest.
 * Prints "cmdline: <the whole command line>" first. Exits 3 with a message
 * when there is no status= word, 4 when boot_params has no command line.
 */
#include "guest.h"

	GUEST_START
	movl BP_CMD_LINE_PTR(%r15), %ebx	/* 32-bit physical address */
	test %ebx, %ebx
	jnz 1f
	PRINT "no cmd_line_ptr in boot_params\n"
	mov $4, %edi
	jmp guest_exit
1:	PRINT "cmdline: "
	mov %rbx, %rdi
	call puts
	PRINT "\n"

	/* Find "status=" at the start or after a space. */
	mov %rbx, %rsi
	mov $' ', %ecx			/* previous byte: as if a space */
2:	movzbl (%rsi), %eax
	test %eax, %eax
	jz .Lnot_found
	cmp $' ', %ecx
	jne 3f
	cmpl $0x74617473, (%rsi)	/* "stat" */
	jne 3f
	cmpw $0x7375, 4(%rsi)		/* "us" */
	jne 3f
	cmpb $'=', 6(%rsi)
	je .Lfound
3:	mov %eax, %ecx
	inc %rsi
	jmp 2b

.Lfound:
	add $7, %rsi
	xor %edi, %edi
4:	movzbl (%rsi), %eax
	sub $'0', %eax
	cmp $9, %eax
	ja 5f
	imul $10, %edi, %edi
	add %eax, %edi
	inc %rsi
	jmp 4b
5:	PRINT "status="
	push %rdi
	call put_dec
	PRINT "\n"
	pop %rdi
	and $0xff, %edi
	jmp guest_exit

.Lnot_found:
	PRINT "no status= on the command line\n"
	mov $3, %edi
	jmp guest_exit

	GUEST_LIB
