// SPDX-License-Identifier: Apache-2.0
/*
 * The nft backend without root: each test builds a plan, syncs it through
 * a fake netlink seam (nft/nft_seam.h) that captures the batch, and
 * compares the objects the sync emitted, rendered as nft-like text, with
 * the expected text (as kube-proxy's proxier tests do with a fake
 * knftables). A full sync's text is compared without the static skeleton
 * (the lines an empty plan's full sync gives), so each test shows exactly
 * what its Services add.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/backend.h"
#include "model/store.h"
#include "nft/nft_seam.h"
#include "obj_builders.h"
#include "plan/plan.h"

#define ME "node-me"

static struct kpx_store *st;
static struct kpx_plan *plan;
static struct kpx_plan_input in;
static struct kpx_backend *be;

/* The fake kernel: keeps the text of every batch; refuses a batch that
 * contains `refuse` (a substring of its text) with `refuse_err`. */
static struct fake {
	char *last; /* text of the last batch sent */
	const char *refuse;
	int refuse_err;
	unsigned sent, refused;
} fk;

static int fake_send(void *ctx, struct kpx_nft_batch *b)
{
	char *t = kpx_nft_render(b);

	(void)ctx;
	cr_assert_not_null(t);
	fk.sent++;
	if (fk.refuse && strstr(t, fk.refuse)) {
		fk.refused++;
		free(t);
		return fk.refuse_err;
	}
	free(fk.last);
	fk.last = t;
	return 0;
}

static int fake_read_affinity(void *ctx, struct kpx_nft_aff_snap *s)
{
	(void)ctx;
	(void)s;
	return -ENOENT;
}

static const struct kpx_nft_io fake_io = {
	.send = fake_send,
	.read_affinity = fake_read_affinity,
};

static void setup(void)
{
	struct kpx_config cfg;

	memset(&fk, 0, sizeof(fk));
	cr_assert_eq(kpx_store_new(&st), 0);
	memset(&in, 0, sizeof(in));
	strcpy(in.node_name, ME);
	in.node_ips[0] = b_addr("198.18.0.10");
	in.n_node_ips = 1;
	in.caps = kpx_nft_backend.caps;
	plan = NULL;
	memset(&cfg, 0, sizeof(cfg));
	cr_assert_eq(kpx_nft_open_io(&cfg, &fake_io, &be), 0);
}

static void teardown(void)
{
	kpx_nft_backend.close(be);
	kpx_plan_free(plan);
	kpx_store_free(st);
	free(fk.last);
}

TestSuite(nft, .init = setup, .fini = teardown);

static void build(void)
{
	kpx_plan_free(plan);
	plan = NULL;
	cr_assert_eq(kpx_plan_build(st, &in, &plan), 0);
}

/* Syncs the store's plan; returns the text of the batch sent ("" when
 * nothing was), owned by fk. */
static const char *sync_text(void)
{
	unsigned before = fk.sent;

	build();
	cr_assert_eq(kpx_nft_backend.sync(be, plan), 0);
	if (fk.sent == before) {
		free(fk.last);
		fk.last = strdup("");
	}
	return fk.last;
}

/* Lines of a that are not in b (as multisets), in a's order. */
static char *minus(const char *a, const char *b)
{
	char *out = calloc(1, strlen(a) + 1), *bb = strdup(b);
	const char *p = a;

	cr_assert(out && bb);
	while (*p) {
		const char *e = strchr(p, '\n');
		size_t n = e ? (size_t)(e - p) + 1 : strlen(p);
		char *q = bb;
		bool found = false;

		while ((q = strstr(q, "")) && *q) {
			char *qe = strchr(q, '\n');
			size_t qn = qe ? (size_t)(qe - q) + 1 : strlen(q);

			if (qn == n && !memcmp(q, p, n) && (q == bb || q[-1] == '\n')) {
				memset(q, '\x01', qn - 1); /* used up */
				found = true;
				break;
			}
			q += qn;
		}
		if (!found)
			strncat(out, p, n);
		p += n;
	}
	free(bb);
	return out;
}

/* The text a full sync of an empty plan gives: the static skeleton. */
static char *skeleton(void)
{
	struct kpx_backend *b2;
	struct kpx_config cfg;
	struct kpx_plan *p = NULL;
	struct kpx_store *s;
	char *saved = fk.last, *t;

	memset(&cfg, 0, sizeof(cfg));
	fk.last = NULL;
	cr_assert_eq(kpx_store_new(&s), 0);
	cr_assert_eq(kpx_plan_build(s, &in, &p), 0);
	cr_assert_eq(kpx_nft_open_io(&cfg, &fake_io, &b2), 0);
	cr_assert_eq(kpx_nft_backend.sync(b2, p), 0);
	t = fk.last;
	fk.last = saved;
	kpx_nft_backend.close(b2);
	kpx_plan_free(p);
	kpx_store_free(s);
	return t;
}

/* The first (full) sync, without the skeleton. */
static char *first_sync(void)
{
	char *sk = skeleton();
	char *t = minus(sync_text(), sk);

	free(sk);
	return t;
}

static void expect_text(const char *got, const char *want)
{
	cr_expect_str_eq(got, want, "\n--- got:\n%s--- want:\n%s", got, want);
}

/* ---- objects ---- */

static struct kpx_service *svc(const char *name, enum kpx_svc_type type,
			       const char *cip, uint8_t proto, uint16_t port,
			       uint16_t np)
{
	struct kpx_service *s = b_svc("ns", name, type, cip);

	b_svc_port(s, "", proto, port, np);
	return s;
}

static void slice(const char *svcname, const char *name, uint16_t port,
		  const char *eps /* "ip@node,..." */)
{
	struct kpx_endpoint_slice *sl = b_slice("ns", name, svcname, AF_INET);
	char buf[256], *save = NULL, *tok;

	b_slice_port(sl, "", KPX_PROTO_TCP, port);
	snprintf(buf, sizeof(buf), "%s", eps);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *at = strchr(tok, '@');

		*at = 0;
		b_ready(sl, tok, at + 1);
	}
	kpx_store_upsert(st, KPX_KIND_SLICE, sl);
}

static void cidr(const char *c)
{
	in.cluster_cidrs[in.n_cluster_cidrs++] = b_cidr(c);
}

/* ---- tests ---- */

Test(nft, cluster_ip_enters_its_internal_chain_and_dispatches)
{
	char *t;

	kpx_store_upsert(st, KPX_KIND_SERVICE,
			 svc("web", KPX_SVC_CLUSTER_IP, "198.18.100.1",
			     KPX_PROTO_TCP, 80, 0));
	slice("web", "web-1", 8080, "198.19.1.1@" ME ",198.19.2.1@other");
	t = first_sync();
	expect_text(t,
		"add chain svc-1 ud \"svc|ns/web:/TCP/v4|4\"\n"
		"add chain disp4-i-a0\n"
		"add rule disp4-i-a0 [ meta load mark => reg 23 ] [ payload load 4b @ network header + 16 => reg 10 ] [ meta load l4proto => reg 11 ] [ payload load 2b @ transport header + 2 => reg 12 ] [ lookup reg 10 set gint4 dreg 8 ] [ meta set mark with reg 8 ] [ meta load mark => reg 8 ] [ meta set mark with reg 23 ] [ lookup reg 8 set gn4 dreg 9 ] [ meta set mark with reg 9 ] [ meta load mark => reg 9 ] [ meta set mark with reg 23 ] [ numgen reg 10 = random mod 4096 ] [ lookup reg 9 set sel4 dreg 9 ] [ meta set mark with reg 9 ] [ meta load mark => reg 9 ] [ meta set mark with reg 23 ] [ lookup reg 8 set slots4 dreg 10 ] [ nat dnat ip addr_min reg 10 proto_min reg 11 ]\n"
		"add rule svc-1 [ immediate reg 0 goto -> disp4-i-a0 ]\n"
		"add element sel4 { 2 . 0-4095 } (4096 elements)\n"
		"add element fe4 { 198.18.100.1 . tcp . 80 : goto svc-1 } ud ClusterIP sets internal,internal,internal affinity 0\n"
		"add element slots4 { 4 . 0 : 198.19.1.1 . 8080 } ud 0b\n"
		"add element slots4 { 4 . 1 : 198.19.2.1 . 8080 } ud 03\n"
		"add element hp4 { 198.19.1.1 . 198.19.1.1 }\n"
		"add element gint4 { 198.18.100.1 . tcp . 80 : 4 }\n"
		"add element gn4 { 4 : 2 }\n"
		"add element sel4 { 1 . 0-4095 } (4096 elements)\n"
		"add element sel4 { 3 . 0-4095 } (4096 elements)\n");
	free(t);
}

Test(nft, masquerade_rows_without_cluster_cidr_mark_nothing)
{
	char *t;

	kpx_store_upsert(st, KPX_KIND_SERVICE,
			 svc("web", KPX_SVC_CLUSTER_IP, "198.18.100.1",
			     KPX_PROTO_TCP, 80, 0));
	slice("web", "web-1", 8080, "198.19.1.1@" ME);
	t = first_sync();
	cr_expect_null(strstr(t, "masq"), "%s", t);
	cr_expect_null(strstr(t, "0x00004000"), "%s", t);
	free(t);
}

Test(nft, masquerade_rows_with_cluster_cidr_mark_what_is_outside_it)
{
	char *t;

	cidr("198.19.0.0/16");
	kpx_store_upsert(st, KPX_KIND_SERVICE,
			 svc("web", KPX_SVC_CLUSTER_IP, "198.18.100.1",
			     KPX_PROTO_TCP, 80, 0));
	slice("web", "web-1", 8080, "198.19.1.1@" ME);
	t = first_sync();
	/* pod never, node and remote unless in the cluster CIDR: kube-
	 * proxy's masq-check, one shared chain */
	cr_expect_not_null(strstr(t, "add rule svc-1 [ immediate reg 0 jump -> masq4-ooo ]\n"),
			   "%s", t);
	cr_expect_not_null(strstr(t, "add rule svc-1 [ immediate reg 0 goto -> disp4-i-a0 ]\n"),
			   "%s", t);
	cr_expect_not_null(strstr(t,
		"add chain masq4-ooo\n"
		"add rule masq4-ooo [ payload load 4b @ network header + 12 => reg 8 ] [ bitwise reg 8 = ( reg 8 & 0x0000ffff ) ^ 0x00000000 ] [ cmp eq reg 8 0x000013c6 ] [ immediate reg 0 return ]\n"
		"add rule masq4-ooo [ meta load mark => reg 9 ] [ bitwise reg 9 = ( reg 9 & 0xffffbfff ) ^ 0x00004000 ] [ meta set mark with reg 9 ]\n"),
		"%s", t);
	free(t);
}

Test(nft, masquerade_all_rows_mark_inline)
{
	char *t;

	cidr("198.19.0.0/16");
	in.masquerade_all = true;
	kpx_store_upsert(st, KPX_KIND_SERVICE,
			 svc("web", KPX_SVC_CLUSTER_IP, "198.18.100.1",
			     KPX_PROTO_TCP, 80, 0));
	slice("web", "web-1", 8080, "198.19.1.1@" ME);
	t = first_sync();
	cr_expect_not_null(strstr(t,
		"add rule svc-1 [ meta load mark => reg 9 ] [ bitwise reg 9 = ( reg 9 & 0xffffbfff ) ^ 0x00004000 ] [ meta set mark with reg 9 ]\n"
		"add chain disp4-i-a0\n"), "%s", t);
	cr_expect_null(strstr(t, "masq4-"), "%s", t);
	free(t);
}

Test(nft, nodeport_local_policy_branches_node_and_pods_to_cluster_set)
{
	char *t;
	struct kpx_service *s = svc("np", KPX_SVC_NODE_PORT, "198.18.100.2",
				    KPX_PROTO_TCP, 80, 30080);

	cidr("198.19.0.0/16");
	s->etp_local = true;
	kpx_store_upsert(st, KPX_KIND_SERVICE, s);
	slice("np", "np-1", 8080, "198.19.1.1@" ME ",198.19.2.1@other");
	t = first_sync();
	/* The whole text: the ClusterIP's own chain with its masquerade
	 * (kube-proxy's masq-check: unless the source is in the cluster
	 * CIDR); the NodePort enters ext-1 (remote: local endpoints, client
	 * address kept), node sources inside the cluster CIDR and pods go to
	 * clu-1 unmarked, other node sources are marked and go there; three
	 * groups: 4 internal (2), 5 external
	 * (the local one), 6 cluster (2). */
	expect_text(t,
		"add chain svc-1 ud \"svc|ns/np:/TCP/v4|4\"\n"
		"add chain ext-1 ud \"ext|ns/np:/TCP/v4|5\"\n"
		"add chain clu-1 ud \"clu|ns/np:/TCP/v4|6\"\n"
		"add chain masq4-ooo\n"
		"add rule masq4-ooo [ payload load 4b @ network header + 12 => reg 8 ] [ bitwise reg 8 = ( reg 8 & 0x0000ffff ) ^ 0x00000000 ] [ cmp eq reg 8 0x000013c6 ] [ immediate reg 0 return ]\n"
		"add rule masq4-ooo [ meta load mark => reg 9 ] [ bitwise reg 9 = ( reg 9 & 0xffffbfff ) ^ 0x00004000 ] [ meta set mark with reg 9 ]\n"
		"add rule svc-1 [ immediate reg 0 jump -> masq4-ooo ]\n"
		"add chain disp4-i-a0\n"
		"add rule disp4-i-a0 [ meta load mark => reg 23 ] [ payload load 4b @ network header + 16 => reg 10 ] [ meta load l4proto => reg 11 ] [ payload load 2b @ transport header + 2 => reg 12 ] [ lookup reg 10 set gint4 dreg 8 ] [ meta set mark with reg 8 ] [ meta load mark => reg 8 ] [ meta set mark with reg 23 ] [ lookup reg 8 set gn4 dreg 9 ] [ meta set mark with reg 9 ] [ meta load mark => reg 9 ] [ meta set mark with reg 23 ] [ numgen reg 10 = random mod 4096 ] [ lookup reg 9 set sel4 dreg 9 ] [ meta set mark with reg 9 ] [ meta load mark => reg 9 ] [ meta set mark with reg 23 ] [ lookup reg 8 set slots4 dreg 10 ] [ nat dnat ip addr_min reg 10 proto_min reg 11 ]\n"
		"add rule svc-1 [ immediate reg 0 goto -> disp4-i-a0 ]\n"
		"add rule ext-1 [ fib saddr type => reg 8 ] [ cmp eq reg 8 0x00000002 ] [ payload load 4b @ network header + 12 => reg 8 ] [ bitwise reg 8 = ( reg 8 & 0x0000ffff ) ^ 0x00000000 ] [ cmp eq reg 8 0x000013c6 ] [ immediate reg 0 goto -> clu-1 ]\n"
		"add rule ext-1 [ fib saddr type => reg 8 ] [ cmp eq reg 8 0x00000002 ] [ meta load mark => reg 9 ] [ bitwise reg 9 = ( reg 9 & 0xffffbfff ) ^ 0x00004000 ] [ meta set mark with reg 9 ] [ immediate reg 0 goto -> clu-1 ]\n"
		"add rule ext-1 [ payload load 4b @ network header + 12 => reg 8 ] [ bitwise reg 8 = ( reg 8 & 0x0000ffff ) ^ 0x00000000 ] [ cmp eq reg 8 0x000013c6 ] [ immediate reg 0 goto -> clu-1 ]\n"
		"add chain disp4-e-a0\n"
		"add rule disp4-e-a0 [ meta load mark => reg 23 ] [ payload load 4b @ network header + 16 => reg 10 ] [ meta load l4proto => reg 11 ] [ payload load 2b @ transport header + 2 => reg 12 ] [ lookup reg 10 set gext4 dreg 8 ] [ meta set mark with reg 8 ] [ meta load mark => reg 8 ] [ meta set mark with reg 23 ] [ lookup reg 8 set gn4 dreg 9 ] [ meta set mark with reg 9 ] [ meta load mark => reg 9 ] [ meta set mark with reg 23 ] [ numgen reg 10 = random mod 4096 ] [ lookup reg 9 set sel4 dreg 9 ] [ meta set mark with reg 9 ] [ meta load mark => reg 9 ] [ meta set mark with reg 23 ] [ lookup reg 8 set slots4 dreg 10 ] [ nat dnat ip addr_min reg 10 proto_min reg 11 ]\n"
		"add rule disp4-e-a0 [ meta load mark => reg 23 ] [ meta load l4proto => reg 10 ] [ payload load 2b @ transport header + 2 => reg 11 ] [ lookup reg 10 set gnpext4 dreg 8 ] [ meta set mark with reg 8 ] [ meta load mark => reg 8 ] [ meta set mark with reg 23 ] [ lookup reg 8 set gn4 dreg 9 ] [ meta set mark with reg 9 ] [ meta load mark => reg 9 ] [ meta set mark with reg 23 ] [ numgen reg 10 = random mod 4096 ] [ lookup reg 9 set sel4 dreg 9 ] [ meta set mark with reg 9 ] [ meta load mark => reg 9 ] [ meta set mark with reg 23 ] [ lookup reg 8 set slots4 dreg 10 ] [ nat dnat ip addr_min reg 10 proto_min reg 11 ]\n"
		"add rule ext-1 [ immediate reg 0 goto -> disp4-e-a0 ]\n"
		"add chain disp4-c-a0\n"
		"add rule disp4-c-a0 [ meta load mark => reg 23 ] [ payload load 4b @ network header + 16 => reg 10 ] [ meta load l4proto => reg 11 ] [ payload load 2b @ transport header + 2 => reg 12 ] [ lookup reg 10 set gclu4 dreg 8 ] [ meta set mark with reg 8 ] [ meta load mark => reg 8 ] [ meta set mark with reg 23 ] [ lookup reg 8 set gn4 dreg 9 ] [ meta set mark with reg 9 ] [ meta load mark => reg 9 ] [ meta set mark with reg 23 ] [ numgen reg 10 = random mod 4096 ] [ lookup reg 9 set sel4 dreg 9 ] [ meta set mark with reg 9 ] [ meta load mark => reg 9 ] [ meta set mark with reg 23 ] [ lookup reg 8 set slots4 dreg 10 ] [ nat dnat ip addr_min reg 10 proto_min reg 11 ]\n"
		"add rule disp4-c-a0 [ meta load mark => reg 23 ] [ meta load l4proto => reg 10 ] [ payload load 2b @ transport header + 2 => reg 11 ] [ lookup reg 10 set gnpclu4 dreg 8 ] [ meta set mark with reg 8 ] [ meta load mark => reg 8 ] [ meta set mark with reg 23 ] [ lookup reg 8 set gn4 dreg 9 ] [ meta set mark with reg 9 ] [ meta load mark => reg 9 ] [ meta set mark with reg 23 ] [ numgen reg 10 = random mod 4096 ] [ lookup reg 9 set sel4 dreg 9 ] [ meta set mark with reg 9 ] [ meta load mark => reg 9 ] [ meta set mark with reg 23 ] [ lookup reg 8 set slots4 dreg 10 ] [ nat dnat ip addr_min reg 10 proto_min reg 11 ]\n"
		"add rule clu-1 [ immediate reg 0 goto -> disp4-c-a0 ]\n"
		"add element sel4 { 2 . 0-4095 } (4096 elements)\n"
		"add element sel4 { 1 . 0-4095 } (4096 elements)\n"
		"add element fe4 { 198.18.100.2 . tcp . 80 : goto svc-1 } ud ClusterIP sets internal,internal,internal affinity 0\n"
		"add element np4 { tcp . 30080 : goto ext-1 } ud NodePort sets cluster,cluster,external affinity 0\n"
		"add element npaddr4 { 198.18.0.10 }\n"
		"add element slots4 { 4 . 0 : 198.19.1.1 . 8080 } ud 0b\n"
		"add element slots4 { 4 . 1 : 198.19.2.1 . 8080 } ud 03\n"
		"add element slots4 { 5 . 0 : 198.19.1.1 . 8080 } ud 0b\n"
		"add element slots4 { 6 . 0 : 198.19.1.1 . 8080 } ud 0b\n"
		"add element slots4 { 6 . 1 : 198.19.2.1 . 8080 } ud 03\n"
		"add element hp4 { 198.19.1.1 . 198.19.1.1 }\n"
		"add element gint4 { 198.18.100.2 . tcp . 80 : 4 }\n"
		"add element gnpext4 { tcp . 30080 : 5 }\n"
		"add element gnpclu4 { tcp . 30080 : 6 }\n"
		"add element gn4 { 4 : 2 }\n"
		"add element gn4 { 5 : 1 }\n"
		"add element gn4 { 6 : 2 }\n"
		"add element sel4 { 3 . 0-4095 } (4096 elements)\n");
	/* the frontend enters ext-1 (remote: local endpoints, client
	 * address kept); node sources masqueraded and pods go to clu-1 */
	cr_expect_not_null(strstr(t,
		"add rule ext-1 [ fib saddr type => reg 8 ] [ cmp eq reg 8 0x00000002 ] [ meta load mark => reg 9 ] [ bitwise reg 9 = ( reg 9 & 0xffffbfff ) ^ 0x00004000 ] [ meta set mark with reg 9 ] [ immediate reg 0 goto -> clu-1 ]\n"
		"add rule ext-1 [ payload load 4b @ network header + 12 => reg 8 ] [ bitwise reg 8 = ( reg 8 & 0x0000ffff ) ^ 0x00000000 ] [ cmp eq reg 8 0x000013c6 ] [ immediate reg 0 goto -> clu-1 ]\n"
		"add chain disp4-e-a0\n"), "%s", t);
	cr_expect_not_null(strstr(t, "add rule ext-1 [ immediate reg 0 goto -> disp4-e-a0 ]\n"), "%s", t);
	cr_expect_not_null(strstr(t, "add rule clu-1 [ immediate reg 0 goto -> disp4-c-a0 ]\n"), "%s", t);
	cr_expect_not_null(strstr(t, "add element np4 { tcp . 30080 : goto ext-1 } ud NodePort sets cluster,cluster,external affinity 0\n"), "%s", t);
	cr_expect_not_null(strstr(t, "add element gnpext4 { tcp . 30080 : 5 }\n"), "%s", t);
	cr_expect_not_null(strstr(t, "add element gnpclu4 { tcp . 30080 : 6 }\n"), "%s", t);
	/* local endpoints only for remote traffic, every one for the rest */
	cr_expect_not_null(strstr(t, "add element gn4 { 5 : 1 }\n"), "%s", t);
	cr_expect_not_null(strstr(t, "add element gn4 { 6 : 2 }\n"), "%s", t);
	cr_expect_null(strstr(t, "noep"), "%s", t);
	free(t);
}

Test(nft, nodeport_local_policy_without_local_endpoint_drops_remote_only)
{
	char *t;
	struct kpx_service *s = svc("np", KPX_SVC_NODE_PORT, "198.18.100.2",
				    KPX_PROTO_TCP, 80, 30080);

	cidr("198.19.0.0/16");
	s->etp_local = true;
	kpx_store_upsert(st, KPX_KIND_SERVICE, s);
	slice("np", "np-1", 8080, "198.19.2.1@other");
	t = first_sync();
	cr_expect_not_null(strstr(t, "add element noepnp4 { tcp . 30080 : drop }\n"), "%s", t);
	/* the remote set is empty: no dispatch in ext-1 */
	cr_expect_null(strstr(t, "goto disp4-e-a0"), "%s", t);
	cr_expect_not_null(strstr(t, "add rule clu-1 [ immediate reg 0 goto -> disp4-c-a0 ]\n"), "%s", t);
	free(t);
}

Test(nft, load_balancer_source_ranges_enter_the_firewall_chain)
{
	char *t;
	struct kpx_service *s = svc("lb", KPX_SVC_LOAD_BALANCER, "198.18.100.3",
				    KPX_PROTO_TCP, 80, 30081);

	b_svc_lb_ip(s, "198.18.201.9");
	b_svc_src_range(s, "198.18.64.0/18");
	kpx_store_upsert(st, KPX_KIND_SERVICE, s);
	slice("lb", "lb-1", 8080, "198.19.1.1@" ME);
	t = first_sync();
	cr_expect_not_null(strstr(t,
		"add chain fw-1 ud \"fw|ns/lb:/TCP/v4|0\"\n"
		"add rule fw-1 [ payload load 4b @ network header + 12 => reg 8 ] [ bitwise reg 8 = ( reg 8 & 0x00c0ffff ) ^ 0x00000000 ] [ cmp eq reg 8 0x004012c6 ] [ immediate reg 0 return ]\n"
		"add rule fw-1 [ immediate reg 0 drop ]\n"), "%s", t);
	cr_expect_not_null(strstr(t, "add element fw4 { 198.18.201.9 . tcp . 80 : goto fw-1 }\n"), "%s", t);
	/* only the LoadBalancer frontend is checked */
	cr_expect_null(strstr(t, "add element fw4 { 198.18.100.3"), "%s", t);
	/* eTP=Cluster: every origin masqueraded inline */
	cr_expect_not_null(strstr(t,
		"add rule ext-1 [ meta load mark => reg 9 ] [ bitwise reg 9 = ( reg 9 & 0xffffbfff ) ^ 0x00004000 ] [ meta set mark with reg 9 ]\n"), "%s", t);
	cr_expect_not_null(strstr(t, "add rule ext-1 [ immediate reg 0 goto -> disp4-e-a0 ]\n"), "%s", t);
	free(t);
}

Test(nft, affinity_uses_id_maps_and_its_own_dispatch)
{
	char *t;
	struct kpx_service *s = svc("aff", KPX_SVC_CLUSTER_IP, "198.18.100.4",
				    KPX_PROTO_TCP, 80, 0);

	s->affinity_timeout = 10800;
	kpx_store_upsert(st, KPX_KIND_SERVICE, s);
	slice("aff", "aff-1", 8080, "198.19.1.1@" ME ",198.19.2.1@other");
	t = first_sync();
	cr_expect_not_null(strstr(t, "add rule svc-1 [ immediate reg 0 goto -> disp4-i-a10800 ]\n"), "%s", t);
	cr_expect_not_null(strstr(t, "ud ClusterIP sets internal,internal,internal affinity 10800\n"), "%s", t);
	cr_expect_null(strstr(t, "add element slots4"), "%s", t);
	cr_expect_not_null(strstr(t, "add element sid4 { 4 . 0 : "), "%s", t);
	cr_expect_not_null(strstr(t, "add element epv4 { 4 . "), "%s", t);
	cr_expect_not_null(strstr(t, "dynset"), "%s", t);
	free(t);
}

Test(nft, affinity_off_rewrites_the_frontend_element_not_the_chain_userdata)
{
	struct kpx_service *s = svc("aff", KPX_SVC_CLUSTER_IP, "198.18.100.4",
				    KPX_PROTO_TCP, 80, 0);
	const char *t;

	s->affinity_timeout = 10800;
	kpx_store_upsert(st, KPX_KIND_SERVICE, s);
	slice("aff", "aff-1", 8080, "198.19.1.1@" ME);
	sync_text();
	s = svc("aff", KPX_SVC_CLUSTER_IP, "198.18.100.4", KPX_PROTO_TCP, 80, 0);
	kpx_store_upsert(st, KPX_KIND_SERVICE, s);
	t = sync_text();
	/* what `kpx services` reads the affinity from is rewritten (the
	 * kernel keeps a chain's userdata as it was created) */
	cr_expect_not_null(strstr(t, "delete element fe4 { 198.18.100.4 . tcp . 80 }\n"), "%s", t);
	cr_expect_not_null(strstr(t, "add element fe4 { 198.18.100.4 . tcp . 80 : goto svc-1 } ud ClusterIP sets internal,internal,internal affinity 0\n"), "%s", t);
	cr_expect_not_null(strstr(t, "flush chain svc-1\n"), "%s", t);
	cr_expect_not_null(strstr(t, "add rule svc-1 [ immediate reg 0 goto -> disp4-i-a0 ]\n"), "%s", t);
}

Test(nft, endpoint_change_emits_only_element_changes)
{
	const char *t;

	kpx_store_upsert(st, KPX_KIND_SERVICE,
			 svc("web", KPX_SVC_CLUSTER_IP, "198.18.100.1",
			     KPX_PROTO_TCP, 80, 0));
	slice("web", "web-1", 8080, "198.19.1.1@" ME ",198.19.2.1@other");
	sync_text();
	slice("web", "web-1", 8080, "198.19.1.1@" ME ",198.19.2.2@other");
	t = sync_text();
	/* the group's slots and count, nothing else: no chain, no rule,
	 * no verdict element (those make the kernel re-validate the table) */
	expect_text(t,
		"delete element slots4 { 4 . 0 }\n"
		"delete element slots4 { 4 . 1 }\n"
		"delete element hp4 { 198.19.1.1 . 198.19.1.1 }\n"
		"delete element gn4 { 4 }\n"
		"add element slots4 { 4 . 0 : 198.19.1.1 . 8080 } ud 0b\n"
		"add element slots4 { 4 . 1 : 198.19.2.2 . 8080 } ud 03\n"
		"add element hp4 { 198.19.1.1 . 198.19.1.1 }\n"
		"add element gn4 { 4 : 2 }\n");
}

Test(nft, unchanged_plan_sends_nothing)
{
	kpx_store_upsert(st, KPX_KIND_SERVICE,
			 svc("web", KPX_SVC_CLUSTER_IP, "198.18.100.1",
			     KPX_PROTO_TCP, 80, 0));
	slice("web", "web-1", 8080, "198.19.1.1@" ME);
	sync_text();
	expect_text(sync_text(), "");
}

Test(nft, longest_legal_names_fit_the_chain_userdata)
{
	char ns[64], name[64], port[16], want[400];
	struct kpx_service *s;
	char *t;

	memset(ns, 'n', 63);
	ns[63] = 0;
	memset(name, 'm', 63);
	name[63] = 0;
	memset(port, 'p', 15);
	port[15] = 0;
	s = b_svc(ns, name, KPX_SVC_CLUSTER_IP, "198.18.100.5");
	b_svc_port(s, port, KPX_PROTO_SCTP, 80, 0);
	kpx_store_upsert(st, KPX_KIND_SERVICE, s);
	t = first_sync();
	snprintf(want, sizeof(want), "add chain svc-1 ud \"svc|%s/%s:%s/SCTP/v4|4\"\n",
		 ns, name, port);
	cr_expect_not_null(strstr(t, want), "%s", t);
	free(t);
}

Test(nft, a_service_the_kernel_refuses_does_not_block_the_others)
{
	size_t n = 0;
	const char *msg;
	char *t;

	for (int i = 0; i < 5; i++) {
		char name[16], ip[32];

		snprintf(name, sizeof(name), "s%d", i);
		snprintf(ip, sizeof(ip), "198.18.100.%d", 10 + i);
		kpx_store_upsert(st, KPX_KIND_SERVICE,
				 svc(name, KPX_SVC_CLUSTER_IP, ip, KPX_PROTO_TCP,
				     80, 0));
	}
	fk.refuse = "198.18.100.12 . tcp . 80";
	fk.refuse_err = -ERANGE;
	build();
	cr_assert_eq(kpx_nft_backend.sync(be, plan), 0);
	msg = kpx_nft_backend.skipped(be, &n);
	cr_expect_eq(n, 1);
	cr_assert_not_null(msg);
	cr_expect_not_null(strstr(msg, "ns/s2:/TCP/v4"), "%s", msg);
	cr_expect_not_null(strstr(msg, strerror(ERANGE)), "%s", msg);
	/* the others are in the kernel: the last batch added s3 and s4 at
	 * least, and a change to s0 goes through */
	t = strdup(fk.last);
	cr_expect_gt(fk.refused, 1);
	free(t);
	fk.refuse = NULL;
	kpx_store_upsert(st, KPX_KIND_SERVICE,
			 svc("s0", KPX_SVC_CLUSTER_IP, "198.18.100.10",
			     KPX_PROTO_TCP, 81, 0));
	build();
	cr_assert_eq(kpx_nft_backend.sync(be, plan), 0);
	/* the refused one is tried again at the next sync */
	cr_expect_not_null(strstr(fk.last, "198.18.100.12 . tcp . 80 : goto"), "%s", fk.last);
	cr_expect_not_null(strstr(fk.last, "198.18.100.10 . tcp . 81 : goto"), "%s", fk.last);
	cr_expect_null(strstr(fk.last, "198.18.100.11 . tcp . 80 : goto"), "%s", fk.last);
	kpx_nft_backend.skipped(be, &n);
	cr_expect_eq(n, 0);
}

Test(nft, an_error_of_the_whole_table_fails_the_sync)
{
	kpx_store_upsert(st, KPX_KIND_SERVICE,
			 svc("web", KPX_SVC_CLUSTER_IP, "198.18.100.1",
			     KPX_PROTO_TCP, 80, 0));
	sync_text();
	/* every batch refused: not one service port's fault, so no
	 * service port is reported alone and the sync fails */
	for (int i = 0; i < 12; i++) {
		char name[16], ip[32];

		snprintf(name, sizeof(name), "s%d", i);
		snprintf(ip, sizeof(ip), "198.18.101.%d", 10 + i);
		kpx_store_upsert(st, KPX_KIND_SERVICE,
				 svc(name, KPX_SVC_CLUSTER_IP, ip, KPX_PROTO_TCP,
				     80, 0));
	}
	fk.refuse = "";
	fk.refuse_err = -EPERM;
	build();
	cr_expect_eq(kpx_nft_backend.sync(be, plan), -EPERM);
}

Test(nft, rows_that_cannot_be_expressed_skip_only_that_service_port)
{
	struct kpx_plan_svcport *sp;
	size_t n = 0;
	const char *msg;

	kpx_store_upsert(st, KPX_KIND_SERVICE,
			 svc("a", KPX_SVC_CLUSTER_IP, "198.18.100.1",
			     KPX_PROTO_TCP, 80, 0));
	kpx_store_upsert(st, KPX_KIND_SERVICE,
			 svc("b", KPX_SVC_CLUSTER_IP, "198.18.100.2",
			     KPX_PROTO_TCP, 80, 0));
	build();
	/* pods with a set of their own, and no cluster CIDR to tell them */
	sp = (struct kpx_plan_svcport *)kpx_plan_find(plan, "ns/a:/TCP/v4");
	cr_assert_not_null(sp);
	sp->frontends[0].rows[KPX_ORIGIN_POD].set = KPX_SET_CLUSTER;
	cr_assert_eq(kpx_nft_backend.sync(be, plan), 0);
	msg = kpx_nft_backend.skipped(be, &n);
	cr_expect_eq(n, 1);
	cr_assert_not_null(msg);
	cr_expect_not_null(strstr(msg, "ns/a:/TCP/v4"), "%s", msg);
	cr_expect_not_null(strstr(msg, "pods cannot be told"), "%s", msg);
	cr_expect_null(strstr(fk.last, "198.18.100.1 . tcp"), "%s", fk.last);
	cr_expect_not_null(strstr(fk.last, "198.18.100.2 . tcp . 80 : goto svc-"), "%s", fk.last);
}

Test(nft, a_refused_change_keeps_the_previous_version_and_the_others_go_in)
{
	size_t n = 0;

	kpx_store_upsert(st, KPX_KIND_SERVICE,
			 svc("a", KPX_SVC_CLUSTER_IP, "198.18.100.1",
			     KPX_PROTO_TCP, 80, 0));
	slice("a", "a-1", 8080, "198.19.1.1@" ME);
	kpx_store_upsert(st, KPX_KIND_SERVICE,
			 svc("b", KPX_SVC_CLUSTER_IP, "198.18.100.2",
			     KPX_PROTO_TCP, 80, 0));
	sync_text();
	/* a partial sync: a's new endpoint is refused, b's change is not */
	slice("a", "a-1", 8080, "198.19.1.1@" ME ",198.19.9.9@other");
	slice("b", "b-1", 8080, "198.19.1.2@" ME);
	fk.refuse = "198.19.9.9";
	fk.refuse_err = -EINVAL;
	build();
	cr_assert_eq(kpx_nft_backend.sync(be, plan), 0);
	kpx_nft_backend.skipped(be, &n);
	cr_expect_eq(n, 1);
	cr_expect_not_null(strstr(fk.last, "198.19.1.2 . 8080"), "%s", fk.last);
	/* once the kernel takes it, the next sync programs a's change */
	fk.refuse = NULL;
	cr_assert_eq(kpx_nft_backend.sync(be, plan), 0);
	cr_expect_not_null(strstr(fk.last, "198.19.9.9 . 8080"), "%s", fk.last);
	cr_expect_null(strstr(fk.last, "198.19.1.2 . 8080"), "%s", fk.last);
}
