/* main.c - kiln-vmm's command line. */
#include "common/log.h"
#include "vmm/api.h"
#include "vmm/boot/boot.h"
#include "vmm/machine.h"
#include "vmm/seccomp.h"
#include "vmm/snapshot/snapshot.h"
#include "vmm/virtio/blk.h"
#include "vmm/virtio/net.h"
#include "vmm/virtio/vsock.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The most kiln-vmm's log holds when stderr is a file (docs/security.md). */
#define VMM_LOG_FILE_MAX (4ULL * 1024 * 1024)

#define VMM_DEFAULT_MEM_MIB 128
#define VMM_MAX_MEM_MIB	    (1024 * 1024) /* 1 TiB: a sanity bound, not a promise */
#define VMM_EXIT_USAGE	    2

static void vmm_usage(FILE *out)
{
	fprintf(out,
		"usage: kiln-vmm --kernel PATH [options]\n"
		"       kiln-vmm --restore DIR [--disk ...] [--vsock-uds ...] [--net ...] "
		"[options]\n"
		"       kiln-vmm --prestart --api-sock PATH [--mem MiB] [--vcpus N] [options]\n"
		"       kiln-vmm ctl --api-sock PATH COMMAND ...   (kiln-vmm ctl --help)\n"
		"\n"
		"Boots a Linux kernel (vmlinux ELF or bzImage) in a KVM microVM, or\n"
		"restores one from a snapshot (docs/snapshots.md).\n"
		"\n"
		"  --kernel PATH        kernel to boot (x86-64 vmlinux ELF or bzImage)\n"
		"  --initrd PATH        initramfs to load (uncompressed cpio recommended)\n"
		"  --cmdline STR        kernel command line, appended to kiln's own\n"
		"                       (console=ttyS0 reboot=k panic=-1 kiln.ctl=...);\n"
		"                       arguments after ' -- ' are the command kiln-init runs\n"
		"  --mem MiB            guest memory in MiB (default %d)\n"
		"  --vcpus N            number of vCPUs, 1 to %d (default 1)\n"
		"  --disk PATH[,ro|rw]  a raw disk image as a virtio-blk device (/dev/vda,\n"
		"                       then vdb...; repeat up to %d times); read-only\n"
		"                       (the file is never modified) unless ',rw' is given\n"
		"  --vsock-uds PATH     a virtio-vsock device whose host side is the unix\n"
		"                       socket PATH: connect and write 'CONNECT <port>\\n' to\n"
		"                       reach a guest port; the guest's connections to host\n"
		"                       port P go to the socket PATH_P (docs/vsock.md)\n"
		"  --vsock-cid N        the guest's vsock CID, 3 to 4294967294 (default %d)\n"
		"  --vsock-connect-ms MS  how long a host CONNECT waits for the guest to\n"
		"                       answer, 1 to 600000 (default 5000)\n"
		"  --net SPEC           a virtio-net device: SPEC is tap=NAME (a tap kiln-vmm\n"
		"                       opens), tap-fd=N (an open tap inherited as fd N),\n"
		"                       or none (no host side: frames are dropped), then\n"
		"                       optionally ,mac=xx:xx:xx:xx:xx:xx (docs/networking.md)\n"
		"  --rng                a virtio-rng device: the guest's entropy comes from\n"
		"                       the host's getrandom\n"
		"  --console PATH|stdio where guest console output goes (default stdio;\n"
		"                       with stdio, standard input is the guest's console input)\n"
		"  --no-compat          never add the nested-KVM compatibility arguments\n"
		"  --compat             add them even where /sys/module/kvm_pvm is not visible\n"
		"                       (kiln-jailer passes it on a nested-KVM host)\n"
		"  --kvm-fd N           use the open /dev/kvm at descriptor N (3 or more)\n"
		"                       instead of opening it (kiln-jailer passes it)\n"
		"  --api-sock PATH      serve the control socket (pause, resume, state,\n"
		"                       snapshot, restore, stop; docs/control-api.md) at PATH\n"
		"  --restore DIR        restore the snapshot in DIR instead of booting: memory\n"
		"                       size and vCPUs come from it; give the same --disk set\n"
		"                       and, if it has vsock, --vsock-uds\n"
		"  --prestart           create the VM and vCPUs (--mem, --vcpus) and wait for a\n"
		"                       \"restore\" request on the control socket; with\n"
		"                       --vsock-uds, that socket listens from the start and\n"
		"                       serves the restored VM's vsock device\n"
		"  --max-mem MiB        refuse to restore a snapshot larger than this\n"
		"                       (default: the host's RAM)\n"
		"  -v, --verbose        log more (repeat for debug output and timings)\n"
		"  -q, --quiet          log only errors and warnings\n"
		"  -h, --help           show this help\n"
		"\n"
		"Exit status: the guest's own (kiln-init reports its command's status),\n"
		"0 when the guest resets itself, 1 when the guest crashes or kiln-vmm\n"
		"fails, 2 for a usage error, 128+N when stopped by signal N.\n",
		VMM_DEFAULT_MEM_MIB, BOOT_MAX_VCPUS, VIRTIO_BLK_MAX_DISKS, VSOCK_DEFAULT_GUEST_CID);
}

static int vmm_parse_u64(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	if (!s || !*s || *s == '-')
		goto out_bad;
	v = strtoull(s, &end, 10);
	if (errno || *end || v < min || v > max)
		goto out_bad;
	*out = v;
	return 0;
out_bad:
	log_error("%s takes a whole number from %" PRIu64 " to %" PRIu64 ", not '%s'", opt, min,
		  max, s ? s : "");
	return -EINVAL;
}

/* Appends the virtio device `host` to cfg. */
static int vmm_add_device(struct machine_config *cfg, const struct virtio_host *host)
{
	if (cfg->ndevices >= MACHINE_MAX_VIRTIO) {
		log_error("at most %d virtio devices", MACHINE_MAX_VIRTIO);
		return -EINVAL;
	}
	cfg->devices[cfg->ndevices++] = *host;
	return 0;
}

static void vmm_ctl_usage(FILE *out)
{
	fprintf(out, "usage: kiln-vmm ctl --api-sock PATH COMMAND [ARGS]\n"
		     "\n"
		     "Sends one request to a running kiln-vmm's control socket and prints the\n"
		     "JSON reply. Commands:\n"
		     "  state                    running/paused/waiting, vCPUs, memory, uptime\n"
		     "  pause | resume | stop\n"
		     "  snapshot DIR [--diff]    write a snapshot (full, or a diff against the\n"
		     "                           snapshot the VM was restored from)\n"
		     "  restore DIR [--disk PATH[,ro|rw]]... [--vsock-uds PATH] [--net SPEC]\n"
		     "              [--console PATH]\n"
		     "                           restore into a kiln-vmm started with --prestart\n"
		     "  raw JSON                 send JSON as the request line\n"
		     "\n"
		     "Exit status: 0 when the reply has \"ok\":true, 1 when it is an error or\n"
		     "kiln-vmm cannot be reached, 2 for a usage error.\n");
}

/* kiln-vmm ctl ...: a tiny client of the control socket. */
static int vmm_ctl_main(int argc, char **argv)
{
	const char *sock = NULL, *cmd;
	json_t *req = NULL, *reply = NULL, *disks;
	char why[512], *text;
	int i = 1, ret;

	while (i < argc && strncmp(argv[i], "--", 2) == 0) {
		if (strcmp(argv[i], "--help") == 0) {
			vmm_ctl_usage(stdout);
			return 0;
		}
		if (strcmp(argv[i], "--api-sock") == 0 && i + 1 < argc) {
			sock = argv[i + 1];
			i += 2;
			continue;
		}
		log_error("ctl: unknown option '%s'", argv[i]);
		goto out_usage;
	}
	if (!sock || i >= argc) {
		log_error("ctl: needs --api-sock PATH and a command");
		goto out_usage;
	}
	cmd = argv[i++];
	if (strcmp(cmd, "state") == 0 || strcmp(cmd, "pause") == 0 || strcmp(cmd, "resume") == 0 ||
	    strcmp(cmd, "stop") == 0) {
		if (i != argc)
			goto out_extra;
		req = json_pack("{s:s}", "op", cmd);
	} else if (strcmp(cmd, "snapshot") == 0) {
		bool diff = false;

		if (i >= argc)
			goto out_usage;
		req = json_pack("{s:s, s:s}", "op", "snapshot", "dir", argv[i++]);
		for (; i < argc; i++) {
			if (strcmp(argv[i], "--diff") != 0)
				goto out_extra;
			diff = true;
		}
		if (req)
			json_object_set_new(req, "diff", json_boolean(diff));
	} else if (strcmp(cmd, "restore") == 0) {
		if (i >= argc)
			goto out_usage;
		req = json_pack("{s:s, s:s, s:[]}", "op", "restore", "dir", argv[i++], "disks");
		disks = req ? json_object_get(req, "disks") : NULL;
		for (; req && i < argc; i += 2) {
			if (i + 1 >= argc)
				goto out_extra;
			if (strcmp(argv[i], "--disk") == 0)
				json_array_append_new(disks, json_string(argv[i + 1]));
			else if (strcmp(argv[i], "--vsock-uds") == 0)
				json_object_set_new(req, "vsock_uds", json_string(argv[i + 1]));
			else if (strcmp(argv[i], "--console") == 0)
				json_object_set_new(req, "console", json_string(argv[i + 1]));
			else if (strcmp(argv[i], "--net") == 0)
				json_object_set_new(req, "net", json_string(argv[i + 1]));
			else
				goto out_extra;
		}
	} else if (strcmp(cmd, "raw") == 0) {
		json_error_t err;

		if (i + 1 != argc)
			goto out_usage;
		req = json_loads(argv[i], 0, &err);
		if (!req) {
			log_error("ctl: malformed JSON: %s", err.text);
			return VMM_EXIT_USAGE;
		}
	} else {
		log_error("ctl: unknown command '%s'", cmd);
		goto out_usage;
	}
	if (!req) {
		log_error("out of memory");
		return 1;
	}
	ret = api_request(sock, req, &reply, why, sizeof(why));
	json_decref(req);
	if (ret < 0) {
		log_error("ctl: %s", why);
		return 1;
	}
	text = json_dumps(reply, JSON_COMPACT | JSON_REAL_PRECISION(12));
	if (text) {
		printf("%s\n", text);
		free(text);
	}
	ret = json_is_true(json_object_get(reply, "ok")) ? 0 : 1;
	if (ret)
		log_error("%s", json_string_value(json_object_get(reply, "error"))
					? json_string_value(json_object_get(reply, "error"))
					: "request failed");
	json_decref(reply);
	return ret;

out_extra:
	log_error("ctl: unexpected argument '%s'", argv[i < argc ? i : argc - 1]);
out_usage:
	json_decref(req);
	fprintf(stderr, "Try 'kiln-vmm ctl --help' for more information.\n");
	return VMM_EXIT_USAGE;
}

/* A pre-started kiln-vmm's restore should not wait for the kernel to hand
 * the control thread fresh stack pages: its path uses some 150 KiB of stack
 * (the snapshot chain's paths, PATH_MAX each), and every first touch of a
 * page is a fault. Touches them while waiting costs nothing. */
#define VMM_PREFAULT_STACK (256 * 1024)

static __attribute__((noinline)) void vmm_prefault_stack(void)
{
	volatile char pages[VMM_PREFAULT_STACK];

	for (size_t i = 0; i < sizeof(pages); i += 4096)
		pages[i] = 0;
}

/* --restore DIR: create a VM shaped like the snapshot and restore it. */
static int vmm_restore(struct machine_config *cfg, const char *dir, struct machine **out)
{
	struct machine_restore_params p = {
		.dir = dir,
		.ndevices = cfg->ndevices,
	};
	struct machine_restore_times t;
	struct snap_image img;
	uint64_t max = cfg->max_mem_mib ? cfg->max_mem_mib << 20 : UINT64_MAX;
	struct machine *m;
	char why[1024];

	if (snap_image_load(dir, max, &img, why, sizeof(why)) < 0) {
		log_error("cannot restore: %s", why);
		return -1;
	}
	if (img.meta.mem_size % (1 << 20)) {
		log_error("cannot restore: the snapshot's memory is not whole MiB");
		snap_image_release(&img);
		return -1;
	}
	cfg->mem_mib = img.meta.mem_size >> 20;
	cfg->vcpus = img.meta.vcpus;
	snap_image_release(&img);
	memcpy(p.devices, cfg->devices, sizeof(p.devices));
	/* The snapshot's devices are attached by the restore, not by create. */
	cfg->ndevices = 0;
	cfg->kernel = NULL;
	m = machine_create(cfg);
	if (!m)
		return -1;
	if (machine_restore(m, &p, &t, why, sizeof(why)) < 0) {
		log_error("cannot restore: %s", why);
		machine_destroy(m);
		return -1;
	}
	log_debug("timing: restore of %s: load %.3f ms, apply %.3f ms, total %.3f ms (process "
		  "at %.3f ms)",
		  dir, t.load_ms, t.apply_ms, t.total_ms, (double)machine_uptime_ns() / 1e6);
	*out = m;
	return 0;
}

int main(int argc, char **argv)
{
	enum {
		OPT_KERNEL = 256,
		OPT_INITRD,
		OPT_CMDLINE,
		OPT_MEM,
		OPT_VCPUS,
		OPT_CONSOLE,
		OPT_NO_COMPAT,
		OPT_DISK,
		OPT_VSOCK_UDS,
		OPT_VSOCK_CID,
		OPT_VSOCK_CONNECT_MS,
		OPT_RNG,
		OPT_NET,
		OPT_API_SOCK,
		OPT_RESTORE,
		OPT_PRESTART,
		OPT_MAX_MEM,
		OPT_COMPAT,
		OPT_KVM_FD
	};
	static const struct option options[] = {
		{"kernel", required_argument, NULL, OPT_KERNEL},
		{"initrd", required_argument, NULL, OPT_INITRD},
		{"cmdline", required_argument, NULL, OPT_CMDLINE},
		{"mem", required_argument, NULL, OPT_MEM},
		{"vcpus", required_argument, NULL, OPT_VCPUS},
		{"console", required_argument, NULL, OPT_CONSOLE},
		{"no-compat", no_argument, NULL, OPT_NO_COMPAT},
		{"disk", required_argument, NULL, OPT_DISK},
		{"vsock-uds", required_argument, NULL, OPT_VSOCK_UDS},
		{"vsock-cid", required_argument, NULL, OPT_VSOCK_CID},
		{"vsock-connect-ms", required_argument, NULL, OPT_VSOCK_CONNECT_MS},
		{"rng", no_argument, NULL, OPT_RNG},
		{"net", required_argument, NULL, OPT_NET},
		{"api-sock", required_argument, NULL, OPT_API_SOCK},
		{"restore", required_argument, NULL, OPT_RESTORE},
		{"prestart", no_argument, NULL, OPT_PRESTART},
		{"max-mem", required_argument, NULL, OPT_MAX_MEM},
		{"compat", no_argument, NULL, OPT_COMPAT},
		{"kvm-fd", required_argument, NULL, OPT_KVM_FD},
		{"verbose", no_argument, NULL, 'v'},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct machine_config cfg = {
		.mem_mib = VMM_DEFAULT_MEM_MIB,
		.vcpus = 1,
		.console = "stdio",
		.compat = true,
		.kvm_fd = -1,
	};
	struct virtio_host disks[VIRTIO_BLK_MAX_DISKS];
	unsigned int ndisks = 0;
	const char *vsock_uds = NULL;
	unsigned int vsock_connect_ms = 0;
	uint64_t vsock_cid = 0;
	struct virtio_host net = {0};
	bool net_given = false;
	char why[256];
	struct machine *m;
	const char *restore = NULL;
	bool prestart = false, mem_given = false, vcpus_given = false, rng = false;
	uint64_t v;
	int opt, status, verbosity = 0;

	machine_mark_start();
	log_set_program("kiln-vmm");
	/* A guest can make kiln-vmm warn (a malformed queue, again and again
	 * after each reset): when stderr is a file, it never passes this. */
	log_cap_file(VMM_LOG_FILE_MAX);
	if (argc > 1 && strcmp(argv[1], "ctl") == 0)
		return vmm_ctl_main(argc - 1, argv + 1);
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":vqh", options, NULL)) != -1) {
		switch (opt) {
		case OPT_KERNEL:
			cfg.kernel = optarg;
			break;
		case OPT_INITRD:
			cfg.initrd = optarg;
			break;
		case OPT_CMDLINE:
			cfg.cmdline = optarg;
			break;
		case OPT_MEM:
			if (vmm_parse_u64("--mem", optarg, 1, VMM_MAX_MEM_MIB, &v) < 0)
				goto out_usage;
			cfg.mem_mib = v;
			mem_given = true;
			break;
		case OPT_VCPUS:
			if (vmm_parse_u64("--vcpus", optarg, 1, BOOT_MAX_VCPUS, &v) < 0)
				goto out_usage;
			cfg.vcpus = (unsigned int)v;
			vcpus_given = true;
			break;
		case OPT_CONSOLE:
			cfg.console = optarg;
			break;
		case OPT_NO_COMPAT:
			cfg.compat = false;
			break;
		case OPT_COMPAT:
			cfg.compat_host = true;
			break;
		case OPT_KVM_FD:
			if (vmm_parse_u64("--kvm-fd", optarg, 3, INT_MAX, &v) < 0)
				goto out_usage;
			cfg.kvm_fd = (int)v;
			break;
		case OPT_DISK:
			if (ndisks >= VIRTIO_BLK_MAX_DISKS) {
				log_error("--disk: at most %d disks", VIRTIO_BLK_MAX_DISKS);
				goto out_usage;
			}
			if (virtio_blk_parse_spec(optarg, &disks[ndisks]) < 0) {
				log_error("--disk needs a path");
				goto out_usage;
			}
			ndisks++;
			break;
		case OPT_VSOCK_UDS:
			if (!*optarg) {
				log_error("--vsock-uds needs a path");
				goto out_usage;
			}
			vsock_uds = optarg;
			break;
		case OPT_VSOCK_CID:
			if (vmm_parse_u64("--vsock-cid", optarg, 3, 0xfffffffeULL, &v) < 0)
				goto out_usage;
			vsock_cid = v;
			break;
		case OPT_VSOCK_CONNECT_MS:
			if (vmm_parse_u64("--vsock-connect-ms", optarg, 1, 600000, &v) < 0)
				goto out_usage;
			vsock_connect_ms = (unsigned int)v;
			break;
		case OPT_RNG:
			rng = true;
			break;
		case OPT_NET:
			if (net_given) {
				log_error("--net: one network device at most");
				goto out_usage;
			}
			if (virtio_net_parse_spec(optarg, &net, why, sizeof(why)) < 0) {
				log_error("--net: %s", why);
				goto out_usage;
			}
			net_given = true;
			break;
		case OPT_API_SOCK:
			if (!*optarg) {
				log_error("--api-sock needs a path");
				goto out_usage;
			}
			cfg.api_sock = optarg;
			break;
		case OPT_RESTORE:
			if (!*optarg) {
				log_error("--restore needs a snapshot directory");
				goto out_usage;
			}
			restore = optarg;
			break;
		case OPT_PRESTART:
			prestart = true;
			break;
		case OPT_MAX_MEM:
			if (vmm_parse_u64("--max-mem", optarg, 1, VMM_MAX_MEM_MIB, &v) < 0)
				goto out_usage;
			cfg.max_mem_mib = v;
			break;
		case 'v':
			verbosity++;
			break;
		case 'q':
			verbosity = -1;
			break;
		case 'h':
			vmm_usage(stdout);
			return 0;
		case ':':
			log_error("option %s needs a value", argv[optind - 1]);
			goto out_usage;
		default:
			log_error("unknown option '%s'", argv[optind - 1]);
			goto out_usage;
		}
	}
	if (optind < argc) {
		log_error("unexpected argument '%s'", argv[optind]);
		goto out_usage;
	}
	if ((restore || prestart) && (cfg.kernel || cfg.initrd || cfg.cmdline)) {
		log_error("--%s and --kernel/--initrd/--cmdline exclude each other",
			  restore ? "restore" : "prestart");
		goto out_usage;
	}
	if (restore && prestart) {
		log_error("--restore and --prestart exclude each other");
		goto out_usage;
	}
	if (restore && (mem_given || vcpus_given || vsock_cid)) {
		log_error("--restore takes the memory size, vCPU count and vsock CID from the "
			  "snapshot: drop --mem, --vcpus and --vsock-cid");
		goto out_usage;
	}
	if (prestart && (ndisks || net_given || vsock_cid)) {
		log_error("--prestart: the disks and network come with the restore request, the "
			  "vsock CID with the snapshot");
		goto out_usage;
	}
	if ((restore || prestart) && rng) {
		log_error("--rng: a restored VM has the snapshot's devices");
		goto out_usage;
	}
	if (prestart && !cfg.api_sock) {
		log_error("--prestart needs --api-sock: restores arrive on the control socket");
		goto out_usage;
	}
	if (!cfg.kernel && !restore && !prestart) {
		log_error("--kernel is required");
		goto out_usage;
	}
	if (vsock_cid && !vsock_uds && !restore) {
		log_error("--vsock-cid needs --vsock-uds");
		goto out_usage;
	}
	/* Slot order: the disks, vsock, the rest. */
	for (unsigned int i = 0; i < ndisks; i++)
		if (vmm_add_device(&cfg, &disks[i]) < 0)
			goto out_usage;
	if (vsock_uds &&
	    vmm_add_device(&cfg, &(struct virtio_host){.ops = &virtio_vsock_device,
						       .path = vsock_uds,
						       .cid = vsock_cid,
						       .connect_ms = vsock_connect_ms}) < 0)
		goto out_usage;
	if (net_given && vmm_add_device(&cfg, &net) < 0)
		goto out_usage;
	if (verbosity < 0)
		log_set_level(LOG_WARN);
	else if (verbosity > 0)
		log_set_level(LOG_DEBUG);
	if (vmm_seccomp_init() < 0)
		return 1;

	if (restore) {
		if (vmm_restore(&cfg, restore, &m) < 0)
			return 1;
	} else {
		cfg.prestart = prestart;
		m = machine_create(&cfg);
		if (!m)
			return 1;
		if (prestart)
			vmm_prefault_stack();
	}
	status = machine_run(m);
	machine_destroy(m);
	log_debug("timing: exit at %.3f ms, status %d", (double)machine_uptime_ns() / 1e6, status);
	return status;

out_usage:
	fprintf(stderr, "Try 'kiln-vmm --help' for more information.\n");
	return VMM_EXIT_USAGE;
}
