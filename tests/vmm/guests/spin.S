/* spin.S - prints "spinning" and loops forever with interrupts off, so
 * that a test can check kiln-vmm stops promptly on SIGTERM. */
#include "guest.h"

	GUEST_START
	PRINT "spinning\n"
1:	jmp 1b

	GUEST_LIB
