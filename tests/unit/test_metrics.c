// SPDX-License-Identifier: Apache-2.0
/*
 * Health semantics, /healthz bodies, Prometheus rendering, the plan's
 * expected-frontends view used by `kpx services --verify`, bind address
 * parsing and the CLI table, against a fake agent (no root, no sockets).
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/agent.h"
#include "agent/serve_priv.h"
#include "cli/inspect.h"
#include "cli/table.h"
#include "k8s/objects.h"
#include "plan/plan.h"

static const struct kpx_backend_ops fake_ops = { .name = "fake" };

static void fake_agent(struct kpx_agent *a)
{
	memset(a, 0, sizeof(*a));
	a->cfg.sync_ms = 30000;
	a->ops = &fake_ops;
	a->start_wall = 1700000000.0;
	kpx_histogram_init(&a->stats.sync_duration, 0.001, 2);
	kpx_histogram_init(&a->stats.full_sync_duration, 0.001, 2);
	kpx_histogram_init(&a->stats.partial_sync_duration, 0.001, 2);
	kpx_histogram_init(&a->stats.programming_latency, 0.001, 2);
}

/*
 * kube-proxy's rule: unhealthy once a change newer than the last
 * successful sync has waited 2 x the sync period. While healthy,
 * lastUpdated is "now"; while unhealthy, the last successful sync.
 */
static const struct health_case {
	const char *what;
	uint64_t sync_ms;
	double last_sync, last_queued, now;
	bool healthy;
	double last_updated;
} health_cases[] = {
	{ "no queued change", 30000, 1000, 0, 5000, true, 5000 },
	{ "queued 59.9 s ago, period 30 s", 30000, 1000, 1001, 1001 + 59.9,
	  true, 1001 + 59.9 },
	{ "queued 60 s = 2 x 30 s period ago is late", 30000, 1000, 1001,
	  1001 + 60.0, false, 1000 },
	{ "change older than the last sync is not pending", 30000, 1000, 900,
	  5000, true, 5000 },
	{ "never synced, queued 2.5 s ago, period 1 s", 1000, 0, 100, 102.5,
	  false, 0 },
};

Test(health, sync_freshness_rule)
{
	for (size_t i = 0; i < sizeof(health_cases) / sizeof(health_cases[0]);
	     i++) {
		const struct health_case *c = &health_cases[i];
		struct kpx_agent a;
		struct kpx_health h;

		fake_agent(&a);
		a.cfg.sync_ms = c->sync_ms;
		a.stats.last_sync_wall = c->last_sync;
		a.stats.last_queued_wall = c->last_queued;
		kpx_health_eval(&a, NULL, c->now, &h);
		cr_assert_eq(h.healthy, c->healthy, "%s: healthy=%d", c->what,
			     h.healthy);
		cr_assert(h.node_eligible, "%s: unknown node is eligible",
			  c->what);
		cr_assert_float_eq(h.last_updated, c->last_updated, 1e-9,
				   "%s: lastUpdated %f", c->what,
				   h.last_updated);
	}
}

Test(health, node_deleting_or_tainted_is_not_eligible)
{
	struct kpx_agent a;
	struct kpx_node n;
	struct kpx_health h;

	fake_agent(&a);
	memset(&n, 0, sizeof(n));
	kpx_health_eval(&a, &n, 10, &h);
	cr_assert(h.node_eligible);
	n.deleting = true;
	kpx_health_eval(&a, &n, 10, &h);
	cr_assert_not(h.node_eligible);
	cr_assert(h.healthy, "livez ignores the node");
	n.deleting = false;
	n.to_be_deleted = true;
	kpx_health_eval(&a, &n, 10, &h);
	cr_assert_not(h.node_eligible);
}

Test(health, go_time_format)
{
	char buf[64];

	kpx_go_time(1700000000.5, buf, sizeof(buf));
	cr_assert_str_eq(buf, "2023-11-14 22:13:20.5 +0000 UTC");
	kpx_go_time(1700000000.0, buf, sizeof(buf));
	cr_assert_str_eq(buf, "2023-11-14 22:13:20 +0000 UTC");
	kpx_go_time(0, buf, sizeof(buf));
	cr_assert_str_eq(buf, "0001-01-01 00:00:00 +0000 UTC");
}

Test(health, bodies_are_kube_proxy_json)
{
	struct kpx_health h = { .healthy = false,
				.node_eligible = false,
				.last_updated = 1700000000.25,
				.now = 1700000100 };
	struct json_object *o, *v;
	size_t len;
	char *b = kpx_health_body(&h, true, &len);

	cr_assert_eq(len, strlen(b));
	o = json_tokener_parse(b);
	cr_assert_not_null(o, "not JSON: %s", b);
	cr_assert(json_object_object_get_ex(o, "lastUpdated", &v));
	cr_assert_str_eq(json_object_get_string(v),
			 "2023-11-14 22:13:20.25 +0000 UTC");
	cr_assert(json_object_object_get_ex(o, "currentTime", &v));
	cr_assert_str_eq(json_object_get_string(v),
			 "2023-11-14 22:15:00 +0000 UTC");
	cr_assert(json_object_object_get_ex(o, "nodeEligible", &v));
	cr_assert_not(json_object_get_boolean(v));
	json_object_put(o);
	free(b);

	b = kpx_health_body(&h, false, NULL);
	o = json_tokener_parse(b);
	cr_assert_not_null(o);
	cr_assert_not(json_object_object_get_ex(o, "nodeEligible", NULL),
		      "/livez has no nodeEligible");
	json_object_put(o);
	free(b);
}

/* ---- metrics ---- */

static char *render(struct kpx_agent *a, const char *dp_json,
		    const char *fes_json)
{
	struct json_object *dp = dp_json ? json_tokener_parse(dp_json) : NULL;
	struct json_object *fes = fes_json ? json_tokener_parse(fes_json) :
					     NULL;
	char *buf = NULL;
	size_t sz = 0;
	FILE *f = open_memstream(&buf, &sz);

	cr_assert_not_null(f);
	kpx_metrics_write(f, a, dp, fes);
	fclose(f);
	json_object_put(dp);
	json_object_put(fes);
	return buf;
}

static bool has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	const char *p = text;

	while ((p = strstr(p, line))) {
		if ((p == text || p[-1] == '\n') && (p[n] == '\n' || !p[n]))
			return true;
		p++;
	}
	return false;
}

static void assert_lines(const char *text, const char *const *want, size_t n)
{
	for (size_t i = 0; i < n; i++)
		cr_assert(has_line(text, want[i]), "no line \"%s\" in:\n%s",
			  want[i], text);
}

/* ASSERT_LINES(text, "line", ...): each is a whole line of text. */
#define ASSERT_LINES(text, ...)                                               \
	do {                                                                  \
		static const char *const want_[] = { __VA_ARGS__ };           \
		assert_lines(text, want_, sizeof(want_) / sizeof(want_[0]));  \
	} while (0)

Test(metrics, histograms_are_cumulative_with_inf_sum_count)
{
	struct kpx_agent a;
	char *m;

	fake_agent(&a);
	kpx_histogram_observe(&a.stats.sync_duration, 0.0005);
	kpx_histogram_observe(&a.stats.sync_duration, 0.003);
	kpx_histogram_observe(&a.stats.sync_duration, 100);
	m = render(&a, NULL, NULL);
	ASSERT_LINES(m,
		     "# TYPE kubeproxy_sync_proxy_rules_duration_seconds histogram",
		     "kubeproxy_sync_proxy_rules_duration_seconds_bucket{ip_family=\"IPv4\",le=\"0.001\"} 1",
		     "kubeproxy_sync_proxy_rules_duration_seconds_bucket{ip_family=\"IPv4\",le=\"0.002\"} 1",
		     "kubeproxy_sync_proxy_rules_duration_seconds_bucket{ip_family=\"IPv4\",le=\"0.004\"} 2",
		     "kubeproxy_sync_proxy_rules_duration_seconds_bucket{ip_family=\"IPv4\",le=\"+Inf\"} 3",
		     "kubeproxy_sync_proxy_rules_duration_seconds_count{ip_family=\"IPv4\"} 3",
		     "kubeproxy_sync_proxy_rules_duration_seconds_sum{ip_family=\"IPv4\"} 100.0035",
		     "kubeproxy_sync_full_proxy_rules_duration_seconds_count{ip_family=\"IPv4\"} 0",
		     "kubeproxy_sync_partial_proxy_rules_duration_seconds_count{ip_family=\"IPv4\"} 0",
		     "kubeproxy_network_programming_duration_seconds_count{ip_family=\"IPv4\"} 0");
	cr_assert_null(strstr(m, "IPv6"), "no IPv6 series on an IPv4-only node");
	free(m);
}

Test(metrics, kube_proxy_gauges_and_counters)
{
	struct kpx_agent a;
	char *m;

	fake_agent(&a);
	a.stats.last_sync_wall = 1700000001.5;
	a.stats.last_queued_wall = 1700000002;
	a.stats.sync_errors_total = 4;
	m = render(&a, NULL, NULL);
	ASSERT_LINES(m,
		     "kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family=\"IPv4\"} 1700000001.5",
		     "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds 1700000002",
		     "kpx_sync_errors_total 4",
		     "kubeproxy_sync_proxy_rules_endpoint_changes_pending 0",
		     "kubeproxy_sync_proxy_rules_service_changes_total 0");
	/* The version string is the build's; only its presence matters. */
	cr_assert(strstr(m, "\nkpx_build_info{version=\""));
	cr_assert(strstr(m, "\",backend=\"fake\"} 1\n"));
	free(m);
}

/* A plan with one eTP=Local service whose external set is empty while it
 * has endpoints (drop), and one iTP=Local with internal endpoints. */
static struct kpx_plan *test_plan(void)
{
	static struct kpx_plan_endpoint eps[2];
	static struct kpx_plan_frontend fes[2];
	static uint32_t idx[2] = { 0, 1 };
	static struct kpx_plan_svcport sps[2];
	static struct kpx_plan plan;

	memset(sps, 0, sizeof(sps));
	kpx_addr_parse("198.18.1.1", &eps[0].addr);
	eps[0].port = 8080;
	eps[0].flags = KPX_EP_READY;
	kpx_addr_parse("198.18.1.2", &eps[1].addr);
	eps[1].port = 8080;
	eps[1].flags = KPX_EP_READY | KPX_EP_LOCAL;
	fes[0].kind = KPX_FE_CLUSTER_IP;
	kpx_addr_parse("198.18.100.1", &fes[0].addr);
	fes[0].port = 80;
	fes[1].kind = KPX_FE_LOAD_BALANCER;
	kpx_addr_parse("198.18.200.1", &fes[1].addr);
	fes[1].port = 80;
	fes[1].external = true;

	sps[0].ns = kpx_intern("default");
	sps[0].name = kpx_intern("web");
	sps[0].id = kpx_intern("default/web:/TCP/v4");
	sps[0].port_name = kpx_intern_empty;
	sps[0].proto = KPX_PROTO_TCP;
	sps[0].etp_local = true;
	sps[0].frontends = fes;
	sps[0].n_frontends = 2;
	sps[0].endpoints = eps;
	sps[0].n_endpoints = 1;
	sps[0].internal = idx;
	sps[0].n_internal = 1;
	sps[0].external = NULL;
	sps[0].n_external = 0;
	sps[0].external_empty = KPX_EMPTY_DROP;

	sps[1].ns = kpx_intern("default");
	sps[1].name = kpx_intern("local");
	sps[1].id = kpx_intern("default/local:/UDP/v4");
	sps[1].port_name = kpx_intern_empty;
	sps[1].proto = KPX_PROTO_UDP;
	sps[1].itp_local = true;
	sps[1].endpoints = eps;
	sps[1].n_endpoints = 2;
	sps[1].internal = &idx[1];
	sps[1].n_internal = 1;

	memset(&plan, 0, sizeof(plan));
	plan.svcports = sps;
	plan.n_svcports = 2;
	plan.n_frontends = 2;
	plan.n_endpoints = 3;
	return &plan;
}

Test(metrics, no_local_endpoints_by_traffic_policy)
{
	struct kpx_agent a;
	char *m;

	fake_agent(&a);
	a.plan = test_plan();
	m = render(&a, NULL, NULL);
	ASSERT_LINES(m,
		     "kubeproxy_sync_proxy_rules_no_local_endpoints_total{ip_family=\"IPv4\",traffic_policy=\"external\"} 1",
		     "kubeproxy_sync_proxy_rules_no_local_endpoints_total{ip_family=\"IPv4\",traffic_policy=\"internal\"} 0",
		     "kpx_frontends 2", "kpx_endpoints 3", "kpx_svcports 2");
	free(m);
}

Test(metrics, datapath_counters_and_traffic)
{
	struct kpx_agent a;
	char *m;

	fake_agent(&a);
	m = render(&a,
		   "{\"backend\":\"bpf\",\"drops\":{\"no_backend\":3,\"policy\":0},"
		   "\"maps\":{\"kpx_services\":{\"entries\":5,\"max_entries\":65536},"
		   "\"kpx_ct\":{\"entries\":9,\"max_entries\":1024}},"
		   "\"ct_entries\":9}",
		   "[{\"address\":\"198.18.100.1\",\"port\":80,\"protocol\":\"TCP\","
		   "\"service\":\"default/web\",\"backends\":["
		   "{\"address\":\"198.18.1.1\",\"port\":8080,\"packets\":10},"
		   "{\"address\":\"198.18.1.2\",\"port\":8080,\"packets\":5}]},"
		   "{\"address\":\"198.18.100.2\",\"port\":53,\"protocol\":\"UDP\","
		   "\"service\":\"default/dns\",\"backends\":[]}]");
	ASSERT_LINES(m, "kpx_datapath_drops_total{reason=\"no_backend\"} 3",
		     "kpx_datapath_drops_total{reason=\"policy\"} 0",
		     "kpx_map_entries{map=\"kpx_services\"} 5",
		     "kpx_map_capacity{map=\"kpx_ct\"} 1024",
		     "kpx_conntrack_entries 9",
		     "kpx_service_packets_total{service=\"default/web\",frontend=\"198.18.100.1:80/TCP\"} 15");
	cr_assert_null(strstr(m, "default/dns"), "no counters, no series");
	cr_assert_null(strstr(m, "kpx_service_bytes_total"));
	free(m);
}

/* Every sample belongs to a family announced by a TYPE line, and every
 * line is a comment or "name[{labels}] value". */
Test(metrics, exposition_format_is_well_formed)
{
	struct kpx_agent a;
	char *m, *line, *save = NULL, *copy;
	char typed[8192] = "\n";

	fake_agent(&a);
	a.plan = test_plan();
	kpx_histogram_observe(&a.stats.partial_sync_duration, 0.01);
	m = render(&a, "{\"drops\":{\"a\\\"b\":1}}", NULL);
	cr_assert(strstr(m, "reason=\"a\\\"b\""), "label value escaped");
	copy = strdup(m);
	for (line = strtok_r(copy, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		char name[128], fam[140];
		size_t n;

		if (!strncmp(line, "# TYPE ", 7)) {
			sscanf(line + 7, "%127s", name);
			strcat(typed, name);
			strcat(typed, "\n");
			continue;
		}
		if (!strncmp(line, "# HELP ", 7))
			continue;
		cr_assert_neq(line[0], '#', "unknown comment: %s", line);
		n = strcspn(line, "{ ");
		cr_assert(n > 0 && n < sizeof(name), "%s", line);
		memcpy(name, line, n);
		name[n] = 0;
		cr_assert(strchr(line, ' '), "no value: %s", line);
		{
			char *end;
			const char *val = strrchr(line, ' ') + 1;

			strtod(val, &end);
			cr_assert(*end == 0 && end != val, "bad value: %s",
				  line);
		}
		/* Histogram series carry _bucket/_sum/_count suffixes. */
		snprintf(fam, sizeof(fam), "\n%s\n", name);
		if (!strstr(typed, fam)) {
			char *suf = strrchr(name, '_');

			cr_assert_not_null(suf, "untyped: %s", line);
			*suf = 0;
			snprintf(fam, sizeof(fam), "\n%s\n", name);
			cr_assert_not_null(strstr(typed, fam), "untyped: %s",
					   line);
		}
	}
	free(copy);
	free(m);
}

Test(metrics, probe_counters_keep_kube_proxy_names)
{
	struct kpx_serve_counters c = { .healthz = { 7, 2 }, .livez = { 3, 0 },
					.readyz = { 1, 5 } };
	char *buf = NULL;
	size_t sz = 0;
	FILE *f = open_memstream(&buf, &sz);

	kpx_metrics_write_counters(f, &c);
	fclose(f);
	ASSERT_LINES(buf, "kubeproxy_proxy_healthz_total{code=\"200\"} 7",
		     "kubeproxy_proxy_healthz_total{code=\"503\"} 2",
		     "kubeproxy_proxy_livez_total{code=\"200\"} 3",
		     "kubeproxy_proxy_livez_total{code=\"503\"} 0",
		     "kpx_readyz_total{code=\"503\"} 5");
	free(buf);
}

/* A dual-stack node labels kube-proxy's per-family series with both
 * families; no-local-endpoint counts are per family of the svcport. */
Test(metrics, dual_stack_series_per_ip_family)
{
	struct kpx_plan *plan = test_plan();
	struct kpx_agent a;
	char *m;

	fake_agent(&a);
	kpx_addr_parse("198.18.0.11", &a.plan_input.node_ips[0]);
	kpx_addr_parse("fd00:18::11", &a.plan_input.node_ips[1]);
	a.plan_input.n_node_ips = 2;
	plan->svcports[0].family = AF_INET6; /* eTP=Local, none local */
	plan->svcports[1].family = AF_INET;
	a.plan = plan;
	a.stats.last_sync_wall = 1700000001;
	kpx_histogram_observe(&a.stats.sync_duration, 0.003);
	m = render(&a, NULL, NULL);
	ASSERT_LINES(m,
		     "kubeproxy_sync_proxy_rules_duration_seconds_count{ip_family=\"IPv4\"} 1",
		     "kubeproxy_sync_proxy_rules_duration_seconds_count{ip_family=\"IPv6\"} 1",
		     "kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family=\"IPv6\"} 1700000001",
		     "kubeproxy_sync_proxy_rules_no_local_endpoints_total{ip_family=\"IPv6\",traffic_policy=\"external\"} 1",
		     "kubeproxy_sync_proxy_rules_no_local_endpoints_total{ip_family=\"IPv4\",traffic_policy=\"external\"} 0");
	/* one HELP/TYPE per family of series, not per label set */
	{
		const char *t = "# TYPE kubeproxy_sync_proxy_rules_duration_seconds ";
		const char *p = strstr(m, t);

		cr_assert_not_null(p);
		cr_assert_null(strstr(p + 1, t), "TYPE line repeated");
	}
	free(m);
}

/* ---- process_* ---- */

Test(process, stat_line_with_odd_command_name)
{
	/* comm may hold spaces and ')'; fields counted from the last ')' */
	static const char stat[] =
		"4242 (kpx) (x y)) S 1 4242 4242 0 -1 4194560 100 0 0 0 "
		"250 50 0 0 20 0 3 0 1000 123456789 2048 18446744073709551615";
	struct kpx_proc_stats p;

	cr_assert_eq(kpx_proc_parse_stat(stat, 100, 4096, 1700000000.0, &p), 0);
	cr_assert_float_eq(p.cpu_seconds, 3.0, 1e-9, "utime+stime / ticks");
	cr_assert_float_eq(p.start_time, 1700000010.0, 1e-9, "btime+start");
	cr_assert_float_eq(p.virtual_bytes, 123456789.0, 1e-9);
	cr_assert_float_eq(p.resident_bytes, 2048.0 * 4096, 1e-9);
	cr_assert_eq(kpx_proc_parse_stat("4242 (kpx S 1", 100, 4096, 0, &p),
		     -EINVAL);
	cr_assert_eq(kpx_proc_parse_stat("1 (a) S 1 2", 100, 4096, 0, &p),
		     -EINVAL, "truncated");
}

Test(process, numbers_of_this_process)
{
	struct kpx_proc_stats p;
	double now = (double)time(NULL);

	cr_assert_eq(kpx_proc_stats_read(&p), 0);
	cr_assert_geq(p.open_fds, 3, "stdin/out/err at least");
	cr_assert_gt(p.max_fds, p.open_fds);
	cr_assert_gt(p.resident_bytes, 0);
	cr_assert_geq(p.virtual_bytes, p.resident_bytes);
	cr_assert(p.start_time > now - 3600 && p.start_time <= now + 1,
		  "start %f now %f", p.start_time, now);
}

/* ---- readiness ---- */

Test(ready, not_before_the_first_sync_and_not_while_stalled)
{
	struct kpx_ready_input r = { .synced_once = false };
	struct kpx_health h = { .healthy = true, .now = 1700000100 };
	struct json_object *o, *v;
	unsigned int status;
	char *b;

	snprintf(r.reason, sizeof(r.reason),
		 "API server (services): connect: refused");
	b = kpx_ready_body(&r, &h, &status, NULL);
	cr_assert_eq(status, 503);
	o = json_tokener_parse(b);
	cr_assert_not_null(o, "%s", b);
	cr_assert(json_object_object_get_ex(o, "ready", &v));
	cr_assert_not(json_object_get_boolean(v));
	cr_assert(json_object_object_get_ex(o, "reason", &v));
	cr_assert_str_eq(json_object_get_string(v),
			 "API server (services): connect: refused");
	json_object_put(o);
	free(b);

	r.synced_once = true;
	r.first_sync_wall = 1700000000;
	b = kpx_ready_body(&r, &h, &status, NULL);
	cr_assert_eq(status, 200, "%s", b);
	cr_assert(strstr(b, "\"firstSync\":\"2023-11-14 22:13:20 +0000 UTC\""),
		  "%s", b);
	cr_assert_null(strstr(b, "reason"));
	free(b);

	h.healthy = false;
	b = kpx_ready_body(&r, &h, &status, NULL);
	cr_assert_eq(status, 503, "a stalled agent is not ready");
	free(b);
}

Test(ready, reason_names_what_is_missing)
{
	struct kpx_ready_input r;
	struct kpx_agent a;

	fake_agent(&a);
	kpx_ready_input_of(&a, &r);
	cr_assert_not(r.synced_once);
	cr_assert_str_eq(r.reason, "first sync pending");
	snprintf(a.stats.last_error, sizeof(a.stats.last_error),
		 "backend: Numerical result out of range");
	kpx_ready_input_of(&a, &r);
	cr_assert(strstr(r.reason, "last sync: backend: Numerical"), "%s",
		  r.reason);
	a.stats.syncs_total = 1;
	kpx_ready_input_of(&a, &r);
	cr_assert(r.synced_once);
}

/* ---- the published state the HTTP threads read ---- */

Test(serve, scrape_reads_only_the_published_state)
{
	struct kpx_serve *s;
	struct kpx_health_input hi;
	struct kpx_ready_input ri;
	struct kpx_agent a;
	size_t len;
	char *m;

	fake_agent(&a);
	a.stats.last_queued_wall = 5;
	cr_assert_eq(kpx_serve_new(&a, &s), 0);
	kpx_serve_health(s, &hi, &ri);
	cr_assert_eq(hi.last_queued_wall, 0, "nothing published yet");
	cr_assert(hi.node_eligible);
	cr_assert_not(ri.synced_once);
	kpx_serve_publish(s, &a);
	a.stats.syncs_total = 1; /* after the publish: not seen */
	a.stats.last_sync_wall = 1700000001;
	kpx_serve_health(s, &hi, &ri);
	cr_assert_eq(hi.last_queued_wall, 5);
	cr_assert_not(ri.synced_once);
	kpx_serve_count(s->counters.healthz, false);
	m = kpx_serve_metrics(s, &len);
	cr_assert_eq(len, strlen(m));
	ASSERT_LINES(m, "kpx_syncs_total 0",
		     "kubeproxy_proxy_healthz_total{code=\"503\"} 1");
	cr_assert(strstr(m, "\nprocess_open_fds "), "process metrics");
	free(m);
	kpx_serve_publish(s, &a); /* a sync happened: rendered again */
	kpx_serve_health(s, &hi, &ri);
	cr_assert(ri.synced_once);
	cr_assert_float_eq(ri.first_sync_wall, 1700000001, 1e-9);
	m = kpx_serve_metrics(s, NULL);
	ASSERT_LINES(m, "kpx_syncs_total 1");
	free(m);
	kpx_serve_free(s);
}

/* ---- expected frontends for --verify ---- */

Test(verify, expected_frontends_use_the_set_of_the_frontend_kind)
{
	struct json_object *arr = kpx_plan_expected_frontends(test_plan());
	struct json_object *fe, *bs;

	cr_assert_eq(json_object_array_length(arr), 2);
	fe = json_object_array_get_idx(arr, 0);
	cr_assert_str_eq(kpx_jstr(fe, "address", "-"), "198.18.100.1");
	cr_assert_str_eq(kpx_jstr(fe, "protocol", "-"), "TCP");
	cr_assert_str_eq(kpx_jstr(fe, "service", "-"), "default/web");
	cr_assert_str_eq(kpx_jstr(fe, "type", "-"), "ClusterIP");
	bs = kpx_jget(fe, "backends");
	cr_assert_eq(json_object_array_length(bs), 1);
	cr_assert_str_eq(kpx_jstr(json_object_array_get_idx(bs, 0), "address",
				  "-"),
			 "198.18.1.1");
	/* The LB frontend of the eTP=Local service has no local endpoint. */
	fe = json_object_array_get_idx(arr, 1);
	cr_assert_str_eq(kpx_jstr(fe, "type", "-"), "LoadBalancer");
	bs = kpx_jget(fe, "backends");
	cr_assert_not_null(bs);
	cr_assert_eq(json_object_array_length(bs), 0);
	json_object_put(arr);
}

/* ---- bind addresses ---- */

Test(bind, parses_v4_v6_and_any)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char buf[64];

	cr_assert_eq(kpx_bind_parse("127.0.0.1:10249", &ss, &len), 0);
	cr_assert_eq(ss.ss_family, AF_INET);
	cr_assert_eq(ntohs(((struct sockaddr_in *)&ss)->sin_port), 10249);
	cr_assert_eq(kpx_bind_parse("[fd00::1]:10256", &ss, &len), 0);
	cr_assert_eq(ss.ss_family, AF_INET6);
	inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, buf,
		  sizeof(buf));
	cr_assert_str_eq(buf, "fd00::1");
	cr_assert_eq(kpx_bind_parse(":10256", &ss, &len), 0);
	cr_assert_eq(ss.ss_family, AF_INET6, "any: dual-stack socket");
	cr_assert_eq(kpx_bind_parse("0.0.0.0:80", &ss, &len), 0);
	cr_assert_eq(kpx_bind_parse("fd00::1:80", &ss, &len), -EINVAL);
	cr_assert_eq(kpx_bind_parse("1.2.3.4", &ss, &len), -EINVAL);
	cr_assert_eq(kpx_bind_parse("1.2.3.4:0", &ss, &len), -EINVAL);
	cr_assert_eq(kpx_bind_parse("1.2.3.4:70000", &ss, &len), -EINVAL);
	cr_assert_eq(kpx_bind_parse("host:80", &ss, &len), -EINVAL);
	cr_assert_eq(kpx_bind_parse("[fd00::1]80", &ss, &len), -EINVAL);
}

/* ---- tables ---- */

Test(table, fits_the_width_and_aligns)
{
	static const char *const hdr[] = { "A", "SERVICE", "BACKENDS" };
	const char *row1[] = { "198.18.0.1:80/TCP", "default/a-very-long-service-name-that-goes-on-and-on", "3" };
	const char *row2[] = { "x", NULL, "10.0.0.1:80 10.0.0.2:80 10.0.0.3:80 10.0.0.4:80" };
	struct kpx_table *t = kpx_table_new(3, hdr);
	char *buf = NULL, *line, *save = NULL;
	size_t sz = 0;
	FILE *f = open_memstream(&buf, &sz);
	int lines = 0;

	cr_assert_eq(kpx_table_add(t, row1), 0);
	cr_assert_eq(kpx_table_add(t, row2), 0);
	kpx_table_print(t, f, 60);
	fclose(f);
	kpx_table_free(t);
	for (line = strtok_r(buf, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save), lines++) {
		cr_assert_leq(strlen(line), 60, "too wide: '%s'", line);
		/* Second column starts at the same offset on every row. */
		cr_assert_eq(line[17], ' ');
		cr_assert_neq(line[19], ' ', "'%s'", line);
	}
	cr_assert_eq(lines, 3);
	free(buf);
}

/* Programming latency counts from the trigger time, but a slice changed
 * before the agent started (its first listing after a restart) is not a
 * change this agent was late with: no sample, as in kube-proxy. */
Test(metrics, programming_latency_skips_changes_before_the_agent_started)
{
	double d = -1;

	cr_expect(kpx_programming_sample(1000.0, 1000.5, 1000.25, &d));
	cr_expect_float_eq(d, 0.25, 1e-9);
	/* a trigger time slightly ahead of this node's clock: 0, not < 0 */
	cr_expect(kpx_programming_sample(1000.0, 1000.5, 1000.75, &d));
	cr_expect_float_eq(d, 0, 1e-9);
	d = -1;
	cr_expect_not(kpx_programming_sample(1000.0, 1000.5, 700.0, &d));
	cr_expect_float_eq(d, -1, 1e-9);
}
