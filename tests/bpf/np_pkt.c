/* SPDX-License-Identifier: Apache-2.0 */
/* Frame surgery and the reference validator (see np_pkt.h). */
#include <string.h>

#include "np_pkt.h"

#define ETH 14

uint16_t np_get16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

void np_put16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v & 0xff;
}

static uint32_t sum16(const uint8_t *b, size_t len, uint32_t s)
{
	for (size_t i = 0; i + 1 < len; i += 2)
		s += (b[i] << 8) | b[i + 1];
	if (len & 1)
		s += b[len - 1] << 8;
	return s;
}

static uint16_t fold(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

void np_ip4_fix_csum(uint8_t *frame, size_t len)
{
	uint8_t *ip = frame + ETH;
	size_t ihl = (ip[0] & 0xf) * 4;

	if (len < ETH + 20)
		return;
	if (ihl > len - ETH)
		ihl = len - ETH;
	np_put16(ip + 10, 0);
	np_put16(ip + 10, fold(sum16(ip, ihl, 0)));
}

bool np_ip4_csum_ok(const uint8_t *frame, size_t len)
{
	const uint8_t *ip = frame + ETH;
	size_t ihl = (ip[0] & 0xf) * 4;

	return len >= ETH + 20 && ihl >= 20 && ETH + ihl <= len &&
	       fold(sum16(ip, ihl, 0)) == 0;
}

bool np_l4_csum_ok(bool v6, const uint8_t *src, const uint8_t *dst,
		   uint8_t proto, const uint8_t *l4, size_t len)
{
	uint32_t s = sum16(src, v6 ? 16 : 4, 0);

	if (!v6 && proto == 17 && np_get16(l4 + 6) == 0)
		return true; /* UDP without checksum */
	s = sum16(dst, v6 ? 16 : 4, s);
	s += proto + (uint32_t)len;
	return fold(sum16(l4, len, s)) == 0;
}

size_t np_fragment(const uint8_t *frame, size_t flen, size_t off, size_t len,
		   bool more, uint32_t id, uint8_t *out)
{
	const uint8_t *ip = frame + ETH;
	bool v6 = np_get16(frame + 12) == 0x86dd;
	size_t hl = v6 ? 40 : 20, xl = v6 ? 8 : 0;
	uint8_t *o = out + ETH;

	(void)flen;
	memcpy(out, frame, ETH + hl);
	memcpy(o + hl + xl, ip + hl + off, len);
	if (v6) {
		uint8_t *f = o + 40;

		o[6] = 44;
		np_put16(o + 4, (uint16_t)(8 + len));
		f[0] = ip[6];
		f[1] = 0;
		np_put16(f + 2, (uint16_t)(off | (more ? 1 : 0)));
		f[4] = id >> 24;
		f[5] = id >> 16;
		f[6] = id >> 8;
		f[7] = id;
	} else {
		np_put16(o + 2, (uint16_t)(20 + len));
		np_put16(o + 4, (uint16_t)id);
		np_put16(o + 6, (uint16_t)((off / 8) | (more ? 0x2000 : 0)));
		np_ip4_fix_csum(out, ETH + 20);
	}
	return ETH + hl + xl + len;
}

bool np_reassemble_ok(const uint8_t *const frags[], const size_t lens[],
		      int n, uint8_t *l4_out, size_t *l4_len)
{
	static uint8_t buf[8192];
	const uint8_t *first = NULL;
	size_t total = 0;
	uint8_t proto = 0;
	bool v6 = false, last_seen = false;

	for (int i = 0; i < n; i++) {
		const uint8_t *ip = frags[i] + ETH;
		size_t off, len, hl;
		bool more;

		v6 = np_get16(frags[i] + 12) == 0x86dd;
		if (v6) {
			const uint8_t *f = ip + 40;

			if (ip[6] != 44)
				return false;
			hl = 48;
			off = np_get16(f + 2) & 0xfff8;
			more = np_get16(f + 2) & 1;
			len = np_get16(ip + 4) - 8;
			proto = f[0];
		} else {
			hl = (ip[0] & 0xf) * 4;
			off = (np_get16(ip + 6) & 0x1fff) * 8;
			more = np_get16(ip + 6) & 0x2000;
			len = np_get16(ip + 2) - hl;
			proto = ip[9];
		}
		if (off + len > sizeof(buf) || ETH + hl + len > lens[i])
			return false;
		memcpy(buf + off, ip + hl, len);
		if (!off)
			first = ip;
		if (!more) {
			total = off + len;
			last_seen = true;
		}
	}
	if (!first || !last_seen)
		return false;
	if (l4_out)
		memcpy(l4_out, buf, total);
	if (l4_len)
		*l4_len = total;
	return v6 ? np_l4_csum_ok(true, first + 8, first + 24, proto, buf,
				  total)
		  : np_l4_csum_ok(false, first + 12, first + 16, proto, buf,
				  total);
}

size_t np_ip6_insert_ext(uint8_t *frame, size_t flen, uint8_t type,
			 const uint8_t *hdr, size_t hlen)
{
	uint8_t *ip = frame + ETH;

	memmove(ip + 40 + hlen, ip + 40, flen - ETH - 40);
	memcpy(ip + 40, hdr, hlen);
	ip[40] = ip[6];
	ip[6] = type;
	np_put16(ip + 4, (uint16_t)(np_get16(ip + 4) + hlen));
	return flen + hlen;
}

/* ---- the reference validator (RFC 791/793/768, RFC 8200) ---- */

static bool is_ext6(uint8_t nh)
{
	return nh == 0 || nh == 43 || nh == 44 || nh == 60;
}

/* L4 checks shared by both families; l4 at offset off, L3 ends at end. */
static enum np_verdict_class l4_class(const uint8_t *f, size_t len,
				      size_t off, size_t end, uint8_t proto,
				      int frag, bool v6)
{
	if (proto == 6) {
		size_t doff;

		if (off + 20 > len || off + 20 > end)
			return NP_V_UNTOUCHED;
		doff = (f[off + 12] >> 4) * 4;
		if (doff < 20 || off + doff > end)
			return NP_V_UNTOUCHED;
		return NP_V_ACT;
	}
	if (proto == 17) {
		size_t ul;

		if (off + 8 > len || off + 8 > end)
			return NP_V_UNTOUCHED;
		ul = np_get16(f + off + 4);
		if (ul < 8 || (!frag && ul > end - off))
			return NP_V_UNTOUCHED;
		return NP_V_ACT;
	}
	if (frag)
		return NP_V_UNTOUCHED;
	if ((!v6 && proto == 1) || (v6 && proto == 58)) {
		uint8_t t;

		if (off + 8 > len || off + 8 > end)
			return NP_V_UNTOUCHED;
		t = f[off];
		if (!v6 && t != 3 && t != 11)
			return NP_V_UNTOUCHED;
		if (v6 && (t < 1 || t > 3))
			return NP_V_UNTOUCHED;
		/* an error about one of our flows may be rewritten */
		return NP_V_ACT;
	}
	return NP_V_UNTOUCHED;
}

enum np_verdict_class np_classify(const uint8_t *f, size_t len)
{
	uint16_t et;

	if (len < ETH)
		return NP_V_UNTOUCHED;
	et = np_get16(f + 12);
	if (et == 0x0800) {
		const uint8_t *ip = f + ETH;
		size_t ihl, tot, fo;
		int frag = 0;

		if (len < ETH + 20 || (ip[0] >> 4) != 4)
			return NP_V_UNTOUCHED;
		ihl = (ip[0] & 0xf) * 4;
		if (ihl < 20 || ETH + ihl > len || !np_ip4_csum_ok(f, len))
			return NP_V_UNTOUCHED;
		tot = np_get16(ip + 2);
		if (tot < ihl || ETH + tot > len)
			return NP_V_UNTOUCHED;
		fo = np_get16(ip + 6);
		if (fo & 0x1fff)
			return (ip[9] == 6 || ip[9] == 17) ? NP_V_ACT
							   : NP_V_UNTOUCHED;
		if (fo & 0x2000)
			frag = 1;
		return l4_class(f, len, ETH + ihl, ETH + tot, ip[9], frag,
				false);
	}
	if (et == 0x86dd) {
		const uint8_t *ip = f + ETH;
		size_t off = ETH + 40, end;
		uint8_t nh;
		int frag = 0;
		bool seen_frag = false;

		if (len < ETH + 40 || (ip[0] >> 4) != 6)
			return NP_V_UNTOUCHED;
		end = ETH + 40 + np_get16(ip + 4);
		if (end > len)
			return NP_V_UNTOUCHED;
		nh = ip[6];
		for (int i = 0; i < 6 && is_ext6(nh); i++) {
			const uint8_t *x = f + off;
			size_t xl;

			if (nh == 0 && i)
				return NP_V_UNTOUCHED;
			if (off + 8 > len)
				return NP_V_UNTOUCHED;
			if (nh == 44) {
				uint16_t fo = np_get16(x + 2);

				if (seen_frag)
					return NP_V_UNTOUCHED;
				seen_frag = true;
				xl = 8;
				if (fo & 0xfff8)
					frag = 2;
				else if (fo & 1)
					frag = 1;
			} else {
				if (nh == 43 && x[3])
					return NP_V_UNTOUCHED;
				xl = (x[1] + 1) * 8;
			}
			nh = x[0];
			off += xl;
			if (off > end || off > 254)
				return NP_V_UNTOUCHED;
			if (frag == 2)
				/* ports from the first fragment: may act */
				return NP_V_ACT;
		}
		if (is_ext6(nh))
			return NP_V_UNTOUCHED;
		return l4_class(f, len, off, end, nh, frag, true);
	}
	return NP_V_UNTOUCHED;
}
