/* SPDX-License-Identifier: Apache-2.0 */
/*
 * NodePort datapath, hostile and unusual frames (issue 13 items 4 and
 * 7), with BPF_PROG_TEST_RUN:
 *  - malformed frames (bad IPv4 version/IHL/header checksum, lengths
 *    inconsistent with the frame, truncated L3/L4 headers, TCP data
 *    offset < 5, bad UDP length, IPv6 payload length and extension
 *    header chains): a table of mutations of a valid frame to a NodePort;
 *    every row must leave tc ingress, XDP and tc egress untouched
 *    (TC_ACT_OK / XDP_PASS: the stack, which drops them itself) and
 *    create no conntrack entry, SNAT port claim or fragment record;
 *  - IP fragments: first and later fragments of a UDP datagram get the
 *    same translation, forward and reply, tc and XDP, IPv4 and IPv6; a
 *    later fragment overtaking its first one is passed on untouched;
 *  - IPv6 extension headers (hop-by-hop, routing, destination options,
 *    fragment) are stepped over and the packet translated.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <criterion/criterion.h>

#include "bpf/nodeport.skel.h"
#include "np_fixture.h"
#include "np_pkt.h"

#define TC_OK 0
#define TC_REDIRECT 7
#define XDP_PASS_ 2
#define XDP_TX_ 3

#define FE_PORT 30080
#define BE_PORT 8080
#define CL_PORT 51000

TestSuite(np_packets, .init = np_setup, .fini = np_teardown);

static unsigned int map_count(int fd, size_t ksz)
{
	uint8_t k[64], n[64];
	void *prev = NULL;
	unsigned int c = 0;

	while (!bpf_map_get_next_key(fd, prev, n)) {
		memcpy(k, n, ksz);
		prev = k;
		c++;
	}
	return c;
}

static unsigned int frag_count(void)
{
	return map_count(bpf_map__fd(npf.skel->maps.kpx_frag),
			 sizeof(struct kpx_frag_key));
}

static void clear_ct(void)
{
	struct kpx_ct_key k;
	int fd = bpf_map__fd(npf.skel->maps.kpx_ct);

	while (!bpf_map_get_next_key(fd, NULL, &k))
		bpf_map_delete_elem(fd, &k);
}

/* A valid frame client -> node:FE, and a remote-backend SNAT service
 * for it (and, for the egress path, a local eTP=Local flow). */
static size_t base_frame(int af, uint8_t proto, uint8_t *buf, size_t payload)
{
	const bool v6 = af == AF_INET6;
	struct np_tuple t = { .family = af, .proto = proto,
			      .src = v6 ? NP_CLIENT6 : NP_CLIENT4,
			      .dst = v6 ? NP_NODE6 : NP_NODE4,
			      .sport = CL_PORT, .dport = FE_PORT,
			      .tcp_flags = 0x02, .seq = 7,
			      .payload = payload };

	return np_build(buf, &t);
}

static void snat_service(int af, uint8_t proto)
{
	const bool v6 = af == AF_INET6;
	uint32_t bid = v6 ? 61 : 60;

	np_add_backend(bid, af, v6 ? NP_BE6 : NP_BE4, BE_PORT, proto, false);
	np_add_service(af, v6 ? NP_NODE6 : NP_NODE4, FE_PORT, proto,
		       v6 ? 31 : 30, KPX_SVC_F_SNAT, &bid, 1);
}

/* ---- item 7: malformed frames never create state ---- */

struct mutation {
	const char *name;
	int af;		/* AF_INET / AF_INET6 */
	uint8_t proto;
	/* changes the frame; returns its new length */
	size_t (*fn)(uint8_t *f, size_t len);
};

#define IP(f) ((f) + 14)
static size_t l3len(const uint8_t *f)
{
	return np_get16(f + 12) == 0x86dd ? 40 : (IP(f)[0] & 0xf) * 4u;
}
#define L4(f) (IP(f) + l3len(f))

static size_t m_version(uint8_t *f, size_t len)
{
	IP(f)[0] = (uint8_t)((IP(f)[0] & 0x0f) | 0x50);
	np_ip4_fix_csum(f, len);
	return len;
}
static size_t m_ihl4(uint8_t *f, size_t len)
{
	IP(f)[0] = 0x44;
	np_ip4_fix_csum(f, len);
	return len;
}
static size_t m_ihl_past_frame(uint8_t *f, size_t len)
{
	/* IHL 15 (60 bytes) in a frame that ends after 40 */
	IP(f)[0] = 0x4f;
	np_put16(IP(f) + 2, 40);
	np_ip4_fix_csum(f, len);
	return 14 + 40;
}
static size_t m_csum(uint8_t *f, size_t len)
{
	IP(f)[10] ^= 0x5a;
	return len;
}
static size_t m_totlen_long(uint8_t *f, size_t len)
{
	/* the frame lost its last 4 bytes; the header still counts them */
	(void)f;
	return len - 4;
}
static size_t m_totlen_big(uint8_t *f, size_t len)
{
	np_put16(IP(f) + 2, 1500);
	np_ip4_fix_csum(f, len);
	return len;
}
static size_t m_totlen_below_ihl(uint8_t *f, size_t len)
{
	np_put16(IP(f) + 2, 19);
	np_ip4_fix_csum(f, len);
	return len;
}
static size_t m_totlen_below_l4(uint8_t *f, size_t len)
{
	/* total length ends inside the L4 header (frame padded on) */
	np_put16(IP(f) + 2, (uint16_t)(l3len(f) + 6));
	np_ip4_fix_csum(f, len);
	return len;
}
static size_t m_trunc_l4(uint8_t *f, size_t len)
{
	/* consistent lengths, but the frame ends 6 bytes into L4 */
	size_t n = 14 + l3len(f) + 6;

	if (np_get16(f + 12) == 0x86dd) {
		np_put16(IP(f) + 4, 6);
	} else {
		np_put16(IP(f) + 2, (uint16_t)(l3len(f) + 6));
		np_ip4_fix_csum(f, len);
	}
	return n;
}
static size_t m_doff4(uint8_t *f, size_t len)
{
	L4(f)[12] = 0x40;
	return len;
}
static size_t m_doff_past(uint8_t *f, size_t len)
{
	L4(f)[12] = 0xf0; /* 60 bytes in a 20-byte segment */
	return len;
}
static size_t m_udp_len_short(uint8_t *f, size_t len)
{
	np_put16(L4(f) + 4, 7);
	return len;
}
static size_t m_udp_len_long(uint8_t *f, size_t len)
{
	np_put16(L4(f) + 4, 900);
	return len;
}
static size_t m_ip6_version(uint8_t *f, size_t len)
{
	IP(f)[0] = 0x40;
	return len;
}
static size_t m_ip6_plen_big(uint8_t *f, size_t len)
{
	np_put16(IP(f) + 4, (uint16_t)(np_get16(IP(f) + 4) + 1));
	return len;
}
static size_t m_ip6_plen_small(uint8_t *f, size_t len)
{
	np_put16(IP(f) + 4, 4);
	return len;
}
static size_t m_ip6_hbh_second(uint8_t *f, size_t len)
{
	uint8_t x[8] = { 0, 0, 1, 4, 0, 0, 0, 0 };

	len = np_ip6_insert_ext(f, len, 0, x, 8);
	return np_ip6_insert_ext(f, len, 60, x, 8);
}
static size_t m_ip6_ext_past_payload(uint8_t *f, size_t len)
{
	uint8_t x[8] = { 0, 30, 1, 4, 0, 0, 0, 0 }; /* claims 248 bytes */

	return np_ip6_insert_ext(f, len, 60, x, 8);
}
static size_t m_ip6_routing_segs_left(uint8_t *f, size_t len)
{
	uint8_t x[24] = { 0, 2, 0, 1 }; /* type 0, 1 segment left */

	inet_pton(AF_INET6, "fd00::99", x + 8);
	return np_ip6_insert_ext(f, len, 43, x, 24);
}
static size_t m_ip6_too_many_ext(uint8_t *f, size_t len)
{
	uint8_t x[8] = { 0, 0, 1, 4, 0, 0, 0, 0 };

	for (int i = 0; i < 7; i++)
		len = np_ip6_insert_ext(f, len, 60, x, 8);
	return len;
}
static size_t m_ip6_trunc_ext(uint8_t *f, size_t len)
{
	uint8_t x[8] = { 0, 0, 1, 4, 0, 0, 0, 0 };

	(void)len;
	np_ip6_insert_ext(f, len, 60, x, 8);
	/* the frame ends 4 bytes into the extension header */
	np_put16(IP(f) + 4, 4);
	return 14 + 40 + 4;
}
static size_t m_frag_first_short(uint8_t *f, size_t len)
{
	/* a first fragment too short for the TCP header (RFC 1858) */
	np_put16(IP(f) + 6, 0x2000);
	np_put16(IP(f) + 2, 20 + 8);
	np_ip4_fix_csum(f, len);
	return 14 + 28;
}

static const struct mutation mutations[] = {
	{ "ipv4 version 5", AF_INET, IPPROTO_TCP, m_version },
	{ "ipv4 IHL 4", AF_INET, IPPROTO_TCP, m_ihl4 },
	{ "ipv4 IHL past the frame", AF_INET, IPPROTO_UDP, m_ihl_past_frame },
	{ "ipv4 bad header checksum", AF_INET, IPPROTO_TCP, m_csum },
	{ "ipv4 bad header checksum udp", AF_INET, IPPROTO_UDP, m_csum },
	{ "ipv4 total length > frame", AF_INET, IPPROTO_TCP, m_totlen_long },
	{ "ipv4 total length 1500", AF_INET, IPPROTO_UDP, m_totlen_big },
	{ "ipv4 total length < IHL", AF_INET, IPPROTO_TCP,
	  m_totlen_below_ihl },
	{ "ipv4 total length < L4 header", AF_INET, IPPROTO_TCP,
	  m_totlen_below_l4 },
	{ "ipv4 total length < UDP header", AF_INET, IPPROTO_UDP,
	  m_totlen_below_l4 },
	{ "ipv4 truncated TCP header", AF_INET, IPPROTO_TCP, m_trunc_l4 },
	{ "ipv4 truncated UDP header", AF_INET, IPPROTO_UDP, m_trunc_l4 },
	{ "tcp data offset 4", AF_INET, IPPROTO_TCP, m_doff4 },
	{ "tcp data offset past segment", AF_INET, IPPROTO_TCP, m_doff_past },
	{ "udp length 7", AF_INET, IPPROTO_UDP, m_udp_len_short },
	{ "udp length > datagram", AF_INET, IPPROTO_UDP, m_udp_len_long },
	{ "ipv4 first fragment without TCP header", AF_INET, IPPROTO_TCP,
	  m_frag_first_short },
	{ "ipv6 version 4", AF_INET6, IPPROTO_TCP, m_ip6_version },
	{ "ipv6 payload length > frame", AF_INET6, IPPROTO_UDP,
	  m_ip6_plen_big },
	{ "ipv6 payload length < L4 header", AF_INET6, IPPROTO_TCP,
	  m_ip6_plen_small },
	{ "ipv6 truncated TCP header", AF_INET6, IPPROTO_TCP, m_trunc_l4 },
	{ "ipv6 truncated UDP header", AF_INET6, IPPROTO_UDP, m_trunc_l4 },
	{ "ipv6 tcp data offset 4", AF_INET6, IPPROTO_TCP, m_doff4 },
	{ "ipv6 udp length > datagram", AF_INET6, IPPROTO_UDP,
	  m_udp_len_long },
	{ "ipv6 hop-by-hop not first", AF_INET6, IPPROTO_UDP,
	  m_ip6_hbh_second },
	{ "ipv6 extension header past payload", AF_INET6, IPPROTO_UDP,
	  m_ip6_ext_past_payload },
	{ "ipv6 routing header, segments left 1", AF_INET6, IPPROTO_UDP,
	  m_ip6_routing_segs_left },
	{ "ipv6 seven extension headers", AF_INET6, IPPROTO_UDP,
	  m_ip6_too_many_ext },
	{ "ipv6 truncated extension header", AF_INET6, IPPROTO_UDP,
	  m_ip6_trunc_ext },
};

/* Runs frame through prog and asserts: untouched pass verdict, output
 * identical, no conntrack entry or fragment record created. */
static void expect_untouched(const char *prog, const char *what,
			     const uint8_t *in, size_t il)
{
	uint8_t out[512];
	size_t ol = sizeof(out);
	unsigned int ct0 = np_ct_count(), fr0 = frag_count();
	int rc = np_run(prog, in, il, out, &ol);

	cr_expect_eq(rc, !strcmp(prog, "xdp") ? XDP_PASS_ : TC_OK,
		     "%s: %s: verdict %d, want pass to the stack", prog, what,
		     rc);
	cr_expect(ol == il && !memcmp(in, out, il),
		  "%s: %s: frame modified (len %zu -> %zu)", prog, what, il,
		  ol);
	cr_expect_eq(np_ct_count(), ct0, "%s: %s: conntrack/SNAT state created",
		     prog, what);
	cr_expect_eq(frag_count(), fr0, "%s: %s: fragment record created",
		     prog, what);
}

/* The valid frame acts (so that the table can fail), and every mutation
 * of it is left alone by tc ingress, XDP, and tc egress with a matching
 * local flow (the egress path translates replies). */
Test(np_packets, malformed_frames_create_no_state)
{
	uint8_t in[512], out[512];
	size_t il, ol;

	NP_REQUIRE();
	snat_service(AF_INET, IPPROTO_TCP);
	snat_service(AF_INET, IPPROTO_UDP);
	snat_service(AF_INET6, IPPROTO_TCP);
	snat_service(AF_INET6, IPPROTO_UDP);
	for (size_t i = 0; i < sizeof(mutations) / sizeof(mutations[0]);
	     i++) {
		const struct mutation *m = &mutations[i];

		il = base_frame(m->af, m->proto, in, 12);
		/* the unmutated frame is translated */
		ol = sizeof(out);
		cr_assert_eq(np_run("in", in, il, out, &ol), TC_REDIRECT,
			     "%s: the valid frame is not translated", m->name);
		cr_assert_gt(np_ct_count(), 0);
		clear_ct(); /* clean slate for the mutated one */
		il = m->fn(in, il);
		cr_assert_eq(np_classify(in, il), NP_V_UNTOUCHED,
			     "%s: the reference validator accepts it", m->name);
		expect_untouched("in", m->name, in, il);
		expect_untouched("xdp", m->name, in, il);
		cr_expect_eq(np_ct_count(), 0, "%s: state created", m->name);
		fprintf(stderr, "malformed: %s: %s\n", m->name,
			np_ct_count() ? "STATE CREATED" : "no state");
		clear_ct();
	}
}

/* tc egress: a local backend's reply (eTP=Local flow in conntrack) that
 * is malformed leaves untranslated. */
Test(np_packets, malformed_local_replies_untouched_on_egress)
{
	uint8_t in[512], out[512];
	uint32_t bid = 62;
	size_t il, ol;

	NP_REQUIRE();
	np_add_backend(bid, AF_INET, NP_LOCALBE4, BE_PORT, IPPROTO_UDP, true);
	np_add_service(AF_INET, NP_NODE4, FE_PORT, IPPROTO_UDP, 32,
		       KPX_SVC_F_LOCAL_ONLY, &bid, 1);
	il = base_frame(AF_INET, IPPROTO_UDP, in, 4);
	ol = sizeof(out);
	cr_assert_eq(np_run("in", in, il, out, &ol), TC_OK);
	cr_assert_eq(np_ct_count(), 2);
	struct np_tuple r = { .family = AF_INET, .proto = IPPROTO_UDP,
			      .src = NP_LOCALBE4, .dst = NP_CLIENT4,
			      .sport = BE_PORT, .dport = CL_PORT,
			      .payload = 12 };
	for (size_t i = 0; i < sizeof(mutations) / sizeof(mutations[0]);
	     i++) {
		const struct mutation *m = &mutations[i];

		if (m->af != AF_INET || m->proto != IPPROTO_UDP)
			continue;
		il = np_build(in, &r);
		ol = sizeof(out);
		cr_assert_eq(np_run("out", in, il, out, &ol), TC_OK);
		cr_assert(memcmp(in, out, il), "valid reply not translated");
		il = m->fn(in, il);
		expect_untouched("out", m->name, in, il);
	}
	cr_assert_eq(np_ct_count(), 2);
}

/* ---- item 4: fragments ---- */

struct fam {
	int af;
	const char *node, *be, *client;
};
static const struct fam F4 = { AF_INET, NP_NODE4, NP_BE4, NP_CLIENT4 };
static const struct fam F6 = { AF_INET6, NP_NODE6, NP_BE6, NP_CLIENT6 };

static void addr_is(const struct fam *f, const uint8_t *got, const char *want,
		    const char *what)
{
	uint8_t a[16];

	inet_pton(f->af, want, a);
	cr_assert(!memcmp(got, a, f->af == AF_INET ? 4 : 16), "%s: not %s",
		  what, want);
}

static const uint8_t *src_of(const struct fam *f, const uint8_t *fr)
{
	return IP(fr) + (f->af == AF_INET ? 12 : 8);
}
static const uint8_t *dst_of(const struct fam *f, const uint8_t *fr)
{
	return IP(fr) + (f->af == AF_INET ? 16 : 24);
}
/* L3 payload of a fragment (after the Fragment header for IPv6) */
static const uint8_t *frag_payload(const struct fam *f, const uint8_t *fr)
{
	return IP(fr) + (f->af == AF_INET ? 20 : 48);
}

/*
 * A 600-byte UDP datagram from the client in three fragments (the first
 * holds the UDP header); first -> later -> later: all three leave toward
 * the backend with the same SNAT translation (addresses in every one,
 * ports and checksum in the first), the reassembled datagram's checksum
 * is right; two conntrack entries, one fragment record. Then the
 * backend's fragmented reply goes back to the client as node:FE.
 */
static void frag_case(const struct fam *f, const char *prog)
{
	const bool xdp = !strcmp(prog, "xdp");
	const int fwd = xdp ? XDP_TX_ : TC_REDIRECT;
	const size_t cuts[3][2] = { { 0, 208 }, { 208, 208 }, { 416, 184 } };
	uint8_t whole[1024], fr[3][1024], out[3][1024];
	const uint8_t *outs[3];
	size_t wl, fl[3], ol[3];
	uint16_t port;
	int rc;

	snat_service(f->af, IPPROTO_UDP);
	wl = base_frame(f->af, IPPROTO_UDP, whole, 600 - 8);
	for (int i = 0; i < 3; i++) {
		fl[i] = np_fragment(whole, wl, cuts[i][0], cuts[i][1], i < 2,
				    0x4242, fr[i]);
		cr_assert_eq(np_classify(fr[i], fl[i]), NP_V_ACT);
		ol[i] = sizeof(out[i]);
		rc = np_run(prog, fr[i], fl[i], out[i], &ol[i]);
		cr_assert_eq(rc, fwd, "fragment %d: verdict %d", i, rc);
		cr_assert_eq(ol[i], fl[i], "fragment %d changed size", i);
		addr_is(f, src_of(f, out[i]), f->node, "fragment source");
		addr_is(f, dst_of(f, out[i]), f->be, "fragment destination");
		cr_assert(!memcmp(out[i], np_mac_be, 6), "fragment %d MAC", i);
		if (f->af == AF_INET)
			cr_assert(np_ip4_csum_ok(out[i], ol[i]),
				  "fragment %d header checksum", i);
		if (i)
			cr_assert(!memcmp(frag_payload(f, out[i]),
					  frag_payload(f, fr[i]), cuts[i][1]),
				  "later fragment payload changed");
		outs[i] = out[i];
	}
	{
		const uint8_t *ins[3] = { fr[0], fr[1], fr[2] };

		cr_assert(np_reassemble_ok(ins, fl, 3, NULL, NULL),
			  "test input: bad reassembled checksum");
	}
	cr_assert_eq(np_ct_count(), 2, "one flow: two entries, got %u",
		     np_ct_count());
	cr_assert_eq(frag_count(), 1);
	port = np_get16(frag_payload(f, out[0]));
	cr_assert(port >= 40000 && port <= 40099, "SNAT port %u", port);
	cr_assert_eq(np_get16(frag_payload(f, out[0]) + 2), BE_PORT);
	cr_assert(np_reassemble_ok(outs, ol, 3, NULL, NULL),
		  "reassembled datagram: bad UDP checksum");

	/* the backend's fragmented reply, through the SNAT reverse path */
	struct np_tuple r = { .family = f->af, .proto = IPPROTO_UDP,
			      .src = f->be, .dst = f->node, .sport = BE_PORT,
			      .dport = port, .smac = np_mac_be,
			      .payload = 600 - 8 };
	wl = np_build(whole, &r);
	for (int i = 0; i < 3; i++) {
		fl[i] = np_fragment(whole, wl, cuts[i][0], cuts[i][1], i < 2,
				    0x77, fr[i]);
		ol[i] = sizeof(out[i]);
		rc = np_run(prog, fr[i], fl[i], out[i], &ol[i]);
		cr_assert_eq(rc, fwd, "reply fragment %d: verdict %d", i, rc);
		addr_is(f, src_of(f, out[i]), f->node, "reply source");
		addr_is(f, dst_of(f, out[i]), f->client, "reply destination");
		cr_assert(!memcmp(out[i], np_mac_client, 6));
		if (f->af == AF_INET)
			cr_assert(np_ip4_csum_ok(out[i], ol[i]));
	}
	cr_assert_eq(np_get16(frag_payload(f, out[0])), FE_PORT);
	cr_assert_eq(np_get16(frag_payload(f, out[0]) + 2), CL_PORT);
	cr_assert(np_reassemble_ok(outs, ol, 3, NULL, NULL),
		  "reassembled reply: bad UDP checksum");
	cr_assert_eq(np_ct_count(), 2);
	cr_assert_eq(frag_count(), 2);
}

Test(np_packets, frag_v4_udp_tc) { NP_REQUIRE(); frag_case(&F4, "in"); }
Test(np_packets, frag_v6_udp_tc) { NP_REQUIRE(); frag_case(&F6, "in"); }
Test(np_packets, frag_v4_udp_xdp) { NP_REQUIRE(); frag_case(&F4, "xdp"); }
Test(np_packets, frag_v6_udp_xdp) { NP_REQUIRE(); frag_case(&F6, "xdp"); }

/*
 * Out of order: a later fragment that overtakes its first one is not
 * known yet; it is passed to the stack untouched (it may belong to a
 * datagram for the node itself) and creates nothing. The first fragment
 * then starts the flow, and later fragments after it are translated.
 */
static void frag_out_of_order_case(const struct fam *f)
{
	uint8_t whole[1024], f0[1024], f1[1024], out[1024];
	size_t wl, l0, l1, ol;

	snat_service(f->af, IPPROTO_UDP);
	wl = base_frame(f->af, IPPROTO_UDP, whole, 400 - 8);
	l0 = np_fragment(whole, wl, 0, 200, true, 9, f0);
	l1 = np_fragment(whole, wl, 200, 200, false, 9, f1);
	expect_untouched("in", "later fragment before the first", f1, l1);
	expect_untouched("xdp", "later fragment before the first", f1, l1);
	cr_assert_eq(np_ct_count(), 0);
	ol = sizeof(out);
	cr_assert_eq(np_run("in", f0, l0, out, &ol), TC_REDIRECT);
	ol = sizeof(out);
	cr_assert_eq(np_run("in", f1, l1, out, &ol), TC_REDIRECT,
		     "later fragment after its first one");
	addr_is(f, dst_of(f, out), f->be, "later fragment destination");
	/* another datagram's later fragment (other id): still not ours */
	np_fragment(whole, wl, 200, 200, false, 10, f1);
	expect_untouched("in", "later fragment of an unknown datagram", f1,
			 l1);
}

Test(np_packets, frag_v4_later_before_first_passes)
{
	NP_REQUIRE();
	frag_out_of_order_case(&F4);
}
Test(np_packets, frag_v6_later_before_first_passes)
{
	NP_REQUIRE();
	frag_out_of_order_case(&F6);
}

/* eTP=Local, local backend: the client's fragments are DNATed to the
 * pod (to the stack); the pod's fragmented reply leaving through tc
 * egress gets the frontend back in every fragment. */
static void frag_local_case(const struct fam *f, const char *localbe)
{
	uint8_t whole[1024], fr[2][1024], out[2][1024];
	const uint8_t *outs[2] = { out[0], out[1] };
	size_t wl, fl[2], ol[2];
	uint32_t bid = 63;

	np_add_backend(bid, f->af, localbe, BE_PORT, IPPROTO_UDP, true);
	np_add_service(f->af, f->node, FE_PORT, IPPROTO_UDP, 33,
		       KPX_SVC_F_LOCAL_ONLY, &bid, 1);
	wl = base_frame(f->af, IPPROTO_UDP, whole, 300 - 8);
	for (int i = 0; i < 2; i++) {
		fl[i] = np_fragment(whole, wl, i * 152, i ? 148 : 152, !i, 5,
				    fr[i]);
		ol[i] = sizeof(out[i]);
		cr_assert_eq(np_run("in", fr[i], fl[i], out[i], &ol[i]), TC_OK);
		addr_is(f, dst_of(f, out[i]), localbe, "DNAT to the pod");
		addr_is(f, src_of(f, out[i]), f->client, "client kept");
	}
	cr_assert(np_reassemble_ok(outs, ol, 2, NULL, NULL));
	struct np_tuple r = { .family = f->af, .proto = IPPROTO_UDP,
			      .src = localbe, .dst = f->client,
			      .sport = BE_PORT, .dport = CL_PORT,
			      .payload = 300 - 8 };
	wl = np_build(whole, &r);
	for (int i = 0; i < 2; i++) {
		fl[i] = np_fragment(whole, wl, i * 152, i ? 148 : 152, !i, 6,
				    fr[i]);
		ol[i] = sizeof(out[i]);
		cr_assert_eq(np_run("out", fr[i], fl[i], out[i], &ol[i]),
			     TC_OK);
		addr_is(f, src_of(f, out[i]), f->node, "reply source");
	}
	cr_assert_eq(np_get16(frag_payload(f, out[0])), FE_PORT);
	cr_assert(np_reassemble_ok(outs, ol, 2, NULL, NULL));
}

Test(np_packets, frag_v4_local_egress)
{
	NP_REQUIRE();
	frag_local_case(&F4, NP_LOCALBE4);
}
Test(np_packets, frag_v6_local_egress)
{
	NP_REQUIRE();
	frag_local_case(&F6, NP_LOCALBE6);
}

/* DSR mode: a flow whose first packet is a fragment takes the SNAT path
 * (the option has no room in fragments): two entries, sizes kept. */
Test(np_packets, frag_dsr_mode_uses_snat)
{
	uint8_t whole[1024], fr[1024], out[1024];
	size_t wl, fl, ol;

	NP_REQUIRE();
	np_set_dp_flags(KPX_DP_F_DSR);
	snat_service(AF_INET, IPPROTO_UDP);
	wl = base_frame(AF_INET, IPPROTO_UDP, whole, 400 - 8);
	fl = np_fragment(whole, wl, 0, 200, true, 3, fr);
	ol = sizeof(out);
	cr_assert_eq(np_run("in", fr, fl, out, &ol), TC_REDIRECT);
	cr_assert_eq(ol, fl, "the fragment grew");
	cr_assert_eq(np_ct_count(), 2, "expected the SNAT path");
}

/* ---- item 4: IPv6 extension headers ---- */

/* Hop-by-hop + routing (no segments left) + destination options before
 * UDP/TCP to a NodePort: translated like a plain packet, headers kept,
 * checksums right; the reply too. */
static void ext_case(uint8_t proto, const char *prog)
{
	const bool xdp = !strcmp(prog, "xdp");
	uint8_t in[512], out[512];
	uint8_t hbh[8] = { 0, 0, 1, 4, 0, 0, 0, 0 };   /* PadN */
	uint8_t rt[24] = { 0, 2, 0, 0 };	      /* segments left 0 */
	uint8_t dst[16] = { 0, 1, 1, 12 };	      /* PadN */
	size_t il, ol, off = 14 + 40 + 8 + 24 + 16;
	uint16_t port;

	snat_service(AF_INET6, proto);
	il = base_frame(AF_INET6, proto, in, 10);
	il = np_ip6_insert_ext(in, il, 60, dst, sizeof(dst));
	il = np_ip6_insert_ext(in, il, 43, rt, sizeof(rt));
	il = np_ip6_insert_ext(in, il, 0, hbh, sizeof(hbh));
	cr_assert_eq(np_classify(in, il), NP_V_ACT);
	ol = sizeof(out);
	cr_assert_eq(np_run(prog, in, il, out, &ol),
		     xdp ? XDP_TX_ : TC_REDIRECT);
	cr_assert_eq(ol, il);
	cr_assert(!memcmp(out + 54, in + 54, off - 54),
		  "extension headers changed");
	addr_is(&F6, out + 14 + 8, NP_NODE6, "source");
	addr_is(&F6, out + 14 + 24, NP_BE6, "destination");
	cr_assert_eq(np_get16(out + off + 2), BE_PORT);
	port = np_get16(out + off);
	cr_assert(np_l4_csum_ok(true, out + 22, out + 38, proto, out + off,
				il - off),
		  "L4 checksum");
	cr_assert_eq(np_ct_count(), 2);

	/* the backend's reply, with a destination options header */
	struct np_tuple r = { .family = AF_INET6, .proto = proto,
			      .src = NP_BE6, .dst = NP_NODE6,
			      .sport = BE_PORT, .dport = port,
			      .tcp_flags = 0x12, .smac = np_mac_be,
			      .payload = 3 };
	il = np_build(in, &r);
	il = np_ip6_insert_ext(in, il, 60, dst, sizeof(dst));
	ol = sizeof(out);
	cr_assert_eq(np_run(prog, in, il, out, &ol),
		     xdp ? XDP_TX_ : TC_REDIRECT);
	addr_is(&F6, out + 14 + 24, NP_CLIENT6, "reply destination");
	cr_assert_eq(np_get16(out + 14 + 40 + 16), FE_PORT);
	cr_assert(np_l4_csum_ok(true, out + 22, out + 38, proto,
				out + 14 + 40 + 16, il - 14 - 40 - 16));
}

Test(np_packets, ipv6_ext_headers_udp_tc) { NP_REQUIRE(); ext_case(IPPROTO_UDP, "in"); }
Test(np_packets, ipv6_ext_headers_tcp_tc) { NP_REQUIRE(); ext_case(IPPROTO_TCP, "in"); }
Test(np_packets, ipv6_ext_headers_udp_xdp) { NP_REQUIRE(); ext_case(IPPROTO_UDP, "xdp"); }
Test(np_packets, ipv6_ext_headers_tcp_xdp) { NP_REQUIRE(); ext_case(IPPROTO_TCP, "xdp"); }
