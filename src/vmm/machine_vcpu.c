/* machine_vcpu.c - the machine's vCPU threads, how they stop, and pausing.
 *
 * Each vCPU thread loops on KVM_RUN; port and MMIO exits are handled by the
 * devices in that thread. Stopping (machine_stop) sets immediate_exit in
 * every vCPU's kvm_run and kicks each thread with MACHINE_KICK_SIGNAL so
 * that KVM_RUN returns at once.
 *
 * Pausing: the control thread sets `pause_req`, sets every vCPU's
 * immediate_exit and kicks it with a signal; each vCPU thread, back from
 * KVM_RUN, completes any pending port/MMIO exit (vcpu_complete_io: no guest
 * instruction runs) and parks on `park_cond`. The control thread waits on
 * `parked_cond` until all are parked. See docs/snapshots.md.
 */
#include "vmm/machine_internal.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/reason.h"
#include "vmm/seccomp.h"
#include "vmm/vcpu.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void machine_stop(struct machine *m, int status)
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

	/* Before the first KVM_RUN, and before a restore can reach it. */
	if (vmm_seccomp_install(VMM_SECCOMP_VCPU, c->name) < 0) {
		machine_stop(m, 1);
		return NULL;
	}
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
		if (r == -EINTR && atomic_load_explicit(&m->prof.on, memory_order_relaxed)) {
			uint64_t rip;

			if (vcpu_get_rip(c->vcpu, &rip) == 0)
				profile_record(&m->prof, rip);
		}
		if (r == 0 || r == -EINTR)
			continue;
		machine_cpu_stopped(m, r);
	}
	return NULL;
}

void machine_kick_vcpus(struct machine *m)
{
	pthread_mutex_lock(&m->lock);
	for (unsigned int i = 0; i < m->ncpus; i++)
		if (m->cpus[i].started)
			pthread_kill(m->cpus[i].thread, MACHINE_KICK_SIGNAL);
	pthread_mutex_unlock(&m->lock);
}

static void machine_kick_handler(int sig)
{
	(void)sig;
}

void machine_vcpu_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = machine_kick_handler; /* no SA_RESTART: KVM_RUN returns EINTR */
	sigaction(MACHINE_KICK_SIGNAL, &sa, NULL);
}

void machine_start_vcpus(struct machine *m)
{
	for (unsigned int i = 0; i < m->ncpus; i++) {
		struct machine_cpu *c = &m->cpus[i];
		int ret;

		snprintf(c->name, sizeof(c->name), "kiln-vcpu%u", i % 1000u); /* i < 32 */
		ret = pthread_create(&c->thread, NULL, machine_cpu_thread, c);

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
}

void machine_join_vcpus(struct machine *m)
{
	for (unsigned int i = 0; i < m->ncpus; i++) {
		if (m->cpus[i].started) {
			pthread_join(m->cpus[i].thread, NULL);
			m->cpus[i].started = false;
		}
	}
}

int machine_pause_vcpus(struct machine *m)
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

void machine_resume_vcpus(struct machine *m)
{
	pthread_mutex_lock(&m->lock);
	atomic_store(&m->pause_req, false);
	for (unsigned int i = 0; i < m->ncpus; i++)
		if (!m->cpus[i].started && !atomic_load(&m->stopping))
			m->cpus[i].vcpu->run->immediate_exit = 0;
	pthread_cond_broadcast(&m->park_cond);
	pthread_mutex_unlock(&m->lock);
}

int machine_pause(struct machine *m, char *why, size_t why_len)
{
	int ret;

	if (m->state == MACHINE_PAUSED)
		return 0;
	if (m->state != MACHINE_RUNNING)
		return reason_fail(why, why_len, -EBUSY, "cannot pause: the VM is %s",
				   machine_state_name(m->state));
	ret = machine_pause_vcpus(m);
	if (ret < 0)
		return reason_fail(why, why_len, ret, "cannot pause the VM: %s", strerror(-ret));
	m->state = MACHINE_PAUSED;
	return 0;
}

int machine_resume(struct machine *m, char *why, size_t why_len)
{
	if (m->state == MACHINE_RUNNING)
		return 0;
	if (m->state != MACHINE_PAUSED)
		return reason_fail(why, why_len, -EBUSY, "cannot resume: the VM is %s",
				   machine_state_name(m->state));
	machine_resume_vcpus(m);
	m->state = MACHINE_RUNNING;
	return 0;
}

void machine_request_stop(struct machine *m)
{
	machine_stop(m, 0);
}
