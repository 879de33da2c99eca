/* exit7.S - writes 7 to the control page's exit register: kiln-vmm must
 * exit with status 7. Prints nothing. */
#include "guest.h"

	GUEST_START
	mov $7, %edi
	jmp guest_exit

	GUEST_LIB
