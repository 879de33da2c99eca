/* virtq_pastend.S - a writable buffer that starts in RAM and runs past its
 * end (128 MiB): the device must report DEVICE_NEEDS_RESET and write
 * nothing. Run with --disk and the default --mem 128. */
#include "guest.h"
#include "virtq_lib.h"

	GUEST_START
	mov $8, %edi
	call virtio_init
	movl $0, (VQ_HDR)
	movq $0, (VQ_HDR + 8)
	DESC 0, VQ_HDR, 16, F_NEXT, 1
	DESC 1, 0x7ffff00, 4096, F_WRITE | F_NEXT, 2
	DESC 2, VQ_STATUS, 1, F_WRITE, 0
	SUBMIT 0
	BROKEN_THEN_RESET
	FINISH "virtq pastend ok"

	VIRTQ_LIB
	GUEST_LIB
