/* virtq_headoob.S - the available ring names descriptor 200 in a queue of 8:
 * DEVICE_NEEDS_RESET. Run with --disk. */
#include "guest.h"
#include "virtq_lib.h"

	GUEST_START
	mov $8, %edi
	call virtio_init
	SUBMIT 200
	BROKEN_THEN_RESET
	FINISH "virtq headoob ok"

	VIRTQ_LIB
	GUEST_LIB
