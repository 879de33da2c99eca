/* main.c - kiln-vmm's command line. */
#include "common/log.h"
#include "vmm/boot/boot.h"
#include "vmm/machine.h"
#include "vmm/virtio/vsock.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VMM_DEFAULT_MEM_MIB 128
#define VMM_MAX_MEM_MIB     (1024 * 1024) /* 1 TiB: a sanity bound, not a promise */
#define VMM_EXIT_USAGE      2

static void vmm_usage(FILE *out)
{
	fprintf(out,
		"usage: kiln-vmm --kernel PATH [options]\n"
		"\n"
		"Boots a Linux kernel (vmlinux ELF or bzImage) in a KVM microVM.\n"
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
		"  --console PATH|stdio where guest console output goes (default stdio;\n"
		"                       with stdio, standard input is the guest's console input)\n"
		"  --no-compat          never add the nested-KVM compatibility arguments\n"
		"  -v, --verbose        log more (repeat for debug output and timings)\n"
		"  -q, --quiet          log only errors and warnings\n"
		"  -h, --help           show this help\n"
		"\n"
		"Exit status: the guest's own (kiln-init reports its command's status),\n"
		"0 when the guest resets itself, 1 when the guest crashes or kiln-vmm\n"
		"fails, 2 for a usage error, 128+N when stopped by signal N.\n",
		VMM_DEFAULT_MEM_MIB, BOOT_MAX_VCPUS, MACHINE_MAX_DISKS, VSOCK_DEFAULT_GUEST_CID);
}

static int vmm_parse_u64(const char *opt, const char *s, uint64_t min, uint64_t max,
			 uint64_t *out)
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

/* Parses "PATH[,ro|rw]" into cfg's next disk. PATH may itself hold commas;
 * only a final ",ro" or ",rw" is an option. */
static int vmm_parse_disk(struct machine_config *cfg, char *arg)
{
	struct machine_disk *d;
	char *comma = strrchr(arg, ',');

	if (cfg->ndisks >= MACHINE_MAX_DISKS) {
		log_error("--disk: at most %d disks", MACHINE_MAX_DISKS);
		return -EINVAL;
	}
	d = &cfg->disks[cfg->ndisks];
	d->read_only = true;
	if (comma && (strcmp(comma, ",ro") == 0 || strcmp(comma, ",rw") == 0)) {
		d->read_only = comma[2] == 'o';
		*comma = '\0';
	}
	if (!*arg) {
		log_error("--disk needs a path");
		return -EINVAL;
	}
	d->path = arg;
	cfg->ndisks++;
	return 0;
}

int main(int argc, char **argv)
{
	enum { OPT_KERNEL = 256, OPT_INITRD, OPT_CMDLINE, OPT_MEM, OPT_VCPUS, OPT_CONSOLE,
	       OPT_NO_COMPAT, OPT_DISK, OPT_VSOCK_UDS, OPT_VSOCK_CID };
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
	};
	struct machine *m;
	uint64_t v;
	int opt, status, verbosity = 0;

	machine_mark_start();
	log_set_program("kiln-vmm");
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
			break;
		case OPT_VCPUS:
			if (vmm_parse_u64("--vcpus", optarg, 1, BOOT_MAX_VCPUS, &v) < 0)
				goto out_usage;
			cfg.vcpus = (unsigned int)v;
			break;
		case OPT_CONSOLE:
			cfg.console = optarg;
			break;
		case OPT_NO_COMPAT:
			cfg.compat = false;
			break;
		case OPT_DISK:
			if (vmm_parse_disk(&cfg, optarg) < 0)
				goto out_usage;
			break;
		case OPT_VSOCK_UDS:
			if (!*optarg) {
				log_error("--vsock-uds needs a path");
				goto out_usage;
			}
			cfg.vsock_uds = optarg;
			break;
		case OPT_VSOCK_CID:
			if (vmm_parse_u64("--vsock-cid", optarg, 3, 0xfffffffeULL, &v) < 0)
				goto out_usage;
			cfg.vsock_cid = v;
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
	if (!cfg.kernel) {
		log_error("--kernel is required");
		goto out_usage;
	}
	if (cfg.vsock_cid && !cfg.vsock_uds) {
		log_error("--vsock-cid needs --vsock-uds");
		goto out_usage;
	}
	if (verbosity < 0)
		log_set_level(LOG_WARN);
	else if (verbosity > 0)
		log_set_level(LOG_DEBUG);

	m = machine_create(&cfg);
	if (!m)
		return 1;
	status = machine_run(m);
	machine_destroy(m);
	log_debug("timing: exit at %.3f ms, status %d", (double)machine_uptime_ns() / 1e6, status);
	return status;

out_usage:
	fprintf(stderr, "Try 'kiln-vmm --help' for more information.\n");
	return VMM_EXIT_USAGE;
}
