// SPDX-License-Identifier: Apache-2.0
/*
 * One nfnetlink batch in one buffer, sent with one sendmsg: the kernel
 * processes a batch per skb, so the transaction is atomic only when the
 * whole batch travels together. Only the last command carries NLM_F_ACK:
 * on success that is the single reply; on failure the kernel also reports
 * every failing message, so one read loop sees both.
 */
#include "nft/nft_batch.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>

#include "common/log.h"

static int ensure(struct kpx_nft_batch *b, size_t need)
{
	if (b->len + need <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 1 << 20;
	while (cap < b->len + need)
		cap *= 2;
	char *n = realloc(b->buf, cap);
	if (!n)
		return -ENOMEM;
	/* libnftnl writes attributes without bounds checks: zero the tail. */
	memset(n + b->cap, 0, cap - b->cap);
	b->buf = n;
	b->cap = cap;
	return 0;
}

int kpx_nft_batch_init(struct kpx_nft_batch *b, uint32_t seq)
{
	memset(b, 0, sizeof(*b));
	b->seq = seq;
	if (ensure(b, 1 << 20))
		return -ENOMEM;
	nftnl_batch_begin(b->buf, b->seq++);
	b->len = NLMSG_ALIGN(((struct nlmsghdr *)b->buf)->nlmsg_len);
	b->last_cmd = (size_t)-1;
	return 0;
}

void kpx_nft_batch_free(struct kpx_nft_batch *b)
{
	free(b->buf);
	memset(b, 0, sizeof(*b));
}

struct nlmsghdr *kpx_nft_batch_msg(struct kpx_nft_batch *b, uint16_t type,
				   uint16_t flags, size_t need)
{
	if (ensure(b, need + 4096))
		return NULL;
	return nftnl_nlmsg_build_hdr(b->buf + b->len, type, NFPROTO_INET,
				     flags, b->seq++);
}

void kpx_nft_batch_commit(struct kpx_nft_batch *b, struct nlmsghdr *nlh)
{
	b->last_cmd = b->len;
	b->len += NLMSG_ALIGN(nlh->nlmsg_len);
	b->n_msgs++;
}

/* Names the message the kernel refused, so a bad rule can be found. */
static void log_failed(const struct kpx_nft_batch *b, uint32_t seq, int err)
{
	static const char *names[] = {
		[NFT_MSG_NEWTABLE] = "NEWTABLE", [NFT_MSG_DELTABLE] = "DELTABLE",
		[NFT_MSG_NEWCHAIN] = "NEWCHAIN", [NFT_MSG_DELCHAIN] = "DELCHAIN",
		[NFT_MSG_NEWRULE] = "NEWRULE",	 [NFT_MSG_DELRULE] = "DELRULE",
		[NFT_MSG_NEWSET] = "NEWSET",	 [NFT_MSG_NEWSETELEM] = "NEWSETELEM",
		[NFT_MSG_DELSETELEM] = "DELSETELEM",
	};
	size_t off = 0;
	unsigned idx = 0;
	while (off < b->len) {
		const struct nlmsghdr *h = (const void *)(b->buf + off);
		if (h->nlmsg_len < sizeof(*h))
			break;
		if (h->nlmsg_seq == seq) {
			unsigned t = h->nlmsg_type & 0xff;
			const char *n = t < sizeof(names) / sizeof(names[0]) && names[t]
						? names[t] : "?";
			const char *what = "";
			struct nlattr *a;
			/* first string attribute after the table: chain/set name */
			int strs = 0;
			mnl_attr_for_each(a, h, sizeof(struct nfgenmsg)) {
				if (mnl_attr_get_type(a) == 2 || mnl_attr_get_type(a) == 3) {
					const char *s = mnl_attr_get_payload(a);
					if (mnl_attr_get_payload_len(a) > 1 && !s[mnl_attr_get_payload_len(a) - 1] && ++strs) {
						what = s;
						break;
					}
				}
			}
			kpx_err("nft: batch message #%u (%s %s) refused: %s", idx, n,
				what, strerror(-err));
			return;
		}
		off += NLMSG_ALIGN(h->nlmsg_len);
		idx++;
	}
	kpx_err("nft: batch message seq %u refused: %s", seq, strerror(-err));
}

int kpx_nft_batch_send(struct kpx_nft_batch *b, struct mnl_socket *nl)
{
	struct nlmsghdr *last;
	uint32_t want_seq;
	int fd = mnl_socket_get_fd(nl), err = 0, sz;

	if (b->last_cmd == (size_t)-1)
		return 0; /* nothing to do */
	if (ensure(b, 4096))
		return -ENOMEM;
	last = (struct nlmsghdr *)(b->buf + b->last_cmd);
	last->nlmsg_flags |= NLM_F_ACK;
	want_seq = last->nlmsg_seq;
	nftnl_batch_end(b->buf + b->len, b->seq++);
	b->len += NLMSG_ALIGN(((struct nlmsghdr *)(b->buf + b->len))->nlmsg_len);

	/* The batch must fit one skb: raise the send buffer to its size. */
	sz = (int)(b->len + 65536);
	setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof(sz));
	sz = 4 << 20;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz));
	if (mnl_socket_sendto(nl, b->buf, b->len) < 0)
		return -errno;

	char rbuf[MNL_SOCKET_BUFFER_SIZE * 4];
	for (int rounds = 0; rounds < 1000000; rounds++) {
		ssize_t n = mnl_socket_recvfrom(nl, rbuf, sizeof(rbuf));
		if (n < 0)
			return -errno;
		for (struct nlmsghdr *h = (struct nlmsghdr *)rbuf;
		     mnl_nlmsg_ok(h, (int)n); h = mnl_nlmsg_next(h, (int *)&n)) {
			if (h->nlmsg_type == NLMSG_ERROR) {
				struct nlmsgerr *e = mnl_nlmsg_get_payload(h);
				if (e->error && !err) {
					err = e->error;
					log_failed(b, h->nlmsg_seq, err);
				}
				if (h->nlmsg_seq == want_seq)
					return err;
			}
		}
	}
	return -ETIMEDOUT;
}

static void add(struct nftnl_rule *r, struct nftnl_expr *e)
{
	nftnl_rule_add_expr(r, e);
}

void kpx_nft_e_payload(struct nftnl_rule *r, uint32_t base, uint32_t off,
		       uint32_t len, uint32_t dreg)
{
	struct nftnl_expr *e = nftnl_expr_alloc("payload");
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, off);
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, dreg);
	add(r, e);
}

void kpx_nft_e_meta(struct nftnl_rule *r, uint32_t key, uint32_t dreg)
{
	struct nftnl_expr *e = nftnl_expr_alloc("meta");
	nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
	nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, dreg);
	add(r, e);
}

void kpx_nft_e_meta_set(struct nftnl_rule *r, uint32_t key, uint32_t sreg)
{
	struct nftnl_expr *e = nftnl_expr_alloc("meta");
	nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
	nftnl_expr_set_u32(e, NFTNL_EXPR_META_SREG, sreg);
	add(r, e);
}

void kpx_nft_e_cmp(struct nftnl_rule *r, uint32_t sreg, uint32_t op,
		   const void *data, uint32_t len)
{
	struct nftnl_expr *e = nftnl_expr_alloc("cmp");
	nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, sreg);
	nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, op);
	nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
	add(r, e);
}

void kpx_nft_e_bitwise(struct nftnl_rule *r, uint32_t reg, uint32_t len,
		       const void *mask, const void *xor)
{
	struct nftnl_expr *e = nftnl_expr_alloc("bitwise");
	nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_SREG, reg);
	nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_DREG, reg);
	nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_LEN, len);
	nftnl_expr_set(e, NFTNL_EXPR_BITWISE_MASK, mask, len);
	nftnl_expr_set(e, NFTNL_EXPR_BITWISE_XOR, xor, len);
	add(r, e);
}

void kpx_nft_e_imm(struct nftnl_rule *r, uint32_t dreg, const void *data,
		   uint32_t len)
{
	struct nftnl_expr *e = nftnl_expr_alloc("immediate");
	nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, dreg);
	nftnl_expr_set(e, NFTNL_EXPR_IMM_DATA, data, len);
	add(r, e);
}

void kpx_nft_e_verdict(struct nftnl_rule *r, int verdict, const char *chain)
{
	struct nftnl_expr *e = nftnl_expr_alloc("immediate");
	nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, RV);
	nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, (uint32_t)verdict);
	if (chain)
		nftnl_expr_set_str(e, NFTNL_EXPR_IMM_CHAIN, chain);
	add(r, e);
}

void kpx_nft_e_lookup(struct nftnl_rule *r, const char *set, uint32_t sreg,
		      int dreg, uint32_t flags)
{
	struct nftnl_expr *e = nftnl_expr_alloc("lookup");
	nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, set);
	nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, sreg);
	if (dreg >= 0)
		nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_DREG, (uint32_t)dreg);
	if (flags)
		nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_FLAGS, flags);
	add(r, e);
}

void kpx_nft_e_numgen(struct nftnl_rule *r, uint32_t dreg, uint32_t mod)
{
	struct nftnl_expr *e = nftnl_expr_alloc("numgen");
	nftnl_expr_set_u32(e, NFTNL_EXPR_NG_DREG, dreg);
	nftnl_expr_set_u32(e, NFTNL_EXPR_NG_MODULUS, mod);
	nftnl_expr_set_u32(e, NFTNL_EXPR_NG_TYPE, NFT_NG_RANDOM);
	nftnl_expr_set_u32(e, NFTNL_EXPR_NG_OFFSET, 0);
	add(r, e);
}

void kpx_nft_e_dynset(struct nftnl_rule *r, const char *set, uint32_t op,
		      uint32_t sreg_key, int sreg_data, uint64_t timeout_ms)
{
	struct nftnl_expr *e = nftnl_expr_alloc("dynset");
	nftnl_expr_set_str(e, NFTNL_EXPR_DYNSET_SET_NAME, set);
	nftnl_expr_set_u32(e, NFTNL_EXPR_DYNSET_OP, op);
	nftnl_expr_set_u32(e, NFTNL_EXPR_DYNSET_SREG_KEY, sreg_key);
	if (sreg_data >= 0)
		nftnl_expr_set_u32(e, NFTNL_EXPR_DYNSET_SREG_DATA,
				   (uint32_t)sreg_data);
	if (timeout_ms)
		nftnl_expr_set_u64(e, NFTNL_EXPR_DYNSET_TIMEOUT, timeout_ms);
	add(r, e);
}

void kpx_nft_e_dnat(struct nftnl_rule *r, uint32_t family, uint32_t reg_addr,
		    uint32_t reg_proto)
{
	struct nftnl_expr *e = nftnl_expr_alloc("nat");
	nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_TYPE, NFT_NAT_DNAT);
	nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_FAMILY, family);
	nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_ADDR_MIN, reg_addr);
	nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_PROTO_MIN, reg_proto);
	add(r, e);
}

void kpx_nft_e_masq(struct nftnl_rule *r)
{
	struct nftnl_expr *e = nftnl_expr_alloc("masq");
	/* NF_NAT_RANGE_PROTO_RANDOM_FULLY, as kube-proxy. */
	nftnl_expr_set_u32(e, NFTNL_EXPR_MASQ_FLAGS, 0x10);
	add(r, e);
}

void kpx_nft_e_ct(struct nftnl_rule *r, uint32_t key, uint32_t dreg)
{
	struct nftnl_expr *e = nftnl_expr_alloc("ct");
	nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, key);
	nftnl_expr_set_u32(e, NFTNL_EXPR_CT_DREG, dreg);
	add(r, e);
}

void kpx_nft_e_fib_saddr_type(struct nftnl_rule *r, uint32_t dreg)
{
	struct nftnl_expr *e = nftnl_expr_alloc("fib");
	nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_FLAGS, NFTA_FIB_F_SADDR);
	nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE);
	nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_DREG, dreg);
	add(r, e);
}

void kpx_nft_e_reject(struct nftnl_rule *r, uint32_t type, uint8_t code)
{
	struct nftnl_expr *e = nftnl_expr_alloc("reject");
	nftnl_expr_set_u32(e, NFTNL_EXPR_REJECT_TYPE, type);
	nftnl_expr_set_u8(e, NFTNL_EXPR_REJECT_CODE, code);
	add(r, e);
}
