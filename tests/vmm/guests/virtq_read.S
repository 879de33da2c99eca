/* virtq_read.S - drives the virtio-blk device like a driver and reads
 * sector 0 (header, 512-byte data buffer, status byte); prints the first 16
 * bytes of the sector. Exits 0, or 1 on a failed check. Run with --disk. */
#include "guest.h"
#include "virtq_lib.h"

	GUEST_START
	mov $8, %edi
	call virtio_init
	movl $0, (VQ_HDR)		/* VIRTIO_BLK_T_IN */
	movq $0, (VQ_HDR + 8)		/* sector 0 */
	movb $0xff, (VQ_STATUS)
	DESC 0, VQ_HDR, 16, F_NEXT, 1
	DESC 1, VQ_DATA, 512, F_WRITE | F_NEXT, 2
	DESC 2, VQ_STATUS, 1, F_WRITE, 0
	SUBMIT 0
	call wait_used
	EXPECT "request completed", 1
	movzbl (VQ_STATUS), %eax
	EXPECT "blk status", 0
	movl (VQ_USED + 8), %eax	/* used ring[0].len */
	EXPECT "used len", 513
	mov $VIRTIO_BASE, %ebx
	movl VIO_INT_STATUS(%rbx), %eax
	EXPECT "interrupt status", 1
	movb $0, (VQ_DATA + 16)
	PRINT "sector 0: "
	mov $VQ_DATA, %edi
	call puts
	PRINT "\n"
	FINISH "virtq read ok"

	VIRTQ_LIB
	GUEST_LIB
