// SPDX-License-Identifier: Apache-2.0
/*
 * A NodePort/LoadBalancer connection the tc/XDP datapath balanced lives
 * in kpx's own conntrack map (kpx_ct): the client -> frontend packets are
 * rewritten to the backend (and to a node source port when masqueraded)
 * by kpx's programs, without netfilter. `kpx cleanup` removes those
 * programs; from then on the connection's packets reach the stack, where
 * the proxy that took over the node (kube-proxy after a rollback, kpx's
 * nft backend after a switch) sees a mid-stream segment of a connection
 * it never balanced: a new conntrack entry, a backend chosen again, a
 * different source port, and the connection is reset.
 *
 * So before the programs go, every original-direction flow of kpx_ct is
 * written into the kernel's conntrack table over ctnetlink, with the same
 * translation: destination NAT to the backend kpx chose, source NAT to
 * the node address and port kpx used. The kernel then translates the
 * connection's next packets exactly as kpx did, wherever a nat chain is
 * registered (both proxies that take over have one). DSR flows have no
 * reply state on this node and are left out.
 *
 * Owns: nothing persistent. Must not: change kpx's maps.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "bpf/ct_handoff.h"
#include "bpf/kpx_abi.h"
#include "bpf/map_walk.h"
#include "common/log.h"

#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_conntrack_tcp.h>

/* What kube-proxy gives established TCP (its conntrack default) and the
 * kernel's UDP stream timeout: the kernel refreshes both on traffic. */
#define HANDOFF_TCP_TIMEOUT_S 86400u
#define HANDOFF_UDP_TIMEOUT_S 120u

struct handoff {
	struct mnl_socket *nl;
	uint32_t seq;
	unsigned handed, existed, failed;
	int first_err;
};

static void put_addr(struct nlmsghdr *nlh, uint8_t fam, uint16_t a4,
		     uint16_t a6, const uint8_t *addr)
{
	if (fam == KPX_AF_INET6)
		mnl_attr_put(nlh, a6, 16, addr);
	else
		mnl_attr_put(nlh, a4, 4, addr);
}

static void put_tuple(struct nlmsghdr *nlh, uint16_t type, uint8_t fam,
		      uint8_t proto, const uint8_t *src, __be16 sport,
		      const uint8_t *dst, __be16 dport)
{
	struct nlattr *t = mnl_attr_nest_start(nlh, type), *n;

	n = mnl_attr_nest_start(nlh, CTA_TUPLE_IP);
	put_addr(nlh, fam, CTA_IP_V4_SRC, CTA_IP_V6_SRC, src);
	put_addr(nlh, fam, CTA_IP_V4_DST, CTA_IP_V6_DST, dst);
	mnl_attr_nest_end(nlh, n);
	n = mnl_attr_nest_start(nlh, CTA_TUPLE_PROTO);
	mnl_attr_put_u8(nlh, CTA_PROTO_NUM, proto);
	mnl_attr_put_u16(nlh, CTA_PROTO_SRC_PORT, sport);
	mnl_attr_put_u16(nlh, CTA_PROTO_DST_PORT, dport);
	mnl_attr_nest_end(nlh, n);
	mnl_attr_nest_end(nlh, t);
}

/* CTA_NAT_DST / CTA_NAT_SRC: exactly ADDR:PORT (a one-element range, so
 * the kernel takes that port and no other). */
static void put_nat(struct nlmsghdr *nlh, uint16_t type, uint8_t fam,
		    const uint8_t *addr, __be16 port)
{
	struct nlattr *t = mnl_attr_nest_start(nlh, type), *p;

	put_addr(nlh, fam, CTA_NAT_V4_MINIP, CTA_NAT_V6_MINIP, addr);
	put_addr(nlh, fam, CTA_NAT_V4_MAXIP, CTA_NAT_V6_MAXIP, addr);
	p = mnl_attr_nest_start(nlh, CTA_NAT_PROTO);
	mnl_attr_put_u16(nlh, CTA_PROTONAT_PORT_MIN, port);
	mnl_attr_put_u16(nlh, CTA_PROTONAT_PORT_MAX, port);
	mnl_attr_nest_end(nlh, p);
	mnl_attr_nest_end(nlh, t);
}

static struct nlmsghdr *ct_msg(char *buf, uint16_t type, uint16_t flags,
			       uint8_t fam, uint32_t seq)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct nfgenmsg *g;

	nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | type;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
	nlh->nlmsg_seq = seq;
	g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
	g->nfgen_family = fam == KPX_AF_INET6 ? AF_INET6 : AF_INET;
	g->version = NFNETLINK_V0;
	g->res_id = 0;
	return nlh;
}

/* Sends one request; 0 or the kernel's negative errno. */
static int ct_request(struct handoff *h, struct nlmsghdr *nlh)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	ssize_t n;
	int ret;

	if (mnl_socket_sendto(h->nl, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	do {
		n = mnl_socket_recvfrom(h->nl, buf, sizeof(buf));
		if (n < 0)
			return -errno;
		ret = mnl_cb_run(buf, n, nlh->nlmsg_seq,
				 mnl_socket_get_portid(h->nl), NULL, NULL);
	} while (ret > 0);
	return ret < 0 ? -errno : 0;
}

static int handoff_one(struct handoff *h, const struct kpx_ct_key *k,
		       const struct kpx_ct_value *v)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	size_t alen = k->family == KPX_AF_INET6 ? 16 : 4;
	bool snat = memcmp(v->new_saddr, k->saddr, alen) ||
		    v->new_sport != k->sport;
	struct nlmsghdr *nlh;
	int err;

	nlh = ct_msg(buf, IPCTNL_MSG_CT_NEW, NLM_F_CREATE | NLM_F_EXCL,
		     k->family, h->seq++);
	/* The reply tuple as if untranslated: the NAT setups below rewrite
	 * it (and mark the entry translated) the way a nat rule would. */
	put_tuple(nlh, CTA_TUPLE_ORIG, k->family, k->proto, k->saddr,
		  k->sport, k->daddr, k->dport);
	put_tuple(nlh, CTA_TUPLE_REPLY, k->family, k->proto, k->daddr,
		  k->dport, k->saddr, k->sport);
	put_nat(nlh, CTA_NAT_DST, k->family, v->new_daddr, v->new_dport);
	if (snat)
		put_nat(nlh, CTA_NAT_SRC, k->family, v->new_saddr, v->new_sport);
	/* CONFIRMED too: the kernel marks a created entry confirmed before
	 * it applies CTA_STATUS, and refuses a status that clears it. */
	mnl_attr_put_u32(nlh, CTA_STATUS,
			 htonl(IPS_CONFIRMED | IPS_SEEN_REPLY | IPS_ASSURED));
	if (k->proto == IPPROTO_TCP) {
		/* Established, and liberal: the kernel never saw the window
		 * scale this connection negotiated. */
		struct nf_ct_tcp_flags liberal = {
			.flags = IP_CT_TCP_FLAG_BE_LIBERAL,
			.mask = IP_CT_TCP_FLAG_BE_LIBERAL,
		};
		struct nlattr *pi = mnl_attr_nest_start(nlh, CTA_PROTOINFO),
			      *tcp = mnl_attr_nest_start(nlh, CTA_PROTOINFO_TCP);

		mnl_attr_put_u8(nlh, CTA_PROTOINFO_TCP_STATE,
				TCP_CONNTRACK_ESTABLISHED);
		mnl_attr_put(nlh, CTA_PROTOINFO_TCP_FLAGS_ORIGINAL,
			     sizeof(liberal), &liberal);
		mnl_attr_put(nlh, CTA_PROTOINFO_TCP_FLAGS_REPLY,
			     sizeof(liberal), &liberal);
		mnl_attr_nest_end(nlh, tcp);
		mnl_attr_nest_end(nlh, pi);
	}
	mnl_attr_put_u32(nlh, CTA_TIMEOUT,
			 htonl(k->proto == IPPROTO_TCP ? HANDOFF_TCP_TIMEOUT_S :
							 HANDOFF_UDP_TIMEOUT_S));
	err = ct_request(h, nlh);
	if (err == -EEXIST) {
		/* The stack already tracks the translated half (a flow kpx
		 * delivered to a local pod went through netfilter after
		 * kpx's rewrite): that entry knows nothing of the frontend.
		 * Replace it, found by its reply tuple (the same as ours). */
		char dbuf[MNL_SOCKET_BUFFER_SIZE];
		struct nlmsghdr *d = ct_msg(dbuf, IPCTNL_MSG_CT_DELETE, 0,
					    k->family, h->seq++);

		put_tuple(d, CTA_TUPLE_REPLY, k->family, k->proto,
			  v->new_daddr, v->new_dport, v->new_saddr,
			  v->new_sport);
		if (ct_request(h, d) == 0) {
			nlh->nlmsg_seq = h->seq++;
			err = ct_request(h, nlh);
		}
		if (err == -EEXIST) {
			h->existed++;
			return 0;
		}
	}
	return err;
}

static int handoff_chunk(const void *keys, const void *vals, uint32_t n,
			 void *arg)
{
	const struct kpx_ct_key *k = keys;
	const struct kpx_ct_value *v = vals;
	struct handoff *h = arg;

	for (uint32_t i = 0; i < n; i++) {
		int err;

		if (k[i].dir != KPX_CT_DIR_ORIG ||
		    (v[i].flags & (KPX_CT_F_DSR | KPX_CT_F_DSR_REV)) ||
		    (k[i].proto != IPPROTO_TCP && k[i].proto != IPPROTO_UDP))
			continue;
		err = handoff_one(h, &k[i], &v[i]);
		if (!err) {
			h->handed++;
		} else {
			h->failed++;
			if (!h->first_err)
				h->first_err = err;
		}
	}
	return 0;
}

int kpx_bpf_ct_handoff(const char *bpf_root)
{
	struct handoff h = { .seq = (uint32_t)time(NULL) };
	struct kpx_map_walk mw = {
		.key_size = sizeof(struct kpx_ct_key),
		.value_size = sizeof(struct kpx_ct_value),
		.chunk = 4096,
	};
	char path[4096];
	int err;

	snprintf(path, sizeof(path), "%s/kpx_ct", bpf_root);
	mw.fd = bpf_obj_get(path);
	if (mw.fd < 0)
		return errno == ENOENT ? 0 : -errno;
	h.nl = mnl_socket_open(NETLINK_NETFILTER);
	if (!h.nl || mnl_socket_bind(h.nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		err = -errno;
		goto out;
	}
	err = kpx_map_walk(&mw, handoff_chunk, &h);
	if (!err && h.failed)
		kpx_warn("bpf: %u flows could not be handed to the kernel's "
			 "conntrack (first error: %s); they are reset when "
			 "their next packet meets the new proxy", h.failed,
			 strerror(-h.first_err));
	if (!err && (h.handed || h.existed))
		kpx_info("bpf: handed %u flows to the kernel's conntrack "
			 "(%u already tracked there)", h.handed, h.existed);
	if (!err)
		err = (int)h.handed;
out:
	if (h.nl)
		mnl_socket_close(h.nl);
	close(mw.fd);
	return err;
}
