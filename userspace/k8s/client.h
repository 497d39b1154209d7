/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Kubernetes API source: list+watch of Services, EndpointSlices (with
 * kube-proxy's label selector) and the own Node over libcurl multi,
 * integrated in the agent's event loop; streamed watch bodies parsed
 * incrementally with json_tokener. Relists on 410, resumes on disconnect,
 * backs off with jitter, restarts stalled watches.
 * Owns: the curl handles and the connection config.
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
};

/* Parses a kubeconfig (YAML) current-context. 0 or negative errno, err set. */
int kpx_kubeconfig_load(const char *path, struct kpx_k8s_conn *conn, char *err,
			size_t errlen);
/* KUBERNETES_SERVICE_HOST/PORT + service-account token and CA. */
int kpx_k8s_in_cluster(struct kpx_k8s_conn *conn, char *err, size_t errlen);
void kpx_k8s_conn_clear(struct kpx_k8s_conn *conn);

struct kpx_k8s_options {
	struct kpx_k8s_conn conn;
	char node_name[KPX_NAME_MAX];
	/* Watch stall detection and backoff bounds, ms (0: defaults). */
	uint64_t stall_ms;
	uint64_t backoff_min_ms, backoff_max_ms;
	uint32_t page_limit; /* LIST limit; 0: 500 */
};

int kpx_k8s_open(struct kpx_loop *loop, const struct kpx_k8s_options *opts,
		 struct kpx_store *store, kpx_change_fn on_change, void *arg,
		 struct kpx_k8s_source **out);
void kpx_k8s_close(struct kpx_k8s_source *src);
/* {"kind":"api","server":...,"watches":{"services":{"state":"watching",
 *  "resource_version":...,"relists":N,"errors":N,"last_error":...},...}} */
struct json_object *kpx_k8s_status(const struct kpx_k8s_source *src);

#endif
