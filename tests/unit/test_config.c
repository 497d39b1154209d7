// SPDX-License-Identifier: Apache-2.0
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
#include <stdio.h>
#include <string.h>

#include "agent/agent.h"
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
	cr_expect_not(cfg.min_sync_set);
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
	cr_expect(cfg.min_sync_set);
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
		{ "--masquerade-all=yes", NULL },
		{ "--sync-period", "nans" },
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

/*
 * kube-proxy v1.37's flags (cmd/kube-proxy/app/options.go AddFlags,
 * component-base logs/api/v1 AddFlags, verflag), written out here
 * independently of kpx's table, each with a value kube-proxy accepts.
 * Booleans have NULL: they are given bare.
 */
static const char *const kube_proxy_flags[][2] = {
	{ "config", "/dev/null" }, /* replaced below: a real file */
	{ "write-config-to", "" },
	{ "cleanup", NULL },
	{ "feature-gates", "AllAlpha=false,NFTablesProxyMode=true" },
	{ "kubeconfig", "/tmp/kubeconfig" },
	{ "master", "https://198.18.0.1:6443" },
	{ "kube-api-content-type", "application/vnd.kubernetes.protobuf" },
	{ "kube-api-burst", "10" },
	{ "kube-api-qps", "5.5" },
	{ "hostname-override", "node-a" },
	{ "bind-address", "0.0.0.0" },
	{ "healthz-bind-address", "0.0.0.0:10256" },
	{ "metrics-bind-address", "127.0.0.1:10249" },
	{ "bind-address-hard-fail", NULL },
	{ "profiling", NULL },
	{ "show-hidden-metrics-for-version", "1.36" },
	{ "init-only", NULL },
	{ "proxy-mode", "iptables" },
	{ "iptables-masquerade-bit", "14" },
	{ "masquerade-all", NULL },
	{ "iptables-localhost-nodeports", NULL },
	{ "iptables-sync-period", "30s" },
	{ "iptables-min-sync-period", "1s" },
	{ "ipvs-sync-period", "30s" },
	{ "ipvs-min-sync-period", "0s" },
	{ "ipvs-scheduler", "rr" },
	{ "ipvs-exclude-cidrs", "10.0.0.0/8" },
	{ "ipvs-strict-arp", NULL },
	{ "ipvs-tcp-timeout", "0s" },
	{ "ipvs-tcpfin-timeout", "0s" },
	{ "ipvs-udp-timeout", "0s" },
	{ "detect-local-mode", "ClusterCIDR" },
	{ "pod-bridge-interface", "cbr0" },
	{ "pod-interface-name-prefix", "veth" },
	{ "cluster-cidr", "10.244.0.0/16" },
	{ "nodeport-addresses", "primary" },
	{ "oom-score-adj", "-999" },
	{ "conntrack-max-per-core", "32768" },
	{ "conntrack-min", "131072" },
	{ "conntrack-tcp-timeout-established", "24h0m0s" },
	{ "conntrack-tcp-timeout-close-wait", "1h0m0s" },
	{ "conntrack-tcp-be-liberal", NULL },
	{ "conntrack-udp-timeout", "30s" },
	{ "conntrack-udp-timeout-stream", "2m0s" },
	{ "config-sync-period", "15m0s" },
	{ "healthz-port", "10256" },
	{ "metrics-port", "10249" },
	{ "logging-format", "text" },
	{ "log-flush-frequency", "5s" },
	{ "v", "2" },
	{ "vmodule", "proxier*=4" },
	{ "log-text-split-stream", NULL },
	{ "log-text-info-buffer-size", "0" },
	{ "log-json-split-stream", NULL },
	{ "log-json-info-buffer-size", "0" },
	{ "version", NULL },
	{ "help", NULL },
};

static const char *write_min_config(void)
{
	static char path[] = "/tmp/kpx-test-cfg-XXXXXX";
	FILE *f;
	int fd;

	if (path[sizeof(path) - 2] != 'X')
		return path;
	fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	f = fdopen(fd, "w");
	fputs("apiVersion: kubeproxy.config.k8s.io/v1alpha1\n"
	      "kind: KubeProxyConfiguration\n", f);
	fclose(f);
	return path;
}

Test(config, every_kube_proxy_flag_is_in_the_table)
{
	for (size_t i = 0; i < sizeof(kube_proxy_flags) / sizeof(kube_proxy_flags[0]); i++) {
		const struct kpx_flag *f = kpx_flag_lookup(kube_proxy_flags[i][0]);

		cr_expect_not_null(f, "--%s missing", kube_proxy_flags[i][0]);
		if (f)
			cr_expect_eq(f->type == KPX_FT_BOOL ||
					     f->type == KPX_FT_VERSION,
				     kube_proxy_flags[i][1] == NULL,
				     "--%s: boolean or not as in kube-proxy",
				     kube_proxy_flags[i][0]);
	}
}

/* Each flag alone, in both forms (--f v and --f=v; booleans bare and
 * with =false), parses; help and version stop with 1, --config needs a
 * real file. */
Test(config, every_kube_proxy_flag_is_accepted_in_both_forms)
{
	char eq[256];

	for (size_t i = 0; i < sizeof(kube_proxy_flags) / sizeof(kube_proxy_flags[0]); i++) {
		const char *name = kube_proxy_flags[i][0];
		const char *val = kube_proxy_flags[i][1];
		bool stops = !strcmp(name, "help") || !strcmp(name, "version");
		struct kpx_config cfg;
		char flag[128];

		/* a file that exists: a missing kubeconfig is an error */
		if (!strcmp(name, "config") || !strcmp(name, "kubeconfig"))
			val = write_min_config();
		snprintf(flag, sizeof(flag), "%s%s", name[1] ? "--" : "-", name);
		if (val) {
			const char *a1[] = { flag, val, NULL };

			snprintf(eq, sizeof(eq), "%s=%s", flag, val);
			const char *a2[] = { eq, NULL };

			cr_expect_eq(parse(&cfg, a1), 0, "%s %s", flag, val);
			cr_expect_eq(parse(&cfg, a2), 0, "%s", eq);
		} else {
			const char *a1[] = { flag, NULL };

			snprintf(eq, sizeof(eq), "%s=false", flag);
			const char *a2[] = { eq, NULL };

			cr_expect_eq(parse(&cfg, a1), stops ? 1 : 0, "%s", flag);
			cr_expect_eq(parse(&cfg, a2), 0, "%s", eq);
		}
	}
}

Test(config, booleans_do_not_swallow_the_next_argument)
{
	struct kpx_config cfg;
	const char *args[] = { "--cleanup", "--masquerade-all",
			       "--iptables-localhost-nodeports",
			       "--hostname-override", "n9", NULL };

	cr_assert_eq(parse(&cfg, args), 0);
	cr_expect(cfg.cleanup_and_exit);
	cr_expect(cfg.masquerade_all);
	cr_expect_str_eq(cfg.hostname, "n9");
	/* a bare boolean followed by a word: the word is an argument */
	const char *args2[] = { "--masquerade-all", "false", NULL };

	cr_expect_lt(parse(&cfg, args2), 0);
}

Test(config, booleans_parse_as_go_parsebool)
{
	static const char *const yes[] = { "1", "t", "T", "TRUE", "true", "True" };
	static const char *const no[] = { "0", "f", "F", "FALSE", "false", "False" };
	static const char *const bad[] = { "yes", "on", "TrUe", "", "2", "tru" };
	char arg[64];

	for (size_t i = 0; i < 6; i++) {
		struct kpx_config cfg;
		const char *a[] = { arg, NULL };

		snprintf(arg, sizeof(arg), "--masquerade-all=%s", yes[i]);
		cr_expect_eq(parse(&cfg, a), 0, "%s", arg);
		cr_expect(cfg.masquerade_all, "%s", arg);
		snprintf(arg, sizeof(arg), "--masquerade-all=%s", no[i]);
		cr_expect_eq(parse(&cfg, a), 0, "%s", arg);
		cr_expect_not(cfg.masquerade_all, "%s", arg);
		snprintf(arg, sizeof(arg), "--cleanup=%s", bad[i]);
		cr_expect_lt(parse(&cfg, a), 0, "%s accepted", arg);
	}
}

Test(config, kube_proxy_flags_kpx_acts_on_take_effect)
{
	struct kpx_config cfg;
	const char *args[] = {
		"--iptables-sync-period", "45s", "--iptables-min-sync-period=250ms",
		"--conntrack-udp-timeout", "1m", "--conntrack-tcp-timeout-established=2h",
		"--conntrack-tcp-timeout-close-wait", "0s", /* 0: left as is */
		"--healthz-port", "0", "--metrics-port=9999",
		"--bind-address", "198.18.0.5", "--init-only",
		"--write-config-to", "/tmp/x.yaml", NULL
	};

	cr_assert_eq(parse(&cfg, args), 0);
	cr_expect_eq(cfg.sync_ms, 45000);
	cr_expect_eq(cfg.min_sync_ms, 250);
	cr_expect_eq(cfg.ct_udp_timeout, 60);
	cr_expect_eq(cfg.ct_tcp_timeout, 7200);
	cr_expect_eq(cfg.ct_tcp_close_timeout, 10);
	cr_expect_str_eq(cfg.healthz_addr, "");
	cr_expect_str_eq(cfg.metrics_addr, "127.0.0.1:9999");
	cr_expect_eq(cfg.n_node_ips, 1);
	cr_expect(cfg.init_only);
	cr_expect_str_eq(cfg.write_config_to, "/tmp/x.yaml");
	const char *a2[] = { "--proxy-mode", "ipvs", NULL };

	cr_expect_eq(parse(&cfg, a2), 0);
	cr_expect_eq(cfg.backend, KPX_BACKEND_AUTO);
}

Test(config, ignored_flag_warned_once_and_bad_values_still_rejected,
     .init = cr_redirect_stderr)
{
	struct kpx_config cfg;
	const char *args[] = { "--feature-gates", "A=true", "--feature-gates=B=false",
			       "--oom-score-adj", "-999", NULL };
	char buf[4096];
	size_t n;
	FILE *err;
	int count = 0;

	cr_assert_eq(parse(&cfg, args), 0);
	fflush(stderr);
	err = cr_get_redirected_stderr();
	n = fread(buf, 1, sizeof(buf) - 1, err);
	buf[n] = '\0';
	for (char *p = buf; (p = strstr(p, "--feature-gates is kube-proxy's")); p++)
		count++;
	cr_expect_eq(count, 1, "warnings: %s", buf);
	cr_expect(strstr(buf, "--oom-score-adj"), "no warning for --oom-score-adj");
	/* ignored, but the value must still be one kube-proxy takes */
	const char *b1[] = { "--oom-score-adj", "high", NULL };
	const char *b2[] = { "--conntrack-udp-timeout-stream", "nans", NULL };
	const char *b3[] = { "--kube-api-qps", "nan", NULL };

	cr_expect_lt(parse(&cfg, b1), 0);
	cr_expect_lt(parse(&cfg, b2), 0);
	cr_expect_lt(parse(&cfg, b3), 0);
}

Test(config, sync_period_rejects_nan_inf_huge_negative_and_zero)
{
	static const char *const bad[] = {
		"nans", "nan", "NaN", "inf", "+inf", "-1s", "1e3s", "0x10s",
		"9999999999999999999h", "106751991167301d", "2562048h", "0",
		"0s", "5", "s", ".s", "1m30", "1.5", " 1s", "1s ",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct kpx_config cfg;
		const char *a[] = { "--sync-period", bad[i], NULL };

		cr_expect_lt(parse(&cfg, a), 0, "--sync-period '%s' accepted",
			     bad[i]);
	}
}

Test(config, durations_follow_go_parseduration)
{
	static const struct {
		const char *s;
		int64_t ns;
	} ok[] = {
		{ "0", 0 },
		{ "1m30s", 90000000000LL },
		{ "250ms", 250000000LL },
		{ "1.5h", 5400000000000LL },
		{ ".5s", 500000000LL },
		{ "1.s", 1000000000LL },
		{ "+5s", 5000000000LL },
		{ "-1.5m", -90000000000LL },
		{ "1h0m0s", 3600000000000LL },
		{ "300us", 300000LL },
		{ "2\xc2\xb5s", 2000LL },
		{ "7ns", 7LL },
		{ "2562047h", 2562047LL * 3600000000000LL },
		{ "9223372036854775807ns", INT64_MAX },
		{ "-9223372036854775808ns", INT64_MIN },
		{ "0.000000001s", 1LL },
		{ "1.00000000000000000000000001s", 1000000000LL },
	};
	static const char *const bad[] = {
		"", "-", "+", ".", ".s", "s", "1", "10", "1x", "1.2.3s", "1 s",
		"nan", "nans", "inf", "infs", "1e9ns", "9223372036854775808ns",
		"2562048h", "99999999999999999999h", "-9223372036854775809ns",
	};
	uint64_t ms;
	int64_t ns;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		cr_expect_eq(kpx_duration_parse_ns(ok[i].s, &ns), 0, "%s",
			     ok[i].s);
		cr_expect_eq(ns, ok[i].ns, "%s: %lld", ok[i].s, (long long)ns);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_lt(kpx_duration_parse_ns(bad[i], &ns), 0,
			     "'%s' accepted", bad[i]);
	cr_expect_eq(kpx_duration_parse_ns("2562048h", &ns), -ERANGE);
	cr_expect_lt(kpx_duration_parse("-1s", &ms), 0);
	cr_expect_eq(kpx_duration_parse("1.5s", &ms), 0);
	cr_expect_eq(ms, 1500);
}

Test(config, durations_print_as_go_does)
{
	static const struct {
		uint64_t ms;
		const char *s;
	} t[] = {
		{ 0, "0s" },	    { 250, "250ms" },	 { 1000, "1s" },
		{ 1500, "1.5s" },   { 90000, "1m30s" },	 { 3600000, "1h0m0s" },
		{ 86400000, "24h0m0s" }, { 1125, "1.125s" },
	};
	char buf[64];

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		kpx_duration_format(t[i].ms, buf, sizeof(buf));
		cr_expect_str_eq(buf, t[i].s);
	}
}

Test(config, effective_configuration_renders_as_configz)
{
	struct kpx_config cfg;
	const char *args[] = { "--sync-period", "1m30s", "--cluster-cidr",
			       "198.19.0.0/16", NULL };
	char *s;

	cr_assert_eq(parse(&cfg, args), 0);
	s = kpx_config_render(&cfg, KPX_BACKEND_NFT);
	cr_assert_not_null(s);
	cr_expect(strstr(s, "\"kubeproxy.config.k8s.io\""), "%s", s);
	cr_expect(strstr(s, "\"syncPeriod\":\"1m30s\"") ||
			  strstr(s, "\"syncPeriod\": \"1m30s\""),
		  "%s", s);
	cr_expect(strstr(s, "198.19.0.0/16"), "%s", s);
	cr_expect(strstr(s, "\"nftables\""), "%s", s);
	free(s);
}

Test(config, missing_kubeconfig_is_an_error_naming_it, .init = cr_redirect_stderr)
{
	struct kpx_config cfg;
	const char *args[] = { "--kubeconfig", "/nonexistent/kpx/kc.conf", NULL };
	const char *with_manifests[] = { "--kubeconfig", "/nonexistent/kpx/kc.conf",
					 "--manifests", "/tmp", NULL };
	char buf[2048];
	size_t n;

	cr_expect_lt(parse(&cfg, args), 0);
	fflush(stderr);
	n = fread(buf, 1, sizeof(buf) - 1, cr_get_redirected_stderr());
	buf[n] = '\0';
	cr_expect(strstr(buf, "/nonexistent/kpx/kc.conf"), "%s", buf);
	/* the manifests source needs no API server */
	cr_expect_eq(parse(&cfg, with_manifests), 0);
}

Test(config, api_watch_stall_timeout)
{
	struct kpx_config cfg;
	const char *none[] = { NULL };
	const char *set[] = { "--api-watch-stall-timeout", "3m", NULL };
	const char *tiny[] = { "--api-watch-stall-timeout=500ms", NULL };

	cr_assert_eq(parse(&cfg, none), 0);
	cr_expect_eq(cfg.watch_stall_ms, 120000, "documented default 2m");
	cr_assert_eq(parse(&cfg, set), 0);
	cr_expect_eq(cfg.watch_stall_ms, 180000);
	cr_expect_neq(parse(&cfg, tiny), 0, "below 1s is refused");
}

/* The one table: every flag `kpx run` takes is taken by `kpx cleanup`
 * and `kpx status`/`kpx services` too (a value of the right type each;
 * --help last, so that every flag before it is read, and nothing runs). */
int kpx_cmd_cleanup(int argc, char **argv);
int kpx_cmd_status(int argc, char **argv);

Test(config, cleanup_and_inspect_accept_every_run_flag, .init = cr_redirect_stdout)
{
	static char *argv[2 * 256 + 3];
	int argc = 1;

	for (size_t i = 0; i < kpx_n_flags; i++) {
		const struct kpx_flag *f = &kpx_flags[i];
		static char names[256][80];

		if (!strcmp(f->name, "help") || !strcmp(f->name, "version"))
			continue;
		snprintf(names[i], sizeof(names[i]), "--%s", f->name);
		argv[argc++] = names[i];
		switch (f->type) {
		case KPX_FT_BOOL:
		case KPX_FT_VERSION:
			break;
		case KPX_FT_INT:
		case KPX_FT_FLOAT:
			argv[argc++] = "1";
			break;
		case KPX_FT_DURATION:
			argv[argc++] = "1s";
			break;
		default:
			/* --config is read in the first pass: a real file */
			argv[argc++] = !strcmp(f->name, "config") ?
					       (char *)write_min_config() : "x";
		}
	}
	argv[argc++] = "--help";
	argv[argc] = NULL;
	argv[0] = "cleanup";
	cr_expect_eq(kpx_cmd_cleanup(argc, argv), 0);
	argv[0] = "status";
	cr_expect_eq(kpx_cmd_status(argc, argv), 0);
}

Test(config, bpf_new_flow_rate_sets_the_flood_guard)
{
	struct kpx_config c;
	char *argv[] = { "run", "--bpf-new-flow-rate", "20000", NULL };
	char *bad[] = { "run", "--bpf-new-flow-rate=-1", NULL };

	kpx_config_defaults(&c);
	cr_assert_eq(c.bpf_new_flow_rate, 0, "off by default");
	cr_assert_eq(kpx_config_parse_run(&c, 3, argv), 0);
	cr_assert_eq(c.bpf_new_flow_rate, 20000);
	kpx_config_defaults(&c);
	cr_assert_neq(kpx_config_parse_run(&c, 2, bad), 0);
}

/* Without --min-sync-period, a change waits behind a cheap incremental
 * sync for a few times that sync's cost, not for a fixed second; an
 * expensive sync still holds the next one back by at most the 1 s
 * default. A period the user gives is kept as given (kube-proxy's
 * meaning), however cheap the syncs. */
Test(config, sync_period_follows_the_sync_cost_unless_given)
{
	struct kpx_config cfg;
	const char *none[] = { NULL };
	const char *given[] = { "--min-sync-period", "1s", NULL };
	const char *short_one[] = { "--min-sync-period", "100ms", NULL };

	cr_assert_eq(parse(&cfg, none), 0);
	cr_expect_eq(kpx_sync_period_ms(&cfg, 0.002), 10);
	cr_expect_eq(kpx_sync_period_ms(&cfg, 0.0001), 0);
	cr_expect_eq(kpx_sync_period_ms(&cfg, 0.1), 500);
	cr_expect_eq(kpx_sync_period_ms(&cfg, 0.3), 1000);
	cr_expect_eq(kpx_sync_period_ms(&cfg, 5.0), 1000);

	cr_assert_eq(parse(&cfg, given), 0);
	cr_expect_eq(kpx_sync_period_ms(&cfg, 0.002), 1000);
	cr_assert_eq(parse(&cfg, short_one), 0);
	cr_expect_eq(kpx_sync_period_ms(&cfg, 0.002), 100);
	cr_expect_eq(kpx_sync_period_ms(&cfg, 5.0), 100);
}
