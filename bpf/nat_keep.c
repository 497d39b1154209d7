// SPDX-License-Identifier: Apache-2.0
/*
 * kube-proxy's nftables mode translates Service connections with nat
 * chains in `table ip kube-proxy` / `ip6 kube-proxy`. The kernel stores
 * each connection's translation in its conntrack entry, but applies it
 * only while some nat chain is registered in the network namespace. The
 * bpf backend translates in its own programs and registers none, so once
 * kube-proxy's tables are deleted (`kpx cleanup --kube-proxy`, step 3 of
 * the migration) every connection opened through them loses its
 * translation: NodePort clients are reset, pods' ClusterIP connections
 * hang. The same holds for its iptables modes once the KUBE-* chains are
 * gone. When the bpf backend starts on a node where kube-proxy's NAT state
 * exists, it adds `table inet kpx-nat` with four nat base chains that
 * translate nothing themselves: the kernel keeps applying what conntrack
 * already holds, and gives new connections no translation. One rule
 * reads `ct state`: nat chains alone do not keep conntrack running, a ct
 * expression does (without it, packets lose their conntrack entry once
 * kube-proxy's ct and nat expressions are gone, and with it the
 * translation). `kpx cleanup` removes the table.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "bpf/nat_keep.h"
#include "common/log.h"
#include "nft/nft_batch.h"

#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/rule.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_tables.h>

static struct mnl_socket *nl_open(void)
{
	struct mnl_socket *nl = mnl_socket_open(NETLINK_NETFILTER);

	if (nl && mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		mnl_socket_close(nl);
		nl = NULL;
	}
	return nl;
}

/* Sends the GET request built in nlh: 1 when the kernel has the object,
 * 0 when not (ENOENT), or a negative errno. */
static int nft_get_exists(struct mnl_socket *nl, struct nlmsghdr *nlh)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	uint32_t seq = nlh->nlmsg_seq;
	ssize_t n;
	int ret;

	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	do {
		n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
		if (n < 0)
			return -errno;
		ret = mnl_cb_run(buf, n, seq, mnl_socket_get_portid(nl), NULL,
				 NULL);
	} while (ret > 0);
	if (ret == 0)
		return 1;
	return errno == ENOENT ? 0 : -errno;
}

static int table_exists(struct mnl_socket *nl, uint16_t family,
			const char *name)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nftnl_table *t = nftnl_table_alloc();
	struct nlmsghdr *nlh;

	if (!t)
		return -ENOMEM;
	nftnl_table_set_str(t, NFTNL_TABLE_NAME, name);
	nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETTABLE, family, NLM_F_ACK,
				    (uint32_t)time(NULL));
	nftnl_table_nlmsg_build_payload(nlh, t);
	nftnl_table_free(t);
	return nft_get_exists(nl, nlh);
}

static int chain_exists(struct mnl_socket *nl, uint16_t family,
			const char *table, const char *name)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nftnl_chain *c = nftnl_chain_alloc();
	struct nlmsghdr *nlh;

	if (!c)
		return -ENOMEM;
	nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, table);
	nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, name);
	nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETCHAIN, family, NLM_F_ACK,
				    (uint32_t)time(NULL));
	nftnl_chain_nlmsg_build_payload(nlh, c);
	nftnl_chain_free(c);
	return nft_get_exists(nl, nlh);
}

static void table_msg(struct kpx_nft_batch *b, uint16_t type, uint16_t flags)
{
	struct nftnl_table *t = nftnl_table_alloc();
	struct nlmsghdr *nlh;

	if (!t)
		return;
	nftnl_table_set_str(t, NFTNL_TABLE_NAME, KPX_NAT_KEEP_TABLE);
	nftnl_table_set_u32(t, NFTNL_TABLE_FAMILY, NFPROTO_INET);
	nlh = kpx_nft_batch_msg(b, type, flags, 1024);
	if (nlh) {
		nftnl_table_nlmsg_build_payload(nlh, t);
		kpx_nft_batch_commit(b, nlh);
	}
	nftnl_table_free(t);
}

static void nat_chain_msg(struct kpx_nft_batch *b, const char *name, int hook,
			  int prio)
{
	struct nftnl_chain *c = nftnl_chain_alloc();
	struct nlmsghdr *nlh;

	if (!c)
		return;
	nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, KPX_NAT_KEEP_TABLE);
	nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, name);
	nftnl_chain_set_u32(c, NFTNL_CHAIN_FAMILY, NFPROTO_INET);
	nftnl_chain_set_str(c, NFTNL_CHAIN_TYPE, "nat");
	nftnl_chain_set_u32(c, NFTNL_CHAIN_HOOKNUM, (uint32_t)hook);
	nftnl_chain_set_s32(c, NFTNL_CHAIN_PRIO, prio);
	nftnl_chain_set_u32(c, NFTNL_CHAIN_POLICY, NF_ACCEPT);
	nlh = kpx_nft_batch_msg(b, NFT_MSG_NEWCHAIN, NLM_F_CREATE, 4096);
	if (nlh) {
		nftnl_chain_nlmsg_build_payload(nlh, c);
		kpx_nft_batch_commit(b, nlh);
	}
	nftnl_chain_free(c);
}

/* "ct state established,related": a ct expression, so that conntrack
 * stays registered in the netns; no verdict, so it decides nothing. */
static void ct_rule_msg(struct kpx_nft_batch *b, const char *chain)
{
	struct nftnl_rule *r = nftnl_rule_alloc();
	uint32_t mask = NF_CT_STATE_BIT(IP_CT_ESTABLISHED) |
			NF_CT_STATE_BIT(IP_CT_RELATED), zero = 0;
	struct nlmsghdr *nlh;

	if (!r)
		return;
	nftnl_rule_set_str(r, NFTNL_RULE_TABLE, KPX_NAT_KEEP_TABLE);
	nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, chain);
	nftnl_rule_set_u32(r, NFTNL_RULE_FAMILY, NFPROTO_INET);
	kpx_nft_e_ct(r, NFT_CT_STATE, R(0));
	kpx_nft_e_bitwise(r, R(0), sizeof(mask), &mask, &zero);
	kpx_nft_e_cmp(r, R(0), NFT_CMP_NEQ, &zero, sizeof(zero));
	nlh = kpx_nft_batch_msg(b, NFT_MSG_NEWRULE, NLM_F_APPEND | NLM_F_CREATE,
				4096);
	if (nlh) {
		nftnl_rule_nlmsg_build_payload(nlh, r);
		kpx_nft_batch_commit(b, nlh);
	}
	nftnl_rule_free(r);
}

/* iptables-legacy's nat table is in use in this netns */
static bool legacy_nat(const char *names)
{
	char line[64];
	bool found = false;
	FILE *f = fopen(names, "re");

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		found = strcmp(line, "nat\n") == 0;
	fclose(f);
	return found;
}

/* What kube-proxy leaves translated connections behind in: its
 * nftables tables (nftables mode), its KUBE-SERVICES chain in the nat
 * table of iptables-nft, or a legacy iptables nat table (whose chains
 * cannot be read without iptables-save; any legacy NAT counts). */
static bool kube_proxy_nat(struct mnl_socket *nl)
{
	static const uint16_t fams[] = { NFPROTO_IPV4, NFPROTO_IPV6 };

	for (size_t i = 0; i < 2; i++) {
		if (table_exists(nl, fams[i], "kube-proxy") > 0 ||
		    chain_exists(nl, fams[i], "nat", "KUBE-SERVICES") > 0)
			return true;
	}
	return legacy_nat("/proc/net/ip_tables_names") ||
	       legacy_nat("/proc/net/ip6_tables_names");
}

int kpx_bpf_nat_keep_open(void)
{
	struct mnl_socket *nl = nl_open();
	struct kpx_nft_batch b;
	int err;

	if (!nl)
		return -errno;
	if (!kube_proxy_nat(nl)) {
		mnl_socket_close(nl);
		return 0;
	}
	err = kpx_nft_batch_init(&b, (uint32_t)time(NULL));
	if (!err) {
		table_msg(&b, NFT_MSG_NEWTABLE, NLM_F_CREATE);
		nat_chain_msg(&b, "prerouting", NF_INET_PRE_ROUTING, -100);
		nat_chain_msg(&b, "input", NF_INET_LOCAL_IN, 100);
		nat_chain_msg(&b, "output", NF_INET_LOCAL_OUT, -100);
		nat_chain_msg(&b, "postrouting", NF_INET_POST_ROUTING, 100);
		ct_rule_msg(&b, "prerouting");
		err = b.n_msgs == 6 ? kpx_nft_batch_send(&b, nl) : -ENOMEM;
		kpx_nft_batch_free(&b);
	}
	mnl_socket_close(nl);
	if (err)
		return err;
	kpx_info("bpf: kube-proxy's NAT state is present: table inet "
		 KPX_NAT_KEEP_TABLE " (empty nat chains) keeps the kernel "
		 "applying the translations of the connections it made");
	return 1;
}

int kpx_bpf_nat_keep_cleanup(void)
{
	struct mnl_socket *nl = nl_open();
	struct kpx_nft_batch b;
	int err;

	if (!nl)
		return -errno;
	err = table_exists(nl, NFPROTO_INET, KPX_NAT_KEEP_TABLE);
	if (err > 0) {
		err = kpx_nft_batch_init(&b, (uint32_t)time(NULL));
		if (!err) {
			table_msg(&b, NFT_MSG_DELTABLE, 0);
			err = b.n_msgs == 1 ? kpx_nft_batch_send(&b, nl) : -ENOMEM;
			kpx_nft_batch_free(&b);
		}
		if (!err)
			err = 1;
	}
	mnl_socket_close(nl);
	return err;
}
