/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Userspace side of the NodePort datapath (see bpf/nodeport.h): loads
 * nodeport.bpf.c against the pinned shared maps, writes kpx_config,
 * attaches tc clsact ingress/egress (and XDP with --nodeport-accel xdp) on
 * each device, and garbage-collects kpx_ct.
 *
 * Attachments are idempotent: our tc filters live at a fixed handle and
 * priority and are replaced in place, and our XDP program replaces only
 * itself, so a restarted agent never stacks a second copy and never
 * unhooks established flows (their state is in the pinned kpx_ct).
 *
 * Devices, when --devices is not given: the device of the IPv4 default
 * route, else of the IPv6 default route, else every device holding one of
 * cfg->node_ips.
 */
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <json-c/json.h>
#include <linux/ethtool.h>
#include <linux/if_link.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "bpf/kpx_abi.h"
#include "bpf/loader.h"
#include "bpf/nodeport.h"
#include "bpf/nodeport.skel.h"
#include "common/log.h"

#define NP_TC_HANDLE 0x6b70 /* "kp" */
#define NP_TC_PRIO 1
#define NP_XDP_NAME "kpx_np_xdp"
#define NP_CT_PIN "kpx_ct"

#define NP_POD_MAX 1024

struct kpx_nodeport {
	struct nodeport *skel;
	struct kpx_config cfg;
	char devs[KPX_MAX_DEVICES][KPX_IFNAME_MAX];
	size_t n_devs;
	int ct_fd;
	/* pod-side devices with the ingress hook (replies of SNATed local
	 * backends come back there), rescanned on tick */
	unsigned int pod_if[NP_POD_MAX];
	size_t n_pod_if;
	uint64_t last_scan_ns;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/* ---- device detection ---- */

static int default_route_dev4(char *out)
{
	char line[256], ifn[64];
	unsigned long dst, mask;
	unsigned int flags;
	FILE *f = fopen("/proc/net/route", "r");
	int found = -ENOENT;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%63s %lx %*x %x %*d %*d %*d %lx", ifn, &dst,
			   &flags, &mask) != 4)
			continue;
		if (dst == 0 && mask == 0 && (flags & 1) &&
		    strlen(ifn) < KPX_IFNAME_MAX) {
			strcpy(out, ifn);
			found = 0;
			break;
		}
	}
	fclose(f);
	return found;
}

static int default_route_dev6(char *out)
{
	char line[512], dst[40], ifn[64];
	unsigned int plen;
	FILE *f = fopen("/proc/net/ipv6_route", "r");
	int found = -ENOENT;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%32s %x %*s %*s %*s %*s %*s %*s %*s %63s",
			   dst, &plen, ifn) != 3)
			continue;
		if (plen == 0 && strcmp(ifn, "lo") &&
		    strspn(dst, "0") == 32 && strlen(ifn) < KPX_IFNAME_MAX) {
			strcpy(out, ifn);
			found = 0;
			break;
		}
	}
	fclose(f);
	return found;
}

int kpx_nodeport_devices(const struct kpx_config *cfg,
			 char out[][KPX_IFNAME_MAX], size_t max, size_t *n)
{
	struct ifaddrs *ifa, *i;
	size_t k;

	*n = 0;
	if (cfg->n_devices) {
		for (k = 0; k < cfg->n_devices && k < max; k++)
			strcpy(out[k], cfg->devices[k]);
		*n = k;
		return 0;
	}
	if (max && (default_route_dev4(out[0]) == 0 ||
		    default_route_dev6(out[0]) == 0)) {
		*n = 1;
		return 0;
	}
	if (getifaddrs(&ifa))
		return -errno;
	for (i = ifa; i; i = i->ifa_next) {
		const void *a;
		size_t j;
		bool dup = false;

		if (!i->ifa_addr || !i->ifa_name || *n >= max)
			continue;
		if (i->ifa_addr->sa_family == AF_INET)
			a = &((struct sockaddr_in *)i->ifa_addr)->sin_addr;
		else if (i->ifa_addr->sa_family == AF_INET6)
			a = &((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr;
		else
			continue;
		for (k = 0; k < cfg->n_node_ips; k++) {
			const struct kpx_addr *na = &cfg->node_ips[k];

			if (na->family != i->ifa_addr->sa_family ||
			    memcmp(na->bytes, a,
				   na->family == AF_INET ? 4 : 16))
				continue;
			for (j = 0; j < *n; j++)
				dup |= !strcmp(out[j], i->ifa_name);
			if (!dup && strlen(i->ifa_name) < KPX_IFNAME_MAX)
				strcpy(out[(*n)++], i->ifa_name);
		}
	}
	freeifaddrs(ifa);
	return *n ? 0 : -ENODEV;
}

/* First global address of family fam on dev. */
static int dev_addr(const char *dev, int fam, uint8_t *out)
{
	struct ifaddrs *ifa, *i;
	int err = -ENOENT;

	if (getifaddrs(&ifa))
		return -errno;
	for (i = ifa; i; i = i->ifa_next) {
		if (!i->ifa_addr || strcmp(i->ifa_name, dev) ||
		    i->ifa_addr->sa_family != fam)
			continue;
		if (fam == AF_INET) {
			memcpy(out, &((struct sockaddr_in *)i->ifa_addr)->sin_addr,
			       4);
		} else {
			struct in6_addr *a6 =
				&((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr;

			if (IN6_IS_ADDR_LINKLOCAL(a6))
				continue;
			memcpy(out, a6, 16);
		}
		err = 0;
		break;
	}
	freeifaddrs(ifa);
	return err;
}

void kpx_nodeport_dp_config(const struct kpx_config *cfg,
			    struct kpx_dp_config *out)
{
	char devs[KPX_MAX_DEVICES][KPX_IFNAME_MAX];
	bool have4 = false, have6 = false;
	size_t n = 0, k;

	memset(out, 0, sizeof(*out));
	for (k = 0; k < cfg->n_node_ips; k++) {
		const struct kpx_addr *a = &cfg->node_ips[k];

		if (a->family == AF_INET && !have4) {
			memcpy(out->node_ip4, a->bytes, 4);
			have4 = true;
		} else if (a->family == AF_INET6 && !have6) {
			memcpy(out->node_ip6, a->bytes, 16);
			have6 = true;
		}
	}
	if ((!have4 || !have6) &&
	    kpx_nodeport_devices(cfg, devs, KPX_MAX_DEVICES, &n) == 0 && n) {
		if (!have4)
			dev_addr(devs[0], AF_INET, out->node_ip4);
		if (!have6)
			dev_addr(devs[0], AF_INET6, out->node_ip6);
	}
	out->snat_port_min = cfg->snat_port_min ? cfg->snat_port_min : 32768;
	out->snat_port_max = cfg->snat_port_max ? cfg->snat_port_max : 60999;
	if (out->snat_port_max < out->snat_port_min)
		out->snat_port_max = out->snat_port_min;
	out->ct_tcp_timeout = cfg->ct_tcp_timeout ? cfg->ct_tcp_timeout : 86400;
	out->ct_tcp_close_timeout =
		cfg->ct_tcp_close_timeout ? cfg->ct_tcp_close_timeout : 10;
	out->ct_udp_timeout = cfg->ct_udp_timeout ? cfg->ct_udp_timeout : 30;
	if (cfg->nodeport_mode == KPX_NP_DSR)
		out->flags |= KPX_DP_F_DSR;
}

/* ---- conntrack GC ---- */

static void partner_key(const struct kpx_ct_key *k,
			const struct kpx_ct_value *v, struct kpx_ct_key *p)
{
	memset(p, 0, sizeof(*p));
	memcpy(p->saddr, v->new_daddr, 16);
	memcpy(p->daddr, v->new_saddr, 16);
	p->sport = v->new_dport;
	p->dport = v->new_sport;
	p->proto = k->proto;
	p->family = k->family;
	p->dir = !k->dir;
}

int kpx_nodeport_ct_gc(int ct_fd, const struct kpx_config *cfg,
		       uint64_t now_ns, unsigned int max_scan)
{
	struct kpx_dp_config dc;
	struct kpx_ct_key key, next, pk, *dead = NULL;
	struct kpx_ct_value v, pv;
	size_t n_dead = 0, cap = 0, i;
	unsigned int scanned = 0;
	void *prev = NULL;
	int deleted = 0;

	kpx_nodeport_dp_config(cfg, &dc);
	while (scanned < max_scan && !bpf_map_get_next_key(ct_fd, prev, &next)) {
		uint64_t last, to;
		uint8_t fl;

		key = next;
		prev = &key;
		scanned++;
		if (bpf_map_lookup_elem(ct_fd, &key, &v))
			continue;
		last = v.last_seen_ns;
		fl = v.tcp_flags_seen;
		partner_key(&key, &v, &pk);
		if (!bpf_map_lookup_elem(ct_fd, &pk, &pv)) {
			if (pv.last_seen_ns > last)
				last = pv.last_seen_ns;
			fl |= pv.tcp_flags_seen;
		}
		if (key.proto == 6)
			to = fl ? dc.ct_tcp_close_timeout : dc.ct_tcp_timeout;
		else
			to = dc.ct_udp_timeout;
		if (now_ns <= last || now_ns - last <= to * 1000000000ULL)
			continue;
		if (n_dead + 2 > cap) {
			size_t nc = cap ? cap * 2 : 256;
			struct kpx_ct_key *d = realloc(dead, nc * sizeof(*d));

			if (!d)
				break;
			dead = d;
			cap = nc;
		}
		dead[n_dead++] = key;
		dead[n_dead++] = pk;
	}
	for (i = 0; i < n_dead; i++)
		if (!bpf_map_delete_elem(ct_fd, &dead[i]))
			deleted++;
	free(dead);
	return deleted;
}

/* ---- attach / detach ---- */

static int tc_attach(int ifindex, enum bpf_tc_attach_point where, int fd)
{
	DECLARE_LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex,
			    .attach_point = where);
	DECLARE_LIBBPF_OPTS(bpf_tc_opts, opts, .handle = NP_TC_HANDLE,
			    .priority = NP_TC_PRIO, .prog_fd = fd,
			    .flags = BPF_TC_F_REPLACE);
	int err;

	hook.attach_point = BPF_TC_INGRESS | BPF_TC_EGRESS; /* clsact */
	err = bpf_tc_hook_create(&hook);
	if (err && err != -EEXIST)
		return err;
	hook.attach_point = where;
	return bpf_tc_attach(&hook, &opts);
}

static void tc_detach(int ifindex, enum bpf_tc_attach_point where)
{
	DECLARE_LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex,
			    .attach_point = where);
	DECLARE_LIBBPF_OPTS(bpf_tc_opts, opts, .handle = NP_TC_HANDLE,
			    .priority = NP_TC_PRIO);

	bpf_tc_detach(&hook, &opts);
}

/* Id of the XDP program on ifindex if it is ours, 0 if none, -EBUSY if
 * it belongs to someone else. */
/*
 * XDP mode per device: native, except on veth, whose XDP_TX/redirect only
 * delivers when the peer has NAPI enabled (an XDP program or GRO on the
 * peer, which kpx does not own); generic mode always delivers there.
 */
static uint32_t xdp_mode(int ifindex)
{
	struct ethtool_drvinfo di = { .cmd = ETHTOOL_GDRVINFO };
	struct ifreq ifr = {};
	uint32_t mode = XDP_FLAGS_DRV_MODE;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || !if_indextoname(ifindex, ifr.ifr_name))
		goto out;
	ifr.ifr_data = (void *)&di;
	if (ioctl(fd, SIOCETHTOOL, &ifr) == 0 && !strcmp(di.driver, "veth"))
		mode = XDP_FLAGS_SKB_MODE;
out:
	if (fd >= 0)
		close(fd);
	return mode;
}

/* Id of the XDP program on ifindex (in mode) if it is ours, 0 if none,
 * -EBUSY if it belongs to someone else. */
static int xdp_ours(int ifindex, uint32_t mode, uint32_t *id)
{
	struct bpf_prog_info info = {};
	uint32_t len = sizeof(info);
	int fd, err;

	*id = 0;
	err = bpf_xdp_query_id(ifindex, mode, id);
	if (err || !*id)
		return err;
	fd = bpf_prog_get_fd_by_id(*id);
	if (fd < 0)
		return -errno;
	err = bpf_obj_get_info_by_fd(fd, &info, &len);
	close(fd);
	if (err)
		return err;
	return strcmp(info.name, NP_XDP_NAME) ? -EBUSY : 0;
}

static int xdp_attach(int ifindex, int fd)
{
	DECLARE_LIBBPF_OPTS(bpf_xdp_attach_opts, opts);
	uint32_t id, mode = xdp_mode(ifindex);
	int err = xdp_ours(ifindex, mode, &id), ofd = -1;

	if (err)
		return err;
	if (id) {
		ofd = bpf_prog_get_fd_by_id(id);
		if (ofd < 0)
			return -errno;
		opts.old_prog_fd = ofd;
		err = bpf_xdp_attach(ifindex, fd, mode | XDP_FLAGS_REPLACE,
				     &opts);
		close(ofd);
		return err;
	}
	return bpf_xdp_attach(ifindex, fd, mode, NULL);
}

static void xdp_detach(int ifindex)
{
	static const uint32_t modes[] = { XDP_FLAGS_DRV_MODE,
					  XDP_FLAGS_SKB_MODE };
	uint32_t id;

	for (size_t k = 0; k < 2; k++)
		if (xdp_ours(ifindex, modes[k], &id) == 0 && id)
			bpf_xdp_detach(ifindex, modes[k], NULL);
}

/* Ours in any mode. */
static bool xdp_attached(int ifindex)
{
	uint32_t id = 0;

	return (xdp_ours(ifindex, XDP_FLAGS_DRV_MODE, &id) == 0 && id) ||
	       (xdp_ours(ifindex, XDP_FLAGS_SKB_MODE, &id) == 0 && id);
}

static bool is_device(const struct kpx_nodeport *np, const char *name)
{
	for (size_t k = 0; k < np->n_devs; k++)
		if (!strcmp(np->devs[k], name))
			return true;
	return false;
}

/*
 * Every other device of the node except lo (pods' host-side veths, in
 * whatever form the CNI made them) gets the same ingress program: a pod's
 * reply to a SNATed flow is addressed to the node and would otherwise be
 * delivered locally and answered with a reset. Traffic that matches no
 * conntrack entry passes untouched. New devices are picked up on tick.
 */
static void pod_side_scan(struct kpx_nodeport *np)
{
	struct if_nameindex *ifs = if_nameindex(), *i;
	int fd = bpf_program__fd(np->skel->progs.kpx_np_tc_in);

	if (!ifs)
		return;
	for (i = ifs; i->if_index; i++) {
		bool known = false;
		int err;

		if (!strcmp(i->if_name, "lo") || is_device(np, i->if_name))
			continue;
		for (size_t k = 0; k < np->n_pod_if && !known; k++)
			known = np->pod_if[k] == i->if_index;
		if (known || np->n_pod_if >= NP_POD_MAX)
			continue;
		err = tc_attach(i->if_index, BPF_TC_INGRESS, fd);
		if (err) {
			kpx_warn("nodeport: pod-side device %s: tc attach: %s",
				 i->if_name, strerror(-err));
			continue;
		}
		np->pod_if[np->n_pod_if++] = i->if_index;
		kpx_dbg(1, "nodeport: reply hook on %s", i->if_name);
	}
	if_freenameindex(ifs);
	/* forget devices that went away (ifindexes are not reused soon) */
	for (size_t k = 0; k < np->n_pod_if;) {
		char name[IF_NAMESIZE];

		if (!if_indextoname(np->pod_if[k], name))
			np->pod_if[k] = np->pod_if[--np->n_pod_if];
		else
			k++;
	}
}

int kpx_nodeport_open(const struct kpx_config *cfg, struct kpx_nodeport **out)
{
	LIBBPF_OPTS(bpf_object_open_opts, oo, .pin_root_path = cfg->bpf_root);
	struct kpx_nodeport *np;
	struct kpx_dp_config dc;
	uint32_t zero = 0;
	size_t k;
	int err;

	np = calloc(1, sizeof(*np));
	if (!np)
		return -ENOMEM;
	np->cfg = *cfg;
	np->ct_fd = -1;
	err = kpx_nodeport_devices(cfg, np->devs, KPX_MAX_DEVICES, &np->n_devs);
	if (err) {
		kpx_err("nodeport: no device to attach to (give --devices)");
		goto fail;
	}
	err = kpx_bpf_prepare_root(cfg);
	if (err)
		goto fail;
	np->skel = nodeport__open_opts(&oo);
	if (!np->skel) {
		err = -errno;
		kpx_err("nodeport: open BPF object: %s", strerror(-err));
		goto fail;
	}
	/* benchmark wrappers (perf/tools/kpx_pkt_bench.c) stay unloaded */
	bpf_program__set_autoload(np->skel->progs.kpx_bench_xdp_pass, false);
	bpf_program__set_autoload(np->skel->progs.kpx_bench_xdp_restore, false);
	bpf_program__set_autoload(np->skel->progs.kpx_bench_xdp, false);
	bpf_program__set_autoload(np->skel->progs.kpx_bench_tc_restore, false);
	bpf_program__set_autoload(np->skel->progs.kpx_bench_tc, false);
	err = kpx_bpf_size_maps(np->skel->obj, cfg);
	if (err)
		goto fail;
	err = nodeport__load(np->skel);
	if (err) {
		kpx_err("nodeport: load BPF object: %s", strerror(-err));
		goto fail;
	}
	np->ct_fd = bpf_map__fd(np->skel->maps.kpx_ct);
	kpx_nodeport_dp_config(cfg, &dc);
	err = bpf_map_update_elem(bpf_map__fd(np->skel->maps.kpx_config),
				  &zero, &dc, BPF_ANY);
	if (err) {
		err = -errno;
		kpx_err("nodeport: map kpx_config: %s", strerror(-err));
		goto fail;
	}
	for (k = 0; k < np->n_devs; k++) {
		int ifi = if_nametoindex(np->devs[k]);

		if (!ifi) {
			err = -ENODEV;
			kpx_err("nodeport: device %s: no such device",
				np->devs[k]);
			goto fail;
		}
		err = tc_attach(ifi, BPF_TC_INGRESS,
				bpf_program__fd(np->skel->progs.kpx_np_tc_in));
		if (!err)
			err = tc_attach(ifi, BPF_TC_EGRESS,
					bpf_program__fd(
						np->skel->progs.kpx_np_tc_out));
		if (err) {
			kpx_err("nodeport: device %s: tc attach: %s",
				np->devs[k], strerror(-err));
			goto fail;
		}
		if (cfg->nodeport_accel == KPX_ACCEL_XDP) {
			err = xdp_attach(
				ifi, bpf_program__fd(np->skel->progs.kpx_np_xdp));
			if (err) {
				kpx_err("nodeport: device %s: XDP attach: %s",
					np->devs[k], strerror(-err));
				goto fail;
			}
		} else {
			xdp_detach(ifi);
		}
		kpx_info("nodeport: attached to %s (%s)", np->devs[k],
			 cfg->nodeport_accel == KPX_ACCEL_XDP ? "tc+xdp" : "tc");
	}
	pod_side_scan(np);
	np->last_scan_ns = mono_ns();
	if (cfg->nodeport_mode == KPX_NP_DSR)
		kpx_info("nodeport: mode dsr for remote backends (packets "
			 "with IPv4 options or IPv6 extension headers use "
			 "snat); the IPv4 option adds 8 bytes, the IPv6 "
			 "header 24: backends' path MTU must allow it");
	*out = np;
	return 0;
fail:
	kpx_nodeport_close(np);
	return err;
}

void kpx_nodeport_tick(struct kpx_nodeport *np)
{
	int n;

	if (!np || np->ct_fd < 0)
		return;
	if (mono_ns() - np->last_scan_ns > 1000000000ULL) {
		pod_side_scan(np);
		np->last_scan_ns = mono_ns();
	}
	n = kpx_nodeport_ct_gc(np->ct_fd, &np->cfg, mono_ns(),
			       np->cfg.bpf_ct_max ? np->cfg.bpf_ct_max : 262144);
	if (n > 0)
		kpx_dbg(2, "nodeport: conntrack GC removed %d entries", n);
	else if (n < 0)
		kpx_warn("nodeport: conntrack GC: %s", strerror(-n));
}

void kpx_nodeport_close(struct kpx_nodeport *np)
{
	if (!np)
		return;
	nodeport__destroy(np->skel);
	free(np);
}

int kpx_nodeport_cleanup(const struct kpx_config *cfg)
{
	char devs[KPX_MAX_DEVICES][KPX_IFNAME_MAX], path[PATH_MAX + 32];
	size_t n = 0, k;

	if (kpx_nodeport_devices(cfg, devs, KPX_MAX_DEVICES, &n))
		n = 0;
	for (k = 0; k < n; k++) {
		int ifi = if_nametoindex(devs[k]);

		if (!ifi)
			continue;
		tc_detach(ifi, BPF_TC_INGRESS);
		tc_detach(ifi, BPF_TC_EGRESS);
		xdp_detach(ifi);
	}
	{
		struct if_nameindex *ifs = if_nameindex(), *i;

		/* Every device: the pod-side hooks, and --devices of a run
		 * that cleanup's config does not know. Ours only: fixed
		 * handle/priority for tc, program name for XDP. */
		for (i = ifs; i && i->if_index; i++) {
			tc_detach(i->if_index, BPF_TC_INGRESS);
			tc_detach(i->if_index, BPF_TC_EGRESS);
			xdp_detach(i->if_index);
		}
		if (ifs)
			if_freenameindex(ifs);
	}
	snprintf(path, sizeof(path), "%s/%s", cfg->bpf_root, NP_CT_PIN);
	unlink(path);
	snprintf(path, sizeof(path), "%s/%s", cfg->bpf_root, "kpx_config");
	unlink(path);
	return 0;
}

int kpx_nodeport_dump(const struct kpx_config *cfg, struct json_object **out)
{
	char devs[KPX_MAX_DEVICES][KPX_IFNAME_MAX], path[PATH_MAX + 32];
	struct json_object *o = json_object_new_object(), *ja;
	struct bpf_map_info info = {};
	uint32_t ilen = sizeof(info);
	struct kpx_ct_key key, next;
	bool any_xdp = false;
	uint64_t count = 0;
	size_t n = 0, k;
	void *prev = NULL;
	int fd;

	if (!o)
		return -ENOMEM;
	ja = json_object_new_array();
	if (kpx_nodeport_devices(cfg, devs, KPX_MAX_DEVICES, &n))
		n = 0;
	for (k = 0; k < n; k++) {
		struct json_object *d = json_object_new_object();
		int ifi = if_nametoindex(devs[k]);
		bool x = ifi && xdp_attached(ifi);

		any_xdp |= x;
		json_object_object_add(d, "name", json_object_new_string(devs[k]));
		json_object_object_add(d, "ifindex", json_object_new_int(ifi));
		json_object_object_add(d, "xdp", json_object_new_boolean(x));
		json_object_array_add(ja, d);
	}
	json_object_object_add(o, "devices", ja);
	json_object_object_add(o, "mode",
			       json_object_new_string(any_xdp ? "xdp" : "tc"));
	json_object_object_add(o, "nat_mode",
			       json_object_new_string("snat"));
	snprintf(path, sizeof(path), "%s/%s", cfg->bpf_root, NP_CT_PIN);
	fd = bpf_obj_get(path);
	if (fd >= 0) {
		while (!bpf_map_get_next_key(fd, prev, &next)) {
			key = next;
			prev = &key;
			count++;
		}
		if (!bpf_obj_get_info_by_fd(fd, &info, &ilen))
			json_object_object_add(
				o, "ct_capacity",
				json_object_new_int64(info.max_entries));
		close(fd);
	}
	json_object_object_add(o, "ct_entries", json_object_new_int64(count));
	*out = o;
	return 0;
}
