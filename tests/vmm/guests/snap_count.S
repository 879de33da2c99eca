/* snap_count.S - counts forever: prints "tick N\n" for N = 1, 2, 3... with
 * a short delay loop between lines, keeping N in %rbx. A snapshot restored
 * anywhere must continue the sequence exactly: no restart, no gap, no
 * repeated character (a half-done port I/O exit would repeat one). */
#include "guest.h"

#ifndef DELAY
#define DELAY 2000
#endif

	GUEST_START
	xor %ebx, %ebx
1:	inc %rbx
	PRINT "tick "
	mov %rbx, %rdi
	call put_dec
	mov $'\n', %edi
	call putc
	mov $DELAY, %ecx
2:	dec %ecx
	jnz 2b
	jmp 1b

	GUEST_LIB
