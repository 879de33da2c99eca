/* kvm_state.c - saving and loading KVM's vCPU and VM state. See kvm_state.h. */
#include "vmm/snapshot/kvm_state.h"

#include "common/le.h"
#include "common/reason.h"

#include "common/log.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define MSR_IA32_TSC_DEADLINE	0x6e0
#define MSR_KVM_WALL_CLOCK	0x11
#define MSR_KVM_SYSTEM_TIME	0x12
#define MSR_KVM_WALL_CLOCK_NEW	0x4b564d00
#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01
#define KVM_STATE_MAX_MSRS	1024

/* MSRs saved besides those KVM_GET_MSR_INDEX_LIST names (unreadable ones
 * are skipped): APIC base, PAT, the MTRRs, the syscall and segment-base
 * MSRs, TSC and its deadline, kvm-clock and the other KVM PV MSRs. */
static const uint32_t kvm_state_extra_msrs[] = {
	0x10,	    0x1b,	0x3b,	    0x48,	0x174,	    0x175,	0x176,
	0x1a0,	    0x200,	0x201,	    0x202,	0x203,	    0x204,	0x205,
	0x206,	    0x207,	0x208,	    0x209,	0x20a,	    0x20b,	0x20c,
	0x20d,	    0x20e,	0x20f,	    0x250,	0x258,	    0x259,	0x268,
	0x269,	    0x26a,	0x26b,	    0x26c,	0x26d,	    0x26e,	0x26f,
	0x277,	    0x2ff,	0x6e0,	    0xc0000080, 0xc0000081, 0xc0000082, 0xc0000083,
	0xc0000084, 0xc0000100, 0xc0000101, 0xc0000102, 0xc0000103, 0x11,	0x12,
	0x4b564d00, 0x4b564d01, 0x4b564d02, 0x4b564d03, 0x4b564d04, 0x4b564d05, 0x4b564d06,
};

/* Size of the XSAVE buffer KVM uses for this VM (0: no XSAVE). */
static size_t kvm_state_xsave_size(struct vm *vm)
{
	int n = vm_check_cap(vm, KVM_CAP_XSAVE2);

	if (n >= (int)sizeof(struct kvm_xsave))
		return (size_t)n;
	return vm_has_cap(vm, KVM_CAP_XSAVE) ? sizeof(struct kvm_xsave) : 0;
}

/* ---- MSRs ------------------------------------------------------------------------ */

static bool kvm_state_msr_listed(const uint32_t *v, size_t n, uint32_t index)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] == index)
			return true;
	return false;
}

/* The MSR indices to try: KVM's list plus the extras, without duplicates. */
static int kvm_state_msr_indices(struct vm *vm, uint32_t **out, size_t *count)
{
	struct kvm_msr_list probe = {.nmsrs = 0}, *list;
	uint32_t *v;
	size_t n = 0, nextra = sizeof(kvm_state_extra_msrs) / sizeof(kvm_state_extra_msrs[0]);
	uint32_t listed = 0;

	if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG)
		return -errno;
	listed = probe.nmsrs > KVM_STATE_MAX_MSRS ? KVM_STATE_MAX_MSRS : probe.nmsrs;
	list = calloc(1, sizeof(*list) + listed * sizeof(uint32_t));
	v = calloc(listed + nextra, sizeof(*v));
	if (!list || !v) {
		free(list);
		free(v);
		return -ENOMEM;
	}
	list->nmsrs = listed;
	if (listed && ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, list) < 0) {
		log_debug("KVM_GET_MSR_INDEX_LIST: %s; using the built-in MSR list",
			  strerror(errno));
		list->nmsrs = 0;
	}
	for (uint32_t i = 0; i < list->nmsrs && i < listed; i++)
		if (!kvm_state_msr_listed(v, n, list->indices[i]))
			v[n++] = list->indices[i];
	for (size_t i = 0; i < nextra; i++)
		if (!kvm_state_msr_listed(v, n, kvm_state_extra_msrs[i]))
			v[n++] = kvm_state_extra_msrs[i];
	free(list);
	*out = v;
	*count = n;
	return 0;
}

static struct kvm_msrs *kvm_state_msrs_alloc(size_t n)
{
	return calloc(1, sizeof(struct kvm_msrs) + n * sizeof(struct kvm_msr_entry));
}

/* Reads every readable MSR of `idx` into `out` (entries kept in order).
 * KVM_GET_MSRS stops at the first MSR it cannot read: skip it, go on. */
static int kvm_state_read_msrs(struct vcpu *v, const uint32_t *idx, size_t n, struct kvm_msrs *out)
{
	struct kvm_msrs *batch = kvm_state_msrs_alloc(n);
	size_t i = 0;

	if (!batch)
		return -ENOMEM;
	out->nmsrs = 0;
	while (i < n) {
		int r;

		batch->nmsrs = (uint32_t)(n - i);
		for (size_t k = 0; k < n - i; k++) {
			batch->entries[k] = (struct kvm_msr_entry){.index = idx[i + k]};
		}
		r = ioctl(v->fd, KVM_GET_MSRS, batch);
		if (r < 0) {
			r = -errno;
			free(batch);
			return r;
		}
		for (int k = 0; k < r; k++)
			out->entries[out->nmsrs++] = batch->entries[k];
		i += (size_t)r;
		if (i < n)
			i++; /* unreadable: skipped */
	}
	free(batch);
	return 0;
}

/* Reads every MSR kiln saves (KVM's list and the extras) that vCPU v can
 * read into *out (newly allocated, the caller frees it). Returns 0 or
 * -errno. */
static int kvm_state_read_all_msrs(struct vcpu *v, struct kvm_msrs **out)
{
	struct kvm_msrs *msrs = NULL;
	uint32_t *idx = NULL;
	size_t nidx = 0;
	int ret;

	ret = kvm_state_msr_indices(v->vm, &idx, &nidx);
	if (!ret) {
		msrs = kvm_state_msrs_alloc(nidx);
		ret = msrs ? kvm_state_read_msrs(v, idx, nidx, msrs) : -ENOMEM;
	}
	free(idx);
	if (ret) {
		free(msrs);
		return ret;
	}
	*out = msrs;
	return 0;
}

/* Writes `in`'s entries, skipping (and logging) any KVM refuses. */
static int kvm_state_write_msrs(struct vcpu *v, const struct kvm_msr_entry *e, size_t n)
{
	struct kvm_msrs *batch = kvm_state_msrs_alloc(n);
	size_t i = 0;

	if (!batch)
		return -ENOMEM;
	while (i < n) {
		int r;

		batch->nmsrs = (uint32_t)(n - i);
		memcpy(batch->entries, e + i, (n - i) * sizeof(*e));
		r = ioctl(v->fd, KVM_SET_MSRS, batch);
		if (r < 0) {
			r = -errno;
			free(batch);
			return r;
		}
		i += (size_t)r;
		if (i < n) {
			log_debug("vCPU %u: KVM refused MSR %#x = %#llx; skipped", v->index,
				  e[i].index, (unsigned long long)e[i].data);
			i++;
		}
	}
	free(batch);
	return 0;
}

/* vCPU v's TSC frequency in kHz, or -1 when KVM does not say. */
static int kvm_state_tsc_khz(struct vcpu *v)
{
	int khz = vm_has_cap(v->vm, KVM_CAP_GET_TSC_KHZ) ? ioctl(v->fd, KVM_GET_TSC_KHZ, 0) : -1;

	return khz > 0 ? khz : -1;
}

/* ---- save ---------------------------------------------------------------------------- */

/* Fetches with `req` into `buf` (len bytes) and appends it as a section. */
static int kvm_state_put_ioctl(struct snap_writer *w, int fd, unsigned long req, void *buf,
			       size_t len, uint16_t type, uint16_t instance, const char *what,
			       unsigned int index)
{
	memset(buf, 0, len);
	if (ioctl(fd, req, buf) < 0) {
		int err = -errno;

		log_error("vCPU %u: %s: %s", index, what, strerror(errno));
		return err;
	}
	snap_put_section(w, type, instance, buf, len);
	return 0;
}

/* Room for any one fixed-size piece of vCPU state, saved or loaded in turn. */
union kvm_state_vcpu_buf {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_fpu fpu;
	struct kvm_xcrs xcrs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_mp_state mp;
	struct kvm_debugregs dbg;
};

int kvm_state_save_vcpu(struct vcpu *v, struct snap_writer *w)
{
	union kvm_state_vcpu_buf u;
	uint16_t id = (uint16_t)v->index;
	size_t xsize = kvm_state_xsave_size(v->vm);
	struct kvm_msrs *msrs = NULL;
	int ret, khz;

	ret = kvm_state_put_ioctl(w, v->fd, KVM_GET_REGS, &u.regs, sizeof(u.regs),
				  SNAP_SEC_VCPU_REGS, id, "KVM_GET_REGS", v->index);
	if (!ret)
		ret = kvm_state_put_ioctl(w, v->fd, KVM_GET_SREGS, &u.sregs, sizeof(u.sregs),
					  SNAP_SEC_VCPU_SREGS, id, "KVM_GET_SREGS", v->index);
	if (!ret)
		ret = kvm_state_put_ioctl(w, v->fd, KVM_GET_FPU, &u.fpu, sizeof(u.fpu),
					  SNAP_SEC_VCPU_FPU, id, "KVM_GET_FPU", v->index);
	if (!ret && xsize) {
		void *xs = calloc(1, xsize);

		if (!xs)
			return -ENOMEM;
		ret = kvm_state_put_ioctl(
			w, v->fd,
			xsize > sizeof(struct kvm_xsave) || vm_has_cap(v->vm, KVM_CAP_XSAVE2)
				? KVM_GET_XSAVE2
				: KVM_GET_XSAVE,
			xs, xsize, SNAP_SEC_VCPU_XSAVE, id, "KVM_GET_XSAVE", v->index);
		free(xs);
	}
	if (!ret && vm_has_cap(v->vm, KVM_CAP_XCRS))
		ret = kvm_state_put_ioctl(w, v->fd, KVM_GET_XCRS, &u.xcrs, sizeof(u.xcrs),
					  SNAP_SEC_VCPU_XCRS, id, "KVM_GET_XCRS", v->index);
	if (!ret)
		ret = kvm_state_put_ioctl(w, v->fd, KVM_GET_LAPIC, &u.lapic, sizeof(u.lapic),
					  SNAP_SEC_VCPU_LAPIC, id, "KVM_GET_LAPIC", v->index);
	if (!ret)
		ret = kvm_state_put_ioctl(w, v->fd, KVM_GET_VCPU_EVENTS, &u.events,
					  sizeof(u.events), SNAP_SEC_VCPU_EVENTS, id,
					  "KVM_GET_VCPU_EVENTS", v->index);
	if (!ret)
		ret = kvm_state_put_ioctl(w, v->fd, KVM_GET_MP_STATE, &u.mp, sizeof(u.mp),
					  SNAP_SEC_VCPU_MP_STATE, id, "KVM_GET_MP_STATE", v->index);
	if (!ret && vm_has_cap(v->vm, KVM_CAP_DEBUGREGS))
		ret = kvm_state_put_ioctl(w, v->fd, KVM_GET_DEBUGREGS, &u.dbg, sizeof(u.dbg),
					  SNAP_SEC_VCPU_DEBUGREGS, id, "KVM_GET_DEBUGREGS",
					  v->index);
	if (ret)
		return ret;

	ret = kvm_state_read_all_msrs(v, &msrs);
	if (ret) {
		log_error("vCPU %u: cannot read its MSRs: %s", v->index, strerror(-ret));
		goto out_free;
	}
	snap_begin(w, SNAP_SEC_VCPU_MSRS, id);
	snap_put_u32(w, msrs->nmsrs);
	for (uint32_t i = 0; i < msrs->nmsrs; i++) {
		snap_put_u32(w, msrs->entries[i].index);
		snap_put_u32(w, 0);
		snap_put_u64(w, msrs->entries[i].data);
	}
	snap_end(w);

	khz = kvm_state_tsc_khz(v);
	if (khz > 0) {
		snap_begin(w, SNAP_SEC_VCPU_TSC_KHZ, id);
		snap_put_u32(w, (uint32_t)khz);
		snap_end(w);
	}
out_free:
	free(msrs);
	return ret;
}

int kvm_state_save_vm(struct vm *vm, struct snap_writer *w)
{
	struct kvm_irqchip chip;
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;

	for (uint32_t id = 0; id < 3; id++) {
		memset(&chip, 0, sizeof(chip));
		chip.chip_id = id;
		if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &chip) < 0) {
			log_error("KVM_GET_IRQCHIP %u: %s", id, strerror(errno));
			return -errno;
		}
		snap_put_section(w, SNAP_SEC_VM_IRQCHIP, (uint16_t)id, &chip, sizeof(chip));
	}
	memset(&pit, 0, sizeof(pit));
	if (ioctl(vm->vm_fd, KVM_GET_PIT2, &pit) < 0) {
		log_error("KVM_GET_PIT2: %s", strerror(errno));
		return -errno;
	}
	snap_put_section(w, SNAP_SEC_VM_PIT, 0, &pit, sizeof(pit));
	memset(&clock, 0, sizeof(clock));
	if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &clock) < 0) {
		log_error("KVM_GET_CLOCK: %s", strerror(errno));
		return -errno;
	}
	snap_put_section(w, SNAP_SEC_VM_CLOCK, 0, &clock, sizeof(clock));
	return 0;
}

/* ---- load ----------------------------------------------------------------------------- */

/* Finds section (type, instance) of exactly `len` bytes; copies it to dst. */
static int kvm_state_get(const struct snap_file *f, uint16_t type, uint16_t instance, void *dst,
			 size_t len, const char *what, char *why, size_t why_len)
{
	struct snap_section s;

	if (!snap_find(f, type, instance, &s))
		return reason_fail(why, why_len, -EINVAL, "the snapshot has no %s for %u", what,
				   instance);
	if (s.len != len)
		return reason_fail(why, why_len, -EINVAL,
				   "the snapshot's %s for %u has %u bytes, expected %zu", what,
				   instance, s.len, len);
	memcpy(dst, s.data, len);
	return 0;
}

static int kvm_state_set(int fd, unsigned long req, void *arg, const char *what, unsigned int index,
			 char *why, size_t why_len)
{
	if (ioctl(fd, req, arg) < 0)
		return reason_fail(why, why_len, -errno, "vCPU %u: %s: %s", index, what,
				   strerror(errno));
	return 0;
}

/* Reads the MSR section into a newly allocated array. */
static int kvm_state_get_msrs(const struct snap_file *f, uint16_t id, struct kvm_msr_entry **out,
			      size_t *count, char *why, size_t why_len)
{
	struct snap_section s;
	struct snap_rd r;
	struct kvm_msr_entry *e;
	uint32_t n;

	if (!snap_find(f, SNAP_SEC_VCPU_MSRS, id, &s))
		return reason_fail(why, why_len, -EINVAL, "the snapshot has no MSRs for vCPU %u",
				   id);
	snap_rd_init(&r, &s);
	n = snap_get_u32(&r);
	if (r.err || n > KVM_STATE_MAX_MSRS + 64 || (uint64_t)n * 16 != r.len - r.off)
		return reason_fail(why, why_len, -EINVAL, "malformed MSR section for vCPU %u", id);
	e = calloc(n ? n : 1, sizeof(*e));
	if (!e)
		return reason_fail(why, why_len, -ENOMEM, "out of memory");
	for (uint32_t i = 0; i < n; i++) {
		e[i].index = snap_get_u32(&r);
		(void)snap_get_u32(&r);
		e[i].data = snap_get_u64(&r);
	}
	*out = e;
	*count = n;
	return 0;
}

int kvm_state_note_reset(struct vcpu *v)
{
	struct kvm_msrs *msrs;
	int ret = kvm_state_read_all_msrs(v, &msrs);

	if (ret)
		return ret;
	free(v->reset_msrs);
	v->reset_msrs = msrs;
	v->reset_tsc_khz = kvm_state_tsc_khz(v);
	v->has_reset_xcrs =
		vm_has_cap(v->vm, KVM_CAP_XCRS) && ioctl(v->fd, KVM_GET_XCRS, &v->reset_xcrs) == 0;
	v->has_reset_dbg = ioctl(v->fd, KVM_GET_DEBUGREGS, &v->reset_dbg) == 0;
	return 0;
}

/* True when vCPU v holds `e` already, as created (kvm_state_note_reset). */
static bool kvm_state_msr_at_reset(const struct vcpu *v, const struct kvm_msr_entry *e)
{
	const struct kvm_msrs *r = v->reset_msrs;

	for (uint32_t i = 0; r && i < r->nmsrs; i++)
		if (r->entries[i].index == e->index)
			return r->entries[i].data == e->data;
	return false;
}

/* True for an MSR of the snapshot's that a restore need not write:
 * - kvm-clock's wall clock MSRs. Writing one makes KVM write the host's
 *   wall clock into that guest page (a copy-on-write fault of a snapshot
 *   page, ~20 us here); the guest reads it only when it boots or resumes
 *   from suspend, and after a restore kiln's TIME frame sets the clock.
 * - the legacy system time MSR when the current one holds the same page:
 *   KVM keeps one value behind both, and each write maps the page again. */
static bool kvm_state_msr_redundant(const struct kvm_msr_entry *all, size_t n,
				    const struct kvm_msr_entry *e)
{
	if (e->index == MSR_KVM_WALL_CLOCK || e->index == MSR_KVM_WALL_CLOCK_NEW)
		return true;
	if (e->index != MSR_KVM_SYSTEM_TIME)
		return false;
	for (size_t i = 0; i < n; i++)
		if (all[i].index == MSR_KVM_SYSTEM_TIME_NEW)
			return all[i].data == e->data;
	return false;
}

int kvm_state_load_vcpu(struct vcpu *v, const struct snap_file *f, char *why, size_t why_len)
{
	union kvm_state_vcpu_buf u;
	uint16_t id = (uint16_t)v->index;
	struct kvm_msr_entry *msrs = NULL, deadline = {.index = 0};
	struct snap_section s;
	size_t nmsrs = 0, kept = 0, xsize = kvm_state_xsave_size(v->vm);
	bool has_deadline = false;
	int ret;

	/* Everything is read and checked before KVM is told anything. */
	ret = kvm_state_get_msrs(f, id, &msrs, &nmsrs, why, why_len);
	if (ret)
		return ret;
	for (size_t i = 0; i < nmsrs; i++) {
		if (msrs[i].index == MSR_IA32_TSC_DEADLINE) {
			deadline = msrs[i];
			/* A fresh vCPU's deadline is 0 (disarmed) already. */
			has_deadline = msrs[i].data != 0 || !v->reset_msrs;
		} else if (!kvm_state_msr_at_reset(v, &msrs[i]) &&
			   !kvm_state_msr_redundant(msrs, nmsrs, &msrs[i])) {
			msrs[kept++] = msrs[i];
		}
	}

	if (snap_find(f, SNAP_SEC_VCPU_TSC_KHZ, id, &s) && s.len == 4) {
		uint32_t khz = le32_get(s.data);
		int now = v->reset_msrs ? v->reset_tsc_khz : kvm_state_tsc_khz(v);

		if (now > 0 && (uint32_t)now != khz) {
			if (!vm_has_cap(v->vm, KVM_CAP_TSC_CONTROL) ||
			    ioctl(v->fd, KVM_SET_TSC_KHZ, (unsigned long)khz) < 0)
				log_warn("vCPU %u: the snapshot's TSC runs at %u kHz, this host's "
					 "at "
					 "%d kHz; guest time may drift",
					 v->index, khz, now);
		}
	}

	ret = kvm_state_get(f, SNAP_SEC_VCPU_SREGS, id, &u.sregs, sizeof(u.sregs), "SREGS", why,
			    why_len);
	if (!ret)
		ret = kvm_state_set(v->fd, KVM_SET_SREGS, &u.sregs, "KVM_SET_SREGS", v->index, why,
				    why_len);
	if (!ret)
		ret = kvm_state_get(f, SNAP_SEC_VCPU_REGS, id, &u.regs, sizeof(u.regs), "REGS", why,
				    why_len);
	if (!ret)
		ret = kvm_state_set(v->fd, KVM_SET_REGS, &u.regs, "KVM_SET_REGS", v->index, why,
				    why_len);
	if (ret)
		goto out_free;
	if (xsize && snap_find(f, SNAP_SEC_VCPU_XSAVE, id, &s)) {
		void *xs;

		if (s.len > xsize) {
			ret = reason_fail(why, why_len, -EINVAL,
					  "vCPU %u: the snapshot's XSAVE area has %u bytes, this "
					  "host's KVM takes %zu",
					  v->index, s.len, xsize);
			goto out_free;
		}
		xs = calloc(1, xsize);
		if (!xs) {
			ret = -ENOMEM;
			goto out_free;
		}
		memcpy(xs, s.data, s.len);
		ret = kvm_state_set(v->fd, KVM_SET_XSAVE, xs, "KVM_SET_XSAVE", v->index, why,
				    why_len);
		free(xs);
	} else {
		ret = kvm_state_get(f, SNAP_SEC_VCPU_FPU, id, &u.fpu, sizeof(u.fpu), "FPU", why,
				    why_len);
		if (!ret)
			ret = kvm_state_set(v->fd, KVM_SET_FPU, &u.fpu, "KVM_SET_FPU", v->index,
					    why, why_len);
	}
	if (ret)
		goto out_free;
	if (snap_find(f, SNAP_SEC_VCPU_XCRS, id, &s)) {
		ret = kvm_state_get(f, SNAP_SEC_VCPU_XCRS, id, &u.xcrs, sizeof(u.xcrs), "XCRS", why,
				    why_len);
		if (!ret && !(v->reset_msrs && v->has_reset_xcrs &&
			      memcmp(&u.xcrs, &v->reset_xcrs, sizeof(u.xcrs)) == 0))
			ret = kvm_state_set(v->fd, KVM_SET_XCRS, &u.xcrs, "KVM_SET_XCRS", v->index,
					    why, why_len);
		if (ret)
			goto out_free;
	}
	ret = kvm_state_write_msrs(v, msrs, kept);
	if (ret) {
		reason_fail(why, why_len, ret, "vCPU %u: KVM_SET_MSRS: %s", v->index,
			    strerror(-ret));
		goto out_free;
	}
	ret = kvm_state_get(f, SNAP_SEC_VCPU_MP_STATE, id, &u.mp, sizeof(u.mp), "MP state", why,
			    why_len);
	if (!ret)
		ret = kvm_state_set(v->fd, KVM_SET_MP_STATE, &u.mp, "KVM_SET_MP_STATE", v->index,
				    why, why_len);
	if (!ret)
		ret = kvm_state_get(f, SNAP_SEC_VCPU_LAPIC, id, &u.lapic, sizeof(u.lapic), "LAPIC",
				    why, why_len);
	if (!ret)
		ret = kvm_state_set(v->fd, KVM_SET_LAPIC, &u.lapic, "KVM_SET_LAPIC", v->index, why,
				    why_len);
	if (!ret && has_deadline) {
		ret = kvm_state_write_msrs(v, &deadline, 1);
		if (ret)
			reason_fail(why, why_len, ret, "vCPU %u: TSC deadline: %s", v->index,
				    strerror(-ret));
	}
	if (!ret)
		ret = kvm_state_get(f, SNAP_SEC_VCPU_EVENTS, id, &u.events, sizeof(u.events),
				    "events", why, why_len);
	if (!ret) {
		u.events.flags |= KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR;
		ret = kvm_state_set(v->fd, KVM_SET_VCPU_EVENTS, &u.events, "KVM_SET_VCPU_EVENTS",
				    v->index, why, why_len);
	}
	if (!ret && snap_find(f, SNAP_SEC_VCPU_DEBUGREGS, id, &s)) {
		ret = kvm_state_get(f, SNAP_SEC_VCPU_DEBUGREGS, id, &u.dbg, sizeof(u.dbg),
				    "debug registers", why, why_len);
		if (!ret && !(v->reset_msrs && v->has_reset_dbg &&
			      memcmp(&u.dbg, &v->reset_dbg, sizeof(u.dbg)) == 0))
			ret = kvm_state_set(v->fd, KVM_SET_DEBUGREGS, &u.dbg, "KVM_SET_DEBUGREGS",
					    v->index, why, why_len);
	}
out_free:
	free(msrs);
	/* The vCPU is no longer as created. */
	free(v->reset_msrs);
	v->reset_msrs = NULL;
	return ret;
}

int kvm_state_load_vm(struct vm *vm, const struct snap_file *f, char *why, size_t why_len)
{
	struct kvm_irqchip chip;
	struct kvm_pit_state2 pit;
	int ret;

	for (uint16_t id = 0; id < 3; id++) {
		ret = kvm_state_get(f, SNAP_SEC_VM_IRQCHIP, id, &chip, sizeof(chip), "irqchip", why,
				    why_len);
		if (ret)
			return ret;
		if (chip.chip_id != id)
			return reason_fail(why, why_len, -EINVAL, "irqchip section %u is chip %u",
					   id, chip.chip_id);
		if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &chip) < 0)
			return reason_fail(why, why_len, -errno, "KVM_SET_IRQCHIP %u: %s", id,
					   strerror(errno));
	}
	ret = kvm_state_get(f, SNAP_SEC_VM_PIT, 0, &pit, sizeof(pit), "PIT", why, why_len);
	if (ret)
		return ret;
	if (ioctl(vm->vm_fd, KVM_SET_PIT2, &pit) < 0)
		return reason_fail(why, why_len, -errno, "KVM_SET_PIT2: %s", strerror(errno));
	return 0;
}

int kvm_state_load_clock(struct vm *vm, const struct snap_file *f, char *why, size_t why_len)
{
	struct kvm_clock_data clock;
	int ret;

	ret = kvm_state_get(f, SNAP_SEC_VM_CLOCK, 0, &clock, sizeof(clock), "clock", why, why_len);
	if (ret)
		return ret;
	/* Guest time resumes where the snapshot stopped it; the host agent
	 * sets the wall clock after a restore. */
	clock.flags = 0;
	memset(clock.pad, 0, sizeof(clock.pad));
	clock.realtime = 0;
	clock.host_tsc = 0;
	if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &clock) < 0)
		return reason_fail(why, why_len, -errno, "KVM_SET_CLOCK: %s", strerror(errno));
	return 0;
}
