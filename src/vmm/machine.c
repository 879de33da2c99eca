/* machine.c - a whole microVM: VM + devices + vCPU threads + console, and
 * what the control socket does with it: pause, resume, snapshot, restore.
 *
 * Pausing: the control thread sets `pause_req`, sets every vCPU's
 * immediate_exit and kicks it with a signal; each vCPU thread, back from
 * KVM_RUN, completes any pending port/MMIO exit (vcpu_complete_io: no guest
 * instruction runs) and parks on `park_cond`. The control thread waits on
 * `parked_cond` until all are parked. Snapshot capture then runs on the I/O
 * loop thread (evloop_call_sync), so no device is serving a queue or a
 * socket while device state and guest memory are read. See
 * docs/snapshots.md.
 */
#include "vmm/machine.h"

#include "common/clock.h"
#include "common/log.h"
#include "vmm/api.h"
#include "vmm/boot/boot.h"
#include "vmm/devices/ctl.h"
#include "vmm/devices/i8042.h"
#include "vmm/devices/serial.h"
#include "vmm/evloop.h"
#include "vmm/iobus.h"
#include "vmm/kcmdline.h"
#include "vmm/layout.h"
#include "vmm/snapshot/kvm_state.h"
#include "vmm/snapshot/snapshot.h"
#include "vmm/vcpu.h"
#include "vmm/virtio/blk.h"
#include "vmm/virtio/mmio.h"
#include "vmm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define MACHINE_KICK_SIGNAL SIGUSR1

/* One virtio device of the machine: its kind, the back end and the
 * transport (owned by the back end). */
struct machine_virtio {
	const struct virtio_device_ops *ops;
	void *dev;
	struct virtio_mmio *transport;
};

struct machine_cpu {
	struct machine *m;
	struct vcpu *vcpu;
	pthread_t thread;
	bool started;
	bool ran; /* KVM_RUN since it last completed its I/O */
};

enum machine_state {
	MACHINE_WAITING, /* no guest yet: waits for a restore */
	MACHINE_RUNNING,
	MACHINE_PAUSED,
	MACHINE_BROKEN, /* a restore failed half-way: only stop is possible */
};

struct machine {
	struct vm *vm;
	struct iobus *bus;
	struct serial *serial;
	struct i8042 *i8042;
	struct ctl *ctl;
	struct evloop *loop; /* the I/O thread: virtio back ends */
	struct machine_virtio virtio[MACHINE_MAX_VIRTIO];
	unsigned int nvirtio;
	struct machine_cpu cpus[BOOT_MAX_VCPUS];
	unsigned int ncpus;
	struct boot_info boot;

	int console_fd; /* where guest output goes (1 or an opened file) */
	bool console_owned;
	bool stdin_input; /* forward stdin to the UART */
	bool tty_raw;	  /* stdin is a terminal we switched to raw mode */
	struct termios tty_saved;

	int stop_fd; /* eventfd: written once when the machine stops */
	pthread_mutex_t lock;
	atomic_bool stopping;
	int status;

	/* Pausing (under `lock`). */
	pthread_cond_t park_cond;   /* parked vCPUs wait here */
	pthread_cond_t parked_cond; /* the control thread waits for them here */
	atomic_bool pause_req;
	unsigned int nparked;

	/* Control thread only. */
	enum machine_state state;
	struct api *api;
	uint64_t max_mem;
	struct snap_backing backing; /* where guest RAM's contents come from */
	char restored_from[PATH_MAX];
};

static uint64_t machine_start_ns;

void machine_mark_start(void)
{
	machine_start_ns = clock_mono_ns();
}

uint64_t machine_uptime_ns(void)
{
	return clock_mono_ns() - machine_start_ns;
}

/* Ends the run with `status` (the first caller wins) and kicks every vCPU
 * out of KVM_RUN. Safe from any thread. */
static void machine_stop(struct machine *m, int status)
{
	uint64_t one = 1;
	pthread_t self = pthread_self();

	pthread_mutex_lock(&m->lock);
	if (atomic_load(&m->stopping)) {
		pthread_mutex_unlock(&m->lock);
		return;
	}
	m->status = status;
	atomic_store(&m->stopping, true);
	pthread_cond_broadcast(&m->park_cond);
	pthread_cond_broadcast(&m->parked_cond);
	for (unsigned int i = 0; i < m->ncpus; i++) {
		struct machine_cpu *c = &m->cpus[i];

		c->vcpu->run->immediate_exit = 1;
		if (c->started && !pthread_equal(c->thread, self))
			pthread_kill(c->thread, MACHINE_KICK_SIGNAL);
	}
	pthread_mutex_unlock(&m->lock);
	if (write(m->stop_fd, &one, sizeof(one)) < 0)
		log_debug("stop eventfd: %s", strerror(errno));
}

static void machine_on_ctl_exit(void *opaque, int status)
{
	log_debug("guest reported exit status %d", status);
	machine_stop(opaque, status & 0xff);
}

static void machine_on_ctl_ready(void *opaque, uint32_t guest_ms)
{
	(void)opaque;
	log_debug("timing: guest ready at %.3f ms (guest monotonic %u ms)",
		  (double)machine_uptime_ns() / 1e6, guest_ms);
}

static void machine_on_reset(void *opaque)
{
	log_info("guest reset itself (i8042); stopping");
	machine_stop(opaque, 0);
}

/* Stops the machine for a vCPU that must stop (`r`, enum vcpu_stop). */
static void machine_cpu_stopped(struct machine *m, int r)
{
	switch (r) {
	case VCPU_STOP_SYSTEM:
	case VCPU_STOP_HALTED:
		machine_stop(m, 0);
		break;
	default:
		machine_stop(m, 1);
		break;
	}
}

/* A pause was asked for: leave the vCPU in a consistent state (no I/O exit
 * half done) and wait until resumed or stopped. */
static void machine_cpu_park(struct machine_cpu *c)
{
	struct machine *m = c->m;

	if (c->ran) {
		int r = vcpu_complete_io(c->vcpu, m->bus);

		c->ran = false;
		if (r > 0)
			machine_cpu_stopped(m, r);
	}
	pthread_mutex_lock(&m->lock);
	m->nparked++;
	pthread_cond_broadcast(&m->parked_cond);
	while (atomic_load(&m->pause_req) && !atomic_load(&m->stopping))
		pthread_cond_wait(&m->park_cond, &m->lock);
	m->nparked--;
	if (!atomic_load(&m->stopping))
		c->vcpu->run->immediate_exit = 0;
	pthread_mutex_unlock(&m->lock);
}

static void *machine_cpu_thread(void *arg)
{
	struct machine_cpu *c = arg;
	struct machine *m = c->m;
	bool first = c->vcpu->index == 0;
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, MACHINE_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	for (;;) {
		int r;

		if (atomic_load(&m->pause_req))
			machine_cpu_park(c);
		if (atomic_load(&m->stopping))
			break;
		if (first) {
			log_debug("timing: first guest entry at %.3f ms",
				  (double)machine_uptime_ns() / 1e6);
			first = false;
		}
		r = vcpu_run_once(c->vcpu, m->bus);
		c->ran = true;
		if (r == 0 || r == -EINTR)
			continue;
		machine_cpu_stopped(m, r);
	}
	return NULL;
}

static void machine_kick_handler(int sig)
{
	(void)sig;
}

static int machine_open_console(struct machine *m, const char *console)
{
	if (!console || strcmp(console, "stdio") == 0) {
		m->console_fd = STDOUT_FILENO;
		m->stdin_input = true;
		return 0;
	}
	m->console_fd = open(console, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (m->console_fd < 0) {
		int err = -errno;

		log_error("cannot open console file %s: %s", console, strerror(errno));
		return err;
	}
	m->console_owned = true;
	return 0;
}

static int machine_attach_devices(struct machine *m)
{
	struct irq_line com1 = {.set = vm_set_irq, .opaque = m->vm, .irq = LAYOUT_COM1_IRQ};
	int ret;

	m->bus = iobus_create();
	m->serial = serial_create(m->console_fd, com1);
	m->i8042 = i8042_create(machine_on_reset, m);
	m->ctl = ctl_create(machine_on_ctl_exit, machine_on_ctl_ready, m);
	if (!m->bus || !m->serial || !m->i8042 || !m->ctl) {
		log_error("out of memory");
		return -ENOMEM;
	}
	ret = serial_attach(m->serial, m->bus, LAYOUT_COM1_PORT);
	if (!ret)
		ret = i8042_attach(m->i8042, m->bus);
	if (!ret)
		ret = ctl_attach(m->ctl, m->bus);
	if (ret)
		log_error("cannot attach devices: %s", strerror(-ret));
	return ret;
}

/* Adds the virtio device `host` describes in the next slot. Returns 0 or
 * -errno after logging. */
static int machine_add_virtio(struct machine *m, const struct virtio_host *host)
{
	struct virtio_slot slot = {
		.vm = m->vm,
		.bus = m->bus,
		.loop = m->loop,
		.base = LAYOUT_VIRTIO_BASE + m->nvirtio * LAYOUT_VIRTIO_STRIDE,
		.irq = LAYOUT_VIRTIO_IRQ_BASE + m->nvirtio,
		.index = (uint16_t)m->nvirtio,
	};
	struct machine_virtio *d = &m->virtio[m->nvirtio];

	if (m->nvirtio >= MACHINE_MAX_VIRTIO) {
		log_error("too many virtio devices");
		return -ENOSPC;
	}
	d->transport = NULL;
	d->dev = host->ops->create(&slot, host, &d->transport);
	if (!d->dev)
		return -EINVAL;
	d->ops = host->ops;
	m->nvirtio++;
	return 0;
}

/* Returns how many of `hosts` are of kind `ops`. */
static unsigned int machine_count_kind(const struct virtio_host *hosts, unsigned int n,
				       const struct virtio_device_ops *ops)
{
	unsigned int count = 0;

	for (unsigned int i = 0; i < n; i++)
		count += hosts[i].ops == ops;
	return count;
}

/* Adds the virtio devices the configuration asks for, in its order (a
 * restore recreates them in the same slots). */
static int machine_attach_virtio(struct machine *m, const struct machine_config *cfg)
{
	int ret;

	if (cfg->ndevices > MACHINE_MAX_VIRTIO) {
		log_error("at most %d virtio devices", MACHINE_MAX_VIRTIO);
		return -EINVAL;
	}
	for (unsigned int i = 0; i < cfg->ndevices; i++) {
		const struct virtio_device_ops *ops = cfg->devices[i].ops;

		if (machine_count_kind(cfg->devices, cfg->ndevices, ops) > ops->max_count) {
			log_error("at most %u %s(s)", ops->max_count, ops->noun);
			return -EINVAL;
		}
	}
	for (unsigned int i = 0; i < cfg->ndevices; i++) {
		ret = machine_add_virtio(m, &cfg->devices[i]);
		if (ret < 0)
			return ret;
	}
	return 0;
}

/* Returns the user's command line with kiln's virtio_mmio.device= arguments
 * in front (so they stay before a " -- "), newly allocated; NULL when out
 * of memory. */
static char *machine_user_cmdline(const struct machine *m, const char *user)
{
	size_t cap = 2 + (user ? strlen(user) : 0) + m->nvirtio * 64, len = 0; /* " ", NUL */
	char *out = malloc(cap);

	if (!out)
		return NULL;
	out[0] = '\0';
	for (unsigned int i = 0; i < m->nvirtio; i++) {
		int n = virtio_mmio_cmdline_arg(m->virtio[i].transport, out + len, cap - len);

		if (n < 0) {
			free(out);
			return NULL;
		}
		len += (size_t)n;
	}
	if (user && *user)
		snprintf(out + len, cap - len, " %s", user);
	return out;
}

/* Loads the kernel and initrd and puts the boot vCPU at its entry point. */
static int machine_boot(struct machine *m, const struct machine_config *cfg)
{
	bool compat = cfg->compat && vm_host_is_nested_pvm();
	struct boot_args args;
	char *cmdline, *user;
	int ret;

	user = machine_user_cmdline(m, cfg->cmdline);
	cmdline = user ? kcmdline_build(user, compat, cfg->vcpus) : NULL;
	free(user);
	if (!cmdline) {
		log_error("out of memory");
		return -ENOMEM;
	}
	if (compat)
		log_info("nested KVM (kvm_pvm) detected: added guest kernel arguments: %s%s",
			 KCMDLINE_COMPAT, cfg->vcpus > 1 ? " " KCMDLINE_COMPAT_SMP : "");
	if (compat && cfg->vcpus > 1)
		log_warn("this host's nested KVM cannot start secondary vCPUs (no real-mode "
			 "start-up): the guest runs on its boot CPU only");
	args = (struct boot_args){
		.kernel_path = cfg->kernel,
		.initrd_path = cfg->initrd,
		.cmdline = cmdline,
		.vcpus = cfg->vcpus,
	};
	ret = boot_prepare(&m->vm->mem, &args, &m->boot);
	free(cmdline);
	return ret;
}

static uint64_t machine_host_ram(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);

	if (pages <= 0 || size <= 0)
		return UINT64_MAX;
	return (uint64_t)pages * (uint64_t)size;
}

struct machine *machine_create(const struct machine_config *cfg)
{
	struct machine *m;
	pthread_condattr_t attr;

	if (cfg->vcpus < 1 || cfg->vcpus > BOOT_MAX_VCPUS) {
		log_error("--vcpus must be between 1 and %d", BOOT_MAX_VCPUS);
		return NULL;
	}
	m = calloc(1, sizeof(*m));
	if (!m) {
		log_error("out of memory");
		return NULL;
	}
	m->console_fd = -1;
	m->stop_fd = -1;
	snap_backing_init(&m->backing);
	m->max_mem = cfg->max_mem_mib ? cfg->max_mem_mib << 20 : machine_host_ram();
	pthread_mutex_init(&m->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&m->park_cond, &attr);
	pthread_cond_init(&m->parked_cond, &attr);
	pthread_condattr_destroy(&attr);
	m->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (m->stop_fd < 0) {
		log_error("eventfd: %s", strerror(errno));
		goto out_destroy;
	}
	if (machine_open_console(m, cfg->console) < 0)
		goto out_destroy;

	m->vm = vm_create(cfg->mem_mib << 20);
	if (!m->vm)
		goto out_destroy;
	m->loop = evloop_create();
	if (!m->loop)
		goto out_destroy;

	/* Devices first: the virtio ones put arguments on the command line. A
	 * machine without a kernel gets its virtio devices from its snapshot. */
	if (machine_attach_devices(m) < 0)
		goto out_destroy;
	if (cfg->kernel && (machine_attach_virtio(m, cfg) < 0 || machine_boot(m, cfg) < 0))
		goto out_destroy;

	for (unsigned int i = 0; i < cfg->vcpus; i++) {
		m->cpus[i].m = m;
		m->cpus[i].vcpu = vcpu_create(m->vm, i, cfg->vcpus);
		if (!m->cpus[i].vcpu)
			goto out_destroy;
		m->ncpus++;
	}
	if (cfg->kernel) {
		if (vcpu_setup_boot(m->cpus[0].vcpu, &m->boot) < 0)
			goto out_destroy;
		m->state = MACHINE_RUNNING;
	} else {
		/* vCPU threads park at once until a restore. */
		m->state = MACHINE_WAITING;
		atomic_store(&m->pause_req, true);
	}
	if (cfg->api_sock) {
		m->api = api_create(cfg->api_sock, m->loop);
		if (!m->api)
			goto out_destroy;
	}
	/* Guest RAM was being registered with KVM meanwhile (vm_create). */
	if (vm_memory_ready(m->vm) < 0)
		goto out_destroy;
	return m;

out_destroy:
	machine_destroy(m);
	return NULL;
}

static void machine_tty_raw(struct machine *m)
{
	struct termios raw;

	if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &m->tty_saved) < 0)
		return;
	raw = m->tty_saved;
	cfmakeraw(&raw);
	raw.c_oflag |= OPOST | ONLCR; /* keep host-side newline translation */
	raw.c_lflag |= ISIG;	      /* Ctrl-C still stops the VMM */
	if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0)
		m->tty_raw = true;
}

static void machine_tty_restore(struct machine *m)
{
	if (m->tty_raw) {
		tcsetattr(STDIN_FILENO, TCSANOW, &m->tty_saved);
		m->tty_raw = false;
	}
}

/* ---- pause, resume, snapshot, restore (control thread) ----------------------- */

/* Milliseconds since start_ns, to the microsecond. */
static double machine_ms_since(uint64_t start_ns)
{
	return (double)((clock_mono_ns() - start_ns + 500) / 1000) / 1e3;
}

static const char *machine_state_name(enum machine_state s)
{
	switch (s) {
	case MACHINE_WAITING:
		return "waiting";
	case MACHINE_RUNNING:
		return "running";
	case MACHINE_PAUSED:
		return "paused";
	default:
		return "broken";
	}
}

/* Parks every started vCPU (see the top of this file). Returns 0, or
 * -ESHUTDOWN when the machine stops meanwhile, -ETIMEDOUT when a vCPU does
 * not park within 5 s (the pause is then undone). */
static int machine_pause_vcpus(struct machine *m)
{
	struct timespec deadline;
	unsigned int started = 0;
	int ret = 0;

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += 5;
	pthread_mutex_lock(&m->lock);
	if (atomic_load(&m->stopping)) {
		pthread_mutex_unlock(&m->lock);
		return -ESHUTDOWN;
	}
	atomic_store(&m->pause_req, true);
	for (unsigned int i = 0; i < m->ncpus; i++) {
		struct machine_cpu *c = &m->cpus[i];

		c->vcpu->run->immediate_exit = 1;
		if (c->started) {
			started++;
			pthread_kill(c->thread, MACHINE_KICK_SIGNAL);
		}
	}
	while (m->nparked < started && !atomic_load(&m->stopping) && !ret)
		ret = pthread_cond_timedwait(&m->parked_cond, &m->lock, &deadline);
	if (atomic_load(&m->stopping)) {
		ret = -ESHUTDOWN;
	} else if (ret) {
		log_error("a vCPU did not stop within 5 s; not pausing");
		atomic_store(&m->pause_req, false);
		pthread_cond_broadcast(&m->park_cond);
		ret = -ETIMEDOUT;
	}
	pthread_mutex_unlock(&m->lock);
	return ret;
}

static void machine_resume_vcpus(struct machine *m)
{
	pthread_mutex_lock(&m->lock);
	atomic_store(&m->pause_req, false);
	for (unsigned int i = 0; i < m->ncpus; i++)
		if (!m->cpus[i].started && !atomic_load(&m->stopping))
			m->cpus[i].vcpu->run->immediate_exit = 0;
	pthread_cond_broadcast(&m->park_cond);
	pthread_mutex_unlock(&m->lock);
}

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
		x->ret = -EINVAL;
		snprintf(x->why, sizeof(x->why),
			 "a diff snapshot needs a parent: restore this VM from a snapshot, or take "
			 "a full snapshot first");
		return;
	}
	/* Checked before anything in the directory is removed. */
	if (x->diff && realpath(x->dir, x->real) && strcmp(x->real, m->backing.parent_dir) == 0) {
		x->ret = -EINVAL;
		snprintf(x->why, sizeof(x->why),
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
		x->ret = -errno;
		snprintf(x->why, sizeof(x->why), "%s: %s", x->dir, strerror(errno));
		return;
	}
	ret = snap_writer_init(&w);
	if (ret < 0) {
		x->ret = ret;
		snprintf(x->why, sizeof(x->why), "out of memory");
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
		ret = snap_mem_map(mem, newfd, NULL);
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

static json_t *machine_op_snapshot(struct machine *m, json_t *req)
{
	json_t *dir = json_object_get(req, "dir"), *diff = json_object_get(req, "diff");
	struct machine_snap_ctx x = {.m = m};
	uint64_t t0 = clock_mono_ns();
	bool was_running = m->state == MACHINE_RUNNING;
	double pause_ms;
	int ret;

	if (!json_is_string(dir) || !*json_string_value(dir))
		return api_error("snapshot needs \"dir\": the snapshot directory");
	if (diff && !json_is_boolean(diff))
		return api_error("\"diff\" must be true or false");
	if (m->state != MACHINE_RUNNING && m->state != MACHINE_PAUSED)
		return api_error("cannot snapshot: the VM is %s", machine_state_name(m->state));
	x.dir = json_string_value(dir);
	x.diff = diff && json_is_true(diff);
	if (was_running) {
		ret = machine_pause_vcpus(m);
		if (ret < 0)
			return api_error("cannot pause the VM: %s", strerror(-ret));
	}
	pause_ms = machine_ms_since(t0);
	evloop_call_sync(m->loop, machine_snapshot_cb, &x);
	if (was_running && !atomic_load(&m->stopping))
		machine_resume_vcpus(m);
	if (x.ret < 0)
		return api_error("snapshot failed: %s", x.why);
	log_debug("timing: snapshot %s in %.3f ms (pause %.3f, state %.3f, memory %.3f, files "
		  "%.3f), %llu pages written",
		  x.real, machine_ms_since(t0), pause_ms, x.state_ms, x.memory_ms, x.write_ms,
		  (unsigned long long)x.st.pages_written);
	{
		char crc[9];
		json_t *r;

		snprintf(crc, sizeof(crc), "%08x", x.crc);
		r = json_pack("{s:b, s:s, s:b, s:s, s:f, s:f, s:f, s:f, s:f, s:I, s:I, s:I, s:I}",
			      "ok", 1, "dir", x.real, "diff", x.diff, "checksum", crc, "pause_ms",
			      pause_ms, "state_ms", x.state_ms, "memory_ms", x.memory_ms,
			      "write_ms", x.write_ms, "total_ms", machine_ms_since(t0),
			      "memory_pages", (json_int_t)x.st.pages_written, "memory_bytes",
			      (json_int_t)x.st.bytes_written, "memory_extents",
			      (json_int_t)x.st.extents, "state_bytes", (json_int_t)x.state_len);
		return r;
	}
}

/* ---- restore ---- */

struct machine_restore_ctx {
	struct machine *m;
	struct snap_image *img;
	const struct machine_restore_params *p;
	/* The snapshot's virtio devices, slot by slot, with their host side. */
	struct virtio_host plan[MACHINE_MAX_VIRTIO];
	unsigned int nplan;
	int ret;
	char why[512];
};

static int machine_restore_fail(struct machine_restore_ctx *x, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int machine_restore_fail(struct machine_restore_ctx *x, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(x->why, sizeof(x->why), fmt, ap);
	va_end(ap);
	x->ret = err;
	return err;
}

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
		return machine_restore_fail(x, -EINVAL,
					    "the snapshot has no %s state for virtio device %u",
					    ops->noun, slot);
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

	if (!snap_find(&x->img->file, SNAP_SEC_DEVICES, 0, &s))
		return machine_restore_fail(x, -EINVAL, "the snapshot has no device table");
	snap_rd_init(&r, &s);
	x->nplan = snap_get_u32(&r);
	if (r.err || x->nplan > MACHINE_MAX_VIRTIO || (uint64_t)x->nplan * 4 != r.len - r.off)
		return machine_restore_fail(x, -EINVAL, "malformed device table in the snapshot");
	for (unsigned int i = 0; i < x->nplan; i++) {
		uint32_t id = snap_get_u32(&r);

		ops = virtio_device_find(id);
		if (!ops)
			return machine_restore_fail(
				x, -EINVAL, "the snapshot has a virtio device of unknown kind %u",
				id);
		x->plan[i] = (struct virtio_host){.ops = ops};
	}
	/* Every kind: as many given as the snapshot has (host-backed), or none. */
	for (unsigned int k = 0; (ops = virtio_device_at(k)); k++) {
		unsigned int saved = machine_count_kind(x->plan, x->nplan, ops);
		unsigned int given = machine_count_kind(p->devices, p->ndevices, ops);

		if (!ops->host_backed && given)
			return machine_restore_fail(
				x, -EINVAL, "the %s comes from the snapshot: do not give it again",
				ops->noun);
		if (!ops->host_backed || saved == given)
			continue;
		if (saved == 0)
			return machine_restore_fail(x, -EINVAL,
						    "the snapshot has no %s, but %u given",
						    ops->noun, given);
		return machine_restore_fail(x, -EINVAL, "the snapshot has %u %s(s), %u given: %s",
					    saved, ops->noun, given, ops->restore_hint);
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
		if (machine_restore_device_section(x, i, &s, &sec) < 0)
			return x->ret;
		if (h->ops->check && h->ops->check(sec, h, sub, sizeof(sub)) < 0)
			return machine_restore_fail(x, -EINVAL, "%s", sub);
	}
	return 0;
}

/* Finds the snapshot's section `type` (instance 0) for `what`. Returns 0, or
 * -EINVAL with the reason in x->why. */
static int machine_restore_find(struct machine_restore_ctx *x, uint16_t type, const char *what,
				struct snap_section *s)
{
	if (!snap_find(&x->img->file, type, 0, s))
		return machine_restore_fail(x, -EINVAL, "the snapshot has no %s state", what);
	return 0;
}

/* On the loop thread, or with it held (evloop_run_paused), or before it runs;
 * vCPUs parked. */
static void machine_restore_cb(void *opaque, uint32_t events)
{
	struct machine_restore_ctx *x = opaque;
	struct machine *m = x->m;
	const struct snap_file *f = &x->img->file;
	struct snap_section s;
	char sub[384] = "";
	int ret;

	(void)events;
	for (unsigned int i = 0; i < x->nplan; i++) {
		ret = machine_add_virtio(m, &x->plan[i]);
		if (ret < 0) {
			machine_restore_fail(x, ret, "cannot attach virtio device %u (see the log)",
					     i);
			return;
		}
	}
	for (unsigned int i = 0; i < m->nvirtio; i++) {
		struct machine_virtio *d = &m->virtio[i];
		const struct snap_section *sec;

		if (machine_restore_device_section(x, i, &s, &sec) < 0)
			return;
		if (sec && d->ops->restore && d->ops->restore(d->dev, sec, sub, sizeof(sub)) < 0) {
			machine_restore_fail(x, -EINVAL, "virtio device %u: %s", i, sub);
			return;
		}
		if (!snap_find(f, SNAP_SEC_VIRTIO_MMIO, (uint16_t)i, &s)) {
			machine_restore_fail(x, -EINVAL,
					     "the snapshot has no state for virtio device %u", i);
			return;
		}
		if (virtio_mmio_restore(d->transport, &s, sub, sizeof(sub)) < 0) {
			machine_restore_fail(x, -EINVAL, "virtio device %u: %s", i, sub);
			return;
		}
	}
	ret = snap_image_map(x->img, &m->vm->mem, &m->backing, x->why, sizeof(x->why));
	if (ret < 0) {
		x->ret = ret;
		return;
	}
	ret = kvm_state_load_vm(m->vm, f, sub, sizeof(sub));
	for (unsigned int i = 0; i < m->ncpus && !ret; i++)
		ret = kvm_state_load_vcpu(m->cpus[i].vcpu, f, sub, sizeof(sub));
	if (ret < 0) {
		machine_restore_fail(x, ret, "%s", sub);
		return;
	}
	if (machine_restore_find(x, SNAP_SEC_SERIAL, "serial port", &s) < 0)
		return;
	ret = serial_restore(m->serial, &s, sub, sizeof(sub));
	if (!ret && machine_restore_find(x, SNAP_SEC_I8042, "i8042", &s) < 0)
		return;
	if (!ret)
		ret = i8042_restore(m->i8042, &s, sub, sizeof(sub));
	if (!ret && machine_restore_find(x, SNAP_SEC_CTL, "control page", &s) < 0)
		return;
	if (!ret)
		ret = ctl_restore(m->ctl, &s, sub, sizeof(sub));
	if (ret < 0) {
		machine_restore_fail(x, ret, "the snapshot's %s", sub);
		return;
	}
	ret = kvm_state_load_clock(m->vm, f, sub, sizeof(sub));
	if (ret < 0) {
		machine_restore_fail(x, ret, "%s", sub);
		return;
	}
	/* Each device ends what its host side could not keep (the guest's
	 * vsock connections: an RST each, docs/vsock.md), then every live
	 * queue is served once in case a notification was in flight when the
	 * snapshot was taken. */
	for (unsigned int i = 0; i < m->nvirtio; i++) {
		struct machine_virtio *d = &m->virtio[i];

		ret = d->ops->reset_after_restore ? d->ops->reset_after_restore(d->dev) : 0;
		if (ret < 0) {
			machine_restore_fail(x, ret, "virtio device %u: %s", i, strerror(-ret));
			return;
		}
	}
	for (unsigned int i = 0; i < m->nvirtio; i++)
		virtio_mmio_kick(m->virtio[i].transport);
	x->ret = 0;
}

/* Opens `console` and makes it the UART's output. */
static int machine_switch_console(struct machine *m, const char *console, char *why, size_t why_len)
{
	int old = m->console_fd;
	bool owned = m->console_owned;

	if (machine_open_console(m, console) < 0) {
		snprintf(why, why_len, "cannot open console %s: %s", console, strerror(errno));
		m->console_fd = old;
		m->console_owned = owned;
		return -EINVAL;
	}
	serial_set_output(m->serial, m->console_fd);
	if (owned && old >= 0 && old != m->console_fd)
		close(old);
	return 0;
}

static int machine_restore_image(struct machine *m, struct snap_image *img,
				 const struct machine_restore_params *p,
				 struct machine_restore_times *t, uint64_t t0, char *why,
				 size_t why_len)
{
	struct machine_restore_ctx x = {.m = m, .img = img, .p = p};
	uint64_t t1 = clock_mono_ns();

	if (img->meta.mem_size != m->vm->mem.size || img->meta.vcpus != m->ncpus) {
		snprintf(why, why_len,
			 "the snapshot needs %llu MiB and %u vCPU(s); this kiln-vmm has %llu MiB "
			 "and %u",
			 (unsigned long long)(img->meta.mem_size >> 20), img->meta.vcpus,
			 (unsigned long long)(m->vm->mem.size >> 20), m->ncpus);
		return -EINVAL;
	}
	if (machine_restore_check(&x) < 0) {
		snprintf(why, why_len, "%s", x.why);
		return x.ret;
	}
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
	machine_resume_vcpus(m);
	if (t)
		t->total_ms = machine_ms_since(t0);
	return 0;
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

/* ---- the control socket's requests ---- */

/* Adds the disks of a JSON array of "PATH[,ro|rw]" strings to p->devices;
 * the paths are copied into `store`. */
static json_t *machine_parse_disks(json_t *disks, struct machine_restore_params *p,
				   char store[][PATH_MAX])
{
	size_t i;
	json_t *d;

	if (!disks)
		return NULL;
	if (!json_is_array(disks))
		return api_error("\"disks\" must be an array of \"PATH[,ro|rw]\" strings");
	if (json_array_size(disks) > VIRTIO_BLK_MAX_DISKS)
		return api_error("at most %d disks", VIRTIO_BLK_MAX_DISKS);
	json_array_foreach(disks, i, d)
	{
		const char *s = json_string_value(d);

		if (!s || strlen(s) >= PATH_MAX)
			return api_error("\"disks\" must be an array of \"PATH[,ro|rw]\" strings");
		memcpy(store[i], s, strlen(s) + 1);
		if (virtio_blk_parse_spec(store[i], &p->devices[p->ndevices]) < 0)
			return api_error("\"disks\" must be an array of \"PATH[,ro|rw]\" strings");
		p->ndevices++;
	}
	return NULL;
}

static json_t *machine_op_restore(struct machine *m, json_t *req)
{
	char store[VIRTIO_BLK_MAX_DISKS][PATH_MAX];
	struct machine_restore_params p = {0};
	struct machine_restore_times t = {0};
	json_t *dir = json_object_get(req, "dir"), *err;
	json_t *uds = json_object_get(req, "vsock_uds"), *console = json_object_get(req, "console");
	char why[1024];

	if (!json_is_string(dir) || !*json_string_value(dir))
		return api_error("restore needs \"dir\": the snapshot directory");
	if ((uds && !json_is_string(uds)) || (console && !json_is_string(console)))
		return api_error("\"vsock_uds\" and \"console\" must be strings");
	p.dir = json_string_value(dir);
	p.console = console ? json_string_value(console) : NULL;
	err = machine_parse_disks(json_object_get(req, "disks"), &p, store);
	if (err)
		return err;
	if (uds)
		p.devices[p.ndevices++] = (struct virtio_host){.ops = &virtio_vsock_device,
							       .path = json_string_value(uds)};
	if (machine_restore(m, &p, &t, why, sizeof(why)) < 0)
		return api_error("restore failed: %s", why);
	return json_pack("{s:b, s:s, s:f, s:f, s:f}", "ok", 1, "state", "running", "load_ms",
			 t.load_ms, "apply_ms", t.apply_ms, "total_ms", t.total_ms);
}

static json_t *machine_op_state(struct machine *m)
{
	json_t *r = json_pack("{s:b, s:s, s:i, s:I, s:f, s:b}", "ok", 1, "state",
			      machine_state_name(m->state), "vcpus", (int)m->ncpus, "memory_mib",
			      (json_int_t)(m->vm->mem.size >> 20), "uptime_ms",
			      (double)(machine_uptime_ns() / 1000000), "file_backed",
			      m->backing.file_backed);

	if (r && m->restored_from[0])
		json_object_set_new(r, "restored_from", json_string(m->restored_from));
	if (r && m->backing.file_backed)
		json_object_set_new(r, "parent", json_string(m->backing.parent_dir));
	return r;
}

static json_t *machine_api_handle(void *opaque, json_t *req)
{
	struct machine *m = opaque;
	const char *op = json_string_value(json_object_get(req, "op"));
	int ret;

	if (atomic_load(&m->stopping))
		return api_error("the VM is stopping");
	if (strcmp(op, "state") == 0)
		return machine_op_state(m);
	if (strcmp(op, "pause") == 0) {
		if (m->state == MACHINE_PAUSED)
			return json_pack("{s:b, s:s}", "ok", 1, "state", "paused");
		if (m->state != MACHINE_RUNNING)
			return api_error("cannot pause: the VM is %s",
					 machine_state_name(m->state));
		ret = machine_pause_vcpus(m);
		if (ret < 0)
			return api_error("cannot pause the VM: %s", strerror(-ret));
		m->state = MACHINE_PAUSED;
		return json_pack("{s:b, s:s}", "ok", 1, "state", "paused");
	}
	if (strcmp(op, "resume") == 0) {
		if (m->state == MACHINE_RUNNING)
			return json_pack("{s:b, s:s}", "ok", 1, "state", "running");
		if (m->state != MACHINE_PAUSED)
			return api_error("cannot resume: the VM is %s",
					 machine_state_name(m->state));
		machine_resume_vcpus(m);
		m->state = MACHINE_RUNNING;
		return json_pack("{s:b, s:s}", "ok", 1, "state", "running");
	}
	if (strcmp(op, "snapshot") == 0)
		return machine_op_snapshot(m, req);
	if (strcmp(op, "restore") == 0)
		return machine_op_restore(m, req);
	if (strcmp(op, "stop") == 0) {
		machine_stop(m, 0);
		return json_pack("{s:b, s:s}", "ok", 1, "state", "stopping");
	}
	return api_error("unknown op '%s' (pause, resume, state, snapshot, restore, stop)", op);
}

/* The main thread: waits for the stop event, a terminating signal, or input.
 * Input the UART cannot take yet is kept and offered again every 10 ms
 * instead of reading more, so nothing typed or piped in is lost. */
static void machine_wait(struct machine *m, int sig_fd)
{
	bool input = m->stdin_input;
	uint8_t pending[256];
	size_t pending_len = 0, pending_off = 0;

	while (!atomic_load(&m->stopping)) {
		bool want_input = input && pending_len == 0;
		struct pollfd fds[4] = {
			{.fd = m->stop_fd, .events = POLLIN},
			{.fd = sig_fd, .events = POLLIN},
			{.fd = want_input ? STDIN_FILENO : -1, .events = POLLIN},
			{.fd = m->api ? api_wakeup_fd(m->api) : -1, .events = POLLIN},
		};
		int n = poll(fds, 4, pending_len ? 10 : -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_error("poll: %s", strerror(errno));
			machine_stop(m, 1);
			break;
		}
		if (fds[1].revents & POLLIN) {
			struct signalfd_siginfo si;

			if (read(sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
				log_info("got signal %u; stopping the guest", si.ssi_signo);
				machine_stop(m, 128 + (int)si.ssi_signo);
			}
		}
		if (fds[2].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t r = read(STDIN_FILENO, pending, sizeof(pending));

			if (r > 0) {
				pending_len = (size_t)r;
				pending_off = 0;
			} else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
				input = false; /* EOF: stop watching stdin */
			}
		}
		if (pending_len) {
			size_t took = serial_input(m->serial, pending + pending_off, pending_len);

			pending_off += took;
			pending_len -= took;
		}
		if (fds[3].revents & POLLIN)
			api_dispatch(m->api, machine_api_handle, m);
	}
}

int machine_run(struct machine *m)
{
	struct sigaction sa;
	sigset_t term, kick;
	int sig_fd, status;

	/* A console reader that went away must not kill the VMM: writes fail with EPIPE. */
	signal(SIGPIPE, SIG_IGN);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = machine_kick_handler; /* no SA_RESTART: KVM_RUN returns EINTR */
	sigaction(MACHINE_KICK_SIGNAL, &sa, NULL);

	/* The main thread takes terminating signals through a signalfd; vCPU
	 * threads inherit a mask that blocks them and the kick signal, then
	 * unblock only the kick. */
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	sigaddset(&term, SIGINT);
	sigaddset(&term, SIGHUP);
	sigaddset(&term, SIGQUIT);
	kick = term;
	sigaddset(&kick, MACHINE_KICK_SIGNAL);
	pthread_sigmask(SIG_BLOCK, &kick, NULL);
	sig_fd = signalfd(-1, &term, SFD_CLOEXEC);
	if (sig_fd < 0) {
		log_error("signalfd: %s", strerror(errno));
		return 1;
	}
	/* The I/O thread runs before any vCPU can notify a queue. */
	if (evloop_start(m->loop) < 0) {
		close(sig_fd);
		return 1;
	}

	for (unsigned int i = 0; i < m->ncpus; i++) {
		struct machine_cpu *c = &m->cpus[i];
		int ret = pthread_create(&c->thread, NULL, machine_cpu_thread, c);

		if (ret) {
			log_error("cannot start vCPU thread %u: %s", i, strerror(ret));
			machine_stop(m, 1);
			break;
		}
		pthread_mutex_lock(&m->lock);
		c->started = true;
		if (atomic_load(&m->stopping))
			pthread_kill(c->thread, MACHINE_KICK_SIGNAL);
		pthread_mutex_unlock(&m->lock);
	}
	if (m->stdin_input)
		machine_tty_raw(m);
	machine_wait(m, sig_fd);
	for (unsigned int i = 0; i < m->ncpus; i++) {
		if (m->cpus[i].started) {
			pthread_join(m->cpus[i].thread, NULL);
			m->cpus[i].started = false;
		}
	}
	machine_tty_restore(m);
	close(sig_fd);
	pthread_mutex_lock(&m->lock);
	status = m->status;
	pthread_mutex_unlock(&m->lock);
	return status;
}

void machine_destroy(struct machine *m)
{
	if (!m)
		return;
	if (m->ncpus && !atomic_load(&m->stopping) && m->stop_fd >= 0)
		machine_stop(m, 1);
	for (unsigned int i = 0; i < m->ncpus; i++) {
		if (m->cpus[i].started)
			pthread_join(m->cpus[i].thread, NULL);
		vcpu_destroy(m->cpus[i].vcpu);
	}
	machine_tty_restore(m);
	/* vCPUs are gone; the loop still runs so the control socket and each
	 * transport can take their fds off it, then it stops. */
	api_destroy(m->api);
	for (unsigned int i = m->nvirtio; i-- > 0;)
		m->virtio[i].ops->destroy(m->virtio[i].dev);
	evloop_destroy(m->loop);
	serial_destroy(m->serial);
	i8042_destroy(m->i8042);
	ctl_destroy(m->ctl);
	iobus_destroy(m->bus);
	vm_destroy(m->vm);
	if (m->console_owned)
		close(m->console_fd);
	if (m->stop_fd >= 0)
		close(m->stop_fd);
	snap_backing_release(&m->backing);
	pthread_cond_destroy(&m->park_cond);
	pthread_cond_destroy(&m->parked_cond);
	pthread_mutex_destroy(&m->lock);
	free(m);
}
