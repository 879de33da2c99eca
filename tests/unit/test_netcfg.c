/* test_netcfg.c - kiln-init's NET frame: the payload parser (every byte
 * comes from the host, checked), and netcfg_apply on a real interface (a
 * tap) in a network namespace of the test's own: address, prefix, the
 * default route, and a second NET (a restore) replacing both. The apply
 * tests need CAP_NET_ADMIN and are skipped, saying so, without it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/netcfg.h"

static bool have_netns;

static int parse(const char *s, struct netcfg *c)
{
	return netcfg_parse((const uint8_t *)s, strlen(s), c);
}

static void test_parse(void **state)
{
	struct netcfg c;
	static const char *const bad[] = {
		"10.0.0.2/30",		 "10.0.0.2 10.0.0.1",	   "10.0.0.2/31 10.0.0.1",
		"10.0.0.2/0 10.0.0.1",	 "10.0.0.2/30 10.0.0.9",   "10.0.0.2/30 10.0.0.2",
		"10.0.0.256/30 10.0.0.1", "10.0.0.2/3x 10.0.0.1",  "10.0.0.2/30  10.0.0.1",
		"10.0.0.2/30 10.0.0.1 ", "0.0.0.0/8 0.0.0.1",	   "/30 10.0.0.1",
		"10.0.0.2/300 10.0.0.1", "10.0.0.2/ 10.0.0.1",
	};

	(void)state;
	assert_int_equal(parse("10.200.0.6/30 10.200.0.5", &c), 0);
	assert_int_equal(c.addr, inet_addr("10.200.0.6"));
	assert_int_equal(c.gateway, inet_addr("10.200.0.5"));
	assert_int_equal(c.prefix, 30);
	assert_int_equal(parse("", &c), 0);
	assert_int_equal(c.addr, 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (parse(bad[i], &c) != -EINVAL)
			fail_msg("accepted '%s'", bad[i]);
	}
	/* Not NUL-terminated: the parser stays inside the length given. */
	assert_int_equal(netcfg_parse((const uint8_t *)"10.0.0.2/30 10.0.0.1XXXX", 20, &c), 0);
}

static void test_parse_resolver(void **state)
{
	struct netcfg c;
	char label64[80], long_list[400];
	static const char *const bad[] = {
		"10.0.0.2/30 10.0.0.1 ns=",
		"10.0.0.2/30 10.0.0.1 ns=1.2.3",
		"10.0.0.2/30 10.0.0.1 ns=1.1.1.1 ns=2.2.2.2 ns=3.3.3.3 ns=4.4.4.4",
		"10.0.0.2/30 10.0.0.1 search=",
		"10.0.0.2/30 10.0.0.1 search=a..b",
		"10.0.0.2/30 10.0.0.1 search=.a",
		"10.0.0.2/30 10.0.0.1 search=a.",
		"10.0.0.2/30 10.0.0.1 search=a\nnameserver",
		"10.0.0.2/30 10.0.0.1 search=a_b",
		"10.0.0.2/30 10.0.0.1 search=a search=b search=c search=d search=e search=f "
		"search=g",
		"10.0.0.2/30 10.0.0.1 nameserver=1.1.1.1",
		"10.0.0.2/30 10.0.0.1  ns=1.1.1.1",
		"10.0.0.2/30 10.0.0.1 ns=1.1.1.1 ",
	};

	(void)state;
	assert_int_equal(parse("10.0.0.2/30 10.0.0.1 ns=10.1.1.1 ns=9.9.9.9 search=kiln.test "
			       "search=corp.example",
			       &c),
			 0);
	assert_int_equal(c.gateway, inet_addr("10.0.0.1"));
	assert_int_equal(c.nns, 2);
	assert_int_equal(c.ns[0], inet_addr("10.1.1.1"));
	assert_int_equal(c.ns[1], inet_addr("9.9.9.9"));
	assert_string_equal(c.search, "kiln.test corp.example");
	assert_int_equal(parse("10.0.0.2/30 10.0.0.1 search=a-b.C9", &c), 0);
	assert_int_equal(c.nns, 0);
	assert_string_equal(c.search, "a-b.C9");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (parse(bad[i], &c) != -EINVAL)
			fail_msg("accepted '%s'", bad[i]);
	}
	/* A label over 63 characters. */
	memset(label64, 'a', 64);
	label64[64] = 0;
	snprintf(long_list, sizeof(long_list), "10.0.0.2/30 10.0.0.1 search=%s.x", label64);
	assert_int_equal(parse(long_list, &c), -EINVAL);
	/* Six domains of 50 characters: over the 255 of the joined list. */
	label64[50] = 0;
	snprintf(long_list, sizeof(long_list), "10.0.0.2/30 10.0.0.1");
	for (int i = 0; i < 6; i++)
		snprintf(long_list + strlen(long_list), sizeof(long_list) - strlen(long_list),
			 " search=%s", label64);
	assert_int_equal(parse(long_list, &c), -EINVAL);
}

static void test_write_resolv(void **state)
{
	char dir[] = "/tmp/test-netcfg-XXXXXX", path[64], buf[256];
	struct netcfg c;
	FILE *f;
	size_t n;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/resolv.conf", dir);
	assert_int_equal(parse("10.0.0.2/30 10.0.0.1 ns=10.1.1.1 ns=9.9.9.9 search=kiln.test", &c),
			 0);
	assert_int_equal(netcfg_write_resolv(path, &c), 0);
	f = fopen(path, "r");
	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	assert_string_equal(buf, "nameserver 10.1.1.1\nnameserver 9.9.9.9\nsearch kiln.test\n");
	/* No resolver settings: the file goes (a restore of another function's
	 * settings must not survive). */
	assert_int_equal(parse("10.0.0.2/30 10.0.0.1", &c), 0);
	assert_int_equal(netcfg_write_resolv(path, &c), 0);
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(netcfg_write_resolv(path, &c), 0); /* already gone */
	assert_int_equal(rmdir(dir), 0);
}

/* eth0's IPv4 address and netmask, or 0. */
static void addr_of(const char *ifname, uint32_t *addr, uint32_t *mask)
{
	struct ifreq ifr = {0};
	int s = socket(AF_INET, SOCK_DGRAM, 0);

	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	*addr = *mask = 0;
	if (ioctl(s, SIOCGIFADDR, &ifr) == 0)
		*addr = ((struct sockaddr_in *)(void *)&ifr.ifr_addr)->sin_addr.s_addr;
	if (ioctl(s, SIOCGIFNETMASK, &ifr) == 0)
		*mask = ((struct sockaddr_in *)(void *)&ifr.ifr_netmask)->sin_addr.s_addr;
	close(s);
}

/* The gateway of the default route in /proc/net/route, or 0. */
static uint32_t default_gw(void)
{
	FILE *f = fopen("/proc/net/route", "r");
	char line[256], ifn[32];
	unsigned int dst, gw;
	uint32_t out = 0;

	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%31s %x %x", ifn, &dst, &gw) == 3 && dst == 0)
			out = gw;
	fclose(f);
	return out;
}

static void test_apply_and_replace(void **state)
{
	struct ifreq ifr = {0};
	struct netcfg c;
	uint32_t addr, mask;
	int fd;

	(void)state;
	if (!have_netns)
		skip();
	fd = open("/dev/net/tun", O_RDWR);
	assert_true(fd >= 0);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "eth0");
	assert_int_equal(ioctl(fd, TUNSETIFF, &ifr), 0);

	assert_int_equal(parse("10.200.0.6/30 10.200.0.5", &c), 0);
	assert_int_equal(netcfg_apply("eth0", &c), 0);
	addr_of("eth0", &addr, &mask);
	assert_int_equal(addr, inet_addr("10.200.0.6"));
	assert_int_equal(mask, inet_addr("255.255.255.252"));
	assert_int_equal(default_gw(), inet_addr("10.200.0.5"));
	addr_of("lo", &addr, &mask);
	assert_int_equal(addr, inet_addr("127.0.0.1")); /* the loopback is up */

	/* A restore: another /30 replaces the address and the route. */
	assert_int_equal(parse("10.200.0.10/30 10.200.0.9", &c), 0);
	assert_int_equal(netcfg_apply("eth0", &c), 0);
	addr_of("eth0", &addr, &mask);
	assert_int_equal(addr, inet_addr("10.200.0.10"));
	assert_int_equal(default_gw(), inet_addr("10.200.0.9"));

	/* No network: no address, no route. */
	assert_int_equal(parse("", &c), 0);
	assert_int_equal(netcfg_apply("eth0", &c), 0);
	addr_of("eth0", &addr, &mask);
	assert_int_equal(addr, 0);
	assert_int_equal(default_gw(), 0);

	assert_int_equal(netcfg_apply("nosuch0", &c), -ENODEV);
	close(fd);
}

/* The warm-up brings the namespace's loopback up and talks over it. */
static void test_warm(void **state)
{
	uint32_t addr, mask;

	(void)state;
	if (!have_netns)
		skip();
	assert_int_equal(netcfg_warm(), 0);
	addr_of("lo", &addr, &mask);
	assert_int_equal(addr, inet_addr("127.0.0.1"));
	assert_int_equal(netcfg_warm(), 0); /* again: harmless */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_parse_resolver),
		cmocka_unit_test(test_write_resolv),
		cmocka_unit_test(test_warm),
		cmocka_unit_test(test_apply_and_replace),
	};

	if (unshare(CLONE_NEWNET) == 0)
		have_netns = true;
	else
		fprintf(stderr, "test_netcfg: SKIPPING netcfg_apply: unshare(CLONE_NEWNET): %s "
				"(needs CAP_NET_ADMIN)\n",
			strerror(errno));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
