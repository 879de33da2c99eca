/* bigbss.S - a guest whose data segment is 64 MiB of .bss (p_memsz much
 * larger than p_filesz): it does not fit in --mem 32, and with enough
 * memory its first and last bytes read zero and are writable.
 * Prints "bigbss ok"; exits 0, or 1 on failure. */
#include "guest.h"

	GUEST_START
	lea big(%rip), %rbx
	movl (%rbx), %eax
	EXPECT "first word", 0
	lea big_end(%rip), %rbx
	movl -4(%rbx), %eax
	EXPECT "last word", 0
	movl $0xfeedface, -4(%rbx)
	movl -4(%rbx), %eax
	EXPECT "last word after write", 0xfeedface
	FINISH "bigbss ok"

	GUEST_LIB

	.bss
	.balign 4096
big:	.skip 64 * 1024 * 1024
big_end:
