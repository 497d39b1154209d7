/* SPDX-License-Identifier: Apache-2.0 */
/*
 * IPv4/IPv6 addresses and CIDRs as plain values.
 * Owns: parsing and formatting. Must not: allocate.
 */
#ifndef KPX_ADDR_H
#define KPX_ADDR_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Text form of any address, with room for the NUL. */
#define KPX_ADDR_STRLEN INET6_ADDRSTRLEN

struct kpx_addr {
	uint8_t family; /* AF_INET or AF_INET6 */
	uint8_t pad[3];
	union {
		struct in_addr v4;
		struct in6_addr v6;
		uint8_t bytes[16];
	};
};

struct kpx_cidr {
	struct kpx_addr addr; /* host bits cleared */
	uint8_t prefix;
};

/* Returns 0 or -EINVAL. Rejects empty strings, zones, and trailing junk. */
int kpx_addr_parse(const char *s, struct kpx_addr *out);
int kpx_cidr_parse(const char *s, struct kpx_cidr *out);
/* Writes into buf (>= KPX_ADDR_STRLEN) and returns buf. */
const char *kpx_addr_str(const struct kpx_addr *a, char *buf);
int kpx_addr_cmp(const struct kpx_addr *a, const struct kpx_addr *b);
bool kpx_addr_eq(const struct kpx_addr *a, const struct kpx_addr *b);
bool kpx_cidr_contains(const struct kpx_cidr *c, const struct kpx_addr *a);
/* Parses "A[,B...]" of CIDRs (or addresses as /32,/128) into out[max]. */
int kpx_cidr_list_parse(const char *s, struct kpx_cidr *out, size_t max,
			size_t *n);

#endif
