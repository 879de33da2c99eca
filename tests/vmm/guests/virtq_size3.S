/* virtq_size3.S - a queue size of 3 (not a power of two): QueueReady stays
 * 0 and the device reports DEVICE_NEEDS_RESET; a notification anyway does
 * nothing. Run with --disk. */
#include "guest.h"
#include "virtq_lib.h"

	GUEST_START
	mov $3, %edi
	call virtio_init
	mov $VIRTIO_BASE, %ebx
	movl VIO_QUEUE_READY(%rbx), %eax
	EXPECT "queue ready", 0
	DESC 0, VQ_STATUS, 1, F_WRITE, 0
	SUBMIT 0
	BROKEN_THEN_RESET
	FINISH "virtq size3 ok"

	VIRTQ_LIB
	GUEST_LIB
