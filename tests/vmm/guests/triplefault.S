/* triplefault.S - executes ud2. The IDT has limit 0, so the #UD becomes a
 * #GP, then a double fault, then a triple fault (shutdown): kiln-vmm must
 * exit 1 and say "triple fault" on stderr. */
#include "guest.h"

	GUEST_START
	PRINT "about to fault\n"
	ud2
	PRINT "survived ud2?\n"
	mov $9, %edi
	jmp guest_exit

	GUEST_LIB
