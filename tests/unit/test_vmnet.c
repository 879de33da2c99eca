/* test_vmnet.c - kilnd's host side of functions' networks, in a network
 * namespace of the test's own (its taps, nftables table and IPv4 forwarding
 * are that namespace's, never the host's): ranges, /30 slots and their
 * addresses, the taps, the table loaded on first use and removed with
 * forwarding put back at the end. Needs CAP_NET_ADMIN and nft for the
 * namespace tests, which are skipped, saying so, without them. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/vmnet.h"

static bool have_netns;

static void test_parse_cidr(void **state)
{
	uint32_t base;
	unsigned prefix;

	(void)state;
	assert_int_equal(vmnet_parse_cidr("10.200.0.0/16", &base, &prefix), 0);
	assert_int_equal(base, 0x0ac80000);
	assert_int_equal(prefix, 16);
	assert_int_equal(vmnet_parse_cidr("10.200.7.9/24", &base, &prefix), 0);
	assert_int_equal(base, 0x0ac80700); /* masked */
	assert_int_equal(vmnet_parse_cidr("10.0.0.0/7", &base, &prefix), -EINVAL);
	assert_int_equal(vmnet_parse_cidr("10.0.0.0/29", &base, &prefix), -EINVAL);
	assert_int_equal(vmnet_parse_cidr("10.0.0.0", &base, &prefix), -EINVAL);
	assert_int_equal(vmnet_parse_cidr("10.0.0/24", &base, &prefix), -EINVAL);
	assert_int_equal(vmnet_parse_cidr("10.0.0.0/2x", &base, &prefix), -EINVAL);
}

static void test_create_refuses(void **state)
{
	char err[256];

	(void)state;
	assert_null(vmnet_create("10.0.0.0/33", "k", err, sizeof(err)));
	assert_non_null(strstr(err, "--net-range"));
	assert_null(vmnet_create("10.0.0.0/16", "toolong", err, sizeof(err)));
	assert_null(vmnet_create("10.0.0.0/16", "A", err, sizeof(err)));
	assert_null(vmnet_create("10.0.0.0/16", "", err, sizeof(err)));
}

static char read_forward(void)
{
	FILE *f = fopen("/proc/sys/net/ipv4/ip_forward", "r");
	int c = f ? fgetc(f) : 0;

	if (f)
		fclose(f);
	return (char)c;
}

static bool table_exists(const char *name)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "nft list table inet %s >/dev/null 2>&1", name);
	return system(cmd) == 0;
}

static uint32_t if_addr(const char *name)
{
	struct ifreq ifr = {0};
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	uint32_t a = 0;

	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(s, SIOCGIFADDR, &ifr) == 0)
		a = ((struct sockaddr_in *)(void *)&ifr.ifr_addr)->sin_addr.s_addr;
	close(s);
	return a;
}

/* A /28: 4 slots of /30. */
static void test_taps_and_table(void **state)
{
	struct vmnet_tap t[5];
	struct vmnet *n;
	char err[512], cfg[256], ns[1][16] = {"10.1.1.1"};

	(void)state;
	if (!have_netns || (access("/usr/sbin/nft", X_OK) && access("/sbin/nft", X_OK)))
		skip();
	n = vmnet_create("10.99.0.0/28", "u", err, sizeof(err));
	assert_non_null(n);
	assert_false(table_exists("kiln_u")); /* nothing until a tap is asked for */
	assert_int_equal(read_forward(), '0');
	for (int i = 0; i < 4; i++) {
		if (vmnet_tap_create(n, &t[i], err, sizeof(err)))
			fail_msg("tap %d: %s", i, err);
		assert_int_equal(t[i].slot, i);
	}
	assert_int_equal(vmnet_tap_create(n, &t[4], err, sizeof(err)), -ENOSPC);
	assert_true(table_exists("kiln_u"));
	assert_int_equal(read_forward(), '1');
	assert_string_equal(t[1].name, "ktu-1");
	assert_int_equal(if_addr("ktu-1"), inet_addr("10.99.0.5"));
	assert_int_equal(vmnet_guest_config(n, &t[1], ns, 1, "", cfg, sizeof(cfg)),
			 strlen("10.99.0.6/30 10.99.0.5 ns=10.1.1.1"));
	assert_string_equal(cfg, "10.99.0.6/30 10.99.0.5 ns=10.1.1.1");
	vmnet_guest_config(n, &t[1], ns, 1, "a.test b-c.test", cfg, sizeof(cfg));
	assert_string_equal(cfg, "10.99.0.6/30 10.99.0.5 ns=10.1.1.1 search=a.test search=b-c.test");
	assert_int_equal(vmnet_guest_config(n, &t[1], ns, 1, "a.test", cfg, 30), -ENOSPC);
	/* A released slot is the next one given; its tap went with its fd. */
	vmnet_tap_release(n, &t[2]);
	assert_int_equal(if_nametoindex("ktu-2"), 0);
	assert_int_equal(vmnet_tap_create(n, &t[4], err, sizeof(err)), 0);
	assert_int_equal(t[4].slot, 2);
	for (int i = 0; i < 5; i++)
		if (i != 2)
			vmnet_tap_release(n, &t[i]);
	vmnet_destroy(n);
	assert_false(table_exists("kiln_u"));
	assert_int_equal(read_forward(), '0');
}

static void test_parse_resolv(void **state)
{
	char ns[DNSNAME_NS_MAX][16], search[DNSNAME_SEARCH_LEN + 1];
	unsigned nns;

	(void)state;
	/* The host's own resolvers (127/8) are not a VM's; a search line wins
	 * over a domain line; bad domains and a fourth nameserver are dropped. */
	vmnet_parse_resolv("# comment\n"
			   "nameserver 127.0.0.53\n"
			   "domain home.example\n"
			   "nameserver 10.0.0.2\n"
			   "nameserver\t192.168.1.1 \n"
			   "nameserver fe80::1\n"
			   "nameserver 9.9.9.9\n"
			   "nameserver 8.8.8.8\n"
			   "search corp.example bad_domain x.test\r\n"
			   "options ndots:2\n",
			   ns, &nns, search, sizeof(search));
	assert_int_equal(nns, 3);
	assert_string_equal(ns[0], "10.0.0.2");
	assert_string_equal(ns[1], "192.168.1.1");
	assert_string_equal(ns[2], "9.9.9.9");
	assert_string_equal(search, "corp.example x.test");
	vmnet_parse_resolv("domain home.example\nnameserver 127.0.0.1", ns, &nns, search,
			   sizeof(search));
	assert_int_equal(nns, 0);
	assert_string_equal(search, "home.example");
	vmnet_parse_resolv("", ns, &nns, search, sizeof(search));
	assert_int_equal(nns, 0);
	assert_string_equal(search, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_cidr),
		cmocka_unit_test(test_parse_resolv),
		cmocka_unit_test(test_create_refuses),
		cmocka_unit_test(test_taps_and_table),
	};

	if (unshare(CLONE_NEWNET) == 0)
		have_netns = true;
	else
		fprintf(stderr, "test_vmnet: SKIPPING the tap and nftables tests: "
				"unshare(CLONE_NEWNET): %s (needs CAP_NET_ADMIN)\n",
			strerror(errno));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
