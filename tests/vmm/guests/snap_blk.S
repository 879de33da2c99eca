/* snap_blk.S - a virtio-blk driver that survives a snapshot: reads sector 0
 * (avail ring slot 0), prints it, prints "waiting" and polls the UART until
 * a byte of console input arrives, then reads sector 1 through the same
 * queue (avail ring slot 1, used index 2) and prints it. Restored from a
 * snapshot taken while it waits, the second read only works when the
 * device's queue positions were restored. Exits 0, or 1 on a failed check.
 * Run with --disk. */
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
	EXPECT "read 1 completed", 1
	movzbl (VQ_STATUS), %eax
	EXPECT "read 1 status", 0
	movb $0, (VQ_DATA + 16)
	PRINT "read 1: "
	mov $VQ_DATA, %edi
	call puts
	PRINT "\nwaiting\n"

	/* Poll LSR.DR (a port exit each time) until input arrives. */
1:	mov $COM1_LSR, %dx
	in %dx, %al
	test $1, %al
	jz 1b
	mov $COM1, %dx
	in %dx, %al

	movq $1, (VQ_HDR + 8)		/* sector 1 */
	movb $0xff, (VQ_STATUS)
	movb $0, (VQ_DATA)
	movw $0, (VQ_AVAIL + 6)		/* avail ring[1] = head 0 */
	movw $2, (VQ_AVAIL + 2)		/* avail idx 2 */
	mov $VIRTIO_BASE, %ebx
	movl $0, VIO_QUEUE_NOTIFY(%rbx)
	mov $200000, %ecx
2:	movzwl (VQ_USED + 2), %eax
	cmp $2, %eax
	je 3f
	dec %ecx
	jnz 2b
3:	EXPECT "used idx after read 2", 2
	movzbl (VQ_STATUS), %eax
	EXPECT "read 2 status", 0
	movb $0, (VQ_DATA + 16)
	PRINT "read 2: "
	mov $VQ_DATA, %edi
	call puts
	PRINT "\n"
	FINISH "snap blk ok"

	VIRTQ_LIB
	GUEST_LIB
