/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Netlink plumbing for the nftables backend: one growable buffer holding a
 * whole nfnetlink batch (BATCH_BEGIN .. BATCH_END), sent with one sendmsg
 * so the kernel applies it as one transaction, and small rule-expression
 * builders on top of libnftnl.
 * Owns: the batch buffer and the netlink socket it is sent on.
 * Must not: know anything about services (nft/nft.c does).
 */
#ifndef KPX_NFT_BATCH_H
#define KPX_NFT_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include <libmnl/libmnl.h>
#include <libnftnl/rule.h>

struct nlmsghdr;

struct kpx_nft_batch {
	char *buf;
	size_t len, cap;
	uint32_t seq;
	size_t last_cmd; /* offset of the last command message, for the ACK */
	unsigned n_msgs;
};

int kpx_nft_batch_init(struct kpx_nft_batch *b, uint32_t seq);
void kpx_nft_batch_free(struct kpx_nft_batch *b);
/* Room for one message of at most `need` bytes; returns its header. */
struct nlmsghdr *kpx_nft_batch_msg(struct kpx_nft_batch *b, uint16_t type,
				   uint16_t flags, size_t need);
/* Accounts a message built at the returned header. */
void kpx_nft_batch_commit(struct kpx_nft_batch *b, struct nlmsghdr *nlh);
/* Closes the batch, sends it and waits for the kernel's verdict.
 * Returns 0 or the first negative errno the kernel reported. */
int kpx_nft_batch_send(struct kpx_nft_batch *b, struct mnl_socket *nl);

/* Registers: idx 0..15 are the 32-bit registers NFT_REG32_00..15. */
#define R(idx) (8u + (idx))
#define RV 0u /* verdict register */

void kpx_nft_e_payload(struct nftnl_rule *r, uint32_t base, uint32_t off,
		       uint32_t len, uint32_t dreg);
void kpx_nft_e_meta(struct nftnl_rule *r, uint32_t key, uint32_t dreg);
void kpx_nft_e_meta_set(struct nftnl_rule *r, uint32_t key, uint32_t sreg);
void kpx_nft_e_cmp(struct nftnl_rule *r, uint32_t sreg, uint32_t op,
		   const void *data, uint32_t len);
void kpx_nft_e_bitwise(struct nftnl_rule *r, uint32_t reg, uint32_t len,
		       const void *mask, const void *xor);
void kpx_nft_e_imm(struct nftnl_rule *r, uint32_t dreg, const void *data,
		   uint32_t len);
void kpx_nft_e_verdict(struct nftnl_rule *r, int verdict, const char *chain);
void kpx_nft_e_lookup(struct nftnl_rule *r, const char *set, uint32_t sreg,
		      int dreg, uint32_t flags);
void kpx_nft_e_numgen(struct nftnl_rule *r, uint32_t dreg, uint32_t mod);
void kpx_nft_e_dynset(struct nftnl_rule *r, const char *set, uint32_t op,
		      uint32_t sreg_key, int sreg_data, uint64_t timeout_ms);
void kpx_nft_e_dnat(struct nftnl_rule *r, uint32_t family, uint32_t reg_addr,
		    uint32_t reg_proto);
void kpx_nft_e_masq(struct nftnl_rule *r);
void kpx_nft_e_ct(struct nftnl_rule *r, uint32_t key, uint32_t dreg);
void kpx_nft_e_fib_saddr_type(struct nftnl_rule *r, uint32_t dreg);
void kpx_nft_e_reject(struct nftnl_rule *r, uint32_t type, uint8_t code);

#endif
