// SPDX-License-Identifier: Apache-2.0
/* Decoding and validation of Service, EndpointSlice and Node objects. */
#include <criterion/criterion.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/table.h"
#include "common/addr.h"
#include "common/log.h"
#include "k8s/objects.h"
#include "model/store.h"
#include "plan/plan.h"

/* JSON with ' for " so that test objects stay readable in C. */
static struct json_object *J(const char *text)
{
	char *s = strdup(text);
	struct json_object *o;

	cr_assert(s);
	for (char *p = s; *p; p++)
		if (*p == '\'')
			*p = '"';
	o = json_tokener_parse(s);
	cr_assert(o, "test JSON does not parse: %s", s);
	free(s);
	return o;
}

static const char *ip(const struct kpx_addr *a)
{
	static char buf[4][KPX_ADDR_STRLEN];
	static int i;

	return kpx_addr_str(a, buf[i++ % 4]);
}

static struct kpx_service *svc_ok(const char *text)
{
	struct json_object *o = J(text);
	struct kpx_service *svc = NULL;
	char err[256];
	int rc = kpx_service_decode(o, &svc, err, sizeof(err));

	cr_assert_eq(rc, 0, "decode failed: %s", err);
	cr_assert(svc);
	json_object_put(o);
	return svc;
}

static struct kpx_endpoint_slice *slice_ok(const char *text)
{
	struct json_object *o = J(text);
	struct kpx_endpoint_slice *sl = NULL;
	char err[256];
	int rc = kpx_slice_decode(o, &sl, err, sizeof(err));

	cr_assert_eq(rc, 0, "decode failed: %s", err);
	cr_assert(sl);
	json_object_put(o);
	return sl;
}

Test(objects, service_all_fields)
{
	struct kpx_service *svc = svc_ok(
		"{'apiVersion':'v1','kind':'Service',"
		"'metadata':{'name':'web','namespace':'shop','resourceVersion':'42'},"
		"'spec':{'type':'LoadBalancer','clusterIP':'198.18.100.1',"
		"'clusterIPs':['198.18.100.1','fd00::10'],"
		"'ports':[{'name':'http','port':80,'targetPort':8080,'nodePort':30080},"
		"{'name':'dns','protocol':'UDP','port':53,'nodePort':30053},"
		"{'name':'s','protocol':'SCTP','port':9999}],"
		"'externalIPs':['198.18.200.5'],"
		"'loadBalancerSourceRanges':['198.18.0.0/16',' 10.0.0.0/8 '],"
		"'externalTrafficPolicy':'Local','internalTrafficPolicy':'Local',"
		"'healthCheckNodePort':32000,'sessionAffinity':'ClientIP',"
		"'sessionAffinityConfig':{'clientIP':{'timeoutSeconds':60}}},"
		"'status':{'loadBalancer':{'ingress':[{'ip':'198.18.200.10'},"
		"{'hostname':'lb.example.com'},{'ip':'fd00::200','ipMode':'VIP'},"
		"{'ip':'198.18.200.11','ipMode':'Proxy'}]}}}");

	cr_assert_str_eq(svc->ns, "shop");
	cr_assert_str_eq(svc->name, "web");
	cr_assert_str_eq(svc->resource_version, "42");
	cr_assert_eq(svc->type, KPX_SVC_LOAD_BALANCER);
	cr_assert_not(svc->headless);
	cr_assert_not(svc->proxy_ignored);
	cr_assert_eq(svc->n_cluster_ips, 2);
	cr_assert_str_eq(ip(&svc->cluster_ips[0]), "198.18.100.1");
	cr_assert_str_eq(ip(&svc->cluster_ips[1]), "fd00::10");
	cr_assert_eq(svc->n_ports, 3);
	cr_assert_str_eq(svc->ports[0].name, "http");
	cr_assert_eq(svc->ports[0].proto, KPX_PROTO_TCP);
	cr_assert_eq(svc->ports[0].port, 80);
	cr_assert_eq(svc->ports[0].node_port, 30080);
	cr_assert_eq(svc->ports[1].proto, KPX_PROTO_UDP);
	cr_assert_eq(svc->ports[1].port, 53);
	cr_assert_eq(svc->ports[2].proto, KPX_PROTO_SCTP);
	cr_assert_eq(svc->ports[2].node_port, 0);
	cr_assert_eq(svc->n_external_ips, 1);
	cr_assert_str_eq(ip(&svc->external_ips[0]), "198.18.200.5");
	/* the hostname-only and the ipMode Proxy entries are skipped */
	cr_assert_eq(svc->n_lb_ips, 2);
	cr_assert_str_eq(ip(&svc->lb_ips[0]), "198.18.200.10");
	cr_assert_str_eq(ip(&svc->lb_ips[1]), "fd00::200");
	cr_assert_eq(svc->n_lb_source_ranges, 2);
	cr_assert_str_eq(ip(&svc->lb_source_ranges[1].addr), "10.0.0.0");
	cr_assert_eq(svc->lb_source_ranges[1].prefix, 8);
	cr_assert(svc->etp_local);
	cr_assert(svc->itp_local);
	cr_assert_eq(svc->health_check_node_port, 32000);
	cr_assert_eq(svc->affinity_timeout, 60);
	kpx_service_free(svc);
}

Test(objects, service_defaults)
{
	struct kpx_service *svc = svc_ok(
		"{'metadata':{'name':'a'},'spec':{'clusterIP':'198.18.100.2',"
		"'ports':[{'port':443}]}}");

	cr_assert_str_eq(svc->ns, "default");
	cr_assert_str_eq(svc->resource_version, "");
	cr_assert_eq(svc->type, KPX_SVC_CLUSTER_IP);
	cr_assert_eq(svc->n_cluster_ips, 1);
	cr_assert_str_eq(ip(&svc->cluster_ips[0]), "198.18.100.2");
	cr_assert_str_eq(svc->ports[0].name, "");
	cr_assert_eq(svc->ports[0].proto, KPX_PROTO_TCP);
	cr_assert_not(svc->etp_local);
	cr_assert_not(svc->itp_local);
	cr_assert_eq(svc->affinity_timeout, 0);
	cr_assert_eq(svc->n_lb_ips + svc->n_external_ips, 0);
	kpx_service_free(svc);
}

Test(objects, service_headless_and_unallocated)
{
	struct kpx_service *svc;

	svc = svc_ok("{'metadata':{'name':'h'},'spec':{'clusterIP':'None',"
		     "'clusterIPs':['None'],'ports':[{'port':80}]}}");
	cr_assert(svc->headless);
	cr_assert_eq(svc->n_cluster_ips, 0);
	kpx_service_free(svc);

	svc = svc_ok("{'metadata':{'name':'h'},'spec':{'clusterIP':'None'}}");
	cr_assert(svc->headless);
	kpx_service_free(svc);

	svc = svc_ok("{'metadata':{'name':'e'},'spec':{'clusterIP':''}}");
	cr_assert_not(svc->headless);
	cr_assert_eq(svc->n_cluster_ips, 0);
	kpx_service_free(svc);

	svc = svc_ok("{'metadata':{'name':'x'},'spec':{'type':'ExternalName',"
		     "'externalName':'db.example.com'}}");
	cr_assert_eq(svc->type, KPX_SVC_EXTERNAL_NAME);
	kpx_service_free(svc);
}

Test(objects, service_proxy_ignored_labels)
{
	struct kpx_service *svc;

	svc = svc_ok("{'metadata':{'name':'a','labels':{"
		     "'service.kubernetes.io/service-proxy-name':'other'}},"
		     "'spec':{'clusterIP':'198.18.100.3'}}");
	cr_assert(svc->proxy_ignored);
	kpx_service_free(svc);
	svc = svc_ok("{'metadata':{'name':'a','labels':{"
		     "'service.kubernetes.io/headless':''}},"
		     "'spec':{'clusterIP':'198.18.100.3'}}");
	cr_assert(svc->proxy_ignored);
	kpx_service_free(svc);
	svc = svc_ok("{'metadata':{'name':'a','labels':{'app':'x'}},"
		     "'spec':{'clusterIP':'198.18.100.3'}}");
	cr_assert_not(svc->proxy_ignored);
	kpx_service_free(svc);
}

Test(objects, service_source_ranges_annotation)
{
	struct kpx_service *svc;
	const char *ann = "'annotations':{'service.beta.kubernetes.io/"
			  "load-balancer-source-ranges':'198.18.1.0/24, 198.18.2.0/24'}";
	char buf[512];

	snprintf(buf, sizeof(buf),
		 "{'metadata':{'name':'lb',%s},'spec':{'type':'LoadBalancer',"
		 "'clusterIP':'198.18.100.4'}}",
		 ann);
	svc = svc_ok(buf);
	cr_assert_eq(svc->n_lb_source_ranges, 2);
	cr_assert_str_eq(ip(&svc->lb_source_ranges[1].addr), "198.18.2.0");
	kpx_service_free(svc);

	/* the field, when set, wins over the annotation */
	snprintf(buf, sizeof(buf),
		 "{'metadata':{'name':'lb',%s},'spec':{'type':'LoadBalancer',"
		 "'clusterIP':'198.18.100.4',"
		 "'loadBalancerSourceRanges':['198.18.9.0/24']}}",
		 ann);
	svc = svc_ok(buf);
	cr_assert_eq(svc->n_lb_source_ranges, 1);
	cr_assert_str_eq(ip(&svc->lb_source_ranges[0].addr), "198.18.9.0");
	kpx_service_free(svc);
}

Test(objects, service_affinity_default_timeout)
{
	struct kpx_service *svc = svc_ok(
		"{'metadata':{'name':'a'},'spec':{'clusterIP':'198.18.100.5',"
		"'sessionAffinity':'ClientIP'}}");

	cr_assert_eq(svc->affinity_timeout, 10800);
	kpx_service_free(svc);
	svc = svc_ok("{'metadata':{'name':'a'},'spec':{'clusterIP':'198.18.100.5',"
		     "'sessionAffinity':'None','sessionAffinityConfig':"
		     "{'clientIP':{'timeoutSeconds':5}}}}");
	cr_assert_eq(svc->affinity_timeout, 0);
	kpx_service_free(svc);
}

struct bad_case {
	const char *json;
	int rc;
	const char *reason; /* substring expected in err */
};

static void expect_bad_service(const struct bad_case *c)
{
	struct json_object *o = J(c->json);
	struct kpx_service *svc = (void *)1;
	char err[256] = "";
	int rc = kpx_service_decode(o, &svc, err, sizeof(err));

	cr_expect_eq(rc, c->rc, "rc %d for %s (err: %s)", rc, c->json, err);
	cr_expect_null(svc, "no object on error");
	cr_expect(strstr(err, c->reason), "err \"%s\" lacks \"%s\"", err,
		  c->reason);
	json_object_put(o);
}

#define SVC_HEAD "{'metadata':{'name':'s','namespace':'n'},'spec':{"
#define SVC(spec) SVC_HEAD spec "}}"

Test(objects, service_invalid)
{
	static const struct bad_case cases[] = {
		/* bad IPs */
		{ SVC("'clusterIPs':['198.18.100.1','300.1.1.1']"), -EINVAL,
		  "spec.clusterIPs[1]: invalid IP \"300.1.1.1\"" },
		{ SVC("'clusterIP':'198.18.100'"), -EINVAL,
		  "spec.clusterIP: invalid IP" },
		{ SVC("'clusterIP':'198.18.100.1','externalIPs':['nope']"),
		  -EINVAL, "spec.externalIPs[0]: invalid IP" },
		{ "{'metadata':{'name':'s'},'spec':{},'status':{'loadBalancer':"
		  "{'ingress':[{'ip':'198.18.1.x'}]}}}",
		  -EINVAL, "status.loadBalancer.ingress[0].ip: invalid IP" },
		{ SVC("'loadBalancerSourceRanges':['198.18.0.0/33']"), -EINVAL,
		  "spec.loadBalancerSourceRanges[0]: invalid CIDR" },
		/* ports */
		{ SVC("'ports':[{'port':80},{'port':70000}]"), -EINVAL,
		  "spec.ports[1].port: 70000 out of range" },
		{ SVC("'ports':[{'port':0}]"), -EINVAL,
		  "spec.ports[0].port: 0 out of range" },
		{ SVC("'ports':[{'port':-1}]"), -EINVAL,
		  "spec.ports[0].port: -1 out of range" },
		{ SVC("'ports':[{'port':80,'nodePort':65536}]"), -EINVAL,
		  "spec.ports[0].nodePort: 65536 out of range" },
		{ SVC("'ports':[{'name':'x'}]"), -EINVAL,
		  "spec.ports[0].port: missing" },
		{ SVC("'healthCheckNodePort':99999"), -EINVAL,
		  "spec.healthCheckNodePort: 99999 out of range" },
		/* protocol */
		{ SVC("'ports':[{'port':80,'protocol':'ICMP'}]"), -EINVAL,
		  "spec.ports[0].protocol: unknown protocol \"ICMP\"" },
		{ SVC("'ports':[{'port':80,'protocol':'tcp'}]"), -EINVAL,
		  "unknown protocol" },
		/* missing fields */
		{ "{'metadata':{'namespace':'n'},'spec':{}}", -EINVAL,
		  "metadata.name: missing" },
		{ "{'metadata':{'name':''},'spec':{}}", -EINVAL,
		  "metadata.name: empty" },
		{ "{'spec':{}}", -EINVAL, "metadata: missing" },
		{ "{'metadata':{'name':'s'}}", -EINVAL, "spec: missing" },
		/* wrong JSON types */
		{ "[1,2]", -EINVAL, "expected object, got array" },
		{ "{'metadata':{'name':7},'spec':{}}", -EINVAL,
		  "metadata.name: expected string, got int" },
		{ "{'metadata':{'name':'s','labels':['a']},'spec':{}}", -EINVAL,
		  "metadata.labels: expected object, got array" },
		{ SVC("'ports':{'port':80}"), -EINVAL,
		  "spec.ports: expected array, got object" },
		{ SVC("'ports':[{'port':'80'}]"), -EINVAL,
		  "spec.ports[0].port: expected int, got string" },
		{ SVC("'ports':[{'port':80.5}]"), -EINVAL,
		  "spec.ports[0].port: expected int, got double" },
		{ SVC("'ports':['80']"), -EINVAL,
		  "spec.ports[0]: expected object, got string" },
		{ SVC("'clusterIPs':'198.18.100.1'"), -EINVAL,
		  "spec.clusterIPs: expected array, got string" },
		{ SVC("'clusterIPs':[1]"), -EINVAL,
		  "spec.clusterIPs[0]: expected string, got int" },
		{ SVC("'loadBalancerSourceRanges':['198.18.0.0/16',null]"),
		  -EINVAL,
		  "spec.loadBalancerSourceRanges[1]: expected string, got null" },
		{ SVC("'type':3"), -EINVAL, "spec.type: expected string" },
		{ "{'metadata':{'name':'s'},'spec':[]}", -EINVAL,
		  "spec: expected object, got array" },
		/* unknown enum values */
		{ SVC("'type':'Magic'"), -EINVAL, "spec.type: unknown type" },
		{ SVC("'externalTrafficPolicy':'Nearby'"), -EINVAL,
		  "spec.externalTrafficPolicy: unknown value" },
		{ SVC("'internalTrafficPolicy':'Nearby'"), -EINVAL,
		  "spec.internalTrafficPolicy: unknown value" },
		{ SVC("'sessionAffinity':'Cookie'"), -EINVAL,
		  "spec.sessionAffinity: unknown value" },
		{ SVC("'sessionAffinity':'ClientIP','sessionAffinityConfig':"
		      "{'clientIP':{'timeoutSeconds':0}}"),
		  -EINVAL,
		  "spec.sessionAffinityConfig.clientIP.timeoutSeconds: 0 out of range" },
		{ SVC("'sessionAffinity':'ClientIP','sessionAffinityConfig':"
		      "{'clientIP':{'timeoutSeconds':86401}}"),
		  -EINVAL, "timeoutSeconds: 86401 out of range" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		expect_bad_service(&cases[i]);
}

/* Builds "{...'key':[ITEM,ITEM,...]...}" with n copies of item. */
static char *repeat_json(const char *head, const char *item, size_t n,
			 const char *tail)
{
	size_t len = strlen(head) + strlen(tail) + n * (strlen(item) + 1) + 1;
	char *s = malloc(len), *p;

	cr_assert(s);
	p = stpcpy(s, head);
	for (size_t i = 0; i < n; i++) {
		if (i)
			*p++ = ',';
		p = stpcpy(p, item);
	}
	strcpy(p, tail);
	return s;
}

Test(objects, service_oversized)
{
	char *s, name[400];
	struct bad_case c;

	s = repeat_json(SVC_HEAD "'ports':[", "{'port':80}",
			KPX_MAX_PORTS + 1, "]}}");
	c = (struct bad_case){ s, -E2BIG, "spec.ports: too many entries (257 > 256)" };
	expect_bad_service(&c);
	free(s);

	s = repeat_json(SVC_HEAD "'externalIPs':[", "'198.18.200.1'",
			KPX_MAX_IPS + 1, "]}}");
	c = (struct bad_case){ s, -E2BIG, "spec.externalIPs: too many entries" };
	expect_bad_service(&c);
	free(s);

	/* exactly at the limit is fine */
	s = repeat_json(SVC_HEAD "'ports':[", "{'port':80}", KPX_MAX_PORTS,
			"]}}");
	{
		struct kpx_service *svc = svc_ok(s);

		cr_assert_eq(svc->n_ports, KPX_MAX_PORTS);
		kpx_service_free(svc);
	}
	free(s);

	memset(name, 'a', 300);
	name[300] = '\0';
	s = malloc(1024);
	snprintf(s, 1024, "{'metadata':{'name':'%s'},'spec':{}}", name);
	c = (struct bad_case){ s, -EINVAL, "metadata.name: too long (300 > 253)" };
	expect_bad_service(&c);
	name[70] = '\0';
	snprintf(s, 1024, "{'metadata':{'name':'a','namespace':'%s'},'spec':{}}",
		 name);
	c = (struct bad_case){ s, -EINVAL, "metadata.namespace: too long" };
	expect_bad_service(&c);
	snprintf(s, 1024, SVC("'ports':[{'port':1,'name':'%s'}]"), name);
	c = (struct bad_case){ s, -EINVAL, "spec.ports[0].name: too long" };
	expect_bad_service(&c);
	free(s);
}

#define SLICE_HEAD                                                             \
	"{'apiVersion':'discovery.k8s.io/v1','kind':'EndpointSlice',"          \
	"'metadata':{'name':'web-abc','namespace':'shop','resourceVersion':'7'," \
	"'labels':{'kubernetes.io/service-name':'web'}},"

Test(objects, slice_all_fields)
{
	struct kpx_endpoint_slice *sl = slice_ok(
		SLICE_HEAD "'addressType':'IPv4',"
		"'ports':[{'name':'http','port':8080,'protocol':'TCP'},"
		"{'name':'dns','port':53,'protocol':'UDP'}],"
		"'endpoints':[{'addresses':['198.19.1.10','198.19.1.11'],"
		"'conditions':{'ready':true,'serving':true,'terminating':false},"
		"'nodeName':'node-a','zone':'z1',"
		"'hints':{'forZones':[{'name':'z1'},{'name':'z2'}],"
		"'forNodes':[{'name':'node-a'}]}},"
		"{'addresses':['198.19.2.10'],'nodeName':'node-b'}]}");

	cr_assert_str_eq(sl->ns, "shop");
	cr_assert_str_eq(sl->name, "web-abc");
	cr_assert_str_eq(sl->resource_version, "7");
	cr_assert_str_eq(sl->service_name, "web");
	cr_assert_eq(sl->family, AF_INET);
	cr_assert_not(sl->proxy_ignored);
	cr_assert_eq(sl->n_ports, 2);
	cr_assert_str_eq(sl->ports[1].name, "dns");
	cr_assert_eq(sl->ports[1].proto, KPX_PROTO_UDP);
	cr_assert_eq(sl->ports[1].port, 53);
	cr_assert_eq(sl->n_endpoints, 2);
	cr_assert_str_eq(ip(&sl->endpoints[0].addr), "198.19.1.10");
	cr_assert_str_eq(sl->endpoints[0].node_name, "node-a");
	cr_assert_str_eq(sl->endpoints[0].zone, "z1");
	cr_assert_eq(sl->endpoints[0].n_hint_zones, 2);
	cr_assert_str_eq(sl->endpoints[0].hint_zones[1], "z2");
	cr_assert_eq(sl->endpoints[0].n_hint_nodes, 1);
	cr_assert_str_eq(sl->endpoints[0].hint_nodes[0], "node-a");
	cr_assert_eq(sl->endpoints[1].n_hint_nodes, 0);
	cr_assert_eq(sl->endpoints[1].n_hint_zones, 0);
	cr_assert_str_eq(sl->endpoints[1].node_name, "node-b");
	kpx_slice_free(sl);
}

Test(objects, slice_nil_conditions)
{
	struct kpx_endpoint_slice *sl = slice_ok(
		SLICE_HEAD "'addressType':'IPv6','ports':[{'port':80}],"
		"'endpoints':["
		/* 0: no conditions at all */
		"{'addresses':['fd00::1']},"
		/* 1: explicit nulls */
		"{'addresses':['fd00::2'],'conditions':{'ready':null,"
		"'serving':null,'terminating':null}},"
		/* 2: not ready, serving nil -> not serving */
		"{'addresses':['fd00::3'],'conditions':{'ready':false}},"
		/* 3: terminating but still serving */
		"{'addresses':['fd00::4'],'conditions':{'ready':false,"
		"'serving':true,'terminating':true}},"
		/* 4: ready, serving explicitly false */
		"{'addresses':['fd00::5'],'conditions':{'serving':false}}]}");
	const struct kpx_endpoint *e = sl->endpoints;

	cr_assert_eq(sl->family, AF_INET6);
	cr_assert_eq(sl->n_endpoints, 5);
	cr_expect(e[0].ready && e[0].serving && !e[0].terminating);
	cr_expect(e[1].ready && e[1].serving && !e[1].terminating);
	cr_expect(!e[2].ready && !e[2].serving && !e[2].terminating);
	cr_expect(!e[3].ready && e[3].serving && e[3].terminating);
	cr_expect(e[4].ready && !e[4].serving && !e[4].terminating);
	kpx_slice_free(sl);
}

Test(objects, slice_port_defaults)
{
	struct kpx_endpoint_slice *sl = slice_ok(
		SLICE_HEAD "'addressType':'IPv4',"
		"'ports':[{'port':null},{'name':'x'},{'port':9,'protocol':'SCTP'}],"
		"'endpoints':null}");

	cr_assert_eq(sl->n_ports, 3);
	cr_assert_str_eq(sl->ports[0].name, "");
	cr_assert_eq(sl->ports[0].proto, KPX_PROTO_TCP);
	cr_assert_eq(sl->ports[0].port, 0);
	cr_assert_eq(sl->ports[1].port, 0);
	cr_assert_eq(sl->ports[2].proto, KPX_PROTO_SCTP);
	cr_assert_eq(sl->n_endpoints, 0);
	kpx_slice_free(sl);
}

Test(objects, slice_proxy_ignored)
{
	struct kpx_endpoint_slice *sl = slice_ok(
		"{'metadata':{'name':'a','labels':{'kubernetes.io/service-name':"
		"'w','service.kubernetes.io/headless':''}},'addressType':'IPv4'}");

	cr_assert(sl->proxy_ignored);
	cr_assert_str_eq(sl->ns, "default");
	kpx_slice_free(sl);
}

static void expect_bad_slice(const struct bad_case *c)
{
	struct json_object *o = J(c->json);
	struct kpx_endpoint_slice *sl = (void *)1;
	char err[256] = "";
	int rc = kpx_slice_decode(o, &sl, err, sizeof(err));

	cr_expect_eq(rc, c->rc, "rc %d for %s (err: %s)", rc, c->json, err);
	cr_expect_null(sl);
	cr_expect(strstr(err, c->reason), "err \"%s\" lacks \"%s\"", err,
		  c->reason);
	json_object_put(o);
}

Test(objects, slice_invalid)
{
	static const struct bad_case cases[] = {
		{ "{'metadata':{'name':'a'},'addressType':'IPv4'}", -EINVAL,
		  "metadata.labels[kubernetes.io/service-name]: missing" },
		{ "{'metadata':{'name':'a','labels':{'kubernetes.io/service-name':7}},"
		  "'addressType':'IPv4'}",
		  -EINVAL, "expected string, got int" },
		{ SLICE_HEAD "'addressType':'FQDN','endpoints':[{'addresses':"
			     "['db.example.com']}]}",
		  -EOPNOTSUPP, "addressType: FQDN" },
		{ SLICE_HEAD "'addressType':'IPv5'}", -EINVAL,
		  "addressType: unknown \"IPv5\"" },
		{ SLICE_HEAD "'ports':[]}", -EINVAL, "addressType: missing" },
		{ SLICE_HEAD "'addressType':'IPv4','endpoints':[{'addresses':"
			     "['fd00::1']}]}",
		  -EINVAL,
		  "endpoints[0].addresses[0]: \"fd00::1\" does not match addressType IPv4" },
		{ SLICE_HEAD "'addressType':'IPv4','endpoints':[{'addresses':"
			     "['198.19.1.1']},{'addresses':['198.19.1.300']}]}",
		  -EINVAL, "endpoints[1].addresses[0]: invalid IP" },
		{ SLICE_HEAD "'addressType':'IPv4','endpoints':[{'addresses':[]}]}",
		  -EINVAL, "endpoints[0].addresses: missing" },
		{ SLICE_HEAD "'addressType':'IPv4','endpoints':[{'nodeName':'n'}]}",
		  -EINVAL, "endpoints[0].addresses: missing" },
		{ SLICE_HEAD "'addressType':'IPv4','ports':[{'port':70000}]}",
		  -EINVAL, "ports[0].port: 70000 out of range" },
		{ SLICE_HEAD "'addressType':'IPv4','ports':[{'port':80,"
			     "'protocol':'GRE'}]}",
		  -EINVAL, "ports[0].protocol: unknown protocol \"GRE\"" },
		{ SLICE_HEAD "'addressType':'IPv4','endpoints':[{'addresses':"
			     "['198.19.1.1'],'conditions':{'ready':'true'}}]}",
		  -EINVAL,
		  "endpoints[0].conditions.ready: expected boolean, got string" },
		{ SLICE_HEAD "'addressType':'IPv4','endpoints':{}}", -EINVAL,
		  "endpoints: expected array, got object" },
		{ SLICE_HEAD "'addressType':'IPv4','endpoints':[{'addresses':"
			     "['198.19.1.1'],'hints':{'forZones':[{'name':1}]}}]}",
		  -EINVAL,
		  "endpoints[0].hints.forZones[0].name: expected string, got int" },
		{ SLICE_HEAD "'addressType':'IPv4','endpoints':[{'addresses':"
			     "['198.19.1.1'],'hints':{'forZones':['z1']}}]}",
		  -EINVAL,
		  "endpoints[0].hints.forZones[0]: expected object, got string" },
		{ SLICE_HEAD "'addressType':'IPv4','ports':[{'port':80},8080]}",
		  -EINVAL, "ports[1]: expected object, got int" },
		{ SLICE_HEAD "'addressType':'IPv4','endpoints':[{'addresses':"
			     "['198.19.1.1']},'198.19.1.2']}",
		  -EINVAL, "endpoints[1]: expected object, got string" },
		{ SLICE_HEAD "'addressType':'IPv4','endpoints':[{'addresses':[4]}]}",
		  -EINVAL, "endpoints[0].addresses[0]: expected string, got int" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		expect_bad_slice(&cases[i]);
}

Test(objects, slice_oversized)
{
	struct bad_case c;
	char *s;

	s = repeat_json(SLICE_HEAD "'addressType':'IPv4','endpoints':[",
			"{'addresses':['198.19.1.1']}", KPX_MAX_ENDPOINTS + 1,
			"]}");
	c = (struct bad_case){ s, -E2BIG,
			       "endpoints: too many entries (1001 > 1000)" };
	expect_bad_slice(&c);
	free(s);
	s = repeat_json(SLICE_HEAD "'addressType':'IPv4','endpoints':[",
			"{'addresses':['198.19.1.1']}", KPX_MAX_ENDPOINTS, "]}");
	{
		struct kpx_endpoint_slice *sl = slice_ok(s);

		cr_assert_eq(sl->n_endpoints, KPX_MAX_ENDPOINTS);
		kpx_slice_free(sl);
	}
	free(s);
}

Test(objects, node_decode)
{
	struct json_object *o = J(
		"{'apiVersion':'v1','kind':'Node','metadata':{'name':'node-a',"
		"'labels':{'topology.kubernetes.io/zone':'z1'},"
		"'deletionTimestamp':'2024-01-01T00:00:00Z'},"
		"'spec':{'taints':[{'key':'ToBeDeletedByClusterAutoscaler',"
		"'effect':'NoSchedule'}]},'status':{'addresses':["
		"{'type':'Hostname','address':'node-a'},"
		"{'type':'InternalIP','address':'198.18.0.1'},"
		"{'type':'InternalIP','address':'fd00::1'},"
		"{'type':'ExternalIP','address':'198.18.200.1'}]}}");
	struct kpx_node *n = NULL;
	char err[256];

	cr_assert_eq(kpx_node_decode(o, &n, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(n->name, "node-a");
	cr_assert_str_eq(n->zone, "z1");
	cr_assert(n->deleting);
	cr_assert(n->to_be_deleted);
	cr_assert_eq(n->n_addrs, 3);
	cr_assert_str_eq(ip(&n->addrs[1]), "fd00::1");
	kpx_node_free(n);
	json_object_put(o);

	o = J("{'metadata':{'name':'plain'}}");
	cr_assert_eq(kpx_node_decode(o, &n, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(n->zone, "");
	cr_assert_not(n->deleting);
	cr_assert_not(n->to_be_deleted);
	cr_assert_eq(n->n_addrs, 0);
	kpx_node_free(n);
	json_object_put(o);

	o = J("{'metadata':{'name':'bad'},'status':{'addresses':["
	      "{'type':'InternalIP','address':'x.y'}]}}");
	cr_assert_eq(kpx_node_decode(o, &n, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "status.addresses[0].address: invalid IP"), "%s",
		  err);
	json_object_put(o);

	o = J("{'metadata':{'name':'bad'},'spec':{'taints':[{'key':'k'},'t']}}");
	cr_assert_eq(kpx_node_decode(o, &n, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "spec.taints[1]: expected object, got string");
	json_object_put(o);
}

Test(objects, kind_and_ref)
{
	struct {
		const char *json;
		int kind;
	} cases[] = {
		{ "{'apiVersion':'v1','kind':'Service'}", KPX_KIND_SERVICE },
		{ "{'apiVersion':'discovery.k8s.io/v1','kind':'EndpointSlice'}",
		  KPX_KIND_SLICE },
		{ "{'apiVersion':'v1','kind':'Node'}", KPX_KIND_NODE },
		{ "{'apiVersion':'discovery.k8s.io/v1beta1','kind':'EndpointSlice'}",
		  -1 },
		{ "{'apiVersion':'apps/v1','kind':'Deployment'}", -1 },
		{ "{'apiVersion':'v1','kind':'Endpoints'}", -1 },
		{ "{'kind':'Service'}", -1 },
		{ "{'apiVersion':1,'kind':'Service'}", -1 },
		{ "[]", -1 },
	};
	char buf[64];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct json_object *o = J(cases[i].json);

		cr_expect_eq(kpx_object_kind(o), cases[i].kind, "%s",
			     cases[i].json);
		json_object_put(o);
	}
	cr_assert_eq(kpx_object_kind(NULL), -1);

	struct json_object *o = J("{'metadata':{'name':'a','namespace':'b'}}");
	cr_assert_str_eq(kpx_object_ref(o, buf, sizeof(buf)), "b/a");
	json_object_put(o);
	o = J("{'metadata':{'name':'node-a'}}");
	cr_assert_str_eq(kpx_object_ref(o, buf, sizeof(buf)), "node-a");
	json_object_put(o);
	o = J("{'metadata':7}");
	cr_assert_str_eq(kpx_object_ref(o, buf, sizeof(buf)), "<unnamed>");
	json_object_put(o);
}

Test(objects, proto_names)
{
	cr_assert_str_eq(kpx_proto_name(KPX_PROTO_TCP), "TCP");
	cr_assert_str_eq(kpx_proto_name(KPX_PROTO_UDP), "UDP");
	cr_assert_str_eq(kpx_proto_name(KPX_PROTO_SCTP), "SCTP");
	cr_assert_str_eq(kpx_proto_name(1), "?");
}

/*
 * Names follow the API server's rules: a manifest cannot bring a newline,
 * an escape sequence or invalid UTF-8 in a name, namespace or port name
 * into logs, `kpx plan` and kernel object names. Such objects are skipped
 * with the rule in the reason (the caller's log names the object,
 * escaped).
 */
Test(objects, names_follow_the_api_rules)
{
	static const struct bad_case svc_cases[] = {
		{ "{'metadata':{'name':'web\\nE1207 forged line'},'spec':{}}",
		  -EINVAL, "metadata.name: not a DNS-1035 label" },
		{ "{'metadata':{'name':'a\\u001b[2Jb'},'spec':{}}", -EINVAL,
		  "metadata.name: not a DNS-1035 label" },
		{ "{'metadata':{'name':'caf\xc3\xa9'},'spec':{}}", -EINVAL,
		  "metadata.name: not a DNS-1035 label" },
		{ "{'metadata':{'name':'bad\xff'},'spec':{}}", -EINVAL,
		  "metadata.name: not a DNS-1035 label" },
		{ "{'metadata':{'name':'Web'},'spec':{}}", -EINVAL,
		  "metadata.name: not a DNS-1035 label" },
		{ "{'metadata':{'name':'1web'},'spec':{}}", -EINVAL,
		  "metadata.name: not a DNS-1035 label" },
		{ "{'metadata':{'name':'web-'},'spec':{}}", -EINVAL,
		  "metadata.name: not a DNS-1035 label" },
		{ "{'metadata':{'name':'a.b'},'spec':{}}", -EINVAL,
		  "metadata.name: not a DNS-1035 label" },
		{ "{'metadata':{'name':'a234567890123456789012345678901234567890"
		  "123456789012345678901234'},'spec':{}}",
		  -EINVAL, "metadata.name: not a DNS-1035 label" },
		{ "{'metadata':{'name':'s','namespace':'kube_system'},'spec':{}}",
		  -EINVAL, "metadata.namespace: not a DNS-1123 label" },
		{ "{'metadata':{'name':'s','namespace':'x\\ty'},'spec':{}}",
		  -EINVAL, "metadata.namespace: not a DNS-1123 label" },
		{ SVC("'ports':[{'name':'http\\u001b]0;pwned\\u0007','port':80}]"),
		  -EINVAL, "spec.ports[0].name: not a DNS-1123 label" },
		{ SVC("'ports':[{'name':'HTTP','port':80}]"), -EINVAL,
		  "spec.ports[0].name: not a DNS-1123 label" },
	};
	struct json_object *o;
	struct kpx_endpoint_slice *sl;
	struct kpx_service *svc;
	struct kpx_node *node;
	char err[256];

	for (size_t i = 0; i < sizeof(svc_cases) / sizeof(svc_cases[0]); i++)
		expect_bad_service(&svc_cases[i]);

	/* the longest legal names pass */
	svc = svc_ok("{'metadata':{'name':'a23456789012345678901234567890123456"
		     "789012345678901234567890123','namespace':'9-ns'},"
		     "'spec':{'ports':[{'name':'h2-c','port':80}]}}");
	kpx_service_free(svc);

	/* EndpointSlices: subdomain names, label-value service names,
	 * subdomain node names, DNS-1123 port names */
	sl = slice_ok("{'metadata':{'name':'web-x.y','namespace':'n',"
		      "'labels':{'kubernetes.io/service-name':'web'}},"
		      "'addressType':'IPv4','ports':[{'name':'p-1','port':1}],"
		      "'endpoints':[{'addresses':['198.19.1.1'],"
		      "'nodeName':'node-1.zone-a'}]}");
	kpx_slice_free(sl);
	static const char *const bad_slices[] = {
		"{'metadata':{'name':'web\\nx','namespace':'n','labels':"
		"{'kubernetes.io/service-name':'web'}},'addressType':'IPv4'}",
		"{'metadata':{'name':'web..x','namespace':'n','labels':"
		"{'kubernetes.io/service-name':'web'}},'addressType':'IPv4'}",
		"{'metadata':{'name':'w','namespace':'n','labels':"
		"{'kubernetes.io/service-name':'w\\u001bb'}},'addressType':'IPv4'}",
		"{'metadata':{'name':'w','namespace':'n','labels':"
		"{'kubernetes.io/service-name':'w'}},'addressType':'IPv4',"
		"'ports':[{'name':'p\\n','port':1}]}",
		"{'metadata':{'name':'w','namespace':'n','labels':"
		"{'kubernetes.io/service-name':'w'}},'addressType':'IPv4',"
		"'endpoints':[{'addresses':['198.19.1.1'],'nodeName':'n\\r1'}]}",
	};
	for (size_t i = 0; i < sizeof(bad_slices) / sizeof(bad_slices[0]); i++) {
		o = J(bad_slices[i]);
		sl = (void *)1;
		cr_expect_eq(kpx_slice_decode(o, &sl, err, sizeof(err)), -EINVAL,
			     "accepted %s", bad_slices[i]);
		cr_expect(strstr(err, ": not a "), "%s: %s", bad_slices[i], err);
		cr_expect_null(sl);
		json_object_put(o);
	}

	o = J("{'metadata':{'name':'node\\u001b[1m'}}");
	cr_expect_eq(kpx_node_decode(o, &node, err, sizeof(err)), -EINVAL);
	json_object_put(o);
	o = J("{'metadata':{'name':'n1','labels':{'topology.kubernetes.io/zone':"
	      "'zone\\na'}}}");
	cr_expect_eq(kpx_node_decode(o, &node, err, sizeof(err)), -EINVAL);
	cr_expect(strstr(err, "not a label value"), "%s", err);
	json_object_put(o);
}

/* ---- escaping at the output boundary (common/log.h) ---- */

static const char *esc(const char *s)
{
	static char buf[512];

	kpx_escape(s, buf, sizeof(buf));
	return buf;
}

Test(escape, control_characters_and_invalid_utf8)
{
	cr_assert_str_eq(esc("plain web-1 ok"), "plain web-1 ok");
	cr_assert_str_eq(esc("a\nb\tc\rd"), "a\\nb\\tc\\rd");
	cr_assert_str_eq(esc("x\x1b[31mred"), "x\\x1b[31mred");
	cr_assert_str_eq(esc("del\x7f"), "del\\x7f");
	/* valid UTF-8 passes, invalid bytes are shown by value */
	cr_assert_str_eq(esc("caf\xc3\xa9 \xe2\x82\xac"), "caf\xc3\xa9 \xe2\x82\xac");
	cr_assert_str_eq(esc("bad\xff\xfe"), "bad\\xff\\xfe");
	cr_assert_str_eq(esc("cut\xe2\x82"), "cut\\xe2\\x82");
	cr_assert_str_eq(esc("overlong\xc0\xaf"), "overlong\\xc0\\xaf");
	cr_assert_str_eq(esc("surrogate\xed\xa0\x80"),
			 "surrogate\\xed\\xa0\\x80");
	/* C1 CSI, line separator, right-to-left override */
	cr_assert_str_eq(esc("c1\xc2\x9b" "2J"), "c1\\u009b2J");
	cr_assert_str_eq(esc("ls\xe2\x80\xa8"), "ls\\u2028");
	cr_assert_str_eq(esc("rlo\xe2\x80\xae"), "rlo\\u202e");
}

Test(escape, never_cuts_an_escape_in_half)
{
	char buf[5];

	cr_assert_eq(kpx_escape("ab\ncd", buf, sizeof(buf)), 4);
	cr_assert_str_eq(buf, "ab\\n");
	cr_assert_eq(kpx_escape("abc\x01", buf, sizeof(buf)), 3);
	cr_assert_str_eq(buf, "abc");
	cr_assert_eq(kpx_escape("x", buf, 1), 0);
	cr_assert_str_eq(buf, "");
}

/* A log line stays one line whatever the message carries. */
Test(escape, log_line_is_one_line)
{
	char line[2048] = "";
	FILE *cap = tmpfile();
	int saved = dup(2);

	cr_assert(cap && saved >= 0);
	fflush(stderr);
	dup2(fileno(cap), 2);
	kpx_err("manifests: f.yaml: %s (Service): skipped",
		"ns/web\nE1207 00:00:00.000000 1 agent.c:1] forged\x1b]0;t\x07");
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	rewind(cap);
	cr_assert(fgets(line, sizeof(line), cap));
	cr_assert(strstr(line, "ns/web\\nE1207 00:00:00.000000 1 agent.c:1] "
			       "forged\\x1b]0;t\\x07 (Service): skipped\n"),
		  "%s", line);
	cr_assert_null(fgets(line, sizeof(line), cap), "a second line");
	fclose(cap);
}

/* Table cells (`kpx services`, `kpx status`) are escaped too. */
Test(escape, table_cells)
{
	const char *hdr[] = { "NAME", "X" };
	const char *row[] = { "a\nb\x1b[2J", "c" };
	struct kpx_table *t = kpx_table_new(2, hdr);
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	cr_assert(t && f);
	cr_assert_eq(kpx_table_add(t, row), 0);
	kpx_table_print(t, f, 0);
	fclose(f);
	cr_assert(strstr(out, "a\\nb\\x1b[2J  c\n"), "%s", out);
	cr_assert_null(strchr(out, '\x1b'));
	kpx_table_free(t);
	free(out);
}

/* `kpx plan`: the node name comes from a flag; ids from the store. */
Test(escape, plan_table_output)
{
	struct kpx_plan_input in;
	struct kpx_store *store;
	struct kpx_plan *plan;
	struct kpx_service *svc;
	char *out = NULL;
	size_t len = 0;
	FILE *f;

	memset(&in, 0, sizeof(in));
	snprintf(in.node_name, sizeof(in.node_name), "node\n1");
	cr_assert_eq(kpx_store_new(&store), 0);
	svc = calloc(1, sizeof(*svc));
	cr_assert(svc);
	svc->ns = kpx_intern("n");
	svc->name = kpx_intern("w\x1b[2Jx");
	svc->cluster_ips = calloc(1, sizeof(*svc->cluster_ips));
	cr_assert_eq(kpx_addr_parse("198.18.100.1", svc->cluster_ips), 0);
	svc->n_cluster_ips = 1;
	svc->ports = calloc(1, sizeof(*svc->ports));
	svc->ports[0].name = kpx_intern_empty;
	svc->ports[0].proto = KPX_PROTO_TCP;
	svc->ports[0].port = 80;
	svc->n_ports = 1;
	kpx_store_upsert(store, KPX_KIND_SERVICE, svc);
	kpx_store_mark_synced(store, KPX_KIND_SERVICE);
	kpx_store_mark_synced(store, KPX_KIND_SLICE);
	cr_assert_eq(kpx_plan_build(store, &in, &plan), 0);
	f = open_memstream(&out, &len);
	kpx_plan_print(plan, f);
	fclose(f);
	cr_assert(strstr(out, "node node\\n1  zone -"), "%s", out);
	cr_assert(strstr(out, "n/w\\x1b[2Jx"), "%s", out);
	cr_assert_null(strchr(out, '\x1b'));
	kpx_plan_free(plan);
	kpx_store_free(store);
	free(out);
}
