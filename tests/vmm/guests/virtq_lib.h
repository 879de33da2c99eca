/* virtq_lib.h - a tiny virtio-mmio driver for kiln-vmm's virtio test guests
 * (tests/vmm/guests/virtq_*.S, run with --disk so a virtio-blk device sits
 * at 0xd0001000). Include after guest.h; put VIRTQ_LIB before GUEST_LIB.
 *
 * The queue lives at fixed physical addresses well above the guest image:
 * descriptors at VQ_DESC, available ring at VQ_AVAIL, used ring at VQ_USED,
 * and one request's header, data and status byte at VQ_HDR/VQ_DATA/VQ_STATUS.
 *
 * Routines (preserve every register except %rax):
 *   virtio_init(edi = queue size)  reset, ACK, DRIVER, VERSION_1 only,
 *                                  FEATURES_OK (checked), queue 0 of edi
 *                                  entries, QueueReady, DRIVER_OK
 *   wait_used()                    eax = 1 when used->idx moved, else 0
 *   wait_broken()                  polls Status until DEVICE_NEEDS_RESET
 *                                  (0x40) or gives up; eax = Status
 * Macros: DESC i, addr, len, flags, next   SUBMIT head (publish + notify)
 */
#ifndef KILN_TESTS_VMM_VIRTQ_LIB_H
#define KILN_TESTS_VMM_VIRTQ_LIB_H

#define VIRTIO_BASE     0xd0001000
#define VIO_MAGIC       0x000
#define VIO_VERSION     0x004
#define VIO_DEVICE_ID   0x008
#define VIO_DEV_FEAT    0x010
#define VIO_DEV_FEAT_SEL 0x014
#define VIO_DRV_FEAT    0x020
#define VIO_DRV_FEAT_SEL 0x024
#define VIO_QUEUE_SEL   0x030
#define VIO_QUEUE_NUM_MAX 0x034
#define VIO_QUEUE_NUM   0x038
#define VIO_QUEUE_READY 0x044
#define VIO_QUEUE_NOTIFY 0x050
#define VIO_INT_STATUS  0x060
#define VIO_STATUS      0x070
#define VIO_DESC_LO     0x080
#define VIO_DESC_HI     0x084
#define VIO_DRIVER_LO   0x090
#define VIO_DRIVER_HI   0x094
#define VIO_DEVICE_LO   0x0a0
#define VIO_DEVICE_HI   0x0a4

#define ST_NEEDS_RESET  0x40

#define VQ_DESC   0x200000
#define VQ_AVAIL  0x201000
#define VQ_USED   0x202000
#define VQ_HDR    0x203000
#define VQ_DATA   0x204000
#define VQ_STATUS 0x205000

#define F_NEXT  1
#define F_WRITE 2

/* DESC i, addr, len, flags, next: fills descriptor i. */
.macro DESC i:req, addr:req, len:req, flags:req, next:req
	push %rdx
	movabs $\addr, %rdx
	mov %rdx, (VQ_DESC + 16 * \i)
	movl $\len, (VQ_DESC + 16 * \i + 8)
	movw $\flags, (VQ_DESC + 16 * \i + 12)
	movw $\next, (VQ_DESC + 16 * \i + 14)
	pop %rdx
.endm

/* SUBMIT head: puts head in avail ring slot 0, avail->idx = 1, notifies queue 0. */
.macro SUBMIT head:req
	push %rbx
	movw $\head, (VQ_AVAIL + 4)
	movw $1, (VQ_AVAIL + 2)
	mov $VIRTIO_BASE, %ebx
	movl $0, VIO_QUEUE_NOTIFY(%rbx)
	pop %rbx
.endm

.macro VIRTQ_LIB
	.text
virtio_init:
	push %rbx
	mov $VIRTIO_BASE, %ebx
	movl VIO_MAGIC(%rbx), %eax
	cmp $0x74726976, %eax
	FAIL_UNLESS e, "virtio magic (is --disk given?)"
	movl VIO_VERSION(%rbx), %eax
	cmp $2, %eax
	FAIL_UNLESS e, "virtio-mmio version 2"
	movl VIO_DEVICE_ID(%rbx), %eax
	cmp $2, %eax
	FAIL_UNLESS e, "virtio-blk device id"
	movl $0, VIO_STATUS(%rbx)
	movl $1, VIO_STATUS(%rbx)
	movl $3, VIO_STATUS(%rbx)
	movl $1, VIO_DEV_FEAT_SEL(%rbx)
	movl VIO_DEV_FEAT(%rbx), %eax
	test $1, %eax
	FAIL_UNLESS nz, "VIRTIO_F_VERSION_1 offered"
	movl $0, VIO_DRV_FEAT_SEL(%rbx)
	movl $0, VIO_DRV_FEAT(%rbx)
	movl $1, VIO_DRV_FEAT_SEL(%rbx)
	movl $1, VIO_DRV_FEAT(%rbx)
	movl $0xb, VIO_STATUS(%rbx)
	movl VIO_STATUS(%rbx), %eax
	cmp $0xb, %eax
	FAIL_UNLESS e, "FEATURES_OK accepted"
	movl $0, VIO_QUEUE_SEL(%rbx)
	movl VIO_QUEUE_NUM_MAX(%rbx), %eax
	cmp %edi, %eax
	FAIL_UNLESS ae, "QueueNumMax large enough"
	movl %edi, VIO_QUEUE_NUM(%rbx)
	movl $VQ_DESC, VIO_DESC_LO(%rbx)
	movl $0, VIO_DESC_HI(%rbx)
	movl $VQ_AVAIL, VIO_DRIVER_LO(%rbx)
	movl $0, VIO_DRIVER_HI(%rbx)
	movl $VQ_USED, VIO_DEVICE_LO(%rbx)
	movl $0, VIO_DEVICE_HI(%rbx)
	movl $1, VIO_QUEUE_READY(%rbx)
	movl $0xf, VIO_STATUS(%rbx)
	pop %rbx
	ret

wait_used:
	push %rcx
	mov $200000, %ecx
1:	movzwl (VQ_USED + 2), %eax
	test %eax, %eax
	jnz 2f
	dec %ecx
	jnz 1b
	xor %eax, %eax
	jmp 3f
2:	mov $1, %eax
3:	pop %rcx
	ret

wait_broken:
	push %rbx
	push %rcx
	mov $VIRTIO_BASE, %ebx
	mov $20000, %ecx
1:	movl VIO_STATUS(%rbx), %eax
	test $ST_NEEDS_RESET, %eax
	jnz 2f
	dec %ecx
	jnz 1b
2:	pop %rcx
	pop %rbx
	ret
.endm

/* BROKEN_THEN_RESET: expects DEVICE_NEEDS_RESET, that nothing was used,
 * then resets the device and expects Status 0. */
.macro BROKEN_THEN_RESET
	call wait_broken
	and $ST_NEEDS_RESET, %eax
	EXPECT "status & DEVICE_NEEDS_RESET", ST_NEEDS_RESET
	movzwl (VQ_USED + 2), %eax
	EXPECT "used idx", 0
	mov $VIRTIO_BASE, %ebx
	movl $0, VIO_STATUS(%rbx)
	movl VIO_STATUS(%rbx), %eax
	EXPECT "status after reset", 0
.endm

#endif
