// SPDX-License-Identifier: Apache-2.0
/*
 * The sync loop. Changes from a source mark the store dirty; a sync runs
 * at most once per sync period (--min-sync-period, or by default adaptive:
 * kpx_sync_period_ms), and a full resync every
 * --sync-period. Nothing is programmed before the source has synced once.
 * A change-driven sync updates the plan incrementally (only the services
 * the store marks dirty are recomputed) and hands it to the backend, which
 * diffs against the kernel; on failure the update is rolled back, so the
 * old plan stays current, and the retry is a full rebuild. The periodic
 * resync and the first sync rebuild the whole plan, so a bug in the
 * incremental path heals within --sync-period. Node addresses and default
 * routes (NodePort addresses, node IPs) are read again when rtnetlink
 * reports a change, not at every sync.
 */
#include "agent/agent.h"

#include <errno.h>
#include <json-c/json.h>
#include <libmnl/libmnl.h>
#include <malloc.h>
#include <linux/rtnetlink.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "agent/config_watch.h"
#include "agent/serve.h"
#include "agent/serve_priv.h"
#include "cli/cli.h"
#include "common/intern.h"
#include "common/log.h"
#include "common/loop.h"
#include "k8s/client.h"
#include "k8s/manifests.h"
#include "model/store.h"
#include "plan/plan.h"

/* Backend housekeeping (conntrack GC) cadence. */
#define KPX_TICK_MS 5000
/* Retry delay after a failed sync, before --min-sync-period applies. */
/* A failed sync is retried after 1 s, doubling up to --sync-period
 * while it keeps failing (kube-proxy retries after its sync period): a
 * map that stays full must not cost a full rebuild every second. */
#define KPX_SYNC_RETRY_MS 1000

const struct kpx_backend_ops *kpx_backend_ops(enum kpx_backend_kind kind)
{
	switch (kind) {
	case KPX_BACKEND_BPF:
		return &kpx_bpf_backend;
	case KPX_BACKEND_NFT:
		return &kpx_nft_backend;
	default:
		return NULL;
	}
}

void kpx_histogram_init(struct kpx_histogram *h, double start, double factor)
{
	memset(h, 0, sizeof(*h));
	/* 16 buckets: 1 ms .. 33 s from the default start; the rest stay 0,
	 * which ends the series when rendered. */
	for (int i = 0; i < 16; i++) {
		h->bounds[i] = start;
		start *= factor;
	}
}

void kpx_histogram_init_programming(struct kpx_histogram *h)
{
	int n = 0;

	memset(h, 0, sizeof(*h));
	h->bounds[n++] = 0.25;
	h->bounds[n++] = 0.5;
	for (int s = 1; s <= 59; s++)
		h->bounds[n++] = s;
	for (int s = 60; s <= 115; s += 5)
		h->bounds[n++] = s;
	for (int s = 120; s <= 300 && n < KPX_HIST_BUCKETS; s += 30)
		h->bounds[n++] = s;
}

void kpx_histogram_observe(struct kpx_histogram *h, double value)
{
	for (int i = 0; i < KPX_HIST_BUCKETS; i++)
		if (value <= h->bounds[i])
			h->counts[i]++;
	h->count++;
	h->sum += value;
}

/*
 * Without --min-sync-period, the next sync may start when the last
 * change-driven one has been followed by KPX_SYNC_IDLE_FACTOR times its
 * duration of idle time, and never waits longer than the 1 s default: an
 * incremental sync costs about a millisecond, so a fixed 1 s period would
 * keep a change waiting up to a second behind an unrelated one under a
 * steady trickle of changes (10 slice writes/s: p50 0.7 s, p99 1.0 s in
 * perf/kube_proxy_bench.sh's latency phase), while under any rate of
 * changes syncs still take at most 1/(1 + factor) of a core. The periodic
 * full resync is not the base: it is paid once per --sync-period anyway,
 * and would hold changes back for seconds after it at 100,000 services.
 */
#define KPX_SYNC_IDLE_FACTOR 4

uint64_t kpx_sync_period_ms(const struct kpx_config *cfg, double sync_cost)
{
	double ms = sync_cost * 1000 * (1 + KPX_SYNC_IDLE_FACTOR);

	if (cfg->min_sync_set || ms >= (double)cfg->min_sync_ms)
		return cfg->min_sync_ms;
	return ms > 0 ? (uint64_t)ms : 0;
}

static bool source_synced(const struct kpx_agent *agent)
{
	if (!kpx_store_kind_synced(agent->store, KPX_KIND_SERVICE) ||
	    !kpx_store_kind_synced(agent->store, KPX_KIND_SLICE))
		return false;
	/* The own Node gives the zone for topology hints: wait for it too
	 * when it comes from an API server. */
	return !agent->k8s || kpx_store_kind_synced(agent->store, KPX_KIND_NODE);
}

static void schedule_sync(struct kpx_agent *agent, uint64_t delay_ms)
{
	uint64_t now = kpx_now_ms();
	uint64_t earliest = agent->last_sync_ms +
			    kpx_sync_period_ms(&agent->cfg, agent->sync_cost);

	if (now + delay_ms < earliest)
		delay_ms = earliest - now;
	if (!delay_ms)
		delay_ms = 1; /* 0 would disarm the timerfd */
	if (!agent->sync_pending || delay_ms > 1) {
		agent->sync_pending = true;
		kpx_timer_arm(agent->sync_timer, delay_ms);
	}
}

static void record_error(struct kpx_agent *agent, const char *what, int err)
{
	agent->stats.sync_errors_total++;
	agent->stats.last_error_wall = kpx_wall_seconds();
	snprintf(agent->stats.last_error, sizeof(agent->stats.last_error),
		 "%s: %s", what, strerror(-err));
}

/* One latency sample: none for a change made before the agent started
 * (a restart would count old annotations as minutes; kube-proxy skips
 * them too). */
bool kpx_programming_sample(double start_wall, double now, double trigger,
			    double *d)
{
	if (trigger < start_wall)
		return false;
	*d = now > trigger ? now - trigger : 0;
	return true;
}

/*
 * Network programming latency as kube-proxy measures it: for every slice
 * change now programmed, from its last-change-trigger-time (written by
 * the EndpointSlice controller when the pod or Service changed) to now.
 * Changes without one (manifests, hand-written slices) count from when
 * kpx received them, once per sync.
 */
static void observe_programming(struct kpx_agent *agent,
				const struct kpx_store_stats *ss)
{
	double now = agent->stats.last_sync_wall, d;
	const double *t;
	size_t n = kpx_store_trigger_times(agent->store, &t);

	for (size_t i = 0; i < n; i++) {
		if (!kpx_programming_sample(agent->start_wall, now, t[i], &d))
			continue;
		kpx_histogram_observe(&agent->stats.programming_latency, d);
		kpx_histogram_observe(&agent->stats.programming_latency_fine, d);
	}
	if (!n && ss->last_queued_wall > 0) {
		d = now > ss->last_queued_wall ? now - ss->last_queued_wall : 0;
		kpx_histogram_observe(&agent->stats.programming_latency, d);
		kpx_histogram_observe(&agent->stats.programming_latency_fine, d);
	}
}

static uint64_t next_retry_ms(struct kpx_agent *agent)
{
	uint64_t cap = agent->cfg.sync_ms > KPX_SYNC_RETRY_MS ? agent->cfg.sync_ms
							      : KPX_SYNC_RETRY_MS;

	agent->retry_ms = agent->retry_ms ? agent->retry_ms * 2 : KPX_SYNC_RETRY_MS;
	if (agent->retry_ms > cap)
		agent->retry_ms = cap;
	return agent->retry_ms;
}

/* Each refused user address is logged when the set of refusals changes,
 * naming the Service, the address and the owner of the ClusterIP. */
static void log_refused(struct kpx_agent *agent, const struct kpx_plan *plan)
{
	char a[KPX_ADDR_STRLEN];
	uint64_t sig;

	kpx_plan_count_refused(plan, &sig);
	if (sig == agent->refused_sig)
		return;
	agent->refused_sig = sig;
	for (size_t i = 0; i < plan->n_svcports; i++) {
		const struct kpx_plan_svcport *sp = &plan->svcports[i];

		for (size_t j = 0; j < sp->n_refused; j++) {
			const struct kpx_plan_refused *r = &sp->refused[j];

			kpx_warn("service %s/%s: %s %s not served: %s%s%s",
				 sp->ns, sp->name, kpx_fe_kind_name(r->kind),
				 kpx_addr_str(&r->addr, a),
				 kpx_refusal_name(r->reason),
				 r->owner[0] ? " of " : "", r->owner);
		}
	}
}

/* CPU seconds of the process, for the -v 1 split of a full sync's cost
 * between the plan and the backend. */
static double process_cpu(void)
{
	struct timespec t;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Heap bytes in use (main arena and mmapped chunks), for the -v 1 split
 * of a full sync's memory between the store, the plan and the backend. */
static double heap_mib(void)
{
	struct mallinfo2 mi = mallinfo2();

	return (double)(mi.uordblks + mi.hblkhd) / 1048576;
}

static void do_sync(struct kpx_agent *agent)
{
	struct kpx_plan_update_stats us = { 0 };
	struct kpx_plan_undo *undo = NULL;
	struct kpx_store_stats ss;
	struct kpx_plan *plan = NULL;
	const struct kpx_node *node;
	bool full = agent->full_sync_pending || !agent->plan;
	double t0, t_in, t_plan, elapsed;
	double h0 = 0, h_plan = 0, h_end = 0, c0 = 0, c_plan = 0, c_end = 0;
	uint64_t delay;
	int err;

	agent->sync_pending = false;
	if (!source_synced(agent)) {
		kpx_dbg(2, "sync: waiting for the source's first full listing");
		return;
	}
	if (!full && !agent->node_input_stale && !kpx_store_dirty(agent->store))
		return;
	kpx_store_get_stats(agent->store, &ss);
	t0 = kpx_wall_seconds();
	if (full && kpx_log_verbosity >= 1) {
		h0 = heap_mib();
		c0 = process_cpu();
	}

	node = kpx_store_node(agent->store);
	err = 0;
	if (full || agent->node_input_stale) {
		struct kpx_plan_input in;

		agent->node_input_stale = !agent->rtnl;
		err = kpx_plan_input_from_config(&agent->cfg, node, &in);
		/* an address or route change that moves nothing */
		if (!err && !full && !kpx_store_dirty(agent->store) &&
		    kpx_plan_input_equal(&in, &agent->plan_input))
			return;
		if (!err)
			agent->plan_input = in;
	} else if (strcmp(agent->plan_input.node_zone,
			  node ? node->zone : "")) {
		/* the own Node object is in the store: its zone is news */
		snprintf(agent->plan_input.node_zone,
			 sizeof(agent->plan_input.node_zone), "%s",
			 node ? node->zone : "");
	}
	agent->last_sync_ms = kpx_now_ms();
	t_in = kpx_wall_seconds() - t0;
	if (!err && full) {
		err = kpx_plan_build(agent->store, &agent->plan_input, &plan);
	} else if (!err) {
		/* agent->plan becomes the new plan in place; undo can
		 * restore it until the backend accepted it. */
		err = kpx_plan_update(agent->plan, agent->store,
				      &agent->plan_input, &undo);
		plan = agent->plan;
		kpx_plan_undo_stats(undo, &us);
	}
	t_plan = kpx_wall_seconds() - t0;
	if (full && kpx_log_verbosity >= 1) {
		h_plan = heap_mib();
		c_plan = process_cpu();
	}
	if (err) {
		kpx_err("sync: computing the plan failed: %s", strerror(-err));
		record_error(agent, "plan", err);
		agent->full_sync_pending = true;
		schedule_sync(agent, next_retry_ms(agent));
		return;
	}
	if (agent->resync_due && agent->ops->resync)
		err = agent->ops->resync(agent->backend, plan);
	else
		err = agent->ops->sync(agent->backend, plan);
	elapsed = kpx_wall_seconds() - t0;
	if (err) {
		kpx_err("sync: %s backend failed to program %zu service ports: %s",
			agent->ops->name, plan->n_svcports, strerror(-err));
		record_error(agent, "backend", err);
		/* --verify compares the kernel with what was wanted, not with
		 * what was last programmed */
		json_object_put(agent->wanted_frontends);
		agent->wanted_frontends = kpx_plan_expected_frontends(plan);
		if (undo)
			kpx_plan_rollback(agent->plan, undo);
		else
			kpx_plan_free(plan);
		agent->full_sync_pending = true;
		delay = next_retry_ms(agent);
		kpx_info("sync: retrying in %llu ms", (unsigned long long)delay);
		schedule_sync(agent, delay);
		return;
	}
	agent->retry_ms = 0;
	json_object_put(agent->wanted_frontends);
	agent->wanted_frontends = NULL;
	/* Service ports the backend could not program do not hold back the
	 * others: the sync counts as failed for the metric and `kpx status`,
	 * and the plan stays the wanted one (`kpx services --verify` shows
	 * what is missing); the next sync tries them again. */
	if (agent->ops->skipped) {
		size_t n_skipped = 0;
		const char *msg = agent->ops->skipped(agent->backend, &n_skipped);

		if (msg) {
			agent->stats.sync_errors_total++;
			agent->stats.last_error_wall = kpx_wall_seconds();
			snprintf(agent->stats.last_error,
				 sizeof(agent->stats.last_error), "backend: %s",
				 msg);
		}
	}
	if (undo) {
		kpx_plan_commit(undo);
	} else {
		kpx_plan_free(agent->plan);
		agent->plan = plan;
	}
	if (full && kpx_log_verbosity >= 1) {
		h_end = heap_mib();
		c_end = process_cpu();
	}
	agent->full_sync_pending = false;
	agent->resync_due = false;
	agent->stats.last_sync_wall = kpx_wall_seconds();
	observe_programming(agent, &ss);
	kpx_store_clear_dirty(agent->store);

	agent->stats.syncs_total++;
	agent->stats.last_sync_seconds = elapsed;
	if (!full || agent->sync_cost <= 0)
		agent->sync_cost = elapsed;
	kpx_histogram_observe(&agent->stats.sync_duration, elapsed);
	kpx_histogram_observe(full ? &agent->stats.full_sync_duration
				   : &agent->stats.partial_sync_duration,
			      elapsed);
	agent->stats.last_queued_wall = 0;
	if (agent->hcnp)
		kpx_hcnp_update(agent->hcnp, plan);
	log_refused(agent, plan);
	kpx_dbg(1, "sync: %s, %zu service ports, %zu frontends, %zu endpoints in %.3f ms (plan %.3f ms%s, %zu services recomputed; node input %.3f ms)",
		full ? "full" : "partial", plan->n_svcports, plan->n_frontends,
		plan->n_endpoints, elapsed * 1000, (t_plan - t_in) * 1000,
		full ? ", full build" : us.all ? ", input changed: all"
		       : us.merged ? ", merged" : ", in place",
		full ? ss.n_services : us.services, t_in * 1000);
	if (full)
		kpx_dbg(1, "sync: heap %.1f MiB before the plan, plan +%.1f MiB, backend +%.1f MiB (%zu interned strings, %.1f MiB); cpu plan %.2f s, backend %.2f s; process cpu %.2f s",
			h0, h_plan - h0, h_end - h_plan, kpx_intern_count(),
			(double)kpx_intern_bytes() / 1048576, c_plan - c0,
			c_end - c_plan, process_cpu());
}

static void on_sync_timer(void *arg)
{
	struct kpx_agent *agent = arg;

	do_sync(agent);
	kpx_serve_publish(agent->serve, agent);
}

static void on_resync_timer(void *arg)
{
	struct kpx_agent *agent = arg;

	agent->full_sync_pending = true;
	agent->resync_due = true;
	do_sync(agent);
	kpx_serve_publish(agent->serve, agent);
	kpx_timer_arm(agent->resync_timer, agent->cfg.sync_ms);
}

static void on_tick_timer(void *arg)
{
	struct kpx_agent *agent = arg;

	if (agent->ops->tick && agent->backend)
		agent->ops->tick(agent->backend);
	kpx_serve_publish(agent->serve, agent);
	kpx_timer_arm(agent->tick_timer, KPX_TICK_MS);
}

/* Any address, route or link event: node input is re-read at the next
 * sync. The messages themselves are not needed, only that they came. */
static void on_rtnl(int fd, uint32_t events, void *arg)
{
	struct kpx_agent *agent = arg;
	char buf[MNL_SOCKET_BUFFER_SIZE];

	(void)events;
	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0 || errno == ENOBUFS)
		;
	agent->node_input_stale = true;
	schedule_sync(agent, 0);
}

static void open_rtnl(struct kpx_agent *agent)
{
	unsigned int groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR |
			      RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE |
			      RTMGRP_IPV6_ROUTE;
	struct mnl_socket *nl;

	nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (!nl || mnl_socket_bind(nl, groups, MNL_SOCKET_AUTOPID) ||
	    kpx_loop_watch_fd(agent->loop, mnl_socket_get_fd(nl), EPOLLIN,
			      on_rtnl, agent)) {
		kpx_warn("rtnetlink: cannot watch address changes (%s); node "
			 "addresses are read at every sync", strerror(errno));
		if (nl)
			mnl_socket_close(nl);
		return;
	}
	agent->rtnl = nl;
}

static void on_source_change(void *arg)
{
	struct kpx_agent *agent = arg;

	if (!agent->stats.last_queued_wall)
		agent->stats.last_queued_wall = kpx_wall_seconds();
	schedule_sync(agent, 0);
	kpx_serve_publish(agent->serve, agent);
}

static void on_signal(int fd, uint32_t events, void *arg)
{
	struct kpx_agent *agent = arg;
	struct signalfd_siginfo si;

	(void)events;
	if (read(fd, &si, sizeof(si)) != sizeof(si))
		return;
	kpx_info("received signal %u, exiting (programmed state stays in place)",
		 si.ssi_signo);
	kpx_loop_stop(agent->loop);
}

bool kpx_agent_healthy(const struct kpx_agent *agent)
{
	struct kpx_health h;

	/* The same rule as /livez and the healthCheckNodePort servers. */
	kpx_health_eval(agent, NULL, kpx_wall_seconds(), &h);
	return h.healthy;
}

static void json_add_time(struct json_object *o, const char *key, double t)
{
	json_object_object_add(o, key, t > 0 ? json_object_new_double(t) : NULL);
}

struct json_object *kpx_agent_status_json(const struct kpx_agent *agent)
{
	struct json_object *o = json_object_new_object();
	struct json_object *counts = json_object_new_object();
	struct kpx_store_stats ss;
	const char *err = agent->stats.last_error;

	kpx_store_get_stats(agent->store, &ss);
	json_object_object_add(o, "version", json_object_new_string(KPX_VERSION));
	json_object_object_add(o, "pid", json_object_new_int(getpid()));
	json_object_object_add(o, "uptime_seconds",
			       json_object_new_double(kpx_wall_seconds() -
						      agent->start_wall));
	json_object_object_add(o, "backend",
			       json_object_new_string(agent->ops->name));
	json_object_object_add(o, "node",
			       json_object_new_string(agent->cfg.hostname));
	json_object_object_add(o, "healthy",
			       json_object_new_boolean(kpx_agent_healthy(agent)));
	json_object_object_add(o, "synced",
			       json_object_new_boolean(source_synced(agent)));
	if (agent->manifests)
		json_object_object_add(o, "source",
				       kpx_manifests_status(agent->manifests));
	else if (agent->k8s)
		json_object_object_add(o, "source", kpx_k8s_status(agent->k8s));
	json_add_time(o, "last_sync", agent->stats.last_sync_wall);
	json_object_object_add(o, "last_sync_duration_seconds",
			       json_object_new_double(agent->stats.last_sync_seconds));
	json_object_object_add(o, "syncs_total",
			       json_object_new_int64((int64_t)agent->stats.syncs_total));
	json_object_object_add(o, "sync_errors_total",
			       json_object_new_int64((int64_t)agent->stats.sync_errors_total));
	json_object_object_add(o, "last_error",
			       err[0] ? json_object_new_string(err) : NULL);
	json_add_time(o, "last_error_time", agent->stats.last_error_wall);
	json_object_object_add(o, "pending_service_changes",
			       json_object_new_int64((int64_t)ss.service_changes_pending));
	json_object_object_add(o, "pending_endpoint_changes",
			       json_object_new_int64((int64_t)ss.endpoint_changes_pending));
	json_object_object_add(counts, "services",
			       json_object_new_int64((int64_t)ss.n_services));
	json_object_object_add(counts, "endpoint_slices",
			       json_object_new_int64((int64_t)ss.n_slices));
	json_object_object_add(counts, "service_ports",
			       json_object_new_int64(agent->plan ? (int64_t)agent->plan->n_svcports : 0));
	json_object_object_add(counts, "frontends",
			       json_object_new_int64(agent->plan ? (int64_t)agent->plan->n_frontends : 0));
	json_object_object_add(counts, "endpoints",
			       json_object_new_int64(agent->plan ? (int64_t)agent->plan->n_endpoints : 0));
	json_object_object_add(counts, "refused_addresses",
			       json_object_new_int64(agent->plan ? (int64_t)kpx_plan_count_refused(agent->plan, NULL) : 0));
	json_object_object_add(o, "counts", counts);
	if (agent->plan) {
		struct json_object *refused = json_object_new_array();

		for (size_t i = 0; i < agent->plan->n_svcports; i++) {
			const struct kpx_plan_svcport *sp = &agent->plan->svcports[i];
			struct json_object *r;

			if (!sp->n_refused)
				continue;
			r = kpx_plan_refused_json(sp, true);
			for (size_t j = 0; j < json_object_array_length(r); j++)
				json_object_array_add(refused,
					json_object_get(json_object_array_get_idx(r, j)));
			json_object_put(r);
		}
		json_object_object_add(o, "refused", refused);
	}
	if (agent->configz) {
		struct json_object *cz = json_tokener_parse(agent->configz);
		struct json_object *inner = NULL;

		if (cz && json_object_object_get_ex(cz, "kubeproxy.config.k8s.io",
						    &inner))
			json_object_object_add(o, "config",
					       json_object_get(inner));
		json_object_put(cz);
	}
	return o;
}

static int open_source(struct kpx_agent *agent)
{
	struct kpx_k8s_options opts = { 0 };
	char err[512] = "";
	int ret;

	if (agent->cfg.manifests[0]) {
		kpx_manifests_set_node(agent->cfg.hostname);
		ret = kpx_manifests_open(agent->loop, agent->cfg.manifests,
					 agent->store, on_source_change, agent,
					 &agent->manifests);
		if (ret)
			kpx_err("manifests %s: %s", agent->cfg.manifests,
				strerror(-ret));
		return ret;
	}
	if (agent->cfg.kubeconfig[0])
		ret = kpx_kubeconfig_load(agent->cfg.kubeconfig, &opts.conn,
					  err, sizeof(err));
	else if (getenv("KUBERNETES_SERVICE_HOST"))
		ret = kpx_k8s_in_cluster(&opts.conn, err, sizeof(err));
	else if (agent->cfg.master[0])
		ret = 0;
	else {
		kpx_err("no source: pass --manifests DIR, --kubeconfig PATH or "
			"--master URL, or run in a cluster");
		return -EINVAL;
	}
	if (ret) {
		kpx_err("API server config: %s", err[0] ? err : strerror(-ret));
		return ret;
	}
	if (agent->cfg.master[0])
		snprintf(opts.conn.server, sizeof(opts.conn.server), "%s",
			 agent->cfg.master);
	snprintf(opts.node_name, sizeof(opts.node_name), "%s",
		 agent->cfg.hostname);
	opts.stall_ms = agent->cfg.watch_stall_ms;
	ret = kpx_k8s_open(agent->loop, &opts, agent->store, on_source_change,
			   agent, &agent->k8s);
	kpx_k8s_conn_clear(&opts.conn);
	if (ret)
		kpx_err("API source %s: %s", opts.conn.server, strerror(-ret));
	return ret;
}

static void open_servers(struct kpx_agent *agent)
{
	int err;

	err = kpx_serve_new(agent, &agent->serve);
	if (err) {
		kpx_warn("HTTP servers: %s", strerror(-err));
		return;
	}
	kpx_serve_publish(agent->serve, agent);
	if (agent->cfg.healthz_addr[0]) {
		err = kpx_http_open(agent, agent->cfg.healthz_addr,
				    KPX_HTTP_HEALTHZ, &agent->healthz_http);
		if (err)
			kpx_warn("healthz server on %s: %s", agent->cfg.healthz_addr,
				 strerror(-err));
	}
	if (agent->cfg.metrics_addr[0]) {
		err = kpx_http_open(agent, agent->cfg.metrics_addr,
				    KPX_HTTP_METRICS, &agent->metrics_http);
		if (err)
			kpx_warn("metrics server on %s: %s", agent->cfg.metrics_addr,
				 strerror(-err));
	}
	if (agent->cfg.state_socket[0]) {
		err = kpx_status_server_open(agent, agent->cfg.state_socket,
					     &agent->status_server);
		if (err)
			kpx_warn("status socket %s: %s", agent->cfg.state_socket,
				 strerror(-err));
	}
	err = kpx_hcnp_new(agent, &agent->hcnp);
	if (err)
		kpx_warn("healthCheckNodePort servers: %s", strerror(-err));
}

static void on_config_changed(void *arg)
{
	struct kpx_agent *agent = arg;

	kpx_info("configuration file %s changed; exiting so that the new "
		 "configuration takes effect (kube-proxy does the same: the "
		 "pod restarts)", agent->cfg.config_file);
	agent->exit_code = 1;
	kpx_loop_stop(agent->loop);
}

static void open_config_watch(struct kpx_agent *agent)
{
	int err;

	if (!agent->cfg.config_file[0])
		return;
	err = kpx_config_watch_open(agent->loop, agent->cfg.config_file,
				    agent->cfg.config_hash, on_config_changed,
				    agent, &agent->config_watch);
	if (err)
		kpx_warn("watching %s for changes: %s; a change needs a "
			 "restart", agent->cfg.config_file, strerror(-err));
}

/* --write-config-to FILE: the effective configuration, then exit. */
static int write_config(struct kpx_agent *agent)
{
	const char *path = agent->cfg.write_config_to;
	FILE *f;
	int rc = 0;

	f = fopen(path, "we");
	if (!f || !agent->configz || fputs(agent->configz, f) < 0 ||
	    fputc('\n', f) < 0)
		rc = 1;
	if (f && fclose(f))
		rc = 1;
	if (rc)
		kpx_err("--write-config-to %s: %s", path, strerror(errno));
	else
		kpx_info("wrote the effective configuration to %s", path);
	free(agent->configz);
	agent->configz = NULL;
	return rc;
}

static int setup_signals(struct kpx_agent *agent, int *sfd)
{
	sigset_t mask;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &mask, NULL))
		return -errno;
	*sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (*sfd < 0)
		return -errno;
	return kpx_loop_watch_fd(agent->loop, *sfd, EPOLLIN, on_signal, agent);
}

static void agent_teardown(struct kpx_agent *agent, int sfd)
{
	kpx_config_watch_close(agent->config_watch);
	if (agent->rtnl) {
		kpx_loop_unwatch_fd(agent->loop, mnl_socket_get_fd(agent->rtnl));
		mnl_socket_close(agent->rtnl);
	}
	kpx_hcnp_free(agent->hcnp);
	kpx_status_server_close(agent->status_server);
	kpx_http_close(agent->metrics_http);
	kpx_http_close(agent->healthz_http);
	kpx_serve_free(agent->serve);
	if (agent->manifests)
		kpx_manifests_close(agent->manifests);
	if (agent->k8s)
		kpx_k8s_close(agent->k8s);
	if (agent->backend)
		agent->ops->close(agent->backend);
	kpx_timer_free(agent->tick_timer);
	kpx_timer_free(agent->resync_timer);
	kpx_timer_free(agent->sync_timer);
	if (sfd >= 0)
		close(sfd);
	kpx_plan_free(agent->plan);
	json_object_put(agent->wanted_frontends);
	kpx_store_free(agent->store);
	kpx_loop_free(agent->loop);
	free(agent->configz);
}

int kpx_agent_main(int argc, char **argv)
{
	static struct kpx_agent agent_storage;
	struct kpx_agent *agent = &agent_storage;
	enum kpx_backend_kind kind;
	int sfd = -1, err, rc = 1;

	kpx_config_defaults(&agent->cfg);
	err = kpx_config_parse_run(&agent->cfg, argc, argv);
	if (err)
		return err > 0 ? 0 : 2;
	kpx_log_verbosity = agent->cfg.verbosity;
	/* kube-proxy's --cleanup and --init-only: do that instead of running */
	if (agent->cfg.cleanup_and_exit)
		return kpx_cleanup_exec(&agent->cfg);
	if (agent->cfg.init_only) {
		kpx_info("--init-only: kpx has no privileged init step; exiting");
		return 0;
	}
	agent->start_wall = kpx_wall_seconds();
	kpx_histogram_init(&agent->stats.sync_duration, 0.001, 2);
	kpx_histogram_init(&agent->stats.full_sync_duration, 0.001, 2);
	kpx_histogram_init(&agent->stats.partial_sync_duration, 0.001, 2);
	kpx_histogram_init_programming(&agent->stats.programming_latency);
	kpx_histogram_init(&agent->stats.programming_latency_fine, 0.001, 2);

	kind = kpx_config_resolve_backend(&agent->cfg);
	agent->configz = kpx_config_render(&agent->cfg, kind);
	if (agent->cfg.write_config_to[0])
		return write_config(agent);
	agent->ops = kpx_backend_ops(kind);
	if (!agent->ops || !agent->ops->open) {
		kpx_err("backend %s is not available in this build",
			kpx_backend_name(kind));
		return 1;
	}
	if (agent->ops->probe && (err = agent->ops->probe(&agent->cfg))) {
		kpx_err("backend %s is not supported here: %s", agent->ops->name,
			strerror(-err));
		return 1;
	}
	kpx_info("kpx %s starting: node %s, backend %s, source %s",
		 KPX_VERSION, agent->cfg.hostname, agent->ops->name,
		 agent->cfg.manifests[0] ? agent->cfg.manifests : "API server");

	if ((err = kpx_loop_new(&agent->loop)) ||
	    (err = kpx_store_new(&agent->store)) ||
	    (err = setup_signals(agent, &sfd)) ||
	    (err = kpx_timer_new(agent->loop, on_sync_timer, agent,
				 &agent->sync_timer)) ||
	    (err = kpx_timer_new(agent->loop, on_resync_timer, agent,
				 &agent->resync_timer)) ||
	    (err = kpx_timer_new(agent->loop, on_tick_timer, agent,
				 &agent->tick_timer))) {
		kpx_err("agent setup: %s", strerror(-err));
		goto out;
	}
	/* Switching backend: the other one's state goes first (unless a
	 * live agent holds it), as kube-proxy removes other modes' rules. */
	kpx_cleanup_other_backend(&agent->cfg, kind);
	err = agent->ops->open(&agent->cfg, &agent->backend);
	if (err) {
		kpx_err("backend %s: open failed: %s", agent->ops->name,
			strerror(-err));
		goto out;
	}
	if (open_source(agent))
		goto out;
	open_servers(agent);
	open_config_watch(agent);
	open_rtnl(agent);
	agent->node_input_stale = !agent->rtnl;
	kpx_timer_arm(agent->resync_timer, agent->cfg.sync_ms);
	kpx_timer_arm(agent->tick_timer, KPX_TICK_MS);
	/* The manifests source loads synchronously: program right away. */
	agent->full_sync_pending = true;
	schedule_sync(agent, 0);

	err = kpx_loop_run(agent->loop);
	rc = err ? 1 : agent->exit_code;
	if (err)
		kpx_err("event loop: %s", strerror(-err));
out:
	agent_teardown(agent, sfd);
	return rc;
}
