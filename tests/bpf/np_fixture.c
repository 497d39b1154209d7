/* SPDX-License-Identifier: Apache-2.0 */
/*
 * NodePort BPF_PROG_TEST_RUN fixture (see np_fixture.h). Each Criterion
 * test runs in its own process: np_setup() moves that process into a new
 * network namespace (no link to the host), builds one veth with static
 * neighbours, mounts bpffs at /sys/fs/bpf when absent and loads the
 * nodeport object with a unique pin root, removed in np_teardown().
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <criterion/criterion.h>
#include <linux/if_ether.h>

#include "bpf/nodeport.skel.h"
#include "np_fixture.h"

#define BPF_FS_MAGIC_ 0xcafe4a11

const uint8_t np_mac_be[6] = { 0x02, 0, 0, 0, 0, 0x02 };
const uint8_t np_mac_client[6] = { 0x02, 0, 0, 0, 0, 0x03 };
uint8_t np_mac_dev[6];
uint8_t np_mac_pod_dev[6];
const uint8_t np_mac_localbe[6] = { 0x02, 0, 0, 0, 0, 0x05 };

struct np_fix npf;
bool np_small_maps;
uint32_t np_new_flow_rate;

static void remove_stale_pin_dirs(void);

static int sh(const char *cmd)
{
	/* Test-only: iproute2 inside the private namespace of this
	 * process (never the host's), output kept off the test log. */
	char buf[512];

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

static int bpffs_ready(void)
{
	struct statfs st;

	if (statfs("/sys/fs/bpf", &st) == 0 && st.f_type == BPF_FS_MAGIC_)
		return 0;
	mkdir("/sys/fs/bpf", 0700);
	if (mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700"))
		return -errno;
	return 0;
}

/* sysfs shows the namespace it was mounted in, not ours: ask the kernel. */
static void mac_of(const char *dev, uint8_t *mac)
{
	struct ifreq ifr = {};
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	if (fd < 0)
		return;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", dev);
	if (ioctl(fd, SIOCGIFHWADDR, &ifr) == 0)
		memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
	close(fd);
}

void np_setup(void)
{
	LIBBPF_OPTS(bpf_object_open_opts, oo);
	struct kpx_dp_config dc = {};
	uint32_t zero = 0;
	int err;

	memset(&npf, 0, sizeof(npf));
	if (geteuid() != 0) {
		snprintf(npf.skip, sizeof(npf.skip), "needs root");
		return;
	}
	if (unshare(CLONE_NEWNET)) {
		snprintf(npf.skip, sizeof(npf.skip), "unshare(CLONE_NEWNET): %s",
			 strerror(errno));
		return;
	}
	err = bpffs_ready();
	if (err) {
		snprintf(npf.skip, sizeof(npf.skip), "no bpffs: %s",
			 strerror(-err));
		return;
	}
	if (sh("ip link set lo up") ||
	    sh("ip link add np0 type veth peer name np1") ||
	    sh("ip link set np0 up") || sh("ip link set np1 up") ||
	    sh("ip addr add " NP_NODE4 "/24 dev np0") ||
	    sh("ip -6 addr add " NP_NODE6 "/64 dev np0 nodad") ||
	    sh("ip neigh replace " NP_BE4 " lladdr 02:00:00:00:00:02 dev np0 nud permanent") ||
	    sh("ip neigh replace " NP_CLIENT4 " lladdr 02:00:00:00:00:03 dev np0 nud permanent") ||
	    sh("ip -6 neigh replace " NP_BE6 " lladdr 02:00:00:00:00:02 dev np0 nud permanent") ||
	    sh("ip -6 neigh replace " NP_CLIENT6 " lladdr 02:00:00:00:00:03 dev np0 nud permanent") ||
	    /* the pod side: local backends behind np2 */
	    sh("ip link add np2 type veth peer name np3") ||
	    sh("ip link set np2 up") || sh("ip link set np3 up") ||
	    sh("ip route add 198.18.5.0/24 dev np2") ||
	    sh("ip -6 route add fd00:5::/64 dev np2") ||
	    sh("ip neigh replace " NP_LOCALBE4 " lladdr 02:00:00:00:00:05 dev np2 nud permanent") ||
	    sh("ip -6 neigh replace " NP_LOCALBE6 " lladdr 02:00:00:00:00:05 dev np2 nud permanent")) {
		snprintf(npf.skip, sizeof(npf.skip),
			 "cannot build veth test namespace (iproute2/veth)");
		return;
	}
	/* bpf_fib_lookup() answers only when forwarding is on. */
	put_file("/proc/sys/net/ipv4/ip_forward", "1");
	put_file("/proc/sys/net/ipv6/conf/all/forwarding", "1");
	npf.ifindex = if_nametoindex("np0");
	npf.pod_ifindex = if_nametoindex("np2");
	mac_of("np0", np_mac_dev);
	mac_of("np2", np_mac_pod_dev);

	remove_stale_pin_dirs();
	snprintf(npf.root, sizeof(npf.root), "/sys/fs/bpf/kpx-test-np-%d",
		 (int)getpid());
	mkdir(npf.root, 0700);
	oo.pin_root_path = npf.root;
	npf.skel = nodeport__open_opts(&oo);
	if (!npf.skel) {
		snprintf(npf.skip, sizeof(npf.skip), "open nodeport object: %s",
			 strerror(errno));
		return;
	}
	npf.skel->rodata->kpx_new_flow_rate = np_new_flow_rate;
	if (np_small_maps) {
		/* map walks cost a syscall per bucket chunk: small state
		 * maps keep per-frame state checks cheap (torture test) */
		bpf_map__set_max_entries(npf.skel->maps.kpx_ct, 1024);
		bpf_map__set_max_entries(npf.skel->maps.kpx_frag, 256);
	}
	err = nodeport__load(npf.skel);
	if (err) {
		/* A verifier rejection is a bug, not a missing feature.
		 * .fini does not run after a failed .init: clean up here. */
		np_teardown();
		cr_assert_fail("nodeport object does not load: %s",
			       strerror(-err));
	}
	inet_pton(AF_INET, NP_NODE4, dc.node_ip4);
	inet_pton(AF_INET6, NP_NODE6, dc.node_ip6);
	dc.snat_port_min = 40000;
	dc.snat_port_max = 40099;
	dc.ct_tcp_timeout = 3600;
	dc.ct_tcp_close_timeout = 10;
	dc.ct_udp_timeout = 30;
	cr_assert_eq(bpf_map_update_elem(
			     bpf_map__fd(npf.skel->maps.kpx_config), &zero,
			     &dc, BPF_ANY),
		     0);
	npf.ok = true;
}

/* Removes a pin directory of this fixture and the pins in it. */
static void remove_pin_dir(const char *dir)
{
	struct dirent *de;
	char path[400];
	DIR *d = opendir(dir);

	if (d) {
		while ((de = readdir(d))) {
			if (de->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
			unlink(path);
		}
		closedir(d);
	}
	rmdir(dir);
}

/*
 * A test process killed from outside (SIGKILL, SIGPIPE of the runner's
 * output) never reaches np_teardown(): remove pin roots whose process is
 * gone before creating a new one.
 */
static void remove_stale_pin_dirs(void)
{
	struct dirent *de;
	char path[400];
	DIR *d = opendir("/sys/fs/bpf");
	int pid;

	if (!d)
		return;
	while ((de = readdir(d))) {
		if (sscanf(de->d_name, "kpx-test-np-%d", &pid) != 1 ||
		    pid <= 0 || kill(pid, 0) == 0 || errno != ESRCH)
			continue;
		snprintf(path, sizeof(path), "/sys/fs/bpf/%s", de->d_name);
		remove_pin_dir(path);
	}
	closedir(d);
}

void np_teardown(void)
{
	if (npf.skel)
		nodeport__destroy(npf.skel);
	npf.skel = NULL;
	if (npf.root[0])
		remove_pin_dir(npf.root);
	/* the namespace (and its veth) goes away with the test process */
}

/* ---- packet builder ---- */

static uint32_t sum16(const void *p, size_t len, uint32_t s)
{
	const uint8_t *b = p;

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

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v & 0xff;
}

static uint16_t get16(const uint8_t *p)
{
	return (p[0] << 8) | p[1];
}

/* L4 checksum over the pseudo header of the IP header at ip. */
static uint16_t l4_sum(const uint8_t *ip, bool v6, uint8_t proto,
		       const uint8_t *l4, size_t l4len)
{
	uint32_t s = 0;
	uint8_t ph[4] = { 0, 0, 0, proto };

	if (v6)
		s = sum16(ip + 8, 32, s);
	else
		s = sum16(ip + 12, 8, s);
	s += proto + (uint32_t)l4len;
	(void)ph;
	return fold(sum16(l4, l4len, s));
}

size_t np_build(uint8_t *buf, const struct np_tuple *t)
{
	bool v6 = t->family == AF_INET6;
	size_t l3 = v6 ? (t->ip6_dstopt ? 64 : 40) : (t->ip_opt ? 28 : 20);
	size_t l4 = t->proto == IPPROTO_TCP ? (t->mss ? 24 : 20) : 8;
	size_t len = 14 + l3 + l4 + t->payload;
	uint8_t *ip = buf + 14, *th = ip + l3;

	memset(buf, 0, len);
	memcpy(buf, t->dmac ? t->dmac : np_mac_dev, 6);
	memcpy(buf + 6, t->smac ? t->smac : np_mac_client, 6);
	put16(buf + 12, v6 ? ETH_P_IPV6 : ETH_P_IP);
	if (v6) {
		ip[0] = 0x60;
		put16(ip + 4, l3 - 40 + l4 + t->payload);
		ip[6] = t->proto;
		if (t->ip6_dstopt) {
			memcpy(ip + 40, t->ip6_dstopt, 24);
			ip[40] = t->proto;
			ip[6] = 60;
		}
		ip[7] = 64;
		inet_pton(AF_INET6, t->src, ip + 8);
		inet_pton(AF_INET6, t->dst, ip + 24);
	} else {
		ip[0] = 0x40 | (uint8_t)(l3 / 4);
		if (t->ip_opt)
			memcpy(ip + 20, t->ip_opt, 8);
		put16(ip + 2, l3 + l4 + t->payload);
		put16(ip + 4, 0x1234);
		put16(ip + 6, 0x4000);
		ip[8] = 64;
		ip[9] = t->proto;
		inet_pton(AF_INET, t->src, ip + 12);
		inet_pton(AF_INET, t->dst, ip + 16);
		put16(ip + 10, fold(sum16(ip, l3, 0)));
	}
	put16(th, t->sport);
	put16(th + 2, t->dport);
	for (size_t i = 0; i < t->payload; i++)
		th[l4 + i] = (uint8_t)(0x41 + i);
	if (t->proto == IPPROTO_TCP) {
		th[4] = t->seq >> 24;
		th[5] = t->seq >> 16;
		th[6] = t->seq >> 8;
		th[7] = t->seq;
		th[8] = t->ack >> 24;
		th[9] = t->ack >> 16;
		th[10] = t->ack >> 8;
		th[11] = t->ack;
		th[12] = (uint8_t)((l4 / 4) << 4);
		if (t->mss) {
			th[20] = 2;
			th[21] = 4;
			put16(th + 22, t->mss);
		}
		th[13] = t->tcp_flags;
		put16(th + 14, 65535);
		put16(th + 16, l4_sum(ip, v6, IPPROTO_TCP, th, l4 + t->payload));
	} else {
		uint16_t c;

		put16(th + 4, l4 + t->payload);
		c = l4_sum(ip, v6, IPPROTO_UDP, th, l4 + t->payload);
		if (!c)
			c = 0xffff;
		if (!t->udp_zero_csum || v6)
			put16(th + 6, c);
	}
	return len;
}

bool np_csum_ok(const uint8_t *buf, size_t len)
{
	uint16_t et = get16(buf + 12);
	bool v6 = et == ETH_P_IPV6;
	const uint8_t *ip = buf + 14, *l4;
	size_t l3len, l4len;
	uint8_t proto;

	if (len < 34)
		return false;
	if (v6) {
		l3len = 40;
		proto = ip[6];
		l4len = get16(ip + 4);
		if (proto == 60 && len >= 14 + 48u) {
			/* one Destination Options header (DSR) */
			size_t xl = (ip[41] + 1u) * 8;

			proto = ip[40];
			l3len += xl;
			if (l4len < xl)
				return false;
			l4len -= xl;
		}
	} else {
		l3len = (ip[0] & 0xf) * 4;
		if (fold(sum16(ip, l3len, 0)) != 0)
			return false;
		proto = ip[9];
		l4len = get16(ip + 2) - l3len;
	}
	l4 = ip + l3len;
	if (14 + l3len + l4len > len)
		return false;
	if (proto == IPPROTO_UDP && !v6 && get16(l4 + 6) == 0)
		return true; /* no checksum */
	if (proto == IPPROTO_ICMP) {
		/* no pseudo header; the quoted IPv4 header has its own */
		if (fold(sum16(l4, l4len, 0)) != 0)
			return false;
		return fold(sum16(l4 + 8, 20, 0)) == 0;
	}
	{
		uint32_t s = v6 ? sum16(ip + 8, 32, 0) : sum16(ip + 12, 8, 0);

		s += proto + (uint32_t)l4len;
		return fold(sum16(l4, l4len, s)) == 0;
	}
}

/* ---- maps ---- */

static void addr_bytes(int family, const char *s, uint8_t *out)
{
	memset(out, 0, 16);
	cr_assert_eq(inet_pton(family, s, out), 1, "bad address %s", s);
}

void np_add_service(int family, const char *addr, uint16_t port,
		    uint8_t proto, uint32_t svc_id, uint8_t flags,
		    const uint32_t *backend_ids, uint16_t n)
{
	struct kpx_svc_key k = {};
	struct kpx_svc_value v = {};

	addr_bytes(family, addr, k.addr);
	k.port = htons(port);
	k.proto = proto;
	k.scope = KPX_SCOPE_EXTERNAL;
	k.family = family == AF_INET ? KPX_AF_INET : KPX_AF_INET6;
	v.svc_id = svc_id;
	v.count = n;
	v.flags = flags;
	v.kind = KPX_FE_TYPE_NODE_PORT;
	for (uint16_t i = 0; i < n; i++) {
		struct kpx_slot_key sk = { .svc_id = svc_id, .gen = 0,
					   .slot = i };

		cr_assert_eq(bpf_map_update_elem(
				     bpf_map__fd(npf.skel->maps.kpx_slots), &sk,
				     &backend_ids[i], BPF_ANY),
			     0);
	}
	cr_assert_eq(bpf_map_update_elem(bpf_map__fd(npf.skel->maps.kpx_svc),
					 &k, &v, BPF_ANY),
		     0);
}

void np_add_backend(uint32_t id, int family, const char *addr, uint16_t port,
		    uint8_t proto, bool local)
{
	struct kpx_backend_value v = {};

	addr_bytes(family, addr, v.addr);
	v.port = htons(port);
	v.proto = proto;
	v.family = family == AF_INET ? KPX_AF_INET : KPX_AF_INET6;
	v.flags = local ? KPX_BE_F_LOCAL : 0;
	cr_assert_eq(bpf_map_update_elem(
			     bpf_map__fd(npf.skel->maps.kpx_backends), &id, &v,
			     BPF_ANY),
		     0);
}

void np_add_src_range(uint32_t svc_id, int family, const char *addr,
		      uint8_t plen)
{
	struct kpx_src_range_key k = {};
	uint8_t one = 1;

	k.prefixlen = 32 + plen;
	k.svc_id = svc_id;
	addr_bytes(family, addr, k.addr);
	cr_assert_eq(bpf_map_update_elem(
			     bpf_map__fd(npf.skel->maps.kpx_src_range), &k,
			     &one, BPF_ANY),
		     0);
}

uint64_t np_drops(enum kpx_drop_reason r)
{
	int ncpu = libbpf_num_possible_cpus();
	uint64_t vals[512] = {}, sum = 0;
	uint32_t key = r;

	if (ncpu <= 0 || ncpu > 512)
		return 0;
	if (bpf_map_lookup_elem(bpf_map__fd(npf.skel->maps.kpx_drops), &key,
				vals))
		return 0;
	for (int i = 0; i < ncpu; i++)
		sum += vals[i];
	return sum;
}

unsigned int np_ct_count(void)
{
	struct kpx_ct_key k, n;
	void *prev = NULL;
	unsigned int c = 0;
	int fd = bpf_map__fd(npf.skel->maps.kpx_ct);

	while (!bpf_map_get_next_key(fd, prev, &n)) {
		k = n;
		prev = &k;
		c++;
	}
	return c;
}

int np_run(const char *prog, const uint8_t *data, size_t len, uint8_t *out,
	   size_t *out_len)
{
	struct bpf_program *p;
	struct __sk_buff skb = {};
	struct xdp_md xmd = {};
	LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = data,
		    .data_size_in = len, .data_out = out,
		    .data_size_out = *out_len, .repeat = 1);
	int err;

	if (!strcmp(prog, "xdp")) {
		p = npf.skel->progs.kpx_np_xdp;
		xmd.data_end = len;
		xmd.ingress_ifindex = npf.run_ifindex ?: npf.ifindex;
		o.ctx_in = &xmd;
		o.ctx_size_in = sizeof(xmd);
	} else {
		p = !strcmp(prog, "in") ? npf.skel->progs.kpx_np_tc_in
					: npf.skel->progs.kpx_np_tc_out;
		skb.ifindex = npf.run_ifindex ?: npf.ifindex;
		o.ctx_in = &skb;
		o.ctx_size_in = sizeof(skb);
	}
	err = bpf_prog_test_run_opts(bpf_program__fd(p), &o);
	cr_assert_eq(err, 0, "BPF_PROG_TEST_RUN %s: %s", prog, strerror(-err));
	*out_len = o.data_size_out;
	return (int)o.retval;
}

void np_hexdump_diff(const uint8_t *a, const uint8_t *b, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (a[i] != b[i])
			fprintf(stderr, "  byte %zu: got %02x want %02x\n", i,
				a[i], b[i]);
}

void np_set_dp_flags(uint32_t flags)
{
	struct kpx_dp_config dc;
	uint32_t zero = 0;
	int fd = bpf_map__fd(npf.skel->maps.kpx_config);

	cr_assert_eq(bpf_map_lookup_elem(fd, &zero, &dc), 0);
	dc.flags = flags;
	cr_assert_eq(bpf_map_update_elem(fd, &zero, &dc, BPF_ANY), 0);
}
