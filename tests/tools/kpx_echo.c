/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kpx_echo: the traffic tool of the integration rig.
 *
 *   kpx_echo server --id NAME --port P[,P...] [--bind ADDR]
 *       TCP and UDP on every port, v4 and v6 (one dual-stack socket each).
 *       Each TCP connection gets "<id> <peer-addr>\n" at once, then every
 *       line it sends is echoed back (for `hold`). Each UDP datagram is
 *       answered with "<id> <peer-addr>\n". So a test sees which endpoint
 *       answered and which source address that endpoint saw.
 *
 *   kpx_echo client --addr A --port P [--proto tcp|udp|udpu] [-n N]
 *       [--timeout-ms T] [--interval-ms I] [--one-socket] [--sport P]
 *       [--seq] [--max-fail K]
 *       --max-fail K stops after K failed attempts (attempts shows how many
 *       ran), so a broken path costs K timeouts, not N.
 *       N attempts (bounded to 100000). udp = connected socket (ICMP errors
 *       seen as ECONNREFUSED), udpu = unconnected sendto/recvfrom.
 *       --one-socket reuses one UDP socket (same 5-tuple) for every attempt.
 *
 *   kpx_echo client --targets A:P[,A:P...] [--pick random|rr] [--time] ...
 *       The same client over several destinations ([v6]:P for IPv6), one
 *       per attempt, chosen at random (default, like a Service's endpoint
 *       choice) or round-robin: the fair "direct" baseline of a ClusterIP
 *       benchmark (same endpoints, same servers, same client loop).
 *       --time adds "elapsed_us N" and "rate N" (ok attempts per second,
 *       timed inside the process, so process start-up is not counted).
 *       Output, one fact per line (machine-readable):
 *         attempts N / ok N / fail N
 *         id NAME COUNT            (per answering identity)
 *         src ADDR COUNT           (source address the server saw)
 *         err KIND COUNT MAXMS     (KIND: ECONNREFUSED, EPERM, TIMEOUT, ...)
 *         seq I ID|ERR:KIND MS     (with --seq, one per attempt)
 *
 *   kpx_echo hold --addr A --port P -d SECS
 *       One TCP connection, a ping every 100 ms for SECS seconds (<= 600).
 *       Prints "hold ok id=ID pings=N" or "hold fail id=ID after_ms=M
 *       reason=R" and exits 0 / 1.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_PORTS 16
#define MAX_CONNS 256
#define MAX_KEYS 64
#define MAX_TARGETS 64

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void fmt_addr(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const void *)ss;

		inet_ntop(AF_INET, &s->sin_addr, buf, len);
	} else {
		const struct sockaddr_in6 *s = (const void *)ss;

		if (IN6_IS_ADDR_V4MAPPED(&s->sin6_addr))
			inet_ntop(AF_INET, &s->sin6_addr.s6_addr[12], buf, len);
		else
			inet_ntop(AF_INET6, &s->sin6_addr, buf, len);
	}
}

static int parse_sa(const char *addr, int port, struct sockaddr_storage *ss,
		    socklen_t *sl)
{
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *s4 = (void *)ss;
	struct sockaddr_in6 *s6 = (void *)ss;

	if (inet_pton(AF_INET, addr, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		*sl = sizeof(*s4);
		return 0;
	}
	if (inet_pton(AF_INET6, addr, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		*sl = sizeof(*s6);
		return 0;
	}
	return -EINVAL;
}

/* Parses "A:P,[V6]:P,..." into dst/dsl; number of targets or -EINVAL. */
static int parse_targets(const char *list, struct sockaddr_storage *dst,
			 socklen_t *dsl, int max)
{
	char buf[4096], *save = NULL, *tok;
	int n = 0;

	if (snprintf(buf, sizeof(buf), "%s", list) >= (int)sizeof(buf))
		return -EINVAL;
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *colon = strrchr(tok, ':'), *a = tok, *end;
		long port;

		if (!colon || n >= max)
			return -EINVAL;
		*colon = 0;
		port = strtol(colon + 1, &end, 10);
		if (*end || port < 1 || port > 65535)
			return -EINVAL;
		if (*a == '[') {
			size_t l = strlen(a);

			if (l < 2 || a[l - 1] != ']')
				return -EINVAL;
			a[l - 1] = 0;
			a++;
		}
		if (parse_sa(a, (int)port, &dst[n], &dsl[n]))
			return -EINVAL;
		n++;
	}
	return n ? n : -EINVAL;
}

/* ---------------------------------------------------------------- server */

struct conn {
	int fd;
	char buf[512];
	size_t len;
};

static int server(const char *id, const char *ports, const char *bind_addr)
{
	int lfd[MAX_PORTS], ufd[MAX_PORTS], n = 0;
	struct conn conns[MAX_CONNS];
	char tmp[64];
	const char *p = ports;

	signal(SIGPIPE, SIG_IGN);
	for (int i = 0; i < MAX_CONNS; i++)
		conns[i].fd = -1;
	while (*p && n < MAX_PORTS) {
		int port = atoi(p), one = 1, zero = 0;
		struct sockaddr_storage ss;
		socklen_t sl;

		if (parse_sa(bind_addr ? bind_addr : "::", port, &ss, &sl)) {
			fprintf(stderr, "kpx_echo: bad bind address %s\n", bind_addr);
			return 2;
		}
		lfd[n] = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
		ufd[n] = socket(ss.ss_family, SOCK_DGRAM, 0);
		for (int k = 0; k < 2; k++) {
			int fd = k ? ufd[n] : lfd[n];

			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
			if (ss.ss_family == AF_INET6)
				setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero,
					   sizeof(zero));
			if (bind(fd, (void *)&ss, sl)) {
				fprintf(stderr, "kpx_echo: bind port %d: %s\n",
					port, strerror(errno));
				return 1;
			}
		}
		if (listen(lfd[n], 128)) {
			perror("listen");
			return 1;
		}
		n++;
		p = strchr(p, ',');
		if (!p)
			break;
		p++;
	}
	printf("server %s ready ports=%s\n", id, ports);
	fflush(stdout);
	for (;;) {
		struct pollfd pfd[2 * MAX_PORTS + MAX_CONNS];
		int map[2 * MAX_PORTS + MAX_CONNS], np = 0;

		for (int i = 0; i < n; i++) {
			pfd[np] = (struct pollfd){ .fd = lfd[i], .events = POLLIN };
			map[np++] = -1;
			pfd[np] = (struct pollfd){ .fd = ufd[i], .events = POLLIN };
			map[np++] = -2;
		}
		for (int i = 0; i < MAX_CONNS; i++)
			if (conns[i].fd >= 0) {
				pfd[np] = (struct pollfd){ .fd = conns[i].fd,
							   .events = POLLIN };
				map[np++] = i;
			}
		if (poll(pfd, np, -1) < 0) {
			if (errno == EINTR)
				continue;
			return 1;
		}
		for (int k = 0; k < np; k++) {
			struct sockaddr_storage ss;
			socklen_t sl = sizeof(ss);
			char out[160];

			if (!pfd[k].revents)
				continue;
			if (map[k] == -1) {
				int fd = accept4(pfd[k].fd, (void *)&ss, &sl,
						 SOCK_NONBLOCK);
				int slot = -1;

				if (fd < 0)
					continue;
				for (int i = 0; i < MAX_CONNS; i++)
					if (conns[i].fd < 0) {
						slot = i;
						break;
					}
				fmt_addr(&ss, tmp, sizeof(tmp));
				int len = snprintf(out, sizeof(out), "%s %s\n", id, tmp);

				if (write(fd, out, len) < 0 || slot < 0) {
					close(fd);
					continue;
				}
				conns[slot].fd = fd;
				conns[slot].len = 0;
			} else if (map[k] == -2) {
				char in[512];
				ssize_t r = recvfrom(pfd[k].fd, in, sizeof(in), 0,
						     (void *)&ss, &sl);

				if (r < 0)
					continue;
				fmt_addr(&ss, tmp, sizeof(tmp));
				int len = snprintf(out, sizeof(out), "%s %s\n", id, tmp);

				sendto(pfd[k].fd, out, len, 0, (void *)&ss, sl);
			} else {
				struct conn *c = &conns[map[k]];
				char in[512];
				ssize_t r = read(c->fd, in, sizeof(in));

				if (r <= 0) {
					if (r < 0 && errno == EAGAIN)
						continue;
					close(c->fd);
					c->fd = -1;
					continue;
				}
				/* echo back so `hold` can check the path */
				if (write(c->fd, in, r) < 0) {
					close(c->fd);
					c->fd = -1;
				}
			}
		}
	}
}

/* ---------------------------------------------------------------- client */

struct kv {
	char key[64];
	int count;
	int max_ms;
};

static void kv_add(struct kv *t, int *n, const char *key, int ms)
{
	for (int i = 0; i < *n; i++)
		if (!strcmp(t[i].key, key)) {
			t[i].count++;
			if (ms > t[i].max_ms)
				t[i].max_ms = ms;
			return;
		}
	if (*n >= MAX_KEYS)
		return;
	snprintf(t[*n].key, sizeof(t[*n].key), "%s", key);
	t[*n].count = 1;
	t[*n].max_ms = ms;
	(*n)++;
}

static const char *err_kind(int e)
{
	switch (e) {
	case ECONNREFUSED: return "ECONNREFUSED";
	case EPERM: return "EPERM";
	case ETIMEDOUT: return "TIMEOUT";
	case ECONNRESET: return "ECONNRESET";
	case EHOSTUNREACH: return "EHOSTUNREACH";
	case ENETUNREACH: return "ENETUNREACH";
	case EACCES: return "EACCES";
	case EPIPE: return "EPIPE";
	case EIO: return "EOF";
	default: return "EOTHER";
	}
}

/* Waits for fd to be readable/writable until deadline; 0, -ETIMEDOUT or
 * -errno. */
static int wait_fd(int fd, short ev, int64_t deadline)
{
	for (;;) {
		int left = (int)(deadline - now_ms());
		struct pollfd p = { .fd = fd, .events = ev };

		if (left <= 0)
			return -ETIMEDOUT;
		int r = poll(&p, 1, left);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -ETIMEDOUT;
		return 0;
	}
}

/* Reads one line "<id> <addr>" into line; 0 or -errno. */
static int read_line(int fd, char *line, size_t len, int64_t deadline)
{
	size_t got = 0;

	while (got + 1 < len) {
		int r = wait_fd(fd, POLLIN, deadline);

		if (r)
			return r;
		ssize_t n = recv(fd, line + got, len - 1 - got, MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		got += n;
		line[got] = 0;
		if (strchr(line, '\n'))
			return 0;
	}
	return 0;
}

static int tcp_connect(const struct sockaddr_storage *dst, socklen_t sl,
		       int sport, int64_t deadline, int *out)
{
	int fd = socket(dst->ss_family, SOCK_STREAM | SOCK_NONBLOCK, 0), r;
	int one = 1;
	socklen_t el = sizeof(r);

	if (fd < 0)
		return -errno;
	if (sport) {
		struct sockaddr_storage b = { .ss_family = dst->ss_family };

		((struct sockaddr_in *)&b)->sin_port = htons(sport);
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, (void *)&b, dst->ss_family == AF_INET ?
			 sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6))) {
			r = -errno;
			goto fail;
		}
	}
	if (connect(fd, (const void *)dst, sl) && errno != EINPROGRESS) {
		r = -errno;
		goto fail;
	}
	r = wait_fd(fd, POLLOUT, deadline);
	if (r)
		goto fail;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &r, &el) || r) {
		r = -r;
		goto fail;
	}
	*out = fd;
	return 0;
fail:
	close(fd);
	return r;
}

static int parse_reply(const char *line, char *id, char *src)
{
	if (sscanf(line, "%63s %63s", id, src) != 2)
		return -EIO;
	return 0;
}

struct client_opts {
	const char *targets;	/* --targets list, or NULL: addr/port */
	bool rr;		/* --pick rr */
	bool time;		/* --time */
};

static int client(const char *addr, int port, const char *proto, int n,
		  int timeout_ms, int interval_ms, bool one_socket, int sport,
		  bool seq, int max_fail, const struct client_opts *co)
{
	struct kv ids[MAX_KEYS], srcs[MAX_KEYS], errs[MAX_KEYS];
	int nid = 0, nsrc = 0, nerr = 0, ok = 0, fail = 0, ufd = -1;
	static struct sockaddr_storage dsts[MAX_TARGETS];
	socklen_t dsls[MAX_TARGETS];
	int ndst = 1;
	struct timespec ts0, ts1;
	/* xorshift32: cheap and good enough to spread like numgen random */
	uint32_t rnd = (uint32_t)getpid() * 2654435761u ^ (uint32_t)now_ms();
	bool tcp = !strcmp(proto, "tcp"), udpu = !strcmp(proto, "udpu");

	if (co->targets) {
		ndst = parse_targets(co->targets, dsts, dsls, MAX_TARGETS);
		if (ndst < 0) {
			fprintf(stderr, "kpx_echo: bad --targets %s (A:P,[V6]:P,..., "
				"at most %d)\n", co->targets, MAX_TARGETS);
			return 2;
		}
	} else if (parse_sa(addr, port, &dsts[0], &dsls[0])) {
		fprintf(stderr, "kpx_echo: bad address %s\n", addr);
		return 2;
	}
	if (!rnd)
		rnd = 1;
	if (!tcp && strcmp(proto, "udp") && !udpu) {
		fprintf(stderr, "kpx_echo: bad proto %s\n", proto);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	clock_gettime(CLOCK_MONOTONIC, &ts0);
	for (int i = 0; i < n; i++) {
		int64_t t0 = now_ms(), deadline = t0 + timeout_ms;
		char line[256] = "", id[64], src[64];
		int fd = -1, r, t = 0;

		if (ndst > 1 && co->rr) {
			t = i % ndst;
		} else if (ndst > 1) {
			rnd ^= rnd << 13;
			rnd ^= rnd >> 17;
			rnd ^= rnd << 5;
			t = (int)(rnd % (uint32_t)ndst);
		}
		struct sockaddr_storage dst = dsts[t];
		socklen_t sl = dsls[t];

		if (tcp) {
			r = tcp_connect(&dst, sl, sport, deadline, &fd);
			if (!r)
				r = read_line(fd, line, sizeof(line), deadline);
		} else {
			if (ufd < 0 || !one_socket) {
				int one = 1;

				ufd = socket(dst.ss_family, SOCK_DGRAM, 0);
				if (sport) {
					struct sockaddr_storage b = {
						.ss_family = dst.ss_family };

					((struct sockaddr_in *)&b)->sin_port =
						htons(sport);
					setsockopt(ufd, SOL_SOCKET, SO_REUSEADDR,
						   &one, sizeof(one));
					bind(ufd, (void *)&b,
					     dst.ss_family == AF_INET ?
					     sizeof(struct sockaddr_in) :
					     sizeof(struct sockaddr_in6));
				}
				if (!udpu && connect(ufd, (void *)&dst, sl)) {
					r = -errno;
					goto done;
				}
			}
			fd = ufd;
			if (udpu)
				r = sendto(fd, "q\n", 2, 0, (void *)&dst, sl) < 0 ?
					-errno : 0;
			else
				r = send(fd, "q\n", 2, 0) < 0 ? -errno : 0;
			if (!r)
				r = read_line(fd, line, sizeof(line), deadline);
		}
done:;
		int ms = (int)(now_ms() - t0);

		if (!r)
			r = parse_reply(line, id, src);
		if (!r) {
			ok++;
			kv_add(ids, &nid, id, ms);
			kv_add(srcs, &nsrc, src, ms);
			if (seq)
				printf("seq %d %s %d\n", i, id, ms);
		} else {
			fail++;
			kv_add(errs, &nerr, err_kind(-r), ms);
			if (seq)
				printf("seq %d ERR:%s %d\n", i, err_kind(-r), ms);
		}
		if (tcp && fd >= 0)
			close(fd);
		if (!tcp && !one_socket && ufd >= 0) {
			close(ufd);
			ufd = -1;
		}
		if (max_fail && fail >= max_fail) {
			n = i + 1;
			break;
		}
		if (interval_ms && i + 1 < n)
			usleep(interval_ms * 1000);
	}
	clock_gettime(CLOCK_MONOTONIC, &ts1);
	printf("attempts %d\nok %d\nfail %d\n", n, ok, fail);
	for (int i = 0; i < nid; i++)
		printf("id %s %d\n", ids[i].key, ids[i].count);
	for (int i = 0; i < nsrc; i++)
		printf("src %s %d\n", srcs[i].key, srcs[i].count);
	for (int i = 0; i < nerr; i++)
		printf("err %s %d %d\n", errs[i].key, errs[i].count,
		       errs[i].max_ms);
	if (co->time) {
		int64_t us = (ts1.tv_sec - ts0.tv_sec) * 1000000LL +
			     (ts1.tv_nsec - ts0.tv_nsec) / 1000;

		printf("elapsed_us %lld\nrate %lld\n", (long long)us,
		       us > 0 ? (long long)ok * 1000000 / us : 0LL);
	}
	return 0;
}

/* ------------------------------------------------------------------ hold */

static int hold(const char *addr, int port, int secs)
{
	struct sockaddr_storage dst;
	socklen_t sl;
	char line[256] = "", id[64] = "?", src[64];
	int fd, r, pings = 0;
	int64_t t0 = now_ms(), end = t0 + secs * 1000LL;

	signal(SIGPIPE, SIG_IGN);
	if (parse_sa(addr, port, &dst, &sl) || secs < 0 || secs > 600) {
		fprintf(stderr, "kpx_echo: bad hold arguments\n");
		return 2;
	}
	r = tcp_connect(&dst, sl, 0, now_ms() + 2000, &fd);
	if (!r)
		r = read_line(fd, line, sizeof(line), now_ms() + 2000);
	if (!r)
		r = parse_reply(line, id, src);
	if (r)
		goto fail;
	printf("hold connected id=%s\n", id);
	fflush(stdout);
	while (now_ms() < end) {
		char ping[32];
		int len = snprintf(ping, sizeof(ping), "ping %d\n", pings);

		if (send(fd, ping, len, MSG_NOSIGNAL) != len) {
			r = -errno;
			goto fail;
		}
		memset(line, 0, sizeof(line));
		r = read_line(fd, line, sizeof(line), now_ms() + 1000);
		if (r)
			goto fail;
		if (strncmp(line, ping, len)) {
			r = -EIO;
			goto fail;
		}
		pings++;
		usleep(100 * 1000);
	}
	printf("hold ok id=%s pings=%d\n", id, pings);
	close(fd);
	return 0;
fail:
	printf("hold fail id=%s after_ms=%lld pings=%d reason=%s\n", id,
	       (long long)(now_ms() - t0), pings, err_kind(-r));
	return 1;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: kpx_echo server --id NAME --port P[,P] [--bind A]\n"
		"       kpx_echo client --addr A --port P [--proto tcp|udp|udpu]"
		" [-n N] [--timeout-ms T] [--interval-ms I] [--one-socket]"
		" [--sport P] [--seq] [--max-fail K] [--time]\n"
		"       kpx_echo client --targets A:P[,A:P...] [--pick random|rr]"
		" [same options]\n"
		"       kpx_echo hold --addr A --port P -d SECS\n");
}

int main(int argc, char **argv)
{
	const char *id = "echo", *ports = NULL, *addr = NULL, *proto = "tcp";
	const char *bind_addr = NULL;
	int port = 0, n = 1, timeout_ms = 1000, interval_ms = 0, secs = 5;
	int sport = 0, max_fail = 0;
	bool one_socket = false, seq = false;
	struct client_opts co = { 0 };

	if (argc < 2) {
		usage();
		return 2;
	}
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--one-socket")) {
			one_socket = true;
			continue;
		}
		if (!strcmp(a, "--seq")) {
			seq = true;
			continue;
		}
		if (!strcmp(a, "--time")) {
			co.time = true;
			continue;
		}
		if (!v) {
			usage();
			return 2;
		}
		i++;
		if (!strcmp(a, "--id"))
			id = v;
		else if (!strcmp(a, "--port")) {
			ports = v;
			port = atoi(v);
		} else if (!strcmp(a, "--bind"))
			bind_addr = v;
		else if (!strcmp(a, "--addr"))
			addr = v;
		else if (!strcmp(a, "--proto"))
			proto = v;
		else if (!strcmp(a, "-n"))
			n = atoi(v);
		else if (!strcmp(a, "--timeout-ms"))
			timeout_ms = atoi(v);
		else if (!strcmp(a, "--interval-ms"))
			interval_ms = atoi(v);
		else if (!strcmp(a, "--max-fail"))
			max_fail = atoi(v);
		else if (!strcmp(a, "--sport"))
			sport = atoi(v);
		else if (!strcmp(a, "--targets"))
			co.targets = v;
		else if (!strcmp(a, "--pick") && (!strcmp(v, "rr") ||
						  !strcmp(v, "random")))
			co.rr = !strcmp(v, "rr");
		else if (!strcmp(a, "-d"))
			secs = atoi(v);
		else {
			usage();
			return 2;
		}
	}
	if (n < 1 || n > 100000 || timeout_ms < 1 || timeout_ms > 60000 ||
	    interval_ms < 0 || interval_ms > 10000) {
		fprintf(stderr, "kpx_echo: out of bounds (n<=100000, "
				"timeout-ms<=60000, interval-ms<=10000)\n");
		return 2;
	}
	if (!strcmp(argv[1], "server") && ports)
		return server(id, ports, bind_addr);
	if (!strcmp(argv[1], "client") && ((addr && port) || co.targets))
		return client(addr, port, proto, n, timeout_ms, interval_ms,
			      one_socket, sport, seq, max_fail, &co);
	if (!strcmp(argv[1], "hold") && addr && port)
		return hold(addr, port, secs);
	usage();
	return 2;
}
