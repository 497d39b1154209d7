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
 * translation (libnetfilter_conntrack): destination NAT to the backend
 * kpx chose, source NAT to the node address and port kpx used. The kernel then translates the
 * connection's next packets exactly as kpx did, wherever a nat chain is
 * registered (both proxies that take over have one). DSR flows have no
 * reply state on this node and are left out.
 *
 * Owns: nothing persistent. Must not: change kpx's maps.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "bpf/ct_handoff.h"
#include "bpf/kpx_abi.h"
#include "bpf/map_walk.h"
#include "common/log.h"

#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack_tcp.h>
#include <linux/netfilter/nf_conntrack_common.h>

/* What kube-proxy gives established TCP (its conntrack default) and the
 * kernel's UDP stream timeout: the kernel refreshes both on traffic. */
#define HANDOFF_TCP_TIMEOUT_S 86400u
#define HANDOFF_UDP_TIMEOUT_S 120u

struct handoff {
	struct nfct_handle *h;
	unsigned handed, existed, failed;
	int first_err;
};

/* One direction's tuple: ATTR_ORIG_* when orig, else ATTR_REPL_*. */
static void set_tuple(struct nf_conntrack *ct, bool orig, uint8_t fam,
		      uint8_t proto, const uint8_t *src, __be16 sport,
		      const uint8_t *dst, __be16 dport)
{
	bool v6 = fam == KPX_AF_INET6;
	uint32_t a;

	nfct_set_attr_u8(ct, orig ? ATTR_ORIG_L3PROTO : ATTR_REPL_L3PROTO,
			 v6 ? AF_INET6 : AF_INET);
	nfct_set_attr_u8(ct, orig ? ATTR_ORIG_L4PROTO : ATTR_REPL_L4PROTO,
			 proto);
	if (v6) {
		nfct_set_attr(ct, orig ? ATTR_ORIG_IPV6_SRC : ATTR_REPL_IPV6_SRC,
			      src);
		nfct_set_attr(ct, orig ? ATTR_ORIG_IPV6_DST : ATTR_REPL_IPV6_DST,
			      dst);
	} else {
		memcpy(&a, src, 4);
		nfct_set_attr_u32(ct, orig ? ATTR_ORIG_IPV4_SRC :
					     ATTR_REPL_IPV4_SRC, a);
		memcpy(&a, dst, 4);
		nfct_set_attr_u32(ct, orig ? ATTR_ORIG_IPV4_DST :
					     ATTR_REPL_IPV4_DST, a);
	}
	nfct_set_attr_u16(ct, orig ? ATTR_ORIG_PORT_SRC : ATTR_REPL_PORT_SRC,
			  sport);
	nfct_set_attr_u16(ct, orig ? ATTR_ORIG_PORT_DST : ATTR_REPL_PORT_DST,
			  dport);
}

/* Exactly ADDR:PORT (the library makes it a one-element range, so the
 * kernel takes that port and no other). */
static void set_nat(struct nf_conntrack *ct, bool dnat, uint8_t fam,
		    const uint8_t *addr, __be16 port)
{
	uint32_t a;

	if (fam == KPX_AF_INET6) {
		nfct_set_attr(ct, dnat ? ATTR_DNAT_IPV6 : ATTR_SNAT_IPV6, addr);
	} else {
		memcpy(&a, addr, 4);
		nfct_set_attr_u32(ct, dnat ? ATTR_DNAT_IPV4 : ATTR_SNAT_IPV4, a);
	}
	nfct_set_attr_u16(ct, dnat ? ATTR_DNAT_PORT : ATTR_SNAT_PORT, port);
}

static int create(struct handoff *h, const struct nf_conntrack *ct)
{
	return nfct_query(h->h, NFCT_Q_CREATE, ct) ? -errno : 0;
}

static int handoff_one(struct handoff *h, const struct kpx_ct_key *k,
		       const struct kpx_ct_value *v)
{
	size_t alen = k->family == KPX_AF_INET6 ? 16 : 4;
	bool snat = memcmp(v->new_saddr, k->saddr, alen) ||
		    v->new_sport != k->sport;
	struct nf_conntrack *ct = nfct_new(), *old;
	int err;

	if (!ct)
		return -ENOMEM;
	/* The reply tuple as if untranslated: the NAT setups rewrite it
	 * (and mark the entry translated) the way a nat rule would. */
	set_tuple(ct, true, k->family, k->proto, k->saddr, k->sport, k->daddr,
		  k->dport);
	set_tuple(ct, false, k->family, k->proto, k->daddr, k->dport, k->saddr,
		  k->sport);
	set_nat(ct, true, k->family, v->new_daddr, v->new_dport);
	if (snat)
		set_nat(ct, false, k->family, v->new_saddr, v->new_sport);
	/* CONFIRMED too: the kernel marks a created entry confirmed before
	 * it applies the status, and refuses a status that clears it. */
	nfct_set_attr_u32(ct, ATTR_STATUS,
			  IPS_CONFIRMED | IPS_SEEN_REPLY | IPS_ASSURED);
	nfct_set_attr_u32(ct, ATTR_TIMEOUT,
			  k->proto == IPPROTO_TCP ? HANDOFF_TCP_TIMEOUT_S :
						    HANDOFF_UDP_TIMEOUT_S);
	if (k->proto == IPPROTO_TCP) {
		/* Established, and liberal: the kernel never saw the window
		 * scale this connection negotiated. */
		nfct_set_attr_u8(ct, ATTR_TCP_STATE, TCP_CONNTRACK_ESTABLISHED);
		nfct_set_attr_u8(ct, ATTR_TCP_FLAGS_ORIG,
				 IP_CT_TCP_FLAG_BE_LIBERAL);
		nfct_set_attr_u8(ct, ATTR_TCP_MASK_ORIG,
				 IP_CT_TCP_FLAG_BE_LIBERAL);
		nfct_set_attr_u8(ct, ATTR_TCP_FLAGS_REPL,
				 IP_CT_TCP_FLAG_BE_LIBERAL);
		nfct_set_attr_u8(ct, ATTR_TCP_MASK_REPL,
				 IP_CT_TCP_FLAG_BE_LIBERAL);
	}
	err = create(h, ct);
	if (err == -EEXIST && !snat) {
		/* The stack already tracks the translated half (a flow kpx
		 * delivered to a local pod unmasqueraded went through
		 * netfilter after kpx's rewrite: client -> pod); that entry
		 * knows nothing of the frontend and holds our reply tuple.
		 * Replace it. */
		old = nfct_new();
		if (old) {
			set_tuple(old, true, k->family, k->proto, k->saddr,
				  k->sport, v->new_daddr, v->new_dport);
			if (!nfct_query(h->h, NFCT_Q_DESTROY, old))
				err = create(h, ct);
			nfct_destroy(old);
		}
	}
	nfct_destroy(ct);
	if (err == -EEXIST) {
		h->existed++;
		return 0;
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
	struct handoff h = { 0 };
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
	h.h = nfct_open(CONNTRACK, 0);
	if (!h.h) {
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
	if (h.h)
		nfct_close(h.h);
	close(mw.fd);
	return err;
}
