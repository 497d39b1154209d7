/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The node agent (`kpx run`): wires a source, the store, the plan and a
 * backend together in one event loop, and exposes its state to the status
 * socket, /metrics, /healthz and the healthCheckNodePort servers.
 * Owns: the sync loop and the last programmed plan.
 * Must not: interpret Services (plan/) or touch the kernel (backends).
 */
#ifndef KPX_AGENT_H
#define KPX_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/backend.h"
#include "agent/config.h"

struct json_object;
struct kpx_loop;
struct kpx_timer;
struct kpx_store;
struct kpx_plan;
struct kpx_manifests_source;
struct kpx_k8s_source;
struct kpx_http;
struct kpx_status_server;
struct kpx_hcnp;
struct kpx_serve;

/* Prometheus-style histogram with fixed exponential buckets. */
#define KPX_HIST_BUCKETS 80 /* kube-proxy's programming latency has 80 */
struct kpx_histogram {
	double bounds[KPX_HIST_BUCKETS]; /* upper bounds, seconds */
	uint64_t counts[KPX_HIST_BUCKETS]; /* cumulative at render time */
	uint64_t count;
	double sum;
};
void kpx_histogram_init(struct kpx_histogram *h, double start, double factor);
/* kube-proxy's NetworkProgrammingLatency buckets: 0.25 s, 0.5 s, 1..59 s,
 * 60..115 s by 5, 120..300 s by 30. */
void kpx_histogram_init_programming(struct kpx_histogram *h);
void kpx_histogram_observe(struct kpx_histogram *h, double value);

/* One network programming latency sample (*d, seconds) for a change
 * triggered at TRIGGER and programmed at NOW; false for a change made
 * before the agent started (START_WALL): kube-proxy skips those too (its
 * tracker's start time), else every slice's old annotation would count as
 * minutes of latency at each restart. */
bool kpx_programming_sample(double start_wall, double now, double trigger,
			    double *d);

/* The shortest time from the start of one sync to the start of the next,
 * given the duration of the last change-driven sync (seconds). */
uint64_t kpx_sync_period_ms(const struct kpx_config *cfg, double sync_cost);

struct kpx_sync_stats {
	uint64_t syncs_total;
	uint64_t sync_errors_total;
	double last_sync_wall;		   /* wall s of last successful sync */
	double last_sync_seconds;	   /* its duration */
	double last_queued_wall;	   /* wall s of the oldest unsynced change */
	double last_error_wall;
	char last_error[256];
	struct kpx_histogram sync_duration;	    /* all syncs */
	struct kpx_histogram full_sync_duration;    /* resyncs */
	struct kpx_histogram partial_sync_duration; /* change-driven */
	/* change -> programmed: from each slice's last-change-trigger-time
	 * (else from when kpx received the change), kube-proxy's buckets and
	 * kpx's own 1 ms x 2^k ones */
	struct kpx_histogram programming_latency;
	struct kpx_histogram programming_latency_fine;
};

struct mnl_socket;

struct kpx_agent {
	struct kpx_config cfg;
	double start_wall;
	struct kpx_loop *loop;
	struct kpx_store *store;
	const struct kpx_backend_ops *ops;
	struct kpx_backend *backend;
	struct kpx_plan *plan; /* last successfully programmed, or NULL */
	/* After a failed sync, what it wanted (`kpx services --verify`
	 * compares the kernel with it); NULL after a successful one. */
	struct json_object *wanted_frontends;
	struct kpx_plan_input plan_input;

	struct kpx_manifests_source *manifests;
	struct kpx_k8s_source *k8s;

	struct kpx_timer *sync_timer;
	struct kpx_timer *resync_timer;
	struct kpx_timer *tick_timer;
	uint64_t last_sync_ms; /* monotonic, for --min-sync-period */
	/* Duration of the last change-driven sync (of the first sync until
	 * there is one), seconds: the adaptive period's base. */
	double sync_cost;
	bool sync_pending;
	bool full_sync_pending;
	uint64_t retry_ms;    /* current retry delay after failed syncs */
	uint64_t refused_sig; /* kpx_plan_count_refused of the last log */
	bool resync_due; /* periodic: reconcile against the kernel itself */
	/* Node addresses and default routes are read again only after
	 * rtnetlink said they changed (or when it could not be watched). */
	struct mnl_socket *rtnl;
	bool node_input_stale;

	struct kpx_sync_stats stats;

	/* What the HTTP threads may read, published by the loop. */
	struct kpx_serve *serve;
	struct kpx_http *healthz_http;
	struct kpx_http *metrics_http;
	struct kpx_status_server *status_server;
	struct kpx_hcnp *hcnp;

	/* The effective configuration as /configz serves it, rendered once
	 * at start and never changed: any thread may read it. */
	char *configz;
	struct kpx_config_watch *config_watch;
	int exit_code; /* of kpx_agent_main when the loop stops cleanly */
};

/* `kpx run`: returns the process exit code. */
int kpx_agent_main(int argc, char **argv);
/* Healthy as kube-proxy: no queued change older than 2 x sync period. */
bool kpx_agent_healthy(const struct kpx_agent *agent);
/* The "agent" section of `kpx status -o json`. */
struct json_object *kpx_agent_status_json(const struct kpx_agent *agent);

#endif
