/* virtq_badaddr.S - a descriptor pointing at 2 GiB (not RAM with 128 MiB):
 * the device must report DEVICE_NEEDS_RESET and use nothing; a reset
 * clears it. Exits 0, or 1 on a failed check. Run with --disk. */
#include "guest.h"
#include "virtq_lib.h"

	GUEST_START
	mov $8, %edi
	call virtio_init
	DESC 0, VQ_HDR, 16, F_NEXT, 1
	DESC 1, 0x80000000, 512, F_WRITE | F_NEXT, 2
	DESC 2, VQ_STATUS, 1, F_WRITE, 0
	SUBMIT 0
	BROKEN_THEN_RESET
	FINISH "virtq badaddr ok"

	VIRTQ_LIB
	GUEST_LIB
