/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to the serving modules (http.c, metrics.c, hcnp.c,
 * status_server.c).
 *
 * HTTP runs on libmicrohttpd's own threads, never on the agent loop, so
 * that slow or many clients cannot hold up syncing and a busy loop cannot
 * hold up health checks. The two sides meet only in struct kpx_serve: the
 * loop publishes what the handlers may read (health inputs, readiness, the
 * agent's metrics text) under its mutex at each sync, source change and
 * tick; handlers copy it out and never touch struct kpx_agent.
 * Owns: the daemons it starts and the published state.
 * Must not: change agent state.
 */
#ifndef KPX_SERVE_PRIV_H
#define KPX_SERVE_PRIV_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <microhttpd.h>

#include "agent/config.h"

struct kpx_agent;
struct kpx_node;
struct kpx_plan;
struct kpx_backend_ops;
struct json_object;

/* ---- one HTTP listener on its own threads (http.c) ---- */

struct kpx_request {
	const char *url;
	const char *method;
};

struct kpx_reply {
	unsigned int status;
	const char *content_type;
	char *body; /* malloc'd, freed by the daemon */
	size_t len;
	/* Optional extra header. */
	const char *hdr_name;
	char hdr_value[64];
};

/* Runs on a daemon thread: may read only what arg owns and struct
 * kpx_serve (through its accessors). */
typedef void (*kpx_httpd_handler)(void *arg, const struct kpx_request *req,
				  struct kpx_reply *rep);

struct kpx_httpd;

/* Resource bounds of one listener. */
struct kpx_httpd_limits {
	unsigned int threads;	  /* 1: one epoll thread; >1: a pool */
	unsigned int conn_limit;  /* connections at once */
	unsigned int per_ip;	  /* connections at once from one address */
	size_t stack_size;	  /* per thread; 0: libc default */
	/* After an answer: time to send it and receive the next request
	 * head (a long /metrics body needs longer than a health reply). */
	unsigned int answer_ms;
};

/* Healthz/readyz/livez, metrics, one healthCheckNodePort. */
extern const struct kpx_httpd_limits kpx_httpd_health_limits;
extern const struct kpx_httpd_limits kpx_httpd_metrics_limits;
extern const struct kpx_httpd_limits kpx_httpd_hcnp_limits;

/*
 * Listens on bind_addr ("IP:port", "[v6]:port", ":port" = all addresses,
 * dual-stack when the kernel allows) and serves from threads of its own.
 * A client gets KPX_HTTP_REQUEST_DEADLINE_MS to send its first request
 * head, lim->answer_ms after each answer to take it and send the next,
 * and is idle-closed after KPX_HTTP_IDLE_TIMEOUT_S. Returns 0
 * or a negative errno (-EADDRINUSE...); the caller logs.
 */
int kpx_httpd_start(const char *bind_addr, const struct kpx_httpd_limits *lim,
		    kpx_httpd_handler handler, void *arg,
		    struct kpx_httpd **out);
/* Closes the listener and every connection; no handler runs afterwards. */
void kpx_httpd_stop(struct kpx_httpd *d);
/* Parses a bind address into a sockaddr; port 0 is invalid. */
int kpx_bind_parse(const char *s, struct sockaddr_storage *ss,
		   socklen_t *len);

#define KPX_HTTP_REQUEST_DEADLINE_MS 3000
#define KPX_HTTP_IDLE_TIMEOUT_S 3

/* ---- health (metrics.c) ---- */

/* What health depends on, copied from the agent by the loop. */
struct kpx_health_input {
	uint64_t sync_ms;	 /* --sync-period */
	double last_sync_wall;	 /* last successful sync, 0: never */
	double last_queued_wall; /* oldest unsynced change, 0: none */
	bool node_eligible;	 /* own Node not deleting/tainted */
};

struct kpx_health {
	bool healthy;	    /* sync freshness only (/livez, hcnp) */
	bool node_eligible; /* own Node not deleting/tainted */
	double last_updated;
	double now;
};

/* Pure. */
void kpx_health_eval_input(const struct kpx_health_input *in, double now,
			   struct kpx_health *out);
/* The same from a live agent (loop thread only). node may be NULL
 * (unknown: eligible, as kube-proxy at start). */
void kpx_health_input_of(const struct kpx_agent *agent,
			 const struct kpx_node *node,
			 struct kpx_health_input *out);
void kpx_health_eval(const struct kpx_agent *agent, const struct kpx_node *node,
		     double now, struct kpx_health *out);
/* kube-proxy's Go time.Time String() layout, UTC. */
void kpx_go_time(double wall, char *buf, size_t len);
/* Body of /healthz (with_node) or /livez. malloc'd. */
char *kpx_health_body(const struct kpx_health *h, bool with_node,
		      size_t *len);

/* ---- readiness (metrics.c) ---- */

/* Ready: synced at least once (both sources listed, datapath programmed)
 * and healthy now. reason says what is missing. */
struct kpx_ready_input {
	bool synced_once;
	double first_sync_wall;
	char reason[768]; /* why not synced yet; "" once synced */
};

/* Loop thread only. */
void kpx_ready_input_of(const struct kpx_agent *agent,
			struct kpx_ready_input *out);
/* Pure: status (200/503) and malloc'd JSON body of /readyz. */
char *kpx_ready_body(const struct kpx_ready_input *r,
		     const struct kpx_health *h, unsigned int *status,
		     size_t *len);

/* ---- published state shared with the HTTP threads (metrics.c) ---- */

/* Counters the handlers bump (atomically). [0]=200, [1]=503. */
struct kpx_serve_counters {
	uint64_t healthz[2];
	uint64_t livez[2];
	uint64_t readyz[2];
};

/* Immutable, reference-counted text. */
struct kpx_text {
	int refs;
	size_t len;
	char s[];
};

struct kpx_serve {
	pthread_mutex_t lock; /* guards the published fields below */
	struct kpx_health_input health;
	struct kpx_ready_input ready;
	struct kpx_text *agent_metrics; /* the agent's part of /metrics */
	uint64_t metrics_ms;		/* monotonic, when it was rendered */
	uint64_t metrics_syncs;		/* syncs + errors it saw */

	struct kpx_serve_counters counters; /* __atomic only */

	/* Set once before any daemon starts, read-only afterwards. */
	const char *proxy_mode;
	const char *configz; /* agent->configz, freed after the servers */
	const struct kpx_backend_ops *ops;
	struct kpx_config cfg;

	/* Datapath metrics are read from the kernel by the scraping thread,
	 * one dump at a time: scrapes that arrive while a dump runs wait for
	 * the next one to start and share it, so a scrape flood costs one
	 * dump in flight, and no scrape sees numbers older than itself. */
	pthread_mutex_t dp_lock;
	struct kpx_text *dp_text;
	uint64_t dp_started_ns; /* monotonic */
};

/* Agent metrics are rendered again on a source change at most this
 * often (a sync or failed sync always renders). */
#define KPX_METRICS_AGENT_MIN_MS 1000

int kpx_serve_new(struct kpx_agent *agent, struct kpx_serve **out);
void kpx_serve_free(struct kpx_serve *s);
/* Loop thread: copies health and readiness (cheap), and renders the
 * agent's metrics text when a sync happened since or it is older than
 * KPX_METRICS_AGENT_MIN_MS. */
void kpx_serve_publish(struct kpx_serve *s, struct kpx_agent *agent);
/* Any thread: copies of the published state. */
void kpx_serve_health(struct kpx_serve *s, struct kpx_health_input *h,
		      struct kpx_ready_input *r);
struct kpx_text *kpx_serve_agent_metrics(struct kpx_serve *s);
void kpx_text_put(struct kpx_text *t);
void kpx_serve_count(uint64_t *pair, bool ok);
/* Whole /metrics body, built on the calling (HTTP) thread. malloc'd. */
char *kpx_serve_metrics(struct kpx_serve *s, size_t *len);

/* ---- metrics (metrics.c) ---- */

/* Standard process_* metrics of the Prometheus client libraries. */
struct kpx_proc_stats {
	double cpu_seconds;
	double resident_bytes;
	double virtual_bytes;
	double open_fds;
	double max_fds;
	double start_time;
};
/* Pure: from the text of /proc/self/stat; ticks = sysconf(_SC_CLK_TCK),
 * btime from /proc/stat. 0 or -EINVAL. */
int kpx_proc_parse_stat(const char *stat, long ticks, long page_size,
			double btime, struct kpx_proc_stats *out);
/* Reads the calling process's numbers. */
int kpx_proc_stats_read(struct kpx_proc_stats *out);
void kpx_metrics_write_process(FILE *f, const struct kpx_proc_stats *p);
void kpx_metrics_write_counters(FILE *f, const struct kpx_serve_counters *c);
/* The agent's own metrics (loop thread): sync histograms, store and plan
 * counts, kube-proxy's names and labels. */
void kpx_metrics_write_agent(FILE *f, const struct kpx_agent *agent);
/* Datapath dumps (either may be NULL). */
void kpx_metrics_write_datapath(FILE *f, const struct json_object *datapath,
				const struct json_object *frontends);
/* Agent part and datapath part together (tests). */
void kpx_metrics_write(FILE *f, const struct kpx_agent *agent,
		       const struct json_object *datapath,
		       const struct json_object *frontends);

/* ---- expected kernel state from a plan (status_server.c) ---- */

/*
 * The frontends a backend-neutral kernel dump should show for plan:
 * [{"address","port","protocol","service","backends":[{"address","port"}]}]
 * with the backends of the set that outside/cluster traffic to that
 * frontend gets (internal set for ClusterIP, external set otherwise).
 */
struct json_object *kpx_plan_expected_frontends(const struct kpx_plan *plan);

#endif
