/* main.c - kiln-vmm's command line. */
#include "common/log.h"
#include "vmm/boot/boot.h"
#include "vmm/machine.h"

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
		VMM_DEFAULT_MEM_MIB, BOOT_MAX_VCPUS);
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

int main(int argc, char **argv)
{
	enum { OPT_KERNEL = 256, OPT_INITRD, OPT_CMDLINE, OPT_MEM, OPT_VCPUS, OPT_CONSOLE,
	       OPT_NO_COMPAT };
	static const struct option options[] = {
		{"kernel", required_argument, NULL, OPT_KERNEL},
		{"initrd", required_argument, NULL, OPT_INITRD},
		{"cmdline", required_argument, NULL, OPT_CMDLINE},
		{"mem", required_argument, NULL, OPT_MEM},
		{"vcpus", required_argument, NULL, OPT_VCPUS},
		{"console", required_argument, NULL, OPT_CONSOLE},
		{"no-compat", no_argument, NULL, OPT_NO_COMPAT},
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
