/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ns per packet of the NodePort tc and XDP programs under
 * BPF_PROG_TEST_RUN, next to an XDP_PASS floor measured in the same run.
 *
 * Each measured program is a wrapper (kpx_bench_* in bpf/nodeport.bpf.c)
 * that restores the original frame before running the datapath, because
 * with `repeat` the kernel reuses one buffer and the datapath would see
 * its own translated packet from the second iteration on. The wrappers'
 * own cost (restore only) is measured and subtracted.
 *
 * Runs in a private network namespace (unshare) with one veth and static
 * neighbours; pins under a unique bpffs directory, removed at exit.
 *
 *   kpx_pkt_bench [-n REPEAT] [-s SERVICES[,SERVICES...]]
 * Output: a markdown table on stdout.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "bpf/kpx_abi.h"
#include "bpf/nodeport.skel.h"

#define NODE4 "198.18.0.1"
#define BE4 "198.18.0.2"
#define CLIENT4 "198.18.0.3"
#define LOCALBE4 "198.18.5.10"
#define FE_PORT 30080

static struct nodeport *skel;
static char root[128];
static int ifindex;

static int sh(const char *cmd)
{
	char buf[512];

	/* benchmark tool only, inside its own network namespace */
	snprintf(buf, sizeof(buf), "%s >/dev/null 2>&1", cmd);
	return system(buf);
}

static void put_file(const char *path, const char *val)
{
	FILE *f = fopen(path, "w");

	if (f) {
		fputs(val, f);
		fclose(f);
	}
}

static void cleanup(void)
{
	DIR *d;
	struct dirent *de;
	char path[400];

	if (skel)
		nodeport__destroy(skel);
	skel = NULL;
	if (!root[0])
		return;
	d = opendir(root);
	if (d) {
		while ((de = readdir(d))) {
			if (de->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/%s", root, de->d_name);
			unlink(path);
		}
		closedir(d);
	}
	rmdir(root);
}

static uint16_t fold(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

static uint32_t sum16(const uint8_t *b, size_t len, uint32_t s)
{
	for (size_t i = 0; i + 1 < len; i += 2)
		s += (b[i] << 8) | b[i + 1];
	return s;
}

/* 128-byte IPv4 TCP ACK frame client -> node:FE_PORT */
static void build(uint8_t *f)
{
	uint8_t *ip = f + 14, *th = ip + 20;
	uint32_t s;
	uint16_t c;

	memset(f, 0, 128);
	memcpy(f, "\x02\x00\x00\x00\x00\x01", 6);
	memcpy(f + 6, "\x02\x00\x00\x00\x00\x03", 6);
	f[12] = 0x08;
	ip[0] = 0x45;
	ip[3] = 128 - 14;
	ip[6] = 0x40;
	ip[8] = 64;
	ip[9] = IPPROTO_TCP;
	inet_pton(AF_INET, CLIENT4, ip + 12);
	inet_pton(AF_INET, NODE4, ip + 16);
	c = fold(sum16(ip, 20, 0));
	ip[10] = c >> 8;
	ip[11] = c;
	th[0] = 51000 >> 8;
	th[1] = 51000 & 0xff;
	th[2] = FE_PORT >> 8;
	th[3] = FE_PORT & 0xff;
	th[12] = 5 << 4;
	th[13] = 0x10;
	th[14] = 0xff;
	th[15] = 0xff;
	s = sum16(ip + 12, 8, 0) + IPPROTO_TCP + (128 - 34);
	c = fold(sum16(th, 128 - 34, s));
	th[16] = c >> 8;
	th[17] = c;
}

static int setup_ns(void)
{
	struct statfs st;

	if (unshare(CLONE_NEWNET)) {
		fprintf(stderr, "unshare(CLONE_NEWNET): %s\n", strerror(errno));
		return -1;
	}
	if (statfs("/sys/fs/bpf", &st) || st.f_type != 0xcafe4a11) {
		mkdir("/sys/fs/bpf", 0700);
		if (mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700")) {
			fprintf(stderr, "mount bpffs: %s\n", strerror(errno));
			return -1;
		}
	}
	if (sh("ip link set lo up") ||
	    sh("ip link add np0 type veth peer name np1") ||
	    sh("ip link set np0 up") || sh("ip link set np1 up") ||
	    sh("ip addr add " NODE4 "/24 dev np0") ||
	    sh("ip neigh replace " BE4 " lladdr 02:00:00:00:00:02 dev np0 nud permanent") ||
	    sh("ip neigh replace " CLIENT4 " lladdr 02:00:00:00:00:03 dev np0 nud permanent")) {
		fprintf(stderr, "cannot set up the veth namespace\n");
		return -1;
	}
	put_file("/proc/sys/net/ipv4/ip_forward", "1");
	ifindex = if_nametoindex("np0");
	return 0;
}

static int load(uint32_t nsvc)
{
	LIBBPF_OPTS(bpf_object_open_opts, oo);
	uint32_t cap = nsvc + 16 < 65536 ? 65536 : nsvc + 16;
	int err;

	snprintf(root, sizeof(root), "/sys/fs/bpf/kpx-bench-%d", (int)getpid());
	mkdir(root, 0700);
	oo.pin_root_path = root;
	skel = nodeport__open_opts(&oo);
	if (!skel)
		return -errno;
	bpf_map__set_max_entries(skel->maps.kpx_svc, cap);
	bpf_map__set_max_entries(skel->maps.kpx_slots, cap);
	bpf_map__set_max_entries(skel->maps.kpx_backends, cap);
	bpf_map__set_max_entries(skel->maps.kpx_svc_stats, cap);
	bpf_map__set_max_entries(skel->maps.kpx_svc_meta, cap);
	err = nodeport__load(skel);
	return err;
}

/* n services on NODE4 ports 1.. (and other addresses), the measured one
 * at FE_PORT with backend id 1 (remote, SNAT) or 2 (local, no SNAT). */
static int fill(uint32_t nsvc, bool local)
{
	struct kpx_dp_config dc = {};
	struct kpx_backend_value be = {};
	uint32_t zero = 0, i;
	int fsvc = bpf_map__fd(skel->maps.kpx_svc);
	int fslot = bpf_map__fd(skel->maps.kpx_slots);

	inet_pton(AF_INET, NODE4, dc.node_ip4);
	dc.snat_port_min = 1024;
	dc.snat_port_max = 65535;
	dc.ct_tcp_timeout = 3600;
	dc.ct_udp_timeout = 30;
	dc.ct_tcp_close_timeout = 10;
	if (bpf_map_update_elem(bpf_map__fd(skel->maps.kpx_config), &zero, &dc,
				0))
		return -errno;
	be.family = KPX_AF_INET;
	be.proto = IPPROTO_TCP;
	be.port = htons(8080);
	inet_pton(AF_INET, BE4, be.addr);
	i = 1;
	bpf_map_update_elem(bpf_map__fd(skel->maps.kpx_backends), &i, &be, 0);
	inet_pton(AF_INET, LOCALBE4, be.addr);
	be.flags = KPX_BE_F_LOCAL;
	i = 2;
	bpf_map_update_elem(bpf_map__fd(skel->maps.kpx_backends), &i, &be, 0);
	for (i = 0; i < nsvc; i++) {
		struct kpx_svc_key k = {};
		struct kpx_svc_value v = {};
		struct kpx_slot_key sk = {};
		uint32_t bid = local ? 2 : 1;
		uint32_t a = htonl(0xc6120000u | (i / 60000)); /* 198.18.x.y */

		if (i == 0) {
			inet_pton(AF_INET, NODE4, k.addr);
			k.port = htons(FE_PORT);
		} else {
			a = htonl(0xc6130000u | (i / 60000)); /* 198.19.x.y */
			memcpy(k.addr, &a, 4);
			k.port = htons(1 + i % 60000);
		}
		k.proto = IPPROTO_TCP;
		k.scope = KPX_SCOPE_EXTERNAL;
		k.family = KPX_AF_INET;
		v.svc_id = i;
		v.count = 1;
		v.flags = local ? KPX_SVC_F_LOCAL_ONLY : KPX_SVC_F_SNAT;
		sk.svc_id = i;
		if (bpf_map_update_elem(fslot, &sk, &bid, 0) ||
		    bpf_map_update_elem(fsvc, &k, &v, 0))
			return -errno;
	}
	return 0;
}

static int set_pkt(bool new_flow)
{
	struct {
		uint8_t data[128];
		uint32_t new_flow, seq;
	} b = {};
	uint32_t zero = 0;

	build(b.data);
	b.new_flow = new_flow;
	return bpf_map_update_elem(bpf_map__fd(skel->maps.kpx_bench), &zero, &b,
				   0);
}

/* ns per run of prog over repeat iterations; retval in *ret */
static double run(struct bpf_program *p, bool xdp, uint32_t repeat,
		  uint32_t *ret)
{
	uint8_t pkt[128], out[256];
	struct __sk_buff skb = {};
	struct xdp_md xmd = {};
	LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = pkt,
		    .data_size_in = sizeof(pkt), .data_out = out,
		    .data_size_out = sizeof(out), .repeat = repeat);
	int err;

	build(pkt);
	if (xdp) {
		xmd.data_end = sizeof(pkt);
		xmd.ingress_ifindex = ifindex;
		o.ctx_in = &xmd;
		o.ctx_size_in = sizeof(xmd);
	} else {
		skb.ifindex = ifindex;
		o.ctx_in = &skb;
		o.ctx_size_in = sizeof(skb);
	}
	err = bpf_prog_test_run_opts(bpf_program__fd(p), &o);
	if (err) {
		fprintf(stderr, "test run %s: %s\n", bpf_program__name(p),
			strerror(-err));
		return -1;
	}
	*ret = o.retval;
	return (double)o.duration; /* ns per iteration (kernel average) */
}

static double best_of(struct bpf_program *p, bool xdp, uint32_t repeat,
		      uint32_t *ret, bool new_flow)
{
	double best = 1e18;

	for (int i = 0; i < 3; i++) {
		double d;

		set_pkt(new_flow);
		d = run(p, xdp, repeat, ret);
		if (d >= 0 && d < best)
			best = d;
	}
	return best;
}

int main(int argc, char **argv)
{
	uint32_t repeat = 1000000, counts[8] = { 1, 10000, 100000 };
	int ncounts = 3, opt;

	while ((opt = getopt(argc, argv, "n:s:")) != -1) {
		if (opt == 'n') {
			repeat = strtoul(optarg, NULL, 10);
		} else if (opt == 's') {
			char *t, *save = NULL;

			ncounts = 0;
			for (t = strtok_r(optarg, ",", &save); t && ncounts < 8;
			     t = strtok_r(NULL, ",", &save))
				counts[ncounts++] = strtoul(t, NULL, 10);
		} else {
			fprintf(stderr, "usage: %s [-n REPEAT] [-s N,N,...]\n",
				argv[0]);
			return 2;
		}
	}
	if (geteuid() != 0) {
		fprintf(stderr, "needs root\n");
		return 2;
	}
	if (setup_ns())
		return 1;
	libbpf_set_print(NULL);
	printf("repeat %u per measurement, best of 3, ns/packet "
	       "(BPF_PROG_TEST_RUN duration)\n\n",
	       repeat);
	printf("| services | XDP_PASS floor | XDP restore | XDP est. (SNAT, "
	       "XDP_TX) | XDP est. minus restore, plus floor | tc restore | tc est. (SNAT, "
	       "redirect) | tc est. minus restore | tc new flow (eTP=Local) minus restore |\n");
	printf("|---|---|---|---|---|---|---|---|---|\n");
	for (int c = 0; c < ncounts; c++) {
		double floor, xr, xe, tr, te, tn;
		uint32_t r1, r2, r3, r4, r5, r6;
		int err = load(counts[c]);

		if (err) {
			fprintf(stderr, "load: %s\n", strerror(-err));
			cleanup();
			return 1;
		}
		if (fill(counts[c], false)) {
			fprintf(stderr, "fill: %s\n", strerror(errno));
			cleanup();
			return 1;
		}
		floor = best_of(skel->progs.kpx_bench_xdp_pass, true, repeat,
				&r1, false);
		xr = best_of(skel->progs.kpx_bench_xdp_restore, true, repeat,
			     &r2, false);
		xe = best_of(skel->progs.kpx_bench_xdp, true, repeat, &r3,
			     false);
		tr = best_of(skel->progs.kpx_bench_tc_restore, false, repeat,
			     &r4, false);
		te = best_of(skel->progs.kpx_bench_tc, false, repeat, &r5,
			     false);
		/* new flows: local backend without SNAT (the SNAT port range
		 * cannot hold a million flows to one backend) */
		fill(counts[c], true);
		tn = best_of(skel->progs.kpx_bench_tc, false, repeat, &r6,
			     true);
		if (r3 != 3 /* XDP_TX */ || r5 != 7 /* TC_ACT_REDIRECT */ ||
		    r6 != 0 /* TC_ACT_OK */)
			fprintf(stderr,
				"warning: unexpected verdicts xdp=%u tc=%u "
				"tc-new=%u\n",
				r3, r5, r6);
		printf("| %u | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f "
		       "| %.1f |\n",
		       counts[c], floor, xr, xe, xe - xr + floor, tr, te,
		       te - tr, tn - tr);
		fflush(stdout);
		cleanup();
	}
	printf("\nnet = measured - restore wrapper (+ floor for XDP, whose "
	       "restore run already includes it)\n");
	return 0;
}
