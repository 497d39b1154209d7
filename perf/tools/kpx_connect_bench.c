// SPDX-License-Identifier: Apache-2.0
/*
 * connect() cost through kpx's socket-LB hook (perf/connect_bench.sh).
 *
 *   kpx_connect_bench load N CGROUP BPFROOT
 *       Programs N ClusterIP TCP services (198.18.0.1 + i, port 80, one
 *       endpoint 198.19.250.1:8080; service 0 also has UDP port 80) through
 *       the bpf backend itself, attaches to CGROUP, pins under BPFROOT,
 *       and exits (links and maps stay pinned). Prints the first sync, a
 *       sync of the unchanged plan, the median of CHANGES syncs after a
 *       one-endpoint change to one service (change_*: the agent's common
 *       case) and the median of RESYNCS full resyncs, wall and CPU ms.
 *   kpx_connect_bench run ADDR PORT ITERS tcp|udp [BPFROOT]
 *       ITERS x (socket, connect, close); tcp: a listener on
 *       198.19.250.1:8080 in this process accepts, close is an RST (no
 *       TIME_WAIT pile-up). Prints mean ns per iteration and, with BPFROOT,
 *       the connect4 program's own run time per call (bpf_stats, enabled
 *       through BPF_ENABLE_STATS for the run only).
 *   kpx_connect_bench conn A:P[,A:P...] ITERS [TIMEOUT_MS]
 *       ITERS sequential TCP connections to kpx_echo servers through
 *       whatever dataplane the namespace has (perf/lib/kp_datapath.sh):
 *       each one socket, non-blocking connect timed until writable (the
 *       first packet's round trip: SYN through the dataplane, SYN-ACK
 *       back), the server's "<id> <peer>" line read, RST close (no
 *       TIME_WAIT, no port exhaustion). With several targets one is
 *       picked at random per connection (the fair "direct" floor of a
 *       Service). Prints the rate (timed in the process), connect
 *       latency percentiles and how many distinct servers answered;
 *       stops after 20 failures.
 * Must run inside a throwaway network namespace.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "agent/backend.h"
#include "agent/config.h"
#include "plan/plan.h"

#define BE_ADDR 0xc613fa01u /* 198.19.250.1 */
#define BE_PORT 8080

static double now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

/* CPU time of this process (user + system): what a sync costs, less
 * exposed than wall time to other load on a shared machine. */
static double cpu_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static void svcport(struct kpx_plan_svcport *sp, size_t i, int proto)
{
	char s[64];

	snprintf(s, sizeof(s), "bench/s%06zu:p/%s/v4", i,
		 proto == IPPROTO_TCP ? "TCP" : "UDP");
	sp->id = kpx_intern(s);
	sp->ns = kpx_intern("bench");
	snprintf(s, sizeof(s), "s%06zu", i);
	sp->name = kpx_intern(s);
	sp->port_name = kpx_intern("p");
	sp->family = AF_INET;
	sp->proto = (uint8_t)proto;
	sp->port = 80;
	sp->type = KPX_SVC_CLUSTER_IP;
	sp->frontends = calloc(1, sizeof(*sp->frontends));
	sp->n_frontends = 1;
	sp->frontends[0].kind = KPX_FE_CLUSTER_IP;
	sp->frontends[0].addr.family = AF_INET;
	sp->frontends[0].addr.v4.s_addr = htonl(0xc6120000u + (uint32_t)i + 1);
	sp->frontends[0].port = 80;
	sp->endpoints = calloc(1, sizeof(*sp->endpoints));
	sp->internal = calloc(1, sizeof(uint32_t));
	sp->n_endpoints = sp->n_internal = 1;
	sp->endpoints[0].addr.family = AF_INET;
	sp->endpoints[0].addr.v4.s_addr = htonl(BE_ADDR);
	sp->endpoints[0].port = BE_PORT;
	sp->endpoints[0].flags = KPX_EP_READY | KPX_EP_SERVING;
	sp->hash = i * 2 + (proto == IPPROTO_UDP) + 1;
}

#define CHANGES 20 /* even: the plan ends as it started */
#define RESYNCS 3

static int dbl_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/*
 * CHANGES syncs, each after one endpoint came to (or left) the middle
 * service; median wall and CPU ns into *wall / *cpu. The plan's hash
 * changes with every step, as kpx_plan_update's would.
 */
static int one_change_syncs(struct kpx_backend *b, struct kpx_plan *plan,
			    double *wall, double *cpu)
{
	struct kpx_plan_svcport *sp = &plan->svcports[plan->n_svcports / 2];
	struct kpx_plan_endpoint *ep1 = sp->endpoints, ep2[2];
	uint32_t *set1 = sp->internal, set2[2] = { 0, 1 };
	double w[CHANGES], c[CHANGES];
	int err = 0;

	ep2[0] = ep2[1] = ep1[0];
	ep2[1].addr.v4.s_addr = htonl(BE_ADDR + 1);
	for (int k = 0; k < CHANGES && !err; k++) {
		double t0, c0;
		bool two = k % 2 == 0;

		sp->endpoints = two ? ep2 : ep1;
		sp->internal = two ? set2 : set1;
		sp->n_endpoints = sp->n_internal = two ? 2 : 1;
		sp->hash = (1ull << 63) + (uint64_t)k;
		t0 = now_ns();
		c0 = cpu_ns();
		err = kpx_bpf_backend.sync(b, plan);
		c[k] = cpu_ns() - c0;
		w[k] = now_ns() - t0;
	}
	qsort(w, CHANGES, sizeof(double), dbl_cmp);
	qsort(c, CHANGES, sizeof(double), dbl_cmp);
	*wall = (w[CHANGES / 2 - 1] + w[CHANGES / 2]) / 2;
	*cpu = (c[CHANGES / 2 - 1] + c[CHANGES / 2]) / 2;
	return err;
}

static int load(size_t n, const char *cg, const char *root)
{
	struct kpx_config cfg;
	struct kpx_backend *b;
	struct kpx_plan plan;
	double t;
	int err;

	if (n < 1 || n > 120000) {
		fprintf(stderr, "N must be 1..120000 (198.18.0.0/15)\n");
		return 2;
	}
	kpx_config_defaults(&cfg);
	snprintf(cfg.cgroup_path, sizeof(cfg.cgroup_path), "%s", cg);
	snprintf(cfg.bpf_root, sizeof(cfg.bpf_root), "%s", root);
	cfg.bpf_services_max = (uint32_t)(2 * n + 1024);
	cfg.bpf_backends_max = 1024;
	memset(&plan, 0, sizeof(plan));
	plan.svcports = calloc(n + 1, sizeof(*plan.svcports));
	for (size_t i = 0; i < n; i++)
		svcport(&plan.svcports[i], i, IPPROTO_TCP);
	svcport(&plan.svcports[n], 0, IPPROTO_UDP);
	plan.n_svcports = n + 1;
	err = kpx_bpf_backend.open(&cfg, &b);
	if (err) {
		fprintf(stderr, "bpf open: %s\n", strerror(-err));
		return 1;
	}
	double t_sync, t_idle, t_resync, c, c_sync, c_idle, c_resync;
	double t_change = 0, c_change = 0;

	t = now_ns();
	c = cpu_ns();
	err = kpx_bpf_backend.sync(b, &plan);
	c_sync = cpu_ns() - c;
	t_sync = now_ns() - t;
	/* What the agent pays later for the same plan: a sync with nothing
	 * changed, and the periodic full resync (re-reads the pins). */
	t = now_ns();
	c = cpu_ns();
	if (!err)
		err = kpx_bpf_backend.sync(b, &plan);
	c_idle = cpu_ns() - c;
	t_idle = now_ns() - t;
	if (!err)
		err = one_change_syncs(b, &plan, &t_change, &c_change);
	/* Median of RESYNCS: the first one after incremental syncs meets
	 * caches the others find warm. */
	{
		double w[RESYNCS], cr[RESYNCS];

		for (int k = 0; k < RESYNCS; k++) {
			t = now_ns();
			c = cpu_ns();
			if (!err)
				err = kpx_bpf_backend.resync(b, &plan);
			cr[k] = cpu_ns() - c;
			w[k] = now_ns() - t;
		}
		qsort(w, RESYNCS, sizeof(double), dbl_cmp);
		qsort(cr, RESYNCS, sizeof(double), dbl_cmp);
		t_resync = w[RESYNCS / 2];
		c_resync = cr[RESYNCS / 2];
	}
	printf("load services=%zu sync_ms=%.1f idle_ms=%.3f change_ms=%.3f "
	       "resync_ms=%.1f sync_cpu_ms=%.1f idle_cpu_ms=%.3f "
	       "change_cpu_ms=%.3f resync_cpu_ms=%.1f err=%d\n",
	       n, t_sync / 1e6, t_idle / 1e6, t_change / 1e6, t_resync / 1e6,
	       c_sync / 1e6, c_idle / 1e6, c_change / 1e6, c_resync / 1e6, err);
	kpx_bpf_backend.close(b);
	return err ? 1 : 0;
}

static int lfd = -1;

static void *acceptor(void *arg)
{
	(void)arg;
	for (;;) {
		int c = accept(lfd, NULL, NULL);

		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return NULL;
		}
		close(c);
	}
}

static int prog_stats(const char *root, __u64 *cnt, __u64 *ns)
{
	char path[512];
	struct bpf_link_info li = {};
	struct bpf_prog_info pi = {};
	__u32 len = sizeof(li);
	int fd, pfd;

	snprintf(path, sizeof(path), "%s/links/kpx_connect4", root);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return -errno;
	if (bpf_obj_get_info_by_fd(fd, &li, &len)) {
		close(fd);
		return -errno;
	}
	close(fd);
	pfd = bpf_prog_get_fd_by_id(li.prog_id);
	if (pfd < 0)
		return -errno;
	len = sizeof(pi);
	if (bpf_obj_get_info_by_fd(pfd, &pi, &len)) {
		close(pfd);
		return -errno;
	}
	close(pfd);
	*cnt = pi.run_cnt;
	*ns = pi.run_time_ns;
	return 0;
}

static int run(const char *addr, int port, long iters, bool tcp,
	       const char *root)
{
	struct sockaddr_in dst = { .sin_family = AF_INET,
				   .sin_port = htons((uint16_t)port) };
	struct linger lg = { 1, 0 };
	__u64 c0 = 0, n0 = 0, c1 = 0, n1 = 0;
	int stats_fd = -1, fails = 0;
	pthread_t th;
	double t;

	if (inet_pton(AF_INET, addr, &dst.sin_addr) != 1 || iters < 1 ||
	    iters > 1000000) {
		fprintf(stderr, "bad address or ITERS (1..1000000)\n");
		return 2;
	}
	if (tcp) {
		struct sockaddr_in l = { .sin_family = AF_INET,
					 .sin_port = htons(BE_PORT),
					 .sin_addr.s_addr = htonl(BE_ADDR) };
		int one = 1;

		lfd = socket(AF_INET, SOCK_STREAM, 0);
		setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(lfd, (void *)&l, sizeof(l)) || listen(lfd, 4096)) {
			perror("listen 198.19.250.1:8080");
			return 1;
		}
		pthread_create(&th, NULL, acceptor, NULL);
	}
	if (root) {
		stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
		if (stats_fd < 0 || prog_stats(root, &c0, &n0))
			root = NULL;
	}
	t = now_ns();
	for (long i = 0; i < iters; i++) {
		int s = socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);

		if (s < 0) {
			perror("socket");
			return 1;
		}
		if (connect(s, (void *)&dst, sizeof(dst)))
			fails++;
		if (tcp)
			setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(s);
	}
	t = now_ns() - t;
	printf("run addr=%s proto=%s iters=%ld fails=%d ns_per_op=%.0f", addr,
	       tcp ? "tcp" : "udp", iters, fails, t / (double)iters);
	if (root && prog_stats(root, &c1, &n1) == 0 && c1 > c0)
		printf(" prog_runs=%llu prog_ns_per_run=%.1f",
		       (unsigned long long)(c1 - c0),
		       (double)(n1 - n0) / (double)(c1 - c0));
	printf("\n");
	if (stats_fd >= 0)
		close(stats_fd);
	return fails ? 1 : 0;
}


#define CONN_TARGETS 64
#define CONN_IDS 64
#define CONN_MAX_FAIL 20

/* Waits for EVENTS on FD until DEADLINE (now_ns() scale); 0 or -errno. */
static int wait_fd(int fd, short events, double deadline)
{
	struct pollfd p = { .fd = fd, .events = events };

	for (;;) {
		int ms = (int)((deadline - now_ns()) / 1e6), r;

		if (ms < 0)
			return -ETIMEDOUT;
		r = poll(&p, 1, ms);
		if (r > 0)
			return 0;
		if (r == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

/*
 * One connection: 0 and the connect time in *lat_ns, the answering
 * server's identity in id; -errno on failure.
 */
static int conn_one(const struct sockaddr_in *dst, int timeout_ms,
		    double *lat_ns, char *id, size_t idlen)
{
	struct linger lg = { 1, 0 };
	char buf[256];
	double t0, deadline;
	socklen_t sl = sizeof(int);
	int s, err = 0, soerr = 0;
	ssize_t n;

	s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (s < 0)
		return -errno;
	t0 = now_ns();
	deadline = t0 + timeout_ms * 1e6;
	if (connect(s, (const void *)dst, sizeof(*dst)) && errno != EINPROGRESS) {
		err = -errno;
		goto out;
	}
	err = wait_fd(s, POLLOUT, deadline);
	if (err)
		goto out;
	*lat_ns = now_ns() - t0;
	if (getsockopt(s, SOL_SOCKET, SO_ERROR, &soerr, &sl) || soerr) {
		err = soerr ? -soerr : -errno;
		goto out;
	}
	err = wait_fd(s, POLLIN, deadline);
	if (err)
		goto out;
	n = read(s, buf, sizeof(buf) - 1);
	if (n <= 0) {
		err = n < 0 ? -errno : -ECONNRESET;
		goto out;
	}
	buf[n] = 0;
	buf[strcspn(buf, " \n")] = 0;
	buf[idlen - 1] = 0;	/* identities are short; keep the prefix */
	memcpy(id, buf, strlen(buf) + 1);
out:
	/* RST: neither side keeps TIME_WAIT, and conntrack forgets at once */
	setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(s);
	return err;
}

static int conn(const char *list, long iters, int timeout_ms)
{
	struct sockaddr_in dst[CONN_TARGETS];
	char ids[CONN_IDS][64], buf[4096], *save = NULL, *tok;
	int nt = 0, nids = 0, fails = 0, lasterr = 0;
	long ok = 0, i;
	double *lat, t;

	if (iters < 1 || iters > 1000000 || timeout_ms < 1 ||
	    snprintf(buf, sizeof(buf), "%s", list) >= (int)sizeof(buf)) {
		fprintf(stderr, "bad ITERS (1..1000000), TIMEOUT_MS or targets\n");
		return 2;
	}
	for (tok = strtok_r(buf, ",", &save); tok && nt < CONN_TARGETS;
	     tok = strtok_r(NULL, ",", &save)) {
		char *c = strrchr(tok, ':');

		memset(&dst[nt], 0, sizeof(dst[nt]));
		dst[nt].sin_family = AF_INET;
		if (!c || (*c = 0, inet_pton(AF_INET, tok, &dst[nt].sin_addr) != 1) ||
		    atoi(c + 1) < 1 || atoi(c + 1) > 65535) {
			fprintf(stderr, "bad target (A:P, IPv4)\n");
			return 2;
		}
		dst[nt++].sin_port = htons((uint16_t)atoi(c + 1));
	}
	lat = calloc((size_t)iters, sizeof(*lat));
	if (!nt || !lat) {
		free(lat);
		return 2;
	}
	srand((unsigned)now_ns());
	t = now_ns();
	for (i = 0; i < iters && fails < CONN_MAX_FAIL; i++) {
		char id[64] = "";
		int k = nt > 1 ? rand() % nt : 0, err, j;

		err = conn_one(&dst[k], timeout_ms, &lat[ok], id, sizeof(id));
		if (err) {
			fails++;
			lasterr = -err;
			continue;
		}
		ok++;
		for (j = 0; j < nids && strcmp(ids[j], id); j++)
			;
		if (j == nids && nids < CONN_IDS)
			snprintf(ids[nids++], sizeof(ids[0]), "%s", id);
	}
	t = now_ns() - t;
	qsort(lat, (size_t)ok, sizeof(*lat), dbl_cmp);
#define PCT(p) (ok ? lat[(long)((double)(ok - 1) * (p))] / 1e3 : 0)
	printf("conn targets=%d iters=%ld ok=%ld fails=%d rate=%.0f p50_us=%.0f "
	       "p90_us=%.0f p99_us=%.0f max_us=%.0f servers=%d lasterr=%s\n",
	       nt, i, ok, fails, ok ? (double)ok / (t / 1e9) : 0, PCT(0.5),
	       PCT(0.9), PCT(0.99), PCT(1.0), nids,
	       lasterr ? strerror(lasterr) : "-");
#undef PCT
	free(lat);
	return fails ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc >= 5 && !strcmp(argv[1], "load"))
		return load(strtoul(argv[2], NULL, 10), argv[3], argv[4]);
	if (argc >= 6 && !strcmp(argv[1], "run"))
		return run(argv[2], atoi(argv[3]), atol(argv[4]),
			   !strcmp(argv[5], "tcp"), argc > 6 ? argv[6] : NULL);
	if (argc >= 4 && !strcmp(argv[1], "conn"))
		return conn(argv[2], atol(argv[3]), argc > 4 ? atoi(argv[4]) : 1000);
	fprintf(stderr, "usage: %s load N CGROUP BPFROOT | run ADDR PORT ITERS "
			"tcp|udp [BPFROOT] | conn A:P[,A:P...] ITERS [TIMEOUT_MS]\n",
		argv[0]);
	return 2;
}
