/* virtq_loop.S - a descriptor chain that loops (0 -> 1 -> 0): the device
 * must report DEVICE_NEEDS_RESET and use nothing. Run with --disk. */
#include "guest.h"
#include "virtq_lib.h"

	GUEST_START
	mov $8, %edi
	call virtio_init
	DESC 0, VQ_HDR, 16, F_NEXT, 1
	DESC 1, VQ_DATA, 512, F_NEXT, 0
	SUBMIT 0
	BROKEN_THEN_RESET
	FINISH "virtq loop ok"

	VIRTQ_LIB
	GUEST_LIB
