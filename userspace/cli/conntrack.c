// SPDX-License-Identifier: Apache-2.0
/*
 * `kpx conntrack [-o json] [-n NAMESPACE] [NAME]`: the service flows the
 * datapath tracks, read from the kernel through the backend (bpf: kpx's
 * own conntrack map of the tc/XDP path; nft: the kernel's conntrack
 * entries of flows translated to a kpx frontend), with the client, the
 * frontend, the backend chosen, and the source NAT applied.
 * Owns: nothing. Must not: change any state.
 */
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "agent/serve.h"
#include "cli/cli.h"
#include "cli/inspect.h"
#include "cli/table.h"

static const char conntrack_usage[] =
	"Usage: kpx conntrack [-o json] [-n NAMESPACE] [NAME]\n"
	"                     [--state-socket PATH] [--bpf-root PATH] [--backend bpf|nft]\n"
	"\n"
	"Lists the service flows the datapath tracks: client, frontend, the\n"
	"backend it was sent to and the source NAT applied. bpf: flows of the\n"
	"tc/XDP path (NodePort, external and LoadBalancer IPs, ClusterIPs\n"
	"reached through the node); connections balanced by the socket hooks\n"
	"were translated at connect() and are not tracked. nft: the kernel's\n"
	"conntrack entries of flows to kpx frontends (run it in the node's\n"
	"network namespace).\n";

/* "ns/name:port" matches -n NS and NAME. */
static bool match(const struct kpx_inspect_opts *o, struct json_object *f)
{
	const char *svc = kpx_jstr(f, "service", ""), *slash = strchr(svc, '/');
	const char *name = slash ? slash + 1 : svc, *colon = strchr(name, ':');
	size_t nslen = slash ? (size_t)(slash - svc) : 0;
	size_t nlen = colon ? (size_t)(colon - name) : strlen(name);

	if (o->ns && (strlen(o->ns) != nslen || strncmp(svc, o->ns, nslen)))
		return false;
	if (o->name && (strlen(o->name) != nlen || strncmp(name, o->name, nlen)))
		return false;
	return true;
}

int kpx_cmd_conntrack(int argc, char **argv)
{
	static const char *const headers[] = { "PROTO", "CLIENT", "FRONTEND",
						"BACKEND", "SOURCE-NAT", "SERVICE" };
	struct json_object *flows = NULL, *reply = NULL, *sel;
	const struct kpx_backend_ops *ops;
	const char *agent_backend = NULL;
	struct kpx_inspect_opts o;
	struct kpx_table *t;
	int ret;

	ret = kpx_inspect_parse(argc, argv, true, conntrack_usage, &o);
	if (ret)
		return ret > 0 ? 0 : 2;
	if (o.cfg.backend == KPX_BACKEND_AUTO &&
	    !kpx_status_request(o.cfg.state_socket, "status", &reply))
		agent_backend = kpx_jstr(kpx_jget(reply, "agent"), "backend", NULL);
	ops = kpx_inspect_backend(&o.cfg, agent_backend);
	if (!ops || !ops->dump_flows) {
		fprintf(stderr, "kpx: no programmed datapath found; pass --backend\n");
		json_object_put(reply);
		return 1;
	}
	ret = ops->dump_flows(&o.cfg, &flows);
	json_object_put(reply);
	if (ret == -ENOENT) {
		flows = json_object_new_array();
	} else if (ret) {
		fprintf(stderr, "kpx: %s: reading flows: %s\n", ops->name, strerror(-ret));
		return 1;
	}
	sel = json_object_new_array();
	for (size_t i = 0; i < json_object_array_length(flows); i++) {
		struct json_object *f = json_object_array_get_idx(flows, i);

		if (match(&o, f))
			json_object_array_add(sel, json_object_get(f));
	}
	json_object_put(flows);
	if (o.output && !strcmp(o.output, "json")) {
		struct json_object *out = json_object_new_object();

		json_object_object_add(out, "backend", json_object_new_string(ops->name));
		json_object_object_add(out, "flows", sel);
		printf("%s\n", json_object_to_json_string_ext(
				       out, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
						    JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(out);
		return fflush(stdout) ? 1 : 0;
	}
	t = kpx_table_new(6, headers);
	for (size_t i = 0; t && i < json_object_array_length(sel); i++) {
		struct json_object *f = json_object_array_get_idx(sel, i);
		const char *cells[6] = {
			kpx_jstr(f, "protocol", NULL), kpx_jstr(f, "client", NULL),
			kpx_jstr(f, "frontend", NULL), kpx_jstr(f, "backend", NULL),
			kpx_jstr(f, "source_nat", NULL), kpx_jstr(f, "service", NULL),
		};

		kpx_table_add(t, cells);
	}
	if (t) {
		kpx_table_print(t, stdout, 0);
		printf("%zu flow%s (%s)\n", kpx_table_rows(t),
		       kpx_table_rows(t) == 1 ? "" : "s", ops->name);
		kpx_table_free(t);
	}
	json_object_put(sel);
	return fflush(stdout) || !t ? 1 : 0;
}
