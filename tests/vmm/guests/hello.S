/* hello.S - prints a line on COM1 and exits with status 0. */
#include "guest.h"

	GUEST_START
	PRINT "hello from a tiny guest\n"
	xor %edi, %edi
	jmp guest_exit

	GUEST_LIB
