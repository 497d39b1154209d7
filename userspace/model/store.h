/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The object store: the latest Services, EndpointSlices and own Node as
 * seen by a source, and a change tracker of which services changed since
 * the last sync. Sources write into it; the plan reads from it.
 * Owns: the decoded objects (ownership is transferred on upsert).
 * Must not: compute Service semantics (that is plan/), do I/O.
 */
#ifndef KPX_STORE_H
#define KPX_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "k8s/objects.h"

struct kpx_store;

struct kpx_store_stats {
	uint64_t service_changes_total;
	uint64_t endpoint_changes_total; /* slice add/update/delete */
	uint64_t service_changes_pending;
	uint64_t endpoint_changes_pending;
	double last_queued_wall; /* wall-clock s of the oldest unsynced change */
	size_t n_services;
	size_t n_slices;
};

int kpx_store_new(struct kpx_store **out);
void kpx_store_free(struct kpx_store *s);

/* Takes ownership of obj. An unchanged resourceVersion is not a change. */
void kpx_store_upsert(struct kpx_store *s, enum kpx_kind kind, void *obj);
void kpx_store_delete(struct kpx_store *s, enum kpx_kind kind, const char *ns,
		      const char *name);
/*
 * A full listing (API relist after 410, manifests directory re-read):
 * objects of kind not upserted between begin and end are deleted at end,
 * and kind is marked synced.
 */
void kpx_store_replace_begin(struct kpx_store *s, enum kpx_kind kind);
void kpx_store_replace_end(struct kpx_store *s, enum kpx_kind kind);
void kpx_store_mark_synced(struct kpx_store *s, enum kpx_kind kind);
bool kpx_store_kind_synced(const struct kpx_store *s, enum kpx_kind kind);

/* NULL when absent. Pointers are valid until the next write. */
const struct kpx_service *kpx_store_service(const struct kpx_store *s,
					    const char *ns, const char *name);
const struct kpx_node *kpx_store_node(const struct kpx_store *s);
/* The Service holding a as a ClusterIP (the API server allocated it), or
 * NULL. A change of who holds an address marks the Services that write
 * it as an externalIP or LoadBalancer IP dirty. */
const struct kpx_service *kpx_store_cluster_ip_owner(const struct kpx_store *s,
						     const struct kpx_addr *a);

typedef void (*kpx_service_fn)(const struct kpx_service *svc, void *arg);
typedef void (*kpx_slice_fn)(const struct kpx_endpoint_slice *slice,
			     void *arg);
/* Services in (namespace, name) order. */
void kpx_store_for_each_service(const struct kpx_store *s, kpx_service_fn fn,
				void *arg);
/* Slices labelled kubernetes.io/service-name=name in ns, in name order. */
void kpx_store_for_each_slice_of(const struct kpx_store *s, const char *ns,
				 const char *service_name, kpx_slice_fn fn,
				 void *arg);

/* Change tracker. */
bool kpx_store_dirty(const struct kpx_store *s);
/* "ns/name" of each service changed since the last clear. */
typedef void (*kpx_dirty_fn)(const char *ns, const char *name, void *arg);
void kpx_store_for_each_dirty(const struct kpx_store *s, kpx_dirty_fn fn,
			      void *arg);
void kpx_store_clear_dirty(struct kpx_store *s);
/* The last-change-trigger-times (wall-clock seconds) of the slice changes
 * since the last clear, for the network programming latency; valid until
 * the next write or clear. */
size_t kpx_store_trigger_times(const struct kpx_store *s, const double **out);
/* True when a change could not be recorded (out of memory): the dirty set
 * is incomplete and consumers must treat every service as changed. */
bool kpx_store_dirty_overflow(const struct kpx_store *s);
void kpx_store_get_stats(const struct kpx_store *s,
			 struct kpx_store_stats *out);

#endif
