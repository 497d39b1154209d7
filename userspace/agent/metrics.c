// SPDX-License-Identifier: Apache-2.0
/*
 * Health evaluation (/healthz, /livez, healthCheckNodePort) and the
 * Prometheus text rendering of /metrics. kube-proxy's metric names and
 * label values are kept where the concept exists so that dashboards and
 * alerts written for kube-proxy keep working; the rest is kpx_*.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "agent/agent.h"
#include "agent/serve_priv.h"
#include "common/log.h"
#include "common/loop.h"
#include "k8s/client.h"
#include "k8s/objects.h"
#include "model/store.h"
#include "plan/plan.h"

void kpx_health_eval(const struct kpx_agent *agent, const struct kpx_node *node,
		     double now, struct kpx_health *out)
{
	const struct kpx_sync_stats *st = &agent->stats;
	double timeout = 2.0 * (double)agent->cfg.sync_ms / 1000.0;
	bool pending;

	memset(out, 0, sizeof(*out));
	out->now = now;
	out->node_eligible = !node || (!node->deleting && !node->to_be_deleted);
	out->last_updated = st->last_sync_wall;
	/* A change is outstanding while it is newer than the last successful
	 * sync; the agent may or may not reset last_queued_wall to 0. */
	pending = st->last_queued_wall > 0 &&
		  st->last_queued_wall >= st->last_sync_wall;
	out->healthy = !pending || now - st->last_queued_wall < timeout;
	/* kube-proxy reports "now" as lastUpdated while healthy, for
	 * compatibility with its older semantics. */
	if (out->healthy)
		out->last_updated = now;
}

void kpx_go_time(double wall, char *buf, size_t len)
{
	struct tm tm;
	time_t sec;
	long nsec;
	char frac[16] = "";
	int n;

	if (wall <= 0) {
		/* Go's zero time.Time. */
		snprintf(buf, len, "0001-01-01 00:00:00 +0000 UTC");
		return;
	}
	sec = (time_t)floor(wall);
	nsec = lround((wall - (double)sec) * 1e9);
	if (nsec >= 1000000000L) {
		sec++;
		nsec -= 1000000000L;
	}
	gmtime_r(&sec, &tm);
	if (nsec) {
		/* Go's ".999999999" layout drops trailing zeros. */
		n = snprintf(frac, sizeof(frac), ".%09ld", nsec);
		while (n > 1 && frac[n - 1] == '0')
			frac[--n] = 0;
	}
	snprintf(buf, len, "%04d-%02d-%02d %02d:%02d:%02d%s +0000 UTC",
		 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		 tm.tm_min, tm.tm_sec, frac);
}

char *kpx_health_body(const struct kpx_health *h, bool with_node, size_t *len)
{
	char last[64], now[64];
	char *body = NULL;
	int n;

	kpx_go_time(h->last_updated, last, sizeof(last));
	kpx_go_time(h->now, now, sizeof(now));
	if (with_node)
		n = asprintf(&body,
			     "{\"lastUpdated\": \"%s\",\"currentTime\": \"%s\", "
			     "\"nodeEligible\": %s}",
			     last, now, h->node_eligible ? "true" : "false");
	else
		n = asprintf(&body,
			     "{\"lastUpdated\": \"%s\",\"currentTime\": \"%s\"}",
			     last, now);
	if (n < 0)
		return NULL;
	if (len)
		*len = n;
	return body;
}

/* ---- Prometheus text format 0.0.4 ---- */

static void help(FILE *f, const char *name, const char *type, const char *text)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, type);
}

/* Label values escape backslash, quote and newline. */
static void label_value(FILE *f, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			fprintf(f, "\\%c", *v);
		else if (*v == '\n')
			fputs("\\n", f);
		else
			fputc(*v, f);
	}
}

static void gauge(FILE *f, const char *name, const char *type,
		  const char *text, double v)
{
	help(f, name, type, text);
	fprintf(f, "%s %.17g\n", name, v);
}

static void histogram(FILE *f, const char *name, const char *text,
		      const struct kpx_histogram *h)
{
	int i;

	help(f, name, "histogram", text);
	/* kpx_histogram_observe() keeps counts[] cumulative already, as the
	 * exposition format wants them. */
	for (i = 0; i < KPX_HIST_BUCKETS; i++) {
		if (h->bounds[i] <= 0 ||
		    (i && h->bounds[i] <= h->bounds[i - 1]))
			break;
		fprintf(f, "%s_bucket{le=\"%.6g\"} %llu\n", name, h->bounds[i],
			(unsigned long long)h->counts[i]);
	}
	fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n", name,
		(unsigned long long)h->count);
	fprintf(f, "%s_sum %.17g\n%s_count %llu\n", name, h->sum, name,
		(unsigned long long)h->count);
}

static bool json_num(const struct json_object *o, double *v)
{
	switch (json_object_get_type(o)) {
	case json_type_int:
	case json_type_double:
		*v = json_object_get_double(o);
		return true;
	case json_type_boolean:
		*v = json_object_get_boolean(o);
		return true;
	default:
		return false;
	}
}

static const struct json_object *jget(const struct json_object *o,
				      const char *k)
{
	struct json_object *v = NULL;

	if (!o || !json_object_is_type(o, json_type_object))
		return NULL;
	json_object_object_get_ex(o, k, &v);
	return v;
}

static bool jnum(const struct json_object *o, const char *k, double *v)
{
	const struct json_object *x = jget(o, k);

	return x && json_num(x, v);
}

/* One map's fill: {"entries"|"used"|"count", "max_entries"|"capacity"|"max"} */
static void map_fill(FILE *f, const char *map, const struct json_object *m,
		     bool capacity)
{
	static const char *const used_keys[] = { "entries", "used", "count",
						 "elements" };
	static const char *const cap_keys[] = { "max_entries", "capacity",
						"max" };
	const char *const *keys = capacity ? cap_keys : used_keys;
	size_t n = capacity ? 3 : 4, i;
	double v;

	if (!json_object_is_type(m, json_type_object)) {
		if (!capacity && json_num(m, &v))
			goto print;
		return;
	}
	for (i = 0; i < n; i++)
		if (jnum(m, keys[i], &v))
			goto print;
	return;
print:
	fprintf(f, "%s{map=\"", capacity ? "kpx_map_capacity" : "kpx_map_entries");
	label_value(f, map);
	fprintf(f, "\"} %.17g\n", v);
}

static void maps_pass(FILE *f, const struct json_object *maps, bool capacity)
{
	size_t i, n;

	if (json_object_is_type(maps, json_type_object)) {
		json_object_object_foreach((struct json_object *)maps, k, v)
			map_fill(f, k, v, capacity);
	} else if (json_object_is_type(maps, json_type_array)) {
		n = json_object_array_length(maps);
		for (i = 0; i < n; i++) {
			const struct json_object *m =
				json_object_array_get_idx(maps, i);
			const struct json_object *nm = jget(m, "name");

			if (nm)
				map_fill(f, json_object_get_string(
						    (struct json_object *)nm),
					 m, capacity);
		}
	}
}

static void nft_table_label(FILE *f, const struct json_object *t)
{
	const struct json_object *fam = jget(t, "family"), *nm = jget(t, "name");

	fputs("family=\"", f);
	label_value(f, fam ? json_object_get_string((struct json_object *)fam) :
			     "");
	fputs("\",table=\"", f);
	label_value(f, nm ? json_object_get_string((struct json_object *)nm) :
			    "");
	fputc('"', f);
}

/* nft reports {"tables":[{"family","name","chains","set_elements":{}}]}. */
static void nft_tables_metrics(FILE *f, const struct json_object *tables)
{
	size_t i, n;
	double v;

	if (!tables || !json_object_is_type(tables, json_type_array))
		return;
	n = json_object_array_length(tables);
	help(f, "kpx_nft_table_chains", "gauge",
	     "Chains in a kpx nftables table.");
	for (i = 0; i < n; i++) {
		const struct json_object *t = json_object_array_get_idx(tables, i);

		if (!jnum(t, "chains", &v))
			continue;
		fputs("kpx_nft_table_chains{", f);
		nft_table_label(f, t);
		fprintf(f, "} %.17g\n", v);
	}
	help(f, "kpx_nft_set_elements", "gauge",
	     "Elements in a kpx nftables map or set.");
	for (i = 0; i < n; i++) {
		const struct json_object *t = json_object_array_get_idx(tables, i);
		const struct json_object *sets = jget(t, "set_elements");

		if (!sets || !json_object_is_type(sets, json_type_object))
			continue;
		json_object_object_foreach((struct json_object *)sets, k, e)
		{
			if (!json_num(e, &v))
				continue;
			fputs("kpx_nft_set_elements{", f);
			nft_table_label(f, t);
			fputs(",set=\"", f);
			label_value(f, k);
			fprintf(f, "\"} %.17g\n", v);
		}
	}
}

/* Walks the backend's dump_datapath document for the counters both
 * backends may report; keys that are absent are simply not exported. */
static void datapath_metrics(FILE *f, const struct json_object *dp)
{
	const struct json_object *drops = jget(dp, "drops");
	const struct json_object *maps = jget(dp, "maps");
	const struct json_object *ct = jget(dp, "conntrack");
	/* bpf keeps its conntrack under "nodeport" (tc datapath). */
	const struct json_object *np = jget(dp, "nodeport");
	double v;

	if (drops && json_object_is_type(drops, json_type_object)) {
		help(f, "kpx_datapath_drops_total", "counter",
		     "Packets dropped or rejected by the datapath, by reason.");
		json_object_object_foreach((struct json_object *)drops, k, d)
		{
			if (!json_num(d, &v))
				continue;
			fputs("kpx_datapath_drops_total{reason=\"", f);
			label_value(f, k);
			fprintf(f, "\"} %.17g\n", v);
		}
	}
	if (maps) {
		help(f, "kpx_map_entries", "gauge",
		     "Entries in a datapath map or set.");
		maps_pass(f, maps, false);
		help(f, "kpx_map_capacity", "gauge",
		     "Capacity of a datapath map.");
		maps_pass(f, maps, true);
	}
	if (jnum(dp, "ct_entries", &v) || jnum(ct, "entries", &v) ||
	    json_num(ct, &v) || jnum(np, "ct_entries", &v))
		gauge(f, "kpx_conntrack_entries", "gauge",
		      "Entries in the datapath's own connection tracking table.",
		      v);
	if (jnum(dp, "chains", &v))
		gauge(f, "kpx_nft_chains", "gauge",
		      "Chains in the kpx nftables tables.", v);
	if (jnum(dp, "elements", &v))
		gauge(f, "kpx_nft_elements", "gauge",
		      "Elements in the kpx nftables maps and sets.", v);
	nft_tables_metrics(f, jget(dp, "tables"));
}

static const char *jstr(const struct json_object *o, const char *k)
{
	const struct json_object *x = jget(o, k);

	return x ? json_object_get_string((struct json_object *)x) : "";
}

/* Sum of one counter over a frontend's backends; false when none has it. */
static bool fe_sum(const struct json_object *fe, const char *key, double *sum)
{
	const struct json_object *bs = jget(fe, "backends");
	bool have = false;
	size_t j, nb;
	double v;

	*sum = 0;
	if (!bs || !json_object_is_type(bs, json_type_array))
		return false;
	nb = json_object_array_length(bs);
	for (j = 0; j < nb; j++) {
		if (jnum(json_object_array_get_idx(bs, j), key, &v)) {
			*sum += v;
			have = true;
		}
	}
	return have;
}

/* Per-frontend traffic from the backends' counters, when the backend
 * keeps any (bpf: per backend packets/bytes; nft: counters). */
static void traffic_metrics(FILE *f, const struct json_object *fes)
{
	static const char *const keys[] = { "packets", "bytes", "connections" };
	char name[64], text[96];
	size_t i, k, n;
	double sum, port;
	bool any;

	if (!fes || !json_object_is_type(fes, json_type_array))
		return;
	n = json_object_array_length(fes);
	for (k = 0; k < 3; k++) {
		any = false;
		for (i = 0; i < n && !any; i++)
			any = fe_sum(json_object_array_get_idx(fes, i), keys[k],
				     &sum);
		if (!any)
			continue;
		snprintf(name, sizeof(name), "kpx_service_%s_total", keys[k]);
		snprintf(text, sizeof(text),
			 "Service traffic (%s) per frontend, summed over its "
			 "backends.",
			 keys[k]);
		help(f, name, "counter", text);
		for (i = 0; i < n; i++) {
			const struct json_object *fe =
				json_object_array_get_idx(fes, i);

			if (!fe_sum(fe, keys[k], &sum))
				continue;
			port = 0;
			jnum(fe, "port", &port);
			fprintf(f, "%s{service=\"", name);
			label_value(f, jstr(fe, "service"));
			fputs("\",frontend=\"", f);
			label_value(f, jstr(fe, "address"));
			fprintf(f, ":%.0f/", port);
			label_value(f, jstr(fe, "protocol"));
			fprintf(f, "\"} %.17g\n", sum);
		}
	}
}

/* client-go's rest_client_* families (k8s.io/client-go/tools/metrics),
 * with the names and labels kube-proxy's /metrics has. */
static void rest_client_metrics(FILE *f, const struct kpx_k8s_source *k8s)
{
	struct kpx_k8s_rest_stats r;
	size_t i;

	if (kpx_k8s_rest_stats(k8s, &r))
		return;
	help(f, "rest_client_requests_total", "counter",
	     "Number of HTTP requests, partitioned by status code, method, and host.");
	for (i = 0; i < r.n_codes; i++) {
		if (r.codes[i].code)
			fprintf(f, "rest_client_requests_total{code=\"%d\",host=\"",
				r.codes[i].code);
		else
			fputs("rest_client_requests_total{code=\"<error>\",host=\"", f);
		label_value(f, r.host);
		fprintf(f, "\",method=\"GET\"} %llu\n",
			(unsigned long long)r.codes[i].count);
	}
	help(f, "rest_client_request_duration_seconds", "histogram",
	     "Request latency in seconds. Broken down by verb, and host.");
	for (i = 0; i <= KPX_K8S_REST_BUCKETS; i++) {
		fputs("rest_client_request_duration_seconds_bucket{host=\"", f);
		label_value(f, r.host);
		if (i < KPX_K8S_REST_BUCKETS)
			fprintf(f, "\",verb=\"GET\",le=\"%g\"} %llu\n", r.bounds[i],
				(unsigned long long)r.buckets[i]);
		else
			fprintf(f, "\",verb=\"GET\",le=\"+Inf\"} %llu\n",
				(unsigned long long)r.count);
	}
	fputs("rest_client_request_duration_seconds_sum{host=\"", f);
	label_value(f, r.host);
	fprintf(f, "\",verb=\"GET\"} %.17g\n", r.sum);
	fputs("rest_client_request_duration_seconds_count{host=\"", f);
	label_value(f, r.host);
	fprintf(f, "\",verb=\"GET\"} %llu\n", (unsigned long long)r.count);
}

void kpx_metrics_write(FILE *f, const struct kpx_agent *agent,
		       const struct json_object *datapath,
		       const struct json_object *frontends)
{
	const struct kpx_sync_stats *st = &agent->stats;
	struct kpx_store_stats ss;
	double nle_int = 0, nle_ext = 0;
	size_t i;

	memset(&ss, 0, sizeof(ss));
	if (agent->store)
		kpx_store_get_stats(agent->store, &ss);

	histogram(f, "kubeproxy_sync_proxy_rules_duration_seconds",
		  "SyncProxyRules latency in seconds", &st->sync_duration);
	histogram(f, "kubeproxy_sync_full_proxy_rules_duration_seconds",
		  "SyncProxyRules latency in seconds for full resyncs",
		  &st->full_sync_duration);
	histogram(f, "kubeproxy_sync_partial_proxy_rules_duration_seconds",
		  "SyncProxyRules latency in seconds for partial resyncs",
		  &st->partial_sync_duration);
	histogram(f, "kubeproxy_network_programming_duration_seconds",
		  "In Cluster Network Programming Latency in seconds",
		  &st->programming_latency);
	gauge(f, "kubeproxy_sync_proxy_rules_last_timestamp_seconds", "gauge",
	      "The last time proxy rules were successfully synced",
	      st->last_sync_wall);
	gauge(f, "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
	      "gauge",
	      "The last time a sync of proxy rules was queued",
	      st->last_queued_wall ? st->last_queued_wall :
				     ss.last_queued_wall);
	gauge(f, "kubeproxy_sync_proxy_rules_endpoint_changes_pending",
	      "gauge", "Pending proxy rules Endpoint changes",
	      (double)ss.endpoint_changes_pending);
	gauge(f, "kubeproxy_sync_proxy_rules_endpoint_changes_total",
	      "counter", "Cumulative proxy rules Endpoint changes",
	      (double)ss.endpoint_changes_total);
	gauge(f, "kubeproxy_sync_proxy_rules_service_changes_pending", "gauge",
	      "Pending proxy rules Service changes",
	      (double)ss.service_changes_pending);
	gauge(f, "kubeproxy_sync_proxy_rules_service_changes_total",
	      "counter", "Cumulative proxy rules Service changes",
	      (double)ss.service_changes_total);

	/* kube-proxy counts, per sync, the service ports whose Local policy
	 * left them without endpoints while the service has some. */
	if (agent->plan) {
		for (i = 0; i < agent->plan->n_svcports; i++) {
			const struct kpx_plan_svcport *sp =
				&agent->plan->svcports[i];

			if (sp->itp_local && !sp->n_internal &&
			    sp->internal_empty == KPX_EMPTY_DROP)
				nle_int++;
			if (sp->etp_local && !sp->n_external &&
			    sp->external_empty == KPX_EMPTY_DROP)
				nle_ext++;
		}
	}
	help(f, "kubeproxy_sync_proxy_rules_no_local_endpoints_total", "gauge",
	     "Number of services with a Local traffic policy and no endpoints");
	fprintf(f,
		"kubeproxy_sync_proxy_rules_no_local_endpoints_total"
		"{traffic_policy=\"internal\"} %.0f\n"
		"kubeproxy_sync_proxy_rules_no_local_endpoints_total"
		"{traffic_policy=\"external\"} %.0f\n",
		nle_int, nle_ext);
	help(f, "kubeproxy_proxy_healthz_total", "counter",
	     "Cumulative proxy healthz HTTP status");
	fprintf(f,
		"kubeproxy_proxy_healthz_total{code=\"200\"} %llu\n"
		"kubeproxy_proxy_healthz_total{code=\"503\"} %llu\n",
		(unsigned long long)st->healthz_total[0],
		(unsigned long long)st->healthz_total[1]);
	help(f, "kubeproxy_proxy_livez_total", "counter",
	     "Cumulative proxy livez HTTP status");
	fprintf(f,
		"kubeproxy_proxy_livez_total{code=\"200\"} %llu\n"
		"kubeproxy_proxy_livez_total{code=\"503\"} %llu\n",
		(unsigned long long)st->livez_total[0],
		(unsigned long long)st->livez_total[1]);

	help(f, "kpx_build_info", "gauge",
	     "kpx version and datapath backend; always 1.");
	fputs("kpx_build_info{version=\"", f);
	label_value(f, KPX_VERSION);
	fputs("\",backend=\"", f);
	label_value(f, agent->ops && agent->ops->name ? agent->ops->name : "");
	fputs("\"} 1\n", f);
	gauge(f, "kpx_start_time_seconds", "gauge",
	      "Start time of the agent since the epoch", agent->start_wall);
	gauge(f, "kpx_syncs_total", "counter",
	      "Datapath syncs attempted", (double)st->syncs_total);
	gauge(f, "kpx_sync_errors_total", "counter",
	      "Datapath syncs that failed", (double)st->sync_errors_total);
	gauge(f, "kpx_sync_last_duration_seconds", "gauge",
	      "Duration of the last successful sync", st->last_sync_seconds);
	gauge(f, "kpx_services", "gauge", "Services in the store",
	      (double)ss.n_services);
	gauge(f, "kpx_endpointslices", "gauge", "EndpointSlices in the store",
	      (double)ss.n_slices);
	gauge(f, "kpx_svcports", "gauge",
	      "Service ports (per IP family) programmed",
	      agent->plan ? (double)agent->plan->n_svcports : 0);
	gauge(f, "kpx_frontends", "gauge", "Frontends programmed",
	      agent->plan ? (double)agent->plan->n_frontends : 0);
	gauge(f, "kpx_endpoints", "gauge", "Endpoints programmed",
	      agent->plan ? (double)agent->plan->n_endpoints : 0);
	gauge(f, "kpx_refused_addresses", "gauge",
	      "externalIPs and LoadBalancer IPs not served (a ClusterIP, a "
	      "special address, outside --external-ip-cidrs)",
	      agent->plan ? (double)kpx_plan_count_refused(agent->plan, NULL) : 0);
	if (datapath)
		datapath_metrics(f, datapath);
	traffic_metrics(f, frontends);
	rest_client_metrics(f, agent->k8s);
}

char *kpx_metrics_render(struct kpx_agent *agent, size_t *len)
{
	struct json_object *dp = NULL, *fes = NULL;
	char *buf = NULL;
	size_t sz = 0;
	FILE *f;
	int ret;

	if (agent->ops && agent->ops->dump_datapath) {
		ret = agent->ops->dump_datapath(&agent->cfg, &dp);
		if (ret && ret != -ENOENT)
			kpx_dbg(1, "metrics: %s datapath dump: %s",
				agent->ops->name, strerror(-ret));
	}
	if (agent->ops && agent->ops->dump_frontends) {
		ret = agent->ops->dump_frontends(&agent->cfg, &fes);
		if (ret && ret != -ENOENT)
			kpx_dbg(1, "metrics: %s frontends dump: %s",
				agent->ops->name, strerror(-ret));
	}
	f = open_memstream(&buf, &sz);
	if (f) {
		kpx_metrics_write(f, agent, dp, fes);
		if (fclose(f)) {
			free(buf);
			buf = NULL;
		}
	}
	json_object_put(dp);
	json_object_put(fes);
	if (buf && len)
		*len = sz;
	return buf;
}
