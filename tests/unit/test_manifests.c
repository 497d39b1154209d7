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
	if (strncmp(tmpdir, "/tmp/kpx-manifests-", 19))
		return;
	cr_expect_eq(nftw(tmpdir, rm_entry, 8, FTW_DEPTH | FTW_PHYS), 0);
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
