/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The next hop per backend of new SNAT flows (kpx_nh in
 * bpf/lib/nodeport_dp.h): a new flow to a backend whose next hop an
 * earlier flow learnt leaves toward that backend's MAC without asking
 * the FIB again, and a backend id that the map writer gave to another
 * address meanwhile does not inherit the old backend's MAC. tc and XDP.
 */
#include <arpa/inet.h>
#include <string.h>

#include <criterion/criterion.h>

#include "np_fixture.h"
#include "np_pkt.h"

#define FE_PORT 30080
#define BE_PORT 8080

TestSuite(np_nexthop, .init = np_setup, .fini = np_teardown);

/* A SYN of a new flow from the client's port sport; returns the verdict,
 * the output frame in out. */
static int new_flow(const char *prog, uint16_t sport, uint8_t *out)
{
	uint8_t in[256];
	size_t ol = 256;
	struct np_tuple t = { .family = AF_INET, .proto = IPPROTO_TCP,
			      .src = NP_CLIENT4, .dst = NP_NODE4,
			      .sport = sport, .dport = FE_PORT,
			      .tcp_flags = 0x02, .seq = 1 };
	size_t il = np_build(in, &t);

	return np_run(prog, in, il, out, &ol);
}

static void reuse_case(const char *prog)
{
	const int fwd = !strcmp(prog, "xdp") ? 3 : 7;
	uint32_t bid = 9;
	uint8_t out[256];
	struct in_addr a;

	np_add_backend(bid, AF_INET, NP_BE4, BE_PORT, IPPROTO_TCP, false);
	np_add_service(AF_INET, NP_NODE4, FE_PORT, IPPROTO_TCP, 3,
		       KPX_SVC_F_SNAT, &bid, 1);
	cr_assert_eq(new_flow(prog, 41000, out), fwd);
	cr_assert_eq(memcmp(out, np_mac_be, 6), 0, "first flow: backend MAC");
	cr_assert_eq(new_flow(prog, 41001, out), fwd);
	cr_assert_eq(memcmp(out, np_mac_be, 6), 0,
		     "second flow: the learnt next hop is the backend's");
	cr_assert_eq(memcmp(out + 6, np_mac_dev, 6), 0, "from the device");
	/* the id now names another address (another neighbour) */
	np_add_backend(bid, AF_INET, NP_CLIENT4, BE_PORT, IPPROTO_TCP, false);
	cr_assert_eq(new_flow(prog, 41002, out), fwd);
	inet_pton(AF_INET, NP_CLIENT4, &a);
	cr_assert_eq(memcmp(out + 14 + 16, &a, 4), 0, "DNAT to the new address");
	cr_assert_eq(memcmp(out, np_mac_client, 6), 0,
		     "a reused backend id gets its own next hop, not the "
		     "old backend's MAC");
}

Test(np_nexthop, tc_new_flows_reuse_the_backend_next_hop_but_not_across_id_reuse)
{
	NP_REQUIRE();
	reuse_case("in");
}

Test(np_nexthop, xdp_new_flows_reuse_the_backend_next_hop_but_not_across_id_reuse)
{
	NP_REQUIRE();
	reuse_case("xdp");
}
