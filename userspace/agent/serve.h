/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the agent serves: /healthz, /readyz, /livez, /metrics, /proxyMode
 * over libmicrohttpd on threads of their own (never the agent loop), the
 * status socket for `kpx status`/`kpx services` (on the loop), and one
 * healthCheckNodePort server per eTP=Local service (own threads).
 * HTTP handlers read only the state the loop publishes (serve_priv.h).
 * Owns: the listening sockets. Must not: change agent state.
 */
#ifndef KPX_SERVE_H
#define KPX_SERVE_H

#include <stdbool.h>
#include <stddef.h>

struct kpx_agent;
struct kpx_plan;
struct kpx_http;
struct kpx_status_server;
struct kpx_hcnp;
struct json_object;

enum kpx_http_role {
	KPX_HTTP_HEALTHZ, /* /healthz, /readyz, /livez */
	KPX_HTTP_METRICS, /* /metrics, /proxyMode */
};

/* bind_addr "IP:port" or ":port"; agent->serve must exist. 0 or a
 * negative errno. */
int kpx_http_open(struct kpx_agent *agent, const char *bind_addr,
		  enum kpx_http_role role, struct kpx_http **out);
void kpx_http_close(struct kpx_http *http);

/*
 * Agents started with the default path listen on a twin per network
 * namespace, /run/kpx/kpx-netns-<inode>.sock, and on the default itself
 * unless a live agent has it: several agents on one host (one per netns)
 * never take each other's socket. A client asking for the default gets
 * the twin of its own netns when one exists (also after its agent
 * stopped: the twin is left in place), else the default.
 */
void kpx_state_socket_resolve(char *path, size_t len);
/* Someone accepts on path: a live agent (a stale socket file refuses). */
bool kpx_state_socket_live(const char *path);

/* Unix socket at path (parent directory created; the default as above);
 * one JSON request line in ({"cmd":"status"|"services"|"plan"}), one JSON
 * document out. */
int kpx_status_server_open(struct kpx_agent *agent, const char *path,
			   struct kpx_status_server **out);
void kpx_status_server_close(struct kpx_status_server *srv);
/* Client side, on a path already resolved (kpx_state_socket_resolve):
 * sends cmd and returns the parsed reply; -ECONNREFUSED or -ENOENT when
 * no agent listens. */
int kpx_status_request(const char *path, const char *cmd,
		       struct json_object **reply);

/* agent->serve must exist. */
int kpx_hcnp_new(struct kpx_agent *agent, struct kpx_hcnp **out);
/* Loop thread: opens/closes servers so there is one per hc_node_port in
 * plan, and publishes their local endpoint counts. */
void kpx_hcnp_update(struct kpx_hcnp *h, const struct kpx_plan *plan);
void kpx_hcnp_free(struct kpx_hcnp *h);

#endif
