/* mptable.h - the Intel MultiProcessor Specification 1.4 table that tells
 * the guest about its CPUs, its I/O APIC and how ISA interrupts reach it. */
#ifndef KILN_VMM_BOOT_MPTABLE_H
#define KILN_VMM_BOOT_MPTABLE_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/memory.h"

#define BOOT_MP_SPEC_REV       4    /* MP spec 1.4 */
#define BOOT_MP_APIC_VERSION   0x14 /* local APIC version reported per CPU */
#define BOOT_MP_IOAPIC_VERSION 0x11
#define BOOT_MP_ISA_IRQS       16

/* Entry types in the configuration table. */
#define BOOT_MP_PROCESSOR 0
#define BOOT_MP_BUS	  1
#define BOOT_MP_IOAPIC	  2
#define BOOT_MP_IOINTR	  3
#define BOOT_MP_LINTR	  4

/* Interrupt types of I/O and local interrupt entries. */
#define BOOT_MP_INT_INT	   0
#define BOOT_MP_INT_NMI	   1
#define BOOT_MP_INT_EXTINT 3

#define BOOT_MP_CPU_ENABLED    0x01
#define BOOT_MP_CPU_BSP	       0x02
#define BOOT_MP_IOAPIC_ENABLED 0x01

struct boot_mp_floating {
	char signature[4]; /* "_MP_" */
	uint32_t physptr;  /* GPA of the configuration table */
	uint8_t length;	   /* in 16-byte units: 1 */
	uint8_t spec_rev;
	uint8_t checksum;   /* all 16 bytes sum to 0 */
	uint8_t feature[5]; /* feature[0] = 0: a configuration table is present */
} __attribute__((packed));

struct boot_mp_config {
	char signature[4]; /* "PCMP" */
	uint16_t length;   /* header plus entries */
	uint8_t spec_rev;
	uint8_t checksum; /* header plus entries sum to 0 */
	char oem_id[8];
	char product_id[12];
	uint32_t oem_table;
	uint16_t oem_table_size;
	uint16_t entry_count;
	uint32_t lapic_addr;
	uint16_t ext_length;
	uint8_t ext_checksum;
	uint8_t reserved;
} __attribute__((packed));

struct boot_mp_processor {
	uint8_t type;
	uint8_t apic_id;
	uint8_t apic_version;
	uint8_t flags;
	uint32_t signature; /* CPUID(1).EAX: stepping, model, family */
	uint32_t features;  /* CPUID(1).EDX */
	uint32_t reserved[2];
} __attribute__((packed));

struct boot_mp_bus {
	uint8_t type;
	uint8_t bus_id;
	char bus_type[6]; /* "ISA   " */
} __attribute__((packed));

struct boot_mp_ioapic {
	uint8_t type;
	uint8_t id;
	uint8_t version;
	uint8_t flags;
	uint32_t addr;
} __attribute__((packed));

/* An I/O interrupt (type 3) or local interrupt (type 4) assignment. */
struct boot_mp_intsrc {
	uint8_t type;
	uint8_t irq_type;
	uint16_t irq_flags; /* polarity and trigger: 0 = conforms to the bus */
	uint8_t src_bus;
	uint8_t src_irq;
	uint8_t dst_apic; /* I/O APIC id, or 0xff for all local APICs */
	uint8_t dst_pin;  /* I/O APIC pin, or LINT0/LINT1 */
} __attribute__((packed));

/* Returns the bytes the floating pointer plus configuration table take for
 * `vcpus` CPUs. */
size_t boot_mptable_size(unsigned int vcpus);

/* Writes the floating pointer at LAYOUT_MPTABLE and the configuration table
 * right after it: one processor per vCPU (APIC id = index, CPU 0 the BSP),
 * bus 0 = ISA, one I/O APIC (id = vcpus) at LAYOUT_IOAPIC_BASE, ISA IRQ n to
 * I/O APIC pin n for n < 16, LINT0 = ExtINT and LINT1 = NMI. Returns 0,
 * -EINVAL when vcpus is not in [1, BOOT_MAX_VCPUS], or -ENOMEM when the
 * table is not in guest RAM below 1 MiB. */
int boot_mptable_write(struct guest_mem *m, unsigned int vcpus);

#endif
