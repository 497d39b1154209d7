/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared fixture for the NodePort BPF_PROG_TEST_RUN tests: a private
 * network namespace with one veth (the "device") and static neighbours so
 * FIB lookups are deterministic, the nodeport skeleton loaded into a
 * unique pin root on bpffs, and packet builders that compute every
 * checksum from scratch (so comparing whole frames checks the datapath's
 * incremental updates).
 */
#ifndef KPX_TESTS_NP_FIXTURE_H
#define KPX_TESTS_NP_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bpf/kpx_abi.h"

struct nodeport;

#define NP_NODE4 "198.18.0.1"
#define NP_BE4 "198.18.0.2"	/* remote backend (neighbour) */
#define NP_CLIENT4 "198.18.0.3" /* external client (neighbour) */
#define NP_LOCALBE4 "198.18.5.10"
#define NP_NODE6 "fd00::1"
#define NP_BE6 "fd00::2"
#define NP_CLIENT6 "fd00::3"
#define NP_LOCALBE6 "fd00:5::10"

extern const uint8_t np_mac_be[6], np_mac_client[6];
/* MAC of the test device np0, read at setup */
extern uint8_t np_mac_dev[6];
/* np2: the pod-side device (local backends' routes); the backend's MAC */
extern uint8_t np_mac_pod_dev[6];
extern const uint8_t np_mac_localbe[6];

struct np_fix {
	struct nodeport *skel;
	char root[128];
	int ifindex;
	int pod_ifindex;
	int run_ifindex; /* np_run's ingress device; 0: ifindex */
	bool ok;
	char skip[160];
};

extern struct np_fix npf;
/* Set before np_setup(): kpx_ct and kpx_frag get 1024 / 256 entries. */
extern bool np_small_maps;
/* Set before np_setup(): the flood guard's rate (lib/flood.h); 0: off. */
extern uint32_t np_new_flow_rate;

/* Criterion .init/.fini */
void np_setup(void);
void np_teardown(void);
/* cr_skip with the reason when the fixture could not be built. */
#define NP_REQUIRE()                                                           \
	do {                                                                   \
		if (!npf.ok)                                                   \
			cr_skip_test("SKIP %s", npf.skip);                     \
	} while (0)

struct np_tuple {
	int family; /* AF_INET/AF_INET6 */
	uint8_t proto;
	const char *src, *dst;
	uint16_t sport, dport; /* host order */
	uint8_t tcp_flags;
	uint32_t seq, ack;
	bool udp_zero_csum;
	const uint8_t *smac, *dmac;
	size_t payload;
	/* TCP: nonzero adds an MSS option (data offset 6) */
	uint16_t mss;
	/* IPv4 only: 8 bytes of IP options (IHL 7), e.g. the DSR option */
	const uint8_t *ip_opt;
	/* IPv6 only: a 24-byte Destination Options header after the IPv6
	 * header (its next header byte is set here), e.g. the DSR one */
	const uint8_t *ip6_dstopt;
};

/* Builds an Ethernet frame; returns its length. */
size_t np_build(uint8_t *buf, const struct np_tuple *t);
/* Checks every checksum (IPv4 header, TCP/UDP, ICMP incl. quoted IPv4
 * header) of a frame; returns true when all are valid. */
bool np_csum_ok(const uint8_t *buf, size_t len);

/* Map helpers. */
void np_add_service(int family, const char *addr, uint16_t port,
		    uint8_t proto, uint32_t svc_id, uint8_t flags,
		    const uint32_t *backend_ids, uint16_t n);
void np_add_backend(uint32_t id, int family, const char *addr, uint16_t port,
		    uint8_t proto, bool local);
void np_add_src_range(uint32_t svc_id, int family, const char *addr,
		      uint8_t plen);
uint64_t np_drops(enum kpx_drop_reason r);
/* Sets kpx_dp_config.flags (enum kpx_dp_flags). */
void np_set_dp_flags(uint32_t flags);
unsigned int np_ct_count(void);

/* Runs tc ingress ("in"), tc egress ("out") or "xdp" on data; output in
 * out/out_len; returns the program's return value. */
int np_run(const char *prog, const uint8_t *data, size_t len, uint8_t *out,
	   size_t *out_len);

void np_hexdump_diff(const uint8_t *a, const uint8_t *b, size_t len);

#endif
