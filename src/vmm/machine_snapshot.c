/* machine_snapshot.c - taking a snapshot of the machine and restoring one
 * into it (docs/snapshots.md).
 *
 * Snapshot: the vCPUs are parked (machine_vcpu.c), then capture runs on the
 * I/O loop thread (evloop_call_sync), so no device is serving a queue or a
 * socket while device state and guest memory are read. Every virtio device
 * saves itself through its ops (virtio/device.h), then its transport.
 *
 * Restore, into a machine waiting for one: the snapshot's device table is
 * checked against the host side given (machine_restore_check) before
 * anything is created; then, with the loop thread held, the devices are
 * created in their slots and restored, guest RAM is mapped, the VM, vCPU,
 * legacy device and clock state loaded, each device resets what its host
 * side could not keep, and every live queue is served once.
 */
#include "vmm/machine_internal.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/reason.h"
#include "vmm/devices/ctl.h"
#include "vmm/devices/i8042.h"
#include "vmm/devices/serial.h"
#include "vmm/evloop.h"
#include "vmm/snapshot/kvm_state.h"
#include "vmm/virtio/mmio.h"
#include "vmm/snapshot/wset.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- snapshot ---- */

struct machine_snap_ctx {
	struct machine *m;
	const char *dir;
	bool diff;
	int ret;
	char why[512];
	char real[PATH_MAX];
	struct snap_mem_stats st;
	size_t state_len;
	uint32_t crc;
	double state_ms, memory_ms, write_ms;
};

static void machine_put_devices(struct machine *m, struct snap_writer *w)
{
	snap_begin(w, SNAP_SEC_DEVICES, 0);
	snap_put_u32(w, m->nvirtio);
	for (unsigned int i = 0; i < m->nvirtio; i++)
		snap_put_u32(w, m->virtio[i].ops->device_id);
	snap_end(w);
	serial_save(m->serial, w);
	i8042_save(m->i8042, w);
	ctl_save(m->ctl, w);
	for (unsigned int i = 0; i < m->nvirtio; i++) {
		struct machine_virtio *d = &m->virtio[i];

		/* The back end first: vsock hands back a buffer it holds. */
		if (d->ops->save)
			d->ops->save(d->dev, w, (uint16_t)i);
		virtio_mmio_save(d->transport, w, (uint16_t)i);
	}
}

/* On the loop thread, vCPUs parked: nothing else touches guest RAM or the
 * devices while this runs. */
static void machine_snapshot_cb(void *opaque, uint32_t events)
{
	struct machine_snap_ctx *x = opaque;
	struct machine *m = x->m;
	struct guest_mem *mem = &m->vm->mem;
	struct snap_extents ext = {0};
	struct snap_writer w;
	uint64_t t0 = clock_mono_ns(), t1;
	int newfd = -1, ret;

	(void)events;
	if (x->diff && !m->backing.file_backed) {
		x->ret = reason_fail(
			x->why, sizeof(x->why), -EINVAL,
			"a diff snapshot needs a parent: restore this VM from a snapshot, or take "
			"a full snapshot first");
		return;
	}
	/* Checked before anything in the directory is removed. */
	if (x->diff && realpath(x->dir, x->real) && strcmp(x->real, m->backing.parent_dir) == 0) {
		x->ret = reason_fail(
			x->why, sizeof(x->why), -EINVAL,
			"%.400s is this diff snapshot's parent; write the diff to another "
			"directory",
			x->real);
		return;
	}
	ret = snap_dir_prepare(x->dir, x->why, sizeof(x->why));
	if (ret < 0) {
		x->ret = ret;
		return;
	}
	if (!realpath(x->dir, x->real)) {
		x->ret = reason_fail(x->why, sizeof(x->why), -errno, "%s: %s", x->dir,
				     strerror(errno));
		return;
	}
	ret = snap_writer_init(&w);
	if (ret < 0) {
		x->ret = reason_fail(x->why, sizeof(x->why), ret, "out of memory");
		return;
	}
	snap_put_meta(&w, mem->size, m->ncpus, x->diff);
	if (x->diff) {
		snap_begin(&w, SNAP_SEC_PARENT, 0);
		snap_put_u32(&w, m->backing.parent_crc);
		snap_put_u32(&w, (uint32_t)strlen(m->backing.parent_dir));
		snap_put_bytes(&w, m->backing.parent_dir, strlen(m->backing.parent_dir));
		snap_end(&w);
	}
	machine_put_devices(m, &w);
	ret = kvm_state_save_vm(m->vm, &w);
	for (unsigned int i = 0; i < m->ncpus && !ret; i++)
		ret = kvm_state_save_vcpu(m->cpus[i].vcpu, &w);
	if (ret < 0) {
		snprintf(x->why, sizeof(x->why), "cannot read the VM's state from KVM: %s",
			 strerror(-ret));
		goto out_release;
	}
	x->state_ms = machine_ms_since(t0);
	t1 = clock_mono_ns();
	ret = snap_write_memory(x->real, mem, &m->backing, x->diff, &ext, &x->st,
				x->diff ? NULL : &newfd, x->why, sizeof(x->why));
	if (ret < 0)
		goto out_release;
	x->memory_ms = machine_ms_since(t1);
	t1 = clock_mono_ns();
	if (x->diff) {
		snap_begin(&w, SNAP_SEC_MEM_EXTENTS, 0);
		snap_put_u64(&w, ext.n);
		for (size_t i = 0; i < ext.n; i++) {
			snap_put_u64(&w, ext.v[i].page);
			snap_put_u64(&w, ext.v[i].npages);
		}
		snap_end(&w);
	}
	ret = snap_writer_seal(&w, &x->crc);
	if (ret < 0) {
		snprintf(x->why, sizeof(x->why), "cannot build the state file: %s", strerror(-ret));
		goto out_release;
	}
	x->state_len = w.len;
	ret = snap_write_state(x->real, w.buf, w.len, x->why, sizeof(x->why));
	if (ret < 0)
		goto out_release;
	x->write_ms = machine_ms_since(t1);
	if (!x->diff) {
		/* From now on RAM is the new file, copied on write: the next
		 * diff holds what changes after this snapshot. */
		ret = snap_mem_map(mem, newfd);
		if (ret < 0) {
			log_error("cannot map the new memory file over guest RAM: %s; stopping",
				  strerror(-ret));
			machine_stop(m, 1);
			snprintf(x->why, sizeof(x->why),
				 "snapshot written, but guest RAM could not be re-mapped: %s",
				 strerror(-ret));
			goto out_release;
		}
		snap_backing_release(&m->backing);
		m->backing.file_backed = true;
		m->backing.base_fd = newfd;
		newfd = -1;
		memcpy(m->backing.parent_dir, x->real, sizeof(m->backing.parent_dir));
		m->backing.parent_crc = x->crc;
	}
out_release:
	x->ret = ret;
	if (newfd >= 0)
		close(newfd);
	snap_extents_release(&ext);
	snap_writer_release(&w);
}

int machine_snapshot(struct machine *m, const char *dir, bool diff,
		     struct machine_snapshot_result *res, char *why, size_t why_len)
{
	struct machine_snap_ctx x = {.m = m, .dir = dir, .diff = diff};
	uint64_t t0 = clock_mono_ns();
	bool was_running = m->state == MACHINE_RUNNING;
	int ret;

	if (m->state != MACHINE_RUNNING && m->state != MACHINE_PAUSED)
		return reason_fail(why, why_len, -EBUSY, "cannot snapshot: the VM is %s",
				   machine_state_name(m->state));
	if (was_running) {
		ret = machine_pause_vcpus(m);
		if (ret < 0)
			return reason_fail(why, why_len, ret, "cannot pause the VM: %s",
					   strerror(-ret));
	}
	res->pause_ms = machine_ms_since(t0);
	evloop_call_sync(m->loop, machine_snapshot_cb, &x);
	if (was_running && !atomic_load(&m->stopping))
		machine_resume_vcpus(m);
	if (x.ret < 0)
		return reason_fail(why, why_len, x.ret, "snapshot failed: %s", x.why);
	memcpy(res->dir, x.real, sizeof(res->dir));
	res->crc = x.crc;
	res->state_ms = x.state_ms;
	res->memory_ms = x.memory_ms;
	res->write_ms = x.write_ms;
	res->memory_pages = x.st.pages_written;
	res->memory_bytes = x.st.bytes_written;
	res->memory_extents = x.st.extents;
	res->state_bytes = x.state_len;
	res->total_ms = machine_ms_since(t0);
	log_debug("timing: snapshot %s in %.3f ms (pause %.3f, state %.3f, memory %.3f, files "
		  "%.3f), %llu pages written",
		  x.real, res->total_ms, res->pause_ms, x.state_ms, x.memory_ms, x.write_ms,
		  (unsigned long long)x.st.pages_written);
	return 0;
}

/* ---- restore ---- */

struct machine_restore_ctx {
	struct machine *m;
	struct snap_image *img;
	const struct machine_restore_params *p;
	struct machine_restore_times *t; /* may be NULL */
	/* The snapshot's virtio devices, slot by slot, with their host side. */
	struct virtio_host plan[MACHINE_MAX_VIRTIO];
	unsigned int nplan;
	int ret;
	char why[512];
	uint64_t mark[6]; /* CLOCK_MONOTONIC after each step (timing log) */
};

/* Finds the device section of the snapshot's virtio device `slot`, when its
 * kind has one. Returns 0 (*sec NULL for a kind without one), or -EINVAL
 * with the reason in x->why. */
static int machine_restore_device_section(struct machine_restore_ctx *x, unsigned int slot,
					  struct snap_section *s, const struct snap_section **sec)
{
	const struct virtio_device_ops *ops = x->plan[slot].ops;

	*sec = NULL;
	if (!ops->snap_section)
		return 0;
	if (!snap_find(&x->img->file, ops->snap_section, (uint16_t)slot, s))
		return reason_fail(x->why, sizeof(x->why), -EINVAL,
				   "the snapshot has no %s state for virtio device %u", ops->noun,
				   slot);
	*sec = s;
	return 0;
}

/* Checks the snapshot's device table against the host side given, before
 * anything is created: every kind known, as many devices of each
 * host-backed kind as given, each device's own check (disk sizes and
 * modes). Fills x->plan. */
static int machine_restore_check(struct machine_restore_ctx *x)
{
	const struct machine_restore_params *p = x->p;
	const struct virtio_device_ops *ops;
	struct snap_section s;
	struct snap_rd r;
	char sub[384] = "";
	int ret;

	if (!snap_find(&x->img->file, SNAP_SEC_DEVICES, 0, &s))
		return reason_fail(x->why, sizeof(x->why), -EINVAL,
				   "the snapshot has no device table");
	snap_rd_init(&r, &s);
	x->nplan = snap_get_u32(&r);
	if (r.err || x->nplan > MACHINE_MAX_VIRTIO || (uint64_t)x->nplan * 4 != r.len - r.off)
		return reason_fail(x->why, sizeof(x->why), -EINVAL,
				   "malformed device table in the snapshot");
	for (unsigned int i = 0; i < x->nplan; i++) {
		uint32_t id = snap_get_u32(&r);

		ops = virtio_device_find(id);
		if (!ops)
			return reason_fail(x->why, sizeof(x->why), -EINVAL,
					   "the snapshot has a virtio device of unknown kind %u",
					   id);
		x->plan[i] = (struct virtio_host){.ops = ops};
	}
	/* Every kind: as many given as the snapshot has (host-backed), or none. */
	for (unsigned int k = 0; (ops = virtio_device_at(k)); k++) {
		unsigned int saved = machine_count_kind(x->plan, x->nplan, ops);
		unsigned int given = machine_count_kind(p->devices, p->ndevices, ops);

		if (!ops->host_backed && given)
			return reason_fail(x->why, sizeof(x->why), -EINVAL,
					   "the %s comes from the snapshot: do not give it again",
					   ops->noun);
		if (!ops->host_backed || saved == given)
			continue;
		if (saved == 0)
			return reason_fail(x->why, sizeof(x->why), -EINVAL,
					   "the snapshot has no %s, but %u given", ops->noun,
					   given);
		return reason_fail(x->why, sizeof(x->why), -EINVAL,
				   "the snapshot has %u %s(s), %u given: %s", saved, ops->noun,
				   given, ops->restore_hint);
	}
	/* The i-th given device of a kind is the snapshot's i-th of that kind. */
	for (unsigned int i = 0; i < x->nplan; i++) {
		struct virtio_host *h = &x->plan[i];
		const struct snap_section *sec;
		unsigned int nth = machine_count_kind(x->plan, i, h->ops) + 1;

		if (h->ops->host_backed) {
			for (unsigned int j = 0, seen = 0; j < p->ndevices; j++)
				if (p->devices[j].ops == h->ops && ++seen == nth)
					*h = p->devices[j];
		}
		h->nth = nth;
		ret = machine_restore_device_section(x, i, &s, &sec);
		if (ret < 0)
			return ret;
		if (h->ops->check && h->ops->check(sec, h, sub, sizeof(sub)) < 0)
			return reason_fail(x->why, sizeof(x->why), -EINVAL, "%s", sub);
	}
	return 0;
}

/* Finds the snapshot's section `type` (instance 0) for `what`. Returns 0, or
 * -EINVAL with the reason in x->why. */
static int machine_restore_find(struct machine_restore_ctx *x, uint16_t type, const char *what,
				struct snap_section *s)
{
	if (!snap_find(&x->img->file, type, 0, s))
		return reason_fail(x->why, sizeof(x->why), -EINVAL, "the snapshot has no %s state",
				   what);
	return 0;
}

/* On the loop thread, or with it held (evloop_run_paused), or before it runs;
 * vCPUs parked. */
/* Brings the working set in (wset.h), before the vCPUs run. A file that
 * is missing, damaged or another snapshot's is skipped with a log line:
 * the restore goes on, faulting pages in lazily. */
static void machine_restore_prefetch(struct machine_restore_ctx *x)
{
	struct machine *m = x->m;
	struct snap_extents e = {0};
	char why[256];
	uint64_t t0 = clock_mono_ns();
	int64_t n;
	int ret;

	ret = wset_load(x->p->working_set, m->backing.parent_crc, m->vm->mem.size, &e, why,
			sizeof(why));
	if (ret < 0) {
		log_warn("working set %s not used: %s", x->p->working_set, why);
		if (x->t)
			snprintf(x->t->prefetch_skipped, sizeof(x->t->prefetch_skipped), "%s", why);
		return;
	}
	n = wset_prefetch(&m->vm->mem, &e);
	snap_extents_release(&e);
	if (n < 0) {
		log_warn("working set %s: prefetch failed: %s", x->p->working_set,
			 strerror((int)-n));
		if (x->t)
			snprintf(x->t->prefetch_skipped, sizeof(x->t->prefetch_skipped),
				 "prefetch failed: %s", strerror((int)-n));
		return;
	}
	if (x->t) {
		x->t->prefetch_pages = n;
		x->t->prefetch_ms = machine_ms_since(t0);
	}
}

int machine_working_set_save(struct machine *m, const char *path, uint64_t *pages, size_t *runs,
			     char *why, size_t why_len)
{
	struct snap_extents e = {0};
	int ret;

	if (!m->backing.file_backed || !m->restored_from[0])
		return reason_fail(why, why_len, -EINVAL,
				   "only a machine restored from a snapshot has a working set");
	ret = snap_mem_resident(&m->vm->mem, &e, why, why_len);
	if (ret < 0)
		return ret;
	*pages = 0;
	for (size_t i = 0; i < e.n; i++)
		*pages += e.v[i].npages;
	*runs = e.n;
	ret = wset_save(path, &e, m->backing.parent_crc, m->vm->mem.size);
	snap_extents_release(&e);
	if (ret < 0)
		return reason_fail(why, why_len, ret, "cannot write %s: %s", path, strerror(-ret));
	return 0;
}

/* On the loop thread, once a restore is done: serves every live queue
 * once, in case the guest notified one just before the snapshot. */
static void machine_restore_kick(void *opaque, uint32_t events)
{
	struct machine *m = opaque;

	(void)events;
	for (unsigned int i = 0; i < m->nvirtio; i++)
		virtio_mmio_kick(m->virtio[i].transport);
}

static void machine_restore_cb(void *opaque, uint32_t events)
{
	struct machine_restore_ctx *x = opaque;
	struct machine *m = x->m;
	const struct snap_file *f = &x->img->file;
	struct snap_section s;
	char sub[384] = "";
	int ret;

	(void)events;
	x->mark[0] = clock_mono_ns();
	for (unsigned int i = 0; i < x->nplan; i++) {
		/* The device takes a staged socket over, even if it fails. */
		if (x->plan[i].has_listener)
			m->staged_vsock.has_listener = false;
		ret = machine_add_virtio(m, &x->plan[i]);
		if (ret < 0) {
			x->ret = reason_fail(x->why, sizeof(x->why), ret,
					     "cannot attach virtio device %u (see the log)", i);
			return;
		}
	}
	for (unsigned int i = 0; i < m->nvirtio; i++) {
		struct machine_virtio *d = &m->virtio[i];
		const struct snap_section *sec;

		x->ret = machine_restore_device_section(x, i, &s, &sec);
		if (x->ret < 0)
			return;
		if (sec && d->ops->restore && d->ops->restore(d->dev, sec, sub, sizeof(sub)) < 0) {
			x->ret = reason_fail(x->why, sizeof(x->why), -EINVAL,
					     "virtio device %u: %s", i, sub);
			return;
		}
		if (!snap_find(f, SNAP_SEC_VIRTIO_MMIO, (uint16_t)i, &s)) {
			x->ret = reason_fail(x->why, sizeof(x->why), -EINVAL,
					     "the snapshot has no state for virtio device %u", i);
			return;
		}
		if (virtio_mmio_restore(d->transport, &s, sub, sizeof(sub)) < 0) {
			x->ret = reason_fail(x->why, sizeof(x->why), -EINVAL,
					     "virtio device %u: %s", i, sub);
			return;
		}
	}
	x->mark[1] = clock_mono_ns();
	ret = snap_image_map(x->img, &m->vm->mem, &m->backing, x->why, sizeof(x->why));
	if (ret < 0) {
		x->ret = ret;
		return;
	}
	x->mark[2] = clock_mono_ns();
	if (x->p->working_set)
		machine_restore_prefetch(x);
	x->mark[3] = clock_mono_ns();
	ret = kvm_state_load_vm(m->vm, f, sub, sizeof(sub));
	for (unsigned int i = 0; i < m->ncpus && !ret; i++)
		ret = kvm_state_load_vcpu(m->cpus[i].vcpu, f, sub, sizeof(sub));
	x->mark[4] = clock_mono_ns();
	if (ret < 0) {
		x->ret = reason_fail(x->why, sizeof(x->why), ret, "%s", sub);
		return;
	}
	x->ret = machine_restore_find(x, SNAP_SEC_SERIAL, "serial port", &s);
	if (x->ret < 0)
		return;
	ret = serial_restore(m->serial, &s, sub, sizeof(sub));
	if (!ret) {
		x->ret = machine_restore_find(x, SNAP_SEC_I8042, "i8042", &s);
		if (x->ret < 0)
			return;
		ret = i8042_restore(m->i8042, &s, sub, sizeof(sub));
	}
	if (!ret) {
		x->ret = machine_restore_find(x, SNAP_SEC_CTL, "control page", &s);
		if (x->ret < 0)
			return;
		ret = ctl_restore(m->ctl, &s, sub, sizeof(sub));
	}
	if (ret < 0) {
		x->ret = reason_fail(x->why, sizeof(x->why), ret, "the snapshot's %s", sub);
		return;
	}
	ret = kvm_state_load_clock(m->vm, f, sub, sizeof(sub));
	if (ret < 0) {
		x->ret = reason_fail(x->why, sizeof(x->why), ret, "%s", sub);
		return;
	}
	/* Each device ends what its host side could not keep (the guest's
	 * vsock connections: an RST each, docs/vsock.md), then every live
	 * queue is served once in case a notification was in flight when the
	 * snapshot was taken (by the loop, after this). */
	for (unsigned int i = 0; i < m->nvirtio; i++) {
		struct machine_virtio *d = &m->virtio[i];

		ret = d->ops->reset_after_restore ? d->ops->reset_after_restore(d->dev) : 0;
		if (ret < 0) {
			x->ret = reason_fail(x->why, sizeof(x->why), ret, "virtio device %u: %s", i,
					     strerror(-ret));
			return;
		}
	}
	/* The loop serves them once it runs again, beside the vCPUs. */
	if (evloop_call(m->loop, machine_restore_kick, m) < 0)
		machine_restore_kick(m, 0);
	x->mark[5] = clock_mono_ns();
	log_debug("timing: restore steps: devices %.3f ms, memory mapped %.3f ms, prefetch "
		  "%.3f ms, KVM state %.3f ms, the rest %.3f ms",
		  (double)(x->mark[1] - x->mark[0]) / 1e6, (double)(x->mark[2] - x->mark[1]) / 1e6,
		  (double)(x->mark[3] - x->mark[2]) / 1e6, (double)(x->mark[4] - x->mark[3]) / 1e6,
		  (double)(x->mark[5] - x->mark[4]) / 1e6);
	x->ret = 0;
}

/* The vsock socket a pre-started machine listens on already (machine.c)
 * serves the restore: *q is p with it as the vsock device's host side,
 * whether p names the same socket or none. Another path is refused. */
static int machine_restore_staged(struct machine *m, const struct machine_restore_params *p,
				  struct machine_restore_params *q, char *why, size_t why_len)
{
	const struct virtio_host *st = &m->staged_vsock;
	unsigned int i;

	*q = *p;
	if (!st->has_listener)
		return 0;
	for (i = 0; i < q->ndevices && q->devices[i].ops != st->ops; i++)
		;
	if (i == q->ndevices) {
		if (q->ndevices == MACHINE_MAX_VIRTIO)
			return reason_fail(why, why_len, -EINVAL, "too many devices");
		q->ndevices++;
	} else if (strcmp(q->devices[i].path, st->path) != 0) {
		return reason_fail(why, why_len, -EINVAL,
				   "this kiln-vmm was pre-started with the vsock socket %s, not %s",
				   st->path, q->devices[i].path);
	}
	q->devices[i] = *st;
	if (p->ndevices > i && p->devices[i].connect_ms)
		q->devices[i].connect_ms = p->devices[i].connect_ms;
	return 0;
}

static int machine_restore_image(struct machine *m, struct snap_image *img,
				 const struct machine_restore_params *p,
				 struct machine_restore_times *t, uint64_t t0, char *why,
				 size_t why_len)
{
	struct machine_restore_ctx x = {.m = m, .img = img, .t = t};
	struct machine_restore_params q;
	uint64_t t1 = clock_mono_ns();
	int ret;

	if (img->meta.mem_size != m->vm->mem.size || img->meta.vcpus != m->ncpus) {
		snprintf(why, why_len,
			 "the snapshot needs %llu MiB and %u vCPU(s); this kiln-vmm has %llu MiB "
			 "and %u",
			 (unsigned long long)(img->meta.mem_size >> 20), img->meta.vcpus,
			 (unsigned long long)(m->vm->mem.size >> 20), m->ncpus);
		return -EINVAL;
	}
	ret = machine_restore_staged(m, p, &q, why, why_len);
	if (ret < 0)
		return ret;
	x.p = &q;
	ret = machine_restore_check(&x);
	if (ret < 0)
		return reason_fail(why, why_len, ret, "%s", x.why);
	if (p->console && machine_switch_console(m, p->console, why, why_len) < 0)
		return -EINVAL;
	evloop_run_paused(m->loop, machine_restore_cb, &x);
	if (x.ret < 0) {
		m->state = MACHINE_BROKEN;
		snprintf(why, why_len, "%s (this kiln-vmm cannot be used again)", x.why);
		return x.ret;
	}
	snprintf(m->restored_from, sizeof(m->restored_from), "%s",
		 img->layers[img->nlayers - 1].dir);
	m->state = MACHINE_RUNNING;
	if (t)
		t->apply_ms = machine_ms_since(t1);
	if (p->run_later)
		m->run_pending = true;
	else
		machine_resume_vcpus(m);
	if (t)
		t->total_ms = machine_ms_since(t0);
	return 0;
}

void machine_run_restored(struct machine *m)
{
	if (!m->run_pending)
		return;
	m->run_pending = false;
	machine_resume_vcpus(m);
}

int machine_restore(struct machine *m, const struct machine_restore_params *p,
		    struct machine_restore_times *t, char *why, size_t why_len)
{
	struct snap_image img;
	uint64_t t0 = clock_mono_ns();
	int ret;

	if (m->state != MACHINE_WAITING) {
		snprintf(why, why_len,
			 "only a kiln-vmm waiting for a restore (--prestart) can restore; this one "
			 "is %s",
			 machine_state_name(m->state));
		return -EBUSY;
	}
	ret = snap_image_load(p->dir, m->max_mem, &img, why, why_len);
	if (ret < 0)
		return ret;
	if (t)
		t->load_ms = machine_ms_since(t0);
	ret = machine_restore_image(m, &img, p, t, t0, why, why_len);
	snap_image_release(&img);
	if (!ret)
		log_debug("timing: restored %s in %.3f ms", p->dir, t ? t->total_ms : 0.0);
	return ret;
}
