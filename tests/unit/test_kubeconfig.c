// SPDX-License-Identifier: Apache-2.0
/* kubeconfig and in-cluster config parsing. */
#include <criterion/criterion.h>
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
