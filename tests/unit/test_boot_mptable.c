/* test_boot_mptable.c - the MP table, the boot GDT and the identity page
 * tables: checksums, entry counts, descriptors and the 4 GiB mapping. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "common/log.h"
#include "vmm/boot/boot.h"
#include "vmm/boot/mptable.h"
#include "vmm/boot/pagetables.h"
#include "vmm/layout.h"

#define MiB (1ULL << 20)

static int setup(void **state)
{
	struct guest_mem *m = test_calloc(1, sizeof(*m));

	if (!m || guest_mem_init(m, 16 * MiB) < 0)
		return -1;
	*state = m;
	return 0;
}

static int teardown(void **state)
{
	struct guest_mem *m = *state;

	guest_mem_release(m);
	test_free(m);
	return 0;
}

static uint8_t sum(const uint8_t *p, size_t len)
{
	uint8_t s = 0;

	while (len--)
		s = (uint8_t)(s + *p++);
	return s;
}

/* Parses the table at LAYOUT_MPTABLE the way a guest would and checks it. */
static void check_mptable(struct guest_mem *m, unsigned int vcpus)
{
	const uint8_t *base = guest_mem_ptr(m, LAYOUT_MPTABLE, 16);
	struct boot_mp_floating mpf;
	struct boot_mp_config mpc;
	struct boot_mp_processor cpu;
	struct boot_mp_ioapic ioapic;
	struct boot_mp_bus bus;
	struct boot_mp_intsrc irq;
	const uint8_t *table, *p, *end;
	unsigned int n, cpus = 0, buses = 0, ioapics = 0, iointr = 0, lintr = 0;

	assert_non_null(base);
	memcpy(&mpf, base, sizeof(mpf));
	assert_memory_equal(mpf.signature, "_MP_", 4);
	assert_int_equal(mpf.length, 1);
	assert_int_equal(mpf.spec_rev, 4);
	assert_int_equal(sum(base, 16), 0);
	assert_int_equal(mpf.feature[0], 0);
	assert_int_equal(mpf.physptr, LAYOUT_MPTABLE + 16);

	table = guest_mem_ptr(m, mpf.physptr, sizeof(mpc));
	assert_non_null(table);
	memcpy(&mpc, table, sizeof(mpc));
	assert_memory_equal(mpc.signature, "PCMP", 4);
	assert_int_equal(mpc.spec_rev, 4);
	assert_memory_equal(mpc.oem_id, "KILN", 4);
	assert_int_equal(mpc.lapic_addr, LAYOUT_LAPIC_BASE);
	assert_int_equal(mpc.length, boot_mptable_size(vcpus) - 16);
	assert_true(mpf.physptr + mpc.length <= 0x100000);
	assert_int_equal(sum(table, mpc.length), 0);
	assert_int_equal(mpc.entry_count, vcpus + 1 + 1 + 16 + 2);

	p = table + sizeof(mpc);
	end = table + mpc.length;
	for (n = 0; n < mpc.entry_count; n++) {
		assert_true(p < end);
		switch (*p) {
		case BOOT_MP_PROCESSOR:
			assert_true(p + sizeof(cpu) <= end);
			memcpy(&cpu, p, sizeof(cpu));
			assert_int_equal(cpu.apic_id, cpus);
			assert_int_equal(cpu.apic_version, 0x14);
			assert_true(cpu.flags & BOOT_MP_CPU_ENABLED);
			assert_int_equal(!!(cpu.flags & BOOT_MP_CPU_BSP), cpus == 0);
			assert_int_equal((cpu.signature >> 8) & 0xf, 6);
			cpus++;
			p += sizeof(cpu);
			break;
		case BOOT_MP_BUS:
			memcpy(&bus, p, sizeof(bus));
			assert_int_equal(bus.bus_id, 0);
			assert_memory_equal(bus.bus_type, "ISA   ", 6);
			buses++;
			p += 8;
			break;
		case BOOT_MP_IOAPIC:
			memcpy(&ioapic, p, sizeof(ioapic));
			assert_int_equal(ioapic.id, vcpus);
			assert_int_equal(ioapic.version, 0x11);
			assert_int_equal(ioapic.flags, BOOT_MP_IOAPIC_ENABLED);
			assert_int_equal(ioapic.addr, LAYOUT_IOAPIC_BASE);
			ioapics++;
			p += 8;
			break;
		case BOOT_MP_IOINTR:
			memcpy(&irq, p, sizeof(irq));
			assert_int_equal(irq.irq_type, BOOT_MP_INT_INT);
			assert_int_equal(irq.irq_flags, 0);
			assert_int_equal(irq.src_bus, 0);
			assert_int_equal(irq.src_irq, iointr);
			assert_int_equal(irq.dst_apic, vcpus);
			assert_int_equal(irq.dst_pin, iointr);
			iointr++;
			p += 8;
			break;
		case BOOT_MP_LINTR:
			memcpy(&irq, p, sizeof(irq));
			assert_int_equal(irq.dst_apic, 0xff);
			assert_int_equal(irq.dst_pin, lintr);
			assert_int_equal(irq.irq_type,
					 lintr == 0 ? BOOT_MP_INT_EXTINT : BOOT_MP_INT_NMI);
			lintr++;
			p += 8;
			break;
		default:
			fail_msg("unknown MP entry type %u", *p);
		}
	}
	assert_ptr_equal(p, end);
	assert_int_equal(cpus, vcpus);
	assert_int_equal(buses, 1);
	assert_int_equal(ioapics, 1);
	assert_int_equal(iointr, 16);
	assert_int_equal(lintr, 2);
}

static void test_mptable_counts(void **state)
{
	struct guest_mem *m = *state;
	const unsigned int counts[] = {1, 2, 4, 7, BOOT_MAX_VCPUS};
	size_t i;

	for (i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		memset(guest_mem_ptr(m, LAYOUT_MPTABLE, 1024), 0xa5, 1024);
		assert_int_equal(boot_mptable_write(m, counts[i]), 0);
		check_mptable(m, counts[i]);
	}
}

static void test_mptable_fits(void **state)
{
	(void)state;
	assert_true(LAYOUT_MPTABLE + boot_mptable_size(BOOT_MAX_VCPUS) <= 0x100000);
	/* It even fits the last KiB of base memory that Linux scans. */
	assert_true(boot_mptable_size(BOOT_MAX_VCPUS) <= 1024);
}

static void test_mptable_bad_vcpus(void **state)
{
	struct guest_mem *m = *state;

	assert_int_equal(boot_mptable_write(m, 0), -EINVAL);
	assert_int_equal(boot_mptable_write(m, BOOT_MAX_VCPUS + 1), -EINVAL);
	assert_int_equal(boot_mptable_write(m, 4096), -EINVAL);
}

static void test_mptable_no_ram(void **state)
{
	struct guest_mem m;

	(void)state;
	assert_int_equal(guest_mem_init(&m, 0x80000), 0); /* 512 KiB */
	assert_int_equal(boot_mptable_write(&m, 1), -ENOMEM);
	guest_mem_release(&m);
}

static void test_gdt(void **state)
{
	struct guest_mem *m = *state;
	uint64_t base, gdt[4];
	uint16_t limit;

	assert_int_equal(boot_gdt_write(m, &base, &limit), 0);
	assert_int_equal(base, LAYOUT_GDT);
	assert_int_equal(limit, sizeof(gdt) - 1);
	assert_true(base + limit + 1 <= LAYOUT_IDT);
	memcpy(gdt, guest_mem_ptr(m, LAYOUT_GDT, sizeof(gdt)), sizeof(gdt));
	assert_int_equal(gdt[0], 0);
	assert_int_equal(gdt[1], 0);
	assert_int_equal(gdt[BOOT_GDT_CS / 8], 0x00af9b000000ffffULL);
	assert_int_equal(gdt[BOOT_GDT_DS / 8], 0x00cf93000000ffffULL);
	/* The code segment is 64-bit (L=1, D=0), present, DPL 0. */
	assert_true(gdt[2] & (1ULL << 53));
	assert_false(gdt[2] & (1ULL << 54));
	assert_true(gdt[2] & (1ULL << 47));
}

/* Walks the tables like the MMU for a 2 MiB mapping. */
static uint64_t translate(struct guest_mem *m, uint64_t pml4, uint64_t va)
{
	uint64_t e;

	memcpy(&e, guest_mem_ptr(m, pml4 + ((va >> 39) & 511) * 8, 8), 8);
	if (!(e & 1))
		return UINT64_MAX;
	memcpy(&e, guest_mem_ptr(m, (e & ~0xfffULL) + ((va >> 30) & 511) * 8, 8), 8);
	if (!(e & 1))
		return UINT64_MAX;
	memcpy(&e, guest_mem_ptr(m, (e & ~0xfffULL) + ((va >> 21) & 511) * 8, 8), 8);
	if (!(e & 1) || !(e & 2) || !(e & 0x80))
		return UINT64_MAX;
	return (e & ~0x1fffffULL) + (va & 0x1fffff);
}

static void test_pagetables(void **state)
{
	struct guest_mem *m = *state;
	const uint64_t addrs[] = {0,	      0x7000,	  0x100000,   0x1000200,
				  0x3fffffff, 0x40000000, 0xbfffffff, 0xc0000000,
				  0xfec00000, 0xfee00000, 0xffffffff};
	uint64_t pml4, e;
	size_t i;

	memset(guest_mem_ptr(m, LAYOUT_PML4, 0x6000), 0xff, 0x6000);
	assert_int_equal(boot_pagetables_write(m, &pml4), 0);
	assert_int_equal(pml4, LAYOUT_PML4);
	for (i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++)
		assert_int_equal(translate(m, pml4, addrs[i]), addrs[i]);
	/* Only the first 4 GiB are mapped. */
	assert_int_equal(translate(m, pml4, 0x100000000ULL), UINT64_MAX);
	assert_int_equal(translate(m, pml4, 0x8000000000ULL), UINT64_MAX);
	memcpy(&e, guest_mem_ptr(m, LAYOUT_PML4 + 8, 8), 8);
	assert_int_equal(e, 0);
}

static void test_boot_structs_need_ram(void **state)
{
	struct guest_mem m;
	uint64_t base;
	uint16_t limit;

	(void)state;
	assert_int_equal(guest_mem_init(&m, 0xc000), 0); /* ends inside the PDs */
	assert_int_equal(boot_pagetables_write(&m, &base), -ENOMEM);
	assert_int_equal(boot_gdt_write(&m, &base, &limit), 0);
	guest_mem_release(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_mptable_counts, setup, teardown),
		cmocka_unit_test(test_mptable_fits),
		cmocka_unit_test_setup_teardown(test_mptable_bad_vcpus, setup, teardown),
		cmocka_unit_test(test_mptable_no_ram),
		cmocka_unit_test_setup_teardown(test_gdt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pagetables, setup, teardown),
		cmocka_unit_test(test_boot_structs_need_ram),
	};

	log_set_level(LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
