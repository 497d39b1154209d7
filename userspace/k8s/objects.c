// SPDX-License-Identifier: Apache-2.0
/*
 * Strict decoders for the Kubernetes objects kpx consumes. Anything the
 * API server would have rejected, or that kpx cannot represent, fails with
 * a reason naming the JSON path of the offending field, so that a user can
 * find it in the manifest. Unknown fields are ignored (objects carry many
 * fields kpx does not need, e.g. managedFields).
 */
#include "k8s/client.h"
#include "k8s/objects.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LABEL_PROXY_NAME "service.kubernetes.io/service-proxy-name"
#define LABEL_HEADLESS "service.kubernetes.io/headless"
#define LABEL_SERVICE_NAME "kubernetes.io/service-name"
#define LABEL_ZONE "topology.kubernetes.io/zone"
#define ANN_LB_SOURCE_RANGES "service.beta.kubernetes.io/load-balancer-source-ranges"
#define TAINT_TO_BE_DELETED "ToBeDeletedByClusterAutoscaler"

#define AFFINITY_DEFAULT_S 10800
#define AFFINITY_MAX_S 86400
/* The API caps hints.forZones and forNodes at 8; leave room, reject
 * nonsense. */
#define MAX_HINTS 64

struct dec {
	char *err;
	size_t errlen;
};

__attribute__((format(printf, 3, 4))) static int fail(struct dec *d, int rc,
						      const char *fmt, ...)
{
	va_list ap;

	if (d->err && d->errlen) {
		va_start(ap, fmt);
		vsnprintf(d->err, d->errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

/* "<path>.<key>" in messages; just "<key>" at the top level (path ""). */
#define FIELD "%s%s%s"
#define FIELD_AT(path, key) (path), *(path) ? "." : "", (key)

/*
 * The API server's syntax rules for names (apimachinery's validation), so
 * that the manifests source accepts exactly what a cluster would: names
 * and port names are DNS labels or subdomains, and never carry a control
 * character, an escape sequence or a byte of another script into logs,
 * tables and kernel object names.
 */
static bool dns_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* RFC 1123 label: [a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63; RFC 1035
 * (Service names) also starts with a letter. */
static bool dns_label(const char *s, size_t n, bool rfc1035)
{
	if (!n || n > 63 || !dns_alnum(s[0]) || !dns_alnum(s[n - 1]))
		return false;
	if (rfc1035 && !(s[0] >= 'a' && s[0] <= 'z'))
		return false;
	for (size_t i = 1; i + 1 < n; i++)
		if (!dns_alnum(s[i]) && s[i] != '-')
			return false;
	return true;
}

/* RFC 1123 subdomain: labels joined by '.', at most 253 in all. */
static bool dns_subdomain(const char *s)
{
	size_t n = strlen(s);
	const char *p = s;

	if (!n || n > 253)
		return false;
	for (;;) {
		const char *dot = strchr(p, '.');
		size_t l = dot ? (size_t)(dot - p) : strlen(p);

		if (!dns_label(p, l, false))
			return false;
		if (!dot)
			return true;
		p = dot + 1;
	}
}

/* Label value: empty, or ([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9], at
 * most 63. */
static bool label_value(const char *s)
{
	size_t n = strlen(s);

	if (!n)
		return true;
	if (n > 63)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			     (c >= '0' && c <= '9');

		if (!alnum && ((i == 0 || i == n - 1) ||
			       (c != '-' && c != '_' && c != '.')))
			return false;
	}
	return true;
}

#define DNS1035_RULE                                                           \
	"a DNS-1035 label: a-z, 0-9 and '-', starting with a letter, ending "  \
	"with a letter or digit, at most 63"
#define DNS1123_LABEL_RULE                                                     \
	"a DNS-1123 label: a-z, 0-9 and '-', starting and ending with a "      \
	"letter or digit, at most 63"
#define DNS1123_SUBDOMAIN_RULE                                                 \
	"a DNS-1123 subdomain: DNS-1123 labels joined by '.', at most 253"
#define LABEL_VALUE_RULE                                                       \
	"a label value: A-Z, a-z, 0-9, '-', '_' and '.', starting and ending "  \
	"with a letter or digit, at most 63"

enum name_rule {
	NAME_DNS1035,	/* Service */
	NAME_SUBDOMAIN, /* EndpointSlice, Node */
};

static const char *type_name(struct json_object *o)
{
	return o ? json_type_to_name(json_object_get_type(o)) : "null";
}

/*
 * Field getters. A missing key and an explicit null both mean "absent"
 * (*out NULL / unchanged); a present value of the wrong JSON type is an
 * error. path is the JSON path of the parent, for the message.
 */
static int get_typed(struct dec *d, struct json_object *parent,
		     const char *path, const char *key, enum json_type type,
		     struct json_object **out)
{
	struct json_object *v = NULL;

	*out = NULL;
	if (!parent || !json_object_object_get_ex(parent, key, &v) || !v)
		return 0;
	if (!json_object_is_type(v, type))
		return fail(d, -EINVAL, FIELD ": expected %s, got %s",
			    FIELD_AT(path, key), json_type_to_name(type),
			    type_name(v));
	*out = v;
	return 0;
}

/* Copies an optional string field into buf; "" when absent. */
static int get_str(struct dec *d, struct json_object *parent, const char *path,
		   const char *key, char *buf, size_t buflen, bool required)
{
	struct json_object *v;
	const char *s;
	size_t n;
	int rc;

	buf[0] = '\0';
	rc = get_typed(d, parent, path, key, json_type_string, &v);
	if (rc)
		return rc;
	if (!v) {
		if (required)
			return fail(d, -EINVAL, FIELD ": missing",
				    FIELD_AT(path, key));
		return 0;
	}
	s = json_object_get_string(v);
	n = (size_t)json_object_get_string_len(v);
	if (required && n == 0)
		return fail(d, -EINVAL, FIELD ": empty", FIELD_AT(path, key));
	if (n >= buflen)
		return fail(d, -EINVAL, FIELD ": too long (%zu > %zu)",
			    FIELD_AT(path, key), n, buflen - 1);
	if (strlen(s) != n)
		return fail(d, -EINVAL, FIELD ": contains NUL",
			    FIELD_AT(path, key));
	memcpy(buf, s, n + 1);
	return 0;
}

/* *slot = interned s; the caller's object frees it. */
static int intern_to(struct dec *d, const char **slot, const char *s)
{
	*slot = kpx_intern(s);
	if (!*slot)
		return fail(d, -ENOMEM, "out of memory");
	return 0;
}

/* Integer field in [min, max]; *out untouched when absent. */
static int get_int(struct dec *d, struct json_object *parent, const char *path,
		   const char *key, int64_t min, int64_t max, int64_t *out,
		   bool *present)
{
	struct json_object *v;
	int64_t x;
	int rc;

	if (present)
		*present = false;
	rc = get_typed(d, parent, path, key, json_type_int, &v);
	if (rc)
		return rc;
	if (!v)
		return 0;
	x = json_object_get_int64(v);
	if (x < min || x > max)
		return fail(d, -EINVAL, FIELD ": %lld out of range (%lld..%lld)",
			    FIELD_AT(path, key), (long long)x, (long long)min,
			    (long long)max);
	*out = x;
	if (present)
		*present = true;
	return 0;
}

/* Optional bool; *out untouched when absent or null. */
static int get_bool(struct dec *d, struct json_object *parent, const char *path,
		    const char *key, bool *out)
{
	struct json_object *v;
	int rc;

	rc = get_typed(d, parent, path, key, json_type_boolean, &v);
	if (rc || !v)
		return rc;
	*out = json_object_get_boolean(v);
	return 0;
}

static bool has_key(struct json_object *o, const char *key)
{
	return o && json_object_is_type(o, json_type_object) &&
	       json_object_object_get_ex(o, key, NULL);
}

static int parse_proto(struct dec *d, struct json_object *parent,
		       const char *path, uint8_t *out)
{
	char buf[KPX_NAME_MAX];
	int rc;

	rc = get_str(d, parent, path, "protocol", buf, sizeof(buf), false);
	if (rc)
		return rc;
	if (!buf[0] || !strcmp(buf, "TCP"))
		*out = KPX_PROTO_TCP;
	else if (!strcmp(buf, "UDP"))
		*out = KPX_PROTO_UDP;
	else if (!strcmp(buf, "SCTP"))
		*out = KPX_PROTO_SCTP;
	else
		return fail(d, -EINVAL, "%s.protocol: unknown protocol \"%s\"",
			    path, buf);
	return 0;
}

struct meta {
	char ns[KPX_NS_MAX];
	char name[KPX_NAME_MAX];
	char rv[KPX_RV_MAX];
	struct json_object *labels;
	struct json_object *annotations;
};

static int parse_meta(struct dec *d, struct json_object *obj, bool namespaced,
		      enum name_rule rule, struct meta *m)
{
	struct json_object *md;
	int rc;

	memset(m, 0, sizeof(*m));
	if (!json_object_is_type(obj, json_type_object))
		return fail(d, -EINVAL, "expected object, got %s",
			    type_name(obj));
	rc = get_typed(d, obj, "", "metadata", json_type_object, &md);
	if (rc)
		return rc;
	if (!md)
		return fail(d, -EINVAL, "metadata: missing");
	rc = get_str(d, md, "metadata", "name", m->name, sizeof(m->name), true);
	if (rc)
		return rc;
	if (rule == NAME_DNS1035 &&
	    !dns_label(m->name, strlen(m->name), true))
		return fail(d, -EINVAL, "metadata.name: not " DNS1035_RULE);
	if (rule == NAME_SUBDOMAIN && !dns_subdomain(m->name))
		return fail(d, -EINVAL,
			    "metadata.name: not " DNS1123_SUBDOMAIN_RULE);
	if (namespaced) {
		rc = get_str(d, md, "metadata", "namespace", m->ns,
			     sizeof(m->ns), false);
		if (rc)
			return rc;
		if (!m->ns[0])
			strcpy(m->ns, "default");
		if (!dns_label(m->ns, strlen(m->ns), false))
			return fail(d, -EINVAL, "metadata.namespace: not "
				    DNS1123_LABEL_RULE);
	}
	rc = get_str(d, md, "metadata", "resourceVersion", m->rv, sizeof(m->rv),
		     false);
	if (rc)
		return rc;
	rc = get_typed(d, md, "metadata", "labels", json_type_object,
		       &m->labels);
	if (rc)
		return rc;
	return get_typed(d, md, "metadata", "annotations", json_type_object,
			 &m->annotations);
}

/* Start of every decoder: no message yet, then the metadata. */
static int decode_meta(struct dec *d, struct json_object *obj,
		       bool namespaced, enum name_rule rule, struct meta *m)
{
	if (d->err && d->errlen)
		d->err[0] = '\0';
	return parse_meta(d, obj, namespaced, rule, m);
}

static bool proxy_ignored(const struct meta *m)
{
	return has_key(m->labels, LABEL_PROXY_NAME) ||
	       has_key(m->labels, LABEL_HEADLESS);
}

/* Array field with at most max elements; *arr NULL and *n 0 when absent. */
static int get_array(struct dec *d, struct json_object *parent,
		     const char *path, const char *key, size_t max,
		     struct json_object **arr, size_t *n)
{
	int rc;

	*n = 0;
	rc = get_typed(d, parent, path, key, json_type_array, arr);
	if (rc || !*arr)
		return rc;
	*n = json_object_array_length(*arr);
	if (*n > max)
		return fail(d, -E2BIG, FIELD ": too many entries (%zu > %zu)",
			    FIELD_AT(path, key), *n, max);
	return 0;
}

/*
 * Element i of an array of objects, with its JSON path ("<arr_path>[i]")
 * in path for the caller's messages.
 */
static int get_obj_elem(struct dec *d, struct json_object *arr, size_t i,
			const char *arr_path, char *path, size_t pathlen,
			struct json_object **out)
{
	snprintf(path, pathlen, "%s[%zu]", arr_path, i);
	*out = json_object_array_get_idx(arr, i);
	if (!json_object_is_type(*out, json_type_object))
		return fail(d, -EINVAL, "%s: expected object, got %s", path,
			    type_name(*out));
	return 0;
}

/* Element i of the array of strings at <path>.<key>. */
static int get_str_elem(struct dec *d, struct json_object *arr, size_t i,
			const char *path, const char *key, const char **out)
{
	struct json_object *v = json_object_array_get_idx(arr, i);

	if (!json_object_is_type(v, json_type_string))
		return fail(d, -EINVAL, FIELD "[%zu]: expected string, got %s",
			    FIELD_AT(path, key), i, type_name(v));
	*out = json_object_get_string(v);
	return 0;
}

/*
 * name, protocol and port of a Service or EndpointSlice ports[] entry;
 * *port 0 when absent, an error when absent and required.
 */
static int port_fields(struct dec *d, struct json_object *p, const char *path,
		       bool required, const char **name, uint8_t *proto,
		       uint16_t *port)
{
	char buf[KPX_PORTNAME_MAX];
	int64_t v = 0;
	bool present;
	int rc;

	rc = get_str(d, p, path, "name", buf, sizeof(buf), false);
	if (!rc && buf[0] && !dns_label(buf, strlen(buf), false))
		rc = fail(d, -EINVAL, "%s.name: not " DNS1123_LABEL_RULE, path);
	if (!rc)
		rc = intern_to(d, name, buf);
	if (!rc)
		rc = parse_proto(d, p, path, proto);
	if (!rc)
		rc = get_int(d, p, path, "port", 1, 65535, &v, &present);
	if (rc)
		return rc;
	if (required && !present)
		return fail(d, -EINVAL, "%s.port: missing", path);
	*port = (uint16_t)v;
	return 0;
}

/* Array of IP strings into a new kpx_addr array. */
static int get_ip_list(struct dec *d, struct json_object *parent,
		       const char *path, const char *key, struct kpx_addr **out,
		       size_t *n_out)
{
	struct json_object *arr;
	const char *s;
	size_t n;
	int rc;

	*out = NULL;
	*n_out = 0;
	rc = get_array(d, parent, path, key, KPX_MAX_IPS, &arr, &n);
	if (rc || !n)
		return rc;
	*out = calloc(n, sizeof(**out));
	if (!*out)
		return fail(d, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		rc = get_str_elem(d, arr, i, path, key, &s);
		if (rc)
			return rc;
		if (kpx_addr_parse(s, &(*out)[i]))
			return fail(d, -EINVAL, FIELD "[%zu]: invalid IP \"%s\"",
				    FIELD_AT(path, key), i, s);
		*n_out = i + 1;
	}
	return 0;
}

static int svc_cluster_ips(struct dec *d, struct json_object *spec,
			   struct kpx_service *svc)
{
	struct json_object *arr, *one;
	size_t n;
	int rc;

	rc = get_array(d, spec, "spec", "clusterIPs", KPX_MAX_IPS, &arr, &n);
	if (rc)
		return rc;
	if (n) {
		one = json_object_array_get_idx(arr, 0);
		if (json_object_is_type(one, json_type_string) &&
		    !strcmp(json_object_get_string(one), "None")) {
			svc->headless = true;
			return 0;
		}
		return get_ip_list(d, spec, "spec", "clusterIPs",
				   &svc->cluster_ips, &svc->n_cluster_ips);
	}
	rc = get_typed(d, spec, "spec", "clusterIP", json_type_string, &one);
	if (rc || !one)
		return rc;
	/* "" means not allocated yet: a service without frontends. */
	if (!json_object_get_string_len(one))
		return 0;
	if (!strcmp(json_object_get_string(one), "None")) {
		svc->headless = true;
		return 0;
	}
	svc->cluster_ips = calloc(1, sizeof(*svc->cluster_ips));
	if (!svc->cluster_ips)
		return fail(d, -ENOMEM, "out of memory");
	if (kpx_addr_parse(json_object_get_string(one), svc->cluster_ips))
		return fail(d, -EINVAL, "spec.clusterIP: invalid IP \"%s\"",
			    json_object_get_string(one));
	svc->n_cluster_ips = 1;
	return 0;
}

static int svc_ports(struct dec *d, struct json_object *spec,
		     struct kpx_service *svc)
{
	struct json_object *arr, *p;
	char path[48];
	int64_t v;
	size_t n;
	int rc;

	rc = get_array(d, spec, "spec", "ports", KPX_MAX_PORTS, &arr, &n);
	if (rc || !n)
		return rc;
	svc->ports = calloc(n, sizeof(*svc->ports));
	if (!svc->ports)
		return fail(d, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		struct kpx_svc_port *sp = &svc->ports[i];

		/* Count first: free() drops the name of a partial entry. */
		svc->n_ports = i + 1;
		rc = get_obj_elem(d, arr, i, "spec.ports", path, sizeof(path),
				  &p);
		if (!rc)
			rc = port_fields(d, p, path, true, &sp->name,
					 &sp->proto, &sp->port);
		if (rc)
			return rc;
		v = 0;
		rc = get_int(d, p, path, "nodePort", 0, 65535, &v, NULL);
		if (rc)
			return rc;
		sp->node_port = (uint16_t)v;
	}
	return 0;
}

static int svc_lb_ingress(struct dec *d, struct json_object *obj,
			  struct kpx_service *svc)
{
	struct json_object *status, *lb = NULL, *arr, *ing, *ip, *mode;
	char path[64];
	size_t n = 0;
	int rc;

	rc = get_typed(d, obj, "", "status", json_type_object, &status);
	if (!rc)
		rc = get_typed(d, status, "status", "loadBalancer",
			       json_type_object, &lb);
	if (!rc && status)
		rc = get_array(d, lb, "status.loadBalancer", "ingress",
			       KPX_MAX_IPS, &arr, &n);
	if (rc || !status || !lb || !n)
		return rc;
	svc->lb_ips = calloc(n, sizeof(*svc->lb_ips));
	if (!svc->lb_ips)
		return fail(d, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		rc = get_obj_elem(d, arr, i, "status.loadBalancer.ingress",
				  path, sizeof(path), &ing);
		if (!rc)
			rc = get_typed(d, ing, path, "ip", json_type_string,
				       &ip);
		if (!rc)
			rc = get_typed(d, ing, path, "ipMode", json_type_string,
				       &mode);
		if (rc)
			return rc;
		/* Hostname-only ingress (e.g. AWS ELB): nothing to program. */
		if (!ip || !json_object_get_string_len(ip))
			continue;
		/* ipMode Proxy: the load balancer proxies to the nodes
		 * itself; like kube-proxy, do not short-circuit its IP. */
		if (mode && strcmp(json_object_get_string(mode), "VIP"))
			continue;
		if (kpx_addr_parse(json_object_get_string(ip),
				   &svc->lb_ips[svc->n_lb_ips]))
			return fail(d, -EINVAL, "%s.ip: invalid IP \"%s\"",
				    path, json_object_get_string(ip));
		svc->n_lb_ips++;
	}
	return 0;
}

/* kube-proxy trims blanks around each range before parsing it. */
static int cidr_trimmed(const char *s, struct kpx_cidr *out)
{
	char buf[64];
	size_t l;

	while (*s == ' ' || *s == '\t')
		s++;
	l = strlen(s);
	while (l && (s[l - 1] == ' ' || s[l - 1] == '\t'))
		l--;
	if (l >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, l);
	buf[l] = '\0';
	return kpx_cidr_parse(buf, out);
}

static int svc_source_ranges(struct dec *d, struct json_object *spec,
			     const struct meta *m, struct kpx_service *svc)
{
	struct json_object *arr, *v;
	const char *s;
	size_t n;
	int rc;

	rc = get_array(d, spec, "spec", "loadBalancerSourceRanges",
		       KPX_MAX_IPS, &arr, &n);
	if (rc)
		return rc;
	if (n) {
		svc->lb_source_ranges = calloc(n, sizeof(struct kpx_cidr));
		if (!svc->lb_source_ranges)
			return fail(d, -ENOMEM, "out of memory");
		for (size_t i = 0; i < n; i++) {
			rc = get_str_elem(d, arr, i, "spec",
					  "loadBalancerSourceRanges", &s);
			if (rc)
				return rc;
			if (cidr_trimmed(s, &svc->lb_source_ranges[i]))
				return fail(d, -EINVAL,
					    "spec.loadBalancerSourceRanges[%zu]: invalid CIDR \"%s\"",
					    i, s);
			svc->n_lb_source_ranges = i + 1;
		}
		return 0;
	}
	/* The field wins; the annotation is the older form of the same. */
	rc = get_typed(d, m->annotations, "metadata.annotations",
		       ANN_LB_SOURCE_RANGES, json_type_string, &v);
	if (rc || !v)
		return rc;
	s = json_object_get_string(v);
	if (!*s)
		return 0;
	svc->lb_source_ranges = calloc(KPX_MAX_IPS, sizeof(struct kpx_cidr));
	if (!svc->lb_source_ranges)
		return fail(d, -ENOMEM, "out of memory");
	if (kpx_cidr_list_parse(s, svc->lb_source_ranges, KPX_MAX_IPS,
				&svc->n_lb_source_ranges)) {
		svc->n_lb_source_ranges = 0;
		return fail(d, -EINVAL,
			    "metadata.annotations[%s]: invalid CIDR list \"%s\"",
			    ANN_LB_SOURCE_RANGES, s);
	}
	return 0;
}

static int svc_policies(struct dec *d, struct json_object *spec,
			struct kpx_service *svc)
{
	struct json_object *cfg, *cip;
	char buf[32];
	int64_t v;
	int rc;

	rc = get_str(d, spec, "spec", "externalTrafficPolicy", buf,
		     sizeof(buf), false);
	if (rc)
		return rc;
	/* "OnlyLocal"/"Global" are the pre-1.7 spellings still accepted by
	 * the API for old objects. */
	if (!strcmp(buf, "Local") || !strcmp(buf, "OnlyLocal"))
		svc->etp_local = true;
	else if (buf[0] && strcmp(buf, "Cluster") && strcmp(buf, "Global"))
		return fail(d, -EINVAL,
			    "spec.externalTrafficPolicy: unknown value \"%s\"",
			    buf);

	rc = get_str(d, spec, "spec", "internalTrafficPolicy", buf,
		     sizeof(buf), false);
	if (rc)
		return rc;
	if (!strcmp(buf, "Local"))
		svc->itp_local = true;
	else if (buf[0] && strcmp(buf, "Cluster"))
		return fail(d, -EINVAL,
			    "spec.internalTrafficPolicy: unknown value \"%s\"",
			    buf);

	rc = get_str(d, spec, "spec", "sessionAffinity", buf, sizeof(buf),
		     false);
	if (rc)
		return rc;
	if (!strcmp(buf, "ClientIP")) {
		v = AFFINITY_DEFAULT_S;
		rc = get_typed(d, spec, "spec", "sessionAffinityConfig",
			       json_type_object, &cfg);
		if (!rc)
			rc = get_typed(d, cfg, "spec.sessionAffinityConfig",
				       "clientIP", json_type_object, &cip);
		if (!rc && cfg)
			rc = get_int(d, cip,
				     "spec.sessionAffinityConfig.clientIP",
				     "timeoutSeconds", 1, AFFINITY_MAX_S, &v,
				     NULL);
		if (rc)
			return rc;
		svc->affinity_timeout = (uint32_t)v;
	} else if (buf[0] && strcmp(buf, "None")) {
		return fail(d, -EINVAL,
			    "spec.sessionAffinity: unknown value \"%s\"", buf);
	}

	v = 0;
	rc = get_int(d, spec, "spec", "healthCheckNodePort", 0, 65535, &v,
		     NULL);
	svc->health_check_node_port = (uint16_t)v;
	return rc;
}

int kpx_service_decode(struct json_object *obj, struct kpx_service **out,
		       char *err, size_t errlen)
{
	struct dec d = { .err = err, .errlen = errlen };
	struct kpx_service *svc;
	struct json_object *spec;
	struct meta m;
	char type[32];
	int rc;

	*out = NULL;
	rc = decode_meta(&d, obj, true, NAME_DNS1035, &m);
	if (rc)
		return rc;
	svc = calloc(1, sizeof(*svc));
	if (!svc)
		return fail(&d, -ENOMEM, "out of memory");
	strcpy(svc->resource_version, m.rv);
	svc->proxy_ignored = proxy_ignored(&m);
	rc = intern_to(&d, &svc->ns, m.ns);
	if (!rc)
		rc = intern_to(&d, &svc->name, m.name);
	if (rc)
		goto out;

	rc = get_typed(&d, obj, "", "spec", json_type_object, &spec);
	if (rc)
		goto out;
	if (!spec) {
		rc = fail(&d, -EINVAL, "spec: missing");
		goto out;
	}
	rc = get_str(&d, spec, "spec", "type", type, sizeof(type), false);
	if (rc)
		goto out;
	if (!type[0] || !strcmp(type, "ClusterIP")) {
		svc->type = KPX_SVC_CLUSTER_IP;
	} else if (!strcmp(type, "NodePort")) {
		svc->type = KPX_SVC_NODE_PORT;
	} else if (!strcmp(type, "LoadBalancer")) {
		svc->type = KPX_SVC_LOAD_BALANCER;
	} else if (!strcmp(type, "ExternalName")) {
		svc->type = KPX_SVC_EXTERNAL_NAME;
	} else {
		rc = fail(&d, -EINVAL, "spec.type: unknown type \"%s\"", type);
		goto out;
	}
	rc = svc_cluster_ips(&d, spec, svc);
	if (!rc)
		rc = svc_ports(&d, spec, svc);
	if (!rc)
		rc = get_ip_list(&d, spec, "spec", "externalIPs",
				 &svc->external_ips, &svc->n_external_ips);
	if (!rc)
		rc = svc_lb_ingress(&d, obj, svc);
	if (!rc)
		rc = svc_source_ranges(&d, spec, &m, svc);
	if (!rc)
		rc = svc_policies(&d, spec, svc);
out:
	if (rc) {
		kpx_service_free(svc);
		return rc;
	}
	*out = svc;
	return 0;
}

static int slice_ports(struct dec *d, struct json_object *obj,
		       struct kpx_endpoint_slice *sl)
{
	struct json_object *arr, *p;
	char path[32];
	size_t n;
	int rc;

	rc = get_array(d, obj, "", "ports", KPX_MAX_PORTS, &arr, &n);
	if (rc || !n)
		return rc;
	sl->ports = calloc(n, sizeof(*sl->ports));
	if (!sl->ports)
		return fail(d, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		struct kpx_slice_port *sp = &sl->ports[i];

		sl->n_ports = i + 1;
		rc = get_obj_elem(d, arr, i, "ports", path, sizeof(path), &p);
		if (!rc)
			rc = port_fields(d, p, path, false, &sp->name,
					 &sp->proto, &sp->port);
		if (rc)
			return rc;
		sl->n_ports = i + 1;
	}
	return 0;
}

/* hints.KEY[].name (each shorter than width) into a calloc'd array of n
 * interned names. */
static int hint_names(struct dec *d, struct json_object *hints,
		      const char *hpath, const char *key, size_t width,
		      const char ***names, uint8_t *n_names)
{
	struct json_object *arr, *h;
	char apath[112], epath[128], buf[KPX_NAME_MAX];
	size_t n;
	int rc;

	_Static_assert(MAX_HINTS <= UINT8_MAX, "n_hint_* are uint8_t");
	rc = get_array(d, hints, hpath, key, MAX_HINTS, &arr, &n);
	if (rc || !n)
		return rc;
	*names = calloc(n, sizeof(**names));
	if (!*names)
		return fail(d, -ENOMEM, "out of memory");
	snprintf(apath, sizeof(apath), "%s.%s", hpath, key);
	for (size_t i = 0; i < n; i++) {
		rc = get_obj_elem(d, arr, i, apath, epath, sizeof(epath), &h);
		if (!rc)
			rc = get_str(d, h, epath, "name", buf, width, true);
		if (!rc)
			rc = intern_to(d, &(*names)[i], buf);
		if (rc)
			return rc;
		*n_names = (uint8_t)(i + 1);
	}
	return 0;
}

static int endpoint_decode(struct dec *d, struct json_object *e,
			   const char *path, uint8_t family,
			   struct kpx_endpoint *ep)
{
	struct json_object *addrs, *cond, *hints;
	char hpath[80], node[KPX_NAME_MAX], zone[KPX_ZONE_MAX];
	bool ready = true, serving = false, terminating = false;
	bool serving_set = false;
	const char *a0;
	size_t n;
	int rc;

	rc = get_array(d, e, path, "addresses", 100, &addrs, &n);
	if (rc)
		return rc;
	if (!n)
		return fail(d, -EINVAL, "%s.addresses: missing", path);
	rc = get_str_elem(d, addrs, 0, path, "addresses", &a0);
	if (rc)
		return rc;
	if (kpx_addr_parse(a0, &ep->addr))
		return fail(d, -EINVAL, "%s.addresses[0]: invalid IP \"%s\"",
			    path, a0);
	if (ep->addr.family != family)
		return fail(d, -EINVAL,
			    "%s.addresses[0]: \"%s\" does not match addressType %s",
			    path, a0, family == AF_INET ? "IPv4" : "IPv6");

	rc = get_typed(d, e, path, "conditions", json_type_object, &cond);
	if (rc)
		return rc;
	if (cond) {
		char cpath[80];

		snprintf(cpath, sizeof(cpath), "%s.conditions", path);
		rc = get_bool(d, cond, cpath, "ready", &ready);
		if (!rc)
			rc = get_bool(d, cond, cpath, "terminating",
				      &terminating);
		if (!rc) {
			struct json_object *sv;

			rc = get_typed(d, cond, cpath, "serving",
				       json_type_boolean, &sv);
			if (sv) {
				serving = json_object_get_boolean(sv);
				serving_set = true;
			}
		}
		if (rc)
			return rc;
	}
	ep->ready = ready;
	ep->serving = serving_set ? serving : ready;
	ep->terminating = terminating;

	rc = get_str(d, e, path, "nodeName", node, sizeof(node), false);
	if (!rc && node[0] && !dns_subdomain(node))
		rc = fail(d, -EINVAL,
			  "%s.nodeName: not " DNS1123_SUBDOMAIN_RULE, path);
	if (!rc)
		rc = intern_to(d, &ep->node_name, node);
	if (!rc)
		rc = get_str(d, e, path, "zone", zone, sizeof(zone), false);
	if (!rc)
		rc = intern_to(d, &ep->zone, zone);
	if (!rc)
		rc = get_typed(d, e, path, "hints", json_type_object, &hints);
	if (rc || !hints)
		return rc;
	snprintf(hpath, sizeof(hpath), "%s.hints", path);
	rc = hint_names(d, hints, hpath, "forZones", KPX_ZONE_MAX,
			&ep->hint_zones, &ep->n_hint_zones);
	if (!rc)
		rc = hint_names(d, hints, hpath, "forNodes", KPX_NAME_MAX,
				&ep->hint_nodes, &ep->n_hint_nodes);
	return rc;
}

/*
 * The EndpointSlice controller's endpoints.kubernetes.io/last-change-
 * trigger-time (RFC 3339, fraction optional), as kube-proxy reads it for
 * its network programming latency; 0 when absent or unreadable (the
 * metric then skips the change, as kube-proxy does).
 */
static double trigger_time(struct json_object *annotations)
{
	struct json_object *v;
	const char *s, *dot;
	double frac = 0, scale = 0.1;
	int64_t sec;

	if (!annotations ||
	    !json_object_object_get_ex(annotations,
				       "endpoints.kubernetes.io/last-change-trigger-time",
				       &v) ||
	    !json_object_is_type(v, json_type_string))
		return 0;
	s = json_object_get_string(v);
	if (kpx_k8s_parse_rfc3339(s, &sec) || sec <= 0)
		return 0;
	if ((dot = strchr(s, '.')))
		for (dot++; *dot >= '0' && *dot <= '9' && scale > 1e-10; dot++) {
			frac += (*dot - '0') * scale;
			scale /= 10;
		}
	return (double)sec + frac;
}

int kpx_slice_decode(struct json_object *obj, struct kpx_endpoint_slice **out,
		     char *err, size_t errlen)
{
	struct dec d = { .err = err, .errlen = errlen };
	struct kpx_endpoint_slice *sl;
	struct json_object *arr;
	char at[16], path[32], svc_name[KPX_NAME_MAX];
	struct meta m;
	size_t n;
	int rc;

	*out = NULL;
	rc = decode_meta(&d, obj, true, NAME_SUBDOMAIN, &m);
	if (rc)
		return rc;
	sl = calloc(1, sizeof(*sl));
	if (!sl)
		return fail(&d, -ENOMEM, "out of memory");
	strcpy(sl->resource_version, m.rv);
	sl->proxy_ignored = proxy_ignored(&m);
	sl->trigger_wall = trigger_time(m.annotations);

	rc = intern_to(&d, &sl->ns, m.ns);
	if (!rc)
		rc = intern_to(&d, &sl->name, m.name);
	if (!rc)
		rc = get_str(&d, m.labels, "metadata.labels", LABEL_SERVICE_NAME,
			     svc_name, sizeof(svc_name), false);
	if (!rc)
		rc = intern_to(&d, &sl->service_name, svc_name);
	if (rc)
		goto out;
	if (!sl->service_name[0]) {
		rc = fail(&d, -EINVAL, "metadata.labels[%s]: missing",
			  LABEL_SERVICE_NAME);
		goto out;
	}
	if (!label_value(sl->service_name)) {
		rc = fail(&d, -EINVAL, "metadata.labels[%s]: not " LABEL_VALUE_RULE,
			  LABEL_SERVICE_NAME);
		goto out;
	}
	rc = get_str(&d, obj, "", "addressType", at, sizeof(at), false);
	if (rc)
		goto out;
	if (!strcmp(at, "IPv4")) {
		sl->family = AF_INET;
	} else if (!strcmp(at, "IPv6")) {
		sl->family = AF_INET6;
	} else if (!strcmp(at, "FQDN")) {
		rc = fail(&d, -EOPNOTSUPP,
			  "addressType: FQDN slices are not proxied");
		goto out;
	} else {
		rc = fail(&d, -EINVAL, at[0] ? "addressType: unknown \"%s\"" :
						"addressType: missing%s",
			  at);
		goto out;
	}
	rc = slice_ports(&d, obj, sl);
	if (rc)
		goto out;
	rc = get_array(&d, obj, "", "endpoints", KPX_MAX_ENDPOINTS, &arr, &n);
	if (rc || !n)
		goto out;
	sl->endpoints = calloc(n, sizeof(*sl->endpoints));
	if (!sl->endpoints) {
		rc = fail(&d, -ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct json_object *e;

		/* Count first so that free() sees a partially filled entry. */
		sl->n_endpoints = i + 1;
		rc = get_obj_elem(&d, arr, i, "endpoints", path, sizeof(path),
				  &e);
		if (!rc)
			rc = endpoint_decode(&d, e, path, sl->family,
					     &sl->endpoints[i]);
		if (rc)
			goto out;
	}
out:
	if (rc) {
		kpx_slice_free(sl);
		return rc;
	}
	*out = sl;
	return 0;
}

int kpx_node_decode(struct json_object *obj, struct kpx_node **out, char *err,
		    size_t errlen)
{
	struct dec d = { .err = err, .errlen = errlen };
	struct json_object *md, *spec, *taints, *t, *status, *addrs, *a, *dt;
	char path[48], type[32], ip[KPX_ADDR_STRLEN + 8];
	struct kpx_node *node;
	struct meta m;
	size_t n;
	int rc;

	*out = NULL;
	rc = decode_meta(&d, obj, false, NAME_SUBDOMAIN, &m);
	if (rc)
		return rc;
	node = calloc(1, sizeof(*node));
	if (!node)
		return fail(&d, -ENOMEM, "out of memory");
	strcpy(node->name, m.name);
	rc = get_str(&d, m.labels, "metadata.labels", LABEL_ZONE, node->zone,
		     sizeof(node->zone), false);
	if (!rc && !label_value(node->zone))
		rc = fail(&d, -EINVAL, "metadata.labels[%s]: not " LABEL_VALUE_RULE,
			  LABEL_ZONE);
	if (rc)
		goto out;
	md = json_object_object_get(obj, "metadata");
	node->deleting = json_object_object_get_ex(md, "deletionTimestamp",
						   &dt) &&
			 dt != NULL;

	rc = get_typed(&d, obj, "", "spec", json_type_object, &spec);
	if (!rc)
		rc = get_array(&d, spec, "spec", "taints", KPX_MAX_PORTS,
			       &taints, &n);
	if (rc)
		goto out;
	for (size_t i = 0; spec && i < n; i++) {
		char key[KPX_NAME_MAX];

		rc = get_obj_elem(&d, taints, i, "spec.taints", path,
				  sizeof(path), &t);
		if (!rc)
			rc = get_str(&d, t, path, "key", key, sizeof(key),
				     false);
		if (rc)
			goto out;
		if (!strcmp(key, TAINT_TO_BE_DELETED))
			node->to_be_deleted = true;
	}

	rc = get_typed(&d, obj, "", "status", json_type_object, &status);
	if (!rc)
		rc = get_array(&d, status, "status", "addresses", KPX_MAX_IPS,
			       &addrs, &n);
	if (rc || !status || !n)
		goto out;
	node->addrs = calloc(n, sizeof(*node->addrs));
	if (!node->addrs) {
		rc = fail(&d, -ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		rc = get_obj_elem(&d, addrs, i, "status.addresses", path,
				  sizeof(path), &a);
		if (!rc)
			rc = get_str(&d, a, path, "type", type, sizeof(type),
				     false);
		if (rc)
			goto out;
		if (strcmp(type, "InternalIP") && strcmp(type, "ExternalIP"))
			continue;
		rc = get_str(&d, a, path, "address", ip, sizeof(ip), true);
		if (rc)
			goto out;
		if (kpx_addr_parse(ip, &node->addrs[node->n_addrs])) {
			rc = fail(&d, -EINVAL, "%s.address: invalid IP \"%s\"",
				  path, ip);
			goto out;
		}
		node->n_addrs++;
	}
out:
	if (rc) {
		kpx_node_free(node);
		return rc;
	}
	*out = node;
	return 0;
}

static const char *str_field(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_is_type(o, json_type_object) ||
	    !json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

int kpx_object_kind(struct json_object *obj)
{
	const char *kind = str_field(obj, "kind");
	const char *api = str_field(obj, "apiVersion");

	if (!kind || !api)
		return -1;
	if (!strcmp(kind, "Service") && !strcmp(api, "v1"))
		return KPX_KIND_SERVICE;
	if (!strcmp(kind, "EndpointSlice") &&
	    !strcmp(api, "discovery.k8s.io/v1"))
		return KPX_KIND_SLICE;
	if (!strcmp(kind, "Node") && !strcmp(api, "v1"))
		return KPX_KIND_NODE;
	return -1;
}

const char *kpx_object_ref(struct json_object *obj, char *buf, size_t len)
{
	struct json_object *md = NULL;
	const char *ns, *name;

	if (json_object_is_type(obj, json_type_object))
		json_object_object_get_ex(obj, "metadata", &md);
	ns = str_field(md, "namespace");
	name = str_field(md, "name");
	if (!name || !*name)
		name = "<unnamed>";
	if (ns && *ns)
		snprintf(buf, len, "%s/%s", ns, name);
	else
		snprintf(buf, len, "%s", name);
	return buf;
}

void kpx_service_free(struct kpx_service *svc)
{
	if (!svc)
		return;
	kpx_intern_put(svc->ns);
	kpx_intern_put(svc->name);
	for (size_t i = 0; i < svc->n_ports; i++)
		kpx_intern_put(svc->ports[i].name);
	free(svc->cluster_ips);
	free(svc->external_ips);
	free(svc->lb_ips);
	free(svc->lb_source_ranges);
	free(svc->ports);
	free(svc);
}

void kpx_slice_free(struct kpx_endpoint_slice *slice)
{
	if (!slice)
		return;
	for (size_t i = 0; i < slice->n_endpoints; i++) {
		struct kpx_endpoint *ep = &slice->endpoints[i];

		kpx_intern_put(ep->node_name);
		kpx_intern_put(ep->zone);
		for (size_t j = 0; j < ep->n_hint_zones; j++)
			kpx_intern_put(ep->hint_zones[j]);
		for (size_t j = 0; j < ep->n_hint_nodes; j++)
			kpx_intern_put(ep->hint_nodes[j]);
		free(ep->hint_zones);
		free(ep->hint_nodes);
	}
	for (size_t i = 0; i < slice->n_ports; i++)
		kpx_intern_put(slice->ports[i].name);
	kpx_intern_put(slice->ns);
	kpx_intern_put(slice->name);
	kpx_intern_put(slice->service_name);
	free(slice->endpoints);
	free(slice->ports);
	free(slice);
}

void kpx_node_free(struct kpx_node *node)
{
	if (!node)
		return;
	free(node->addrs);
	free(node);
}

void kpx_object_free(enum kpx_kind kind, void *obj)
{
	switch (kind) {
	case KPX_KIND_SERVICE:
		kpx_service_free(obj);
		break;
	case KPX_KIND_SLICE:
		kpx_slice_free(obj);
		break;
	case KPX_KIND_NODE:
		kpx_node_free(obj);
		break;
	default:
		break;
	}
}

const char *kpx_proto_name(uint8_t proto)
{
	switch (proto) {
	case KPX_PROTO_TCP:
		return "TCP";
	case KPX_PROTO_UDP:
		return "UDP";
	case KPX_PROTO_SCTP:
		return "SCTP";
	default:
		return "?";
	}
}
