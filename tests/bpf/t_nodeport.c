/* SPDX-License-Identifier: Apache-2.0 */
/*
 * NodePort datapath (bpf/nodeport.bpf.c) packet by packet with
 * BPF_PROG_TEST_RUN: map setup, input frame, expected verdict, expected
 * output frame (built from scratch, so a byte-exact match also proves the
 * incremental checksum updates) — see np_fixture.h.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <criterion/criterion.h>

#include "agent/config.h"
#include "bpf/nodeport.h"
#include "bpf/nodeport.skel.h"
#include "np_fixture.h"

#define TC_OK 0
#define TC_SHOT 2
#define TC_REDIRECT 7
#define XDP_DROP_ 1
#define XDP_PASS_ 2
#define XDP_TX_ 3

#define FE_PORT 30080
#define BE_PORT 8080
#define CL_PORT 51000

TestSuite(nodeport, .init = np_setup, .fini = np_teardown);

static void expect_frame(const uint8_t *got, size_t got_len,
			 const uint8_t *want, size_t want_len, const char *what)
{
	cr_assert(np_csum_ok(got, got_len), "%s: invalid checksum", what);
	if (got_len != want_len || memcmp(got, want, want_len)) {
		fprintf(stderr, "%s: frame differs (len %zu want %zu)\n", what,
			got_len, want_len);
		np_hexdump_diff(got, want, got_len < want_len ? got_len
							     : want_len);
		cr_assert_fail("%s: output frame differs", what);
	}
}

struct fam {
	int af;
	const char *node, *be, *client, *localbe;
};

static const struct fam F4 = { AF_INET, NP_NODE4, NP_BE4, NP_CLIENT4,
			       NP_LOCALBE4 };
static const struct fam F6 = { AF_INET6, NP_NODE6, NP_BE6, NP_CLIENT6,
			       NP_LOCALBE6 };

/*
 * eTP=Cluster, remote backend: client -> node:FE becomes node:P -> be:BE
 * (P from the SNAT range), redirected out with the neighbour's MAC; the
 * backend's reply be:BE -> node:P becomes node:FE -> client:CL toward the
 * client. A second packet of the flow takes the same translation.
 */
static void snat_case(const struct fam *f, uint8_t proto, const char *prog)
{
	const bool xdp = !strcmp(prog, "xdp");
	uint32_t bid = 7;
	uint8_t in[256], out[256], want[256];
	size_t il, ol, wl;
	uint16_t port;
	int rc;

	np_add_backend(bid, f->af, f->be, BE_PORT, proto, false);
	np_add_service(f->af, f->node, FE_PORT, proto, 1, KPX_SVC_F_SNAT,
		       &bid, 1);

	struct np_tuple t = { .family = f->af, .proto = proto, .src = f->client,
			      .dst = f->node, .sport = CL_PORT,
			      .dport = FE_PORT, .tcp_flags = 0x02, .seq = 1000,
			      .payload = proto == IPPROTO_UDP ? 5 : 0 };
	il = np_build(in, &t);
	ol = sizeof(out);
	rc = np_run(prog, in, il, out, &ol);
	cr_assert_eq(rc, xdp ? XDP_TX_ : TC_REDIRECT, "forward verdict %d", rc);
	cr_assert_eq(np_ct_count(), 2, "one flow = two conntrack entries");
	/* the SNAT port is the one thing the test cannot predict */
	{
		size_t l3 = f->af == AF_INET ? 20 : 40;

		port = (out[14 + l3] << 8) | out[14 + l3 + 1];
	}
	cr_assert(port >= 40000 && port <= 40099, "SNAT port %u out of range",
		  port);
	struct np_tuple e = t;
	e.src = f->node;
	e.dst = f->be;
	e.sport = port;
	e.dport = BE_PORT;
	e.smac = np_mac_dev;
	e.dmac = np_mac_be;
	wl = np_build(want, &e);
	expect_frame(out, ol, want, wl, "forward DNAT+SNAT");

	/* same flow, next packet: same backend and port, no new entries */
	t.tcp_flags = 0x10;
	t.seq = 1001;
	t.ack = 5001;
	il = np_build(in, &t);
	ol = sizeof(out);
	rc = np_run(prog, in, il, out, &ol);
	cr_assert_eq(rc, xdp ? XDP_TX_ : TC_REDIRECT);
	e.tcp_flags = 0x10;
	e.seq = 1001;
	e.ack = 5001;
	wl = np_build(want, &e);
	expect_frame(out, ol, want, wl, "established forward");
	cr_assert_eq(np_ct_count(), 2);
	/* third packet: from the conntrack entry's next-hop cache */
	ol = sizeof(out);
	rc = np_run(prog, in, il, out, &ol);
	cr_assert_eq(rc, xdp ? XDP_TX_ : TC_REDIRECT);
	expect_frame(out, ol, want, wl, "established forward, cached next hop");

	/* reply from the remote backend */
	struct np_tuple r = { .family = f->af, .proto = proto, .src = f->be,
			      .dst = f->node, .sport = BE_PORT, .dport = port,
			      .tcp_flags = 0x12, .seq = 5000, .ack = 1001,
			      .smac = np_mac_be,
			      .payload = proto == IPPROTO_UDP ? 3 : 0 };
	il = np_build(in, &r);
	ol = sizeof(out);
	rc = np_run(prog, in, il, out, &ol);
	cr_assert_eq(rc, xdp ? XDP_TX_ : TC_REDIRECT, "reply verdict %d", rc);
	struct np_tuple re = r;
	re.src = f->node;
	re.dst = f->client;
	re.sport = FE_PORT;
	re.dport = CL_PORT;
	re.smac = np_mac_dev;
	re.dmac = np_mac_client;
	wl = np_build(want, &re);
	expect_frame(out, ol, want, wl, "reverse NAT");
}

Test(nodeport, snat_v4_tcp) { NP_REQUIRE(); snat_case(&F4, IPPROTO_TCP, "in"); }
Test(nodeport, snat_v4_udp) { NP_REQUIRE(); snat_case(&F4, IPPROTO_UDP, "in"); }
Test(nodeport, snat_v6_tcp) { NP_REQUIRE(); snat_case(&F6, IPPROTO_TCP, "in"); }
Test(nodeport, snat_v6_udp) { NP_REQUIRE(); snat_case(&F6, IPPROTO_UDP, "in"); }
Test(nodeport, xdp_snat_v4_tcp) { NP_REQUIRE(); snat_case(&F4, IPPROTO_TCP, "xdp"); }
Test(nodeport, xdp_snat_v4_udp) { NP_REQUIRE(); snat_case(&F4, IPPROTO_UDP, "xdp"); }
Test(nodeport, xdp_snat_v6_tcp) { NP_REQUIRE(); snat_case(&F6, IPPROTO_TCP, "xdp"); }

/*
 * eTP=Local, local backend: DNAT only (client address kept), to the stack;
 * the pod's reply leaving through the device egress gets the frontend back.
 */
static void local_case(const struct fam *f, uint8_t proto)
{
	uint32_t bid = 9;
	uint8_t in[256], out[256], want[256];
	size_t il, ol, wl;
	int rc;

	np_add_backend(bid, f->af, f->localbe, BE_PORT, proto, true);
	np_add_service(f->af, f->node, FE_PORT, proto, 2, KPX_SVC_F_LOCAL_ONLY,
		       &bid, 1);
	struct np_tuple t = { .family = f->af, .proto = proto, .src = f->client,
			      .dst = f->node, .sport = CL_PORT,
			      .dport = FE_PORT, .tcp_flags = 0x02, .seq = 77,
			      .payload = 4 };

	/* XDP leaves local deliveries to tc, untouched */
	il = np_build(in, &t);
	ol = sizeof(out);
	rc = np_run("xdp", in, il, out, &ol);
	cr_assert_eq(rc, XDP_PASS_);
	expect_frame(out, ol, in, il, "xdp pass-through");
	cr_assert_eq(np_ct_count(), 0);

	ol = sizeof(out);
	rc = np_run("in", in, il, out, &ol);
	cr_assert_eq(rc, TC_OK, "local verdict %d", rc);
	struct np_tuple e = t;
	e.dst = f->localbe;
	e.dport = BE_PORT;
	wl = np_build(want, &e);
	expect_frame(out, ol, want, wl, "local DNAT, client kept");

	struct np_tuple r = { .family = f->af, .proto = proto, .src = f->localbe,
			      .dst = f->client, .sport = BE_PORT,
			      .dport = CL_PORT, .tcp_flags = 0x12, .seq = 9,
			      .ack = 78, .smac = np_mac_dev,
			      .dmac = np_mac_client, .payload = 2 };
	il = np_build(in, &r);
	ol = sizeof(out);
	rc = np_run("out", in, il, out, &ol);
	cr_assert_eq(rc, TC_OK);
	struct np_tuple re = r;
	re.src = f->node;
	re.sport = FE_PORT;
	wl = np_build(want, &re);
	expect_frame(out, ol, want, wl, "local reply un-DNAT");
}

Test(nodeport, local_v4_tcp) { NP_REQUIRE(); local_case(&F4, IPPROTO_TCP); }
Test(nodeport, local_v4_udp) { NP_REQUIRE(); local_case(&F4, IPPROTO_UDP); }
Test(nodeport, local_v6_tcp) { NP_REQUIRE(); local_case(&F6, IPPROTO_TCP); }

/*
 * eTP=Cluster, local backend: masqueraded like a remote one and forwarded
 * straight to the pod device (a source that is a node address would be a
 * martian on the stack path); the pod's reply, arriving on the pod-side
 * device, goes back out toward the client as node:FE.
 */
static void local_snat_case(const struct fam *f, uint8_t proto)
{
	uint32_t bid = 31;
	uint8_t in[256], out[256], want[256];
	size_t il, ol, wl;
	uint16_t port;
	int rc;

	np_add_backend(bid, f->af, f->localbe, BE_PORT, proto, true);
	np_add_service(f->af, f->node, FE_PORT, proto, 10, KPX_SVC_F_SNAT,
		       &bid, 1);
	struct np_tuple t = { .family = f->af, .proto = proto, .src = f->client,
			      .dst = f->node, .sport = CL_PORT,
			      .dport = FE_PORT, .tcp_flags = 0x02, .seq = 5,
			      .payload = 3 };
	il = np_build(in, &t);
	ol = sizeof(out);
	rc = np_run("in", in, il, out, &ol);
	cr_assert_eq(rc, TC_REDIRECT, "forward verdict %d", rc);
	{
		size_t l3 = f->af == AF_INET ? 20 : 40;

		port = (out[14 + l3] << 8) | out[14 + l3 + 1];
	}
	cr_assert(port >= 40000 && port <= 40099);
	struct np_tuple e = t;
	e.src = f->node;
	e.sport = port;
	e.dst = f->localbe;
	e.dport = BE_PORT;
	e.smac = np_mac_pod_dev;
	e.dmac = np_mac_localbe;
	wl = np_build(want, &e);
	expect_frame(out, ol, want, wl, "local backend, masqueraded");

	struct np_tuple r = { .family = f->af, .proto = proto, .src = f->localbe,
			      .dst = f->node, .sport = BE_PORT, .dport = port,
			      .tcp_flags = 0x12, .seq = 70, .ack = 9,
			      .smac = np_mac_localbe, .dmac = np_mac_pod_dev,
			      .payload = 2 };
	il = np_build(in, &r);
	ol = sizeof(out);
	npf.run_ifindex = npf.pod_ifindex;
	rc = np_run("in", in, il, out, &ol);
	npf.run_ifindex = 0;
	cr_assert_eq(rc, TC_REDIRECT, "pod-side reply verdict %d", rc);
	struct np_tuple re = r;
	re.src = f->node;
	re.sport = FE_PORT;
	re.dst = f->client;
	re.dport = CL_PORT;
	re.smac = np_mac_dev;
	re.dmac = np_mac_client;
	wl = np_build(want, &re);
	expect_frame(out, ol, want, wl, "pod reply un-NATed");
}

Test(nodeport, local_snat_v4_tcp) { NP_REQUIRE(); local_snat_case(&F4, IPPROTO_TCP); }
Test(nodeport, local_snat_v6_udp) { NP_REQUIRE(); local_snat_case(&F6, IPPROTO_UDP); }

Test(nodeport, udp_zero_checksum_stays_zero)
{
	uint32_t bid = 3;
	uint8_t in[256], out[256], want[256];
	size_t il, ol, wl;

	NP_REQUIRE();
	np_add_backend(bid, AF_INET, NP_LOCALBE4, BE_PORT, IPPROTO_UDP, true);
	np_add_service(AF_INET, NP_NODE4, FE_PORT, IPPROTO_UDP, 3, 0, &bid, 1);
	struct np_tuple t = { .family = AF_INET, .proto = IPPROTO_UDP,
			      .src = NP_CLIENT4, .dst = NP_NODE4,
			      .sport = CL_PORT, .dport = FE_PORT,
			      .udp_zero_csum = true, .payload = 8 };
	il = np_build(in, &t);
	ol = sizeof(out);
	cr_assert_eq(np_run("in", in, il, out, &ol), TC_OK);
	t.dst = NP_LOCALBE4;
	t.dport = BE_PORT;
	wl = np_build(want, &t);
	expect_frame(out, ol, want, wl, "UDP without checksum");
	cr_assert_eq(out[14 + 20 + 6] | out[14 + 20 + 7], 0);
}

/* No endpoints: TCP RST / ICMP port unreachable, sent back at once. */
static void reject_case(const struct fam *f, uint8_t proto, const char *prog)
{
	const bool xdp = !strcmp(prog, "xdp");
	const bool v6 = f->af == AF_INET6;
	uint8_t in[256], out[256];
	size_t il, ol;
	uint64_t before;
	int rc;

	np_add_service(f->af, f->node, FE_PORT, proto, 4, KPX_SVC_F_SNAT, NULL,
		       0);
	struct np_tuple t = { .family = f->af, .proto = proto, .src = f->client,
			      .dst = f->node, .sport = CL_PORT,
			      .dport = FE_PORT, .tcp_flags = 0x02,
			      .seq = 0x11223344, .payload = 6 };
	il = np_build(in, &t);
	ol = sizeof(out);
	before = np_drops(KPX_DROP_NO_BACKEND);
	rc = np_run(prog, in, il, out, &ol);
	cr_assert_eq(rc, xdp ? XDP_TX_ : TC_REDIRECT, "reject verdict %d", rc);
	cr_assert_eq(np_drops(KPX_DROP_NO_BACKEND), before + 1);
	cr_assert(np_csum_ok(out, ol), "reject reply checksum");
	cr_assert_eq(memcmp(out, np_mac_client, 6), 0, "back to the client");
	cr_assert_eq(memcmp(out + 6, in, 6), 0);
	cr_assert_eq(np_ct_count(), 0, "no state for a rejected flow");
	{
		const uint8_t *ip = out + 14, *l4 = ip + (v6 ? 40 : 20);
		uint8_t a[16];

		inet_pton(f->af, f->node, a);
		cr_assert_eq(memcmp(ip + (v6 ? 8 : 12), a, v6 ? 16 : 4), 0,
			     "from the frontend address");
		inet_pton(f->af, f->client, a);
		cr_assert_eq(memcmp(ip + (v6 ? 24 : 16), a, v6 ? 16 : 4), 0);
		if (proto == IPPROTO_TCP) {
			cr_assert_eq(ip[v6 ? 6 : 9], IPPROTO_TCP);
			cr_assert_eq((l4[0] << 8) | l4[1], FE_PORT);
			cr_assert_eq((l4[2] << 8) | l4[3], CL_PORT);
			cr_assert_eq(l4[13], 0x14, "RST|ACK, got %#x", l4[13]);
			/* ack = seq + payload + SYN */
			cr_assert_eq(((uint32_t)l4[8] << 24 | l4[9] << 16 |
				      l4[10] << 8 | l4[11]),
				     0x11223344 + 6 + 1);
			cr_assert_eq(ol, 14 + (v6 ? 40 : 20) + 20u);
		} else {
			cr_assert_eq(ip[v6 ? 6 : 9],
				     v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP);
			cr_assert_eq(l4[0], v6 ? 1 : 3, "unreachable");
			cr_assert_eq(l4[1], v6 ? 4 : 3, "port unreachable");
			/* the quoted packet is the client's original one */
			cr_assert_eq(memcmp(l4 + 8, in + 14, v6 ? 48 : 28), 0);
		}
	}
}

Test(nodeport, reject_v4_tcp_rst) { NP_REQUIRE(); reject_case(&F4, IPPROTO_TCP, "in"); }
Test(nodeport, reject_v6_tcp_rst) { NP_REQUIRE(); reject_case(&F6, IPPROTO_TCP, "in"); }
Test(nodeport, reject_v4_udp_icmp) { NP_REQUIRE(); reject_case(&F4, IPPROTO_UDP, "in"); }
Test(nodeport, reject_v6_udp_icmp6) { NP_REQUIRE(); reject_case(&F6, IPPROTO_UDP, "in"); }
Test(nodeport, xdp_reject_v4_tcp_rst) { NP_REQUIRE(); reject_case(&F4, IPPROTO_TCP, "xdp"); }
Test(nodeport, xdp_reject_v4_udp_icmp) { NP_REQUIRE(); reject_case(&F4, IPPROTO_UDP, "xdp"); }

Test(nodeport, local_policy_without_local_endpoint_drops)
{
	uint8_t in[256], out[256];
	size_t il, ol;
	uint64_t before;

	NP_REQUIRE();
	np_add_service(AF_INET, NP_NODE4, FE_PORT, IPPROTO_TCP, 5,
		       KPX_SVC_F_LOCAL_ONLY | KPX_SVC_F_EMPTY_DROP, NULL, 0);
	struct np_tuple t = { .family = AF_INET, .proto = IPPROTO_TCP,
			      .src = NP_CLIENT4, .dst = NP_NODE4,
			      .sport = CL_PORT, .dport = FE_PORT,
			      .tcp_flags = 0x02 };
	il = np_build(in, &t);
	before = np_drops(KPX_DROP_LOCAL_NONE);
	ol = sizeof(out);
	cr_assert_eq(np_run("in", in, il, out, &ol), TC_SHOT);
	ol = sizeof(out);
	cr_assert_eq(np_run("xdp", in, il, out, &ol), XDP_DROP_);
	cr_assert_eq(np_drops(KPX_DROP_LOCAL_NONE), before + 2);
}

Test(nodeport, source_ranges)
{
	uint32_t bid = 11;
	uint8_t in[256], out[256];
	size_t il, ol;
	uint64_t before;

	NP_REQUIRE();
	np_add_backend(bid, AF_INET, NP_LOCALBE4, BE_PORT, IPPROTO_TCP, true);
	np_add_service(AF_INET, NP_NODE4, FE_PORT, IPPROTO_TCP, 6,
		       KPX_SVC_F_SOURCE_RANGES, &bid, 1);
	np_add_src_range(6, AF_INET, "198.19.0.0", 16);
	struct np_tuple t = { .family = AF_INET, .proto = IPPROTO_TCP,
			      .src = NP_CLIENT4, .dst = NP_NODE4,
			      .sport = CL_PORT, .dport = FE_PORT,
			      .tcp_flags = 0x02 };
	il = np_build(in, &t);
	before = np_drops(KPX_DROP_SOURCE_RANGE);
	ol = sizeof(out);
	cr_assert_eq(np_run("in", in, il, out, &ol), TC_SHOT,
		     "client outside the ranges");
	cr_assert_eq(np_drops(KPX_DROP_SOURCE_RANGE), before + 1);
	cr_assert_eq(np_ct_count(), 0);

	t.src = "198.19.4.5"; /* inside 198.19.0.0/16 */
	il = np_build(in, &t);
	ol = sizeof(out);
	cr_assert_eq(np_run("in", in, il, out, &ol), TC_OK);
	cr_assert_eq(np_ct_count(), 2);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/* GC removes both entries of a flow idle past its timeout (UDP 30 s,
 * TCP after FIN/RST 10 s, TCP 3600 s), and nothing younger. */
Test(nodeport, ct_expiry_by_gc)
{
	struct kpx_config cfg = {};
	uint32_t bid = 12;
	uint8_t in[256], out[256];
	size_t il, ol;
	int fd;
	uint64_t t0;

	NP_REQUIRE();
	cfg.ct_tcp_timeout = 3600;
	cfg.ct_tcp_close_timeout = 10;
	cfg.ct_udp_timeout = 30;
	cfg.n_devices = 1;
	strcpy(cfg.devices[0], "np0");
	fd = bpf_map__fd(npf.skel->maps.kpx_ct);
	np_add_backend(bid, AF_INET, NP_LOCALBE4, BE_PORT, IPPROTO_UDP, true);
	np_add_service(AF_INET, NP_NODE4, FE_PORT, IPPROTO_UDP, 7, 0, &bid, 1);
	np_add_backend(bid + 1, AF_INET, NP_LOCALBE4, BE_PORT, IPPROTO_TCP,
		       true);
	np_add_service(AF_INET, NP_NODE4, FE_PORT, IPPROTO_TCP, 8, 0,
		       (uint32_t[]){ bid + 1 }, 1);

	t0 = now_ns();
	struct np_tuple u = { .family = AF_INET, .proto = IPPROTO_UDP,
			      .src = NP_CLIENT4, .dst = NP_NODE4,
			      .sport = CL_PORT, .dport = FE_PORT, .payload = 1 };
	il = np_build(in, &u);
	ol = sizeof(out);
	cr_assert_eq(np_run("in", in, il, out, &ol), TC_OK);
	struct np_tuple t = { .family = AF_INET, .proto = IPPROTO_TCP,
			      .src = NP_CLIENT4, .dst = NP_NODE4,
			      .sport = CL_PORT, .dport = FE_PORT,
			      .tcp_flags = 0x02 };
	il = np_build(in, &t);
	ol = sizeof(out);
	cr_assert_eq(np_run("in", in, il, out, &ol), TC_OK);
	cr_assert_eq(np_ct_count(), 4);

	cr_assert_eq(kpx_nodeport_ct_gc(fd, &cfg, now_ns(), 1000), 0,
		     "fresh flows stay");
	cr_assert_eq(kpx_nodeport_ct_gc(fd, &cfg, t0 + 31ULL * 1000000000ULL,
					1000),
		     2, "UDP flow idle 31 s expires");
	cr_assert_eq(np_ct_count(), 2);

	/* FIN: the TCP flow now expires on the close timeout */
	t.tcp_flags = 0x11;
	il = np_build(in, &t);
	ol = sizeof(out);
	cr_assert_eq(np_run("in", in, il, out, &ol), TC_OK);
	cr_assert_eq(kpx_nodeport_ct_gc(fd, &cfg, t0 + 5ULL * 1000000000ULL,
					1000),
		     0);
	cr_assert_eq(kpx_nodeport_ct_gc(fd, &cfg, t0 + 12ULL * 1000000000ULL,
					1000),
		     2, "closed TCP flow expires after the close timeout");
	cr_assert_eq(np_ct_count(), 0);
}

/* An ICMP "fragmentation needed" from the remote backend about a SNATed
 * packet reaches the client about the packet it sent (PMTU discovery). */
Test(nodeport, icmp_frag_needed_translated_v4)
{
	uint32_t bid = 21;
	uint8_t in[256], out[256], q[128];
	size_t il, ol, ql;
	uint16_t port;

	NP_REQUIRE();
	np_add_backend(bid, AF_INET, NP_BE4, BE_PORT, IPPROTO_TCP, false);
	np_add_service(AF_INET, NP_NODE4, FE_PORT, IPPROTO_TCP, 9,
		       KPX_SVC_F_SNAT, &bid, 1);
	struct np_tuple t = { .family = AF_INET, .proto = IPPROTO_TCP,
			      .src = NP_CLIENT4, .dst = NP_NODE4,
			      .sport = CL_PORT, .dport = FE_PORT,
			      .tcp_flags = 0x02, .seq = 1, .ack = 0 };
	il = np_build(in, &t);
	ol = sizeof(out);
	cr_assert_eq(np_run("in", in, il, out, &ol), TC_REDIRECT);
	port = (out[34] << 8) | out[35];
	/* the translated packet as the backend saw it, quoted in the error */
	ql = ol - 14;
	memcpy(q, out + 14, ql);

	/* backend -> node: ICMP 3/4 quoting node:port -> be:BE */
	memset(in, 0, sizeof(in));
	memcpy(in, np_mac_dev, 6);
	memcpy(in + 6, np_mac_be, 6);
	in[12] = 0x08;
	uint8_t *ip = in + 14, *ic = ip + 20;
	ip[0] = 0x45;
	ip[2] = 0;
	ip[3] = 20 + 8 + 28;
	ip[8] = 64;
	ip[9] = IPPROTO_ICMP;
	inet_pton(AF_INET, NP_BE4, ip + 12);
	inet_pton(AF_INET, NP_NODE4, ip + 16);
	ic[0] = 3;
	ic[1] = 4;
	ic[6] = 1400 >> 8;
	ic[7] = 1400 & 0xff;
	memcpy(ic + 8, q, 28);
	{
		uint32_t s = 0;

		for (int i = 0; i < 20; i += 2)
			s += ip[i] << 8 | ip[i + 1];
		while (s >> 16)
			s = (s & 0xffff) + (s >> 16);
		ip[10] = ~s >> 8;
		ip[11] = ~s & 0xff;
		s = 0;
		for (int i = 0; i < 36; i += 2)
			s += ic[i] << 8 | ic[i + 1];
		while (s >> 16)
			s = (s & 0xffff) + (s >> 16);
		ic[2] = ~s >> 8;
		ic[3] = ~s & 0xff;
	}
	il = 14 + 20 + 8 + 28;
	cr_assert(np_csum_ok(in, il), "test input checksum");
	ol = sizeof(out);
	cr_assert_eq(np_run("in", in, il, out, &ol), TC_OK);
	cr_assert(np_csum_ok(out, ol), "translated ICMP checksums");
	{
		uint8_t a[4];
		const uint8_t *oq = out + 14 + 28;

		inet_pton(AF_INET, NP_NODE4, a);
		cr_assert_eq(memcmp(out + 14 + 12, a, 4), 0, "outer src: node");
		inet_pton(AF_INET, NP_CLIENT4, a);
		cr_assert_eq(memcmp(out + 14 + 16, a, 4), 0,
			     "outer dst: client");
		/* quoted: client:CL -> node:FE, as the client sent it */
		cr_assert_eq(memcmp(oq + 12, a, 4), 0);
		inet_pton(AF_INET, NP_NODE4, a);
		cr_assert_eq(memcmp(oq + 16, a, 4), 0);
		cr_assert_eq((oq[20] << 8) | oq[21], CL_PORT);
		cr_assert_eq((oq[22] << 8) | oq[23], FE_PORT);
		cr_assert_eq(out[14 + 20 + 6] << 8 | out[14 + 20 + 7], 1400,
			     "MTU kept");
	}
	(void)port;
}

/* Only a SYN starts a flow: a mid-stream segment kpx has no state for
 * (a connection kube-proxy's conntrack translated before kpx took over
 * the node) goes to the stack untouched, on tc and XDP, and leaves no
 * state behind. */
Test(nodeport, tcp_without_syn_is_not_balanced)
{
	static const uint8_t flags[] = { 0x10, 0x18, 0x11, 0x12, 0x04 };
	static const char *const progs[] = { "in", "xdp" };
	uint32_t bid = 22;
	uint8_t in[256], out[256];
	size_t il, ol;

	NP_REQUIRE();
	np_add_backend(bid, AF_INET, NP_BE4, BE_PORT, IPPROTO_TCP, false);
	np_add_service(AF_INET, NP_NODE4, FE_PORT, IPPROTO_TCP, 9,
		       KPX_SVC_F_SNAT, &bid, 1);
	for (size_t p = 0; p < 2; p++) {
		for (size_t f = 0; f < sizeof(flags); f++) {
			struct np_tuple t = { .family = AF_INET,
					      .proto = IPPROTO_TCP,
					      .src = NP_CLIENT4, .dst = NP_NODE4,
					      .sport = CL_PORT, .dport = FE_PORT,
					      .tcp_flags = flags[f], .seq = 1,
					      .ack = 1 };

			il = np_build(in, &t);
			ol = sizeof(out);
			cr_assert_eq(np_run(progs[p], in, il, out, &ol),
				     p ? XDP_PASS_ : TC_OK,
				     "%s, TCP flags 0x%02x: to the stack",
				     progs[p], flags[f]);
			cr_assert_eq(ol, il);
			cr_assert_eq(memcmp(out, in, il), 0,
				     "%s, TCP flags 0x%02x: untouched", progs[p],
				     flags[f]);
			cr_assert_eq(np_ct_count(), 0);
		}
	}
}

/* ---- --nodeport-mode dsr (kpx_dp_config.flags KPX_DP_F_DSR) ---- */

#define DSR_FE4 "198.18.0.9" /* frontend node (node A) in backend tests */

static void dsr_opt(uint8_t *o, const char *fe, uint16_t port)
{
	o[0] = KPX_DSR_OPT_TYPE;
	o[1] = KPX_DSR_OPT_LEN;
	o[2] = port >> 8;
	o[3] = port & 0xff;
	inet_pton(AF_INET, fe, o + 4);
}

Test(nodeport, dsr_mode_client_packet_with_options_uses_snat)
{
	uint32_t bid = 43;
	uint8_t in[256], out[256], opt[8] = { 1, 1, 1, 1, 1, 1, 1, 0 };
	size_t il, ol;

	NP_REQUIRE();
	np_set_dp_flags(KPX_DP_F_DSR);
	np_add_backend(bid, AF_INET, NP_BE4, BE_PORT, IPPROTO_UDP, false);
	np_add_service(AF_INET, NP_NODE4, FE_PORT, IPPROTO_UDP, 13,
		       KPX_SVC_F_SNAT, &bid, 1);
	/* NOPs and end of list: a client's own options */
	struct np_tuple t = { .family = AF_INET, .proto = IPPROTO_UDP,
			      .src = NP_CLIENT4, .dst = NP_NODE4,
			      .sport = CL_PORT, .dport = FE_PORT, .payload = 4,
			      .ip_opt = opt };
	il = np_build(in, &t);
	ol = sizeof(out);
	cr_assert_eq(np_run("in", in, il, out, &ol), TC_REDIRECT);
	cr_assert_eq(np_ct_count(), 2, "expected the SNAT path");
	cr_assert_eq(ol, il, "frame grew");
	cr_assert(np_csum_ok(out, ol));
}

/* An option of another type is not ours: nothing learnt. */
Test(nodeport, dsr_other_option_ignored)
{
	uint8_t in[256], out[256], opt[8];
	size_t il, ol;

	NP_REQUIRE();
	np_set_dp_flags(KPX_DP_F_DSR);
	dsr_opt(opt, DSR_FE4, FE_PORT);
	opt[0] = 0x94; /* router alert */
	opt[1] = 4;
	struct np_tuple t = { .family = AF_INET, .proto = IPPROTO_UDP,
			      .src = NP_CLIENT4, .dst = NP_LOCALBE4,
			      .sport = CL_PORT, .dport = BE_PORT, .payload = 3,
			      .ip_opt = opt };
	il = np_build(in, &t);
	ol = sizeof(out);
	cr_assert_eq(np_run("in", in, il, out, &ol), TC_OK);
	cr_assert_eq(np_ct_count(), 0);
}

/* SNAT mode leaves a SYN's MSS alone. */
Test(nodeport, snat_keeps_mss)
{
	uint32_t bid = 44;
	uint8_t in[256], out[256];
	size_t il, ol;

	NP_REQUIRE();
	np_add_backend(bid, AF_INET, NP_BE4, BE_PORT, IPPROTO_TCP, false);
	np_add_service(AF_INET, NP_NODE4, FE_PORT, IPPROTO_TCP, 14,
		       KPX_SVC_F_SNAT, &bid, 1);
	struct np_tuple t = { .family = AF_INET, .proto = IPPROTO_TCP,
			      .src = NP_CLIENT4, .dst = NP_NODE4,
			      .sport = CL_PORT, .dport = FE_PORT,
			      .tcp_flags = 0x02, .mss = 1460 };
	il = np_build(in, &t);
	ol = sizeof(out);
	cr_assert_eq(np_run("in", in, il, out, &ol), TC_REDIRECT);
	cr_assert_eq(ol, il);
	cr_assert(np_csum_ok(out, ol));
	cr_assert_eq((out[14 + 20 + 22] << 8) | out[14 + 20 + 23], 1460);
}

/* ---- DSR, IPv6: the Destination Options header (kpx_abi.h) ---- */

#define DSR_FE6 "fd00::9" /* frontend node (node A) in backend tests */

static void dsr6_hdr(uint8_t *x, const char *fe, uint16_t port)
{
	memset(x, 0, 24);
	x[1] = 2; /* 24 bytes */
	x[2] = KPX_DSR6_OPT_TYPE;
	x[3] = KPX_DSR6_OPT_LEN;
	x[4] = port >> 8;
	x[5] = port & 0xff;
	inet_pton(AF_INET6, fe, x + 6);
	x[22] = 1; /* PadN, no data */
}

/* The option type must be skipped by a receiver that does not know it
 * (RFC 8200 4.2: high bits 00) and must not change en route. */
Test(nodeport, dsr6_option_type_is_skippable)
{
	cr_assert_eq(KPX_DSR6_OPT_TYPE & 0xe0, 0);
	cr_assert_eq(2 + 2 + KPX_DSR6_OPT_LEN + 2, KPX_DSR6_HDR_LEN);
	cr_assert_eq(KPX_DSR6_HDR_LEN % 8, 0);
}



/* A client packet that already carries an extension header (here one
 * that looks like ours) to the service takes the SNAT path: two entries,
 * the frame keeps its size, checksums right. */
Test(nodeport, dsr6_client_packet_with_ext_header_uses_snat)
{
	uint32_t bid = 53;
	uint8_t in[256], out[256], x[24];
	size_t il, ol;

	NP_REQUIRE();
	np_set_dp_flags(KPX_DP_F_DSR);
	np_add_backend(bid, AF_INET6, NP_BE6, BE_PORT, IPPROTO_UDP, false);
	np_add_service(AF_INET6, NP_NODE6, FE_PORT, IPPROTO_UDP, 23,
		       KPX_SVC_F_SNAT, &bid, 1);
	dsr6_hdr(x, "fd00::77", 9);
	struct np_tuple t = { .family = AF_INET6, .proto = IPPROTO_UDP,
			      .src = NP_CLIENT6, .dst = NP_NODE6,
			      .sport = CL_PORT, .dport = FE_PORT, .payload = 4,
			      .ip6_dstopt = x };
	il = np_build(in, &t);
	ol = sizeof(out);
	cr_assert_eq(np_run("in", in, il, out, &ol), TC_REDIRECT);
	cr_assert_eq(np_ct_count(), 2, "expected the SNAT path");
	cr_assert_eq(ol, il, "frame grew");
	cr_assert(np_csum_ok(out, ol));
}


/* ---- DSR cases shared by both families ---- */

/* What differs between the IPv4 option and the IPv6 header cases. */
struct dsr_fam {
	int af;
	const char *client, *node, *be, *localbe, *fe, *tag;
	uint16_t mss;	   /* the SYN's MSS in the fixtures */
	uint16_t grow;	   /* bytes the frontend node adds */
	uint32_t bid, svc; /* first backend and service id of the family */
};

static const struct dsr_fam dsr_v4 = {
	.af = AF_INET, .client = NP_CLIENT4, .node = NP_NODE4, .be = NP_BE4,
	.localbe = NP_LOCALBE4, .fe = DSR_FE4, .tag = "DSR", .mss = 1460,
	.grow = KPX_DSR_OPT_LEN, .bid = 41, .svc = 11,
};
static const struct dsr_fam dsr_v6 = {
	.af = AF_INET6, .client = NP_CLIENT6, .node = NP_NODE6, .be = NP_BE6,
	.localbe = NP_LOCALBE6, .fe = DSR_FE6, .tag = "DSR6", .mss = 1440,
	.grow = KPX_DSR6_HDR_LEN, .bid = 51, .svc = 21,
};

/* Puts the family's DSR option (IPv4) or header (IPv6) naming fe:port
 * into buf (24 bytes) and attaches it to t. */
static void dsr_attach(const struct dsr_fam *f, struct np_tuple *t,
		       uint8_t *buf, const char *fe, uint16_t port)
{
	if (f->af == AF_INET) {
		dsr_opt(buf, fe, port);
		t->ip_opt = buf;
	} else {
		dsr6_hdr(buf, fe, port);
		t->ip6_dstopt = buf;
	}
}

/*
 * Frontend node, eTP=Cluster, remote backend: client -> node:FE becomes
 * client -> be:BE (client address kept, L4 checksum fixed for the new
 * destination) with the DSR option (IPv4: IHL/total length/header
 * checksum right) or the Destination Options header after the IPv6
 * header (next header 60, payload length +24); one conntrack entry (no
 * reply entry, no SNAT port); the next packets (FIB path, then the
 * next-hop cache) carry it too.
 */
static void dsr_fwd_case(const struct dsr_fam *f, uint8_t proto)
{
	uint32_t bid = f->bid;
	uint8_t in[256], out[256], want[256], x[24];
	size_t il, ol, wl;
	char what[64];
	int rc;

	np_set_dp_flags(KPX_DP_F_DSR);
	np_add_backend(bid, f->af, f->be, BE_PORT, proto, false);
	np_add_service(f->af, f->node, FE_PORT, proto, f->svc, KPX_SVC_F_SNAT,
		       &bid, 1);
	struct np_tuple t = { .family = f->af, .proto = proto,
			      .src = f->client, .dst = f->node,
			      .sport = CL_PORT, .dport = FE_PORT,
			      .tcp_flags = 0x02, .seq = 1000, .payload = 5,
			      .mss = f->mss /* the client's SYN: left alone */ };
	il = np_build(in, &t);
	ol = sizeof(out);
	rc = np_run("in", in, il, out, &ol);
	cr_assert_eq(rc, TC_REDIRECT, "forward verdict %d", rc);
	cr_assert_eq(np_ct_count(), 1, "DSR keeps one entry, got %u",
		     np_ct_count());
	struct np_tuple e = t;
	e.dst = f->be;
	e.dport = BE_PORT;
	e.smac = np_mac_dev;
	e.dmac = np_mac_be;
	dsr_attach(f, &e, x, f->node, FE_PORT);
	wl = np_build(want, &e);
	cr_assert_eq(ol, il + f->grow, "frame did not grow by %u: %zu -> %zu",
		     f->grow, il, ol);
	snprintf(what, sizeof(what), "%s forward (new flow)", f->tag);
	expect_frame(out, ol, want, wl, what);
	cr_assert(np_csum_ok(out, ol), "L4 checksum");

	t.mss = e.mss = 0;
	t.tcp_flags = e.tcp_flags = 0x10;
	t.seq = e.seq = 1001;
	il = np_build(in, &t);
	wl = np_build(want, &e);
	for (int i = 0; i < 2; i++) {
		ol = sizeof(out);
		rc = np_run("in", in, il, out, &ol);
		cr_assert_eq(rc, TC_REDIRECT);
		snprintf(what, sizeof(what), "%s forward (%s)", f->tag,
			 i ? "cached next hop" : "established");
		expect_frame(out, ol, want, wl, what);
	}
	cr_assert_eq(np_ct_count(), 1);
	cr_assert_eq(np_drops(KPX_DROP_SNAT_EXHAUSTED), 0);
}

Test(nodeport, dsr_fwd_v4_tcp) { NP_REQUIRE(); dsr_fwd_case(&dsr_v4, IPPROTO_TCP); }
Test(nodeport, dsr_fwd_v4_udp) { NP_REQUIRE(); dsr_fwd_case(&dsr_v4, IPPROTO_UDP); }
Test(nodeport, dsr_fwd_v6_tcp) { NP_REQUIRE(); dsr_fwd_case(&dsr_v6, IPPROTO_TCP); }
Test(nodeport, dsr_fwd_v6_udp) { NP_REQUIRE(); dsr_fwd_case(&dsr_v6, IPPROTO_UDP); }

/* XDP leaves DSR flows to tc (it cannot grow the packet the same way):
 * untouched, no state. */
static void dsr_xdp_passes_case(const struct dsr_fam *f)
{
	uint32_t bid = f->bid + 1;
	uint8_t in[256], out[256];
	size_t il, ol;

	np_set_dp_flags(KPX_DP_F_DSR);
	np_add_backend(bid, f->af, f->be, BE_PORT, IPPROTO_TCP, false);
	np_add_service(f->af, f->node, FE_PORT, IPPROTO_TCP, f->svc + 1,
		       KPX_SVC_F_SNAT, &bid, 1);
	struct np_tuple t = { .family = f->af, .proto = IPPROTO_TCP,
			      .src = f->client, .dst = f->node,
			      .sport = CL_PORT, .dport = FE_PORT,
			      .tcp_flags = 0x02 };
	il = np_build(in, &t);
	ol = sizeof(out);
	cr_assert_eq(np_run("xdp", in, il, out, &ol), XDP_PASS_);
	cr_assert(ol == il && !memcmp(in, out, il), "XDP modified the frame");
	cr_assert_eq(np_ct_count(), 0);
}

Test(nodeport, dsr_xdp_passes_to_tc) { NP_REQUIRE(); dsr_xdp_passes_case(&dsr_v4); }
Test(nodeport, dsr6_xdp_passes_to_tc) { NP_REQUIRE(); dsr_xdp_passes_case(&dsr_v6); }

/*
 * Backend node: the client's packet with the DSR option/header, to a
 * local pod, passes untouched (the pod ignores it) and leaves a reply
 * entry naming the frontend; the pod's SYN-ACK, on the pod-side device,
 * leaves as frontend -> client toward the client's MAC, without going
 * back through the frontend node, its MSS lowered by what the frontend
 * node adds to the client's segments (8 bytes, IPv6: 24).
 */
static void dsr_rev_case(const struct dsr_fam *f, uint8_t proto)
{
	uint8_t in[256], out[256], want[256], x[24];
	size_t il, ol, wl;
	int rc;

	np_set_dp_flags(KPX_DP_F_DSR);
	struct np_tuple t = { .family = f->af, .proto = proto,
			      .src = f->client, .dst = f->localbe,
			      .sport = CL_PORT, .dport = BE_PORT,
			      .tcp_flags = 0x02, .seq = 10, .payload = 6 };
	dsr_attach(f, &t, x, f->fe, FE_PORT);
	il = np_build(in, &t);
	ol = sizeof(out);
	rc = np_run("in", in, il, out, &ol);
	cr_assert_eq(rc, TC_OK, "%s packet verdict %d", f->tag, rc);
	cr_assert(ol == il && !memcmp(in, out, il),
		  "packet to the pod was modified");
	cr_assert_eq(np_ct_count(), 1, "no reply entry learnt");
	{
		struct kpx_ct_key k = { .sport = htons(BE_PORT),
					.dport = htons(CL_PORT),
					.proto = proto, .family = f->af,
					.dir = 1 };
		struct kpx_ct_value v;
		uint8_t fe[16] = { 0 };

		inet_pton(f->af, f->localbe, k.saddr);
		inet_pton(f->af, f->client, k.daddr);
		cr_assert_eq(bpf_map_lookup_elem(
				     bpf_map__fd(npf.skel->maps.kpx_ct), &k,
				     &v),
			     0, "reply entry missing");
		cr_assert_eq(v.new_sport, htons(FE_PORT));
		inet_pton(f->af, f->fe, fe);
		cr_assert(!memcmp(v.new_saddr, fe,
				  f->af == AF_INET ? 4 : 16),
			  "frontend address");
	}

	struct np_tuple r = { .family = f->af, .proto = proto,
			      .src = f->localbe, .dst = f->client,
			      .sport = BE_PORT, .dport = CL_PORT,
			      .tcp_flags = 0x12, .seq = 70, .ack = 11,
			      .smac = np_mac_localbe, .dmac = np_mac_pod_dev,
			      .payload = 2, .mss = f->mss };
	il = np_build(in, &r);
	npf.run_ifindex = npf.pod_ifindex;
	for (int i = 0; i < 2; i++) {
		ol = sizeof(out);
		rc = np_run("in", in, il, out, &ol);
		cr_assert_eq(rc, TC_REDIRECT, "pod reply verdict %d", rc);
		struct np_tuple re = r;
		re.src = f->fe;
		re.sport = FE_PORT;
		re.smac = np_mac_dev;
		re.dmac = np_mac_client;
		/* SYN-ACK: the client's segments grow on the frontend
		 * node, so it is told that much less (1452 / 1416) */
		re.mss = f->mss - f->grow;
		wl = np_build(want, &re);
		expect_frame(out, ol, want, wl, "pod reply from the frontend");
	}
	npf.run_ifindex = 0;
	/* the client's next packet refreshes the entry, adds none */
	t.tcp_flags = 0x10;
	il = np_build(in, &t);
	ol = sizeof(out);
	cr_assert_eq(np_run("in", in, il, out, &ol), TC_OK);
	cr_assert_eq(np_ct_count(), 1);
}

Test(nodeport, dsr_rev_v4_tcp) { NP_REQUIRE(); dsr_rev_case(&dsr_v4, IPPROTO_TCP); }
Test(nodeport, dsr_rev_v4_udp) { NP_REQUIRE(); dsr_rev_case(&dsr_v4, IPPROTO_UDP); }
Test(nodeport, dsr_rev_v6_tcp) { NP_REQUIRE(); dsr_rev_case(&dsr_v6, IPPROTO_TCP); }
Test(nodeport, dsr_rev_v6_udp) { NP_REQUIRE(); dsr_rev_case(&dsr_v6, IPPROTO_UDP); }

/* A Destination Options header with another option is not ours: the
 * packet goes to the stack untouched, nothing learnt. */
Test(nodeport, dsr6_other_option_ignored)
{
	uint8_t in[256], out[256], x[24];
	size_t il, ol;

	NP_REQUIRE();
	np_set_dp_flags(KPX_DP_F_DSR);
	dsr6_hdr(x, DSR_FE6, FE_PORT);
	x[2] = 0x1f;
	struct np_tuple t = { .family = AF_INET6, .proto = IPPROTO_UDP,
			      .src = NP_CLIENT6, .dst = NP_LOCALBE6,
			      .sport = CL_PORT, .dport = BE_PORT, .payload = 3,
			      .ip6_dstopt = x };
	il = np_build(in, &t);
	ol = sizeof(out);
	cr_assert_eq(np_run("in", in, il, out, &ol), TC_OK);
	cr_assert(ol == il && !memcmp(in, out, il));
	cr_assert_eq(np_ct_count(), 0);
}

/* SNAT mode: a well-formed DSR option/header teaches nothing (else
 * anyone could install a reply translation); the packet goes to the
 * stack untouched. */
static void dsr_opt_snat_mode_case(const struct dsr_fam *f)
{
	uint8_t in[256], out[256], x[24];
	size_t il, ol;

	struct np_tuple t = { .family = f->af, .proto = IPPROTO_UDP,
			      .src = f->client, .dst = f->localbe,
			      .sport = CL_PORT, .dport = BE_PORT,
			      .payload = 3 };
	dsr_attach(f, &t, x, f->fe, FE_PORT);
	il = np_build(in, &t);
	ol = sizeof(out);
	cr_assert_eq(np_run("in", in, il, out, &ol), TC_OK);
	cr_assert(ol == il && !memcmp(in, out, il));
	cr_assert_eq(np_ct_count(), 0, "nothing learnt in SNAT mode");
}

Test(nodeport, dsr_opt_snat_mode_v4) { NP_REQUIRE(); dsr_opt_snat_mode_case(&dsr_v4); }
Test(nodeport, dsr_opt_snat_mode_v6) { NP_REQUIRE(); dsr_opt_snat_mode_case(&dsr_v6); }

/* DSR mode, eTP=Cluster IPv6 to a remote backend no longer needs SNAT:
 * with the flag off the same service is SNATed (two entries). */
Test(nodeport, dsr_flag_off_ipv6_snat)
{
	NP_REQUIRE();
	np_set_dp_flags(0);
	snat_case(&F6, IPPROTO_TCP, "in");
}
