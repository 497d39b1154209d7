/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to the serving modules (http.c, metrics.c, hcnp.c,
 * status_server.c): a libmicrohttpd daemon driven by the agent loop, the
 * health evaluation and the Prometheus rendering, split out as pure
 * functions so unit tests can feed them a fake agent.
 * Owns: nothing beyond the daemons it starts. Must not: change agent state
 * (request counters excepted).
 */
#ifndef KPX_SERVE_PRIV_H
#define KPX_SERVE_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <microhttpd.h>

struct kpx_agent;
struct kpx_loop;
struct kpx_node;
struct kpx_plan;
struct json_object;

/* ---- MHD daemon in the agent loop (http.c) ---- */

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

typedef void (*kpx_httpd_handler)(void *arg, const struct kpx_request *req,
				  struct kpx_reply *rep);

struct kpx_httpd;

/*
 * Listens on bind_addr ("IP:port", "[v6]:port", ":port" = all addresses,
 * dual-stack when the kernel allows). Returns 0 or a negative errno
 * (-EADDRINUSE...). The caller logs.
 */
int kpx_httpd_start(struct kpx_loop *loop, const char *bind_addr,
		    kpx_httpd_handler handler, void *arg,
		    struct kpx_httpd **out);
void kpx_httpd_stop(struct kpx_httpd *d);
/* Parses a bind address into a sockaddr; port 0 is invalid. */
int kpx_bind_parse(const char *s, struct sockaddr_storage *ss,
		   socklen_t *len);

/* ---- health (metrics.c) ---- */

struct kpx_health {
	bool healthy;	    /* sync freshness only (/livez, hcnp) */
	bool node_eligible; /* own Node not deleting/tainted */
	double last_updated;
	double now;
};

/* Pure: node may be NULL (unknown: eligible, as kube-proxy at start). */
void kpx_health_eval(const struct kpx_agent *agent, const struct kpx_node *node,
		     double now, struct kpx_health *out);
/* kube-proxy's Go time.Time String() layout, UTC. */
void kpx_go_time(double wall, char *buf, size_t len);
/* Body of /healthz (with_node) or /livez. malloc'd. */
char *kpx_health_body(const struct kpx_health *h, bool with_node,
		      size_t *len);

/* ---- metrics (metrics.c) ---- */

/* Renders every metric into f. datapath may be NULL (not available). */
void kpx_metrics_write(FILE *f, const struct kpx_agent *agent,
		       const struct json_object *datapath,
		       const struct json_object *frontends);
/* Whole /metrics body for the live agent (reads the kernel). malloc'd. */
char *kpx_metrics_render(struct kpx_agent *agent, size_t *len);

/* ---- expected kernel state from a plan (status_server.c) ---- */

/*
 * The frontends a backend-neutral kernel dump should show for plan:
 * [{"address","port","protocol","service","backends":[{"address","port"}]}]
 * with the backends of the set that outside/cluster traffic to that
 * frontend gets (internal set for ClusterIP, external set otherwise).
 */
struct json_object *kpx_plan_expected_frontends(const struct kpx_plan *plan);

#endif
