/* reset.S - pulses the CPU reset line through the i8042 (0xFE to port
 * 0x64), as Linux does with reboot=k: kiln-vmm must exit 0 saying the
 * guest reset. */
#include "guest.h"

	GUEST_START
	PRINT "resetting\n"
	mov $0xfe, %al
	outb %al, $I8042_CMD
	PRINT "still running after the reset?\n"
	mov $9, %edi
	jmp guest_exit

	GUEST_LIB
