// SPDX-License-Identifier: Apache-2.0
#include "common/addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

int kpx_addr_parse(const char *s, struct kpx_addr *out)
{
	memset(out, 0, sizeof(*out));
	if (!s || !*s)
		return -EINVAL;
	if (inet_pton(AF_INET, s, &out->v4) == 1) {
		out->family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, s, &out->v6) == 1) {
		out->family = AF_INET6;
		return 0;
	}
	return -EINVAL;
}

static void cidr_mask(struct kpx_cidr *c)
{
	int bits = c->addr.family == AF_INET ? 32 : 128;

	for (int i = c->prefix; i < bits; i++)
		c->addr.bytes[i / 8] &= (uint8_t)~(0x80 >> (i % 8));
}

int kpx_cidr_parse(const char *s, struct kpx_cidr *out)
{
	char buf[64];
	char *slash, *end;
	long prefix;
	int bits;

	memset(out, 0, sizeof(*out));
	if (!s || strlen(s) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, s);
	slash = strchr(buf, '/');
	if (slash)
		*slash = '\0';
	if (kpx_addr_parse(buf, &out->addr))
		return -EINVAL;
	bits = out->addr.family == AF_INET ? 32 : 128;
	if (!slash) {
		out->prefix = (uint8_t)bits;
		return 0;
	}
	errno = 0;
	prefix = strtol(slash + 1, &end, 10);
	if (errno || end == slash + 1 || *end || prefix < 0 || prefix > bits)
		return -EINVAL;
	out->prefix = (uint8_t)prefix;
	cidr_mask(out);
	return 0;
}

const char *kpx_addr_str(const struct kpx_addr *a, char *buf)
{
	if (!a->family || !inet_ntop(a->family, a->bytes, buf, KPX_ADDR_STRLEN))
		strcpy(buf, "<none>");
	return buf;
}

int kpx_addr_cmp(const struct kpx_addr *a, const struct kpx_addr *b)
{
	if (a->family != b->family)
		return a->family < b->family ? -1 : 1;
	return memcmp(a->bytes, b->bytes, a->family == AF_INET ? 4 : 16);
}

bool kpx_addr_eq(const struct kpx_addr *a, const struct kpx_addr *b)
{
	return kpx_addr_cmp(a, b) == 0;
}

bool kpx_cidr_contains(const struct kpx_cidr *c, const struct kpx_addr *a)
{
	struct kpx_cidr masked = { .addr = *a, .prefix = c->prefix };

	if (a->family != c->addr.family)
		return false;
	cidr_mask(&masked);
	return kpx_addr_eq(&masked.addr, &c->addr);
}

int kpx_cidr_list_parse(const char *s, struct kpx_cidr *out, size_t max,
			size_t *n)
{
	char buf[1024];
	char *save = NULL, *tok;

	*n = 0;
	if (!s || strlen(s) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, s);
	for (tok = strtok_r(buf, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		while (*tok == ' ')
			tok++;
		if (*n >= max || kpx_cidr_parse(tok, &out[*n]))
			return -EINVAL;
		(*n)++;
	}
	return 0;
}
