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

/* Answers every waiter of an unfinished deploy now, as a failure in its
 * current stage with the message why (kilnd is stopping: suspended HTTP
 * requests must be resumed before the server stops); the deploys go on
 * without a waiter. Accepts NULL. */
void deployer_release_waiters(struct deployer *d, const char *why);

/* Waits up to 2 s for running deploys (they are not cancelled; past that
 * the deployer is left allocated for them) and frees. Accepts NULL. */
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
