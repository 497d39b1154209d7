// SPDX-License-Identifier: Apache-2.0
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "agent/config.h"

static int parse(struct kpx_config *cfg, const char **args)
{
	char *argv[64];
	int argc = 0;

	kpx_config_defaults(cfg);
	argv[argc++] = "run";
	for (; *args; args++)
		argv[argc++] = (char *)*args;
	argv[argc] = NULL;
	return kpx_config_parse_run(cfg, argc, argv);
}

Test(config, defaults_match_design)
{
	struct kpx_config cfg;
	const char *args[] = { NULL };

	cr_assert_eq(parse(&cfg, args), 0);
	cr_expect_eq(cfg.min_sync_ms, 1000);
	cr_expect_eq(cfg.sync_ms, 30000);
	cr_expect_str_eq(cfg.healthz_addr, "0.0.0.0:10256");
	cr_expect_str_eq(cfg.metrics_addr, "127.0.0.1:10249");
	cr_expect_str_eq(cfg.bpf_root, "/sys/fs/bpf/kpx");
	cr_expect_str_eq(cfg.state_socket, "/run/kpx/kpx.sock");
	cr_expect_eq(cfg.maglev_table_size, 16381);
	cr_expect_eq(cfg.backend, KPX_BACKEND_AUTO);
	cr_expect_neq(cfg.hostname[0], '\0');
}

Test(config, every_design_flag_parses)
{
	struct kpx_config cfg;
	const char *args[] = {
		"--manifests", "/tmp/m", "--backend=nft",
		"--hostname-override", "node-a",
		"--node-ip", "198.18.0.11,fd00:18::11",
		"--cluster-cidr", "198.19.0.0/16,fd00:19::/48",
		"--nodeport-addresses", "198.18.0.0/24",
		"--devices", "eth0,eth1", "--nodeport-accel", "xdp",
		"--nodeport-mode", "dsr", "--lb-algorithm", "maglev",
		"--masquerade-all", "--min-sync-period", "100ms",
		"--sync-period", "1m30s", "--healthz-bind-address", ":0",
		"--metrics-bind-address", "", "--cgroup-path", "/cg",
		"--bpf-root", "/sys/fs/bpf/x", "--state-socket", "/run/x.sock",
		"-v", "4", NULL
	};

	cr_assert_eq(parse(&cfg, args), 0);
	cr_expect_str_eq(cfg.manifests, "/tmp/m");
	cr_expect_eq(cfg.backend, KPX_BACKEND_NFT);
	cr_expect_str_eq(cfg.hostname, "node-a");
	cr_expect_eq(cfg.n_node_ips, 2);
	cr_expect_eq(cfg.node_ips[1].family, AF_INET6);
	cr_expect_eq(cfg.n_cluster_cidrs, 2);
	cr_expect_eq(cfg.cluster_cidrs[0].prefix, 16);
	cr_expect_eq(cfg.n_nodeport_cidrs, 1);
	cr_expect_eq(cfg.n_devices, 2);
	cr_expect_str_eq(cfg.devices[1], "eth1");
	cr_expect_eq(cfg.nodeport_accel, KPX_ACCEL_XDP);
	cr_expect_eq(cfg.nodeport_mode, KPX_NP_DSR);
	cr_expect_eq(cfg.lb_algorithm, KPX_LB_MAGLEV);
	cr_expect(cfg.masquerade_all);
	cr_expect_eq(cfg.min_sync_ms, 100);
	cr_expect_eq(cfg.sync_ms, 90000);
	cr_expect_str_eq(cfg.metrics_addr, "");
	cr_expect_str_eq(cfg.cgroup_path, "/cg");
	cr_expect_eq(cfg.verbosity, 4);
}

Test(config, proxy_mode_alias)
{
	struct kpx_config cfg;
	const char *args[] = { "--proxy-mode", "nftables", NULL };

	cr_assert_eq(parse(&cfg, args), 0);
	cr_expect_eq(cfg.backend, KPX_BACKEND_NFT);
}

Test(config, bad_values_are_rejected)
{
	static const char *bad[][3] = {
		{ "--backend", "iptables" },
		{ "--node-ip", "300.1.1.1" },
		{ "--node-ip", "198.18.0.1,198.18.0.2" },
		{ "--cluster-cidr", "198.19.0.0/40" },
		{ "--min-sync-period", "fast" },
		{ "--sync-period", "0" },
		{ "--maglev-table-size", "16384" },
		{ "--nodeport-accel", "dpdk" },
		{ "--snat-port-range", "5000-100" },
		{ "--no-such-flag", "x" },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct kpx_config cfg;
		const char *args[] = { bad[i][0], bad[i][1], NULL };

		cr_expect_lt(parse(&cfg, args), 0, "%s %s accepted", bad[i][0],
			     bad[i][1]);
	}
}

Test(config, durations)
{
	uint64_t ms;

	cr_assert_eq(kpx_duration_parse("1h30m", &ms), 0);
	cr_expect_eq(ms, 5400000);
	cr_assert_eq(kpx_duration_parse("250ms", &ms), 0);
	cr_expect_eq(ms, 250);
	cr_assert_eq(kpx_duration_parse("1.5s", &ms), 0);
	cr_expect_eq(ms, 1500);
	cr_expect_lt(kpx_duration_parse("10", &ms), 0);
	cr_expect_lt(kpx_duration_parse("", &ms), 0);
	cr_expect_lt(kpx_duration_parse("5x", &ms), 0);
}
