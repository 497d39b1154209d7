/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The new-flow flood guard (bpf/lib/flood.h, issue 16 "New-flow cost"):
 * with kpx_new_flow_rate N, the (N+1)th new flow on a CPU within a
 * second is refused (SNAT: its reply needs state) and counted as
 * "flood", tc and XDP, while an established flow keeps its entries and
 * keeps working; DSR flows of Maglev services are forwarded without
 * creating state. The test pins itself to one CPU (the count is per
 * CPU) and runs well within the one-second window.
 */
#include <arpa/inet.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <criterion/criterion.h>

#include "bpf/nodeport.skel.h"
#include "np_fixture.h"
#include "np_pkt.h"

#define RATE 5
#define FE_PORT 30080
#define BE_PORT 8080
#define CL_PORT 40000

static void flood_setup(void)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(sched_getcpu() < 0 ? 0 : sched_getcpu(), &set);
	sched_setaffinity(0, sizeof(set), &set);
	np_new_flow_rate = RATE;
	np_setup();
}

TestSuite(np_flood, .init = flood_setup, .fini = np_teardown);

static int send_syn(const char *prog, uint16_t sport, uint8_t flags,
		    size_t *ol_out)
{
	uint8_t in[256], out[256];
	struct np_tuple t = { .family = AF_INET, .proto = IPPROTO_TCP,
			      .src = NP_CLIENT4, .dst = NP_NODE4,
			      .sport = sport, .dport = FE_PORT,
			      .tcp_flags = flags, .seq = 1 };
	size_t il = np_build(in, &t), ol = sizeof(out);
	int rc = np_run(prog, in, il, out, &ol);

	if (ol_out)
		*ol_out = ol - il;
	return rc;
}

static void snat_flood_case(const char *prog)
{
	const bool xdp = !strcmp(prog, "xdp");
	const int fwd = xdp ? 3 : 7, drop = xdp ? 1 : 2;
	uint32_t bid = 70;
	uint64_t before;
	int ok = 0, refused = 0;

	np_add_backend(bid, AF_INET, NP_BE4, BE_PORT, IPPROTO_TCP, false);
	np_add_service(AF_INET, NP_NODE4, FE_PORT, IPPROTO_TCP, 40,
		       KPX_SVC_F_SNAT, &bid, 1);
	/* the established flow, first of the window */
	cr_assert_eq(send_syn(prog, CL_PORT, 0x02, NULL), fwd);
	cr_assert_eq(np_ct_count(), 2);
	before = np_drops(KPX_DROP_FLOOD);
	for (int i = 1; i <= 20; i++) {
		int rc = send_syn(prog, (uint16_t)(CL_PORT + i), 0x02, NULL);

		cr_assert(rc == fwd || rc == drop, "verdict %d", rc);
		if (rc == fwd)
			ok++;
		else
			refused++;
	}
	cr_assert_eq(ok, RATE - 1, "new flows admitted: %d, want %d", ok,
		     RATE - 1);
	cr_assert_eq(refused, 20 - (RATE - 1));
	cr_assert_eq(np_drops(KPX_DROP_FLOOD), before + (uint64_t)refused,
		     "refusals counted as flood");
	cr_assert_eq(np_ct_count(), 2u * RATE, "refused flows left state");
	/* the established flow (and the admitted ones) still work */
	cr_assert_eq(send_syn(prog, CL_PORT, 0x10, NULL), fwd,
		     "established flow refused under flood");
	cr_assert_eq(send_syn(prog, CL_PORT + 1, 0x10, NULL), fwd);
	cr_assert_eq(np_ct_count(), 2u * RATE);
}

Test(np_flood, snat_new_flows_refused_established_kept_tc)
{
	NP_REQUIRE();
	snat_flood_case("in");
}

Test(np_flood, snat_new_flows_refused_established_kept_xdp)
{
	NP_REQUIRE();
	snat_flood_case("xdp");
}

/* DSR + Maglev: above the rate, new flows are still forwarded (with the
 * DSR option) but leave no conntrack entry. */
Test(np_flood, dsr_maglev_forwards_without_state)
{
	uint32_t bid = 71, msize = KPX_MAGLEV_DEFAULT_SIZE;
	struct kpx_maglev_key mk = { .svc_id = 41, .gen = 0 };
	uint32_t *tbl = calloc(msize, sizeof(*tbl));
	size_t grow;

	NP_REQUIRE();
	cr_assert(tbl);
	for (uint32_t i = 0; i < msize; i++)
		tbl[i] = bid;
	cr_assert_eq(bpf_map_update_elem(
			     bpf_map__fd(npf.skel->maps.kpx_maglev), &mk, tbl,
			     BPF_ANY),
		     0);
	free(tbl);
	np_set_dp_flags(KPX_DP_F_DSR);
	np_add_backend(bid, AF_INET, NP_BE4, BE_PORT, IPPROTO_TCP, false);
	np_add_service(AF_INET, NP_NODE4, FE_PORT, IPPROTO_TCP, 41,
		       KPX_SVC_F_SNAT | KPX_SVC_F_MAGLEV, &bid, 1);
	for (int i = 0; i < RATE; i++)
		cr_assert_eq(send_syn("in", (uint16_t)(CL_PORT + i), 0x02,
				      &grow),
			     7);
	cr_assert_eq(np_ct_count(), RATE, "one DSR entry per flow");
	for (int i = RATE; i < RATE + 10; i++) {
		cr_assert_eq(send_syn("in", (uint16_t)(CL_PORT + i), 0x02,
				      &grow),
			     7, "DSR flow not forwarded under flood");
		cr_assert_eq(grow, KPX_DSR_OPT_LEN, "no DSR option");
	}
	cr_assert_eq(np_ct_count(), RATE, "state created under flood");
	cr_assert_eq(np_drops(KPX_DROP_FLOOD), 0);
}
