// SPDX-License-Identifier: Apache-2.0
/*
 * API server connection config: a kubeconfig's current context (parsed
 * with libyaml's document loader), or the in-cluster service account.
 * Relative paths in a kubeconfig are relative to the kubeconfig's own
 * directory, as kubectl resolves them. Also what client-go does around
 * it: exec credential plugins (run here), and the choice of a proxy from
 * the environment. A user field kpx cannot honour is an error at load,
 * never a request sent without the credential it names.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <linux/close_range.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <yaml.h>

#include "common/log.h"
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

static int parse_exec(yaml_document_t *doc, yaml_node_t *exec,
		      yaml_node_t *cluster, const char *dir, const char *uname,
		      struct kpx_k8s_conn *conn, char *err, size_t errlen);

/* users[].user fields client-go knows and kpx does not implement. */
static int refuse_unsupported(yaml_document_t *doc, yaml_node_t *user,
			      const char *uname, char *err, size_t errlen)
{
	static const char *const imp[] = { "as", "as-uid", "as-groups",
					   "as-user-extra" };
	yaml_node_t *ap = map_get(doc, user, "auth-provider");

	if (ap) {
		const char *n = map_str(doc, ap, "name");

		seterr(err, errlen,
		       "user \"%s\": auth-provider%s%s%s is not supported by kpx (client-go removed the in-tree providers); use an exec credential plugin",
		       uname, n ? " (" : "", n ? n : "", n ? ")" : "");
		return -ENOTSUP;
	}
	for (size_t i = 0; i < sizeof(imp) / sizeof(imp[0]); i++) {
		yaml_node_t *n = map_get(doc, user, imp[i]);

		if (n && !(n->type == YAML_SCALAR_NODE && !*scalar(n))) {
			seterr(err, errlen,
			       "user \"%s\": %s (impersonation) is not supported by kpx",
			       uname, imp[i]);
			return -ENOTSUP;
		}
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
	s = map_str(doc, cluster, "tls-server-name");
	if (s && copy_str(conn->tls_server_name, sizeof(conn->tls_server_name), s)) {
		seterr(err, errlen, "cluster \"%s\": tls-server-name too long", cname);
		return -ENAMETOOLONG;
	}
	s = map_str(doc, cluster, "proxy-url");
	if (s) {
		const char *sep = strstr(s, "://");
		size_t sl = sep ? (size_t)(sep - s) : 0;

		/* What client-go's proxy-url and libcurl both speak. */
		if (!sep || !((sl == 4 && !strncasecmp(s, "http", 4)) ||
			      (sl == 5 && !strncasecmp(s, "https", 5)) ||
			      (sl == 6 && !strncasecmp(s, "socks5", 6)) ||
			      (sl == 7 && !strncasecmp(s, "socks5h", 7)))) {
			seterr(err, errlen,
			       "cluster \"%s\": proxy-url \"%s\": scheme must be http, https, socks5 or socks5h",
			       cname, s);
			return -EINVAL;
		}
		if (copy_str(conn->proxy_url, sizeof(conn->proxy_url), s)) {
			seterr(err, errlen, "cluster \"%s\": proxy-url too long", cname);
			return -ENAMETOOLONG;
		}
	}
	ret = take_path(doc, cluster, "certificate-authority", dir,
			conn->ca_file, sizeof(conn->ca_file), err, errlen);
	if (!ret)
		ret = take_data(doc, cluster, "certificate-authority-data",
				&conn->ca_data, err, errlen);
	if (ret || !user)
		return ret;

	ret = refuse_unsupported(doc, user, uname, err, errlen);
	if (ret)
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
	{
		const char *u = map_str(doc, user, "username");
		const char *pw = map_str(doc, user, "password");
		yaml_node_t *exec = map_get(doc, user, "exec");
		bool token = conn->token[0] || conn->token_file[0];

		if (u || pw) {
			/* client-go: basic auth and a bearer token exclude
			 * each other. */
			if (token || exec) {
				seterr(err, errlen,
				       "user \"%s\": username/password and %s cannot be used together",
				       uname, token ? "a token" : "exec");
				return -EINVAL;
			}
			if (copy_str(conn->username, sizeof(conn->username), u ? u : "") ||
			    copy_str(conn->password, sizeof(conn->password), pw ? pw : "")) {
				seterr(err, errlen,
				       "user \"%s\": username or password too long", uname);
				return -E2BIG;
			}
		}
		if (exec && !(exec->type == YAML_SCALAR_NODE && !*scalar(exec))) {
			if (token) {
				/* client-go would send the static token and
				 * never run the plugin: say so instead. */
				seterr(err, errlen,
				       "user \"%s\": exec and token/tokenFile cannot be used together",
				       uname);
				return -EINVAL;
			}
			return parse_exec(doc, exec, cluster, dir, uname, conn,
					  err, errlen);
		}
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
	free(conn->exec);
	/* Do not leave the bearer token lying around in freed memory. */
	explicit_bzero(conn, sizeof(*conn));
}

/* ---- exec credential plugins ------------------------------------------ */

#define EXEC_API_V1 "client.authentication.k8s.io/v1"
#define EXEC_API_V1BETA1 "client.authentication.k8s.io/v1beta1"
#define EXEC_STDOUT_MAX (1u << 20)
#define EXEC_STDERR_LINE 1024
#define EXEC_STDERR_MAX (64u << 10) /* logged; the rest is dropped */
#define EXEC_ENV_NAME "KUBERNETES_EXEC_INFO"

static const char *jstr(struct json_object *o, const char *k)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, k, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

int kpx_k8s_parse_rfc3339(const char *s, int64_t *out)
{
	struct tm tm;
	const char *p;
	long off = 0;

	memset(&tm, 0, sizeof(tm));
	p = s ? strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
	if (!p)
		return -EINVAL;
	if (*p == '.') {
		if (!isdigit((unsigned char)p[1]))
			return -EINVAL;
		for (p++; isdigit((unsigned char)*p); p++)
			;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if ((*p == '+' || *p == '-') && isdigit((unsigned char)p[1]) &&
		   isdigit((unsigned char)p[2]) && p[3] == ':' &&
		   isdigit((unsigned char)p[4]) && isdigit((unsigned char)p[5])) {
		off = ((p[1] - '0') * 10 + (p[2] - '0')) * 3600 +
		      ((p[4] - '0') * 10 + (p[5] - '0')) * 60;
		if (*p == '-')
			off = -off;
		p += 6;
	} else {
		return -EINVAL;
	}
	if (*p)
		return -EINVAL;
	*out = (int64_t)timegm(&tm) - off;
	return 0;
}

void kpx_k8s_exec_cred_clear(struct kpx_k8s_exec_cred *c)
{
	if (!c)
		return;
	if (c->key_pem)
		explicit_bzero(c->key_pem, strlen(c->key_pem));
	free(c->cert_pem);
	free(c->key_pem);
	explicit_bzero(c, sizeof(*c));
}

static char *b64_encode(const unsigned char *in, size_t n)
{
	static const char tbl[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
	size_t i;

	if (!out)
		return NULL;
	for (i = 0; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 |
			     in[i + 2];

		*o++ = tbl[v >> 18];
		*o++ = tbl[(v >> 12) & 63];
		*o++ = tbl[(v >> 6) & 63];
		*o++ = tbl[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)in[i] << 16 |
			     (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);

		*o++ = tbl[v >> 18];
		*o++ = tbl[(v >> 12) & 63];
		*o++ = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
		*o++ = '=';
	}
	*o = '\0';
	return out;
}

/* A YAML node as JSON (the exec extension of provideClusterInfo). Plain
 * scalars that read as YAML 1.1 booleans, null or numbers are typed. */
static struct json_object *yaml_to_json(yaml_document_t *doc, yaml_node_t *n,
					int depth)
{
	struct json_object *o;

	if (!n || depth > 32)
		return NULL;
	switch (n->type) {
	case YAML_MAPPING_NODE:
		o = json_object_new_object();
		for (yaml_node_pair_t *p = n->data.mapping.pairs.start;
		     p < n->data.mapping.pairs.top; p++) {
			const char *k = scalar(yaml_document_get_node(doc, p->key));

			if (k)
				json_object_object_add(
					o, k,
					yaml_to_json(doc,
						     yaml_document_get_node(doc, p->value),
						     depth + 1));
		}
		return o;
	case YAML_SEQUENCE_NODE:
		o = json_object_new_array();
		for (yaml_node_item_t *it = n->data.sequence.items.start;
		     it < n->data.sequence.items.top; it++)
			json_object_array_add(
				o, yaml_to_json(doc, yaml_document_get_node(doc, *it),
						depth + 1));
		return o;
	case YAML_SCALAR_NODE: {
		const char *s = (const char *)n->data.scalar.value;
		char *end;
		long long ll;

		if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
			return json_object_new_string(s);
		if (!strcmp(s, "true"))
			return json_object_new_boolean(1);
		if (!strcmp(s, "false"))
			return json_object_new_boolean(0);
		if (!strcmp(s, "null") || !strcmp(s, "~") || !*s)
			return NULL;
		errno = 0;
		ll = strtoll(s, &end, 10);
		if (!*end && !errno)
			return json_object_new_int64(ll);
		return json_object_new_string(s);
	}
	default:
		return NULL;
	}
}

/* ExecCredential spec.cluster (provideClusterInfo), from the cluster entry
 * as client-go fills it: CA data from the file when only a file is named. */
static struct json_object *exec_cluster_info(yaml_document_t *doc,
					     yaml_node_t *cluster,
					     const struct kpx_k8s_conn *conn,
					     char *err, size_t errlen)
{
	struct json_object *c = json_object_new_object();
	yaml_node_t *exts = map_get(doc, cluster, "extensions");
	char *ca = NULL, *b64;
	size_t ca_len = 0;

	json_object_object_add(c, "server", json_object_new_string(conn->server));
	if (conn->tls_server_name[0])
		json_object_object_add(c, "tls-server-name",
				       json_object_new_string(conn->tls_server_name));
	if (conn->insecure)
		json_object_object_add(c, "insecure-skip-tls-verify",
				       json_object_new_boolean(1));
	if (conn->proxy_url[0])
		json_object_object_add(c, "proxy-url",
				       json_object_new_string(conn->proxy_url));
	if (conn->ca_data) {
		ca = strdup(conn->ca_data);
		ca_len = ca ? strlen(ca) : 0;
	} else if (conn->ca_file[0]) {
		int ret = read_file(conn->ca_file, &ca, &ca_len);

		if (ret) {
			seterr(err, errlen, "certificate-authority %s: %s",
			       conn->ca_file, strerror(-ret));
			json_object_put(c);
			return NULL;
		}
	}
	if (ca) {
		b64 = b64_encode((unsigned char *)ca, ca_len);
		free(ca);
		if (b64)
			json_object_object_add(c, "certificate-authority-data",
					       json_object_new_string(b64));
		free(b64);
	}
	if (exts && exts->type == YAML_SEQUENCE_NODE) {
		for (yaml_node_item_t *it = exts->data.sequence.items.start;
		     it < exts->data.sequence.items.top; it++) {
			yaml_node_t *e = yaml_document_get_node(doc, *it);
			const char *n = map_str(doc, e, "name");

			if (n && !strcmp(n, "client.authentication.k8s.io/exec"))
				json_object_object_add(
					c, "config",
					yaml_to_json(doc, map_get(doc, e, "extension"),
						     0));
		}
	}
	return c;
}

/* users[].user.exec -> conn->exec (JSON), everything checked here so that
 * a bad plugin config is an error at start, not at the first request. */
static int parse_exec(yaml_document_t *doc, yaml_node_t *exec,
		      yaml_node_t *cluster, const char *dir, const char *uname,
		      struct kpx_k8s_conn *conn, char *err, size_t errlen)
{
	struct json_object *o = NULL, *args, *env;
	const char *cmd, *api, *mode, *s;
	yaml_node_t *n;
	char path[4096];
	int ret = -EINVAL;

	if (exec->type != YAML_MAPPING_NODE) {
		seterr(err, errlen, "user \"%s\": exec is not a map", uname);
		return -EINVAL;
	}
	cmd = map_str(doc, exec, "command");
	api = map_str(doc, exec, "apiVersion");
	if (!cmd) {
		seterr(err, errlen, "user \"%s\": exec: command is required", uname);
		return -EINVAL;
	}
	if (!api || (strcmp(api, EXEC_API_V1) && strcmp(api, EXEC_API_V1BETA1))) {
		seterr(err, errlen,
		       "user \"%s\": exec: apiVersion \"%s\" is not supported (%s or %s)",
		       uname, api ? api : "", EXEC_API_V1, EXEC_API_V1BETA1);
		return -EINVAL;
	}
	mode = map_str(doc, exec, "interactiveMode");
	if (!mode && !strcmp(api, EXEC_API_V1)) {
		/* client-go's rule: v1 has no default. */
		seterr(err, errlen,
		       "user \"%s\": exec: interactiveMode must be set for %s",
		       uname, EXEC_API_V1);
		return -EINVAL;
	}
	if (!mode)
		mode = "IfAvailable";
	if (!strcmp(mode, "Always")) {
		seterr(err, errlen,
		       "user \"%s\": exec plugin %s needs a terminal (interactiveMode: Always); kpx runs without one",
		       uname, cmd);
		return -EINVAL;
	}
	if (strcmp(mode, "Never") && strcmp(mode, "IfAvailable")) {
		seterr(err, errlen,
		       "user \"%s\": exec: invalid interactiveMode \"%s\" (Never, IfAvailable or Always)",
		       uname, mode);
		return -EINVAL;
	}
	/* client-go resolves a command with a '/' relative to the kubeconfig;
	 * a bare name is looked up in PATH when run. */
	if (strchr(cmd, '/')) {
		if (resolve_path(path, sizeof(path), dir, cmd)) {
			seterr(err, errlen, "user \"%s\": exec: command path too long",
			       uname);
			return -ENAMETOOLONG;
		}
		cmd = path;
	}
	o = json_object_new_object();
	json_object_object_add(o, "command", json_object_new_string(cmd));
	json_object_object_add(o, "apiVersion", json_object_new_string(api));
	json_object_object_add(o, "interactiveMode", json_object_new_string(mode));
	s = map_str(doc, exec, "installHint");
	if (s)
		json_object_object_add(o, "installHint", json_object_new_string(s));
	args = json_object_new_array();
	json_object_object_add(o, "args", args);
	n = map_get(doc, exec, "args");
	if (n && n->type == YAML_SEQUENCE_NODE) {
		for (yaml_node_item_t *it = n->data.sequence.items.start;
		     it < n->data.sequence.items.top; it++) {
			const char *a = scalar(yaml_document_get_node(doc, *it));

			if (!a) {
				seterr(err, errlen,
				       "user \"%s\": exec: args must be strings", uname);
				goto out;
			}
			json_object_array_add(args, json_object_new_string(a));
		}
	} else if (n && !(n->type == YAML_SCALAR_NODE && !*scalar(n))) {
		seterr(err, errlen, "user \"%s\": exec: args is not a list", uname);
		goto out;
	}
	env = json_object_new_array();
	json_object_object_add(o, "env", env);
	n = map_get(doc, exec, "env");
	if (n && n->type == YAML_SEQUENCE_NODE) {
		for (yaml_node_item_t *it = n->data.sequence.items.start;
		     it < n->data.sequence.items.top; it++) {
			yaml_node_t *e = yaml_document_get_node(doc, *it);
			const char *name = map_str(doc, e, "name");
			const char *val = scalar(map_get(doc, e, "value"));
			struct json_object *x;

			if (!name || strchr(name, '=')) {
				seterr(err, errlen,
				       "user \"%s\": exec: env entries need a name (without '=')",
				       uname);
				goto out;
			}
			x = json_object_new_object();
			json_object_object_add(x, "name", json_object_new_string(name));
			json_object_object_add(x, "value",
					       json_object_new_string(val ? val : ""));
			json_object_array_add(env, x);
		}
	} else if (n && !(n->type == YAML_SCALAR_NODE && !*scalar(n))) {
		seterr(err, errlen, "user \"%s\": exec: env is not a list", uname);
		goto out;
	}
	if (yaml_true(scalar(map_get(doc, exec, "provideClusterInfo")))) {
		struct json_object *c = exec_cluster_info(doc, cluster, conn,
							   err, errlen);

		if (!c)
			goto out;
		json_object_object_add(o, "provideClusterInfo",
				       json_object_new_boolean(1));
		json_object_object_add(o, "cluster", c);
	}
	conn->exec = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	ret = conn->exec ? 0 : -ENOMEM;
out:
	json_object_put(o);
	return ret;
}

/* Reads what fd has; 0 at EOF, 1 when more may come, <0 on error. */
static int drain(int fd, char *buf, size_t *len, size_t cap)
{
	ssize_t n;

	if (*len >= cap) {
		char sink[4096];

		n = read(fd, sink, sizeof(sink));
	} else {
		n = read(fd, buf + *len, cap - *len);
		if (n > 0)
			*len += (size_t)n;
	}
	if (n < 0)
		return errno == EINTR || errno == EAGAIN ? 1 : -errno;
	return n > 0;
}

/* Logs complete stderr lines of the plugin; keeps a partial last line. */
static void log_stderr(const char *cmd, char *buf, size_t *len, bool flush,
		       size_t *logged)
{
	char *p = buf, *nl;

	while ((nl = memchr(p, '\n', *len - (size_t)(p - buf))) ||
	       (flush && p < buf + *len) || (*len == EXEC_STDERR_LINE && p == buf)) {
		size_t n = nl ? (size_t)(nl - p) : *len - (size_t)(p - buf);

		if (*logged < EXEC_STDERR_MAX)
			kpx_warn("k8s exec plugin %s: %.*s", cmd, (int)n, p);
		*logged += n;
		p += n + (nl ? 1 : 0);
		if (!nl)
			break;
	}
	*len -= (size_t)(p - buf);
	memmove(buf, p, *len);
}

static int exec_parse_output(const char *api, const char *cmd, const char *out,
			     struct kpx_k8s_exec_cred *cred, char *err,
			     size_t errlen)
{
	struct json_object *o = json_tokener_parse(out), *st;
	const char *kind, *v, *tok, *cert, *key, *exp;
	int ret = -EINVAL;

	if (!o || !json_object_is_type(o, json_type_object)) {
		seterr(err, errlen, "exec plugin %s: output is not a JSON object",
		       cmd);
		goto out;
	}
	kind = jstr(o, "kind");
	v = jstr(o, "apiVersion");
	if (!kind || strcmp(kind, "ExecCredential")) {
		seterr(err, errlen, "exec plugin %s: output is not an ExecCredential",
		       cmd);
		goto out;
	}
	if (!v || strcmp(v, api)) {
		seterr(err, errlen,
		       "exec plugin %s is configured to use API version %s, plugin returned version %s",
		       cmd, api, v ? v : "(none)");
		goto out;
	}
	if (!json_object_object_get_ex(o, "status", &st) ||
	    !json_object_is_type(st, json_type_object)) {
		seterr(err, errlen, "exec plugin %s: no status in the ExecCredential",
		       cmd);
		goto out;
	}
	tok = jstr(st, "token");
	cert = jstr(st, "clientCertificateData");
	key = jstr(st, "clientKeyData");
	exp = jstr(st, "expirationTimestamp");
	if ((cert && *cert) != (key && *key)) {
		seterr(err, errlen,
		       "exec plugin %s: clientCertificateData and clientKeyData must be returned together",
		       cmd);
		goto out;
	}
	if (!(tok && *tok) && !(cert && *cert)) {
		seterr(err, errlen,
		       "exec plugin %s didn't return a token or cert/key pair", cmd);
		goto out;
	}
	if (tok && strlen(tok) >= sizeof(cred->token)) {
		seterr(err, errlen, "exec plugin %s: token too long", cmd);
		goto out;
	}
	if (exp && *exp && kpx_k8s_parse_rfc3339(exp, &cred->expiry)) {
		seterr(err, errlen,
		       "exec plugin %s: expirationTimestamp \"%s\" is not RFC 3339",
		       cmd, exp);
		goto out;
	}
	if (tok)
		snprintf(cred->token, sizeof(cred->token), "%s", tok);
	if (cert && *cert) {
		cred->cert_pem = strdup(cert);
		cred->key_pem = strdup(key);
		if (!cred->cert_pem || !cred->key_pem) {
			seterr(err, errlen, "out of memory");
			ret = -ENOMEM;
			goto out;
		}
	}
	ret = 0;
out:
	if (o) {
		/* The token is in the parsed object too. */
		json_object_put(o);
	}
	if (ret)
		kpx_k8s_exec_cred_clear(cred);
	return ret;
}

extern char **environ;

/* The child's environment: ours, minus names the plugin config sets, plus
 * those, plus KUBERNETES_EXEC_INFO (os/exec keeps the last of duplicates). */
static char **exec_envp(struct json_object *cfg, const char *info)
{
	struct json_object *env = NULL;
	size_t n = 0, k = 0, ne;
	char **envp;

	json_object_object_get_ex(cfg, "env", &env);
	ne = env ? json_object_array_length(env) : 0;
	while (environ && environ[n])
		n++;
	envp = calloc(n + ne + 2, sizeof(*envp));
	if (!envp)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		const char *eq = strchr(environ[i], '=');
		size_t nl = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
		bool over = nl == strlen(EXEC_ENV_NAME) &&
			    !strncmp(environ[i], EXEC_ENV_NAME, nl);

		for (size_t j = 0; j < ne && !over; j++) {
			const char *name = jstr(json_object_array_get_idx(env, j),
						"name");

			over = name && strlen(name) == nl &&
			       !strncmp(environ[i], name, nl);
		}
		if (!over)
			envp[k++] = strdup(environ[i]);
	}
	for (size_t j = 0; j < ne; j++) {
		struct json_object *e = json_object_array_get_idx(env, j);
		char *s;

		if (asprintf(&s, "%s=%s", jstr(e, "name"), jstr(e, "value")) < 0)
			s = NULL;
		envp[k++] = s;
	}
	if (asprintf(&envp[k], "%s=%s", EXEC_ENV_NAME, info) < 0)
		envp[k] = NULL;
	k++;
	for (size_t i = 0; i < k; i++) {
		if (!envp[i]) {
			for (size_t j = 0; j < k; j++)
				free(envp[j]);
			free(envp);
			return NULL;
		}
	}
	return envp;
}

static void free_strv(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

int kpx_k8s_exec_run(const char *exec_json, uint64_t timeout_ms,
		     struct kpx_k8s_exec_cred *out, char *err, size_t errlen)
{
	struct json_object *cfg = json_tokener_parse(exec_json), *args = NULL,
			   *info = NULL, *spec, *cluster;
	char **argv = NULL, **envp = NULL, *obuf = NULL;
	char ebuf[EXEC_STDERR_LINE];
	size_t olen = 0, elen = 0, logged = 0, na;
	int outp[2] = { -1, -1 }, errp[2] = { -1, -1 }, stp[2] = { -1, -1 };
	const char *cmd, *api, *hint;
	struct timespec t0, t;
	pid_t pid = -1;
	long maxfd;
	int ret = -EINVAL, status = 0, child_errno = 0;
	bool out_open = true, err_open = true, reaped = false;

	memset(out, 0, sizeof(*out));
	if (!cfg) {
		seterr(err, errlen, "exec plugin: invalid configuration");
		return -EINVAL;
	}
	cmd = jstr(cfg, "command");
	api = jstr(cfg, "apiVersion");
	hint = jstr(cfg, "installHint");
	json_object_object_get_ex(cfg, "args", &args);
	if (!cmd || !api) {
		seterr(err, errlen, "exec plugin: invalid configuration");
		goto out;
	}
	info = json_object_new_object();
	spec = json_object_new_object();
	json_object_object_add(info, "kind", json_object_new_string("ExecCredential"));
	json_object_object_add(info, "apiVersion", json_object_new_string(api));
	/* kpx never has a terminal: the plugin must not prompt. */
	json_object_object_add(spec, "interactive", json_object_new_boolean(0));
	if (json_object_object_get_ex(cfg, "cluster", &cluster))
		json_object_object_add(spec, "cluster", json_object_get(cluster));
	json_object_object_add(info, "spec", spec);
	na = args ? json_object_array_length(args) : 0;
	argv = calloc(na + 2, sizeof(*argv));
	envp = exec_envp(cfg, json_object_to_json_string_ext(info, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	obuf = malloc(EXEC_STDOUT_MAX + 1);
	if (!argv || !envp || !obuf) {
		seterr(err, errlen, "out of memory");
		ret = -ENOMEM;
		goto out;
	}
	argv[0] = strdup(cmd);
	for (size_t i = 0; i < na; i++)
		argv[i + 1] = strdup(json_object_get_string(
			json_object_array_get_idx(args, i)));
	for (size_t i = 0; i <= na; i++) {
		if (!argv[i]) {
			seterr(err, errlen, "out of memory");
			ret = -ENOMEM;
			goto out;
		}
	}
	if (pipe2(outp, O_CLOEXEC) || pipe2(errp, O_CLOEXEC) ||
	    pipe2(stp, O_CLOEXEC)) {
		ret = -errno;
		seterr(err, errlen, "exec plugin %s: pipe: %s", cmd, strerror(errno));
		goto out;
	}
	maxfd = sysconf(_SC_OPEN_MAX);
	if (maxfd < 0 || maxfd > 65536)
		maxfd = 65536;
	pid = fork();
	if (pid < 0) {
		ret = -errno;
		seterr(err, errlen, "exec plugin %s: fork: %s", cmd, strerror(errno));
		goto out;
	}
	if (pid == 0) {
		/* Only async-signal-safe calls until execve: curl may have
		 * resolver threads. */
		int null = open("/dev/null", O_RDONLY | O_CLOEXEC), e;
		sigset_t none;

		/* The agent blocks SIGTERM/SIGINT (signalfd) and ignores
		 * SIGPIPE; both would be inherited. Its own process group,
		 * so that a timeout kills what the plugin started too. */
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		setpgid(0, 0);
		if (null < 0 || dup2(null, 0) < 0 || dup2(outp[1], 1) < 0 ||
		    dup2(errp[1], 2) < 0) {
			e = errno;
		} else {
			/* The agent's sockets, maps and pins stay ours;
			 * kernels before 5.11 have no close_range. */
			if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC))
				for (long fd = 3; fd < maxfd; fd++)
					fcntl((int)fd, F_SETFD, FD_CLOEXEC);
			execvpe(argv[0], argv, envp);
			e = errno;
		}
		if (write(stp[1], &e, sizeof(e)) < 0)
			_exit(127);
		_exit(127);
	}
	close(outp[1]);
	close(errp[1]);
	close(stp[1]);
	outp[1] = errp[1] = stp[1] = -1;
	if (read(stp[0], &child_errno, sizeof(child_errno)) == sizeof(child_errno)) {
		waitpid(pid, &status, 0);
		reaped = true;
		ret = -child_errno;
		seterr(err, errlen, "exec plugin: cannot run %s: %s%s%s", cmd,
		       strerror(child_errno), hint ? "; " : "", hint ? hint : "");
		goto out;
	}
	fcntl(outp[0], F_SETFL, O_NONBLOCK);
	fcntl(errp[0], F_SETFL, O_NONBLOCK);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		struct pollfd pf[2] = { { .fd = out_open ? outp[0] : -1, .events = POLLIN },
					{ .fd = err_open ? errp[0] : -1, .events = POLLIN } };
		uint64_t el;
		int r;

		clock_gettime(CLOCK_MONOTONIC, &t);
		el = (uint64_t)(((int64_t)t.tv_sec - t0.tv_sec) * 1000 +
				((int64_t)t.tv_nsec - t0.tv_nsec) / 1000000);
		if (!out_open && !err_open) {
			pid_t w = waitpid(pid, &status, WNOHANG);

			if (w == pid) {
				reaped = true;
				break;
			}
		}
		if (el >= timeout_ms) {
			seterr(err, errlen, "exec plugin %s did not finish within %llu ms",
			       cmd, (unsigned long long)timeout_ms);
			ret = -ETIMEDOUT;
			goto out;
		}
		if (!out_open && !err_open) {
			struct timespec nap = { 0, 10 * 1000 * 1000 };

			nanosleep(&nap, NULL);
			continue;
		}
		r = poll(pf, 2, (int)(timeout_ms - el));
		if (r < 0 && errno != EINTR) {
			ret = -errno;
			seterr(err, errlen, "exec plugin %s: poll: %s", cmd, strerror(errno));
			goto out;
		}
		if (out_open && pf[0].revents) {
			r = drain(outp[0], obuf, &olen, EXEC_STDOUT_MAX + 1);
			if (olen > EXEC_STDOUT_MAX) {
				seterr(err, errlen, "exec plugin %s: output larger than %u bytes",
				       cmd, EXEC_STDOUT_MAX);
				ret = -EFBIG;
				goto out;
			}
			out_open = r > 0;
		}
		if (err_open && pf[1].revents) {
			r = drain(errp[0], ebuf, &elen, sizeof(ebuf));
			err_open = r > 0;
			log_stderr(cmd, ebuf, &elen, !err_open, &logged);
		}
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		if (WIFEXITED(status))
			seterr(err, errlen, "exec plugin %s exited with status %d",
			       cmd, WEXITSTATUS(status));
		else
			seterr(err, errlen, "exec plugin %s was killed by signal %d",
			       cmd, WTERMSIG(status));
		ret = -EIO;
		goto out;
	}
	obuf[olen] = '\0';
	ret = exec_parse_output(api, cmd, obuf, out, err, errlen);
out:
	if (pid > 0 && !reaped) {
		kill(-pid, SIGKILL);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	for (int i = 0; i < 2; i++) {
		if (outp[i] >= 0)
			close(outp[i]);
		if (errp[i] >= 0)
			close(errp[i]);
		if (stp[i] >= 0)
			close(stp[i]);
	}
	if (obuf) {
		explicit_bzero(obuf, olen);
		free(obuf);
	}
	free_strv(argv);
	free_strv(envp);
	json_object_put(info);
	json_object_put(cfg);
	return ret;
}

/* ---- proxy selection (client-go: http.ProxyFromEnvironment) ----------- */

/* addr in the CIDR "a.b.c.d/n" or "x::/n"? -1: not a CIDR. */
static int cidr_match(const char *cidr, int fam, const unsigned char *addr)
{
	char a[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(cidr, '/');
	unsigned char net[16];
	char *end;
	long bits;
	int cfam, alen;

	if (!slash || (size_t)(slash - cidr) >= sizeof(a))
		return -1;
	memcpy(a, cidr, (size_t)(slash - cidr));
	a[slash - cidr] = '\0';
	cfam = strchr(a, ':') ? AF_INET6 : AF_INET;
	if (inet_pton(cfam, a, net) != 1)
		return -1;
	alen = cfam == AF_INET ? 4 : 16;
	errno = 0;
	bits = strtol(slash + 1, &end, 10);
	if (*end || errno || bits < 0 || bits > alen * 8 || !isdigit((unsigned char)slash[1]))
		return -1;
	if (fam != cfam)
		return 0;
	for (long i = 0; i < bits; i++) {
		unsigned char m = (unsigned char)(0x80 >> (i % 8));

		if ((net[i / 8] & m) != (addr[i / 8] & m))
			return 0;
	}
	return 1;
}

static bool no_proxy_match(const char *list, const char *host, const char *port)
{
	unsigned char addr[16];
	int fam = 0;
	char *dup, *save = NULL, *p;
	bool hit = false;

	if (inet_pton(AF_INET, host, addr) == 1)
		fam = AF_INET;
	else if (inet_pton(AF_INET6, host, addr) == 1)
		fam = AF_INET6;
	dup = strdup(list ? list : "");
	if (!dup)
		return false;
	for (p = strtok_r(dup, ",", &save); p && !hit; p = strtok_r(NULL, ",", &save)) {
		char *e = p + strlen(p), *phost = p, *pport = NULL;
		unsigned char pa[16];
		int c;

		while (isspace((unsigned char)*phost))
			phost++;
		while (e > phost && isspace((unsigned char)e[-1]))
			*--e = '\0';
		for (char *q = phost; *q; q++)
			*q = (char)tolower((unsigned char)*q);
		if (!*phost)
			continue;
		if (!strcmp(phost, "*")) {
			hit = true;
			break;
		}
		c = cidr_match(phost, fam, addr);
		if (c >= 0) {
			hit = fam && c == 1;
			continue;
		}
		/* host:port, [v6]:port, [v6] (as net.SplitHostPort) */
		if (phost[0] == '[') {
			char *rb = strchr(phost, ']');

			if (!rb)
				continue;
			*rb = '\0';
			if (rb[1] == ':')
				pport = rb + 2;
			else if (rb[1])
				continue;
			else /* "[::1]" alone: SplitHostPort fails, kept as is */
				*rb = ']';
			if (pport)
				phost++;
		} else {
			char *colon = strchr(phost, ':');

			if (colon && !strchr(colon + 1, ':')) {
				*colon = '\0';
				pport = colon + 1;
			}
		}
		if (!*phost)
			continue;
		if ((inet_pton(AF_INET, phost, pa) == 1 && fam == AF_INET) ||
		    (inet_pton(AF_INET6, phost, pa) == 1 && fam == AF_INET6)) {
			hit = !memcmp(pa, addr, fam == AF_INET ? 4 : 16) &&
			      (!pport || !strcmp(pport, port));
			continue;
		}
		if (strchr(phost, ':') || inet_pton(AF_INET, phost, pa) == 1)
			continue; /* an IP of the other family */
		{
			char dom[512];
			bool match_host = false;
			size_t hl = strlen(host), dl;

			if (!strncmp(phost, "*.", 2))
				phost++;
			if (phost[0] != '.') {
				match_host = true;
				snprintf(dom, sizeof(dom), ".%s", phost);
			} else {
				snprintf(dom, sizeof(dom), "%s", phost);
			}
			dl = strlen(dom);
			if (((hl >= dl && !strcmp(host + hl - dl, dom)) ||
			     (match_host && !strcmp(host, dom + 1))) &&
			    (!pport || !strcmp(pport, port)))
				hit = true;
		}
	}
	free(dup);
	return hit;
}

int kpx_k8s_proxy_for(const char *url, const char *https_proxy,
		      const char *http_proxy, const char *no_proxy, char *out,
		      size_t outlen)
{
	const char *sep = strstr(url, "://"), *h, *proxy;
	char host[256], port[16];
	unsigned char a[16];
	bool https;
	size_t n;
	int len;

	out[0] = '\0';
	if (!sep)
		return -EINVAL;
	https = (size_t)(sep - url) == 5 && !strncasecmp(url, "https", 5);
	if (!https && !((size_t)(sep - url) == 4 && !strncasecmp(url, "http", 4)))
		return -EINVAL;
	proxy = https ? https_proxy : http_proxy;
	if (!proxy || !*proxy)
		return 0;
	h = sep + 3;
	n = strcspn(h, "/?#");
	if (memchr(h, '@', n)) {
		const char *at = memrchr(h, '@', n);

		n -= (size_t)(at + 1 - h);
		h = at + 1;
	}
	snprintf(port, sizeof(port), "%s", https ? "443" : "80");
	if (h[0] == '[') {
		const char *rb = memchr(h, ']', n);

		if (!rb || (size_t)(rb - h - 1) >= sizeof(host))
			return -EINVAL;
		memcpy(host, h + 1, (size_t)(rb - h - 1));
		host[rb - h - 1] = '\0';
		if (rb + 1 < h + n && rb[1] == ':')
			snprintf(port, sizeof(port), "%.*s", (int)(h + n - rb - 2), rb + 2);
	} else {
		const char *colon = memchr(h, ':', n);
		size_t hl = colon ? (size_t)(colon - h) : n;

		if (hl >= sizeof(host))
			return -EINVAL;
		memcpy(host, h, hl);
		host[hl] = '\0';
		if (colon)
			snprintf(port, sizeof(port), "%.*s", (int)(h + n - colon - 1), colon + 1);
	}
	for (char *q = host; *q; q++)
		*q = (char)tolower((unsigned char)*q);
	if (!strcmp(host, "localhost"))
		return 0;
	if ((inet_pton(AF_INET, host, a) == 1 && a[0] == 127) ||
	    (inet_pton(AF_INET6, host, a) == 1 &&
	     (!memcmp(a, in6addr_loopback.s6_addr, 16) ||
	      /* ::ffff:127.x, which Go's IsLoopback counts too */
	      (!memcmp(a, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) && a[12] == 127))))
		return 0;
	if (no_proxy_match(no_proxy, host, port))
		return 0;
	len = snprintf(out, outlen, "%s%s", strstr(proxy, "://") ? "" : "http://",
		       proxy);
	if (len < 0 || (size_t)len >= outlen) {
		out[0] = '\0';
		return -ENAMETOOLONG;
	}
	return 0;
}
