/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Kubernetes API source: list+watch of Services, EndpointSlices (with
 * kube-proxy's label selector) and the own Node over libcurl multi,
 * integrated in the agent's event loop; streamed watch bodies parsed
 * incrementally with json_tokener. The initial state by streaming list
 * (sendInitialEvents) or paginated LIST; relists on 410, resumes on
 * disconnect, backs off with jitter, restarts stalled watches. The
 * connection config (kubeconfig.c): kubeconfig or in-cluster, exec
 * credential plugins, proxy choice, tls-server-name.
 * Owns: the curl handles, the connection config, the exec plugin's
 * child process while it runs.
 * Must not: interpret objects beyond decoding.
 */
#ifndef KPX_K8S_CLIENT_H
#define KPX_K8S_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include "k8s/manifests.h" /* kpx_change_fn */
#include "k8s/objects.h"

struct kpx_loop;
struct kpx_store;
struct json_object;
struct kpx_k8s_source;

/* Connection parameters, from a kubeconfig or the in-cluster config. */
struct kpx_k8s_conn {
	char server[512];	/* https://host:port */
	char ca_file[4096];	/* PEM file, or "" */
	char *ca_data;		/* PEM (decoded), or NULL */
	char cert_file[4096];
	char *cert_data;
	char key_file[4096];
	char *key_data;
	char token[8192];
	char token_file[4096]; /* re-read when it changes (rotation) */
	bool insecure;
	/* clusters[].cluster.tls-server-name: SNI and the name the server
	 * certificate is verified against, when not the URL's host. */
	char tls_server_name[256];
	/* clusters[].cluster.proxy-url (http, https, socks5, socks5h):
	 * every request goes through it, the environment is not read. */
	char proxy_url[1024];
	char username[256], password[256]; /* users[].user basic auth */
	/* users[].user.exec, validated when loaded, as one JSON object
	 * (malloc'd): {"command", "args", "env": [{"name","value"}],
	 * "apiVersion", "interactiveMode", "provideClusterInfo",
	 * "installHint", "cluster": ExecCredential spec.cluster}. */
	char *exec;
};

/* A credential from an exec plugin (client.authentication.k8s.io/v1 or
 * v1beta1 ExecCredential status). */
struct kpx_k8s_exec_cred {
	char token[8192];
	char *cert_pem, *key_pem; /* malloc'd PEM, or NULL */
	int64_t expiry;		  /* unix seconds; 0: until a 401 */
};

/*
 * Runs the exec plugin as client-go does, without a shell: fork/execve of
 * the command (PATH lookup when it has no '/'), its args, the process
 * environment plus the plugin's env entries plus KUBERNETES_EXEC_INFO
 * (spec.interactive=false; spec.cluster with provideClusterInfo), stdin
 * /dev/null, stderr lines to the log. Killed after timeout_ms; stdout is
 * bounded. 0 or negative errno with err set.
 */
int kpx_k8s_exec_run(const char *exec_json, uint64_t timeout_ms,
		     struct kpx_k8s_exec_cred *out, char *err, size_t errlen);
void kpx_k8s_exec_cred_clear(struct kpx_k8s_exec_cred *c);
/* RFC 3339 (metav1.Time) to unix seconds. */
int kpx_k8s_parse_rfc3339(const char *s, int64_t *out);
/*
 * The proxy client-go's http.ProxyFromEnvironment picks for url
 * (golang.org/x/net/http/httpproxy): https_proxy for https URLs,
 * http_proxy for http ones; never for localhost or a loopback address;
 * no_proxy entries "*", CIDRs, IPs, [IPv6], domains (suffix match,
 * "foo.com" also matching itself, ".foo.com" and "*.foo.com" only
 * subdomains), each with an optional :port. out gets the proxy URL
 * ("http://" added when it has no scheme) or "" for a direct connection.
 */
int kpx_k8s_proxy_for(const char *url, const char *https_proxy,
		      const char *http_proxy, const char *no_proxy, char *out,
		      size_t outlen);

/* Parses a kubeconfig (YAML) current-context. 0 or negative errno, err set. */
int kpx_kubeconfig_load(const char *path, struct kpx_k8s_conn *conn, char *err,
			size_t errlen);
/* KUBERNETES_SERVICE_HOST/PORT + service-account token and CA. */
int kpx_k8s_in_cluster(struct kpx_k8s_conn *conn, char *err, size_t errlen);
void kpx_k8s_conn_clear(struct kpx_k8s_conn *conn);

struct kpx_k8s_options {
	struct kpx_k8s_conn conn;
	char node_name[KPX_NAME_MAX];
	/*
	 * Watch stall bound, ms (0: 120 s): a watch whose server has sent
	 * bookmarks (about one a minute) and then sends no byte for this
	 * long is restarted from its resourceVersion. A server that never
	 * sent a bookmark is given timeoutSeconds + 30 s instead.
	 */
	uint64_t stall_ms;
	/* Retry backoff (0: 500 ms .. 30 s, doubling, +50% jitter); a watch
	 * open for backoff_reset_ms (0: 60 s) clears the failure streak. */
	uint64_t backoff_min_ms, backoff_max_ms, backoff_reset_ms;
	uint32_t page_limit; /* LIST limit; 0: 500 */
	/* Watch timeoutSeconds; 0: random in [300, 600] as client-go. */
	uint32_t watch_timeout_s;
	/* Never try the streaming list (sendInitialEvents); LIST only. */
	bool no_watch_list;
};

/* rest_client_* metrics as client-go counts them (method is always GET:
 * kpx only lists and watches). */
#define KPX_K8S_REST_BUCKETS 12
#define KPX_K8S_REST_CODES 16
struct kpx_k8s_rest_stats {
	char host[256]; /* host[:port] of the API server URL */
	struct {
		int code; /* HTTP status; 0: "<error>" (no response) */
		uint64_t count;
	} codes[KPX_K8S_REST_CODES];
	size_t n_codes;
	/* Time to response headers (for watches too), seconds; counts are
	 * cumulative as the exposition format wants them. */
	double bounds[KPX_K8S_REST_BUCKETS];
	uint64_t buckets[KPX_K8S_REST_BUCKETS];
	uint64_t count;
	double sum;
};

int kpx_k8s_open(struct kpx_loop *loop, const struct kpx_k8s_options *opts,
		 struct kpx_store *store, kpx_change_fn on_change, void *arg,
		 struct kpx_k8s_source **out);
void kpx_k8s_close(struct kpx_k8s_source *src);
/* {"kind":"api","server":...,"watches":{"services":{"state":"watching",
 *  "resource_version":...,"relists":N,"errors":N,"last_error":...},...}} */
struct json_object *kpx_k8s_status(const struct kpx_k8s_source *src);
/* Copies the request counters (for /metrics). -ENOENT when src is NULL. */
int kpx_k8s_rest_stats(const struct kpx_k8s_source *src,
		       struct kpx_k8s_rest_stats *out);

/*
 * The watch-stream parser alone, for tests and fuzzing: feeds body to a
 * fresh watch of kind writing into store, in pieces of chunk bytes (0:
 * whole), as libcurl would. 0, or -EPROTO when the stream would be
 * abandoned (reason in err). No network, no timers.
 */
int kpx_k8s_watch_feed(struct kpx_store *store, enum kpx_kind kind,
		       const char *body, size_t len, size_t chunk, char *err,
		       size_t errlen);

#endif
