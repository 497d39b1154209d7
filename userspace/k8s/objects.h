/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Typed, validated Kubernetes objects that kpx consumes: Service (v1),
 * EndpointSlice (discovery.k8s.io/v1), Node (v1). Both sources (API server
 * and manifests directory) decode JSON through these functions, so every
 * object is validated in exactly one place.
 * Owns: decoding and validation. Must not: keep state, do I/O.
 */
#ifndef KPX_OBJECTS_H
#define KPX_OBJECTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/addr.h"
#include "common/intern.h"

struct json_object;

#define KPX_NS_MAX 64	/* DNS label 63 + NUL */
#define KPX_NAME_MAX 254 /* DNS subdomain 253 + NUL */
#define KPX_PORTNAME_MAX 64
#define KPX_ZONE_MAX 64
#define KPX_RV_MAX 32
/* Objects larger than these limits are rejected as oversized. */
#define KPX_MAX_PORTS 256
#define KPX_MAX_IPS 64
#define KPX_MAX_ENDPOINTS 1000 /* the API caps a slice at 1000 */

enum kpx_proto {
	KPX_PROTO_TCP = 6,
	KPX_PROTO_UDP = 17,
	KPX_PROTO_SCTP = 132,
};

enum kpx_kind {
	KPX_KIND_SERVICE,
	KPX_KIND_SLICE,
	KPX_KIND_NODE,
	KPX_KIND_COUNT,
};

enum kpx_svc_type {
	KPX_SVC_CLUSTER_IP,
	KPX_SVC_NODE_PORT,
	KPX_SVC_LOAD_BALANCER,
	KPX_SVC_EXTERNAL_NAME,
};

/*
 * Strings of Services and EndpointSlices (ns, name, service_name, port,
 * node and zone names) are interned (common/intern.h): never NULL ("" is
 * kpx_intern_empty), one reference each, dropped by the _free functions.
 * Whoever builds an object by hand sets them with kpx_intern(). These
 * structs are what the store holds for every object, a million endpoints
 * at 100,000 Services: keep them small.
 */
struct kpx_svc_port {
	const char *name;
	uint8_t proto;
	uint16_t port;
	uint16_t node_port; /* 0: none */
};

struct kpx_service {
	const char *ns;
	const char *name;
	char resource_version[KPX_RV_MAX];
	enum kpx_svc_type type;
	/* clusterIP "None": no frontends; kube-proxy ignores it. */
	bool headless;
	/* Labelled service.kubernetes.io/service-proxy-name or /headless:
	 * the API source filters these by label selector, the manifests
	 * source sets this and the plan skips them. */
	bool proxy_ignored;
	struct kpx_addr *cluster_ips; /* spec.clusterIPs (or clusterIP) */
	size_t n_cluster_ips;
	struct kpx_addr *external_ips;
	size_t n_external_ips;
	struct kpx_addr *lb_ips; /* status.loadBalancer.ingress[].ip, ipMode VIP */
	size_t n_lb_ips;
	struct kpx_cidr *lb_source_ranges;
	size_t n_lb_source_ranges;
	struct kpx_svc_port *ports;
	size_t n_ports;
	bool etp_local; /* externalTrafficPolicy: Local */
	bool itp_local; /* internalTrafficPolicy: Local */
	uint32_t affinity_timeout; /* seconds; 0: sessionAffinity None */
	uint16_t health_check_node_port;
};

struct kpx_endpoint {
	struct kpx_addr addr;	/* addresses[0], as kube-proxy */
	bool ready : 1;		/* nil -> true */
	bool serving : 1;	/* nil -> ready's value, as the API documents */
	bool terminating : 1;	/* nil -> false */
	uint8_t n_hint_zones;	/* at most MAX_HINTS (64) */
	uint8_t n_hint_nodes;
	const char *node_name;
	const char *zone;
	const char **hint_zones; /* interned, or NULL when none */
	const char **hint_nodes; /* hints.forNodes (PreferSameNode) */
};

struct kpx_slice_port {
	const char *name;
	uint8_t proto;
	uint16_t port; /* 0: port unset; kube-proxy skips such ports */
};

struct kpx_endpoint_slice {
	const char *ns;
	const char *name;
	char resource_version[KPX_RV_MAX];
	const char *service_name; /* kubernetes.io/service-name */
	bool proxy_ignored;		 /* as for services */
	uint8_t family;			 /* AF_INET/AF_INET6 (FQDN: rejected) */
	/* endpoints.kubernetes.io/last-change-trigger-time as wall-clock
	 * seconds (0: absent): the start of network programming latency. */
	double trigger_wall;
	struct kpx_slice_port *ports;
	size_t n_ports;
	struct kpx_endpoint *endpoints;
	size_t n_endpoints;
};

struct kpx_node {
	char name[KPX_NAME_MAX];
	char zone[KPX_ZONE_MAX]; /* topology.kubernetes.io/zone */
	bool deleting;		 /* metadata.deletionTimestamp set */
	bool to_be_deleted;	 /* ToBeDeletedByClusterAutoscaler taint */
	struct kpx_addr *addrs;	 /* status.addresses InternalIP/ExternalIP */
	size_t n_addrs;
};

/*
 * Decoders return 0 and a new object, or a negative errno and a reason in
 * err (e.g. "spec.ports[1].port: 70000 out of range"). The caller names
 * the object (file, namespace/name) when it logs the reason.
 */
int kpx_service_decode(struct json_object *obj, struct kpx_service **out,
		       char *err, size_t errlen);
int kpx_slice_decode(struct json_object *obj, struct kpx_endpoint_slice **out,
		     char *err, size_t errlen);
int kpx_node_decode(struct json_object *obj, struct kpx_node **out, char *err,
		    size_t errlen);
/* kind of a decoded object from its "kind"/"apiVersion"; -1: not ours. */
int kpx_object_kind(struct json_object *obj);
/* "namespace/name" of any object, for error messages. */
const char *kpx_object_ref(struct json_object *obj, char *buf, size_t len);

void kpx_service_free(struct kpx_service *svc);
void kpx_slice_free(struct kpx_endpoint_slice *slice);
void kpx_node_free(struct kpx_node *node);
void kpx_object_free(enum kpx_kind kind, void *obj);

const char *kpx_proto_name(uint8_t proto); /* "TCP", "UDP", "SCTP" */

#endif
