/* main.c - kiln-jailer's command line (docs/security.md "Jailer"). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "jailer/jail.h"

#define EXIT_USAGE 2

static void usage(FILE *out)
{
	fprintf(out,
		"usage: kiln-jailer --id ID --root DIR --uid UID --gid GID [options] -- KILN-VMM "
		"[ARGS]\n"
		"\n"
		"Runs kiln-vmm jailed: in new mount, network, IPC, UTS and cgroup namespaces\n"
		"(and the PID namespace it must be started in, as its PID 1), pivot_root'ed\n"
		"into DIR, which then holds only a copy of kiln-vmm, /vm (its writable\n"
		"directory: sockets, console), /proc (its own PID namespace only) and the host\n"
		"paths given below, mirrored at their own paths; as UID:GID with no\n"
		"capabilities and no_new_privs, in a cgroup with limits, with rlimits. It\n"
		"opens /dev/kvm first and passes it as --kvm-fd. Must run as root, as PID 1 of\n"
		"a new PID namespace: kilnd starts it so; by hand, 'unshare --pid --fork'.\n"
		"\n"
		"  --id ID              the VM's name, [A-Za-z0-9._-]{1,64}\n"
		"  --root DIR           the jail's root directory (created if missing)\n"
		"  --uid UID, --gid GID kiln-vmm's user and group (not 0)\n"
		"  --ro PATH            a file or directory kiln-vmm may read (repeatable)\n"
		"  --rw PATH            one it may also write (repeatable)\n"
		"  --cgroup NAME        the cgroup, below the jailer's own (e.g. kiln/vm-3)\n"
		"  --mem-max MiB        its memory limit\n"
		"  --cpus MILLI         CPU time, 1000 = one CPU\n"
		"  --pids-max N         processes and threads, at most\n"
		"  --rlimit RES=N       nofile, fsize (bytes), nproc, memlock (repeatable);\n"
		"                       core is always 0\n"
		"  --keep-fd N          hand descriptor N to kiln-vmm (every other is closed)\n"
		"  --parent-fd N        a pidfd of the parent: exit if it has died\n"
		"  -h, --help           this help\n");
}

static int parse_num(const char *opt, const char *s, uint64_t max, uint64_t *out)
{
	char *end;

	errno = 0;
	if (!s || !*s || *s == '-')
		goto out_bad;
	*out = strtoull(s, &end, 10);
	if (errno || *end || *out > max)
		goto out_bad;
	return 0;
out_bad:
	log_error("%s takes a number up to %" PRIu64 ", not '%s'", opt, max, s ? s : "");
	return -EINVAL;
}

static int check_id(const char *id)
{
	size_t n = strlen(id);

	if (n == 0 || n > 64 || id[0] == '.')
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z') ||
		      (id[i] >= '0' && id[i] <= '9') || strchr("._-", id[i])))
			return -EINVAL;
	return 0;
}

static int parse_rlimit(const char *s, struct jail_spec *spec)
{
	static const struct {
		const char *name;
		int res;
	} names[] = {{"nofile", RLIMIT_NOFILE},
		     {"fsize", RLIMIT_FSIZE},
		     {"nproc", RLIMIT_NPROC},
		     {"memlock", RLIMIT_MEMLOCK}};
	const char *eq = strchr(s, '=');
	uint64_t v;

	if (!eq || spec->nrlimits >= JAIL_MAX_RLIMITS)
		goto out_bad;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i].name) == (size_t)(eq - s) &&
		    strncmp(s, names[i].name, (size_t)(eq - s)) == 0) {
			if (parse_num("--rlimit", eq + 1, UINT64_MAX - 1, &v))
				return -EINVAL;
			spec->rlimits[spec->nrlimits].resource = names[i].res;
			spec->rlimits[spec->nrlimits++].value = (rlim_t)v;
			return 0;
		}
out_bad:
	log_error("--rlimit takes RES=N with RES one of nofile, fsize, nproc, memlock, not '%s'",
		  s);
	return -EINVAL;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{"id", required_argument, NULL, 'i'},
		{"root", required_argument, NULL, 'r'},
		{"uid", required_argument, NULL, 'u'},
		{"gid", required_argument, NULL, 'g'},
		{"ro", required_argument, NULL, 'R'},
		{"rw", required_argument, NULL, 'W'},
		{"cgroup", required_argument, NULL, 'c'},
		{"mem-max", required_argument, NULL, 'm'},
		{"cpus", required_argument, NULL, 'C'},
		{"pids-max", required_argument, NULL, 'p'},
		{"rlimit", required_argument, NULL, 'l'},
		{"keep-fd", required_argument, NULL, 'k'},
		{"parent-fd", required_argument, NULL, 'P'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct jail_spec s = {.parent_fd = -1};
	bool have_uid = false, have_gid = false;
	char why[1024];
	uint64_t v;
	int opt;

	log_set_program("kiln-jailer");
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+h", options, NULL)) != -1) {
		switch (opt) {
		case 'i':
			if (check_id(optarg)) {
				log_error("--id takes 1 to 64 of A-Z a-z 0-9 . _ -, not '%s'",
					  optarg);
				goto out_usage;
			}
			s.id = optarg;
			break;
		case 'r':
			if (optarg[0] != '/') {
				log_error("--root needs an absolute path");
				goto out_usage;
			}
			s.root = optarg;
			break;
		case 'u':
		case 'g':
			if (parse_num(opt == 'u' ? "--uid" : "--gid", optarg, 0xfffffffeU, &v))
				goto out_usage;
			if (opt == 'u') {
				s.uid = (uid_t)v;
				have_uid = true;
			} else {
				s.gid = (gid_t)v;
				have_gid = true;
			}
			break;
		case 'R':
		case 'W':
			if ((opt == 'R' ? s.nro : s.nrw) >= JAIL_MAX_PATHS) {
				log_error("at most %d --ro and %d --rw paths", JAIL_MAX_PATHS,
					  JAIL_MAX_PATHS);
				goto out_usage;
			}
			if (opt == 'R')
				s.ro[s.nro++] = optarg;
			else
				s.rw[s.nrw++] = optarg;
			break;
		case 'c':
			s.cgroup = optarg;
			break;
		case 'm':
			if (parse_num("--mem-max", optarg, 1 << 30, &v))
				goto out_usage;
			s.limits.mem_bytes = v << 20;
			break;
		case 'C':
			if (parse_num("--cpus", optarg, 1 << 20, &v))
				goto out_usage;
			s.limits.cpu_milli = (unsigned)v;
			break;
		case 'p':
			if (parse_num("--pids-max", optarg, 1 << 22, &v))
				goto out_usage;
			s.limits.pids = (unsigned)v;
			break;
		case 'l':
			if (parse_rlimit(optarg, &s))
				goto out_usage;
			break;
		case 'k':
		case 'P':
			if (parse_num(opt == 'k' ? "--keep-fd" : "--parent-fd", optarg, 1023, &v) ||
			    v < 3) {
				log_error("descriptors 3 to 1023 only");
				goto out_usage;
			}
			if (opt == 'P') {
				s.parent_fd = (int)v;
			} else if (s.nkeep < JAIL_MAX_FDS) {
				s.keep[s.nkeep++] = (int)v;
			} else {
				log_error("at most %d --keep-fd", JAIL_MAX_FDS);
				goto out_usage;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			log_error("unknown option or missing value: '%s'", argv[optind - 1]);
			goto out_usage;
		}
	}
	if (!s.id || !s.root || !have_uid || !have_gid || optind >= argc) {
		log_error("needs --id, --root, --uid, --gid and, after them, kiln-vmm's command "
			  "line");
		goto out_usage;
	}
	s.argv = argv + optind;
	opt = jail_exec(&s, why, sizeof(why));
	log_error("%s: %s", s.id, why);
	return 1;

out_usage:
	fprintf(stderr, "Try 'kiln-jailer --help'.\n");
	return EXIT_USAGE;
}
