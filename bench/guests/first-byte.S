/* first-byte.S - the tiny guest of the "first guest instruction" benchmark.
 *
 * It has two entry points, one per VMM, and each one's first I/O is the
 * byte the harness waits for: a '\n' to COM1's transmit register (port
 * 0x3f8). A newline because kiln-vmm's UART flushes its output buffer to
 * stdout at each newline; QEMU writes every byte at once. Then it ends the
 * VM the way that VMM understands.
 *
 *   _start      e_entry, used by kiln-vmm: 64-bit long mode, identity map
 *               of [0, 4 GiB). Ends the VM by writing 0 to the exit register
 *               of kiln's control page (0xd0000000 + 8): kiln-vmm exits 0.
 *   pvh_start   the PVH entry (the XEN_ELFNOTE_PHYS32_ENTRY note below),
 *               used by QEMU's `-M microvm -kernel`: 32-bit protected mode,
 *               paging off. Ends the VM by writing 0 to QEMU's
 *               isa-debug-exit device at port 0xf4: QEMU exits (0 << 1) | 1.
 *
 * Both halt forever if the exit device is missing; the harness kills the
 * VMM then. No stack, no data: nothing else runs.
 */

#define COM1_THR      0x3f8
#define CTL_BASE      0xd0000000
#define CTL_EXIT      0x08
#define DEBUG_EXIT    0xf4
#define XEN_ELFNOTE_PHYS32_ENTRY 18

	.section .text.start, "ax"

	.code64
	.globl _start
_start:
	mov $COM1_THR, %edx
	mov $'\n', %al
	outb %al, %dx			/* the byte the harness times */
	mov $CTL_BASE, %eax		/* zero-extends into %rax */
	movl $0, CTL_EXIT(%rax)		/* kiln-vmm stops the VM, exits 0 */
1:	hlt
	jmp 1b

	.code32
	.globl pvh_start
pvh_start:
	mov $COM1_THR, %edx
	mov $'\n', %al
	outb %al, %dx			/* the byte the harness times */
	xor %eax, %eax
	outb %al, $DEBUG_EXIT		/* QEMU exits with status 1 */
2:	hlt
	jmp 2b

/* The PVH ELF note QEMU looks for (Linux: arch/x86/platform/pvh/head.S
 * emits the same one). 64-bit ELF, so the descriptor is 8 bytes. */
	.section .note.pvh, "a", @note
	.balign 4
	.long 4				/* namesz: "Xen\0" */
	.long 8				/* descsz */
	.long XEN_ELFNOTE_PHYS32_ENTRY	/* type */
	.asciz "Xen"
	.balign 4
	.quad pvh_start			/* physical: VMA == LMA here */
	.balign 4
