/* vsock_attack.S - a guest that lies to kiln-vmm's virtio-vsock device and
 * floods it with notifications, then checks the device still works.
 * Run with --vsock-uds PATH and a host listener on PATH_1234 (the test
 * listens; kiln-vmm's connect succeeds from the backlog, no accept needed).
 *
 *   1. a REQUEST whose header says len = 0x7fffffff, with no payload:
 *      the packet is used (tx used idx 1), answered with RST, and the
 *      device does not need a reset;
 *   2. an RW packet for a connection that does not exist, whose header
 *      descriptor claims 44 bytes but whose payload descriptor claims
 *      4 GiB - 1 at an address far outside guest RAM: used, nothing else
 *      (at most an RST), or DEVICE_NEEDS_RESET; either way kiln-vmm lives
 *      (the test checks) -- this guest resets and re-initialises;
 *   3. 30,000 writes of QueueNotify (valid and invalid queue numbers);
 *   4. a valid REQUEST to port 1234: a RESPONSE must come back.
 *
 * The device is the first virtio-mmio window (no --disk given).
 */
#include "guest.h"

#define VBASE		0xd0001000
#define V_MAGIC		0x000
#define V_DEVICE_ID	0x008
#define V_DEV_FEAT	0x010
#define V_DEV_FEAT_SEL	0x014
#define V_DRV_FEAT	0x020
#define V_DRV_FEAT_SEL	0x024
#define V_QUEUE_SEL	0x030
#define V_QUEUE_NUM_MAX	0x034
#define V_QUEUE_NUM	0x038
#define V_QUEUE_READY	0x044
#define V_QUEUE_NOTIFY	0x050
#define V_STATUS	0x070
#define V_DESC_LO	0x080
#define V_DESC_HI	0x084
#define V_DRIVER_LO	0x090
#define V_DRIVER_HI	0x094
#define V_DEVICE_LO	0x0a0
#define V_DEVICE_HI	0x0a4
#define V_CONFIG	0x100

#define QSIZE		8
/* Queue q: descriptors at Qq, available ring at Qq+0x1000 (AVq), used
 * ring at Qq+0x2000 (USq). */
#define Q0		0x300000
#define Q1		0x310000
#define AV0		0x301000
#define AV1		0x311000
#define US0		0x302000
#define US1		0x312000
#define RXBUF		0x400000 /* 4 receive buffers of 256 bytes */
#define TXPKT		0x500000

#define OP_REQUEST	1
#define OP_RESPONSE	2
#define OP_RST		3
#define OP_RW		5

	GUEST_START
	call vs_init
	movl V_CONFIG(%rbx), %eax
	EXPECT "guest cid", 3

	/* 1. A REQUEST claiming 2 GiB of payload, with none. */
	mov $1000, %edi
	mov $OP_REQUEST, %esi
	mov $0x7fffffff, %edx
	call build_hdr
	movabs $TXPKT, %rax
	mov %rax, (Q1)
	movl $44, (Q1 + 8)
	movw $0, (Q1 + 12)
	call tx_submit
	call wait_tx
	EXPECT "lying length: tx used", 1
	call wait_rx
	EXPECT "lying length: rx used", 1
	movzwl (RXBUF + 30), %eax
	EXPECT "lying length: answered with RST", OP_RST
	movl V_STATUS(%rbx), %eax
	and $0x40, %eax
	EXPECT "lying length: device fine", 0

	/* 2. RW with a payload descriptor of 4 GiB - 1 outside guest RAM. */
	mov $1001, %edi
	mov $OP_RW, %esi
	mov $16, %edx
	call build_hdr
	movabs $TXPKT, %rax
	mov %rax, (Q1 + 16)
	movl $44, (Q1 + 16 + 8)
	movw $1, (Q1 + 16 + 12)	/* NEXT */
	movw $2, (Q1 + 16 + 14)
	movabs $0x7f0000000000, %rax
	mov %rax, (Q1 + 32)
	movl $0xffffffff, (Q1 + 32 + 8)
	movw $0, (Q1 + 32 + 12)
	movw $1, (AV1 + 4 + 2 * 1)	/* avail ring slot 1: head 1 */
	movw $2, (AV1 + 2)		/* avail idx 2 */
	movl $1, V_QUEUE_NOTIFY(%rbx)
	/* Used, or the device broken; give it time, then re-initialise. */
	mov $200000, %ecx
1:	movzwl (US1 + 2), %eax
	cmp $2, %eax
	je 2f
	movl V_STATUS(%rbx), %eax
	test $0x40, %eax
	jnz 2f
	dec %ecx
	jnz 1b
	PRINT "out-of-RAM payload: neither used nor broken\n"
	inc %r14
2:	PRINT "out-of-RAM payload: handled\n"
	call vs_init

	/* 3. The notification flood. */
	mov $6000, %ecx
3:	movl $0, V_QUEUE_NOTIFY(%rbx)
	movl $1, V_QUEUE_NOTIFY(%rbx)
	movl $2, V_QUEUE_NOTIFY(%rbx)
	movl $3, V_QUEUE_NOTIFY(%rbx)
	movl $0xffffffff, V_QUEUE_NOTIFY(%rbx)
	dec %ecx
	jnz 3b
	movl V_STATUS(%rbx), %eax
	and $0x40, %eax
	EXPECT "after the flood: device fine", 0

	/* 4. The device still connects a real request. */
	mov $1002, %edi
	mov $OP_REQUEST, %esi
	xor %edx, %edx
	call build_hdr
	movabs $TXPKT, %rax
	mov %rax, (Q1)
	movl $44, (Q1 + 8)
	movw $0, (Q1 + 12)
	call tx_submit
	call wait_tx
	EXPECT "request: tx used", 1
	/* The RESPONSE, perhaps after packets owed from before the reset. */
	mov $4, %ecx
10:	call wait_rx
	test %eax, %eax
	jz 11f
	call last_rx_buf
	movzwl 30(%rax), %edx
	cmp $OP_RESPONSE, %edx
	je 12f
	dec %ecx
	jnz 10b
11:	PRINT "request: no RESPONSE came\n"
	inc %r14
	jmp 13f
12:	movl 16(%rax), %eax
	EXPECT "request: RESPONSE from port 1234", 1234
13:	FINISH "vsock attack ok"

/* Resets the device and sets up its three queues (QSIZE entries each,
 * fresh rings), 4 receive buffers posted on queue 0; rbx = VBASE. */
vs_init:
	mov $VBASE, %ebx
	movl V_MAGIC(%rbx), %eax
	cmp $0x74726976, %eax
	FAIL_UNLESS e, "virtio magic (is --vsock-uds given?)"
	movl V_DEVICE_ID(%rbx), %eax
	cmp $19, %eax
	FAIL_UNLESS e, "virtio-vsock device id"
	movl $0, V_STATUS(%rbx)
	movl $1, V_STATUS(%rbx)
	movl $3, V_STATUS(%rbx)
	movl $0, V_DRV_FEAT_SEL(%rbx)
	movl $0, V_DRV_FEAT(%rbx)
	movl $1, V_DRV_FEAT_SEL(%rbx)
	movl $1, V_DRV_FEAT(%rbx)
	movl $0xb, V_STATUS(%rbx)
	movl V_STATUS(%rbx), %eax
	cmp $0xb, %eax
	FAIL_UNLESS e, "FEATURES_OK accepted"
	/* Clear the rings (avail and used of the three queues). */
	xor %eax, %eax
	mov $Q0, %edi
	mov $(3 * 0x10000 / 8), %ecx
	rep stosq
	xor %ecx, %ecx
4:	movl %ecx, V_QUEUE_SEL(%rbx)
	movl $QSIZE, V_QUEUE_NUM(%rbx)
	mov %ecx, %eax
	shl $16, %eax
	add $Q0, %eax
	movl %eax, V_DESC_LO(%rbx)
	movl $0, V_DESC_HI(%rbx)
	add $0x1000, %eax
	movl %eax, V_DRIVER_LO(%rbx)
	movl $0, V_DRIVER_HI(%rbx)
	add $0x1000, %eax
	movl %eax, V_DEVICE_LO(%rbx)
	movl $0, V_DEVICE_HI(%rbx)
	movl $1, V_QUEUE_READY(%rbx)
	inc %ecx
	cmp $3, %ecx
	jne 4b
	movl $0xf, V_STATUS(%rbx)
	/* Receive buffers 0..3: 256 bytes each, device-writable. */
	xor %ecx, %ecx
5:	mov %ecx, %eax
	shl $8, %eax
	add $RXBUF, %eax
	mov %ecx, %edx
	shl $4, %edx
	mov %rax, Q0(%rdx)
	movl $256, Q0 + 8(%rdx)
	movw $2, Q0 + 12(%rdx)
	movw $0, Q0 + 14(%rdx)
	movw %cx, AV0 + 4(,%rcx,2)
	inc %ecx
	cmp $4, %ecx
	jne 5b
	movw $4, (AV0 + 2)
	movl $0, V_QUEUE_NOTIFY(%rbx)
	movl $0, (rx_seen)
	movl $0, (tx_seen)
	ret

/* Fills the header at TXPKT: edi = src_port, esi = op, edx = len. */
build_hdr:
	push %rcx
	push %rdi
	push %rax
	mov %edi, %ecx
	xor %eax, %eax
	mov $TXPKT, %edi
	push %rcx
	mov $6, %ecx
	rep stosq
	pop %rcx
	movl V_CONFIG(%rbx), %eax
	mov %rax, (TXPKT + 0)		/* src_cid */
	movq $2, (TXPKT + 8)		/* dst_cid: the host */
	movl %ecx, (TXPKT + 16)		/* src_port */
	movl $1234, (TXPKT + 20)	/* dst_port */
	movl %edx, (TXPKT + 24)		/* len */
	movw $1, (TXPKT + 28)		/* type: stream */
	movw %si, (TXPKT + 30)		/* op */
	movl $65536, (TXPKT + 36)	/* buf_alloc */
	pop %rax
	pop %rdi
	pop %rcx
	ret

/* Publishes descriptor 0 as the next tx request and notifies queue 1. */
tx_submit:
	push %rcx
	movzwl (AV1 + 2), %ecx
	mov %ecx, %eax
	and $(QSIZE - 1), %eax
	movw $0, AV1 + 4(,%rax,2)
	inc %ecx
	movw %cx, (AV1 + 2)
	movl $1, V_QUEUE_NOTIFY(%rbx)
	pop %rcx
	ret

/* rax = the receive buffer of the newest used rx element. */
last_rx_buf:
	push %rcx
	movzwl (US0 + 2), %ecx
	dec %ecx
	and $(QSIZE - 1), %ecx
	movl US0 + 4(,%rcx,8), %eax	/* used elem: id */
	and $3, %eax
	shl $8, %eax
	add $RXBUF, %eax
	pop %rcx
	ret

/* eax = packets newly used on the tx queue since the last call (waits). */
wait_tx:
	push %rcx
	mov $200000, %ecx
6:	movzwl (US1 + 2), %eax
	sub (tx_seen), %eax
	jnz 7f
	dec %ecx
	jnz 6b
7:	add %eax, (tx_seen)
	pop %rcx
	ret

/* eax = packets newly received since the last call (waits for one). */
wait_rx:
	push %rcx
	mov $400000, %ecx
8:	movzwl (US0 + 2), %eax
	sub (rx_seen), %eax
	jnz 9f
	dec %ecx
	jnz 8b
9:	add %eax, (rx_seen)
	pop %rcx
	ret

	.data
rx_seen: .long 0
tx_seen: .long 0

	GUEST_LIB
