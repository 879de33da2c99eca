/* irq.h - how a device raises an interrupt line without knowing about KVM. */
#ifndef KILN_VMM_IRQ_H
#define KILN_VMM_IRQ_H

/* Sets GSI `irq` to `level` (1 asserted, 0 deasserted). The owner of the VM
 * provides it; devices call it from any thread. */
typedef void (*irq_set_fn)(void *opaque, unsigned int irq, int level);

struct irq_line {
	irq_set_fn set;
	void *opaque;
	unsigned int irq;
};

/* Convenience: raise or lower the line (no-op when set is NULL). */
static inline void irq_line_set(const struct irq_line *l, int level)
{
	if (l->set)
		l->set(l->opaque, l->irq, level);
}

#endif
