// SPDX-License-Identifier: Apache-2.0
/*
 * `kpx status`: the agent's state over the status socket, and the
 * datapath as the kernel holds it. With the agent down the datapath is
 * still read directly through the backend, so an operator sees what
 * keeps forwarding traffic.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "agent/serve.h"
#include "cli/cli.h"
#include "cli/inspect.h"
#include "cli/table.h"
#include "common/loop.h"

static const char status_usage[] =
	"Usage: kpx status [-o json] [--state-socket PATH] [--bpf-root PATH]\n"
	"                  [--backend bpf|nft] [--cgroup-path PATH]\n"
	"\n"
	"Shows the agent (through --state-socket), the datapath programmed\n"
	"in the kernel and object counts. Exit status 0 when the agent or a\n"
	"programmed datapath was found, 1 otherwise.\n";

static void fmt_ago(double t, char *buf, size_t len)
{
	double d = kpx_wall_seconds() - t;

	if (t <= 0)
		snprintf(buf, len, "never");
	else if (d < 120)
		snprintf(buf, len, "%.1fs ago", d);
	else if (d < 7200)
		snprintf(buf, len, "%.0fm ago", d / 60);
	else
		snprintf(buf, len, "%.1fh ago", d / 3600);
}

static void fmt_dur(double s, char *buf, size_t len)
{
	if (s < 1)
		snprintf(buf, len, "%.2fms", s * 1000);
	else if (s < 120)
		snprintf(buf, len, "%.1fs", s);
	else if (s < 7200)
		snprintf(buf, len, "%dm%02ds", (int)s / 60, (int)s % 60);
	else
		snprintf(buf, len, "%dh%02dm", (int)s / 3600,
			 ((int)s % 3600) / 60);
}

#define TEXT_WIDTH 80

/* Sum of an object whose values are all numbers (per-set element counts):
 * false when some value is not a number. */
static bool numeric_sum(struct json_object *o, double *sum)
{
	*sum = 0;
	json_object_object_foreach(o, k, v)
	{
		(void)k;
		if (!json_object_is_type(v, json_type_int) &&
		    !json_object_is_type(v, json_type_double))
			return false;
		*sum += json_object_get_double(v);
	}
	return true;
}

/* Scalars of an object as "k=v k=v" (objects/arrays summarised), wrapped
 * at 80 columns: col is where the cursor is, continuation lines start at
 * indent. */
/* Sources report wall-clock times as last_* seconds since the epoch. */
static bool is_wall_time(const char *key)
{
	return !strncmp(key, "last_", 5) && !strstr(key, "seconds") &&
	       !strstr(key, "duration");
}

static void print_inline(FILE *f, struct json_object *o, int col, int indent)
{
	char tok[512];
	bool first = true;
	double sum;
	int len;

	if (!json_object_is_type(o, json_type_object)) {
		fputs(json_object_get_string(o), f);
		return;
	}
	json_object_object_foreach(o, k, v)
	{
		if (!v)
			continue;
		if (json_object_is_type(v, json_type_array))
			len = snprintf(tok, sizeof(tok), "%s=[%zu]", k,
				       json_object_array_length(v));
		else if (json_object_is_type(v, json_type_object) &&
			 numeric_sum(v, &sum))
			len = snprintf(tok, sizeof(tok), "%s=%.6g", k, sum);
		else if (json_object_is_type(v, json_type_object))
			len = snprintf(tok, sizeof(tok), "%s={..}", k);
		else if (json_object_is_type(v, json_type_double) &&
			 is_wall_time(k)) {
			char ago[32];

			fmt_ago(json_object_get_double(v), ago, sizeof(ago));
			len = snprintf(tok, sizeof(tok), "%s=%s", k, ago);
		} else if (json_object_is_type(v, json_type_double))
			len = snprintf(tok, sizeof(tok), "%s=%.6g", k,
				       json_object_get_double(v));
		else
			len = snprintf(tok, sizeof(tok), "%s=%s", k,
				       json_object_get_string(v));
		if (len >= (int)sizeof(tok))
			len = sizeof(tok) - 1;
		if (!first && col + 1 + len > TEXT_WIDTH) {
			fprintf(f, "\n%*s", indent, "");
			col = indent;
		} else if (!first) {
			fputc(' ', f);
			col++;
		}
		first = false;
		fputs(tok, f);
		col += len;
	}
}

static bool all_scalar(struct json_object *o)
{
	json_object_object_foreach(o, k, v)
	{
		(void)k;
		if (json_object_is_type(v, json_type_object) ||
		    json_object_is_type(v, json_type_array))
			return false;
	}
	return true;
}

/* Generic, indented rendering of a backend's datapath document: the two
 * backends report different things and the CLI should not need to know. */
static void print_tree(FILE *f, struct json_object *o, int depth)
{
	size_t i, n;
	int col;

	json_object_object_foreach(o, k, v)
	{
		col = fprintf(f, "%*s%s: ", depth * 2, "", k);
		if (!v) {
			fputs("-\n", f);
		} else if (json_object_is_type(v, json_type_object)) {
			if (all_scalar(v) && json_object_object_length(v) <= 6) {
				print_inline(f, v, col, depth * 2 + 4);
				fputc('\n', f);
			} else {
				fputc('\n', f);
				print_tree(f, v, depth + 1);
			}
		} else if (json_object_is_type(v, json_type_array)) {
			n = json_object_array_length(v);
			if (!n) {
				fputs("none\n", f);
				continue;
			}
			fputc('\n', f);
			for (i = 0; i < n; i++) {
				fprintf(f, "%*s- ", depth * 2 + 2, "");
				print_inline(f, json_object_array_get_idx(v, i),
					     depth * 2 + 4, depth * 2 + 4);
				fputc('\n', f);
			}
		} else if (json_object_is_type(v, json_type_double)) {
			fprintf(f, "%.6g\n", json_object_get_double(v));
		} else {
			fprintf(f, "%s\n", json_object_get_string(v));
		}
	}
}

static void print_agent(FILE *f, struct json_object *ag)
{
	char a[64], b[64];
	struct json_object *src = kpx_jget(ag, "source");
	const char *err = kpx_jstr(ag, "last_error", NULL);
	double last = json_object_get_double(kpx_jget(ag, "last_sync"));
	bool healthy = kpx_jbool(ag, "healthy");
	int col;

	fmt_dur(json_object_get_double(kpx_jget(ag, "uptime_seconds")), a,
		sizeof(a));
	fprintf(f, "%sAgent:%s %srunning%s (pid %lld, version %s, up %s)\n",
		KPX_BOLD(f), KPX_RESET(f), KPX_GREEN(f), KPX_RESET(f),
		(long long)kpx_jint(ag, "pid", 0), kpx_jstr(ag, "version", "?"),
		a);
	fprintf(f, "  backend:      %s\n", kpx_jstr(ag, "backend", "?"));
	fprintf(f, "  node:         %s\n", kpx_jstr(ag, "node", "?"));
	col = fprintf(f, "  source:       %s ",
		      kpx_jbool(ag, "synced") ? "synced," : "not synced yet,");
	if (src)
		print_inline(f, src, col, 16);
	else
		fputs("-", f);
	fputc('\n', f);
	fprintf(f, "  health:       %s%s%s\n", healthy ? "" : KPX_RED(f),
		healthy ? "healthy" : "UNHEALTHY: queued changes not applied",
		healthy ? "" : KPX_RESET(f));
	fmt_ago(last, a, sizeof(a));
	fmt_dur(json_object_get_double(kpx_jget(ag, "last_sync_duration_seconds")),
		b, sizeof(b));
	fprintf(f, "  last sync:    %s, took %s (%lld syncs, %lld errors)\n",
		a, last > 0 ? b : "-",
		(long long)kpx_jint(ag, "syncs_total", 0),
		(long long)kpx_jint(ag, "sync_errors_total", 0));
	fprintf(f, "  pending:      %lld service, %lld endpoint changes\n",
		(long long)kpx_jint(ag, "pending_service_changes", 0),
		(long long)kpx_jint(ag, "pending_endpoint_changes", 0));
	if (err) {
		fmt_ago(json_object_get_double(kpx_jget(ag, "last_error_time")),
			a, sizeof(a));
		fprintf(f, "  last error:   %s%s%s (%s)\n", KPX_RED(f), err,
			KPX_RESET(f), a);
	}
}

/* The agent's effective configuration (what /configz serves): the
 * fields an operator checks after a migration, one line each. */
static const char *or_dash(const char *s, const char *dash)
{
	return s && *s ? s : dash;
}

static void print_config(FILE *f, struct json_object *cz)
{
	struct json_object *lin = kpx_jget(cz, "linux");
	struct json_object *ct = kpx_jget(lin, "conntrack");
	struct json_object *k = kpx_jget(cz, "kpx");
	struct json_object *np = kpx_jget(cz, "nodePortAddresses");

	if (!cz)
		return;
	fprintf(f, "%sConfiguration:%s %s (all of it: status -o json, /configz)\n",
		KPX_BOLD(f), KPX_RESET(f),
		or_dash(kpx_jstr(k, "configFile", NULL), "flags only"));
	fprintf(f, "  mode:         %s (backend %s)\n",
		or_dash(kpx_jstr(cz, "mode", NULL), "\"\""),
		kpx_jstr(k, "backend", "?"));
	fprintf(f, "  kubeconfig:   %s\n",
		or_dash(kpx_jstr(kpx_jget(cz, "clientConnection"), "kubeconfig",
				 NULL),
			"- (in-cluster, or --manifests)"));
	fprintf(f, "  clusterCIDR:  %s\n",
		or_dash(kpx_jstr(cz, "clusterCIDR", NULL), "-"));
	fprintf(f, "  nodePorts on: %s\n",
		np ? json_object_to_json_string_ext(np, JSON_C_TO_STRING_PLAIN) :
		     "?");
	fprintf(f, "  healthz:      %s   metrics: %s\n",
		or_dash(kpx_jstr(cz, "healthzBindAddress", NULL), "off"),
		or_dash(kpx_jstr(cz, "metricsBindAddress", NULL), "off"));
	fprintf(f, "  sync:         every %s, at most every %s\n",
		kpx_jstr(cz, "syncPeriod", "?"),
		kpx_jstr(cz, "minSyncPeriod", "?"));
	fprintf(f, "  masquerade:   %s\n",
		kpx_jbool(lin, "masqueradeAll") ? "all service traffic" :
						  "off-cluster sources");
	fprintf(f, "  conntrack:    tcp %s, close-wait %s, udp %s\n",
		kpx_jstr(ct, "tcpEstablishedTimeout", "?"),
		kpx_jstr(ct, "tcpCloseWaitTimeout", "?"),
		kpx_jstr(ct, "udpTimeout", "?"));
}

static void print_counts(FILE *f, struct json_object *c)
{
	if (!c)
		return;
	fprintf(f, "%sCounts:%s ", KPX_BOLD(f), KPX_RESET(f));
	print_inline(f, c, 8, 2);
	fputc('\n', f);
}

static bool seen_str(struct json_object *set, const char *k)
{
	if (json_object_object_get_ex(set, k, NULL))
		return true;
	json_object_object_add(set, k, NULL);
	return false;
}

/* With the agent down, the counts come from what the kernel holds:
 * frontends, the services they belong to and distinct endpoints. */
static struct json_object *kernel_counts(const struct kpx_backend_ops *ops,
					 const struct kpx_config *cfg)
{
	struct json_object *fes = NULL, *svcs, *eps, *c = NULL;
	size_t i, j, n;
	char ep[128];

	if (!ops || !ops->dump_frontends || ops->dump_frontends(cfg, &fes) ||
	    !json_object_is_type(fes, json_type_array))
		goto out;
	svcs = json_object_new_object();
	eps = json_object_new_object();
	n = json_object_array_length(fes);
	for (i = 0; i < n; i++) {
		struct json_object *fe = json_object_array_get_idx(fes, i);
		struct json_object *bs = kpx_jget(fe, "backends");

		seen_str(svcs, kpx_jstr(fe, "service", "?"));
		for (j = 0; bs && j < json_object_array_length(bs); j++) {
			struct json_object *b = json_object_array_get_idx(bs, j);

			snprintf(ep, sizeof(ep), "%s|%lld",
				 kpx_jstr(b, "address", ""),
				 (long long)kpx_jint(b, "port", 0));
			seen_str(eps, ep);
		}
	}
	c = json_object_new_object();
	json_object_object_add(c, "services", json_object_new_int64(
						       json_object_object_length(svcs)));
	json_object_object_add(c, "frontends", json_object_new_int64((int64_t)n));
	json_object_object_add(c, "endpoints", json_object_new_int64(
						       json_object_object_length(eps)));
	json_object_object_add(c, "source", json_object_new_string("kernel"));
	json_object_put(svcs);
	json_object_put(eps);
out:
	json_object_put(fes);
	return c;
}

int kpx_cmd_status(int argc, char **argv)
{
	struct kpx_inspect_opts o;
	struct json_object *reply = NULL, *out = NULL, *dp = NULL;
	struct json_object *agent = NULL, *counts = NULL, *kcounts = NULL;
	const struct kpx_backend_ops *ops = NULL;
	const char *agent_backend = NULL;
	char dp_err[PATH_MAX + 128] = "";
	int ret, rc = 1;
	FILE *f = stdout;

	ret = kpx_inspect_parse(argc, argv, false, status_usage, &o);
	if (ret)
		return ret > 0 ? 0 : 2;

	ret = kpx_status_request(o.cfg.state_socket, "status", &reply);
	if (!ret) {
		agent = kpx_jget(reply, "agent");
		counts = kpx_jget(reply, "counts");
		if (!counts)
			counts = kpx_jget(agent, "counts");
		agent_backend = kpx_jstr(agent, "backend", NULL);
		dp = kpx_jget(reply, "datapath");
		if (dp && kpx_jget(dp, "error"))
			dp = NULL;
		if (dp)
			json_object_get(dp);
	} else if (ret != -ENOENT && ret != -ECONNREFUSED) {
		fprintf(stderr, "kpx: status socket %s: %s\n",
			o.cfg.state_socket, strerror(-ret));
	}

	if (!dp) {
		ops = kpx_inspect_backend(&o.cfg, agent_backend);
		if (ops && ops->dump_datapath) {
			ret = ops->dump_datapath(&o.cfg, &dp);
			if (ret) {
				snprintf(dp_err, sizeof(dp_err), "%s: %s",
					 ops->name,
					 ret == -ENOENT ? "nothing programmed" :
							  strerror(-ret));
				json_object_put(dp);
				dp = NULL;
			}
		} else if (ops) {
			snprintf(dp_err, sizeof(dp_err),
				 "%s: this build cannot read its datapath",
				 ops->name);
		} else {
			snprintf(dp_err, sizeof(dp_err),
				 "no programmed bpf maps under %s nor kpx "
				 "nftables table found",
				 o.cfg.bpf_root);
		}
	}
	if (agent || dp)
		rc = 0;
	/* counts is borrowed from reply when the agent answered; owned
	 * (kcounts) when read from the kernel. */
	if (!counts && dp) {
		if (!ops)
			ops = kpx_inspect_backend(&o.cfg, agent_backend);
		kcounts = kernel_counts(ops, &o.cfg);
		counts = kcounts;
	}

	if (o.output && !strcmp(o.output, "json")) {
		out = json_object_new_object();
		json_object_object_add(out, "agent_running",
				       json_object_new_boolean(agent != NULL));
		json_object_object_add(out, "agent",
				       agent ? json_object_get(agent) : NULL);
		json_object_object_add(
			out, "backend",
			agent_backend ? json_object_new_string(agent_backend) :
			ops	      ? json_object_new_string(ops->name) :
					NULL);
		json_object_object_add(out, "datapath", dp);
		dp = NULL;
		if (dp_err[0])
			json_object_object_add(out, "datapath_error",
					       json_object_new_string(dp_err));
		json_object_object_add(out, "counts",
				       counts ? json_object_get(counts) : NULL);
		printf("%s\n", json_object_to_json_string_ext(
				       out, JSON_C_TO_STRING_PRETTY |
						    JSON_C_TO_STRING_SPACED));
		goto out;
	}

	if (agent) {
		print_agent(f, agent);
		print_config(f, kpx_jget(agent, "config"));
	} else
		fprintf(f, "%sAgent:%s %snot running%s (no answer on %s)\n",
			KPX_BOLD(f), KPX_RESET(f), KPX_RED(f), KPX_RESET(f),
			o.cfg.state_socket);
	if (dp) {
		fprintf(f, "%sDatapath (%s):%s\n", KPX_BOLD(f),
			agent_backend ? agent_backend :
			ops	      ? ops->name :
					kpx_jstr(dp, "backend", "?"),
			KPX_RESET(f));
		print_tree(f, dp, 1);
	} else {
		fprintf(f, "%sDatapath:%s %s\n", KPX_BOLD(f), KPX_RESET(f),
			dp_err[0] ? dp_err : "unknown");
	}
	print_counts(f, counts);
out:
	json_object_put(kcounts);
	json_object_put(dp);
	json_object_put(out);
	json_object_put(reply);
	return rc;
}
