// SPDX-License-Identifier: Apache-2.0
/*
 * YAML to JSON conversion and the manifests-directory source: typing,
 * multi-document streams, Lists, a real `kubectl get -o yaml` dump, bad
 * files and objects, re-reads and inotify.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/addr.h"
#include "common/loop.h"
#include "k8s/manifests.h"
#include "k8s/objects.h"
#include "model/store.h"

#define FIXTURES "tests/fixtures/manifests"

static struct json_object *yaml_ok(const char *text)
{
	struct json_object *docs = NULL;
	char err[256] = "";
	int rc = kpx_yaml_to_json(text, strlen(text), &docs, err, sizeof(err));

	cr_assert_eq(rc, 0, "yaml failed: %s", err);
	cr_assert(json_object_is_type(docs, json_type_array));
	return docs;
}

static struct json_object *field(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	cr_assert(json_object_object_get_ex(o, key, &v), "no key %s", key);
	return v;
}

Test(yaml, scalar_typing)
{
	struct json_object *docs = yaml_ok(
		"port: 80\n"
		"quoted: \"80\"\n"
		"single: '80'\n"
		"neg: -5\n"
		"hex: 0x1F\n"
		"float: 1.5\n"
		"exp: 1e3\n"
		"yes_: true\n"
		"no_: False\n"
		"legacy: yes\n"
		"nul: null\n"
		"tilde: ~\n"
		"empty:\n"
		"ip: 198.18.0.1\n"
		"ver: 1.2.3\n"
		"str: hello world\n"
		"qtrue: \"true\"\n"
		"tagged: !!str 42\n"
		"block: |\n  line1\n  line2\n"
		"80: numeric key\n"
		"ninf: -.inf\n"
		"dot: .5\n"
		"off_: OFF\n"
		"nullish: nullable\n"
		"plus: +7\n"
		"\"quoted key\": q\n"
		"on: yaml11\n");
	struct json_object *d;

	cr_assert_eq(json_object_array_length(docs), 1);
	d = json_object_array_get_idx(docs, 0);
	cr_assert(json_object_is_type(field(d, "port"), json_type_int));
	cr_assert_eq(json_object_get_int(field(d, "port")), 80);
	cr_assert(json_object_is_type(field(d, "quoted"), json_type_string));
	cr_assert(json_object_is_type(field(d, "single"), json_type_string));
	cr_assert_eq(json_object_get_int(field(d, "neg")), -5);
	cr_assert_eq(json_object_get_int(field(d, "hex")), 31);
	cr_assert(json_object_is_type(field(d, "float"), json_type_double));
	cr_assert_float_eq(json_object_get_double(field(d, "float")), 1.5, 1e-9);
	cr_assert(json_object_is_type(field(d, "exp"), json_type_double));
	cr_assert(json_object_is_type(field(d, "yes_"), json_type_boolean));
	cr_assert(json_object_get_boolean(field(d, "yes_")));
	cr_assert(json_object_is_type(field(d, "no_"), json_type_boolean));
	cr_assert_not(json_object_get_boolean(field(d, "no_")));
	cr_assert(json_object_get_boolean(field(d, "legacy")));
	cr_assert_null(field(d, "nul"));
	cr_assert_null(field(d, "tilde"));
	cr_assert_null(field(d, "empty"));
	cr_assert_str_eq(json_object_get_string(field(d, "ip")), "198.18.0.1");
	cr_assert(json_object_is_type(field(d, "ver"), json_type_string));
	cr_assert_str_eq(json_object_get_string(field(d, "str")), "hello world");
	cr_assert(json_object_is_type(field(d, "qtrue"), json_type_string));
	cr_assert(json_object_is_type(field(d, "tagged"), json_type_string));
	cr_assert_str_eq(json_object_get_string(field(d, "block")),
			 "line1\nline2\n");
	cr_assert_str_eq(json_object_get_string(field(d, "80")), "numeric key");
	cr_assert(json_object_is_type(field(d, "ninf"), json_type_double));
	cr_assert(isinf(json_object_get_double(field(d, "ninf"))) &&
		  json_object_get_double(field(d, "ninf")) < 0);
	cr_assert_float_eq(json_object_get_double(field(d, "dot")), 0.5, 1e-9);
	cr_assert(json_object_is_type(field(d, "off_"), json_type_boolean));
	cr_assert_not(json_object_get_boolean(field(d, "off_")));
	cr_assert_str_eq(json_object_get_string(field(d, "nullish")), "nullable");
	cr_assert(json_object_is_type(field(d, "plus"), json_type_int));
	cr_assert_eq(json_object_get_int(field(d, "plus")), 7);
	cr_assert_str_eq(json_object_get_string(field(d, "quoted key")), "q");
	/* YAML 1.1 as go-yaml: a plain `on` key is the bool true. */
	cr_assert_str_eq(json_object_get_string(field(d, "true")), "yaml11");
	json_object_put(docs);
}

Test(yaml, multi_document_and_list)
{
	struct json_object *docs = yaml_ok(
		"# leading comment\n"
		"---\n"
		"kind: A\n"
		"---\n"
		"# only a comment\n"
		"---\n"
		"apiVersion: v1\n"
		"kind: List\n"
		"items:\n"
		"- kind: B\n"
		"- kind: C\n"
		"...\n"
		"---\n"
		"kind: ServiceList\n"
		"items: [{kind: D}]\n"
		"---\n"
		"kind: EmptyList\n"
		"items: []\n");
	const char *want[] = { "A", "B", "C", "D" };

	cr_assert_eq(json_object_array_length(docs), 4);
	for (size_t i = 0; i < 4; i++)
		cr_assert_str_eq(json_object_get_string(field(
					 json_object_array_get_idx(docs, i),
					 "kind")),
				 want[i]);
	json_object_put(docs);
}

Test(yaml, anchors_aliases_merge)
{
	struct json_object *docs = yaml_ok(
		"base: &b {port: 80, protocol: UDP}\n"
		"ports: [*b, *b]\n"
		"merged:\n"
		"  <<: *b\n"
		"  port: 81\n");
	struct json_object *d = json_object_array_get_idx(docs, 0), *m;

	cr_assert_eq(json_object_array_length(field(d, "ports")), 2);
	cr_assert_eq(json_object_get_int(field(
			     json_object_array_get_idx(field(d, "ports"), 1),
			     "port")),
		     80);
	m = field(d, "merged");
	cr_assert_eq(json_object_get_int(field(m, "port")), 81);
	cr_assert_str_eq(json_object_get_string(field(m, "protocol")), "UDP");
	cr_assert_not(json_object_object_get_ex(m, "<<", NULL));
	json_object_put(docs);
}

/* 9 levels of 9 aliases: 470 bytes that expand to 9^9 = 387M scalars
 * (the same file as tests/fuzz/corpus/yaml/alias-bomb.yaml). */
static const char alias_bomb[] =
	"apiVersion: v1\n"
	"kind: Service\n"
	"metadata: {name: bomb, namespace: default}\n"
	"spec: {clusterIP: 198.18.100.9, ports: [{port: 80}]}\n"
	"x:\n"
	"  a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n"
	"  b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
	"  c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
	"  d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
	"  e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
	"  f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
	"  g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
	"  h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
	"  i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n";

static void count_doc_errors(void *arg, const char *msg)
{
	char **last = arg;

	free(*last);
	*last = strdup(msg);
}

/* Aliases expanded before hashing made this cost 2 GB and seconds per
 * object: the document is refused as soon as its aliases add more nodes
 * than allowed, with an error naming it; the other documents convert. */
Test(yaml, alias_bomb_document_is_refused_alone, .timeout = 20)
{
	char *text, *msg = NULL, err[256] = "";
	struct json_object *docs = NULL;
	int rc;

	cr_assert(asprintf(&text, "kind: A\n---\n%s---\nkind: C\n",
			   alias_bomb) > 0);
	rc = kpx_yaml_to_json_ex(text, strlen(text), &docs, err, sizeof(err),
				 count_doc_errors, &msg);
	cr_assert_eq(rc, 0, "%s", err);
	cr_assert_eq(json_object_array_length(docs), 2);
	cr_assert_str_eq(json_object_get_string(field(
				 json_object_array_get_idx(docs, 1), "kind")),
			 "C");
	cr_assert(msg);
	cr_assert(strstr(msg, "document 2 (default/bomb)"), "%s", msg);
	cr_assert(strstr(msg, "aliases expand"), "%s", msg);
	json_object_put(docs);
	free(msg);

	/* Without a per-document report the whole stream fails. */
	rc = kpx_yaml_to_json(text, strlen(text), &docs, err, sizeof(err));
	cr_assert_eq(rc, -E2BIG);
	cr_assert(strstr(err, "aliases expand"), "%s", err);
	free(text);
}

/* Anchors as people use them (shared labels, ports, merge keys), even
 * many of them, stay well inside the limit. */
Test(yaml, ordinary_aliases_are_accepted)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	struct json_object *docs;

	fputs("base: &b {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8}\n"
	      "items:\n", f);
	for (int i = 0; i < 20000; i++)
		fprintf(f, "- {<<: *b, i: %d, l: *b}\n", i);
	fclose(f);
	docs = yaml_ok(text);
	cr_assert_eq(json_object_array_length(field(
			     json_object_array_get_idx(docs, 0), "items")),
		     20000);
	json_object_put(docs);
	free(text);
}

Test(yaml, json_input)
{
	const char *text = "{\"kind\":\"List\",\"items\":[{\"a\":1,\"b\":\"1\"},"
			   "{\"c\":null}]}\n{\"d\":true}";
	struct json_object *docs = yaml_ok(text), *d;

	cr_assert_eq(json_object_array_length(docs), 3);
	d = json_object_array_get_idx(docs, 0);
	cr_assert(json_object_is_type(field(d, "a"), json_type_int));
	cr_assert(json_object_is_type(field(d, "b"), json_type_string));
	cr_assert(json_object_get_boolean(
		field(json_object_array_get_idx(docs, 2), "d")));
	json_object_put(docs);

	/* JSON with tabs and newlines, as editors write it */
	docs = yaml_ok("{\n\t\"a\": [1,\n\t\t2]\n}\n");
	cr_assert_eq(json_object_array_length(
			     field(json_object_array_get_idx(docs, 0), "a")),
		     2);
	json_object_put(docs);
}

Test(yaml, errors_carry_line)
{
	static const struct {
		const char *text;
		const char *want;
	} cases[] = {
		{ "a: 1\nb: [1, 2\nc: 3\n", "line " },
		{ "a: 1\n  b: 2\n", "line 2" },
		{ "a: *nope\n", "line 1: unknown anchor \"nope\"" },
		{ "{\"a\": [1,\n 2}\n", "line 2" },
		{ "a:\n\t- 1\n", "line 2" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct json_object *docs = (void *)1;
		char err[256] = "";
		int rc = kpx_yaml_to_json(cases[i].text, strlen(cases[i].text),
					  &docs, err, sizeof(err));

		cr_expect_eq(rc, -EINVAL, "case %zu: rc %d", i, rc);
		cr_expect_null(docs);
		if (!rc)
			json_object_put(docs);
		cr_expect(strstr(err, cases[i].want), "case %zu: \"%s\" lacks \"%s\"",
			  i, err, cases[i].want);
	}
}

/* ---- the directory source ---- */

static struct kpx_store *new_store(void)
{
	struct kpx_store *s = NULL;

	cr_assert_eq(kpx_store_new(&s), 0);
	return s;
}

static const char *ip(const struct kpx_addr *a)
{
	static char buf[4][KPX_ADDR_STRLEN];
	static int i;

	return kpx_addr_str(a, buf[i++ % 4]);
}

struct slices {
	size_t n;
	size_t endpoints;
	const struct kpx_endpoint_slice *last;
};

static void count_slice(const struct kpx_endpoint_slice *sl, void *arg)
{
	struct slices *c = arg;

	c->n++;
	c->endpoints += sl->n_endpoints;
	c->last = sl;
}

static struct slices slices_of(struct kpx_store *s, const char *ns,
			       const char *svc)
{
	struct slices c = { 0 };

	kpx_store_for_each_slice_of(s, ns, svc, count_slice, &c);
	return c;
}

Test(manifests, kubectl_dump_loads_as_is)
{
	struct kpx_store *s = new_store();
	const struct kpx_service *svc;
	struct kpx_store_stats st;
	struct slices c;
	size_t errors = 99;

	cr_assert_eq(kpx_manifests_load(FIXTURES "/kubectl-dump", s, &errors), 0);
	cr_assert_eq(errors, 0);
	kpx_store_get_stats(s, &st);
	cr_assert_eq(st.n_services, 6);
	cr_assert_eq(st.n_slices, 7);
	cr_assert(kpx_store_kind_synced(s, KPX_KIND_SERVICE));
	cr_assert(kpx_store_kind_synced(s, KPX_KIND_SLICE));

	svc = kpx_store_service(s, "kube-system", "kube-dns");
	cr_assert(svc);
	cr_assert_eq(svc->n_cluster_ips, 1);
	cr_assert_str_eq(ip(&svc->cluster_ips[0]), "198.18.96.10");
	cr_assert_eq(svc->n_ports, 3);
	cr_assert_str_eq(svc->ports[0].name, "dns");
	cr_assert_eq(svc->ports[0].proto, KPX_PROTO_UDP);
	cr_assert_eq(svc->ports[0].port, 53);
	cr_assert_eq(svc->ports[1].proto, KPX_PROTO_TCP);
	cr_assert_eq(svc->ports[2].port, 9153);
	c = slices_of(s, "kube-system", "kube-dns");
	cr_assert_eq(c.n, 1);
	cr_assert_eq(c.endpoints, 2);
	cr_assert_str_eq(c.last->endpoints[1].node_name, "node-b");
	cr_assert_str_eq(c.last->endpoints[1].zone, "zone-b");

	svc = kpx_store_service(s, "shop", "frontend");
	cr_assert(svc);
	cr_assert_eq(svc->n_cluster_ips, 2);
	cr_assert_str_eq(ip(&svc->cluster_ips[1]), "fd00:10:96::20");
	c = slices_of(s, "shop", "frontend");
	cr_assert_eq(c.n, 2);
	cr_assert_eq(c.endpoints, 4);

	svc = kpx_store_service(s, "shop", "api");
	cr_assert(svc);
	cr_assert_eq(svc->type, KPX_SVC_NODE_PORT);
	cr_assert_eq(svc->ports[0].node_port, 30080);
	cr_assert_eq(svc->affinity_timeout, 10800);

	svc = kpx_store_service(s, "ingress-nginx", "ingress-nginx-controller");
	cr_assert(svc);
	cr_assert_eq(svc->type, KPX_SVC_LOAD_BALANCER);
	cr_assert(svc->etp_local);
	cr_assert_eq(svc->health_check_node_port, 31942);
	cr_assert_eq(svc->n_lb_ips, 1);
	cr_assert_str_eq(ip(&svc->lb_ips[0]), "198.18.200.50");
	cr_assert_eq(svc->n_lb_source_ranges, 1);
	cr_assert_eq(svc->lb_source_ranges[0].prefix, 15);

	svc = kpx_store_service(s, "monitoring", "prometheus-operated");
	cr_assert(svc);
	cr_assert(svc->headless);
	c = slices_of(s, "monitoring", "prometheus-operated");
	cr_assert_eq(c.n, 1);
	cr_assert(c.last->proxy_ignored);

	svc = kpx_store_service(s, "default", "kubernetes");
	cr_assert(svc);
	cr_assert_eq(svc->ports[0].port, 443);
	kpx_store_free(s);
}

Test(manifests, bad_files_and_objects_are_skipped)
{
	struct kpx_store *s = new_store();
	const struct kpx_service *svc;
	struct kpx_store_stats st;
	size_t errors = 0;

	cr_assert_eq(kpx_manifests_load(FIXTURES "/mixed", s, &errors), 0);
	/* 20-broken.yaml (syntax), bad-port, orphan-slice, old-api */
	cr_assert_eq(errors, 4);
	kpx_store_get_stats(s, &st);
	cr_assert_eq(st.n_services, 2, "web and api, got %zu", st.n_services);
	cr_assert_eq(st.n_slices, 1);
	cr_assert(kpx_store_service(s, "demo", "web"));
	svc = kpx_store_service(s, "demo", "api");
	cr_assert(svc);
	cr_assert_eq(svc->ports[0].node_port, 30080);
	cr_assert_null(kpx_store_service(s, "demo", "bad-port"));
	cr_assert_null(kpx_store_service(s, "demo", "half-written"));
	cr_assert_null(kpx_store_service(s, "demo", "hidden"));
	cr_assert_eq(slices_of(s, "demo", "web").endpoints, 2);
	kpx_store_free(s);
}

Test(manifests, missing_dir_keeps_store)
{
	struct kpx_store *s = new_store();
	struct kpx_store_stats st;

	cr_assert_eq(kpx_manifests_load(FIXTURES "/mixed", s, NULL), 0);
	cr_assert_eq(kpx_manifests_load(FIXTURES "/does-not-exist", s, NULL),
		     -ENOENT);
	kpx_store_get_stats(s, &st);
	cr_assert_eq(st.n_services, 2);
	kpx_store_free(s);
}

/* A scratch directory with files the test writes. */
static char tmpdir[64];

static void mk_tmpdir(void)
{
	strcpy(tmpdir, "/tmp/kpx-manifests-XXXXXX");
	cr_assert(mkdtemp(tmpdir));
}

static int rm_entry(const char *path, const struct stat *sb, int flag,
		    struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void rm_tmpdir(void)
{
	/* only ever our own mkdtemp directory */
	char old[80];

	if (strncmp(tmpdir, "/tmp/kpx-manifests-", 19))
		return;
	cr_expect_eq(nftw(tmpdir, rm_entry, 8, FTW_DEPTH | FTW_PHYS), 0);
	/* replaced_directory_is_listed_again's moved-away directory, when
	 * it failed before removing it */
	snprintf(old, sizeof(old), "%s.old", tmpdir);
	if (!access(old, F_OK))
		nftw(old, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static void write_file(const char *name, const char *text)
{
	char path[256], tmp[256];
	FILE *f;

	/* write-then-rename, as kubectl/editors/ConfigMaps do */
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", tmpdir, name);
	f = fopen(tmp, "w");
	cr_assert(f);
	fputs(text, f);
	cr_assert_eq(fclose(f), 0);
	cr_assert_eq(rename(tmp, path), 0);
}

static void rm_file(const char *name)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	cr_assert_eq(unlink(path), 0);
}

static char *svc_yaml(const char *name, const char *ip_, int port)
{
	static char buf[512];

	snprintf(buf, sizeof(buf),
		 "apiVersion: v1\nkind: Service\nmetadata:\n  name: %s\n"
		 "  namespace: t\nspec:\n  clusterIP: %s\n  ports:\n"
		 "  - port: %d\n---\n"
		 "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
		 "metadata:\n  name: %s-x\n  namespace: t\n  labels:\n"
		 "    kubernetes.io/service-name: %s\naddressType: IPv4\n"
		 "ports: [{port: 8080}]\nendpoints:\n"
		 "- addresses: [198.19.1.1]\n",
		 name, ip_, port, name, name);
	return buf;
}

Test(manifests, reread_removes_deleted_and_ignores_unchanged,
     .init = mk_tmpdir, .fini = rm_tmpdir)
{
	struct kpx_store *s = new_store();
	struct kpx_store_stats st;
	size_t errors;

	write_file("a.yaml", svc_yaml("a", "198.18.100.1", 80));
	write_file("b.yml", svc_yaml("b", "198.18.100.2", 80));
	cr_assert_eq(kpx_manifests_load(tmpdir, s, &errors), 0);
	cr_assert_eq(errors, 0);
	kpx_store_get_stats(s, &st);
	cr_assert_eq(st.n_services, 2);
	cr_assert_eq(st.n_slices, 2);
	kpx_store_clear_dirty(s);

	/* the same content again is no change */
	cr_assert_eq(kpx_manifests_load(tmpdir, s, &errors), 0);
	cr_assert_not(kpx_store_dirty(s));

	/* an edit is a change */
	write_file("a.yaml", svc_yaml("a", "198.18.100.1", 81));
	cr_assert_eq(kpx_manifests_load(tmpdir, s, &errors), 0);
	cr_assert(kpx_store_dirty(s));
	cr_assert_eq(kpx_store_service(s, "t", "a")->ports[0].port, 81);
	kpx_store_clear_dirty(s);

	/* deleting a file deletes its service and slice */
	rm_file("b.yml");
	cr_assert_eq(kpx_manifests_load(tmpdir, s, &errors), 0);
	cr_assert(kpx_store_dirty(s));
	cr_assert_null(kpx_store_service(s, "t", "b"));
	cr_assert_eq(slices_of(s, "t", "b").n, 0);
	kpx_store_get_stats(s, &st);
	cr_assert_eq(st.n_services, 1);
	cr_assert_eq(st.n_slices, 1);
	kpx_store_free(s);
}

Test(manifests, oversized_file_rejected, .init = mk_tmpdir, .fini = rm_tmpdir)
{
	struct kpx_store *s = new_store();
	char path[256];
	size_t errors = 0;
	int fd;

	write_file("ok.yaml", svc_yaml("ok", "198.18.100.3", 80));
	snprintf(path, sizeof(path), "%s/huge.yaml", tmpdir);
	fd = open(path, O_CREAT | O_WRONLY, 0644);
	cr_assert(fd >= 0);
	/* sparse: costs no disk */
	cr_assert_eq(ftruncate(fd, (64 << 20) + 1), 0);
	close(fd);
	cr_assert_eq(kpx_manifests_load(tmpdir, s, &errors), 0);
	cr_assert_eq(errors, 1);
	cr_assert(kpx_store_service(s, "t", "ok"));
	kpx_store_free(s);
}

/*
 * A FIFO named like a manifest blocked the loader in open() until a
 * writer came (for ever): the agent stopped answering. FIFOs, devices and
 * symlinks to them are refused with an error naming the file, without
 * opening them; the other files still load.
 */
Test(manifests, fifo_and_device_files_are_refused_without_blocking,
     .init = mk_tmpdir, .fini = rm_tmpdir, .timeout = 10)
{
	struct kpx_store *s = new_store();
	char path[256], target[256];
	size_t errors = 0;

	write_file("ok.yaml", svc_yaml("ok", "198.18.100.3", 80));
	snprintf(path, sizeof(path), "%s/fifo.yaml", tmpdir);
	cr_assert_eq(mkfifo(path, 0600), 0);
	snprintf(target, sizeof(target), "%s/.hidden-fifo", tmpdir);
	cr_assert_eq(mkfifo(target, 0600), 0);
	snprintf(path, sizeof(path), "%s/link-to-fifo.yml", tmpdir);
	cr_assert_eq(symlink(target, path), 0);
	snprintf(path, sizeof(path), "%s/null.json", tmpdir);
	cr_assert_eq(symlink("/dev/null", path), 0);
	cr_assert_eq(kpx_manifests_load(tmpdir, s, &errors), 0);
	cr_assert_eq(errors, 3, "fifo, link to a fifo, device: got %zu errors",
		     errors);
	cr_assert(kpx_store_service(s, "t", "ok"));
	kpx_store_free(s);
}

static long max_rss_kb(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

/* The bomb in a manifests file: the loader skips that object with an
 * error naming file and object, applies the rest of the file, and its
 * peak memory grows by a few MB at most (it was 2 GB). */
Test(manifests, alias_bomb_costs_no_memory_and_skips_only_its_object,
     .init = mk_tmpdir, .fini = rm_tmpdir, .timeout = 20)
{
	struct kpx_store *s = new_store();
	size_t errors = 0;
	long before;
	char *text;

	cr_assert(asprintf(&text, "%s---\n%s", alias_bomb,
			   svc_yaml("ok", "198.18.100.3", 80)) > 0);
	write_file("bomb.yaml", text);
	free(text);
	before = max_rss_kb();
	cr_assert_eq(kpx_manifests_load(tmpdir, s, &errors), 0);
	cr_assert_lt(max_rss_kb() - before, 8 * 1024,
		     "peak RSS grew by %%ld kB", max_rss_kb() - before);
	cr_assert_eq(errors, 1);
	cr_assert_null(kpx_store_service(s, "default", "bomb"));
	cr_assert(kpx_store_service(s, "t", "ok"));
	kpx_store_free(s);
}

static void on_change(void *arg)
{
	(*(int *)arg)++;
}

/* Runs the loop until *calls exceeds want or 3 s pass. */
static void wait_change(struct kpx_loop *loop, int *calls, int want)
{
	uint64_t end = kpx_now_ms() + 3000;

	while (*calls < want && kpx_now_ms() < end)
		kpx_loop_run_once(loop, 50);
}

static long rss_kb(void)
{
	long pages = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	cr_assert(f);
	cr_assert_eq(fscanf(f, "%ld %ld", &pages, &resident), 2);
	fclose(f);
	return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* n services with a 2-endpoint slice each, written straight to the file. */
static size_t write_big(const char *name, int n)
{
	char path[256];
	size_t bytes;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	f = fopen(path, "w");
	cr_assert(f);
	for (int i = 0; i < n; i++)
		fprintf(f,
			"apiVersion: v1\nkind: Service\nmetadata:\n"
			"  name: svc-%d\n  namespace: ns-%d\n"
			"  labels: {app: svc-%d, tier: backend}\n"
			"  annotations: {note: \"generated service %d\"}\n"
			"spec:\n  clusterIP: 198.18.%d.%d\n"
			"  ports:\n  - {name: http, port: 80, targetPort: 8080}\n"
			"  - {name: https, port: 443, targetPort: 8443}\n---\n"
			"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
			"metadata:\n  name: svc-%d-abcde\n  namespace: ns-%d\n"
			"  labels: {kubernetes.io/service-name: svc-%d}\n"
			"addressType: IPv4\nports: [{name: http, port: 8080}, "
			"{name: https, port: 8443}]\nendpoints:\n"
			"- {addresses: [198.19.%d.%d], conditions: {ready: true}, nodeName: node-%d}\n"
			"- {addresses: [198.19.%d.%d], conditions: {ready: true}, nodeName: node-%d}\n---\n",
			i, i % 50, i, i, 100 + i / 250, i % 250 + 1, i, i % 50, i,
			i / 250, i % 250 + 1, i % 100, i / 250 + 1, i % 250 + 1,
			(i + 1) % 100);
	bytes = (size_t)ftell(f);
	cr_assert_eq(fclose(f), 0);
	return bytes;
}

/*
 * A big manifest file, loaded and then deleted: the memory comes back.
 * The whole file's JSON trees were built before decoding (about 25 times
 * the file size at the peak), and after deleting the file RSS stayed at
 * hundreds of MB because glibc kept the freed heap. Now documents are
 * decoded as they are read, and big re-reads end with malloc_trim.
 */
Test(manifests, memory_comes_back_after_a_big_file_is_deleted,
     .init = mk_tmpdir, .fini = rm_tmpdir, .timeout = 120)
{
	struct kpx_manifests_source *src = NULL;
	struct kpx_loop *loop = NULL;
	long base, loaded, after, peak;
	struct kpx_store *s;
	struct kpx_store_stats st;
	struct rusage ru;
	int calls = 0;
	size_t bytes;

#ifdef __SANITIZE_ADDRESS__
	/* ASan's allocator keeps freed memory (quarantine) and ignores
	 * malloc_trim: RSS says nothing about kpx there. */
	cr_skip_test("RSS bounds are not measurable under AddressSanitizer");
#endif
	s = new_store();
	write_file("small.yaml", svc_yaml("keep", "198.18.99.1", 80));
	bytes = write_big("big.yaml", 12000);
	cr_assert_eq(kpx_loop_new(&loop), 0);
	base = rss_kb();
	cr_assert_eq(kpx_manifests_open(loop, tmpdir, s, on_change, &calls,
					&src),
		     0);
	loaded = rss_kb();
	kpx_store_get_stats(s, &st);
	cr_assert_eq(st.n_services, 12001);
	kpx_store_clear_dirty(s); /* as the agent's sync does */

	rm_file("big.yaml");
	wait_change(loop, &calls, 1);
	cr_assert_eq(calls, 1);
	kpx_store_get_stats(s, &st);
	cr_assert_eq(st.n_services, 1);
	kpx_store_clear_dirty(s);
	after = rss_kb();
	getrusage(RUSAGE_SELF, &ru);
	peak = ru.ru_maxrss;
	cr_log_info("file %zu kB: RSS %ld kB before, %ld kB loaded, %ld kB after "
		    "deleting it; peak %ld kB",
		    bytes / 1024, base, loaded, after, peak);
	cr_assert_lt(after - base, 8 * 1024,
		     "RSS %ld kB before, %ld kB after the file was deleted",
		     base, after);
	/* the trees of the whole file never exist at once */
	cr_assert_lt(peak - base, (long)(6 * bytes / 1024),
		     "peak RSS %ld kB over a %zu kB file", peak - base,
		     bytes / 1024);
	kpx_manifests_close(src);
	kpx_loop_free(loop);
	kpx_store_free(s);
}

Test(manifests, inotify_rereads, .init = mk_tmpdir, .fini = rm_tmpdir)
{
	struct kpx_store *s = new_store();
	struct kpx_manifests_source *src = NULL;
	struct kpx_loop *loop = NULL;
	struct json_object *status;
	int calls = 0, loads;

	write_file("a.yaml", svc_yaml("a", "198.18.100.1", 80));
	cr_assert_eq(kpx_loop_new(&loop), 0);
	cr_assert_eq(kpx_manifests_open(loop, tmpdir, s, on_change, &calls,
					&src),
		     0);
	cr_assert(kpx_store_service(s, "t", "a"));
	kpx_store_clear_dirty(s);

	/* a burst of writes: coalesced, then applied */
	write_file("b.yaml", svc_yaml("b", "198.18.100.2", 80));
	write_file("c.yaml", svc_yaml("c", "198.18.100.3", 80));
	write_file("b.yaml", svc_yaml("b", "198.18.100.2", 82));
	wait_change(loop, &calls, 1);
	cr_assert_eq(calls, 1, "one re-read for the burst, got %d", calls);
	cr_assert(kpx_store_service(s, "t", "c"));
	cr_assert_eq(kpx_store_service(s, "t", "b")->ports[0].port, 82);
	kpx_store_clear_dirty(s);

	rm_file("a.yaml");
	wait_change(loop, &calls, 2);
	cr_assert_eq(calls, 2);
	cr_assert_null(kpx_store_service(s, "t", "a"));
	kpx_store_clear_dirty(s);

	/* a broken file: reported, the rest stays */
	status = kpx_manifests_status(src);
	loads = json_object_get_int(field(status, "loads"));
	json_object_put(status);
	write_file("d.yaml", "kind: Service\n  bad: [\n");
	for (uint64_t end = kpx_now_ms() + 3000; kpx_now_ms() < end;) {
		kpx_loop_run_once(loop, 50);
		status = kpx_manifests_status(src);
		if (json_object_get_int(field(status, "loads")) > loads)
			break;
		json_object_put(status);
		status = NULL;
	}
	cr_assert(status, "no re-read after writing a broken file");
	json_object_put(status);
	cr_assert(kpx_store_service(s, "t", "b"));
	status = kpx_manifests_status(src);
	cr_assert(status);
	cr_assert_str_eq(json_object_get_string(field(status, "kind")),
			 "manifests");
	cr_assert_str_eq(json_object_get_string(field(status, "dir")), tmpdir);
	cr_assert_eq(json_object_get_int(field(status, "files")), 3);
	cr_assert_eq(json_object_get_int(field(status, "objects")), 4);
	cr_assert_eq(json_object_get_int(field(status, "errors")), 1);
	cr_assert(json_object_get_double(field(status, "last_load")) > 0);
	json_object_put(status);

	kpx_manifests_close(src);
	kpx_loop_free(loop);
	kpx_store_free(s);
}

/*
 * Per-file re-reads. The source re-reads only the files inotify names;
 * what a user observes is which services the store reports as changed
 * (the dirty set the sync consumes) and the store's content, which must
 * always equal a full listing of the directory.
 */
struct watched {
	struct kpx_store *s;
	struct kpx_loop *loop;
	struct kpx_manifests_source *src;
	int calls;
};

static void watch_open(struct watched *w)
{
	memset(w, 0, sizeof(*w));
	w->s = new_store();
	cr_assert_eq(kpx_loop_new(&w->loop), 0);
	cr_assert_eq(kpx_manifests_open(w->loop, tmpdir, w->s, on_change,
					&w->calls, &w->src),
		     0);
	kpx_store_clear_dirty(w->s);
}

static void watch_close(struct watched *w)
{
	kpx_manifests_close(w->src);
	kpx_loop_free(w->loop);
	kpx_store_free(w->s);
}

static int64_t status_int(struct watched *w, const char *key)
{
	struct json_object *st = kpx_manifests_status(w->src);
	int64_t v;

	cr_assert(st);
	v = json_object_get_int64(field(st, key));
	json_object_put(st);
	return v;
}

static bool status_bool(struct watched *w, const char *key)
{
	struct json_object *st = kpx_manifests_status(w->src);
	bool v;

	cr_assert(st);
	v = json_object_get_boolean(field(st, key));
	json_object_put(st);
	return v;
}

/* Runs the loop until the source re-read once more (3 s at most). */
static void wait_reload(struct watched *w)
{
	int64_t loads = status_int(w, "loads");
	uint64_t end = kpx_now_ms() + 3000;

	while (status_int(w, "loads") == loads && kpx_now_ms() < end)
		kpx_loop_run_once(w->loop, 50);
	cr_assert_gt(status_int(w, "loads"), loads, "no re-read");
}

struct dirty_set {
	char names[32][KPX_NS_MAX + KPX_NAME_MAX];
	int n;
};

static void add_dirty(const char *ns, const char *name, void *arg)
{
	struct dirty_set *d = arg;

	if (d->n < 32)
		snprintf(d->names[d->n], sizeof(d->names[0]), "%s/%s", ns, name);
	d->n++;
}

/* The dirty services, as "ns/name,..." sorted, then cleared. */
static char *take_dirty(struct kpx_store *s)
{
	static char out[1024];
	struct dirty_set d = { .n = 0 };

	kpx_store_for_each_dirty(s, add_dirty, &d);
	cr_assert_leq(d.n, 32);
	qsort(d.names, (size_t)d.n, sizeof(d.names[0]),
	      (int (*)(const void *, const void *))strcmp);
	out[0] = '\0';
	for (int i = 0; i < d.n; i++) {
		strcat(out, i ? "," : "");
		strcat(out, d.names[i]);
	}
	kpx_store_clear_dirty(s);
	return out;
}

static int port_of(struct kpx_store *s, const char *name)
{
	const struct kpx_service *svc = kpx_store_service(s, "t", name);

	return svc ? svc->ports[0].port : -1;
}

struct svc_list {
	struct kpx_store *s;
	char buf[4096];
};

static void list_slice(const struct kpx_endpoint_slice *sl, void *arg)
{
	struct svc_list *l = arg;
	char one[600];

	snprintf(one, sizeof(one), " slice %s:%zu:%s", sl->name,
		 sl->n_endpoints, sl->resource_version);
	strncat(l->buf, one, sizeof(l->buf) - strlen(l->buf) - 1);
}

static void list_svc(const struct kpx_service *svc, void *arg)
{
	struct svc_list *l = arg;
	char one[600];

	snprintf(one, sizeof(one), "%s/%s:%d:%s", svc->ns, svc->name,
		 svc->ports[0].port, svc->resource_version);
	strncat(l->buf, one, sizeof(l->buf) - strlen(l->buf) - 1);
	kpx_store_for_each_slice_of(l->s, svc->ns, svc->name, list_slice, l);
	strncat(l->buf, ";", sizeof(l->buf) - strlen(l->buf) - 1);
}

/* Every service with its port, content version and slices. */
static void snapshot(struct kpx_store *s, struct svc_list *l)
{
	struct kpx_store_stats st;
	char tail[64];

	memset(l, 0, sizeof(*l));
	l->s = s;
	kpx_store_for_each_service(s, list_svc, l);
	kpx_store_get_stats(s, &st);
	snprintf(tail, sizeof(tail), "services=%zu slices=%zu", st.n_services,
		 st.n_slices);
	strncat(l->buf, tail, sizeof(l->buf) - strlen(l->buf) - 1);
}

/* The incrementally maintained store equals a full listing of the dir. */
static void assert_same_as_full_listing(struct watched *w)
{
	struct kpx_store *fresh = new_store();
	struct svc_list a, b;

	cr_assert_eq(kpx_manifests_load(tmpdir, fresh, NULL), 0);
	snapshot(w->s, &a);
	snapshot(fresh, &b);
	cr_assert_str_eq(a.buf, b.buf, "incremental:\n%s\nfull listing:\n%s",
			 a.buf, b.buf);
	kpx_store_free(fresh);
}

/* Two services (with their slices) in one file. */
static char *two_svc_yaml(const char *a, int pa, const char *b, int pb)
{
	static char buf[1200];
	char first[512];

	snprintf(first, sizeof(first), "%s", svc_yaml(a, "198.18.101.1", pa));
	snprintf(buf, sizeof(buf), "%s---\n%s", first,
		 svc_yaml(b, "198.18.101.2", pb));
	return buf;
}

Test(manifests_incremental, edit_one_file_changes_only_its_objects,
     .init = mk_tmpdir, .fini = rm_tmpdir)
{
	struct watched w;

	write_file("a.yaml", svc_yaml("a", "198.18.100.1", 80));
	write_file("b.yaml", two_svc_yaml("b1", 80, "b2", 80));
	write_file("c.yaml", svc_yaml("c", "198.18.100.3", 80));
	watch_open(&w);
	cr_assert_eq(status_int(&w, "files"), 3);
	cr_assert_eq(status_int(&w, "objects"), 8);

	/* b2's port changes: only b.yaml is read, only b2 is changed */
	write_file("b.yaml", two_svc_yaml("b1", 80, "b2", 81));
	wait_reload(&w);
	cr_assert_eq(status_int(&w, "last_files_read"), 1);
	cr_assert_not(status_bool(&w, "last_full_listing"));
	cr_assert_str_eq(take_dirty(w.s), "t/b2");
	cr_assert_eq(port_of(w.s, "b2"), 81);
	cr_assert_eq(status_int(&w, "files"), 3);
	cr_assert_eq(status_int(&w, "objects"), 8);
	assert_same_as_full_listing(&w);

	/* rewriting a file with the same content is no change at all */
	write_file("c.yaml", svc_yaml("c", "198.18.100.3", 80));
	wait_reload(&w);
	cr_assert_str_eq(take_dirty(w.s), "");
	watch_close(&w);
}

Test(manifests_incremental, object_removed_from_a_file,
     .init = mk_tmpdir, .fini = rm_tmpdir)
{
	struct watched w;

	write_file("a.yaml", svc_yaml("a", "198.18.100.1", 80));
	write_file("b.yaml", two_svc_yaml("b1", 80, "b2", 80));
	watch_open(&w);

	write_file("b.yaml", svc_yaml("b1", "198.18.101.1", 80));
	wait_reload(&w);
	cr_assert_str_eq(take_dirty(w.s), "t/b2");
	cr_assert_null(kpx_store_service(w.s, "t", "b2"));
	cr_assert_eq(slices_of(w.s, "t", "b2").n, 0);
	cr_assert(kpx_store_service(w.s, "t", "b1"));
	cr_assert(kpx_store_service(w.s, "t", "a"));
	cr_assert_eq(status_int(&w, "objects"), 4);
	assert_same_as_full_listing(&w);
	watch_close(&w);
}

Test(manifests_incremental, deleted_file_deletes_its_objects,
     .init = mk_tmpdir, .fini = rm_tmpdir)
{
	struct watched w;

	write_file("a.yaml", svc_yaml("a", "198.18.100.1", 80));
	write_file("b.yaml", two_svc_yaml("b1", 80, "b2", 80));
	watch_open(&w);

	rm_file("b.yaml");
	wait_change(w.loop, &w.calls, 1);
	cr_assert_str_eq(take_dirty(w.s), "t/b1,t/b2");
	cr_assert_null(kpx_store_service(w.s, "t", "b1"));
	cr_assert_null(kpx_store_service(w.s, "t", "b2"));
	cr_assert(kpx_store_service(w.s, "t", "a"));
	cr_assert_eq(slices_of(w.s, "t", "a").n, 1);
	cr_assert_eq(status_int(&w, "files"), 1);
	cr_assert_eq(status_int(&w, "objects"), 2);
	assert_same_as_full_listing(&w);

	/* renamed away to a name that is not a manifest: gone as well */
	{
		char from[256], to[256];

		snprintf(from, sizeof(from), "%s/a.yaml", tmpdir);
		snprintf(to, sizeof(to), "%s/a.yaml.disabled", tmpdir);
		cr_assert_eq(rename(from, to), 0);
	}
	wait_change(w.loop, &w.calls, 2);
	cr_assert_str_eq(take_dirty(w.s), "t/a");
	cr_assert_null(kpx_store_service(w.s, "t", "a"));
	cr_assert_eq(status_int(&w, "files"), 0);
	cr_assert_eq(status_int(&w, "objects"), 0);
	watch_close(&w);
}

Test(manifests_incremental, editor_renames_temp_over_file,
     .init = mk_tmpdir, .fini = rm_tmpdir)
{
	char path[256], tmp[256], bak[256];
	struct watched w;
	FILE *f;

	write_file("a.yaml", svc_yaml("a", "198.18.100.1", 80));
	write_file("b.yaml", svc_yaml("b", "198.18.100.2", 80));
	watch_open(&w);

	/* vim-like: the old file moved to a backup name, the new one
	 * written under a visible non-manifest name and renamed in, the
	 * backup removed; all in one burst */
	snprintf(path, sizeof(path), "%s/a.yaml", tmpdir);
	snprintf(bak, sizeof(bak), "%s/a.yaml~", tmpdir);
	snprintf(tmp, sizeof(tmp), "%s/a.yaml.swx", tmpdir);
	cr_assert_eq(rename(path, bak), 0);
	f = fopen(tmp, "w");
	cr_assert(f);
	fputs(svc_yaml("a", "198.18.100.1", 90), f);
	cr_assert_eq(fclose(f), 0);
	cr_assert_eq(rename(tmp, path), 0);
	cr_assert_eq(unlink(bak), 0);
	wait_change(w.loop, &w.calls, 1);
	cr_assert_eq(w.calls, 1);
	cr_assert_eq(port_of(w.s, "a"), 90);
	cr_assert_str_eq(take_dirty(w.s), "t/a");
	cr_assert_eq(status_int(&w, "last_files_read"), 1);
	cr_assert_not(status_bool(&w, "last_full_listing"));

	/* a file renamed to another manifest name: same objects, no change */
	{
		char to[256];

		snprintf(to, sizeof(to), "%s/c.yaml", tmpdir);
		cr_assert_eq(rename(path, to), 0);
	}
	wait_reload(&w);
	cr_assert_str_eq(take_dirty(w.s), "");
	cr_assert_eq(port_of(w.s, "a"), 90);
	cr_assert_eq(status_int(&w, "files"), 2);
	assert_same_as_full_listing(&w);
	watch_close(&w);
}

Test(manifests_incremental, object_in_two_files_last_name_wins,
     .init = mk_tmpdir, .fini = rm_tmpdir)
{
	struct watched w;
	struct kpx_store *s = new_store();

	/* A full listing: b.yaml is read after a.yaml and wins. */
	write_file("a.yaml", two_svc_yaml("only-a", 80, "dup", 81));
	write_file("b.yaml", two_svc_yaml("only-b", 80, "dup", 82));
	cr_assert_eq(kpx_manifests_load(tmpdir, s, NULL), 0);
	cr_assert_eq(port_of(s, "dup"), 82);
	kpx_store_free(s);

	watch_open(&w);
	cr_assert_eq(port_of(w.s, "dup"), 82);
	/* both files count it, as a full listing always did */
	cr_assert_eq(status_int(&w, "objects"), 8);

	/* editing the losing copy changes nothing */
	write_file("a.yaml", two_svc_yaml("only-a", 80, "dup", 83));
	wait_reload(&w);
	cr_assert_str_eq(take_dirty(w.s), "");
	cr_assert_eq(port_of(w.s, "dup"), 82);
	assert_same_as_full_listing(&w);

	/* the winning copy removed: a.yaml's (current) copy applies */
	write_file("b.yaml", svc_yaml("only-b", "198.18.101.1", 80));
	wait_change(w.loop, &w.calls, 1);
	cr_assert_eq(port_of(w.s, "dup"), 83);
	cr_assert_eq(slices_of(w.s, "t", "dup").n, 1);
	cr_assert_str_eq(take_dirty(w.s), "t/dup");
	assert_same_as_full_listing(&w);

	/* back in b.yaml: wins again */
	write_file("b.yaml", two_svc_yaml("only-b", 80, "dup", 84));
	wait_change(w.loop, &w.calls, 2);
	cr_assert_eq(port_of(w.s, "dup"), 84);
	take_dirty(w.s);

	/* removed from the losing file: still there, unchanged */
	write_file("a.yaml", svc_yaml("only-a", "198.18.101.1", 80));
	wait_reload(&w);
	cr_assert_eq(port_of(w.s, "dup"), 84);
	cr_assert_str_eq(take_dirty(w.s), "");
	assert_same_as_full_listing(&w);

	/* the last copy's file deleted: gone */
	rm_file("b.yaml");
	wait_change(w.loop, &w.calls, 3);
	cr_assert_null(kpx_store_service(w.s, "t", "dup"));
	cr_assert_eq(slices_of(w.s, "t", "dup").n, 0);
	cr_assert_str_eq(take_dirty(w.s), "t/dup,t/only-b");
	assert_same_as_full_listing(&w);
	watch_close(&w);
}

/* What was logged into fd (static buffer). */
static const char *captured_log(int fd)
{
	static char buf[8192];
	ssize_t n;

	cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);
	n = read(fd, buf, sizeof(buf) - 1);
	cr_assert_geq(n, 0);
	buf[n] = '\0';
	return buf;
}

Test(manifests_incremental, unparsable_file_keeps_its_last_good_objects,
     .init = mk_tmpdir, .fini = rm_tmpdir)
{
	char logpath[128];
	struct watched w;
	int logfd, saved;
	const char *log;

	write_file("a.yaml", svc_yaml("a", "198.18.100.1", 80));
	write_file("b.yaml", two_svc_yaml("b1", 80, "b2", 80));
	watch_open(&w);

	snprintf(logpath, sizeof(logpath), "%s/.log", tmpdir);
	logfd = open(logpath, O_RDWR | O_CREAT | O_TRUNC, 0600);
	cr_assert(logfd >= 0);
	fflush(stderr);
	saved = dup(2);
	cr_assert(saved >= 0);
	dup2(logfd, 2);
	/* a typo in b.yaml: nothing of it (or of a.yaml) is withdrawn */
	write_file("b.yaml", "kind: Service\nmetadata:\n  name: b1\n bad: [\n");
	wait_reload(&w);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	log = captured_log(logfd);
	close(logfd);
	cr_assert(strstr(log, "manifests: b.yaml: line "),
		  "the error names the file and line: %s", log);
	cr_assert(strstr(log, "keeping its 4 objects from the last good read"),
		  "the error says what is kept: %s", log);
	cr_assert_str_eq(take_dirty(w.s), "");
	cr_assert(kpx_store_service(w.s, "t", "a"));
	cr_assert_eq(port_of(w.s, "b1"), 80);
	cr_assert_eq(port_of(w.s, "b2"), 80);
	cr_assert_eq(slices_of(w.s, "t", "b2").n, 1);
	cr_assert_eq(status_int(&w, "files"), 2);
	cr_assert_eq(status_int(&w, "objects"), 6);
	cr_assert_eq(status_int(&w, "errors"), 1);

	/* another file's edit meanwhile still applies */
	write_file("a.yaml", svc_yaml("a", "198.18.100.1", 81));
	wait_change(w.loop, &w.calls, 1);
	cr_assert_str_eq(take_dirty(w.s), "t/a");
	cr_assert_eq(port_of(w.s, "b2"), 80);

	/* fixed: its new content applies, the error is gone */
	write_file("b.yaml", svc_yaml("b1", "198.18.101.1", 85));
	wait_change(w.loop, &w.calls, 2);
	cr_assert_str_eq(take_dirty(w.s), "t/b1,t/b2");
	cr_assert_eq(port_of(w.s, "b1"), 85);
	cr_assert_null(kpx_store_service(w.s, "t", "b2"));
	cr_assert_eq(status_int(&w, "errors"), 0);
	cr_assert_eq(status_int(&w, "objects"), 4);
	assert_same_as_full_listing(&w);

	/* an invalid object in a file that parses is skipped, as a full
	 * listing skips it: its old version goes */
	write_file("b.yaml", svc_yaml("b1", "198.18.101.1", 70000));
	wait_change(w.loop, &w.calls, 3);
	cr_assert_null(kpx_store_service(w.s, "t", "b1"));
	cr_assert_eq(status_int(&w, "errors"), 1);
	assert_same_as_full_listing(&w);
	watch_close(&w);
}

Test(manifests_incremental, queue_overflow_lists_the_whole_directory,
     .init = mk_tmpdir, .fini = rm_tmpdir)
{
	char sub[256];
	long max_events = 0;
	struct watched w;
	FILE *f;

	f = fopen("/proc/sys/fs/inotify/max_queued_events", "r");
	if (f) {
		if (fscanf(f, "%ld", &max_events) != 1)
			max_events = 0;
		fclose(f);
	}
	if (max_events <= 0 || max_events > 1000000)
		cr_skip_test("max_queued_events %ld: overflow too costly to provoke",
			     max_events);
	write_file("a.yaml", svc_yaml("a", "198.18.100.1", 80));
	write_file("b.yaml", svc_yaml("b", "198.18.100.2", 80));
	watch_open(&w);

	/* fill the queue (the loop is not reading): two events a round */
	snprintf(sub, sizeof(sub), "%s/.flood", tmpdir);
	for (long i = 0; i < max_events / 2 + 16; i++) {
		cr_assert_eq(mkdir(sub, 0700), 0);
		cr_assert_eq(rmdir(sub), 0);
	}
	/* these events are lost in the overflow: only a full listing
	 * sees the edit and the deletion */
	write_file("b.yaml", svc_yaml("b", "198.18.100.2", 81));
	rm_file("a.yaml");
	wait_change(w.loop, &w.calls, 1);
	cr_assert(status_bool(&w, "last_full_listing"));
	cr_assert_eq(port_of(w.s, "b"), 81);
	cr_assert_null(kpx_store_service(w.s, "t", "a"));
	cr_assert_str_eq(take_dirty(w.s), "t/a,t/b");
	cr_assert_eq(status_int(&w, "files"), 1);
	assert_same_as_full_listing(&w);

	/* and per-file re-reads resume after it */
	write_file("b.yaml", svc_yaml("b", "198.18.100.2", 82));
	wait_change(w.loop, &w.calls, 2);
	cr_assert_not(status_bool(&w, "last_full_listing"));
	cr_assert_eq(port_of(w.s, "b"), 82);
	watch_close(&w);
}

Test(manifests_incremental, replaced_directory_is_listed_again,
     .init = mk_tmpdir, .fini = rm_tmpdir)
{
	struct watched w;
	char old[128];

	write_file("a.yaml", svc_yaml("a", "198.18.100.1", 80));
	write_file("b.yaml", svc_yaml("b", "198.18.100.2", 80));
	watch_open(&w);

	/* the directory moved away and a new one put in its place */
	snprintf(old, sizeof(old), "%s.old", tmpdir);
	cr_assert_eq(rename(tmpdir, old), 0);
	cr_assert_eq(mkdir(tmpdir, 0700), 0);
	write_file("b.yaml", svc_yaml("b", "198.18.100.2", 81));
	wait_change(w.loop, &w.calls, 1);
	cr_assert(status_bool(&w, "last_full_listing"));
	cr_assert_null(kpx_store_service(w.s, "t", "a"));
	cr_assert_eq(port_of(w.s, "b"), 81);
	take_dirty(w.s);

	/* the new directory is the one watched now */
	write_file("c.yaml", svc_yaml("c", "198.18.100.3", 80));
	wait_change(w.loop, &w.calls, 2);
	cr_assert(kpx_store_service(w.s, "t", "c"));
	cr_assert_str_eq(take_dirty(w.s), "t/c");
	/* the old directory's edits are not ours any more */
	assert_same_as_full_listing(&w);
	watch_close(&w);
}

/* Two calls in one expression need their own buffers: 4 rotate. */
static char *node_yaml(const char *name, const char *zone)
{
	static char bufs[4][256];
	static int i;
	char *buf = bufs[i++ % 4];

	snprintf(buf, sizeof(bufs[0]),
		 "apiVersion: v1\nkind: Node\nmetadata:\n  name: %s\n"
		 "  labels:\n    topology.kubernetes.io/zone: %s\n",
		 name, zone);
	return buf;
}

Test(manifests_incremental, own_node_per_file, .init = mk_tmpdir,
     .fini = rm_tmpdir)
{
	char two[1024];
	struct watched w;

	kpx_manifests_set_node("node-1");
	write_file("svc.yaml", svc_yaml("a", "198.18.100.1", 80));
	snprintf(two, sizeof(two), "%s---\n%s", node_yaml("node-2", "zone-b"),
		 node_yaml("node-1", "zone-a"));
	write_file("nodes.yaml", two);
	watch_open(&w);
	cr_assert(kpx_store_node(w.s));
	cr_assert_str_eq(kpx_store_node(w.s)->zone, "zone-a");
	cr_assert_eq(status_int(&w, "objects"), 3);

	/* the own node's zone changes in its file */
	snprintf(two, sizeof(two), "%s---\n%s", node_yaml("node-2", "zone-b"),
		 node_yaml("node-1", "zone-c"));
	write_file("nodes.yaml", two);
	wait_reload(&w);
	cr_assert_eq(status_int(&w, "last_files_read"), 1);
	cr_assert_str_eq(kpx_store_node(w.s)->zone, "zone-c");
	cr_assert_eq(port_of(w.s, "a"), 80);

	/* another node's change is nothing to us */
	kpx_store_clear_dirty(w.s);
	write_file("nodes.yaml", node_yaml("node-1", "zone-c"));
	wait_reload(&w);
	cr_assert_not(kpx_store_dirty(w.s));

	/* its file deleted: no own Node any more */
	rm_file("nodes.yaml");
	wait_reload(&w);
	cr_assert_null(kpx_store_node(w.s));
	cr_assert(kpx_store_service(w.s, "t", "a"));
	watch_close(&w);
	kpx_manifests_set_node("");
}

/*
 * Random bursts of edits, deletions and renames over a few files that
 * share objects: after every re-read the store equals a full listing of
 * the directory (the rule for an object in several files included).
 */
Test(manifests_incremental, random_edits_match_full_listing,
     .init = mk_tmpdir, .fini = rm_tmpdir, .timeout = 60)
{
	bool exists[5] = { false };
	unsigned seed = 20261123;
	struct watched w;
	int full_reads = 0;

	write_file("f0.yaml", two_svc_yaml("s0", 80, "s1", 80));
	exists[0] = true;
	watch_open(&w);
	for (int step = 0; step < 30; step++) {
		int ops = 1 + rand_r(&seed) % 3;

		for (int op = 0; op < ops; op++) {
			int f = rand_r(&seed) % 5, what = rand_r(&seed) % 6;
			char name[32], path[256], to[256];

			snprintf(name, sizeof(name), "f%d.yaml", f);
			snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
			if (what < 4 || !exists[f]) {
				char text[4096] = "";

				for (int s = 0; s < 6; s++) {
					char svc[8], ipb[32];

					if (rand_r(&seed) % 2)
						continue;
					snprintf(svc, sizeof(svc), "s%d", s);
					snprintf(ipb, sizeof(ipb),
						 "198.18.102.%d", s + 1);
					strcat(text, text[0] ? "---\n" : "");
					strcat(text,
					       svc_yaml(svc, ipb,
							80 + rand_r(&seed) % 10));
				}
				write_file(name, text);
				exists[f] = true;
			} else if (what == 4) {
				rm_file(name);
				exists[f] = false;
			} else {
				int g = (f + 1 + rand_r(&seed) % 4) % 5;

				snprintf(to, sizeof(to), "%s/f%d.yaml", tmpdir,
					 g);
				cr_assert_eq(rename(path, to), 0);
				exists[f] = false;
				exists[g] = true;
			}
		}
		wait_reload(&w);
		if (status_bool(&w, "last_full_listing"))
			full_reads++;
		assert_same_as_full_listing(&w);
	}
	cr_assert_eq(full_reads, 0, "per-file re-reads only");
	watch_close(&w);
}
