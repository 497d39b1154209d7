// SPDX-License-Identifier: Apache-2.0
/*
 * `kpx conntrack` for the nft backend: the kernel's conntrack entries of
 * service flows, i.e. those whose original destination is a frontend kpx
 * programmed (read back from the table, nft_dump.c) and that were
 * translated (the reply does not come from the original destination).
 * Owns: nothing. Must not: change conntrack or the table.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include <libnetfilter_conntrack/libnetfilter_conntrack.h>

#include "nft/nft_dump.h"
#include "nft/nft_flows.h"

struct flow_scan {
	struct json_object *frontends; /* kpx_nft_dump_frontends */
	struct json_object *arr;
};

static void ep_str(int fam, const void *addr, uint16_t port_be, char *buf,
		   size_t len)
{
	char a[INET6_ADDRSTRLEN];

	inet_ntop(fam, addr, a, sizeof(a));
	snprintf(buf, len, fam == AF_INET6 ? "[%s]:%u" : "%s:%u", a,
		 ntohs(port_be));
}

/* The frontend entry of (addr, port, protocol), or NULL. */
static struct json_object *frontend_of(struct json_object *fes, int fam,
				       const void *addr, uint16_t port_be,
				       const char *proto)
{
	char a[INET6_ADDRSTRLEN];

	inet_ntop(fam, addr, a, sizeof(a));
	for (size_t i = 0; i < json_object_array_length(fes); i++) {
		struct json_object *f = json_object_array_get_idx(fes, i), *v;

		if (!json_object_object_get_ex(f, "port", &v) ||
		    json_object_get_int(v) != ntohs(port_be))
			continue;
		if (!json_object_object_get_ex(f, "protocol", &v) ||
		    strcasecmp(json_object_get_string(v), proto))
			continue;
		if (json_object_object_get_ex(f, "address", &v) &&
		    !strcmp(json_object_get_string(v), a))
			return f;
	}
	return NULL;
}

static int flow_cb(enum nf_conntrack_msg_type type, struct nf_conntrack *ct,
		   void *arg)
{
	struct flow_scan *s = arg;
	uint8_t fam = nfct_get_attr_u8(ct, ATTR_L3PROTO);
	uint8_t l4 = nfct_get_attr_u8(ct, ATTR_L4PROTO);
	bool v6 = fam == AF_INET6;
	const void *osrc, *odst, *rsrc, *rdst;
	uint16_t osp, odp, rsp, rdp;
	const char *proto = l4 == IPPROTO_TCP ? "TCP" : l4 == IPPROTO_UDP ? "UDP" :
			    l4 == IPPROTO_SCTP ? "SCTP" : NULL;
	struct json_object *fe, *f, *v;
	char buf[64];
	size_t alen = v6 ? 16 : 4;

	(void)type;
	if (!proto)
		return NFCT_CB_CONTINUE;
	osrc = nfct_get_attr(ct, v6 ? ATTR_ORIG_IPV6_SRC : ATTR_ORIG_IPV4_SRC);
	odst = nfct_get_attr(ct, v6 ? ATTR_ORIG_IPV6_DST : ATTR_ORIG_IPV4_DST);
	rsrc = nfct_get_attr(ct, v6 ? ATTR_REPL_IPV6_SRC : ATTR_REPL_IPV4_SRC);
	rdst = nfct_get_attr(ct, v6 ? ATTR_REPL_IPV6_DST : ATTR_REPL_IPV4_DST);
	osp = nfct_get_attr_u16(ct, ATTR_ORIG_PORT_SRC);
	odp = nfct_get_attr_u16(ct, ATTR_ORIG_PORT_DST);
	rsp = nfct_get_attr_u16(ct, ATTR_REPL_PORT_SRC);
	rdp = nfct_get_attr_u16(ct, ATTR_REPL_PORT_DST);
	if (!osrc || !odst || !rsrc || !rdst)
		return NFCT_CB_CONTINUE;
	/* Not translated: the original destination answers itself. */
	if (!memcmp(odst, rsrc, alen) && odp == rsp)
		return NFCT_CB_CONTINUE;
	fe = frontend_of(s->frontends, fam, odst, odp, proto);
	if (!fe)
		return NFCT_CB_CONTINUE;
	f = json_object_new_object();
	json_object_object_add(f, "protocol", json_object_new_string(proto));
	ep_str(fam, osrc, osp, buf, sizeof(buf));
	json_object_object_add(f, "client", json_object_new_string(buf));
	ep_str(fam, odst, odp, buf, sizeof(buf));
	json_object_object_add(f, "frontend", json_object_new_string(buf));
	ep_str(fam, rsrc, rsp, buf, sizeof(buf));
	json_object_object_add(f, "backend", json_object_new_string(buf));
	/* Masqueraded: the backend answers to another address than the
	 * client's. */
	if (memcmp(rdst, osrc, alen) || rdp != osp) {
		ep_str(fam, rdst, rdp, buf, sizeof(buf));
		json_object_object_add(f, "source_nat", json_object_new_string(buf));
	} else {
		json_object_object_add(f, "source_nat", NULL);
	}
	if (json_object_object_get_ex(fe, "service", &v)) {
		struct json_object *pn;
		const char *port = json_object_object_get_ex(fe, "port_name", &pn)
					   ? json_object_get_string(pn) : "";

		snprintf(buf, sizeof(buf), "%s:%s", json_object_get_string(v), port);
		json_object_object_add(f, "service", json_object_new_string(buf));
	}
	json_object_object_add(f, "timeout_seconds",
			       json_object_new_int64(nfct_get_attr_u32(ct, ATTR_TIMEOUT)));
	json_object_array_add(s->arr, f);
	return NFCT_CB_CONTINUE;
}

int kpx_nft_dump_flows(const struct kpx_config *cfg, struct json_object **out)
{
	struct flow_scan s = { 0 };
	struct nfct_handle *h;
	int err, fam;

	*out = NULL;
	err = kpx_nft_dump_frontends(cfg, &s.frontends);
	if (err)
		return err;
	h = nfct_open(CONNTRACK, 0);
	if (!h) {
		err = -errno;
		json_object_put(s.frontends);
		return err;
	}
	s.arr = json_object_new_array();
	nfct_callback_register(h, NFCT_T_ALL, flow_cb, &s);
	err = 0;
	for (int i = 0; i < 2 && !err; i++) {
		fam = i ? AF_INET6 : AF_INET;
		if (nfct_query(h, NFCT_Q_DUMP, &fam) < 0)
			err = -errno;
	}
	nfct_close(h);
	json_object_put(s.frontends);
	if (err) {
		json_object_put(s.arr);
		return err;
	}
	*out = s.arr;
	return 0;
}
