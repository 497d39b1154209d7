// SPDX-License-Identifier: Apache-2.0
/*
 * HTTP endpoints of the agent (/healthz, /readyz, /livez, /metrics,
 * /proxyMode) and the listener machinery the healthCheckNodePort servers
 * share. Each listener is a libmicrohttpd daemon with threads of its own
 * (epoll), so requests never wait for the agent loop and a sync never
 * waits for a client. Handlers read only what the loop published in
 * struct kpx_serve.
 *
 * Hostile clients are bounded per listener: a connection limit, a limit
 * per source address, an idle timeout, and a deadline for each request
 * head (a client trickling one byte a second is not idle, so MHD's idle
 * timeout alone would let it hold a slot forever). One reaper thread for
 * the process enforces the deadline by shutting such sockets down.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#include "agent/agent.h"
#include "agent/serve.h"
#include "agent/serve_priv.h"
#include "common/log.h"
#include "common/loop.h"

/* Health and readiness probes come from a few addresses (kubelet, load
 * balancer checkers); a source needing more than per_ip at once is not
 * probing. Twenty sources holding the per-ip maximum fit in conn_limit. */
const struct kpx_httpd_limits kpx_httpd_health_limits = {
	.threads = 2, .conn_limit = 512, .per_ip = 16, .stack_size = 256 << 10,
	.answer_ms = KPX_HTTP_REQUEST_DEADLINE_MS
};
/* Scrapes read the kernel (dumps), so give them the default stack. */
const struct kpx_httpd_limits kpx_httpd_metrics_limits = {
	.threads = 2, .conn_limit = 128, .per_ip = 16, .stack_size = 0,
	.answer_ms = 30000
};
/* One per eTP=Local service: a single thread each keeps many services
 * cheap. */
const struct kpx_httpd_limits kpx_httpd_hcnp_limits = {
	.threads = 1, .conn_limit = 512, .per_ip = 16, .stack_size = 256 << 10,
	.answer_ms = KPX_HTTP_REQUEST_DEADLINE_MS
};

/* Memory MHD may use per connection (request head and our reply
 * headers); a longer request head is refused with 431. */
#define KPX_HTTP_CONN_MEMORY (16 << 10)
/* How often the reaper looks for overdue request heads. */
#define KPX_HTTP_REAP_MS 250

struct kpx_httpd {
	struct MHD_Daemon *mhd;
	unsigned int answer_ms;
	kpx_httpd_handler handler;
	void *arg;
};

struct kpx_http {
	struct kpx_serve *serve;
	enum kpx_http_role role;
	struct kpx_httpd *d;
};

/* ---- request-head deadline: one reaper thread for every listener ---- */

/* One accepted connection, from MHD's "started" to its "closed"
 * notification. MHD closes the socket only after the "closed" callback
 * returned, and that callback takes reaper.lock: while the reaper holds
 * the lock, every fd on the list is still the connection's own. */
struct tracked_conn {
	int fd;
	uint64_t deadline_ms; /* monotonic; the next request head is due */
	unsigned int answer_ms; /* the listener's kpx_httpd_limits.answer_ms */
	bool reaped;
	struct tracked_conn *prev, *next;
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t thread;
	unsigned int users; /* running daemons */
	bool running, stop;
	struct tracked_conn head; /* circular list */
	/* Connections of every listener together; past the budget a new one
	 * is closed at once, so that clients can never take the descriptors
	 * syncs need (one listener per eTP=Local service adds up). */
	unsigned long n, budget;
} reaper = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.cond = PTHREAD_COND_INITIALIZER,
	.head = { .prev = &reaper.head, .next = &reaper.head },
};

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void *reaper_main(void *arg)
{
	struct timespec ts;
	struct tracked_conn *c;
	uint64_t now;

	(void)arg;
	pthread_mutex_lock(&reaper.lock);
	while (!reaper.stop) {
		now = mono_ms();
		for (c = reaper.head.next; c != &reaper.head; c = c->next) {
			if (c->reaped || now < c->deadline_ms)
				continue;
			/* The daemon's epoll sees EOF and closes it. */
			shutdown(c->fd, SHUT_RDWR);
			c->reaped = true;
		}
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += KPX_HTTP_REAP_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&reaper.cond, &reaper.lock, &ts);
	}
	pthread_mutex_unlock(&reaper.lock);
	return NULL;
}

static int reaper_get(void)
{
	int ret = 0;

	pthread_mutex_lock(&reaper.lock);
	if (!reaper.running) {
		struct rlimit rl;

		/* Half the descriptors (after nofile_raise), at least 64. */
		reaper.budget = 4096;
		if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur != RLIM_INFINITY)
			reaper.budget = rl.rlim_cur / 2;
		if (reaper.budget < 64)
			reaper.budget = 64;
		reaper.stop = false;
		ret = -pthread_create(&reaper.thread, NULL, reaper_main, NULL);
		reaper.running = !ret;
	}
	if (!ret)
		reaper.users++;
	pthread_mutex_unlock(&reaper.lock);
	return ret;
}

static void reaper_put(void)
{
	bool join = false;

	pthread_mutex_lock(&reaper.lock);
	if (reaper.users && !--reaper.users && reaper.running) {
		reaper.stop = true;
		reaper.running = false;
		pthread_cond_signal(&reaper.cond);
		join = true;
	}
	pthread_mutex_unlock(&reaper.lock);
	if (join)
		pthread_join(reaper.thread, NULL);
}

static void httpd_notify(void *cls, struct MHD_Connection *conn,
			 void **socket_context,
			 enum MHD_ConnectionNotificationCode toe)
{
	const union MHD_ConnectionInfo *ci;
	struct tracked_conn *c;

	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		ci = MHD_get_connection_info(conn,
					     MHD_CONNECTION_INFO_CONNECTION_FD);
		c = calloc(1, sizeof(*c));
		if (!c || !ci) {
			/* Untracked: still bounded by the idle timeout. */
			free(c);
			*socket_context = NULL;
			return;
		}
		c->fd = ci->connect_fd;
		c->answer_ms = ((const struct kpx_httpd *)cls)->answer_ms;
		c->deadline_ms = mono_ms() + KPX_HTTP_REQUEST_DEADLINE_MS;
		pthread_mutex_lock(&reaper.lock);
		c->next = reaper.head.next;
		c->prev = &reaper.head;
		reaper.head.next->prev = c;
		reaper.head.next = c;
		if (++reaper.n > reaper.budget) {
			/* Our own thread owns the socket: the daemon sees EOF. */
			shutdown(c->fd, SHUT_RDWR);
			c->reaped = true;
		}
		pthread_mutex_unlock(&reaper.lock);
		*socket_context = c;
		return;
	}
	c = *socket_context;
	if (!c)
		return;
	pthread_mutex_lock(&reaper.lock);
	c->prev->next = c->next;
	c->next->prev = c->prev;
	reaper.n--;
	pthread_mutex_unlock(&reaper.lock);
	free(c);
	*socket_context = NULL;
}

/* A request was answered: the next one on this connection gets a new
 * deadline. */
static void conn_answered(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci;
	struct tracked_conn *c;

	ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	c = ci ? ci->socket_context : NULL;
	if (!c)
		return;
	pthread_mutex_lock(&reaper.lock);
	c->deadline_ms = mono_ms() + c->answer_ms;
	pthread_mutex_unlock(&reaper.lock);
}

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
	conn_answered(conn);
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

/* Go raises its soft open-files limit to the hard one at start, so
 * kube-proxy has it; without that a few hundred held connections would
 * take the descriptors syncs need (netlink sockets, map fds). */
static void nofile_raise(void)
{
	struct rlimit rl;

	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static struct MHD_Daemon *httpd_listen(struct kpx_httpd *d, unsigned int flags,
				       uint16_t port,
				       struct sockaddr_storage *ss,
				       const struct kpx_httpd_limits *lim)
{
	/* A pool of one is not a pool: the option list ends before it. */
	return MHD_start_daemon(
		flags, port, NULL, NULL, httpd_access, d, MHD_OPTION_SOCK_ADDR,
		(struct sockaddr *)ss, MHD_OPTION_CONNECTION_TIMEOUT,
		(unsigned int)KPX_HTTP_IDLE_TIMEOUT_S,
		MHD_OPTION_CONNECTION_LIMIT, lim->conn_limit,
		MHD_OPTION_PER_IP_CONNECTION_LIMIT, lim->per_ip,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)KPX_HTTP_CONN_MEMORY,
		MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned int)1,
		MHD_OPTION_NOTIFY_CONNECTION, httpd_notify, d,
		MHD_OPTION_EXTERNAL_LOGGER, httpd_log, NULL,
		MHD_OPTION_THREAD_STACK_SIZE, lim->stack_size,
		lim->threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END,
		lim->threads, MHD_OPTION_END);
}

static pthread_once_t nofile_once = PTHREAD_ONCE_INIT;

int kpx_httpd_start(const char *bind_addr, const struct kpx_httpd_limits *lim,
		    kpx_httpd_handler handler, void *arg,
		    struct kpx_httpd **out)
{
	struct sockaddr_storage ss;
	socklen_t slen;
	struct kpx_httpd *d;
	unsigned int flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG;
	uint16_t port;
	int ret;

	ret = kpx_bind_parse(bind_addr, &ss, &slen);
	if (ret)
		return ret;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->handler = handler;
	d->arg = arg;
	d->answer_ms = lim->answer_ms ? lim->answer_ms :
					KPX_HTTP_REQUEST_DEADLINE_MS;
	pthread_once(&nofile_once, nofile_raise);
	ret = reaper_get();
	if (ret) {
		free(d);
		return ret;
	}
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
	errno = 0;
	d->mhd = httpd_listen(d, flags, port, &ss, lim);
	if (!d->mhd && (flags & MHD_USE_DUAL_STACK)) {
		/* No IPv6 in this namespace: fall back to IPv4 any. */
		struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;

		memset(&ss, 0, sizeof(ss));
		a4->sin_family = AF_INET;
		a4->sin_port = htons(port);
		a4->sin_addr.s_addr = htonl(INADDR_ANY);
		flags &= ~MHD_USE_DUAL_STACK;
		errno = 0;
		d->mhd = httpd_listen(d, flags, port, &ss, lim);
	}
	if (!d->mhd) {
		/* MHD does not report why; errno is left by bind(). */
		ret = errno ? -errno : -EADDRINUSE;
		reaper_put();
		free(d);
		return ret;
	}
	*out = d;
	return 0;
}

void kpx_httpd_stop(struct kpx_httpd *d)
{
	if (!d)
		return;
	/* Joins the daemon's threads: no handler runs after this. */
	MHD_stop_daemon(d->mhd);
	reaper_put();
	free(d);
}

/* ---- the agent's endpoints ---- */

static void serve_health(struct kpx_http *h, bool healthz,
			 struct kpx_reply *rep)
{
	struct kpx_health_input in;
	struct kpx_health st;
	bool ok;

	kpx_serve_health(h->serve, &in, NULL);
	kpx_health_eval_input(&in, kpx_wall_seconds(), &st);
	ok = st.healthy && (!healthz || st.node_eligible);
	rep->status = ok ? 200 : 503;
	rep->content_type = "application/json";
	rep->body = kpx_health_body(&st, healthz, &rep->len);
	kpx_serve_count(healthz ? h->serve->counters.healthz :
				  h->serve->counters.livez,
			ok);
}

static void route_healthz(struct kpx_http *h, const struct kpx_request *req,
			  struct kpx_reply *rep)
{
	(void)req;
	serve_health(h, true, rep);
}

static void route_livez(struct kpx_http *h, const struct kpx_request *req,
			struct kpx_reply *rep)
{
	(void)req;
	serve_health(h, false, rep);
}

static void route_readyz(struct kpx_http *h, const struct kpx_request *req,
			 struct kpx_reply *rep)
{
	struct kpx_health_input in;
	struct kpx_ready_input r;
	struct kpx_health st;

	(void)req;
	kpx_serve_health(h->serve, &in, &r);
	kpx_health_eval_input(&in, kpx_wall_seconds(), &st);
	rep->content_type = "application/json";
	rep->body = kpx_ready_body(&r, &st, &rep->status, &rep->len);
	kpx_serve_count(h->serve->counters.readyz, rep->status == 200);
}

static void route_metrics(struct kpx_http *h, const struct kpx_request *req,
			  struct kpx_reply *rep)
{
	(void)req;
	rep->status = 200;
	rep->content_type = "text/plain; version=0.0.4; charset=utf-8";
	rep->body = kpx_serve_metrics(h->serve, &rep->len);
	if (!rep->body)
		rep->status = 500;
}

static void route_proxy_mode(struct kpx_http *h, const struct kpx_request *req,
			     struct kpx_reply *rep)
{
	(void)req;
	rep->status = 200;
	rep->content_type = "text/plain; charset=utf-8";
	rep->body = strdup(h->serve->proxy_mode ? h->serve->proxy_mode : "");
}

/* The effective configuration, rendered once at start (--config). */
static void route_configz(struct kpx_http *h, const struct kpx_request *req,
			  struct kpx_reply *rep)
{
	(void)req;
	if (!h->serve->configz)
		return; /* 404 */
	rep->status = 200;
	rep->content_type = "application/json";
	rep->body = strdup(h->serve->configz);
}

/* The metrics server of kube-proxy answers a plain "ok" on /healthz. */
static void route_ok(struct kpx_http *h, const struct kpx_request *req,
		     struct kpx_reply *rep)
{
	(void)h;
	(void)req;
	rep->status = 200;
	rep->content_type = "text/plain; charset=utf-8";
	rep->body = strdup("ok");
}

/* Every path of both servers: add a row for a new endpoint. Handlers run
 * on daemon threads and may read only h->serve. */
static const struct route {
	enum kpx_http_role role;
	const char *path;
	void (*fn)(struct kpx_http *h, const struct kpx_request *req,
		   struct kpx_reply *rep);
} routes[] = {
	{ KPX_HTTP_HEALTHZ, "/healthz", route_healthz },
	{ KPX_HTTP_HEALTHZ, "/livez", route_livez },
	{ KPX_HTTP_HEALTHZ, "/readyz", route_readyz },
	{ KPX_HTTP_METRICS, "/metrics", route_metrics },
	{ KPX_HTTP_METRICS, "/proxyMode", route_proxy_mode },
	{ KPX_HTTP_METRICS, "/configz", route_configz },
	{ KPX_HTTP_METRICS, "/healthz", route_ok },
};

static void http_handle(void *arg, const struct kpx_request *req,
			struct kpx_reply *rep)
{
	struct kpx_http *h = arg;
	size_t i;

	for (i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		if (routes[i].role == h->role &&
		    !strcmp(routes[i].path, req->url)) {
			routes[i].fn(h, req, rep);
			return;
		}
	}
}

int kpx_http_open(struct kpx_agent *agent, const char *bind_addr,
		  enum kpx_http_role role, struct kpx_http **out)
{
	const struct kpx_httpd_limits *lim = role == KPX_HTTP_HEALTHZ ?
						     &kpx_httpd_health_limits :
						     &kpx_httpd_metrics_limits;
	struct kpx_http *h;
	int ret;

	if (!agent->serve)
		return -EINVAL;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->serve = agent->serve;
	h->role = role;
	ret = kpx_httpd_start(bind_addr, lim, http_handle, h, &h->d);
	if (ret) {
		kpx_err("%s server on %s: %s",
			role == KPX_HTTP_HEALTHZ ? "healthz" : "metrics",
			bind_addr, strerror(-ret));
		free(h);
		return ret;
	}
	kpx_info("serving %s on %s",
		 role == KPX_HTTP_HEALTHZ ? "/healthz /readyz /livez" :
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
