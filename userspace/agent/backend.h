/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The datapath backend interface. A backend translates a plan into kernel
 * state (bpf: pinned maps and attached programs; nft: kpx tables) and
 * reads that state back for `kpx status` / `kpx services`.
 * Owns: nothing; each backend owns its kernel objects.
 * Must not: interpret Kubernetes semantics (the plan did that).
 */
#ifndef KPX_BACKEND_H
#define KPX_BACKEND_H

#include <stdbool.h>

#include "agent/config.h"
#include "plan/plan.h"

struct json_object;
struct kpx_backend;

struct kpx_backend_ops {
	const char *name; /* "bpf", "nft" */
	/* What the datapath can express; the plan adapts rows to it and
	 * records the difference (struct kpx_plan_row.degraded). */
	struct kpx_plan_caps caps;
	/* Kernel support check, no side effects; 0 or -EOPNOTSUPP. */
	int (*probe)(const struct kpx_config *cfg);
	/* Loads/attaches, reusing pinned state or existing tables so that a
	 * restart does not disturb established flows. */
	int (*open)(const struct kpx_config *cfg, struct kpx_backend **out);
	/* Makes the kernel equal to plan. The first call after open is a
	 * full reconcile (removes what the plan no longer has); later calls
	 * may touch only svcports whose hash changed. 0 or negative errno;
	 * on error the previous kernel state stays consistent. */
	int (*sync)(struct kpx_backend *b, const struct kpx_plan *plan);
	/* Periodic full reconcile (every --sync-period): like sync, but
	 * compares against the kernel itself rather than what the backend
	 * believes it programmed, so drift is repaired. NULL: sync. */
	int (*resync)(struct kpx_backend *b, const struct kpx_plan *plan);
	/* Periodic housekeeping (conntrack GC, stale flows); may be NULL. */
	void (*tick)(struct kpx_backend *b);
	/* Releases userspace resources; kernel state stays in place. */
	void (*close)(struct kpx_backend *b);

	/*
	 * Inspection, usable without a running agent (reads the kernel):
	 * datapath: {"backend":..., "programs"/"tables":..., "maps":...,
	 *            "drops": {...}, ...}
	 * frontends: array of {"address","port","protocol","type","service",
	 *            "port_name","affinity_timeout","backends":[{"address",
	 *            "port","state":"active"|"terminating","local",...}],
	 *            "empty_action":"reject"|"drop"|null, ...}
	 * Both return 0 or a negative errno (-ENOENT: nothing programmed).
	 */
	int (*dump_datapath)(const struct kpx_config *cfg,
			     struct json_object **out);
	int (*dump_frontends)(const struct kpx_config *cfg,
			      struct json_object **out);
	/* The service flows the datapath tracks, for `kpx conntrack`: array
	 * of {"protocol","client","frontend","backend","source_nat"|null,
	 * "service"} (bpf: kpx's own conntrack map; nft: the kernel's
	 * conntrack entries of translated flows to kpx frontends). */
	int (*dump_flows)(const struct kpx_config *cfg,
			  struct json_object **out);
	/* Removes everything this backend programmed. */
	int (*cleanup)(const struct kpx_config *cfg);
	/* After a sync that returned 0: the service ports it left out
	 * because they cannot be programmed (the others were), as *n and a
	 * message naming them; NULL when none. May be NULL. */
	const char *(*skipped)(struct kpx_backend *b, size_t *n);
};

extern const struct kpx_backend_ops kpx_bpf_backend;
extern const struct kpx_backend_ops kpx_nft_backend;

const struct kpx_backend_ops *kpx_backend_ops(enum kpx_backend_kind kind);

#endif
