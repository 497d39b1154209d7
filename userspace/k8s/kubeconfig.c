// SPDX-License-Identifier: Apache-2.0
/*
 * API server connection config: a kubeconfig's current context (parsed
 * with libyaml's document loader), or the in-cluster service account.
 * Relative paths in a kubeconfig are relative to the kubeconfig's own
 * directory, as kubectl resolves them.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#include "k8s/client.h"

/* Kubeconfigs are small; anything bigger is not one. */
#define KUBECONFIG_MAX (16u << 20)

static void seterr(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Reads a whole (small) file, NUL-terminated. */
static int read_file(const char *path, char **out, size_t *outlen)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int err = 0;

	if (!f)
		return -errno;
	for (;;) {
		size_t n;

		if (cap - len < 4096) {
			char *nb;

			cap = cap ? cap * 2 : 8192;
			if (cap > KUBECONFIG_MAX + 8192) {
				err = -EFBIG;
				goto out;
			}
			nb = realloc(buf, cap);
			if (!nb) {
				err = -ENOMEM;
				goto out;
			}
			buf = nb;
		}
		n = fread(buf + len, 1, cap - len - 1, f);
		len += n;
		if (n == 0) {
			if (ferror(f))
				err = -EIO;
			break;
		}
	}
	buf[len] = '\0';
out:
	fclose(f);
	if (err) {
		free(buf);
		return err;
	}
	*out = buf;
	if (outlen)
		*outlen = len;
	return 0;
}

/* RFC 4648 base64 (standard alphabet, padding and whitespace tolerated). */
static int b64_decode(const char *in, char **out, size_t *outlen)
{
	size_t n = strlen(in);
	unsigned char *buf = malloc(n / 4 * 3 + 4);
	uint32_t acc = 0;
	int bits = 0;
	size_t len = 0;
	bool pad = false;

	if (!buf)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = in[i];
		int v;

		if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
			continue;
		if (c == '=') {
			pad = true;
			continue;
		}
		if (pad)
			goto bad; /* data after padding */
		if (c >= 'A' && c <= 'Z')
			v = c - 'A';
		else if (c >= 'a' && c <= 'z')
			v = c - 'a' + 26;
		else if (c >= '0' && c <= '9')
			v = c - '0' + 52;
		else if (c == '+' || c == '-')
			v = 62;
		else if (c == '/' || c == '_')
			v = 63;
		else
			goto bad;
		acc = (acc << 6) | v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			buf[len++] = (acc >> bits) & 0xff;
		}
	}
	/* 6 leftover bits cannot encode anything. */
	if (bits >= 6)
		goto bad;
	buf[len] = '\0';
	*out = (char *)buf;
	*outlen = len;
	return 0;
bad:
	free(buf);
	return -EINVAL;
}

/* --- libyaml document helpers -------------------------------------- */

static const char *scalar(yaml_node_t *n)
{
	if (!n || n->type != YAML_SCALAR_NODE)
		return NULL;
	return (const char *)n->data.scalar.value;
}

static yaml_node_t *map_get(yaml_document_t *doc, yaml_node_t *map,
			    const char *key)
{
	if (!map || map->type != YAML_MAPPING_NODE)
		return NULL;
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
	     p < map->data.mapping.pairs.top; p++) {
		const char *k = scalar(yaml_document_get_node(doc, p->key));

		if (k && !strcmp(k, key))
			return yaml_document_get_node(doc, p->value);
	}
	return NULL;
}

static const char *map_str(yaml_document_t *doc, yaml_node_t *map,
			   const char *key)
{
	const char *s = scalar(map_get(doc, map, key));

	return s && *s ? s : NULL;
}

/* The `inner` map (e.g. "cluster") of the entry named `name` in a list. */
static yaml_node_t *named_entry(yaml_document_t *doc, yaml_node_t *root,
				const char *list, const char *inner,
				const char *name)
{
	yaml_node_t *seq = map_get(doc, root, list);

	if (!seq || seq->type != YAML_SEQUENCE_NODE)
		return NULL;
	for (yaml_node_item_t *it = seq->data.sequence.items.start;
	     it < seq->data.sequence.items.top; it++) {
		yaml_node_t *e = yaml_document_get_node(doc, *it);
		const char *n = map_str(doc, e, "name");

		if (n && !strcmp(n, name)) {
			yaml_node_t *m = map_get(doc, e, inner);

			return m && m->type == YAML_MAPPING_NODE ? m : NULL;
		}
	}
	return NULL;
}

static bool yaml_true(const char *s)
{
	return s && (!strcasecmp(s, "true") || !strcasecmp(s, "yes") ||
		     !strcasecmp(s, "on") || !strcmp(s, "1"));
}

/* Copies path into dst, prefixing dir when path is relative. */
static int resolve_path(char *dst, size_t dstlen, const char *dir,
			const char *path)
{
	int n;

	if (path[0] == '/' || !dir[0])
		n = snprintf(dst, dstlen, "%s", path);
	else
		n = snprintf(dst, dstlen, "%s/%s", dir, path);
	return n < 0 || (size_t)n >= dstlen ? -ENAMETOOLONG : 0;
}

static int copy_str(char *dst, size_t dstlen, const char *src)
{
	size_t n = strlen(src);

	if (n >= dstlen)
		return -ENAMETOOLONG;
	memcpy(dst, src, n + 1);
	return 0;
}

/* Reads a token file into conn->token (trailing whitespace stripped). */
static int load_token_file(struct kpx_k8s_conn *conn, const char *path)
{
	char *buf;
	size_t len;
	int err = read_file(path, &buf, &len);

	if (err)
		return err;
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r' ||
		       buf[len - 1] == ' ' || buf[len - 1] == '\t'))
		buf[--len] = '\0';
	if (len >= sizeof(conn->token)) {
		free(buf);
		return -E2BIG;
	}
	memcpy(conn->token, buf, len + 1);
	free(buf);
	return 0;
}

/* A "-data" field: base64 PEM in the kubeconfig. */
static int take_data(yaml_document_t *doc, yaml_node_t *map, const char *key,
		     char **dst, char *err, size_t errlen)
{
	const char *s = map_str(doc, map, key);
	size_t len;

	if (!s)
		return 0;
	if (b64_decode(s, dst, &len) || !len) {
		seterr(err, errlen, "%s: invalid base64", key);
		return -EINVAL;
	}
	return 0;
}

static int take_path(yaml_document_t *doc, yaml_node_t *map, const char *key,
		     const char *dir, char *dst, size_t dstlen, char *err,
		     size_t errlen)
{
	const char *s = map_str(doc, map, key);

	if (!s)
		return 0;
	if (resolve_path(dst, dstlen, dir, s)) {
		seterr(err, errlen, "%s: path too long", key);
		return -ENAMETOOLONG;
	}
	return 0;
}

static int parse_doc(yaml_document_t *doc, const char *dir,
		     struct kpx_k8s_conn *conn, char *err, size_t errlen)
{
	yaml_node_t *root = yaml_document_get_root_node(doc);
	yaml_node_t *ctx, *cluster, *user = NULL;
	const char *cur, *cname, *uname, *s;
	int ret;

	if (!root || root->type != YAML_MAPPING_NODE) {
		seterr(err, errlen, "not a kubeconfig (top level is not a map)");
		return -EINVAL;
	}
	cur = map_str(doc, root, "current-context");
	if (!cur) {
		seterr(err, errlen, "no current-context set");
		return -EINVAL;
	}
	ctx = named_entry(doc, root, "contexts", "context", cur);
	if (!ctx) {
		seterr(err, errlen, "context \"%s\" not found", cur);
		return -ENOENT;
	}
	cname = map_str(doc, ctx, "cluster");
	if (!cname) {
		seterr(err, errlen, "context \"%s\" names no cluster", cur);
		return -EINVAL;
	}
	cluster = named_entry(doc, root, "clusters", "cluster", cname);
	if (!cluster) {
		seterr(err, errlen, "cluster \"%s\" (context \"%s\") not found",
		       cname, cur);
		return -ENOENT;
	}
	uname = map_str(doc, ctx, "user");
	if (uname) {
		user = named_entry(doc, root, "users", "user", uname);
		if (!user) {
			seterr(err, errlen,
			       "user \"%s\" (context \"%s\") not found", uname,
			       cur);
			return -ENOENT;
		}
	}

	s = map_str(doc, cluster, "server");
	if (!s) {
		seterr(err, errlen, "cluster \"%s\" has no server", cname);
		return -EINVAL;
	}
	if (copy_str(conn->server, sizeof(conn->server), s)) {
		seterr(err, errlen, "cluster \"%s\": server too long", cname);
		return -ENAMETOOLONG;
	}
	conn->insecure = yaml_true(
		scalar(map_get(doc, cluster, "insecure-skip-tls-verify")));
	ret = take_path(doc, cluster, "certificate-authority", dir,
			conn->ca_file, sizeof(conn->ca_file), err, errlen);
	if (!ret)
		ret = take_data(doc, cluster, "certificate-authority-data",
				&conn->ca_data, err, errlen);
	if (ret || !user)
		return ret;

	ret = take_path(doc, user, "client-certificate", dir, conn->cert_file,
			sizeof(conn->cert_file), err, errlen);
	if (!ret)
		ret = take_data(doc, user, "client-certificate-data",
				&conn->cert_data, err, errlen);
	if (!ret)
		ret = take_path(doc, user, "client-key", dir, conn->key_file,
				sizeof(conn->key_file), err, errlen);
	if (!ret)
		ret = take_data(doc, user, "client-key-data", &conn->key_data,
				err, errlen);
	if (!ret)
		ret = take_path(doc, user, "tokenFile", dir, conn->token_file,
				sizeof(conn->token_file), err, errlen);
	if (ret)
		return ret;
	s = map_str(doc, user, "token");
	if (s) {
		if (copy_str(conn->token, sizeof(conn->token), s)) {
			seterr(err, errlen, "user \"%s\": token too long",
			       uname);
			return -E2BIG;
		}
	} else if (conn->token_file[0]) {
		ret = load_token_file(conn, conn->token_file);
		if (ret) {
			seterr(err, errlen, "tokenFile %s: %s",
			       conn->token_file, strerror(-ret));
			return ret;
		}
	}
	if ((conn->cert_file[0] || conn->cert_data) !=
	    (conn->key_file[0] || conn->key_data)) {
		seterr(err, errlen,
		       "user \"%s\": client certificate and key must be set together",
		       uname);
		return -EINVAL;
	}
	return 0;
}

int kpx_kubeconfig_load(const char *path, struct kpx_k8s_conn *conn, char *err,
			size_t errlen)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	char dir[4096], *buf = NULL, *slash;
	size_t len;
	int ret;

	memset(conn, 0, sizeof(*conn));
	if (copy_str(dir, sizeof(dir), path)) {
		seterr(err, errlen, "%s: path too long", path);
		return -ENAMETOOLONG;
	}
	slash = strrchr(dir, '/');
	if (slash)
		*(slash == dir ? slash + 1 : slash) = '\0';
	else
		dir[0] = '\0';

	ret = read_file(path, &buf, &len);
	if (ret) {
		seterr(err, errlen, "%s: %s", path, strerror(-ret));
		return ret;
	}
	if (!yaml_parser_initialize(&parser)) {
		free(buf);
		seterr(err, errlen, "%s: out of memory", path);
		return -ENOMEM;
	}
	yaml_parser_set_input_string(&parser, (unsigned char *)buf, len);
	if (!yaml_parser_load(&parser, &doc)) {
		seterr(err, errlen, "%s: line %zu: %s", path,
		       parser.problem_mark.line + 1,
		       parser.problem ? parser.problem : "YAML error");
		yaml_parser_delete(&parser);
		free(buf);
		return -EINVAL;
	}
	{
		char inner[512] = "";

		ret = parse_doc(&doc, dir, conn, inner, sizeof(inner));
		if (ret)
			seterr(err, errlen, "%s: %s", path, inner);
	}
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	free(buf);
	if (ret)
		kpx_k8s_conn_clear(conn);
	return ret;
}

int kpx_k8s_in_cluster(struct kpx_k8s_conn *conn, char *err, size_t errlen)
{
	const char *host = getenv("KUBERNETES_SERVICE_HOST");
	const char *port = getenv("KUBERNETES_SERVICE_PORT");
	const char *dir = getenv("KPX_SA_DIR");
	char path[4096];
	struct stat st;
	int ret, n;

	memset(conn, 0, sizeof(*conn));
	if (!dir || !*dir)
		dir = "/var/run/secrets/kubernetes.io/serviceaccount";
	if (!host || !*host || !port || !*port) {
		seterr(err, errlen,
		       "in-cluster config: KUBERNETES_SERVICE_HOST/PORT not set");
		return -ENOENT;
	}
	/* An IPv6 literal needs brackets in a URL. */
	if (strchr(host, ':') && host[0] != '[')
		n = snprintf(conn->server, sizeof(conn->server),
			     "https://[%s]:%s", host, port);
	else
		n = snprintf(conn->server, sizeof(conn->server),
			     "https://%s:%s", host, port);
	if (n < 0 || (size_t)n >= sizeof(conn->server)) {
		seterr(err, errlen, "in-cluster config: server too long");
		return -ENAMETOOLONG;
	}
	snprintf(conn->token_file, sizeof(conn->token_file), "%s/token", dir);
	ret = load_token_file(conn, conn->token_file);
	if (ret) {
		seterr(err, errlen, "in-cluster config: %s: %s",
		       conn->token_file, strerror(-ret));
		kpx_k8s_conn_clear(conn);
		return ret;
	}
	snprintf(path, sizeof(path), "%s/ca.crt", dir);
	if (!stat(path, &st))
		copy_str(conn->ca_file, sizeof(conn->ca_file), path);
	return 0;
}

void kpx_k8s_conn_clear(struct kpx_k8s_conn *conn)
{
	if (!conn)
		return;
	free(conn->ca_data);
	free(conn->cert_data);
	free(conn->key_data);
	/* Do not leave the bearer token lying around in freed memory. */
	explicit_bzero(conn, sizeof(*conn));
}
