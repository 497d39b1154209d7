// SPDX-License-Identifier: Apache-2.0
/*
 * Health and readiness evaluation (/healthz, /readyz, /livez,
 * healthCheckNodePort), the state the loop publishes for the HTTP threads
 * (struct kpx_serve), and the Prometheus text rendering of /metrics.
 * kube-proxy's metric names and label values are kept where the concept
 * exists so that dashboards and alerts written for kube-proxy keep
 * working; the rest is kpx_*.
 *
 * /metrics is assembled on the scraping thread: the agent's part is text
 * the loop rendered at its last sync (or source change, at most once a
 * second), the datapath part is read from the kernel by the scraping
 * thread itself (one dump at a time, shared by the scrapes that waited
 * for it), so a scrape never blocks the sync loop on a full datapath
 * read.
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "agent/agent.h"
#include "agent/serve_priv.h"
#include "common/log.h"
#include "common/loop.h"
#include "k8s/client.h"
#include "k8s/objects.h"
#include "model/store.h"
#include "plan/plan.h"

void kpx_health_eval_input(const struct kpx_health_input *in, double now,
			   struct kpx_health *out)
{
	double timeout = 2.0 * (double)in->sync_ms / 1000.0;
	bool pending;

	memset(out, 0, sizeof(*out));
	out->now = now;
	out->node_eligible = in->node_eligible;
	out->last_updated = in->last_sync_wall;
	/* A change is outstanding while it is newer than the last successful
	 * sync; the agent may or may not reset last_queued_wall to 0. */
	pending = in->last_queued_wall > 0 &&
		  in->last_queued_wall >= in->last_sync_wall;
	out->healthy = !pending || now - in->last_queued_wall < timeout;
	/* kube-proxy reports "now" as lastUpdated while healthy, for
	 * compatibility with its older semantics. */
	if (out->healthy)
		out->last_updated = now;
}

void kpx_health_input_of(const struct kpx_agent *agent,
			 const struct kpx_node *node,
			 struct kpx_health_input *out)
{
	memset(out, 0, sizeof(*out));
	out->sync_ms = agent->cfg.sync_ms;
	out->last_sync_wall = agent->stats.last_sync_wall;
	out->last_queued_wall = agent->stats.last_queued_wall;
	out->node_eligible = !node || (!node->deleting && !node->to_be_deleted);
}

void kpx_health_eval(const struct kpx_agent *agent, const struct kpx_node *node,
		     double now, struct kpx_health *out)
{
	struct kpx_health_input in;

	kpx_health_input_of(agent, node, &in);
	kpx_health_eval_input(&in, now, out);
}

static void reason_add(char *buf, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void reason_add(char *buf, size_t len, const char *fmt, ...)
{
	size_t n = strlen(buf);
	va_list ap;

	if (n + 3 >= len)
		return;
	if (n) {
		memcpy(buf + n, "; ", 3);
		n += 2;
	}
	va_start(ap, fmt);
	vsnprintf(buf + n, len - n, fmt, ap);
	va_end(ap);
}

void kpx_ready_input_of(const struct kpx_agent *agent,
			struct kpx_ready_input *out)
{
	static const struct {
		enum kpx_kind kind;
		const char *name;
	} kinds[] = { { KPX_KIND_SERVICE, "Services" },
		      { KPX_KIND_SLICE, "EndpointSlices" },
		      { KPX_KIND_NODE, "the own Node" } };
	struct json_object *st, *watches;
	size_t i;

	memset(out, 0, sizeof(*out));
	/* A successful sync needs both sources listed (and the own Node from
	 * an API server) and the backend to have accepted the plan. */
	out->synced_once = agent->stats.syncs_total > 0;
	if (out->synced_once)
		return;
	for (i = 0; agent->store && i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		if (kinds[i].kind == KPX_KIND_NODE && !agent->k8s)
			continue;
		if (!kpx_store_kind_synced(agent->store, kinds[i].kind))
			reason_add(out->reason, sizeof(out->reason),
				   "%s not listed yet", kinds[i].name);
	}
	st = agent->k8s ? kpx_k8s_status(agent->k8s) : NULL;
	if (st && json_object_object_get_ex(st, "watches", &watches) &&
	    json_object_is_type(watches, json_type_object)) {
		json_object_object_foreach(watches, name, w)
		{
			struct json_object *e;
			const char *err;

			if (!json_object_object_get_ex(w, "last_error", &e))
				continue;
			err = json_object_get_string(e);
			/* The watches usually fail alike: say it once. */
			if (err && *err && !strstr(out->reason, err))
				reason_add(out->reason, sizeof(out->reason),
					   "API server (%s): %s", name, err);
		}
	}
	json_object_put(st);
	if (agent->stats.last_error[0])
		reason_add(out->reason, sizeof(out->reason), "last sync: %s",
			   agent->stats.last_error);
	if (!out->reason[0])
		reason_add(out->reason, sizeof(out->reason),
			   "first sync pending");
}

char *kpx_ready_body(const struct kpx_ready_input *r,
		     const struct kpx_health *h, unsigned int *status,
		     size_t *len)
{
	struct json_object *o = json_object_new_object();
	char t[64];
	const char *reason = r->reason;
	bool ready = r->synced_once && h->healthy;
	char *body = NULL;

	if (!o)
		return NULL;
	if (r->synced_once && !h->healthy)
		reason = "a queued change has waited more than 2 x the sync "
			 "period (see /healthz)";
	json_object_object_add(o, "ready", json_object_new_boolean(ready));
	kpx_go_time(r->synced_once ? r->first_sync_wall : 0, t, sizeof(t));
	json_object_object_add(o, "firstSync", json_object_new_string(t));
	kpx_go_time(h->now, t, sizeof(t));
	json_object_object_add(o, "currentTime", json_object_new_string(t));
	if (!ready)
		json_object_object_add(o, "reason",
				       json_object_new_string(reason));
	body = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	*status = ready ? 200 : 503;
	if (body && len)
		*len = strlen(body);
	return body;
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

/* Families the agent programs, as kube-proxy labels them (ip_family,
 * since 1.33). kpx programs both families in one sync, so a dual-stack
 * node shows the same sync numbers under both, as kube-proxy's two
 * proxiers would when they sync together. */
struct families {
	const char *name[2];
	int af[2];
	int n;
};

static void families_of(const struct kpx_agent *agent, struct families *fam)
{
	bool v4 = false, v6 = false;
	size_t i;

	for (i = 0; i < agent->plan_input.n_node_ips; i++) {
		v4 |= agent->plan_input.node_ips[i].family == AF_INET;
		v6 |= agent->plan_input.node_ips[i].family == AF_INET6;
	}
	for (i = 0; agent->plan && i < agent->plan->n_svcports; i++) {
		v4 |= agent->plan->svcports[i].family == AF_INET;
		v6 |= agent->plan->svcports[i].family == AF_INET6;
	}
	fam->n = 0;
	if (v4 || !v6) {
		fam->name[fam->n] = "IPv4";
		fam->af[fam->n++] = AF_INET;
	}
	if (v6) {
		fam->name[fam->n] = "IPv6";
		fam->af[fam->n++] = AF_INET6;
	}
}

/* One histogram series; label is "" or `name="value",`. */
static void histogram_series(FILE *f, const char *name, const char *label,
			     const struct kpx_histogram *h)
{
	size_t ll = strlen(label);
	int i;

	/* kpx_histogram_observe() keeps counts[] cumulative already, as the
	 * exposition format wants them. */
	for (i = 0; i < KPX_HIST_BUCKETS; i++) {
		if (h->bounds[i] <= 0 ||
		    (i && h->bounds[i] <= h->bounds[i - 1]))
			break;
		fprintf(f, "%s_bucket{%sle=\"%.6g\"} %llu\n", name, label,
			h->bounds[i], (unsigned long long)h->counts[i]);
	}
	fprintf(f, "%s_bucket{%sle=\"+Inf\"} %llu\n", name, label,
		(unsigned long long)h->count);
	/* "a=\"b\"," becomes "{a=\"b\"}" for _sum and _count */
	if (ll)
		fprintf(f, "%s_sum{%.*s} %.17g\n%s_count{%.*s} %llu\n", name,
			(int)ll - 1, label, h->sum, name, (int)ll - 1, label,
			(unsigned long long)h->count);
	else
		fprintf(f, "%s_sum %.17g\n%s_count %llu\n", name, h->sum, name,
			(unsigned long long)h->count);
}

static void histogram(FILE *f, const char *name, const char *text,
		      const struct kpx_histogram *h, const struct families *fam)
{
	char label[48];
	int i;

	help(f, name, "histogram", text);
	for (i = 0; i < fam->n; i++) {
		snprintf(label, sizeof(label), "ip_family=\"%s\",",
			 fam->name[i]);
		histogram_series(f, name, label, h);
	}
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

void kpx_metrics_write_agent(FILE *f, const struct kpx_agent *agent)
{
	const struct kpx_sync_stats *st = &agent->stats;
	struct kpx_store_stats ss;
	struct families fam;
	double nle_int[2] = { 0 }, nle_ext[2] = { 0 };
	size_t i;
	int k;

	memset(&ss, 0, sizeof(ss));
	if (agent->store)
		kpx_store_get_stats(agent->store, &ss);
	families_of(agent, &fam);

	histogram(f, "kubeproxy_sync_proxy_rules_duration_seconds",
		  "SyncProxyRules latency in seconds", &st->sync_duration, &fam);
	histogram(f, "kubeproxy_sync_full_proxy_rules_duration_seconds",
		  "SyncProxyRules latency in seconds for full resyncs",
		  &st->full_sync_duration, &fam);
	histogram(f, "kubeproxy_sync_partial_proxy_rules_duration_seconds",
		  "SyncProxyRules latency in seconds for partial resyncs",
		  &st->partial_sync_duration, &fam);
	histogram(f, "kubeproxy_network_programming_duration_seconds",
		  "In Cluster Network Programming Latency in seconds",
		  &st->programming_latency, &fam);
	histogram(f, "kpx_network_programming_duration_seconds",
		  "Network programming latency (from each EndpointSlice's "
		  "last-change-trigger-time), buckets from 1 ms",
		  &st->programming_latency_fine, &fam);
	help(f, "kubeproxy_sync_proxy_rules_last_timestamp_seconds", "gauge",
	     "The last time proxy rules were successfully synced");
	for (k = 0; k < fam.n; k++)
		fprintf(f,
			"kubeproxy_sync_proxy_rules_last_timestamp_seconds"
			"{ip_family=\"%s\"} %.17g\n",
			fam.name[k], st->last_sync_wall);
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

	/* kube-proxy counts, per sync and family, the service ports whose
	 * Local policy left them without endpoints while the service has
	 * some. */
	for (i = 0; agent->plan && i < agent->plan->n_svcports; i++) {
		const struct kpx_plan_svcport *sp = &agent->plan->svcports[i];
		int fi = sp->family == AF_INET6;

		if (sp->itp_local && !sp->n_internal &&
		    sp->internal_empty == KPX_EMPTY_DROP)
			nle_int[fi]++;
		if (sp->etp_local && !sp->n_external &&
		    sp->external_empty == KPX_EMPTY_DROP)
			nle_ext[fi]++;
	}
	help(f, "kubeproxy_sync_proxy_rules_no_local_endpoints_total", "gauge",
	     "Number of services with a Local traffic policy and no endpoints");
	for (k = 0; k < fam.n; k++) {
		int fi = fam.af[k] == AF_INET6;

		/* Prometheus clients print label names sorted. */
		fprintf(f,
			"kubeproxy_sync_proxy_rules_no_local_endpoints_total"
			"{ip_family=\"%s\",traffic_policy=\"internal\"} %.0f\n"
			"kubeproxy_sync_proxy_rules_no_local_endpoints_total"
			"{ip_family=\"%s\",traffic_policy=\"external\"} %.0f\n",
			fam.name[k], nle_int[fi], fam.name[k], nle_ext[fi]);
	}

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
	rest_client_metrics(f, agent->k8s);
}

/* NAME{code="200"} and NAME{code="503"}: the probe counters. */
static void probe_counter(FILE *f, const char *name, const char *text,
			  const uint64_t v[2])
{
	help(f, name, "counter", text);
	fprintf(f, "%s{code=\"200\"} %llu\n%s{code=\"503\"} %llu\n", name,
		(unsigned long long)v[0], name, (unsigned long long)v[1]);
}

void kpx_metrics_write_counters(FILE *f, const struct kpx_serve_counters *c)
{
	probe_counter(f, "kubeproxy_proxy_healthz_total",
		      "Cumulative proxy healthz HTTP status", c->healthz);
	probe_counter(f, "kubeproxy_proxy_livez_total",
		      "Cumulative proxy livez HTTP status", c->livez);
	probe_counter(f, "kpx_readyz_total", "Cumulative /readyz HTTP status",
		      c->readyz);
}

void kpx_metrics_write_datapath(FILE *f, const struct json_object *datapath,
				const struct json_object *frontends)
{
	if (datapath)
		datapath_metrics(f, datapath);
	traffic_metrics(f, frontends);
}

void kpx_metrics_write(FILE *f, const struct kpx_agent *agent,
		       const struct json_object *datapath,
		       const struct json_object *frontends)
{
	kpx_metrics_write_agent(f, agent);
	kpx_metrics_write_datapath(f, datapath, frontends);
}

/* ---- process_* (the Prometheus client libraries' process collector) ---- */

int kpx_proc_parse_stat(const char *stat, long ticks, long page_size,
			double btime, struct kpx_proc_stats *out)
{
	/* Fields after the command name, which may hold spaces and ')':
	 * 3 state ... 14 utime 15 stime ... 22 starttime 23 vsize 24 rss */
	unsigned long long v[22];
	const char *p = stat ? strrchr(stat, ')') : NULL;
	char *end;
	int i;

	if (!p || ticks <= 0 || page_size <= 0)
		return -EINVAL;
	p++;
	while (*p == ' ')
		p++;
	if (!*p || *p == ' ')
		return -EINVAL;
	/* skip the state letter */
	p++;
	for (i = 0; i < 22; i++) {
		errno = 0;
		v[i] = strtoull(p, &end, 10);
		if (end == p || errno)
			return -EINVAL;
		p = end;
	}
	/* v[0] is field 4 (ppid): field k is v[k - 4]. */
	memset(out, 0, sizeof(*out));
	out->cpu_seconds = (double)(v[14 - 4] + v[15 - 4]) / (double)ticks;
	out->start_time = btime + (double)v[22 - 4] / (double)ticks;
	out->virtual_bytes = (double)v[23 - 4];
	out->resident_bytes = (double)v[24 - 4] * (double)page_size;
	return 0;
}

int kpx_proc_stats_read(struct kpx_proc_stats *out)
{
	char buf[1024], line[256];
	double btime = 0;
	struct rlimit rl;
	struct dirent *de;
	DIR *dir;
	FILE *f;
	size_t n;
	int ret;

	f = fopen("/proc/stat", "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "btime %lf", &btime) == 1)
			break;
	fclose(f);
	f = fopen("/proc/self/stat", "re");
	if (!f)
		return -errno;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	ret = kpx_proc_parse_stat(buf, sysconf(_SC_CLK_TCK),
				  sysconf(_SC_PAGESIZE), btime, out);
	if (ret)
		return ret;
	dir = opendir("/proc/self/fd");
	if (dir) {
		while ((de = readdir(dir)))
			if (de->d_name[0] != '.')
				out->open_fds++;
		closedir(dir);
	}
	if (!getrlimit(RLIMIT_NOFILE, &rl))
		out->max_fds = rl.rlim_cur == RLIM_INFINITY ? INFINITY :
							      (double)rl.rlim_cur;
	return 0;
}

void kpx_metrics_write_process(FILE *f, const struct kpx_proc_stats *p)
{
	gauge(f, "process_cpu_seconds_total", "counter",
	      "Total user and system CPU time spent in seconds.",
	      p->cpu_seconds);
	gauge(f, "process_max_fds", "gauge",
	      "Maximum number of open file descriptors.", p->max_fds);
	gauge(f, "process_open_fds", "gauge",
	      "Number of open file descriptors.", p->open_fds);
	gauge(f, "process_resident_memory_bytes", "gauge",
	      "Resident memory size in bytes.", p->resident_bytes);
	gauge(f, "process_start_time_seconds", "gauge",
	      "Start time of the process since unix epoch in seconds.",
	      p->start_time);
	gauge(f, "process_virtual_memory_bytes", "gauge",
	      "Virtual memory size in bytes.", p->virtual_bytes);
}

/* ---- the state published for the HTTP threads ---- */

static struct kpx_text *text_render(void (*fn)(FILE *f, const void *arg),
				    const void *arg)
{
	struct kpx_text *t = NULL;
	char *buf = NULL;
	size_t sz = 0;
	FILE *f;

	f = open_memstream(&buf, &sz);
	if (!f)
		return NULL;
	fn(f, arg);
	if (fclose(f)) {
		free(buf);
		return NULL;
	}
	t = malloc(sizeof(*t) + sz + 1);
	if (t) {
		t->refs = 1;
		t->len = sz;
		memcpy(t->s, buf, sz + 1);
	}
	free(buf);
	return t;
}

void kpx_text_put(struct kpx_text *t)
{
	if (t && __atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) == 0)
		free(t);
}

static struct kpx_text *text_get(struct kpx_text *t)
{
	if (t)
		__atomic_add_fetch(&t->refs, 1, __ATOMIC_RELAXED);
	return t;
}

int kpx_serve_new(struct kpx_agent *agent, struct kpx_serve **out)
{
	struct kpx_serve *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->dp_lock, NULL);
	s->proxy_mode = agent->ops ? agent->ops->name : NULL;
	s->configz = agent->configz;
	s->ops = agent->ops;
	s->cfg = agent->cfg;
	/* kube-proxy: healthy and eligible while starting up. */
	s->health.sync_ms = agent->cfg.sync_ms;
	s->health.node_eligible = true;
	snprintf(s->ready.reason, sizeof(s->ready.reason),
		 "first sync pending");
	*out = s;
	return 0;
}

void kpx_serve_free(struct kpx_serve *s)
{
	if (!s)
		return;
	kpx_text_put(s->agent_metrics);
	kpx_text_put(s->dp_text);
	pthread_mutex_destroy(&s->dp_lock);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static void write_agent_cb(FILE *f, const void *arg)
{
	kpx_metrics_write_agent(f, arg);
}

void kpx_serve_publish(struct kpx_serve *s, struct kpx_agent *agent)
{
	const struct kpx_node *node;
	struct kpx_health_input hi;
	struct kpx_ready_input ri;
	struct kpx_text *t = NULL, *old = NULL;
	uint64_t syncs, now = kpx_now_ms();

	if (!s)
		return;
	node = agent->store ? kpx_store_node(agent->store) : NULL;
	kpx_health_input_of(agent, node, &hi);
	kpx_ready_input_of(agent, &ri);
	/* Only this (loop) thread writes metrics_syncs and metrics_ms. */
	syncs = agent->stats.syncs_total + agent->stats.sync_errors_total;
	if (!s->agent_metrics || syncs != s->metrics_syncs ||
	    now - s->metrics_ms >= KPX_METRICS_AGENT_MIN_MS)
		t = text_render(write_agent_cb, agent);
	pthread_mutex_lock(&s->lock);
	if (ri.synced_once)
		ri.first_sync_wall = s->ready.synced_once ?
					     s->ready.first_sync_wall :
					     agent->stats.last_sync_wall;
	s->health = hi;
	s->ready = ri;
	if (t) {
		old = s->agent_metrics;
		s->agent_metrics = t;
		s->metrics_syncs = syncs;
		s->metrics_ms = now;
	}
	pthread_mutex_unlock(&s->lock);
	kpx_text_put(old);
}

void kpx_serve_health(struct kpx_serve *s, struct kpx_health_input *h,
		      struct kpx_ready_input *r)
{
	pthread_mutex_lock(&s->lock);
	if (h)
		*h = s->health;
	if (r)
		*r = s->ready;
	pthread_mutex_unlock(&s->lock);
}

struct kpx_text *kpx_serve_agent_metrics(struct kpx_serve *s)
{
	struct kpx_text *t;

	pthread_mutex_lock(&s->lock);
	t = text_get(s->agent_metrics);
	pthread_mutex_unlock(&s->lock);
	return t;
}

void kpx_serve_count(uint64_t *pair, bool ok)
{
	__atomic_add_fetch(&pair[ok ? 0 : 1], 1, __ATOMIC_RELAXED);
}

struct dp_dumps {
	struct json_object *dp, *fes;
};

static void write_dp_cb(FILE *f, const void *arg)
{
	const struct dp_dumps *d = arg;

	kpx_metrics_write_datapath(f, d->dp, d->fes);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* The datapath part, read from the kernel on this (HTTP) thread with the
 * backend's stateless dump functions. A dump that started after this
 * scrape arrived (another scrape's, while this one waited for the lock)
 * is as fresh as one of its own: share it. */
static struct kpx_text *serve_dp_text(struct kpx_serve *s)
{
	struct dp_dumps d = { 0 };
	struct kpx_text *t;
	uint64_t arrived = mono_ns();
	int ret;

	pthread_mutex_lock(&s->dp_lock);
	if (s->dp_text && s->dp_started_ns >= arrived) {
		t = text_get(s->dp_text);
		goto out;
	}
	s->dp_started_ns = mono_ns();
	if (s->ops && s->ops->dump_datapath) {
		ret = s->ops->dump_datapath(&s->cfg, &d.dp);
		if (ret && ret != -ENOENT)
			kpx_dbg(1, "metrics: %s datapath dump: %s",
				s->ops->name, strerror(-ret));
	}
	if (s->ops && s->ops->dump_frontends) {
		ret = s->ops->dump_frontends(&s->cfg, &d.fes);
		if (ret && ret != -ENOENT)
			kpx_dbg(1, "metrics: %s frontends dump: %s",
				s->ops->name, strerror(-ret));
	}
	t = text_render(write_dp_cb, &d);
	json_object_put(d.dp);
	json_object_put(d.fes);
	kpx_text_put(s->dp_text);
	s->dp_text = text_get(t);
out:
	pthread_mutex_unlock(&s->dp_lock);
	return t;
}

char *kpx_serve_metrics(struct kpx_serve *s, size_t *len)
{
	struct kpx_serve_counters c;
	struct kpx_proc_stats ps;
	struct kpx_text *agent, *dp;
	char *buf = NULL;
	size_t sz = 0;
	FILE *f;
	int i;

	for (i = 0; i < 2; i++) {
		c.healthz[i] = __atomic_load_n(&s->counters.healthz[i],
					       __ATOMIC_RELAXED);
		c.livez[i] = __atomic_load_n(&s->counters.livez[i],
					     __ATOMIC_RELAXED);
		c.readyz[i] = __atomic_load_n(&s->counters.readyz[i],
					      __ATOMIC_RELAXED);
	}
	agent = kpx_serve_agent_metrics(s);
	dp = serve_dp_text(s);
	f = open_memstream(&buf, &sz);
	if (f) {
		if (agent)
			fwrite(agent->s, 1, agent->len, f);
		kpx_metrics_write_counters(f, &c);
		if (!kpx_proc_stats_read(&ps))
			kpx_metrics_write_process(f, &ps);
		if (dp)
			fwrite(dp->s, 1, dp->len, f);
		if (fclose(f)) {
			free(buf);
			buf = NULL;
		}
	}
	kpx_text_put(agent);
	kpx_text_put(dp);
	if (buf && len)
		*len = sz;
	return buf;
}
