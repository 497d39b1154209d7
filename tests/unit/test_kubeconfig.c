// SPDX-License-Identifier: Apache-2.0
/* kubeconfig and in-cluster config parsing. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "k8s/client.h"

static char tmpdir[256];

static void setup(void)
{
	strcpy(tmpdir, "/tmp/kpx-kubeconfig-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
}

static void teardown(void)
{
	char cmd[512];

	/* Test-only cleanup of our own mkdtemp directory. */
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	cr_assert_eq(system(cmd), 0);
}

static void write_file(const char *name, const char *content)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	f = fopen(path, "w");
	cr_assert_not_null(f, "open %s", path);
	fputs(content, f);
	fclose(f);
}

static int load(const char *name, struct kpx_k8s_conn *c, char *err)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	return kpx_kubeconfig_load(path, c, err, 512);
}

TestSuite(kubeconfig, .init = setup, .fini = teardown);

Test(kubeconfig, token_and_ca_file_relative)
{
	struct kpx_k8s_conn c;
	char err[512] = "", want[512];

	write_file("config",
		   "apiVersion: v1\n"
		   "kind: Config\n"
		   "current-context: b\n"
		   "clusters:\n"
		   "- name: other\n"
		   "  cluster: {server: https://198.18.0.9:6443}\n"
		   "- name: c1\n"
		   "  cluster:\n"
		   "    server: https://198.18.0.1:6443\n"
		   "    certificate-authority: certs/ca.pem\n"
		   "contexts:\n"
		   "- name: a\n"
		   "  context: {cluster: other, user: u0}\n"
		   "- name: b\n"
		   "  context:\n"
		   "    cluster: c1\n"
		   "    user: u1\n"
		   "users:\n"
		   "- name: u0\n"
		   "  user: {token: wrong}\n"
		   "- name: u1\n"
		   "  user:\n"
		   "    token: \"abc.def\"\n");
	cr_assert_eq(load("config", &c, err), 0, "%s", err);
	cr_expect_str_eq(c.server, "https://198.18.0.1:6443");
	cr_expect_str_eq(c.token, "abc.def");
	snprintf(want, sizeof(want), "%s/certs/ca.pem", tmpdir);
	cr_expect_str_eq(c.ca_file, want);
	cr_expect_null(c.ca_data);
	cr_expect_not(c.insecure);
	cr_expect_str_eq(c.cert_file, "");
	kpx_k8s_conn_clear(&c);
}

Test(kubeconfig, token_file_and_insecure)
{
	struct kpx_k8s_conn c;
	char err[512] = "", want[512];

	write_file("tok", "  secret-token-1\n");
	write_file("config",
		   "current-context: x\n"
		   "clusters:\n"
		   "- name: c\n"
		   "  cluster:\n"
		   "    server: https://[fd00::1]:6443\n"
		   "    insecure-skip-tls-verify: true\n"
		   "contexts:\n"
		   "- name: x\n"
		   "  context: {cluster: c, user: u}\n"
		   "users:\n"
		   "- name: u\n"
		   "  user:\n"
		   "    tokenFile: tok\n");
	cr_assert_eq(load("config", &c, err), 0, "%s", err);
	cr_expect(c.insecure);
	cr_expect_str_eq(c.server, "https://[fd00::1]:6443");
	snprintf(want, sizeof(want), "%s/tok", tmpdir);
	cr_expect_str_eq(c.token_file, want);
	/* Only trailing whitespace is stripped: tokens never contain any. */
	cr_expect_str_eq(c.token, "  secret-token-1");
	kpx_k8s_conn_clear(&c);
}

Test(kubeconfig, inline_cert_data)
{
	struct kpx_k8s_conn c;
	char err[512] = "";

	/* base64 of "CA-PEM\n", "CERT", "KEY!" */
	write_file("config",
		   "current-context: x\n"
		   "clusters:\n"
		   "- name: c\n"
		   "  cluster:\n"
		   "    server: https://198.18.0.1\n"
		   "    certificate-authority-data: Q0EtUEVNCg==\n"
		   "contexts:\n"
		   "- name: x\n"
		   "  context: {cluster: c, user: u}\n"
		   "users:\n"
		   "- name: u\n"
		   "  user:\n"
		   "    client-certificate-data: Q0VSVA==\n"
		   "    client-key-data: S0VZIQ==\n");
	cr_assert_eq(load("config", &c, err), 0, "%s", err);
	cr_assert_not_null(c.ca_data);
	cr_expect_str_eq(c.ca_data, "CA-PEM\n");
	cr_assert_not_null(c.cert_data);
	cr_expect_str_eq(c.cert_data, "CERT");
	cr_assert_not_null(c.key_data);
	cr_expect_str_eq(c.key_data, "KEY!");
	cr_expect_str_eq(c.token, "");
	kpx_k8s_conn_clear(&c);
	cr_expect_null(c.ca_data);
}

Test(kubeconfig, cert_files_absolute_and_relative)
{
	struct kpx_k8s_conn c;
	char err[512] = "", want[512];

	write_file("config",
		   "current-context: x\n"
		   "clusters:\n"
		   "- name: c\n"
		   "  cluster: {server: https://198.18.0.1}\n"
		   "contexts:\n"
		   "- name: x\n"
		   "  context: {cluster: c, user: u}\n"
		   "users:\n"
		   "- name: u\n"
		   "  user:\n"
		   "    client-certificate: /etc/kpx/client.crt\n"
		   "    client-key: ./client.key\n");
	cr_assert_eq(load("config", &c, err), 0, "%s", err);
	cr_expect_str_eq(c.cert_file, "/etc/kpx/client.crt");
	snprintf(want, sizeof(want), "%s/./client.key", tmpdir);
	cr_expect_str_eq(c.key_file, want);
	kpx_k8s_conn_clear(&c);
}

Test(kubeconfig, missing_context_is_clear_error)
{
	struct kpx_k8s_conn c;
	char err[512] = "";

	write_file("config",
		   "current-context: nope\n"
		   "clusters:\n"
		   "- name: c\n"
		   "  cluster: {server: https://198.18.0.1}\n"
		   "contexts:\n"
		   "- name: x\n"
		   "  context: {cluster: c}\n");
	cr_expect_lt(load("config", &c, err), 0);
	cr_expect(strstr(err, "context \"nope\" not found") != NULL, "%s", err);
	cr_expect(strstr(err, "config") != NULL, "error names the file: %s",
		  err);
}

Test(kubeconfig, other_errors)
{
	struct kpx_k8s_conn c;
	char err[512] = "";

	write_file("nocur", "clusters: []\n");
	cr_expect_lt(load("nocur", &c, err), 0);
	cr_expect(strstr(err, "current-context") != NULL, "%s", err);

	write_file("nocluster", "current-context: x\n"
				"contexts:\n"
				"- name: x\n"
				"  context: {cluster: gone}\n");
	cr_expect_lt(load("nocluster", &c, err), 0);
	cr_expect(strstr(err, "cluster \"gone\"") != NULL, "%s", err);

	write_file("badb64", "current-context: x\n"
			     "clusters:\n"
			     "- name: c\n"
			     "  cluster: {server: https://198.18.0.1, "
			     "certificate-authority-data: '%%%%'}\n"
			     "contexts:\n"
			     "- name: x\n"
			     "  context: {cluster: c}\n");
	cr_expect_lt(load("badb64", &c, err), 0);
	cr_expect(strstr(err, "base64") != NULL, "%s", err);

	write_file("badyaml", "current-context: [x\n");
	cr_expect_lt(load("badyaml", &c, err), 0);
	cr_expect(strstr(err, "line") != NULL, "%s", err);

	cr_expect_lt(load("does-not-exist", &c, err), 0);
	cr_expect(strstr(err, "does-not-exist") != NULL, "%s", err);
}

Test(kubeconfig, in_cluster)
{
	struct kpx_k8s_conn c;
	char err[512] = "", want[512];

	write_file("token", "sa-token\n");
	write_file("ca.crt", "PEM");
	setenv("KPX_SA_DIR", tmpdir, 1);
	setenv("KUBERNETES_SERVICE_HOST", "fd00::10", 1);
	setenv("KUBERNETES_SERVICE_PORT", "443", 1);
	cr_assert_eq(kpx_k8s_in_cluster(&c, err, sizeof(err)), 0, "%s", err);
	cr_expect_str_eq(c.server, "https://[fd00::10]:443");
	cr_expect_str_eq(c.token, "sa-token");
	snprintf(want, sizeof(want), "%s/ca.crt", tmpdir);
	cr_expect_str_eq(c.ca_file, want);
	snprintf(want, sizeof(want), "%s/token", tmpdir);
	cr_expect_str_eq(c.token_file, want);
	kpx_k8s_conn_clear(&c);

	setenv("KUBERNETES_SERVICE_HOST", "198.18.0.10", 1);
	cr_assert_eq(kpx_k8s_in_cluster(&c, err, sizeof(err)), 0, "%s", err);
	cr_expect_str_eq(c.server, "https://198.18.0.10:443");
	kpx_k8s_conn_clear(&c);

	unsetenv("KUBERNETES_SERVICE_HOST");
	cr_expect_lt(kpx_k8s_in_cluster(&c, err, sizeof(err)), 0);
	cr_expect(strstr(err, "KUBERNETES_SERVICE_HOST") != NULL, "%s", err);
	unsetenv("KUBERNETES_SERVICE_PORT");
	unsetenv("KPX_SA_DIR");
}

/* ---- users[].user.exec, unsupported fields, proxy, tls-server-name ---- */

#include <json-c/json.h>
#include <time.h>

static const char *kc_head =
	"current-context: x\n"
	"clusters:\n"
	"- name: c\n"
	"  cluster:\n"
	"    server: https://198.18.0.1:6443\n"
	"    tls-server-name: api.kpx.test\n"
	"    proxy-url: socks5://198.18.0.7:1080\n"
	"    certificate-authority-data: Q0EtUEVNCg==\n"
	"    extensions:\n"
	"    - name: client.authentication.k8s.io/exec\n"
	"      extension: {audience: kpx, n: 3}\n"
	"contexts:\n"
	"- name: x\n"
	"  context: {cluster: c, user: u}\n"
	"users:\n"
	"- name: u\n"
	"  user:\n";

static int load_user(const char *user_yaml, struct kpx_k8s_conn *c, char *err)
{
	char buf[4096];

	snprintf(buf, sizeof(buf), "%s%s", kc_head, user_yaml);
	write_file("config", buf);
	return load("config", c, err);
}

Test(kubeconfig, exec_v1_is_parsed_with_cluster_info)
{
	struct kpx_k8s_conn c;
	struct json_object *o, *v, *cl;
	char err[512] = "", want[512];

	cr_assert_eq(load_user("    exec:\n"
			       "      apiVersion: client.authentication.k8s.io/v1\n"
			       "      command: ./bin/get-token\n"
			       "      args: [--audience, kpx]\n"
			       "      env:\n"
			       "      - {name: FOO, value: bar}\n"
			       "      interactiveMode: Never\n"
			       "      provideClusterInfo: true\n"
			       "      installHint: install get-token\n",
			       &c, err),
		     0, "%s", err);
	cr_expect_str_eq(c.tls_server_name, "api.kpx.test");
	cr_expect_str_eq(c.proxy_url, "socks5://198.18.0.7:1080");
	cr_assert_not_null(c.exec);
	o = json_tokener_parse(c.exec);
	cr_assert_not_null(o, "%s", c.exec);
	snprintf(want, sizeof(want), "%s/./bin/get-token", tmpdir);
	cr_assert(json_object_object_get_ex(o, "command", &v));
	cr_expect_str_eq(json_object_get_string(v), want,
			 "a command with '/' is relative to the kubeconfig");
	cr_assert(json_object_object_get_ex(o, "args", &v));
	cr_expect_eq(json_object_array_length(v), 2);
	cr_expect_str_eq(json_object_get_string(json_object_array_get_idx(v, 1)), "kpx");
	cr_assert(json_object_object_get_ex(o, "env", &v));
	cr_expect_str_eq(json_object_get_string(json_object_object_get(
				 json_object_array_get_idx(v, 0), "value")),
			 "bar");
	cr_assert(json_object_object_get_ex(o, "cluster", &cl));
	cr_expect_str_eq(json_object_get_string(json_object_object_get(cl, "server")),
			 "https://198.18.0.1:6443");
	cr_expect_str_eq(json_object_get_string(json_object_object_get(
				 cl, "certificate-authority-data")),
			 "Q0EtUEVNCg==");
	cr_expect_str_eq(json_object_get_string(json_object_object_get(
				 cl, "tls-server-name")),
			 "api.kpx.test");
	cr_assert(json_object_object_get_ex(cl, "config", &v));
	cr_expect_eq(json_object_get_int(json_object_object_get(v, "n")), 3);
	json_object_put(o);
	kpx_k8s_conn_clear(&c);
}

Test(kubeconfig, exec_config_errors_name_the_field)
{
	struct kpx_k8s_conn c;
	char err[512] = "";

	cr_expect_lt(load_user("    exec:\n"
			       "      apiVersion: client.authentication.k8s.io/v1\n"
			       "      command: get-token\n",
			       &c, err), 0);
	cr_expect(strstr(err, "interactiveMode must be set") != NULL, "%s", err);

	cr_expect_lt(load_user("    exec:\n"
			       "      apiVersion: client.authentication.k8s.io/v1beta1\n"
			       "      command: get-token\n"
			       "      interactiveMode: Always\n",
			       &c, err), 0);
	cr_expect(strstr(err, "needs a terminal") != NULL, "%s", err);

	cr_expect_lt(load_user("    exec:\n"
			       "      apiVersion: client.authentication.k8s.io/v1alpha1\n"
			       "      command: get-token\n",
			       &c, err), 0);
	cr_expect(strstr(err, "apiVersion") != NULL, "%s", err);

	cr_expect_lt(load_user("    exec: {apiVersion: client.authentication.k8s.io/v1beta1}\n",
			       &c, err), 0);
	cr_expect(strstr(err, "command is required") != NULL, "%s", err);

	cr_expect_lt(load_user("    token: abc\n"
			       "    exec:\n"
			       "      apiVersion: client.authentication.k8s.io/v1beta1\n"
			       "      command: get-token\n",
			       &c, err), 0);
	cr_expect(strstr(err, "exec and token") != NULL, "%s", err);
}

Test(kubeconfig, exec_v1beta1_defaults_to_if_available)
{
	struct kpx_k8s_conn c;
	char err[512] = "";

	cr_assert_eq(load_user("    exec:\n"
			       "      apiVersion: client.authentication.k8s.io/v1beta1\n"
			       "      command: get-token\n",
			       &c, err), 0, "%s", err);
	cr_expect(strstr(c.exec, "\"command\":\"get-token\"") != NULL, "%s", c.exec);
	cr_expect(strstr(c.exec, "IfAvailable") != NULL, "%s", c.exec);
	cr_expect(strstr(c.exec, "\"cluster\"") == NULL,
		  "no cluster info without provideClusterInfo: %s", c.exec);
	kpx_k8s_conn_clear(&c);
}

Test(kubeconfig, unsupported_user_fields_are_errors_naming_them)
{
	struct kpx_k8s_conn c;
	char err[512] = "";

	cr_expect_lt(load_user("    auth-provider:\n"
			       "      name: gcp\n"
			       "      config: {}\n",
			       &c, err), 0);
	cr_expect(strstr(err, "auth-provider (gcp)") != NULL, "%s", err);
	cr_expect_lt(load_user("    token: abc\n    as: admin\n", &c, err), 0);
	cr_expect(strstr(err, "as (impersonation)") != NULL, "%s", err);
	cr_expect_lt(load_user("    token: abc\n    as-groups: [system:masters]\n",
			       &c, err), 0);
	cr_expect(strstr(err, "as-groups") != NULL, "%s", err);
	cr_expect_lt(load_user("    username: u\n    password: p\n    token: t\n",
			       &c, err), 0);
	cr_expect(strstr(err, "username/password and a token") != NULL, "%s", err);
	write_file("config", "current-context: x\n"
			     "clusters:\n"
			     "- name: c\n"
			     "  cluster: {server: https://198.18.0.1, proxy-url: ftp://198.18.0.2}\n"
			     "contexts:\n"
			     "- name: x\n"
			     "  context: {cluster: c}\n");
	cr_expect_lt(load("config", &c, err), 0);
	cr_expect(strstr(err, "proxy-url") != NULL, "%s", err);
}

Test(kubeconfig, basic_auth)
{
	struct kpx_k8s_conn c;
	char err[512] = "";

	cr_assert_eq(load_user("    username: admin\n    password: s3cret\n", &c, err),
		     0, "%s", err);
	cr_expect_str_eq(c.username, "admin");
	cr_expect_str_eq(c.password, "s3cret");
	kpx_k8s_conn_clear(&c);
}

Test(kubeconfig, rfc3339)
{
	int64_t t;

	cr_assert_eq(kpx_k8s_parse_rfc3339("2030-01-02T03:04:05Z", &t), 0);
	cr_expect_eq(t, 1893553445);
	cr_assert_eq(kpx_k8s_parse_rfc3339("2030-01-02T04:04:05.123456+01:00", &t), 0);
	cr_expect_eq(t, 1893553445);
	cr_assert_eq(kpx_k8s_parse_rfc3339("2030-01-02T02:34:05-00:30", &t), 0);
	cr_expect_eq(t, 1893553445);
	cr_expect_lt(kpx_k8s_parse_rfc3339("2030-01-02 03:04:05", &t), 0);
	cr_expect_lt(kpx_k8s_parse_rfc3339("2030-01-02T03:04:05", &t), 0);
	cr_expect_lt(kpx_k8s_parse_rfc3339("2030-01-02T03:04:05Zjunk", &t), 0);
}

/* An exec config as kubeconfig.c stores it, for a script in tmpdir. */
static void exec_script(const char *body, char *json, size_t len,
			const char *api)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/plugin", tmpdir);
	write_file("plugin", body);
	cr_assert_eq(chmod(path, 0755), 0);
	snprintf(json, len,
		 "{\"command\":\"%s\",\"args\":[\"one\",\"two words\"],"
		 "\"env\":[{\"name\":\"FOO\",\"value\":\"bar\"},"
		 "{\"name\":\"OUT\",\"value\":\"%s\"}],"
		 "\"apiVersion\":\"%s\",\"interactiveMode\":\"Never\","
		 "\"installHint\":\"get it from example\","
		 "\"cluster\":{\"server\":\"https://198.18.0.1:6443\"}}",
		 path, tmpdir, api);
}

static char *slurp(const char *name)
{
	static char buf[8192];
	char path[512];
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	f = fopen(path, "r");
	if (!f)
		return NULL;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

Test(kubeconfig, exec_run_token_args_env_and_exec_info)
{
	struct kpx_k8s_exec_cred cred;
	char json[2048], err[512] = "", *s;

	exec_script("#!/bin/sh\n"
		    "printf '%s\\n' \"$KUBERNETES_EXEC_INFO\" > \"$OUT/info\"\n"
		    "printf '%s|' \"$@\" > \"$OUT/args\"\n"
		    "echo 'a message for the log' >&2\n"
		    "printf '{\"apiVersion\":\"client.authentication.k8s.io/v1\",'\n"
		    "printf '\"kind\":\"ExecCredential\",\"status\":{\"token\":\"tok-%s\",' \"$FOO\"\n"
		    "printf '\"expirationTimestamp\":\"2030-01-02T03:04:05Z\"}}'\n",
		    json, sizeof(json), "client.authentication.k8s.io/v1");
	cr_assert_eq(kpx_k8s_exec_run(json, 5000, &cred, err, sizeof(err)), 0,
		     "%s", err);
	cr_expect_str_eq(cred.token, "tok-bar", "env entries reach the plugin");
	cr_expect_eq(cred.expiry, 1893553445);
	cr_expect_null(cred.cert_pem);
	s = slurp("args");
	cr_assert_not_null(s);
	cr_expect_str_eq(s, "one|two words|", "args passed without a shell");
	s = slurp("info");
	cr_assert_not_null(s);
	cr_expect(strstr(s, "\"interactive\":false") != NULL, "%s", s);
	cr_expect(strstr(s, "\"kind\":\"ExecCredential\"") != NULL, "%s", s);
	cr_expect(strstr(s, "\"apiVersion\":\"client.authentication.k8s.io/v1\"") != NULL,
		  "%s", s);
	cr_expect(strstr(s, "\"server\":\"https:\\/\\/198.18.0.1:6443\"") != NULL ||
			  strstr(s, "\"server\":\"https://198.18.0.1:6443\"") != NULL,
		  "spec.cluster with provideClusterInfo: %s", s);
	kpx_k8s_exec_cred_clear(&cred);
}

Test(kubeconfig, exec_run_client_certificate)
{
	struct kpx_k8s_exec_cred cred;
	char json[2048], err[512] = "";

	exec_script("#!/bin/sh\n"
		    "echo '{\"apiVersion\":\"client.authentication.k8s.io/v1beta1\",\"kind\":\"ExecCredential\",'\n"
		    "echo '\"status\":{\"clientCertificateData\":\"CERT\",\"clientKeyData\":\"KEY\"}}'\n",
		    json, sizeof(json), "client.authentication.k8s.io/v1beta1");
	cr_assert_eq(kpx_k8s_exec_run(json, 5000, &cred, err, sizeof(err)), 0,
		     "%s", err);
	cr_expect_str_eq(cred.token, "");
	cr_expect_str_eq(cred.cert_pem, "CERT");
	cr_expect_str_eq(cred.key_pem, "KEY");
	cr_expect_eq(cred.expiry, 0);
	kpx_k8s_exec_cred_clear(&cred);
}

Test(kubeconfig, exec_run_failures_are_clear_errors)
{
	struct kpx_k8s_exec_cred cred;
	char json[2048], err[512] = "";
	struct timespec a, b;

	/* the plugin answers with another apiVersion */
	exec_script("#!/bin/sh\necho '{\"apiVersion\":\"client.authentication.k8s.io/v1beta1\","
		    "\"kind\":\"ExecCredential\",\"status\":{\"token\":\"t\"}}'\n",
		    json, sizeof(json), "client.authentication.k8s.io/v1");
	cr_expect_lt(kpx_k8s_exec_run(json, 5000, &cred, err, sizeof(err)), 0);
	cr_expect(strstr(err, "plugin returned version client.authentication.k8s.io/v1beta1") != NULL,
		  "%s", err);

	/* neither token nor certificate */
	exec_script("#!/bin/sh\necho '{\"apiVersion\":\"client.authentication.k8s.io/v1\","
		    "\"kind\":\"ExecCredential\",\"status\":{}}'\n",
		    json, sizeof(json), "client.authentication.k8s.io/v1");
	cr_expect_lt(kpx_k8s_exec_run(json, 5000, &cred, err, sizeof(err)), 0);
	cr_expect(strstr(err, "didn't return a token") != NULL, "%s", err);

	/* a certificate without its key */
	exec_script("#!/bin/sh\necho '{\"apiVersion\":\"client.authentication.k8s.io/v1\","
		    "\"kind\":\"ExecCredential\",\"status\":{\"clientCertificateData\":\"C\"}}'\n",
		    json, sizeof(json), "client.authentication.k8s.io/v1");
	cr_expect_lt(kpx_k8s_exec_run(json, 5000, &cred, err, sizeof(err)), 0);
	cr_expect(strstr(err, "together") != NULL, "%s", err);

	/* non-zero exit */
	exec_script("#!/bin/sh\necho 'no credentials configured' >&2\nexit 3\n",
		    json, sizeof(json), "client.authentication.k8s.io/v1");
	cr_expect_lt(kpx_k8s_exec_run(json, 5000, &cred, err, sizeof(err)), 0);
	cr_expect(strstr(err, "exited with status 3") != NULL, "%s", err);

	/* a hung plugin is killed at the timeout */
	exec_script("#!/bin/sh\nsleep 20\necho late\n", json, sizeof(json),
		    "client.authentication.k8s.io/v1");
	clock_gettime(CLOCK_MONOTONIC, &a);
	cr_expect_eq(kpx_k8s_exec_run(json, 300, &cred, err, sizeof(err)), -ETIMEDOUT);
	clock_gettime(CLOCK_MONOTONIC, &b);
	cr_expect_lt(b.tv_sec - a.tv_sec, 3, "timeout not enforced");
	cr_expect(strstr(err, "did not finish within 300 ms") != NULL, "%s", err);

	/* output beyond the bound */
	exec_script("#!/bin/sh\nexec yes\n", json, sizeof(json),
		    "client.authentication.k8s.io/v1");
	cr_expect_eq(kpx_k8s_exec_run(json, 5000, &cred, err, sizeof(err)), -EFBIG,
		     "%s", err);

	/* a missing command names the install hint */
	snprintf(json, sizeof(json),
		 "{\"command\":\"%s/does-not-exist\",\"args\":[],\"env\":[],"
		 "\"apiVersion\":\"client.authentication.k8s.io/v1\","
		 "\"installHint\":\"get it from example\"}",
		 tmpdir);
	cr_expect_lt(kpx_k8s_exec_run(json, 5000, &cred, err, sizeof(err)), 0);
	cr_expect(strstr(err, "get it from example") != NULL, "%s", err);
}

Test(kubeconfig, proxy_for_follows_go_httpproxy)
{
	static const struct {
		const char *url, *https, *http, *no, *want;
	} t[] = {
		{ "https://198.18.0.1:6443", "proxy:3128", NULL, NULL, "http://proxy:3128" },
		{ "https://198.18.0.1:6443", "socks5://p:1080", NULL, "", "socks5://p:1080" },
		{ "http://198.18.0.1:8080", "p:1", NULL, NULL, "" },
		{ "http://198.18.0.1:8080", NULL, "http://h:2", NULL, "http://h:2" },
		/* loopback and localhost are never proxied */
		{ "https://127.0.0.1:6443", "p:1", NULL, NULL, "" },
		{ "https://127.9.9.9:6443", "p:1", NULL, NULL, "" },
		{ "https://[::1]:6443", "p:1", NULL, NULL, "" },
		{ "https://localhost:6443", "p:1", NULL, NULL, "" },
		{ "https://LocalHost:6443", "p:1", NULL, NULL, "" },
		/* CIDRs, IPs, IPs with ports */
		{ "https://198.18.0.1:6443", "p:1", NULL, "198.18.0.0/15", "" },
		{ "https://198.20.0.1:6443", "p:1", NULL, "198.18.0.0/15", "http://p:1" },
		{ "https://[fd00::5]:6443", "p:1", NULL, "fd00::/8", "" },
		{ "https://[fd00::5]:6443", "p:1", NULL, "198.18.0.0/15", "http://p:1" },
		{ "https://198.18.0.1:6443", "p:1", NULL, "198.18.0.1", "" },
		{ "https://198.18.0.1:6443", "p:1", NULL, "198.18.0.1:6443", "" },
		{ "https://198.18.0.1:6443", "p:1", NULL, "198.18.0.1:443", "http://p:1" },
		{ "https://198.18.0.1", "p:1", NULL, "198.18.0.1:443", "" },
		{ "https://[fd00::5]:6443", "p:1", NULL, "[fd00::5]:6443", "" },
		{ "https://[fd00::5]:6443", "p:1", NULL, "fd00::5", "" },
		/* domains: suffix, the name itself, ".x" and "*.x" only below */
		{ "https://api.kpx.test:6443", "p:1", NULL, "kpx.test", "" },
		{ "https://kpx.test:6443", "p:1", NULL, "kpx.test", "" },
		{ "https://kpx.test:6443", "p:1", NULL, ".kpx.test", "http://p:1" },
		{ "https://api.kpx.test:6443", "p:1", NULL, ".kpx.test", "" },
		{ "https://kpx.test:6443", "p:1", NULL, "*.kpx.test", "http://p:1" },
		{ "https://api.kpx.test:6443", "p:1", NULL, " other, *.KPX.test ", "" },
		{ "https://notkpx.test:6443", "p:1", NULL, "kpx.test", "http://p:1" },
		{ "https://api.kpx.test:6443", "p:1", NULL, "kpx.test:443", "http://p:1" },
		{ "https://api.kpx.test", "p:1", NULL, "kpx.test:443", "" },
		{ "https://api.kpx.test:6443", "p:1", NULL, "*", "" },
		{ "https://api.kpx.test:6443", "", NULL, NULL, "" },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char out[256] = "x";

		cr_assert_eq(kpx_k8s_proxy_for(t[i].url, t[i].https, t[i].http,
					       t[i].no, out, sizeof(out)),
			     0, "%s", t[i].url);
		cr_expect_str_eq(out, t[i].want, "url %s no_proxy \"%s\"",
				 t[i].url, t[i].no ? t[i].no : "");
	}
}

Test(kubeconfig, exec_run_slow_plugin_within_timeout)
{
	struct kpx_k8s_exec_cred cred;
	char json[2048], err[512] = "";

	/* Over a second boundary: elapsed time must not wrap. */
	exec_script("#!/bin/sh\nsleep 1.3\n"
		    "echo '{\"apiVersion\":\"client.authentication.k8s.io/v1\","
		    "\"kind\":\"ExecCredential\",\"status\":{\"token\":\"slow\"}}'\n",
		    json, sizeof(json), "client.authentication.k8s.io/v1");
	cr_assert_eq(kpx_k8s_exec_run(json, 5000, &cred, err, sizeof(err)), 0,
		     "%s", err);
	cr_expect_str_eq(cred.token, "slow");
	kpx_k8s_exec_cred_clear(&cred);
}

Test(kubeconfig, exec_run_plugin_inherits_no_agent_fd)
{
	struct kpx_k8s_exec_cred cred;
	char json[2048], err[512] = "", script[512];
	int fd = open("/dev/null", O_RDONLY); /* no O_CLOEXEC, as a leak */

	cr_assert_geq(fd, 3);
	snprintf(script, sizeof(script),
		 "#!/bin/sh\n"
		 "t=open; [ -e /proc/$$/fd/%d ] || t=closed\n"
		 "echo \"{\\\"apiVersion\\\":\\\"client.authentication.k8s.io/v1\\\","
		 "\\\"kind\\\":\\\"ExecCredential\\\",\\\"status\\\":{\\\"token\\\":\\\"$t\\\"}}\"\n",
		 fd);
	exec_script(script, json, sizeof(json), "client.authentication.k8s.io/v1");
	cr_assert_eq(kpx_k8s_exec_run(json, 5000, &cred, err, sizeof(err)), 0,
		     "%s", err);
	cr_expect_str_eq(cred.token, "closed", "the plugin saw the agent's fd %d", fd);
	kpx_k8s_exec_cred_clear(&cred);
	close(fd);
}
