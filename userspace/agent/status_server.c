// SPDX-License-Identifier: Apache-2.0
/*
 * The status socket: a unix stream socket in the agent loop. A client
 * (`kpx status`, `kpx services --verify`) writes one JSON line
 * {"cmd":"status"|"services"|"plan"|"expected"} and reads one JSON
 * document until the agent closes the connection.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <json-c/json.h>

#include "agent/agent.h"
#include "agent/serve.h"
#include "agent/serve_priv.h"
#include "common/log.h"
#include "common/loop.h"
#include "k8s/objects.h"
#include "model/store.h"
#include "plan/plan.h"

#define STATUS_MAX_CONNS 16
#define STATUS_REQ_MAX 4096
/* A client that sends nothing or stops reading is dropped after this. */
#define STATUS_CONN_TIMEOUT_MS 5000

struct status_conn {
	int fd;
	uint64_t deadline_ms;
	char in[STATUS_REQ_MAX];
	size_t in_len;
	char *out; /* owned */
	size_t out_len, out_off;
};

struct kpx_status_server {
	struct kpx_agent *agent;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int fd;
	struct kpx_timer *sweep;
	struct status_conn conns[STATUS_MAX_CONNS];
	/* The agent of a non-host netns on the default path also serves
	 * the host-wide default, when no live agent has it. */
	struct kpx_status_server *alias;
	/* The per-netns twin stays after a clean stop: a client in this
	 * netns must find "nobody answers", not fall back to the default
	 * that another netns's agent may serve. */
	bool keep_path;
	/* The socket this server bound: only that is ever unlinked. */
	dev_t dev;
	ino_t ino;
};

struct json_object *kpx_plan_expected_frontends(const struct kpx_plan *plan)
{
	struct json_object *arr = json_object_new_array();
	char buf[KPX_ADDR_STRLEN], svc[KPX_NS_MAX + KPX_NAME_MAX + 2];
	size_t i, j, k;

	if (!arr || !plan)
		return arr;
	for (i = 0; i < plan->n_svcports; i++) {
		const struct kpx_plan_svcport *sp = &plan->svcports[i];

		snprintf(svc, sizeof(svc), "%s/%s", sp->ns, sp->name);
		for (j = 0; j < sp->n_frontends; j++) {
			const struct kpx_plan_frontend *fe = &sp->frontends[j];
			const uint32_t *set = fe->external ? sp->external :
							     sp->internal;
			size_t n = fe->external ? sp->n_external :
						  sp->n_internal;
			struct json_object *o = json_object_new_object();
			struct json_object *bs = json_object_new_array();

			json_object_object_add(
				o, "address",
				json_object_new_string(
					kpx_addr_str(&fe->addr, buf)));
			json_object_object_add(o, "port",
					       json_object_new_int(fe->port));
			json_object_object_add(
				o, "protocol",
				json_object_new_string(kpx_proto_name(sp->proto)));
			json_object_object_add(
				o, "type",
				json_object_new_string(kpx_fe_kind_name(fe->kind)));
			json_object_object_add(o, "service",
					       json_object_new_string(svc));
			json_object_object_add(
				o, "port_name",
				json_object_new_string(sp->port_name));
			for (k = 0; k < n; k++) {
				const struct kpx_plan_endpoint *ep;
				struct json_object *b;

				if (set[k] >= sp->n_endpoints)
					continue;
				ep = &sp->endpoints[set[k]];
				b = json_object_new_object();
				json_object_object_add(
					b, "address",
					json_object_new_string(
						kpx_addr_str(&ep->addr, buf)));
				json_object_object_add(
					b, "port",
					json_object_new_int(ep->port));
				json_object_array_add(bs, b);
			}
			json_object_object_add(o, "backends", bs);
			json_object_array_add(arr, o);
		}
	}
	return arr;
}

static struct json_object *status_counts(const struct kpx_agent *a)
{
	struct json_object *o = json_object_new_object();
	struct kpx_store_stats ss;

	memset(&ss, 0, sizeof(ss));
	if (a->store)
		kpx_store_get_stats(a->store, &ss);
	json_object_object_add(o, "services",
			       json_object_new_int64(ss.n_services));
	json_object_object_add(o, "endpointslices",
			       json_object_new_int64(ss.n_slices));
	json_object_object_add(
		o, "svcports",
		json_object_new_int64(a->plan ? a->plan->n_svcports : 0));
	json_object_object_add(
		o, "frontends",
		json_object_new_int64(a->plan ? a->plan->n_frontends : 0));
	json_object_object_add(
		o, "endpoints",
		json_object_new_int64(a->plan ? a->plan->n_endpoints : 0));
	json_object_object_add(
		o, "service_changes_pending",
		json_object_new_int64(ss.service_changes_pending));
	json_object_object_add(
		o, "endpoint_changes_pending",
		json_object_new_int64(ss.endpoint_changes_pending));
	return o;
}

static struct json_object *dump_or_error(struct kpx_agent *a, bool frontends)
{
	struct json_object *out = NULL;
	int ret = -EOPNOTSUPP;

	if (a->ops) {
		if (frontends && a->ops->dump_frontends)
			ret = a->ops->dump_frontends(&a->cfg, &out);
		else if (!frontends && a->ops->dump_datapath)
			ret = a->ops->dump_datapath(&a->cfg, &out);
	}
	if (ret) {
		json_object_put(out);
		out = json_object_new_object();
		json_object_object_add(out, "error",
				       json_object_new_string(strerror(-ret)));
	}
	return out;
}

/* Builds the reply document for one request line. */
static struct json_object *status_reply(struct kpx_agent *a, const char *line)
{
	struct json_object *req = json_tokener_parse(line), *cmdo = NULL;
	struct json_object *rep = json_object_new_object();
	const char *cmd = NULL;

	if (req && json_object_object_get_ex(req, "cmd", &cmdo))
		cmd = json_object_get_string(cmdo);
	if (!cmd) {
		json_object_object_add(
			rep, "error",
			json_object_new_string("bad request: want {\"cmd\":...}"));
	} else if (!strcmp(cmd, "status")) {
		struct json_object *ag = kpx_agent_status_json(a);

		json_object_object_add(rep, "agent",
				       ag ? ag : json_object_new_object());
		json_object_object_add(rep, "datapath", dump_or_error(a, false));
		json_object_object_add(rep, "counts", status_counts(a));
	} else if (!strcmp(cmd, "services")) {
		json_object_object_add(rep, "frontends", dump_or_error(a, true));
	} else if (!strcmp(cmd, "plan")) {
		struct json_object *p = a->plan ? kpx_plan_to_json(a->plan) :
						  NULL;

		json_object_object_add(rep, "plan", p);
	} else if (!strcmp(cmd, "expected")) {
		json_object_object_add(rep, "synced",
				       json_object_new_boolean(a->plan || a->wanted_frontends));
		/* what the last sync wanted, when it failed */
		json_object_object_add(rep, "frontends",
				       a->wanted_frontends ?
					       json_object_get(a->wanted_frontends) :
					       kpx_plan_expected_frontends(a->plan));
	} else {
		json_object_object_add(rep, "error",
				       json_object_new_string("unknown cmd"));
	}
	json_object_put(req);
	return rep;
}

static void conn_close(struct kpx_status_server *s, struct status_conn *c)
{
	kpx_loop_unwatch_fd(s->agent->loop, c->fd);
	close(c->fd);
	free(c->out);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
}

static void conn_on_fd(int fd, uint32_t events, void *arg);

static void conn_flush(struct kpx_status_server *s, struct status_conn *c)
{
	ssize_t n;

	while (c->out_off < c->out_len) {
		n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
			 MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			kpx_loop_watch_fd(s->agent->loop, c->fd, EPOLLOUT,
					  conn_on_fd, s);
			return;
		}
		if (n <= 0)
			break;
		c->out_off += n;
	}
	conn_close(s, c);
}

static void conn_answer(struct kpx_status_server *s, struct status_conn *c)
{
	struct json_object *rep;
	const char *txt;

	c->in[c->in_len] = 0;
	rep = status_reply(s->agent, c->in);
	txt = json_object_to_json_string_ext(rep, JSON_C_TO_STRING_PLAIN);
	/* A trailing newline lets line-based clients (socat) stop. */
	if (!txt || asprintf(&c->out, "%s\n", txt) < 0)
		c->out = NULL;
	json_object_put(rep);
	if (!c->out) {
		conn_close(s, c);
		return;
	}
	c->out_len = strlen(c->out);
	conn_flush(s, c);
}

static void conn_on_fd(int fd, uint32_t events, void *arg)
{
	struct kpx_status_server *s = arg;
	struct status_conn *c = NULL;
	ssize_t n;
	int i;

	for (i = 0; i < STATUS_MAX_CONNS; i++)
		if (s->conns[i].fd == fd)
			c = &s->conns[i];
	if (!c)
		return;
	if (c->out) {
		if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
			conn_flush(s, c);
		return;
	}
	for (;;) {
		n = recv(fd, c->in + c->in_len, sizeof(c->in) - 1 - c->in_len,
			 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n < 0) {
			conn_close(s, c);
			return;
		}
		if (n == 0 || memchr(c->in + c->in_len, '\n', n)) {
			c->in_len += n;
			break;
		}
		c->in_len += n;
		if (c->in_len >= sizeof(c->in) - 1) {
			kpx_warn("status socket %s: request too long",
				 s->path);
			conn_close(s, c);
			return;
		}
	}
	if (!c->in_len) {
		conn_close(s, c);
		return;
	}
	conn_answer(s, c);
}

static void status_on_accept(int fd, uint32_t events, void *arg)
{
	struct kpx_status_server *s = arg;
	struct status_conn *c = NULL;
	int cfd, i;

	(void)events;
	for (;;) {
		cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd < 0)
			return;
		c = NULL;
		for (i = 0; i < STATUS_MAX_CONNS; i++) {
			if (s->conns[i].fd < 0) {
				c = &s->conns[i];
				break;
			}
		}
		if (!c) {
			kpx_dbg(1, "status socket %s: too many clients",
				s->path);
			close(cfd);
			continue;
		}
		c->fd = cfd;
		c->deadline_ms = kpx_now_ms() + STATUS_CONN_TIMEOUT_MS;
		if (kpx_loop_watch_fd(s->agent->loop, cfd, EPOLLIN, conn_on_fd,
				      s)) {
			close(cfd);
			c->fd = -1;
			continue;
		}
		if (!kpx_timer_armed(s->sweep))
			kpx_timer_arm(s->sweep, 1000);
	}
}

static void status_sweep(void *arg)
{
	struct kpx_status_server *s = arg;
	uint64_t now = kpx_now_ms();
	bool any = false;
	int i;

	for (i = 0; i < STATUS_MAX_CONNS; i++) {
		if (s->conns[i].fd < 0)
			continue;
		if (now >= s->conns[i].deadline_ms)
			conn_close(s, &s->conns[i]);
		else
			any = true;
	}
	if (any)
		kpx_timer_arm(s->sweep, 1000);
}

static int mkdir_p(const char *dir)
{
	char buf[PATH_MAX];
	char *p;

	if (snprintf(buf, sizeof(buf), "%s", dir) >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	for (p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(buf, 0755) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0755) && errno != EEXIST)
		return -errno;
	return 0;
}

/* The default socket's twin for this network namespace. */
static bool netns_socket_path(char *buf, size_t len)
{
	struct stat st;

	if (stat("/proc/self/ns/net", &st))
		return false;
	snprintf(buf, len, "/run/kpx/kpx-netns-%lu.sock",
		 (unsigned long)st.st_ino);
	return true;
}

void kpx_state_socket_resolve(char *path, size_t len)
{
	char own[PATH_MAX];

	if (!strcmp(path, KPX_STATE_SOCKET_DEFAULT) &&
	    netns_socket_path(own, sizeof(own)) && !access(own, F_OK))
		snprintf(path, len, "%s", own);
}

bool kpx_state_socket_live(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	bool live;
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return false;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	live = !connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	return live;
}

static int status_server_listen(struct kpx_agent *agent, const char *path,
				struct kpx_status_server **out);

/*
 * Clears the way for bind(): only a socket nobody answers on (an agent
 * that died) is removed. Anything else at the path (a regular file, a
 * directory, a FIFO: an operator's mistake in --state-socket) is left
 * alone and is an error naming it.
 */
static int remove_stale_socket(const char *path)
{
	struct stat st;
	int rc;

	if (lstat(path, &st)) {
		rc = -errno;
		if (rc == -ENOENT)
			return 0;
		kpx_err("status socket %s: %s", path, strerror(-rc));
		return rc;
	}
	if (!S_ISSOCK(st.st_mode)) {
		kpx_err("status socket %s: exists and is not a socket (%s); "
			"not replacing it, choose another --state-socket",
			path,
			S_ISREG(st.st_mode) ? "a regular file" :
			S_ISDIR(st.st_mode) ? "a directory" :
			S_ISLNK(st.st_mode) ? "a symlink" :
					      "a special file");
		return -EEXIST;
	}
	if (unlink(path) && errno != ENOENT) {
		rc = -errno;
		kpx_err("status socket %s: removing the stale socket: %s", path,
			strerror(-rc));
		return rc;
	}
	return 0;
}

/* On close: the path may have been replaced meanwhile (another agent, an
 * operator): unlink it only while it is still the socket we bound. */
static void unlink_own_socket(const struct kpx_status_server *s)
{
	struct stat st;

	if (!lstat(s->path, &st) && S_ISSOCK(st.st_mode) &&
	    st.st_dev == s->dev && st.st_ino == s->ino)
		unlink(s->path);
}

int kpx_status_server_open(struct kpx_agent *agent, const char *path,
			   struct kpx_status_server **out)
{
	char own[PATH_MAX];
	int ret;

	if (strcmp(path, KPX_STATE_SOCKET_DEFAULT) ||
	    !netns_socket_path(own, sizeof(own)))
		return status_server_listen(agent, path, out);
	ret = status_server_listen(agent, own, out);
	if (ret)
		return ret;
	(*out)->keep_path = true;
	if (kpx_state_socket_live(path))
		kpx_info("status socket %s belongs to another agent; this one "
			 "answers on %s", path, own);
	else if (status_server_listen(agent, path, &(*out)->alias))
		kpx_warn("status socket %s: not served, use %s", path, own);
	return 0;
}

static int status_server_listen(struct kpx_agent *agent, const char *path,
				struct kpx_status_server **out)
{
	struct kpx_status_server *s;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char dir[PATH_MAX];
	char *slash;
	int ret, i;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		kpx_err("status socket %s: path too long", path);
		return -ENAMETOOLONG;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->agent = agent;
	s->fd = -1;
	for (i = 0; i < STATUS_MAX_CONNS; i++)
		s->conns[i].fd = -1;
	snprintf(s->path, sizeof(s->path), "%s", path);
	strcpy(sa.sun_path, path);

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = 0;
		ret = mkdir_p(dir);
		if (ret) {
			kpx_err("status socket %s: mkdir %s: %s", path, dir,
				strerror(-ret));
			goto err;
		}
	}
	s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd < 0) {
		ret = -errno;
		goto err_log;
	}
	/* A socket left by a previous agent that died: nobody answers. A
	 * live one belongs to another agent: taking it would make `kpx
	 * status` report the wrong node. */
	if (kpx_state_socket_live(path)) {
		kpx_err("status socket %s: another kpx agent is serving it; "
			"give each agent its own --state-socket", path);
		ret = -EADDRINUSE;
		goto err;
	}
	ret = remove_stale_socket(path);
	if (ret)
		goto err;
	{
		mode_t old = umask(0177);

		ret = bind(s->fd, (struct sockaddr *)&sa, sizeof(sa));
		umask(old);
	}
	if (ret) {
		ret = -errno;
		goto err_log;
	}
	chmod(path, 0600);
	{
		struct stat st;

		if (!lstat(path, &st)) {
			s->dev = st.st_dev;
			s->ino = st.st_ino;
		}
	}
	if (listen(s->fd, 16)) {
		ret = -errno;
		goto err_log;
	}
	ret = kpx_timer_new(agent->loop, status_sweep, s, &s->sweep);
	if (ret)
		goto err_log;
	ret = kpx_loop_watch_fd(agent->loop, s->fd, EPOLLIN, status_on_accept,
				s);
	if (ret)
		goto err_log;
	kpx_info("status socket listening on %s", path);
	*out = s;
	return 0;
err_log:
	kpx_err("status socket %s: %s", path, strerror(-ret));
err:
	if (s->sweep)
		kpx_timer_free(s->sweep);
	if (s->fd >= 0)
		close(s->fd);
	free(s);
	return ret;
}

void kpx_status_server_close(struct kpx_status_server *s)
{
	int i;

	if (!s)
		return;
	kpx_status_server_close(s->alias);
	for (i = 0; i < STATUS_MAX_CONNS; i++)
		if (s->conns[i].fd >= 0)
			conn_close(s, &s->conns[i]);
	kpx_loop_unwatch_fd(s->agent->loop, s->fd);
	close(s->fd);
	if (!s->keep_path)
		unlink_own_socket(s);
	kpx_timer_free(s->sweep);
	free(s);
}

/* ---- client ---- */

#define STATUS_CLIENT_TIMEOUT_MS 5000

int kpx_status_request(const char *path, const char *cmd,
		       struct json_object **reply)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char *buf = NULL, *nb;
	size_t len = 0, cap = 0;
	char req[128];
	uint64_t deadline;
	struct pollfd pfd;
	int fd, ret, n;
	ssize_t r;

	*reply = NULL;
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		ret = -errno;
		goto out;
	}
	n = snprintf(req, sizeof(req), "{\"cmd\":\"%s\"}\n", cmd);
	if (send(fd, req, n, MSG_NOSIGNAL) != n) {
		ret = -EIO;
		goto out;
	}
	shutdown(fd, SHUT_WR);
	deadline = kpx_now_ms() + STATUS_CLIENT_TIMEOUT_MS;
	for (;;) {
		uint64_t now = kpx_now_ms();

		if (now >= deadline) {
			ret = -ETIMEDOUT;
			goto out;
		}
		pfd.fd = fd;
		pfd.events = POLLIN;
		ret = poll(&pfd, 1, (int)(deadline - now));
		if (ret < 0 && errno == EINTR)
			continue;
		if (ret <= 0) {
			ret = ret ? -errno : -ETIMEDOUT;
			goto out;
		}
		if (cap - len < 65536) {
			cap = cap ? cap * 2 : 131072;
			nb = realloc(buf, cap);
			if (!nb) {
				ret = -ENOMEM;
				goto out;
			}
			buf = nb;
		}
		r = recv(fd, buf + len, cap - len - 1, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			ret = -errno;
			goto out;
		}
		if (r == 0)
			break;
		len += r;
	}
	if (!buf) {
		ret = -EPROTO;
		goto out;
	}
	buf[len] = 0;
	*reply = json_tokener_parse(buf);
	ret = *reply ? 0 : -EPROTO;
out:
	free(buf);
	close(fd);
	return ret;
}
