/* machine_api.c - the machine's control socket: JSON requests (pause,
 * resume, state, snapshot, restore, stop; docs/control-api.md) turned into
 * calls of machine.h, and their answers. jansson stays in this file and
 * api.c; the rest of the machine knows nothing of JSON.
 */
#include "vmm/machine_internal.h"

#include "vmm/api.h"
#include "common/log.h"
#include "vmm/kvmstats.h"
#include "vmm/vcpu.h"
#include "vmm/virtio/blk.h"
#include "vmm/virtio/net.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

static json_t *machine_op_snapshot(struct machine *m, json_t *req)
{
	json_t *dir = json_object_get(req, "dir"), *diff = json_object_get(req, "diff");
	struct machine_snapshot_result res;
	char why[1024], crc[9];

	if (!json_is_string(dir) || !*json_string_value(dir))
		return api_error("snapshot needs \"dir\": the snapshot directory");
	if (diff && !json_is_boolean(diff))
		return api_error("\"diff\" must be true or false");
	if (machine_snapshot(m, json_string_value(dir), diff && json_is_true(diff), &res, why,
			     sizeof(why)) < 0)
		return api_error("%s", why);
	snprintf(crc, sizeof(crc), "%08x", res.crc);
	return json_pack("{s:b, s:s, s:b, s:s, s:f, s:f, s:f, s:f, s:f, s:I, s:I, s:I, s:I}", "ok",
			 1, "dir", res.dir, "diff", diff && json_is_true(diff), "checksum", crc,
			 "pause_ms", res.pause_ms, "state_ms", res.state_ms, "memory_ms",
			 res.memory_ms, "write_ms", res.write_ms, "total_ms", res.total_ms,
			 "memory_pages", (json_int_t)res.memory_pages, "memory_bytes",
			 (json_int_t)res.memory_bytes, "memory_extents",
			 (json_int_t)res.memory_extents, "state_bytes",
			 (json_int_t)res.state_bytes);
}

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

static void machine_api_run_restored(void *opaque)
{
	machine_run_restored(opaque);
}

static json_t *machine_op_restore(struct machine *m, json_t *req)
{
	char store[VIRTIO_BLK_MAX_DISKS][PATH_MAX];
	struct machine_restore_params p = {0};
	struct machine_restore_times t = {0};
	json_t *dir = json_object_get(req, "dir"), *err;
	json_t *uds = json_object_get(req, "vsock_uds"), *console = json_object_get(req, "console");
	json_t *net = json_object_get(req, "net"), *ws = json_object_get(req, "working_set");
	json_t *cms = json_object_get(req, "vsock_connect_ms");
	char why[1024], netspec[128];
	json_t *r;

	if (!json_is_string(dir) || !*json_string_value(dir))
		return api_error("restore needs \"dir\": the snapshot directory");
	if ((uds && !json_is_string(uds)) || (console && !json_is_string(console)))
		return api_error("\"vsock_uds\" and \"console\" must be strings");
	if (ws && !json_is_string(ws))
		return api_error("\"working_set\" must be a string: a working-set file");
	p.dir = json_string_value(dir);
	p.console = console ? json_string_value(console) : NULL;
	p.working_set = ws ? json_string_value(ws) : NULL;
	err = machine_parse_disks(json_object_get(req, "disks"), &p, store);
	if (err)
		return err;
	if (cms && (!json_is_integer(cms) || json_integer_value(cms) < 1 ||
		    json_integer_value(cms) > 600000))
		return api_error("\"vsock_connect_ms\" must be an integer from 1 to 600000");
	if (uds)
		p.devices[p.ndevices++] = (struct virtio_host){
			.ops = &virtio_vsock_device,
			.path = json_string_value(uds),
			.connect_ms = cms ? (unsigned int)json_integer_value(cms) : 0};
	if (net) {
		if (!json_is_string(net) || json_string_length(net) >= sizeof(netspec))
			return api_error("\"net\" must be a string: none, tap=NAME or tap-fd=N");
		memcpy(netspec, json_string_value(net), json_string_length(net) + 1);
		if (virtio_net_parse_spec(netspec, &p.devices[p.ndevices], why, sizeof(why)) < 0)
			return api_error("\"net\": %s", why);
		p.ndevices++;
	}
	/* The vCPUs run once the reply is written (machine_run_restored). */
	p.run_later = true;
	if (machine_restore(m, &p, &t, why, sizeof(why)) < 0)
		return api_error("restore failed: %s", why);
	api_after_reply(m->api, machine_api_run_restored, m);
	r = json_pack("{s:b, s:s, s:f, s:f, s:f}", "ok", 1, "state", "running", "load_ms",
		      t.load_ms, "apply_ms", t.apply_ms, "total_ms", t.total_ms);
	if (r && ws)
		json_object_set_new(r, "prefetch",
				    t.prefetch_skipped[0]
					    ? json_pack("{s:s}", "skipped", t.prefetch_skipped)
					    : json_pack("{s:I, s:f}", "pages",
							(json_int_t)t.prefetch_pages, "ms",
							t.prefetch_ms));
	return r;
}

/* {"op":"working-set","path":P}: the pages touched since the restore, as
 * the snapshot's working set (machine_working_set_save). */
static json_t *machine_op_working_set(struct machine *m, json_t *req)
{
	const char *path = json_string_value(json_object_get(req, "path"));
	uint64_t pages = 0;
	size_t runs = 0;
	char why[512];

	if (!path || !*path)
		return api_error("working-set needs \"path\": the file to write");
	if (machine_working_set_save(m, path, &pages, &runs, why, sizeof(why)) < 0)
		return api_error("working-set failed: %s", why);
	return json_pack("{s:b, s:I, s:I}", "ok", 1, "pages", (json_int_t)pages, "runs",
			 (json_int_t)runs);
}

static json_t *machine_op_state(struct machine *m)
{
	struct machine_info info;
	json_t *r;

	machine_get_info(m, &info);
	r = json_pack("{s:b, s:s, s:i, s:I, s:f, s:b}", "ok", 1, "state", info.state, "vcpus",
		      (int)info.vcpus, "memory_mib", (json_int_t)info.memory_mib, "uptime_ms",
		      (double)info.uptime_ms, "file_backed", info.file_backed);
	if (r && info.restored_from)
		json_object_set_new(r, "restored_from", json_string(info.restored_from));
	if (r && info.parent)
		json_object_set_new(r, "parent", json_string(info.parent));
	return r;
}

/* Adds value to obj[name] (a sum over vCPUs). */
static void machine_stats_add(void *opaque, const char *name, uint64_t value)
{
	json_t *obj = opaque;
	json_t *old = json_object_get(obj, name);
	json_int_t sum = (json_int_t)value + (old ? json_integer_value(old) : 0);

	json_object_set_new(obj, name, json_integer(sum));
}

/* {"op":"profile","hz":N}: starts sampling where the vCPUs are, N times a
 * second (profile.h), dropping earlier samples; {"op":"profile","stop":true}
 * stops and answers the samples: "user" counts those in guest user space
 * (addresses are per process there), "kernel" lists [address, count] pairs
 * of guest kernel addresses, most frequent first (a script maps them to
 * functions with the kernel's System.map). */
static json_t *machine_op_profile(struct machine *m, json_t *req)
{
	json_t *hz = json_object_get(req, "hz"), *stop = json_object_get(req, "stop");
	struct profile_hit *hits;
	size_t nhits;
	uint64_t total, dropped, user = 0;
	json_t *r, *kernel;
	int err;

	if (hz && !stop) {
		if (!json_is_integer(hz) || json_integer_value(hz) < 1 ||
		    json_integer_value(hz) > PROFILE_MAX_HZ)
			return api_error("'hz' must be an integer from 1 to %d", PROFILE_MAX_HZ);
		err = profile_start(&m->prof, (unsigned int)json_integer_value(hz));
		if (err < 0)
			return api_error("cannot start the profile: %s", strerror(-err));
		return json_pack("{s:b, s:b, s:I}", "ok", 1, "profiling", 1, "hz",
				 (json_int_t)json_integer_value(hz));
	}
	if (!json_is_true(stop) || hz)
		return api_error("profile takes 'hz' (start) or 'stop': true");
	profile_stop(&m->prof);
	err = profile_collect(&m->prof, &hits, &nhits, &total, &dropped);
	if (err < 0)
		return api_error("cannot collect the profile: %s", strerror(-err));
	r = json_pack("{s:b, s:I, s:I, s:I, s:[]}", "ok", 1, "hz", (json_int_t)m->prof.hz,
		      "samples", (json_int_t)total, "dropped", (json_int_t)dropped, "kernel");
	kernel = r ? json_object_get(r, "kernel") : NULL;
	for (size_t i = 0; kernel && i < nhits; i++) {
		char addr[24];

		if (hits[i].rip < 0xffff800000000000ULL) {
			user += hits[i].count;
			continue;
		}
		snprintf(addr, sizeof(addr), "%#llx", (unsigned long long)hits[i].rip);
		json_array_append_new(kernel, json_pack("[s, I]", addr, (json_int_t)hits[i].count));
	}
	free(hits);
	if (r)
		json_object_set_new(r, "user", json_integer((json_int_t)user));
	return r;
}

/* {"op":"stats"}: exits returned to kiln-vmm by kind and KVM's own
 * cumulative counters (all vCPUs summed; "kvm" is absent when KVM has no
 * binary statistics). Counters only grow: callers take differences. */
static json_t *machine_op_stats(struct machine *m)
{
	json_t *r = json_pack("{s:b, s:i, s:{}, s:{}}", "ok", 1, "vcpus", (int)m->ncpus, "exits",
			      "kvm");
	json_t *exits, *kvm;
	int err = 0;

	if (!r)
		return NULL;
	exits = json_object_get(r, "exits");
	kvm = json_object_get(r, "kvm");
	for (unsigned int k = 0; k < VCPU_EXIT_KINDS; k++) {
		uint64_t sum = 0;

		for (unsigned int i = 0; i < m->ncpus; i++)
			sum += atomic_load_explicit(&m->cpus[i].vcpu->exits[k],
						    memory_order_relaxed);
		json_object_set_new(exits, vcpu_exit_name(k), json_integer((json_int_t)sum));
	}
	/* Reads the fds opened at vCPU creation: no ioctl on a running vCPU. */
	for (unsigned int i = 0; i < m->ncpus && !err; i++)
		err = kvmstats_read(m->cpus[i].vcpu->stats_fd, machine_stats_add, kvm);
	if (err) {
		log_debug("KVM statistics: %s", strerror(-err));
		json_object_del(r, "kvm");
	}
	return r;
}

static json_t *machine_api_handle(void *opaque, json_t *req)
{
	struct machine *m = opaque;
	const char *op = json_string_value(json_object_get(req, "op"));
	char why[256];

	machine_run_restored(m); /* normally done after the restore's reply */
	if (atomic_load(&m->stopping))
		return api_error("the VM is stopping");
	if (strcmp(op, "state") == 0)
		return machine_op_state(m);
	if (strcmp(op, "stats") == 0)
		return machine_op_stats(m);
	if (strcmp(op, "pause") == 0) {
		if (machine_pause(m, why, sizeof(why)) < 0)
			return api_error("%s", why);
		return json_pack("{s:b, s:s}", "ok", 1, "state", "paused");
	}
	if (strcmp(op, "resume") == 0) {
		if (machine_resume(m, why, sizeof(why)) < 0)
			return api_error("%s", why);
		return json_pack("{s:b, s:s}", "ok", 1, "state", "running");
	}
	if (strcmp(op, "snapshot") == 0)
		return machine_op_snapshot(m, req);
	if (strcmp(op, "restore") == 0)
		return machine_op_restore(m, req);
	if (strcmp(op, "working-set") == 0)
		return machine_op_working_set(m, req);
	if (strcmp(op, "profile") == 0)
		return machine_op_profile(m, req);
	if (strcmp(op, "stop") == 0) {
		machine_request_stop(m);
		return json_pack("{s:b, s:s}", "ok", 1, "state", "stopping");
	}
	return api_error("unknown op '%s' (pause, resume, state, stats, snapshot, restore, "
			 "working-set, profile, stop)",
			 op);
}

int machine_api_open(struct machine *m, const char *path)
{
	m->api = api_create(path, m->loop);
	return m->api ? 0 : -1;
}

int machine_api_fd(const struct machine *m)
{
	return m->api ? api_wakeup_fd(m->api) : -1;
}

void machine_api_serve(struct machine *m)
{
	api_dispatch(m->api, machine_api_handle, m);
}

void machine_api_close(struct machine *m)
{
	api_destroy(m->api);
	m->api = NULL;
}
