// SPDX-License-Identifier: Apache-2.0
/*
 * kpx_k8s_probe: runs the real Kubernetes API source (k8s/client.c) into a
 * real store and periodically writes what the store holds as JSON lines,
 * so tests can compare it with the API server's state.
 *
 *   kpx_k8s_probe (--kubeconfig PATH | --in-cluster) [--master URL]
 *                 [--node NAME] --dump FILE [--interval MS]
 *                 [--stall-ms N] [--backoff-min-ms N] [--backoff-max-ms N]
 *                 [--page-limit N] [--duration MS] [-v N]
 *                 [--backoff-reset-ms N] [--watch-timeout-s N]
 *                 [--no-watch-list] [--metrics FILE]
 *
 * FILE is replaced atomically (write + rename) every interval with one line
 * per Service, EndpointSlice and Node, then one "Status" line (the
 * client's kpx_k8s_status plus per-kind synced flags). --metrics FILE is
 * rewritten the same way with what the agent's /metrics renders for this
 * source (the rest_client_* families).
 */
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "agent/serve_priv.h"
#include "common/log.h"
#include "common/loop.h"
#include "k8s/client.h"
#include "model/store.h"

static volatile sig_atomic_t stop;

struct probe {
	struct kpx_store *store;
	struct kpx_k8s_source *src;
	/* "ns/service-name" of every service any change touched: slices are
	 * only enumerable per service, and a slice may outlive its service. */
	struct json_object *svc_keys;
	uint64_t changes;
	FILE *out;
};

static void on_stop(int sig)
{
	(void)sig;
	stop = 1;
}

static void note_dirty(const char *ns, const char *name, void *arg)
{
	struct probe *p = arg;
	char key[KPX_NS_MAX + KPX_NAME_MAX + 2];

	snprintf(key, sizeof(key), "%s/%s", ns, name);
	json_object_object_add(p->svc_keys, key, NULL);
}

static void on_change(void *arg)
{
	struct probe *p = arg;

	p->changes++;
	kpx_store_for_each_dirty(p->store, note_dirty, p);
	kpx_store_clear_dirty(p->store);
}

static void emit(struct probe *p, struct json_object *o)
{
	fprintf(p->out, "%s\n",
		json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
}

static struct json_object *addr_array(const struct kpx_addr *a, size_t n)
{
	struct json_object *arr = json_object_new_array();
	char buf[64];

	for (size_t i = 0; i < n; i++)
		json_object_array_add(arr,
				      json_object_new_string(kpx_addr_str(&a[i], buf)));
	return arr;
}

static void dump_service(const struct kpx_service *svc, void *arg)
{
	struct json_object *o = json_object_new_object(), *ports;
	char buf[128];

	json_object_object_add(o, "kind", json_object_new_string("Service"));
	json_object_object_add(o, "ns", json_object_new_string(svc->ns));
	json_object_object_add(o, "name", json_object_new_string(svc->name));
	json_object_object_add(o, "rv",
			       json_object_new_string(svc->resource_version));
	json_object_object_add(o, "cluster_ips",
			       addr_array(svc->cluster_ips, svc->n_cluster_ips));
	ports = json_object_new_array();
	for (size_t i = 0; i < svc->n_ports; i++) {
		snprintf(buf, sizeof(buf), "%s/%u",
			 kpx_proto_name(svc->ports[i].proto),
			 svc->ports[i].port);
		json_object_array_add(ports, json_object_new_string(buf));
	}
	json_object_object_add(o, "ports", ports);
	emit(arg, o);
}

static void dump_slice(const struct kpx_endpoint_slice *sl, void *arg)
{
	struct json_object *o = json_object_new_object(), *eps;
	char buf[64];

	json_object_object_add(o, "kind", json_object_new_string("EndpointSlice"));
	json_object_object_add(o, "ns", json_object_new_string(sl->ns));
	json_object_object_add(o, "name", json_object_new_string(sl->name));
	json_object_object_add(o, "rv",
			       json_object_new_string(sl->resource_version));
	json_object_object_add(o, "service",
			       json_object_new_string(sl->service_name));
	eps = json_object_new_array();
	for (size_t i = 0; i < sl->n_endpoints; i++)
		json_object_array_add(
			eps, json_object_new_string(
				     kpx_addr_str(&sl->endpoints[i].addr, buf)));
	json_object_object_add(o, "endpoints", eps);
	emit(arg, o);
}

static int dump(struct probe *p, const char *path)
{
	char tmp[4096];
	const struct kpx_node *node;
	struct json_object *st, *synced;
	static const char *const kinds[] = { "services", "endpointslices",
					     "node" };

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	p->out = fopen(tmp, "w");
	if (!p->out)
		return -errno;
	kpx_store_for_each_service(p->store, dump_service, p);
	json_object_object_foreach(p->svc_keys, key, val)
	{
		char ns[KPX_NS_MAX + KPX_NAME_MAX + 2];
		char *slash;

		(void)val;
		snprintf(ns, sizeof(ns), "%s", key);
		slash = strchr(ns, '/');
		if (!slash)
			continue;
		*slash = '\0';
		kpx_store_for_each_slice_of(p->store, ns, slash + 1, dump_slice,
					    p);
	}
	node = kpx_store_node(p->store);
	if (node) {
		struct json_object *o = json_object_new_object();

		json_object_object_add(o, "kind", json_object_new_string("Node"));
		json_object_object_add(o, "name", json_object_new_string(node->name));
		json_object_object_add(o, "zone", json_object_new_string(node->zone));
		emit(p, o);
	}
	st = kpx_k8s_status(p->src);
	if (!st)
		st = json_object_new_object();
	synced = json_object_new_object();
	for (int k = 0; k < KPX_KIND_COUNT; k++)
		json_object_object_add(synced, kinds[k],
				       json_object_new_boolean(
					       kpx_store_kind_synced(p->store, k)));
	json_object_object_add(st, "synced", synced);
	json_object_object_add(st, "changes", json_object_new_int64(p->changes));
	json_object_object_add(st, "kind", json_object_new_string("Status"));
	emit(p, st);
	if (fclose(p->out))
		return -errno;
	p->out = NULL;
	return rename(tmp, path) ? -errno : 0;
}

/* The agent's /metrics text with only this API source in it. */
static int dump_metrics(struct probe *p, const char *path)
{
	static struct kpx_agent agent;
	char tmp[4096];
	FILE *f;

	agent.k8s = p->src;
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f)
		return -errno;
	kpx_metrics_write(f, &agent, NULL, NULL);
	if (fclose(f))
		return -errno;
	return rename(tmp, path) ? -errno : 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: kpx_k8s_probe (--kubeconfig PATH | --in-cluster) "
		"[--master URL] [--node NAME]\n"
		"       --dump FILE [--interval MS] [--stall-ms N] "
		"[--backoff-min-ms N] [--backoff-max-ms N]\n"
		"       [--page-limit N] [--duration MS] [-v N]\n"
		"       [--backoff-reset-ms N] [--watch-timeout-s N] [--no-watch-list]\n"
		"       [--metrics FILE]\n");
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "kubeconfig", required_argument, NULL, 'k' },
		{ "in-cluster", no_argument, NULL, 'c' },
		{ "master", required_argument, NULL, 'm' },
		{ "node", required_argument, NULL, 'n' },
		{ "dump", required_argument, NULL, 'd' },
		{ "interval", required_argument, NULL, 'i' },
		{ "stall-ms", required_argument, NULL, 's' },
		{ "backoff-min-ms", required_argument, NULL, 'b' },
		{ "backoff-max-ms", required_argument, NULL, 'B' },
		{ "page-limit", required_argument, NULL, 'l' },
		{ "duration", required_argument, NULL, 't' },
		{ "backoff-reset-ms", required_argument, NULL, 'r' },
		{ "watch-timeout-s", required_argument, NULL, 'T' },
		{ "no-watch-list", no_argument, NULL, 'W' },
		{ "metrics", required_argument, NULL, 'M' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *kubeconfig = NULL, *master = NULL, *dump_path = NULL;
	const char *metrics_path = NULL;
	bool in_cluster = false;
	uint64_t interval = 200, duration = 0, next_dump, start;
	struct kpx_k8s_options opts = { 0 };
	struct probe p = { 0 };
	struct kpx_loop *loop = NULL;
	char err[512] = "";
	int c, ret = 1;

	while ((c = getopt_long(argc, argv, "v:h", lopts, NULL)) != -1) {
		switch (c) {
		case 'k': kubeconfig = optarg; break;
		case 'c': in_cluster = true; break;
		case 'm': master = optarg; break;
		case 'n':
			snprintf(opts.node_name, sizeof(opts.node_name), "%s",
				 optarg);
			break;
		case 'd': dump_path = optarg; break;
		case 'i': interval = strtoull(optarg, NULL, 10); break;
		case 's': opts.stall_ms = strtoull(optarg, NULL, 10); break;
		case 'b': opts.backoff_min_ms = strtoull(optarg, NULL, 10); break;
		case 'B': opts.backoff_max_ms = strtoull(optarg, NULL, 10); break;
		case 'l': opts.page_limit = strtoul(optarg, NULL, 10); break;
		case 't': duration = strtoull(optarg, NULL, 10); break;
		case 'r': opts.backoff_reset_ms = strtoull(optarg, NULL, 10); break;
		case 'T': opts.watch_timeout_s = strtoul(optarg, NULL, 10); break;
		case 'W': opts.no_watch_list = true; break;
		case 'M': metrics_path = optarg; break;
		case 'v': kpx_log_verbosity = atoi(optarg); break;
		case 'h': usage(); return 0;
		default: usage(); return 2;
		}
	}
	if ((!kubeconfig && !in_cluster) || !dump_path || !interval) {
		usage();
		return 2;
	}
	if (kubeconfig)
		ret = kpx_kubeconfig_load(kubeconfig, &opts.conn, err, sizeof(err));
	else
		ret = kpx_k8s_in_cluster(&opts.conn, err, sizeof(err));
	if (ret) {
		fprintf(stderr, "kpx_k8s_probe: %s\n", err);
		return 1;
	}
	if (master)
		snprintf(opts.conn.server, sizeof(opts.conn.server), "%s", master);
	signal(SIGTERM, on_stop);
	signal(SIGINT, on_stop);
	signal(SIGPIPE, SIG_IGN);
	p.svc_keys = json_object_new_object();
	ret = 1;
	if (kpx_loop_new(&loop) || kpx_store_new(&p.store)) {
		fprintf(stderr, "kpx_k8s_probe: out of memory\n");
		goto out;
	}
	if (kpx_k8s_open(loop, &opts, p.store, on_change, &p, &p.src))
		goto out;
	start = kpx_now_ms();
	next_dump = start;
	while (!stop) {
		uint64_t now = kpx_now_ms();

		if (now >= next_dump) {
			if (dump(&p, dump_path))
				fprintf(stderr, "kpx_k8s_probe: %s: %s\n",
					dump_path, strerror(errno));
			if (metrics_path && dump_metrics(&p, metrics_path))
				fprintf(stderr, "kpx_k8s_probe: %s: %s\n",
					metrics_path, strerror(errno));
			next_dump = now + interval;
		}
		if (duration && now - start >= duration)
			break;
		if (kpx_loop_run_once(loop, (int)(next_dump - now)) < 0)
			break;
	}
	dump(&p, dump_path);
	ret = 0;
out:
	kpx_k8s_close(p.src);
	kpx_store_free(p.store);
	kpx_loop_free(loop);
	json_object_put(p.svc_keys);
	kpx_k8s_conn_clear(&opts.conn);
	return ret;
}
