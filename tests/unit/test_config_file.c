// SPDX-License-Identifier: Apache-2.0
/*
 * --config FILE: a KubeProxyConfiguration as kube-proxy's ConfigMap holds
 * it, read into struct kpx_config (agent/config_file.c).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/config.h"
#include "common/addr.h"

static char tmpdir[] = "/tmp/kpx-cfgtest-XXXXXX";
static int n_files;

static void setup(void)
{
	cr_assert_not_null(mkdtemp(tmpdir));
}

static void teardown(void)
{
	char cmd[128];
	int i;

	for (i = 0; i < n_files; i++) {
		snprintf(cmd, sizeof(cmd), "%s/c%d", tmpdir, i);
		unlink(cmd);
	}
	snprintf(cmd, sizeof(cmd), "%s/stderr", tmpdir);
	unlink(cmd);
	rmdir(tmpdir);
}

static const char *write_cfg(const char *text)
{
	static char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/c%d", tmpdir, n_files++);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

/*
 * Loads text into a defaulted config with stderr captured into log (the
 * warnings a user would read). Returns kpx_config_load_file's result.
 */
static int load(const char *text, struct kpx_config *cfg, char *log,
		size_t loglen)
{
	char path[160];
	int saved, fd, ret;
	ssize_t n;

	kpx_config_defaults(cfg);
	snprintf(path, sizeof(path), "%s/stderr", tmpdir);
	fflush(stderr);
	saved = dup(2);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(fd, 0);
	dup2(fd, 2);
	ret = kpx_config_load_file(cfg, write_cfg(text));
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	n = pread(fd, log, loglen - 1, 0);
	log[n > 0 ? n : 0] = '\0';
	close(fd);
	return ret;
}

static const char *cidr_str(const struct kpx_cidr *c, char *buf)
{
	char a[KPX_ADDR_STRLEN];

	sprintf(buf, "%s/%u", kpx_addr_str(&c->addr, a), c->prefix);
	return buf;
}

TestSuite(config_file, .init = setup, .fini = teardown);

/* The shape kubeadm writes into kube-system/kube-proxy data[config.conf]. */
static const char kubeadm_cfg[] =
	"apiVersion: kubeproxy.config.k8s.io/v1alpha1\n"
	"bindAddress: 0.0.0.0\n"
	"bindAddressHardFail: false\n"
	"clientConnection:\n"
	"  acceptContentTypes: \"\"\n"
	"  burst: 0\n"
	"  contentType: \"\"\n"
	"  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf\n"
	"  qps: 0\n"
	"clusterCIDR: 198.18.0.0/16,fd00:10::/56\n"
	"configSyncPeriod: 0s\n"
	"conntrack:\n"
	"  maxPerCore: null\n"
	"  min: null\n"
	"  tcpCloseWaitTimeout: 1m0s\n"
	"  tcpEstablishedTimeout: 2h0m0s\n"
	"  udpTimeout: 45s\n"
	"detectLocalMode: \"\"\n"
	"enableProfiling: false\n"
	"healthzBindAddress: 0.0.0.0:10266\n"
	"hostnameOverride: \"\"\n"
	"iptables:\n"
	"  localhostNodePorts: null\n"
	"  masqueradeAll: false\n"
	"  masqueradeBit: null\n"
	"  minSyncPeriod: 0s\n"
	"  syncPeriod: 0s\n"
	"ipvs:\n"
	"  excludeCIDRs: null\n"
	"  scheduler: \"\"\n"
	"  strictARP: false\n"
	"kind: KubeProxyConfiguration\n"
	"logging:\n"
	"  flushFrequency: 0\n"
	"  options:\n"
	"    json:\n"
	"      infoBufferSize: \"0\"\n"
	"  verbosity: 0\n"
	"metricsBindAddress: 127.0.0.1:10259\n"
	"mode: nftables\n"
	"nftables:\n"
	"  masqueradeAll: false\n"
	"  masqueradeBit: null\n"
	"  minSyncPeriod: 2s\n"
	"  syncPeriod: 1m\n"
	"nodePortAddresses:\n"
	"- 198.19.0.0/24\n"
	"- fd00:19::/64\n"
	"oomScoreAdj: null\n"
	"portRange: \"\"\n"
	"showHiddenMetricsForVersion: \"\"\n"
	"winkernel:\n"
	"  enableDSR: false\n";

Test(config_file, kubeadm_configmap_maps_every_field)
{
	struct kpx_config cfg;
	char log[8192], buf[64];

	cr_assert_eq(load(kubeadm_cfg, &cfg, log, sizeof(log)), 0, "%s", log);
	cr_expect_eq(cfg.backend, KPX_BACKEND_NFT);
	cr_expect_str_eq(cfg.kubeconfig, "/var/lib/kube-proxy/kubeconfig.conf");
	cr_assert_eq(cfg.n_cluster_cidrs, 2);
	cr_expect_str_eq(cidr_str(&cfg.cluster_cidrs[0], buf), "198.18.0.0/16");
	cr_expect_str_eq(cidr_str(&cfg.cluster_cidrs[1], buf), "fd00:10::/56");
	cr_assert_eq(cfg.n_nodeport_cidrs, 2);
	cr_expect_str_eq(cidr_str(&cfg.nodeport_cidrs[0], buf), "198.19.0.0/24");
	cr_expect_str_eq(cidr_str(&cfg.nodeport_cidrs[1], buf), "fd00:19::/64");
	cr_expect_str_eq(cfg.healthz_addr, "0.0.0.0:10266");
	cr_expect_str_eq(cfg.metrics_addr, "127.0.0.1:10259");
	/* mode nftables: the nftables section's periods, not iptables' 0s */
	cr_expect_eq(cfg.sync_ms, 60000);
	cr_expect_eq(cfg.min_sync_ms, 2000);
	cr_expect(cfg.min_sync_set);
	cr_expect_eq(cfg.ct_tcp_timeout, 7200);
	cr_expect_eq(cfg.ct_tcp_close_timeout, 60);
	cr_expect_eq(cfg.ct_udp_timeout, 45);
	cr_expect_not(cfg.masquerade_all);
	/* empty hostnameOverride keeps the default (the node's hostname) */
	cr_expect_str_eq(cfg.hostname, "");
	/* every field above is kube-proxy's: nothing to warn about */
	cr_expect_null(strstr(log, "unknown field"), "%s", log);
}

Test(config_file, configmap_manifest_is_unwrapped)
{
	struct kpx_config cfg;
	char log[4096];

	cr_assert_eq(load("apiVersion: v1\n"
			  "kind: ConfigMap\n"
			  "metadata: {name: kube-proxy, namespace: kube-system}\n"
			  "data:\n"
			  "  config.conf: |\n"
			  "    apiVersion: kubeproxy.config.k8s.io/v1alpha1\n"
			  "    kind: KubeProxyConfiguration\n"
			  "    hostnameOverride: node-a\n"
			  "    mode: ebpf\n",
			  &cfg, log, sizeof(log)),
		     0, "%s", log);
	cr_expect_str_eq(cfg.hostname, "node-a");
	cr_expect_eq(cfg.backend, KPX_BACKEND_BPF);
}

Test(config_file, json_and_top_level_sync_periods)
{
	struct kpx_config cfg;
	char log[4096];

	cr_assert_eq(load("{\"apiVersion\":\"kubeproxy.config.k8s.io/v1alpha1\","
			  "\"kind\":\"KubeProxyConfiguration\","
			  "\"syncPeriod\":\"1h30m\",\"minSyncPeriod\":\"250ms\","
			  "\"iptables\":{\"syncPeriod\":\"10s\","
			  "\"minSyncPeriod\":\"5s\",\"masqueradeAll\":true},"
			  "\"nodePortAddresses\":[\"primary\"]}",
			  &cfg, log, sizeof(log)),
		     0, "%s", log);
	/* top level (newer kube-proxy) wins over the mode's section */
	cr_expect_eq(cfg.sync_ms, 5400000);
	cr_expect_eq(cfg.min_sync_ms, 250);
	cr_expect(cfg.masquerade_all);
	cr_expect_eq(cfg.n_nodeport_cidrs, 0); /* primary */
	cr_expect_eq(cfg.backend, KPX_BACKEND_AUTO);
}

Test(config_file, iptables_section_used_without_nftables_mode)
{
	struct kpx_config cfg;
	char log[4096];

	cr_assert_eq(load("apiVersion: kubeproxy.config.k8s.io/v1alpha1\n"
			  "kind: KubeProxyConfiguration\n"
			  "mode: iptables\n"
			  "iptables: {syncPeriod: 45s, minSyncPeriod: 3s}\n"
			  "nftables: {syncPeriod: 99s}\n",
			  &cfg, log, sizeof(log)),
		     0, "%s", log);
	cr_expect_eq(cfg.sync_ms, 45000);
	cr_expect_eq(cfg.min_sync_ms, 3000);
	/* iptables is kube-proxy's, not kpx's: warned, default backend */
	cr_expect_eq(cfg.backend, KPX_BACKEND_AUTO);
	cr_expect_not_null(strstr(log, "mode \"iptables\""), "%s", log);
}

Test(config_file, kpx_section)
{
	struct kpx_config cfg;
	char log[4096];

	cr_assert_eq(load("apiVersion: kubeproxy.config.k8s.io/v1alpha1\n"
			  "kind: KubeProxyConfiguration\n"
			  "mode: nftables\n"
			  "kpx:\n"
			  "  backend: bpf\n"
			  "  devices: [eth0, eth1]\n"
			  "  nodePortAccel: xdp\n"
			  "  nodePortMode: dsr\n"
			  "  lbAlgorithm: maglev\n"
			  "  cgroupPath: /sys/fs/cgroup/unified/kpx\n"
			  "  bpfRoot: /sys/fs/bpf/kpx-a\n"
			  "  stateSocket: /run/kpx/a.sock\n",
			  &cfg, log, sizeof(log)),
		     0, "%s", log);
	cr_expect_eq(cfg.backend, KPX_BACKEND_BPF); /* kpx.backend wins */
	cr_assert_eq(cfg.n_devices, 2);
	cr_expect_str_eq(cfg.devices[0], "eth0");
	cr_expect_str_eq(cfg.devices[1], "eth1");
	cr_expect_eq(cfg.nodeport_accel, KPX_ACCEL_XDP);
	cr_expect_eq(cfg.nodeport_mode, KPX_NP_DSR);
	cr_expect_eq(cfg.lb_algorithm, KPX_LB_MAGLEV);
	cr_expect_str_eq(cfg.cgroup_path, "/sys/fs/cgroup/unified/kpx");
	cr_expect_str_eq(cfg.bpf_root, "/sys/fs/bpf/kpx-a");
	cr_expect_str_eq(cfg.state_socket, "/run/kpx/a.sock");
}

Test(config_file, unknown_fields_warn_by_name_and_load)
{
	struct kpx_config cfg;
	char log[4096];

	cr_assert_eq(load("apiVersion: kubeproxy.config.k8s.io/v1alpha1\n"
			  "kind: KubeProxyConfiguration\n"
			  "hostnameOverride: node-b\n"
			  "frobnicate: 3\n"
			  "conntrack: {tcpTimeoutTypo: 1s}\n"
			  "kpx: {backnd: nft}\n",
			  &cfg, log, sizeof(log)),
		     0, "%s", log);
	cr_expect_str_eq(cfg.hostname, "node-b");
	cr_expect_not_null(strstr(log, "unknown field frobnicate"), "%s", log);
	cr_expect_not_null(strstr(log, "unknown field conntrack.tcpTimeoutTypo"),
			   "%s", log);
	cr_expect_not_null(strstr(log, "unknown field kpx.backnd"), "%s", log);
	cr_expect_eq(cfg.backend, KPX_BACKEND_AUTO);
}

Test(config_file, wrong_kind_or_api_version_rejected)
{
	struct kpx_config cfg;
	char log[4096];

	cr_expect_lt(load("apiVersion: kubeproxy.config.k8s.io/v1beta9\n"
			  "kind: KubeProxyConfiguration\n",
			  &cfg, log, sizeof(log)),
		     0);
	cr_expect_not_null(strstr(log, "apiVersion"), "%s", log);
	cr_expect_lt(load("apiVersion: kubeproxy.config.k8s.io/v1alpha1\n"
			  "kind: KubeletConfiguration\n",
			  &cfg, log, sizeof(log)),
		     0);
	cr_expect_not_null(strstr(log, "kind"), "%s", log);
	cr_expect_lt(load("mode: nftables\n", &cfg, log, sizeof(log)), 0);
}

Test(config_file, bad_yaml_and_bad_values_rejected)
{
	static const char *const bad[] = {
		"apiVersion: kubeproxy.config.k8s.io/v1alpha1\n"
		"kind: [unclosed\n",
		"{\"apiVersion\": \"kubeproxy.config.k8s.io/v1alpha1\",\n",
		"apiVersion: kubeproxy.config.k8s.io/v1alpha1\n"
		"kind: KubeProxyConfiguration\n"
		"nftables: {syncPeriod: 10 parsecs}\n",
		"apiVersion: kubeproxy.config.k8s.io/v1alpha1\n"
		"kind: KubeProxyConfiguration\n"
		"clusterCIDR: 198.18.0.0/33\n",
		"apiVersion: kubeproxy.config.k8s.io/v1alpha1\n"
		"kind: KubeProxyConfiguration\n"
		"nodePortAddresses: [primary, 198.18.0.0/24]\n",
		"apiVersion: kubeproxy.config.k8s.io/v1alpha1\n"
		"kind: KubeProxyConfiguration\n"
		"mode: userspace-turbo\n",
		"apiVersion: kubeproxy.config.k8s.io/v1alpha1\n"
		"kind: KubeProxyConfiguration\n"
		"iptables: [1, 2]\n",
		"apiVersion: kubeproxy.config.k8s.io/v1alpha1\n"
		"kind: KubeProxyConfiguration\n"
		"kpx: {lbAlgorithm: roundrobin}\n",
		"apiVersion: kubeproxy.config.k8s.io/v1alpha1\n"
		"kind: KubeProxyConfiguration\n"
		"conntrack: {udpTimeout: -5s}\n",
	};
	struct kpx_config cfg;
	char log[4096];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_expect_lt(load(bad[i], &cfg, log, sizeof(log)), 0,
			     "case %zu accepted:\n%s", i, bad[i]);
		/* the user is told which file */
		cr_expect_not_null(strstr(log, tmpdir), "case %zu: %s", i, log);
	}
}

Test(config_file, missing_file_is_an_error)
{
	struct kpx_config cfg;

	kpx_config_defaults(&cfg);
	cr_expect_eq(kpx_config_load_file(&cfg, "/nonexistent/kpx.yaml"),
		     -ENOENT);
}

/* kubeadm's ConfigMap, unchanged (tests/fixtures/kubeadm): every field kpx
 * reads gets kube-proxy's default, nothing is warned about, and the
 * servers the DaemonSet probes are on. */
Test(config_file, kubeadm_written_configmap_gets_kube_proxy_defaults)
{
	static const char path[] = "tests/fixtures/kubeadm/kube-proxy-configmap.yaml";
	struct kpx_config cfg;
	char log[8192], buf[64], *text;
	FILE *f = fopen(path, "r");
	long n;

	cr_assert_not_null(f, "%s (run from the repository root)", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	text = calloc(1, (size_t)n + 1);
	cr_assert_eq(fread(text, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	cr_assert_eq(load(text, &cfg, log, sizeof(log)), 0, "%s", log);
	free(text);
	cr_expect_str_eq(cfg.healthz_addr, "0.0.0.0:10256");
	cr_expect_str_eq(cfg.metrics_addr, "127.0.0.1:10249");
	cr_expect_eq(cfg.sync_ms, 30000);
	cr_expect_eq(cfg.min_sync_ms, 1000);
	/* minSyncPeriod: 0s is kube-proxy's "default": kpx's adaptive one */
	cr_expect_not(cfg.min_sync_set);
	cr_expect_eq(cfg.backend, KPX_BACKEND_AUTO);
	cr_expect_str_eq(cfg.kubeconfig, "/var/lib/kube-proxy/kubeconfig.conf");
	cr_expect(cfg.kubeconfig_from_file);
	cr_assert_eq(cfg.n_cluster_cidrs, 1);
	cr_expect_str_eq(cidr_str(&cfg.cluster_cidrs[0], buf), "10.244.0.0/16");
	cr_expect_eq(cfg.n_nodeport_cidrs, 0); /* null: primary */
	cr_expect_eq(cfg.n_node_ips, 0);       /* bindAddress 0.0.0.0 */
	cr_expect_eq(cfg.ct_tcp_timeout, 86400);
	cr_expect_eq(cfg.ct_udp_timeout, 30);
	cr_expect_neq(cfg.config_hash, 0);
	cr_expect_null(strstr(log, "unknown field"), "%s", log);
	cr_expect(log[0] != 'W' && !strstr(log, "\nW"), "warnings: %s", log);
	cr_expect(strstr(log, "mode \"\""), "no word on mode \"\": %s", log);
}

Test(config_file, empty_and_bare_bind_addresses_default_as_kube_proxy)
{
	struct kpx_config cfg;
	char log[4096];

	cr_assert_eq(load("apiVersion: kubeproxy.config.k8s.io/v1alpha1\n"
			  "kind: KubeProxyConfiguration\n"
			  "bindAddress: \"::\"\n"
			  "healthzBindAddress: \"\"\n"
			  "metricsBindAddress: \"\"\n",
			  &cfg, log, sizeof(log)),
		     0, "%s", log);
	cr_expect_str_eq(cfg.healthz_addr, "[::]:10256");
	cr_expect_str_eq(cfg.metrics_addr, "[::1]:10249");
	cr_assert_eq(load("apiVersion: kubeproxy.config.k8s.io/v1alpha1\n"
			  "kind: KubeProxyConfiguration\n"
			  "bindAddress: 198.18.0.7\n"
			  "healthzBindAddress: 198.18.0.7\n"
			  "metricsBindAddress: 0.0.0.0:9100\n",
			  &cfg, log, sizeof(log)),
		     0, "%s", log);
	cr_expect_str_eq(cfg.healthz_addr, "198.18.0.7:10256");
	cr_expect_str_eq(cfg.metrics_addr, "0.0.0.0:9100");
	cr_expect_eq(cfg.n_node_ips, 1);
	cr_expect_lt(load("apiVersion: kubeproxy.config.k8s.io/v1alpha1\n"
			  "kind: KubeProxyConfiguration\n"
			  "bindAddress: nodeip\n",
			  &cfg, log, sizeof(log)),
		     0);
}

Test(config_file, kube_proxy_modes_are_mapped_with_a_message)
{
	static const struct {
		const char *mode;
		enum kpx_backend_kind want;
		const char *says;
	} t[] = {
		{ "\"\"", KPX_BACKEND_AUTO, "kube-proxy's default" },
		{ "iptables", KPX_BACKEND_AUTO, "kube-proxy mode kpx does not have" },
		{ "ipvs", KPX_BACKEND_AUTO, "kube-proxy mode kpx does not have" },
		{ "nftables", KPX_BACKEND_NFT, "nft backend" },
	};
	char text[256], log[4096];
	struct kpx_config cfg;

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		snprintf(text, sizeof(text),
			 "apiVersion: kubeproxy.config.k8s.io/v1alpha1\n"
			 "kind: KubeProxyConfiguration\nmode: %s\n", t[i].mode);
		cr_assert_eq(load(text, &cfg, log, sizeof(log)), 0, "%s", log);
		cr_expect_eq(cfg.backend, t[i].want, "mode %s", t[i].mode);
		cr_expect(strstr(log, t[i].says), "mode %s: %s", t[i].mode, log);
	}
}
