/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Frame surgery for the NodePort BPF tests (no BPF, no root): checksum
 * helpers, IPv4/IPv6 fragmentation and reassembly, IPv6 extension header
 * insertion, and a reference validator -- the rules kpx_parse
 * (bpf/lib/parse.h) applies, written again from the RFCs so that tests
 * can tell which frames must leave the datapath untouched.
 */
#ifndef KPX_TESTS_NP_PKT_H
#define KPX_TESTS_NP_PKT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

uint16_t np_get16(const uint8_t *p);
void np_put16(uint8_t *p, uint16_t v);
/* Recomputes the IPv4 header checksum of an Ethernet frame (IHL bytes,
 * as far as the frame reaches). */
void np_ip4_fix_csum(uint8_t *frame, size_t len);
bool np_ip4_csum_ok(const uint8_t *frame, size_t len);
/* Internet checksum of an L4 segment with its pseudo header. */
bool np_l4_csum_ok(bool v6, const uint8_t *src, const uint8_t *dst,
		   uint8_t proto, const uint8_t *l4, size_t len);

/*
 * One fragment of the datagram in frame (IPv4 without options, or IPv6
 * without extension headers): the L3 payload bytes [off, off + len)
 * (off a multiple of 8), MF/M = more, identification id; IPv6 gets a
 * Fragment header. Returns the fragment's frame length.
 */
size_t np_fragment(const uint8_t *frame, size_t flen, size_t off, size_t len,
		   bool more, uint32_t id, uint8_t *out);
/* Reassembles fragments (any order) and checks the datagram's L4
 * checksum against the (translated) addresses; *l4_out (optional, >=
 * 4096 bytes) receives the L4 datagram, *l4_len its length. */
bool np_reassemble_ok(const uint8_t *const frags[], const size_t lens[],
		      int n, uint8_t *l4_out, size_t *l4_len);

/* Inserts an IPv6 extension header right after the IPv6 header: hdr[0]
 * (its next header) is set to the chain's first header, the IPv6 next
 * header to type, the payload length grows. Returns the new length. */
size_t np_ip6_insert_ext(uint8_t *frame, size_t flen, uint8_t type,
			 const uint8_t *hdr, size_t hlen);

/* The reference validator: NP_V_ACT when kpx may translate or answer the
 * frame (a well-formed TCP/UDP packet, fragment or ICMP error), else
 * NP_V_UNTOUCHED: malformed or not ours, to be passed on untouched
 * without creating any state. */
enum np_verdict_class { NP_V_UNTOUCHED = 0, NP_V_ACT = 1 };
enum np_verdict_class np_classify(const uint8_t *frame, size_t len);

#endif
