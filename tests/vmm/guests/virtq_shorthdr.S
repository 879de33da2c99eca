/* virtq_shorthdr.S - a virtio-blk request whose header is 8 bytes instead
 * of 16: a malformed request, DEVICE_NEEDS_RESET. Run with --disk. */
#include "guest.h"
#include "virtq_lib.h"

	GUEST_START
	mov $8, %edi
	call virtio_init
	DESC 0, VQ_HDR, 8, F_NEXT, 1
	DESC 1, VQ_STATUS, 1, F_WRITE, 0
	SUBMIT 0
	BROKEN_THEN_RESET
	FINISH "virtq shorthdr ok"

	VIRTQ_LIB
	GUEST_LIB
