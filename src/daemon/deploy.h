/* deploy.h - kilnd's deploy pipeline (SnapFaaS's lifecycle):
 *
 *   1. the runtime's base snapshot, built once per (kernel, root image,
 *      kiln-vmm, memory, vCPUs) by booting a microVM until kiln-init is
 *      ready, cached under KILN_CACHE/base/<key>/ (stage "base-snapshot");
 *   2. a new kiln-vmm restores the base, the agent gets ENTROPY, TIME and
 *      LOAD with the code, the runtime imports the handler ("loading");
 *   3. a diff snapshot of that VM goes into the snapshot store
 *      ("snapshotting"), the version is marked ready in the registry and
 *      handed to the scheduler.
 *
 * Each deploy runs on its own thread, so deploys of different functions run
 * concurrently; the base snapshot is built by one of them while the others
 * wait for it (a lock file in the cache, which also serialises several
 * kilnd processes).
 */
#ifndef KILN_DAEMON_DEPLOY_H
#define KILN_DAEMON_DEPLOY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/spec.h"

struct deployer;
struct registry;
struct store;
struct sched;
struct metrics;

struct deploy_config {
	const char *vmm;
	const char *kernel;
	const char *rootfs;
	const char *cache_dir; /* KILN_CACHE */
	const char *run_dir;
	struct registry *registry;
	struct store *store;
	struct sched *sched;
	struct metrics *metrics;
};

/* A finished deploy, told to the waiter given to deployer_start (on the
 * deploy's thread). ok: the version is ready; else stage is the one it
 * failed in ("loading", ...) and error/log say why. */
typedef void (*deploy_done_fn)(void *opaque, int ok, const char *stage, const char *error,
			       const char *log);

/* Creates the deployer. Returns 0 and *out, or -errno. */
int deployer_create(const struct deploy_config *cfg, struct deployer **out);

/* Stops every deploy, for kilnd's shutdown: no VM starts from now on, the
 * VMs of running deploys are killed, and their waiters are answered now as
 * failures in their current stage with the message why (suspended HTTP
 * requests must be resumed before the server stops). Each deploy then ends
 * as failed ("kilnd stopped during the deploy") in the registry, which must
 * stay open until this returns. Waits up to timeout_ms for their threads.
 * Returns 0, or -ETIMEDOUT when some are still running (the registry, store
 * and scheduler must then be left open). Accepts NULL. */
int deployer_cancel(struct deployer *d, const char *why, int timeout_ms);

/* Frees the deployer after deployer_cancel; does nothing while a deploy
 * thread still runs (it keeps the deployer). Accepts NULL. */
void deployer_destroy(struct deployer *d);

/* Starts deploying `version` of spec->name with the KLNA archive
 * (archive/len copied) on a new thread. reuse_snapshot, when not NULL, is
 * the snapshot id of an earlier version with the same image: it is reused
 * and nothing boots or loads. done (may be NULL) is called once at the end.
 * Returns 0 or -errno. */
int deployer_start(struct deployer *d, const struct fn_spec *spec, int64_t version,
		   const void *archive, size_t len, const char *reuse_snapshot, deploy_done_fn done,
		   void *opaque);

/* The most recent deploy of a function as a new JSON object
 * ({"version","stage","failed_stage","started_at","elapsed_ms","error",
 * "log"}; failed_stage: the stage a failed deploy stopped in), or NULL
 * when none ran since kilnd started. */
json_t *deployer_status(struct deployer *d, const char *name);

/* Forgets a removed function's deploy status. */
void deployer_forget(struct deployer *d, const char *name);

#endif
