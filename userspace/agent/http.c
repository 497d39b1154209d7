// SPDX-License-Identifier: Apache-2.0
/*
 * HTTP endpoints of the agent (/healthz, /livez, /metrics, /proxyMode)
 * over libmicrohttpd in external-epoll mode: MHD owns an epoll fd that the
 * agent loop watches, so requests are served from the one agent thread
 * and read agent state without locks.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "agent/agent.h"
#include "agent/serve.h"
#include "agent/serve_priv.h"
#include "common/log.h"
#include "common/loop.h"
#include "model/store.h"

/* Idle keep-alive connections are closed after this many seconds. */
#define KPX_HTTP_CONN_TIMEOUT 15
#define KPX_HTTP_CONN_LIMIT 64

struct kpx_httpd {
	struct kpx_loop *loop;
	struct MHD_Daemon *mhd;
	int epfd;
	struct kpx_timer *timer;
	kpx_httpd_handler handler;
	void *arg;
};

struct kpx_http {
	struct kpx_agent *agent;
	enum kpx_http_role role;
	struct kpx_httpd *d;
};

int kpx_bind_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[128];
	const char *colon, *h, *p;
	size_t hl;
	char *end;
	long port;

	memset(ss, 0, sizeof(*ss));
	if (!s || !*s)
		return -EINVAL;
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');

		if (!rb || rb[1] != ':')
			return -EINVAL;
		h = s + 1;
		hl = rb - h;
		p = rb + 2;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return -EINVAL;
		/* A bare IPv6 address without brackets is ambiguous. */
		if (memchr(s, ':', colon - s))
			return -EINVAL;
		h = s;
		hl = colon - s;
		p = colon + 1;
	}
	if (hl >= sizeof(host))
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = 0;
	errno = 0;
	port = strtol(p, &end, 10);
	if (errno || *end || end == p || port <= 0 || port > 65535)
		return -EINVAL;

	if (!hl || s[0] == '[') {
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;

		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons(port);
		if (hl && inet_pton(AF_INET6, host, &a6->sin6_addr) != 1)
			return -EINVAL;
		if (!hl)
			a6->sin6_addr = in6addr_any;
		*len = sizeof(*a6);
	} else {
		struct sockaddr_in *a4 = (struct sockaddr_in *)ss;

		a4->sin_family = AF_INET;
		a4->sin_port = htons(port);
		if (inet_pton(AF_INET, host, &a4->sin_addr) != 1)
			return -EINVAL;
		*len = sizeof(*a4);
	}
	return 0;
}

static void httpd_rearm(struct kpx_httpd *d)
{
	MHD_UNSIGNED_LONG_LONG t;

	if (MHD_get_timeout(d->mhd, &t) == MHD_YES)
		kpx_timer_arm(d->timer, t ? t : 1);
	else
		kpx_timer_arm(d->timer, 0);
}

static void httpd_run(struct kpx_httpd *d)
{
	MHD_run(d->mhd);
	httpd_rearm(d);
}

static void httpd_on_fd(int fd, uint32_t events, void *arg)
{
	(void)fd;
	(void)events;
	httpd_run(arg);
}

static void httpd_on_timer(void *arg)
{
	httpd_run(arg);
}

static enum MHD_Result httpd_access(void *cls, struct MHD_Connection *conn,
				    const char *url, const char *method,
				    const char *version, const char *upload,
				    size_t *upload_size, void **con_cls)
{
	struct kpx_httpd *d = cls;
	struct kpx_request req = { .url = url, .method = method };
	struct kpx_reply rep = { .status = 404 };
	struct MHD_Response *resp;
	enum MHD_Result ret;
	static int marker;

	(void)version;
	(void)upload;
	/* First call only announces the headers; a request body (none is
	 * expected) is discarded before answering. */
	if (!*con_cls) {
		*con_cls = &marker;
		return MHD_YES;
	}
	if (*upload_size) {
		*upload_size = 0;
		return MHD_YES;
	}
	if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
		rep.status = 405;
		rep.body = strdup("method not allowed\n");
	} else {
		d->handler(d->arg, &req, &rep);
	}
	if (!rep.body) {
		rep.body = strdup(rep.status == 404 ? "404 page not found\n" :
						      "");
		rep.content_type = "text/plain; charset=utf-8";
	}
	if (!rep.body)
		return MHD_NO;
	if (!rep.len)
		rep.len = strlen(rep.body);
	resp = MHD_create_response_from_buffer(rep.len, rep.body,
					       MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(rep.body);
		return MHD_NO;
	}
	if (rep.content_type)
		MHD_add_response_header(resp, "Content-Type", rep.content_type);
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	if (rep.hdr_name)
		MHD_add_response_header(resp, rep.hdr_name, rep.hdr_value);
	ret = MHD_queue_response(conn, rep.status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static void httpd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[256];

	(void)cls;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	buf[strcspn(buf, "\n")] = 0;
	kpx_dbg(2, "libmicrohttpd: %s", buf);
}

static struct MHD_Daemon *httpd_listen(struct kpx_httpd *d, unsigned int flags,
				       uint16_t port,
				       struct sockaddr_storage *ss)
{
	return MHD_start_daemon(
		flags, port, NULL, NULL, httpd_access, d, MHD_OPTION_SOCK_ADDR,
		(struct sockaddr *)ss, MHD_OPTION_CONNECTION_TIMEOUT,
		(unsigned int)KPX_HTTP_CONN_TIMEOUT,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned int)KPX_HTTP_CONN_LIMIT,
		MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned int)1,
		MHD_OPTION_EXTERNAL_LOGGER, httpd_log, NULL, MHD_OPTION_END);
}

int kpx_httpd_start(struct kpx_loop *loop, const char *bind_addr,
		    kpx_httpd_handler handler, void *arg,
		    struct kpx_httpd **out)
{
	struct sockaddr_storage ss;
	socklen_t slen;
	struct kpx_httpd *d;
	unsigned int flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
	const union MHD_DaemonInfo *info;
	uint16_t port;
	int ret;

	ret = kpx_bind_parse(bind_addr, &ss, &slen);
	if (ret)
		return ret;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->loop = loop;
	d->handler = handler;
	d->arg = arg;
	d->epfd = -1;
	if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *a6 = (void *)&ss;

		port = ntohs(a6->sin6_port);
		/* ":port" means every address of both families. */
		flags |= IN6_IS_ADDR_UNSPECIFIED(&a6->sin6_addr) ?
				 MHD_USE_DUAL_STACK :
				 MHD_USE_IPv6;
	} else {
		port = ntohs(((const struct sockaddr_in *)&ss)->sin_port);
	}
	d->mhd = httpd_listen(d, flags, port, &ss);
	if (!d->mhd && (flags & MHD_USE_DUAL_STACK)) {
		/* No IPv6 in this namespace: fall back to IPv4 any. */
		struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;

		memset(&ss, 0, sizeof(ss));
		a4->sin_family = AF_INET;
		a4->sin_port = htons(port);
		a4->sin_addr.s_addr = htonl(INADDR_ANY);
		flags &= ~MHD_USE_DUAL_STACK;
		d->mhd = httpd_listen(d, flags, port, &ss);
	}
	if (!d->mhd) {
		/* MHD does not report why; errno is left by bind(). */
		ret = errno ? -errno : -EADDRINUSE;
		goto err;
	}
	info = MHD_get_daemon_info(d->mhd, MHD_DAEMON_INFO_EPOLL_FD);
	if (!info) {
		ret = -EINVAL;
		goto err;
	}
	d->epfd = info->epoll_fd;
	ret = kpx_timer_new(loop, httpd_on_timer, d, &d->timer);
	if (ret)
		goto err;
	ret = kpx_loop_watch_fd(loop, d->epfd, EPOLLIN, httpd_on_fd, d);
	if (ret)
		goto err;
	httpd_rearm(d);
	*out = d;
	return 0;
err:
	if (d->timer)
		kpx_timer_free(d->timer);
	if (d->mhd)
		MHD_stop_daemon(d->mhd);
	free(d);
	return ret;
}

void kpx_httpd_stop(struct kpx_httpd *d)
{
	if (!d)
		return;
	kpx_loop_unwatch_fd(d->loop, d->epfd);
	kpx_timer_free(d->timer);
	MHD_stop_daemon(d->mhd);
	free(d);
}

static void serve_health(struct kpx_http *h, bool healthz,
			 struct kpx_reply *rep)
{
	struct kpx_agent *a = h->agent;
	const struct kpx_node *node = a->store ? kpx_store_node(a->store) :
						 NULL;
	struct kpx_health st;
	bool ok;

	kpx_health_eval(a, node, kpx_wall_seconds(), &st);
	ok = st.healthy && (!healthz || st.node_eligible);
	rep->status = ok ? 200 : 503;
	rep->content_type = "application/json";
	rep->body = kpx_health_body(&st, healthz, &rep->len);
	if (healthz)
		a->stats.healthz_total[ok ? 0 : 1]++;
	else
		a->stats.livez_total[ok ? 0 : 1]++;
}

static void http_handle(void *arg, const struct kpx_request *req,
			struct kpx_reply *rep)
{
	struct kpx_http *h = arg;
	struct kpx_agent *a = h->agent;
	const char *url = req->url;

	if (h->role == KPX_HTTP_HEALTHZ) {
		if (!strcmp(url, "/healthz"))
			serve_health(h, true, rep);
		else if (!strcmp(url, "/livez"))
			serve_health(h, false, rep);
		return;
	}
	if (!strcmp(url, "/metrics")) {
		rep->status = 200;
		rep->content_type = "text/plain; version=0.0.4; charset=utf-8";
		rep->body = kpx_metrics_render(a, &rep->len);
		if (!rep->body)
			rep->status = 500;
	} else if (!strcmp(url, "/configz") && a->configz) {
		/* Rendered once at start, never changed: no agent state. */
		rep->status = 200;
		rep->content_type = "application/json";
		rep->body = strdup(a->configz);
	} else if (!strcmp(url, "/proxyMode")) {
		rep->status = 200;
		rep->content_type = "text/plain; charset=utf-8";
		rep->body = strdup(a->ops && a->ops->name ? a->ops->name : "");
	} else if (!strcmp(url, "/healthz")) {
		/* The metrics server of kube-proxy answers a plain "ok". */
		rep->status = 200;
		rep->content_type = "text/plain; charset=utf-8";
		rep->body = strdup("ok");
	}
}

int kpx_http_open(struct kpx_agent *agent, const char *bind_addr,
		  enum kpx_http_role role, struct kpx_http **out)
{
	struct kpx_http *h;
	int ret;

	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->agent = agent;
	h->role = role;
	ret = kpx_httpd_start(agent->loop, bind_addr, http_handle, h, &h->d);
	if (ret) {
		kpx_err("%s server on %s: %s",
			role == KPX_HTTP_HEALTHZ ? "healthz" : "metrics",
			bind_addr, strerror(-ret));
		free(h);
		return ret;
	}
	kpx_info("serving %s on %s",
		 role == KPX_HTTP_HEALTHZ ? "/healthz /livez" :
					    "/metrics /proxyMode",
		 bind_addr);
	*out = h;
	return 0;
}

void kpx_http_close(struct kpx_http *h)
{
	if (!h)
		return;
	kpx_httpd_stop(h->d);
	free(h);
}
