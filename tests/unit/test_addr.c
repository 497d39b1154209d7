// SPDX-License-Identifier: Apache-2.0
#include <criterion/criterion.h>

#include "common/addr.h"

Test(addr, parse_and_format_round_trip)
{
	struct kpx_addr a;
	char buf[KPX_ADDR_STRLEN];

	cr_assert_eq(kpx_addr_parse("198.18.0.1", &a), 0);
	cr_expect_eq(a.family, AF_INET);
	cr_expect_str_eq(kpx_addr_str(&a, buf), "198.18.0.1");
	cr_assert_eq(kpx_addr_parse("fd00::1", &a), 0);
	cr_expect_eq(a.family, AF_INET6);
	cr_expect_str_eq(kpx_addr_str(&a, buf), "fd00::1");
	cr_expect_lt(kpx_addr_parse("198.18.0.256", &a), 0);
	cr_expect_lt(kpx_addr_parse("198.18.0.1 ", &a), 0);
	cr_expect_lt(kpx_addr_parse("", &a), 0);
	cr_expect_lt(kpx_addr_parse("fe80::1%eth0", &a), 0);
}

Test(addr, cidr_contains_and_masks)
{
	struct kpx_cidr c;
	struct kpx_addr in, out, v6;

	cr_assert_eq(kpx_cidr_parse("198.19.1.77/24", &c), 0);
	kpx_addr_parse("198.19.1.200", &in);
	kpx_addr_parse("198.19.2.1", &out);
	kpx_addr_parse("fd00::1", &v6);
	cr_expect(kpx_cidr_contains(&c, &in));
	cr_expect_not(kpx_cidr_contains(&c, &out));
	cr_expect_not(kpx_cidr_contains(&c, &v6));
	cr_assert_eq(kpx_cidr_parse("fd00:19::/48", &c), 0);
	kpx_addr_parse("fd00:19:0:5::1", &v6);
	cr_expect(kpx_cidr_contains(&c, &v6));
	cr_expect_lt(kpx_cidr_parse("198.19.0.0/33", &c), 0);
	cr_expect_lt(kpx_cidr_parse("198.19.0.0/", &c), 0);
}
