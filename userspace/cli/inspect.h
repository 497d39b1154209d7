/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared by `kpx status` and `kpx services`: their common flags, finding
 * the backend whose state is in the kernel, and small JSON accessors.
 * Owns: nothing. Must not: change kernel or agent state.
 */
#ifndef KPX_CLI_INSPECT_H
#define KPX_CLI_INSPECT_H

#include <stdbool.h>
#include <stdint.h>

#include "agent/backend.h"
#include "agent/config.h"

struct json_object;

struct kpx_inspect_opts {
	struct kpx_config cfg; /* bpf_root, state_socket, cgroup_path, backend */
	const char *output;    /* NULL, "json", "wide" */
	const char *ns;
	const char *name;
	bool verify;
};

/*
 * Parses the flags common to status/services (plus -n/--namespace,
 * --verify and one positional NAME when allow_filter). Returns 0, 1 when
 * --help was printed, or -EINVAL after printing the reason.
 */
int kpx_inspect_parse(int argc, char **argv, bool allow_filter,
		      const char *usage, struct kpx_inspect_opts *o);

/*
 * The backend to read the kernel through: the one named by --backend or
 * by the running agent (agent_backend, may be NULL), else the first of
 * bpf, nft whose dump_datapath finds programmed state. NULL when none.
 */
const struct kpx_backend_ops *kpx_inspect_backend(const struct kpx_config *cfg,
						  const char *agent_backend);

struct json_object *kpx_jget(const struct json_object *o, const char *key);
const char *kpx_jstr(const struct json_object *o, const char *key,
		     const char *dflt);
int64_t kpx_jint(const struct json_object *o, const char *key, int64_t dflt);
bool kpx_jbool(const struct json_object *o, const char *key);

#endif
