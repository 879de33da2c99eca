/* mptable.c - the Intel MultiProcessor Specification 1.4 table.
 *
 * Linux looks for the floating pointer in the last KiB of base memory
 * (639 KiB = LAYOUT_MPTABLE), which the e820 map marks reserved.
 */
#include "vmm/boot/mptable.h"

#include "common/log.h"
#include "vmm/boot/boot.h"
#include "vmm/layout.h"

#include <errno.h>
#include <string.h>

_Static_assert(sizeof(struct boot_mp_floating) == 16, "MP floating pointer is 16 bytes");
_Static_assert(sizeof(struct boot_mp_config) == 44, "MP config header is 44 bytes");
_Static_assert(sizeof(struct boot_mp_processor) == 20, "MP processor entry is 20 bytes");
_Static_assert(sizeof(struct boot_mp_bus) == 8, "MP bus entry is 8 bytes");
_Static_assert(sizeof(struct boot_mp_ioapic) == 8, "MP I/O APIC entry is 8 bytes");
_Static_assert(sizeof(struct boot_mp_intsrc) == 8, "MP interrupt entry is 8 bytes");

/* Family 6, model 0, stepping 0; FPU and on-chip APIC. Linux only prints these. */
#define MP_CPU_SIGNATURE (6U << 8)
#define MP_CPU_FEATURES	 ((1U << 0) | (1U << 9))

#define MP_MAX_SIZE                                                                                \
	(sizeof(struct boot_mp_floating) + sizeof(struct boot_mp_config) +                         \
	 BOOT_MAX_VCPUS * sizeof(struct boot_mp_processor) + sizeof(struct boot_mp_bus) +          \
	 sizeof(struct boot_mp_ioapic) + (BOOT_MP_ISA_IRQS + 2) * sizeof(struct boot_mp_intsrc))

_Static_assert(LAYOUT_MPTABLE + MP_MAX_SIZE <= LAYOUT_HIMEM_START,
	       "the MP table for BOOT_MAX_VCPUS CPUs fits below 1 MiB");

static uint8_t mp_checksum(const uint8_t *p, size_t len)
{
	uint8_t sum = 0;

	while (len--)
		sum = (uint8_t)(sum + *p++);
	return (uint8_t)(0x100 - sum);
}

size_t boot_mptable_size(unsigned int vcpus)
{
	return sizeof(struct boot_mp_floating) + sizeof(struct boot_mp_config) +
	       vcpus * sizeof(struct boot_mp_processor) + sizeof(struct boot_mp_bus) +
	       sizeof(struct boot_mp_ioapic) +
	       (BOOT_MP_ISA_IRQS + 2) * sizeof(struct boot_mp_intsrc);
}

static void mp_put(uint8_t *buf, size_t *off, const void *entry, size_t len)
{
	memcpy(buf + *off, entry, len);
	*off += len;
}

int boot_mptable_write(struct guest_mem *m, unsigned int vcpus)
{
	struct boot_mp_floating mpf;
	struct boot_mp_config mpc;
	struct boot_mp_processor cpu;
	struct boot_mp_bus bus;
	struct boot_mp_ioapic ioapic;
	struct boot_mp_intsrc irq;
	uint8_t *dst, *table;
	size_t size, off;
	unsigned int i;

	if (vcpus < 1 || vcpus > BOOT_MAX_VCPUS) {
		log_error("%u vCPUs requested; kiln supports 1 to %d", vcpus, BOOT_MAX_VCPUS);
		return -EINVAL;
	}
	size = boot_mptable_size(vcpus);
	if (size > LAYOUT_HIMEM_START - LAYOUT_MPTABLE)
		return -EINVAL; /* cannot happen: see the _Static_assert above */
	dst = guest_mem_ptr(m, LAYOUT_MPTABLE, size);
	if (!dst) {
		log_error("guest memory does not reach the MP table at 0x%llx",
			  (unsigned long long)LAYOUT_MPTABLE);
		return -ENOMEM;
	}
	memset(dst, 0, size);
	table = dst + sizeof(mpf);
	off = sizeof(mpc);

	for (i = 0; i < vcpus; i++) {
		memset(&cpu, 0, sizeof(cpu));
		cpu.type = BOOT_MP_PROCESSOR;
		cpu.apic_id = (uint8_t)i;
		cpu.apic_version = BOOT_MP_APIC_VERSION;
		cpu.flags = BOOT_MP_CPU_ENABLED | (i == 0 ? BOOT_MP_CPU_BSP : 0);
		cpu.signature = MP_CPU_SIGNATURE;
		cpu.features = MP_CPU_FEATURES;
		mp_put(table, &off, &cpu, sizeof(cpu));
	}

	memset(&bus, 0, sizeof(bus));
	bus.type = BOOT_MP_BUS;
	bus.bus_id = 0;
	memcpy(bus.bus_type, "ISA   ", sizeof(bus.bus_type));
	mp_put(table, &off, &bus, sizeof(bus));

	memset(&ioapic, 0, sizeof(ioapic));
	ioapic.type = BOOT_MP_IOAPIC;
	ioapic.id = (uint8_t)vcpus;
	ioapic.version = BOOT_MP_IOAPIC_VERSION;
	ioapic.flags = BOOT_MP_IOAPIC_ENABLED;
	ioapic.addr = (uint32_t)LAYOUT_IOAPIC_BASE;
	mp_put(table, &off, &ioapic, sizeof(ioapic));

	for (i = 0; i < BOOT_MP_ISA_IRQS; i++) {
		memset(&irq, 0, sizeof(irq));
		irq.type = BOOT_MP_IOINTR;
		irq.irq_type = BOOT_MP_INT_INT;
		irq.src_bus = 0;
		irq.src_irq = (uint8_t)i;
		irq.dst_apic = (uint8_t)vcpus;
		irq.dst_pin = (uint8_t)i;
		mp_put(table, &off, &irq, sizeof(irq));
	}

	memset(&irq, 0, sizeof(irq));
	irq.type = BOOT_MP_LINTR;
	irq.irq_type = BOOT_MP_INT_EXTINT;
	irq.dst_apic = 0xff;
	irq.dst_pin = 0; /* LINT0 */
	mp_put(table, &off, &irq, sizeof(irq));
	irq.irq_type = BOOT_MP_INT_NMI;
	irq.dst_pin = 1; /* LINT1 */
	mp_put(table, &off, &irq, sizeof(irq));

	memset(&mpc, 0, sizeof(mpc));
	memcpy(mpc.signature, "PCMP", 4);
	mpc.length = (uint16_t)off;
	mpc.spec_rev = BOOT_MP_SPEC_REV;
	memcpy(mpc.oem_id, "KILN    ", sizeof(mpc.oem_id));
	memcpy(mpc.product_id, "KILN VMM    ", sizeof(mpc.product_id));
	mpc.entry_count = (uint16_t)(vcpus + 1 + 1 + BOOT_MP_ISA_IRQS + 2);
	mpc.lapic_addr = (uint32_t)LAYOUT_LAPIC_BASE;
	memcpy(table, &mpc, sizeof(mpc));
	table[offsetof(struct boot_mp_config, checksum)] = mp_checksum(table, off);

	memset(&mpf, 0, sizeof(mpf));
	memcpy(mpf.signature, "_MP_", 4);
	mpf.physptr = (uint32_t)(LAYOUT_MPTABLE + sizeof(mpf));
	mpf.length = 1;
	mpf.spec_rev = BOOT_MP_SPEC_REV;
	mpf.checksum = mp_checksum((const uint8_t *)&mpf, sizeof(mpf));
	memcpy(dst, &mpf, sizeof(mpf));
	return 0;
}
