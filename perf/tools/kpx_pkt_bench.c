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
 * New flows: the wrapper gives every iteration its own source address
 * and port (a distinct 5-tuple), and each measurement runs into a fresh
 * object whose conntrack table was filled first, by the same program
 * over distinct flows, to 90 % of its max_entries ("headroom") or past
 * 100 % ("full": every insert evicts). A brand-new table is several
 * times cheaper and is not what a node sees; it is shown for reference.
 * Last, established flows through a burst of new ones, with the flood
 * guard off and on.
 *
 * Runs in a private network namespace (unshare) with one veth and static
 * neighbours, pinned to one CPU; pins under a unique bpffs directory,
 * removed at exit.
 *
 *   kpx_pkt_bench [-n REPEAT] [-s SERVICES[,SERVICES...]] [-m NEWFLOWS]
 *                 [-r ROUNDS] [-c CT_MAX] [-P]
 * Output: markdown tables on stdout. -P: only new flows into a full
 * table (for a profiler).
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
#define NBE 64 /* remote backends of the new-flow service */
#define LOCAL_ID 100

static struct nodeport *skel;
static char root[128];
static int ifindex;
static uint32_t seq;    /* next new-flow sequence number */
static uint32_t ct_max; /* -c: kpx_ct max_entries (0: the default) */

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

/* 128-byte IPv4 TCP frame client -> node:FE_PORT, a SYN or an ACK */
static void build(uint8_t *f, bool syn)
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
	th[13] = syn ? 0x02 : 0x10;
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
	char cmd[160];

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
	/* the new-flow service's backends: 198.18.0.16 + i */
	for (int i = 0; i < NBE; i++) {
		snprintf(cmd, sizeof(cmd),
			 "ip neigh replace 198.18.0.%d lladdr "
			 "02:00:00:00:01:%02x dev np0 nud permanent",
			 16 + i, i);
		if (sh(cmd)) {
			fprintf(stderr, "cannot add neighbour %d\n", i);
			return -1;
		}
	}
	put_file("/proc/sys/net/ipv4/ip_forward", "1");
	ifindex = if_nametoindex("np0");
	return 0;
}

/* Opens and loads the object on the pins under root (reused when
 * there). rate: the flood guard's new flows per second per CPU (0: off). */
static int open_load(uint32_t nsvc, uint32_t rate)
{
	LIBBPF_OPTS(bpf_object_open_opts, oo);
	uint32_t cap = nsvc + 16 < 65536 ? 65536 : nsvc + 16;

	oo.pin_root_path = root;
	skel = nodeport__open_opts(&oo);
	if (!skel)
		return -errno;
	skel->rodata->kpx_new_flow_rate = rate;
	bpf_map__set_max_entries(skel->maps.kpx_svc, cap);
	bpf_map__set_max_entries(skel->maps.kpx_slots, cap + NBE);
	bpf_map__set_max_entries(skel->maps.kpx_backends, cap);
	bpf_map__set_max_entries(skel->maps.kpx_svc_stats, cap);
	bpf_map__set_max_entries(skel->maps.kpx_svc_meta, cap);
	if (ct_max)
		bpf_map__set_max_entries(skel->maps.kpx_ct, ct_max);
	return nodeport__load(skel);
}

/* A fresh object on fresh maps. */
static int load(uint32_t nsvc, uint32_t rate)
{
	cleanup();
	snprintf(root, sizeof(root), "/sys/fs/bpf/kpx-bench-%d", (int)getpid());
	mkdir(root, 0700);
	return open_load(nsvc, rate);
}

/* n services on NODE4 ports 1.. (and other addresses), the measured one
 * at FE_PORT: NBE remote backends (ids 1..NBE, SNAT: eTP=Cluster) or
 * one local backend (LOCAL_ID, no SNAT: eTP=Local). Several remote
 * backends because each has its own SNAT port range (64,512 ports): a
 * table of 100,000s of flows to one backend would run out of ports. */
static int fill(uint32_t nsvc, bool local)
{
	struct kpx_dp_config dc = {};
	struct kpx_backend_value be = {};
	uint32_t zero = 0, i;
	int fsvc = bpf_map__fd(skel->maps.kpx_svc);
	int fslot = bpf_map__fd(skel->maps.kpx_slots);
	int fbe = bpf_map__fd(skel->maps.kpx_backends);

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
	for (i = 1; i <= NBE; i++) {
		uint32_t a = htonl(0xc6120000u | (15 + i)); /* 198.18.0.16.. */

		memcpy(be.addr, &a, 4);
		if (bpf_map_update_elem(fbe, &i, &be, 0))
			return -errno;
	}
	inet_pton(AF_INET, LOCALBE4, be.addr);
	be.flags = KPX_BE_F_LOCAL;
	i = LOCAL_ID;
	if (bpf_map_update_elem(fbe, &i, &be, 0))
		return -errno;
	for (i = 0; i < nsvc; i++) {
		struct kpx_svc_key k = {};
		struct kpx_svc_value v = {};
		struct kpx_slot_key sk = {};
		uint32_t bid = local ? LOCAL_ID : 1;
		uint32_t a;

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
		if (i == 0 && !local) {
			v.count = NBE;
			for (uint32_t s = 0; s < NBE; s++) {
				uint32_t b = s + 1;

				sk.slot = s;
				if (bpf_map_update_elem(fslot, &sk, &b, 0))
					return -errno;
			}
		} else if (bpf_map_update_elem(fslot, &sk, &bid, 0)) {
			return -errno;
		}
		if (bpf_map_update_elem(fsvc, &k, &v, 0))
			return -errno;
	}
	return 0;
}

/* The frame the wrappers restore: a SYN or an ACK of the client's
 * flow; vary: each iteration gets the source port and address of its own
 * sequence number, starting at seq (kpx_bench_restore), so every
 * iteration is a distinct 5-tuple. */
static int set_frame(bool syn, bool vary)
{
	struct {
		uint8_t data[128];
		uint32_t new_flow, seq;
	} b = {};
	uint32_t zero = 0;

	build(b.data, syn);
	b.new_flow = vary;
	b.seq = seq;
	return bpf_map_update_elem(bpf_map__fd(skel->maps.kpx_bench), &zero, &b,
				   0);
}

/* New flows (only a SYN starts one) or the established flow's ACKs. */
static int set_pkt(bool new_flow)
{
	return set_frame(new_flow, new_flow);
}

/* ns per run of prog over repeat iterations; retval in *ret, the last
 * output frame in out (128 bytes) when not NULL */
static double run(struct bpf_program *p, bool xdp, uint32_t repeat,
		  uint32_t *ret, uint8_t *frame)
{
	uint8_t pkt[128], out[256];
	struct __sk_buff skb = {};
	struct xdp_md xmd = {};
	LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = pkt,
		    .data_size_in = sizeof(pkt), .data_out = out,
		    .data_size_out = sizeof(out), .repeat = repeat);
	int err;

	build(pkt, false);
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
	if (frame)
		memcpy(frame, out, 128);
	return (double)o.duration; /* ns per iteration (kernel average) */
}

/* Runs n new flows (fills the conntrack table), in chunks. */
static int run_flows(struct bpf_program *p, bool xdp, uint32_t n)
{
	uint32_t ret;

	while (n) {
		uint32_t k = n > 65536 ? 65536 : n;

		if (set_pkt(true) || run(p, xdp, k, &ret, NULL) < 0)
			return -1;
		seq += k;
		n -= k;
	}
	return 0;
}

static double best_of(struct bpf_program *p, bool xdp, uint32_t repeat,
		      uint32_t *ret, bool new_flow)
{
	double best = 1e18;

	for (int i = 0; i < 3; i++) {
		double d;

		set_pkt(new_flow);
		d = run(p, xdp, repeat, ret, NULL);
		if (new_flow)
			seq += repeat;
		if (d >= 0 && d < best)
			best = d;
	}
	return best;
}

/* Entries in the conntrack table (batch lookups: one pass); *below:
 * original-direction entries of new-flow sequence numbers < seq_below
 * (kpx_bench_restore's source address and port), when not NULL. */
static long ct_scan(uint32_t seq_below, long *below)
{
	enum { N = 4096 };
	int fd = bpf_map__fd(skel->maps.kpx_ct);
	size_t ks = bpf_map__key_size(skel->maps.kpx_ct);
	size_t vs = bpf_map__value_size(skel->maps.kpx_ct);
	char *keys = malloc(ks * N), *vals = malloc(vs * N);
	uint64_t tok_in = 0, tok_out = 0;
	bool first = true;
	long total = 0;

	if (below)
		*below = 0;
	if (!keys || !vals) {
		total = -1;
		goto out;
	}
	for (;;) {
		LIBBPF_OPTS(bpf_map_batch_opts, o);
		__u32 count = N;
		int err = bpf_map_lookup_batch(fd, first ? NULL : &tok_in,
					       &tok_out, keys, vals, &count,
					       &o);

		for (__u32 i = 0; below && i < count; i++) {
			const struct kpx_ct_key *k =
				(const void *)(keys + i * ks);
			const uint8_t *sp = (const uint8_t *)&k->sport;
			uint32_t n = (uint32_t)k->saddr[2] << 16 | sp[1] << 8 |
				     sp[0];

			if (k->dir == KPX_CT_DIR_ORIG && k->saddr[0] == 198 &&
			    k->saddr[1] == 18 && k->saddr[3] == 0 &&
			    n < seq_below)
				(*below)++;
		}
		total += count;
		if (err) {
			if (errno != ENOENT)
				total = -1;
			break;
		}
		tok_in = tok_out;
		first = false;
	}
out:
	free(keys);
	free(vals);
	return total;
}

static long ct_count(void)
{
	return ct_scan(0, NULL);
}

static uint64_t drops_total(void)
{
	int n = libbpf_num_possible_cpus();
	uint64_t v[512], sum = 0;
	int fd = bpf_map__fd(skel->maps.kpx_drops);

	if (n <= 0 || n > 512)
		return 0;
	for (uint32_t r = 0; r < KPX_DROP_REASON_MAX; r++) {
		if (bpf_map_lookup_elem(fd, &r, v))
			continue;
		for (int c = 0; c < n; c++)
			sum += v[c];
	}
	return sum;
}

enum nf_kind { NF_XDP, NF_TC, NF_TC_LOCAL };

struct nf_result {
	double ns;	 /* best of the rounds, ns/packet incl. wrapper */
	double fill;	 /* % of max_entries before the measured run */
	double epf;	 /* conntrack entries per new flow */
	uint64_t drops;	 /* packets dropped during the measured runs */
};

/*
 * One new-flow cell: per round a fresh object, the table filled to pct %
 * of its max_entries (over 100: full, the LRU evicting) by running the
 * same program over distinct flows, then `measure` more distinct flows
 * timed. Best of `rounds`.
 */
static int newflow(uint32_t nsvc, enum nf_kind kind, double pct,
		   uint32_t measure, int rounds, struct nf_result *res)
{
	const bool xdp = kind == NF_XDP;

	res->ns = 1e18;
	res->drops = 0;
	for (int r = 0; r < rounds; r++) {
		struct bpf_program *p;
		uint32_t max, ret;
		long c0, c;
		uint64_t d0;
		double d;

		if (load(nsvc, 0) || fill(nsvc, kind == NF_TC_LOCAL)) {
			fprintf(stderr, "load/fill failed: %s\n",
				strerror(errno));
			return -1;
		}
		p = xdp ? skel->progs.kpx_bench_xdp : skel->progs.kpx_bench_tc;
		max = bpf_map__max_entries(skel->maps.kpx_ct);
		seq = 0;
		res->epf = 0;
		if (pct > 0) {
			double target = pct >= 100 ? max * 1.02 : max * pct / 100;

			if (run_flows(p, xdp, 1000))
				return -1;
			c0 = ct_count();
			if (c0 <= 0) {
				fprintf(stderr, "fill: %ld entries after 1000 "
					"flows (drops %llu)\n", c0,
					(unsigned long long)drops_total());
				return -1;
			}
			res->epf = c0 / 1000.0;
			if (target > c0 &&
			    run_flows(p, xdp, (uint32_t)((target - c0) / res->epf)))
				return -1;
		}
		c = ct_count();
		res->fill = 100.0 * c / max;
		d0 = drops_total();
		set_pkt(true);
		d = run(p, xdp, measure, &ret, NULL);
		seq += measure;
		res->drops += drops_total() - d0;
		if (!res->epf)
			res->epf = (double)(ct_count() - c) / measure;
		if (d >= 0 && d < res->ns)
			res->ns = d;
		if (ret != (xdp ? 3u /* XDP_TX */ :
			    kind == NF_TC_LOCAL ? 0u : 7u /* redirect */))
			fprintf(stderr, "warning: new flow verdict %u (kind %d)\n",
				ret, kind);
	}
	return 0;
}

/*
 * The flood guard keeps established flows: a table 60 % full of
 * established flows (each seen twice, as an LRU keeps what was used
 * again), one more established flow, then a burst of `burst` new flows
 * (more than the table holds) through an object with the guard at
 * `rate` (same pinned maps), then the established frame again. Its entry
 * survived when it still goes to the same backend from the same SNAT
 * port (a new flow would pick one of NBE backends and a random port).
 * Returns 1 survived, 0 not, -1 error; *inserted / *refused count the
 * burst's outcome, *kept the earlier established flows still there.
 */
static int burst_check(uint32_t nsvc, uint32_t rate, uint32_t burst,
		       long *inserted, uint64_t *refused, double *kept)
{
	uint8_t before[128], after[128];
	uint32_t ret, key = KPX_DROP_FLOOD, est;
	long c0;
	uint64_t v[512];
	int n = libbpf_num_possible_cpus(), fd;

	if (load(nsvc, 0) || fill(nsvc, false))
		return -1;
	est = bpf_map__max_entries(skel->maps.kpx_ct) * 3 / 10;
	seq = 0;
	if (run_flows(skel->progs.kpx_bench_xdp, true, est))
		return -1;
	seq = 0; /* the same flows again: established, used twice */
	if (run_flows(skel->progs.kpx_bench_xdp, true, est))
		return -1;
	set_frame(true, false);
	if (run(skel->progs.kpx_bench_xdp, true, 1, &ret, before) < 0 ||
	    ret != 3)
		return -1;
	set_pkt(false);
	if (run(skel->progs.kpx_bench_xdp, true, 3, &ret, before) < 0 ||
	    ret != 3)
		return -1;
	/* the guard is a load-time constant: a second object on the same
	 * pinned maps (what an agent restart with the flag does) */
	nodeport__destroy(skel);
	skel = NULL;
	if (open_load(nsvc, rate))
		return -1;
	c0 = ct_count();
	/* a reconnect storm: every new flow sends a second packet (an LRU
	 * alone already keeps used entries against one-packet floods) */
	seq = est + 1;
	for (uint32_t done = 0; done < burst;) {
		uint32_t k = burst - done > 4096 ? 4096 : burst - done;
		uint32_t s0 = seq;

		if (run_flows(skel->progs.kpx_bench_xdp, true, k))
			return -1;
		seq = s0;
		if (run_flows(skel->progs.kpx_bench_xdp, true, k))
			return -1;
		done += k;
	}
	*inserted = (ct_count() - c0);
	*refused = 0;
	fd = bpf_map__fd(skel->maps.kpx_drops);
	if (n > 0 && n <= 512 && !bpf_map_lookup_elem(fd, &key, v))
		for (int i = 0; i < n; i++)
			*refused += v[i];
	/* the earlier established flows (sequence numbers 1..est) still
	 * in the table */
	{
		long below = 0;

		ct_scan(est + 1, &below);
		*kept = 100.0 * below / est;
	}
	set_pkt(false);
	if (run(skel->progs.kpx_bench_xdp, true, 1, &ret, after) < 0)
		return -1;
	/* IPv4 destination (backend) and TCP source port (SNAT port) */
	return ret == 3 && !memcmp(before + 30, after + 30, 4) &&
	       !memcmp(before + 34, after + 34, 2);
}

static void usage(const char *argv0)
{
	fprintf(stderr,
		"usage: %s [-n REPEAT] [-s N,N,...] [-m NEWFLOWS] "
		"[-c CT_MAX] [-r ROUNDS]\n",
		argv0);
}

static void pin_cpu(void)
{
	cpu_set_t set;
	int cpu = sched_getcpu();

	/* one CPU for the whole run: the LRU keeps per-CPU free lists and
	 * the flood guard counts per CPU */
	CPU_ZERO(&set);
	CPU_SET(cpu < 0 ? 0 : cpu, &set);
	sched_setaffinity(0, sizeof(set), &set);
}

int main(int argc, char **argv)
{
	uint32_t repeat = 1000000, counts[8] = { 1, 10000, 100000 };
	uint32_t measure = 4096, ctm;
	int ncounts = 3, opt, rounds = 3;
	bool profile = false;
	struct nf_result det[3][3];
	static const double fills[3] = { 0, 90, 100 };

	while ((opt = getopt(argc, argv, "n:s:m:c:r:P")) != -1) {
		if (opt == 'P') {
			profile = true;
		} else if (opt == 'n') {
			repeat = strtoul(optarg, NULL, 10);
		} else if (opt == 'm') {
			measure = strtoul(optarg, NULL, 10);
		} else if (opt == 'c') {
			ct_max = strtoul(optarg, NULL, 10);
		} else if (opt == 'r') {
			rounds = atoi(optarg);
		} else if (opt == 's') {
			char *t, *save = NULL;

			ncounts = 0;
			for (t = strtok_r(optarg, ",", &save); t && ncounts < 8;
			     t = strtok_r(NULL, ",", &save))
				counts[ncounts++] = strtoul(t, NULL, 10);
		} else {
			usage(argv[0]);
			return 2;
		}
	}
	if (geteuid() != 0) {
		fprintf(stderr, "needs root\n");
		return 2;
	}
	if (rounds < 1 || !measure || !ncounts) {
		usage(argv[0]);
		return 2;
	}
	pin_cpu();
	/* every exit, also a failed measurement's, removes the pins */
	atexit(cleanup);
	if (setup_ns())
		return 1;
	libbpf_set_print(NULL);
	if (load(counts[0], 0)) {
		fprintf(stderr, "load failed\n");
		return 1;
	}
	ctm = bpf_map__max_entries(skel->maps.kpx_ct);
	if (profile) {
		/* -P: only new flows into a full table, for a profiler (perf
		 * record -e cpu-clock) */
		struct nf_result x, t;

		if (newflow(counts[0], NF_TC, 100, measure, rounds, &t) ||
		    newflow(counts[0], NF_XDP, 100, measure, rounds, &x))
			return 1;
		printf("full table: tc %.1f XDP %.1f ns incl. wrapper\n", t.ns,
		       x.ns);
		cleanup();
		return 0;
	}
	printf("Established flow: repeat %u per measurement, best of 3. New "
	       "flow: %u distinct flows per measurement, each round into a "
	       "fresh object whose conntrack table (max_entries %u) was "
	       "first filled by the same program over distinct flows; best "
	       "of %d rounds. ns/packet (BPF_PROG_TEST_RUN duration), one "
	       "CPU.\n\n",
	       repeat, measure, ctm, rounds);
	printf("| services | XDP_PASS floor | XDP restore | XDP est. (SNAT, "
	       "XDP_TX) | XDP est. above floor | XDP new flow, table with "
	       "headroom (90 %%) | XDP new flow, full table | tc restore | "
	       "tc est. (SNAT, redirect) | tc est. above floor | tc new flow, "
	       "table with headroom (90 %%) | tc new flow, full table |\n");
	printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
	for (int c = 0; c < ncounts; c++) {
		double floor, xr, xe, tr, te, xrn, trn;
		struct nf_result xh, xf, th, tf;
		uint32_t r1, r2, r3, r4, r5;

		if (load(counts[c], 0) || fill(counts[c], false)) {
			fprintf(stderr, "load/fill: %s\n", strerror(errno));
			cleanup();
			return 1;
		}
		seq = 0;
		/* the measured established flow: its SYN first */
		set_frame(true, false);
		if (run(skel->progs.kpx_bench_xdp, true, 1, &r1, NULL) < 0 ||
		    r1 != 3) {
			fprintf(stderr, "the established flow's SYN: %u\n", r1);
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
		/* the wrappers' cost with the per-iteration source rewrite */
		xrn = best_of(skel->progs.kpx_bench_xdp_restore, true, measure,
			      &r2, true);
		trn = best_of(skel->progs.kpx_bench_tc_restore, false, measure,
			      &r4, true);
		if (r3 != 3 /* XDP_TX */ || r5 != 7 /* TC_ACT_REDIRECT */)
			fprintf(stderr,
				"warning: unexpected verdicts xdp=%u tc=%u\n",
				r3, r5);
		if (newflow(counts[c], NF_XDP, 90, measure, rounds, &xh) ||
		    newflow(counts[c], NF_XDP, 100, measure, rounds, &xf) ||
		    newflow(counts[c], NF_TC, 90, measure, rounds, &th) ||
		    newflow(counts[c], NF_TC, 100, measure, rounds, &tf)) {
			fprintf(stderr, "new-flow measurement failed\n");
			cleanup();
			return 1;
		}
		if (c == 0) {
			det[1][0] = xh, det[2][0] = xf;
			det[1][1] = th, det[2][1] = tf;
		}
		printf("| %u | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f "
		       "| %.1f | %.1f | %.1f | %.1f |\n",
		       counts[c], floor, xr, xe, xe - xr, xh.ns - xrn,
		       xf.ns - xrn, tr, te, te - tr, th.ns - trn, tf.ns - trn);
		fflush(stdout);
		if (c == 0) {
			/* restore costs of this row, for the detail table */
			det[0][2].fill = xrn;
			det[1][2].fill = trn;
		}
	}
	printf("\nabove floor = measured - restore wrapper (the XDP wrapper's "
	       "run includes the XDP_PASS floor; the tc wrapper's includes "
	       "tc's); for new flows the wrappers are measured with their "
	       "per-iteration source rewrite\n");

	/* detail at the first service count: every fill, and eTP=Local */
	{
		double xrn = det[0][2].fill, trn = det[1][2].fill;
		struct nf_result loc[3];

		if (newflow(counts[0], NF_XDP, 0, measure, rounds, &det[0][0]) ||
		    newflow(counts[0], NF_TC, 0, measure, rounds, &det[0][1]))
			return 1;
		for (int f = 0; f < 3; f++)
			if (newflow(counts[0], NF_TC_LOCAL, fills[f], measure,
				    rounds, &loc[f]))
				return 1;
		printf("\nNew flows by table fill, %u service(s), ns/packet "
		       "above the floor:\n\n",
		       counts[0]);
		printf("| table before the run | XDP (SNAT) | tc (SNAT) | tc "
		       "(eTP=Local, no SNAT) | entries per flow (SNAT / "
		       "Local) | fill reached (SNAT / Local) | drops in the "
		       "timed runs |\n");
		printf("|---|---|---|---|---|---|---|\n");
		for (int f = 0; f < 3; f++)
			printf("| %s | %.1f | %.1f | %.1f | %.2f / %.2f | %.1f %% "
			       "/ %.1f %% | %llu |\n",
			       f == 0 ? "empty (for reference)" :
			       f == 1 ? "90 % of max_entries" :
					"full (filled to 102 %, LRU evicting)",
			       det[f][0].ns - xrn, det[f][1].ns - trn,
			       loc[f].ns - trn, det[f][1].epf, loc[f].epf,
			       det[f][1].fill, loc[f].fill,
			       (unsigned long long)(det[f][0].drops +
						    det[f][1].drops +
						    loc[f].drops));
	}

	/* flood guard: an established flow through a burst */
	{
		uint32_t burst = 2 * ctm;

		printf("\nEstablished flows through a burst of %u new flows "
		       "of two packets each (XDP, SNAT; more flows than the "
		       "table holds):\n\n",
		       burst);
		printf("| --bpf-new-flow-rate | the measured established "
		       "flow after the burst | the other established flows "
		       "(60 %% of the table) still in it | conntrack entries "
		       "added | new flows refused (drop reason flood) |\n");
		printf("|---|---|---|---|---|\n");
		for (int g = 0; g < 2; g++) {
			uint32_t rate = g ? 1000 : 0;
			long ins = 0;
			uint64_t ref = 0;
			double kept = 0;
			int s = burst_check(counts[0], rate, burst, &ins, &ref,
					    &kept);

			printf("| %u%s | %s | %.1f %% | %ld | %llu |\n", rate,
			       g ? "" : " (off)",
			       s < 0  ? "error" :
			       s == 1 ? "same backend and SNAT port (entry kept)" :
					"re-balanced (entry evicted)",
			       kept, ins, (unsigned long long)ref);
		}
	}
	cleanup();
	return 0;
}
