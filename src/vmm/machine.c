/* machine.c - a whole microVM: creates the VM, wires its devices (the
 * legacy ones and the virtio devices, through their ops: virtio/device.h),
 * boots the kernel, runs the main thread's loop and tears everything down.
 *
 * The rest of the machine is split along its seams, sharing
 * machine_internal.h: machine_vcpu.c (vCPU threads, stopping, pausing),
 * machine_snapshot.c (snapshot and restore), machine_console.c (console
 * output, the terminal, standard input) and machine_api.c (the control
 * socket, the only place that knows JSON).
 */
#include "vmm/machine_internal.h"

#include "common/clock.h"
#include "common/log.h"
#include "vmm/boot/boot.h"
#include "vmm/devices/ctl.h"
#include "vmm/devices/i8042.h"
#include "vmm/devices/serial.h"
#include "vmm/evloop.h"
#include "vmm/iobus.h"
#include "vmm/kcmdline.h"
#include "vmm/layout.h"
#include "vmm/seccomp.h"
#include "vmm/snapshot/kvm_state.h"
#include "vmm/vcpu.h"
#include "vmm/virtio/mmio.h"
#include "vmm/virtio/vsock.h"
#include "vmm/vm.h"
#include "common/unixsock.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

static uint64_t machine_start_ns;

void machine_mark_start(void)
{
	machine_start_ns = clock_mono_ns();
}

uint64_t machine_uptime_ns(void)
{
	return clock_mono_ns() - machine_start_ns;
}

double machine_ms_since(uint64_t start_ns)
{
	return (double)((clock_mono_ns() - start_ns + 500) / 1000) / 1e3;
}

const char *machine_state_name(enum machine_state s)
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

int machine_add_virtio(struct machine *m, const struct virtio_host *host)
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

unsigned int machine_count_kind(const struct virtio_host *hosts, unsigned int n,
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

/* The slots a pre-started machine readies interrupts and notification
 * eventfds for: kilnd's VMs have a disk, vsock and a network device. */
#define MACHINE_PREPARED_SLOTS 3

/* A pre-started machine makes the eventfds its restore's devices will need
 * now (vm_prepare_eventfds): an irqfd for each of the first slots' GSIs
 * and a notification eventfd for each of their queues. */
static void machine_prepare_wiring(struct machine *m)
{
	const struct virtio_device_ops *ops;
	unsigned int maxq = 0;
	int ret;

	for (unsigned int k = 0; (ops = virtio_device_at(k)); k++)
		if (ops->num_queues > maxq)
			maxq = ops->num_queues;
	ret = vm_prepare_eventfds(m->vm, LAYOUT_VIRTIO_IRQ_BASE, MACHINE_PREPARED_SLOTS,
				  MACHINE_PREPARED_SLOTS * maxq);
	if (ret < 0)
		log_debug("eventfds for the restore not made ahead: %s", strerror(-ret));
}

/* A pre-started machine binds the vsock socket it was given now, so that a
 * restore need not (socket, bind, listen and rename cost ~0.1 ms here);
 * machine_restore hands it to the snapshot's vsock device. */
static int machine_stage_vsock(struct machine *m, const struct machine_config *cfg)
{
	struct virtio_host *h = &m->staged_vsock;
	ino_t ino;
	int fd;

	for (unsigned int i = 0; i < cfg->ndevices; i++) {
		const struct virtio_host *d = &cfg->devices[i];

		if (d->ops != &virtio_vsock_device || h->has_listener) {
			log_error("a pre-started kiln-vmm is given its %s with the restore",
				  d->ops->noun);
			return -EINVAL;
		}
		if (strlen(d->path) >= sizeof(m->staged_vsock_path)) {
			log_error("the vsock socket path is too long");
			return -ENAMETOOLONG;
		}
		fd = unixsock_listen(d->path, "virtio-vsock", VSOCK_LISTEN_BACKLOG, &ino);
		if (fd < 0)
			return fd;
		memcpy(m->staged_vsock_path, d->path, strlen(d->path) + 1);
		*h = *d;
		h->path = m->staged_vsock_path;
		h->has_listener = true;
		h->listener = fd;
		h->listener_ino = ino;
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
	bool compat = cfg->compat && (cfg->compat_host || vm_host_is_nested_pvm());
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
	m->prof.timer_fd = -1;
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

	m->vm = vm_create(cfg->mem_mib << 20, cfg->kvm_fd > 2 ? cfg->kvm_fd : -1, !cfg->kernel);
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
	if (cfg->prestart) {
		if (machine_stage_vsock(m, cfg) < 0)
			goto out_destroy;
		machine_prepare_wiring(m);
	}

	for (unsigned int i = 0; i < cfg->vcpus; i++) {
		m->cpus[i].m = m;
		m->cpus[i].vcpu = vcpu_create(m->vm, i, cfg->vcpus);
		if (!m->cpus[i].vcpu)
			goto out_destroy;
		m->ncpus++;
		/* A restore writes only the MSRs that differ from these. */
		if (cfg->prestart && kvm_state_note_reset(m->cpus[i].vcpu) < 0)
			log_debug("vCPU %u: its MSRs as created not read; a restore writes all", i);
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
		if (machine_api_open(m, cfg->api_sock) < 0)
			goto out_destroy;
		/* The profile op's samples and timer (profile.h). */
		int err = profile_init(&m->prof);

		if (err < 0) {
			log_error("cannot set up the guest profiler: %s", strerror(-err));
			goto out_destroy;
		}
	}
	/* Guest RAM was being registered with KVM meanwhile (vm_create). */
	if (vm_memory_ready(m->vm) < 0)
		goto out_destroy;
	return m;

out_destroy:
	machine_destroy(m);
	return NULL;
}

void machine_get_info(const struct machine *m, struct machine_info *info)
{
	*info = (struct machine_info){
		.state = machine_state_name(m->state),
		.vcpus = m->ncpus,
		.memory_mib = m->vm->mem.size >> 20,
		.uptime_ms = machine_uptime_ns() / 1000000,
		.file_backed = m->backing.file_backed,
		.parent = m->backing.file_backed ? m->backing.parent_dir : NULL,
		.restored_from = m->restored_from[0] ? m->restored_from : NULL,
	};
}

/* The main thread: waits for the stop event, a terminating signal, console
 * input (machine_console.c) or control requests (machine_api.c). */
static void machine_wait(struct machine *m, int sig_fd)
{
	while (!atomic_load(&m->stopping)) {
		struct pollfd fds[5] = {
			{.fd = m->stop_fd, .events = POLLIN},
			{.fd = sig_fd, .events = POLLIN},
			{.fd = machine_console_fd(m), .events = POLLIN},
			{.fd = machine_api_fd(m), .events = POLLIN},
			{.fd = profile_fd(&m->prof), .events = POLLIN},
		};
		int n = poll(fds, 5, machine_console_pending(m) ? 10 : -1);

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
		if (fds[2].revents & (POLLIN | POLLHUP | POLLERR))
			machine_console_read(m);
		else
			machine_console_feed(m);
		if (fds[3].revents & POLLIN)
			machine_api_serve(m);
		if ((fds[4].revents & POLLIN) && profile_tick(&m->prof))
			machine_kick_vcpus(m);
	}
}

/* On the I/O thread, before any vCPU runs (so before any guest-driven I/O):
 * its filter. */
static void machine_io_seccomp(void *opaque, uint32_t events)
{
	(void)events;
	*(int *)opaque = vmm_seccomp_install(VMM_SECCOMP_IO, "kiln-io");
}

int machine_run(struct machine *m)
{
	int io_filter = 0;
	sigset_t term, kick;
	int sig_fd, status;

	/* A console reader that went away must not kill the VMM: writes fail with EPIPE. */
	signal(SIGPIPE, SIG_IGN);
	machine_vcpu_signals();

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
	/* Each thread installs its own seccomp filter once set up (vCPUs at the
	 * top of their threads); the main thread's last, when no thread is
	 * left to create. */
	evloop_call_sync(m->loop, machine_io_seccomp, &io_filter);
	if (io_filter < 0)
		machine_stop(m, 1);
	else
		machine_start_vcpus(m);
	if (m->stdin_input)
		machine_tty_raw(m);
	if (vmm_seccomp_install(VMM_SECCOMP_MAIN, "main") < 0)
		machine_stop(m, 1);
	machine_wait(m, sig_fd);
	machine_join_vcpus(m);
	machine_tty_restore(m);
	close(sig_fd);
	pthread_mutex_lock(&m->lock);
	status = m->status;
	pthread_mutex_unlock(&m->lock);
	return status;
}

static void machine_nothing(void *opaque, uint32_t events)
{
	(void)opaque;
	(void)events;
}

void machine_destroy(struct machine *m)
{
	if (!m)
		return;
	if (m->ncpus && !atomic_load(&m->stopping) && m->stop_fd >= 0)
		machine_stop(m, 1);
	machine_join_vcpus(m);
	for (unsigned int i = 0; i < m->ncpus; i++)
		vcpu_destroy(m->cpus[i].vcpu);
	machine_tty_restore(m);
	/* vCPUs are gone; the loop still runs so the control socket and each
	 * transport can take their fds off it, then it stops. */
	machine_api_close(m);
	/* Calls queued for the loop (a restore's kick) have run: FIFO. */
	if (m->loop)
		evloop_call_sync(m->loop, machine_nothing, NULL);
	for (unsigned int i = m->nvirtio; i-- > 0;)
		m->virtio[i].ops->destroy(m->virtio[i].dev);
	if (m->staged_vsock.has_listener)
		unixsock_close_own(m->staged_vsock.listener, m->staged_vsock.path,
				   m->staged_vsock.listener_ino);
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
	profile_fini(&m->prof);
	snap_backing_release(&m->backing);
	pthread_cond_destroy(&m->park_cond);
	pthread_cond_destroy(&m->parked_cond);
	pthread_mutex_destroy(&m->lock);
	free(m);
}
