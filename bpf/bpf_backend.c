// SPDX-License-Identifier: Apache-2.0
/*
 * The bpf backend (kpx_bpf_backend, see agent/backend.h): loads the
 * socket-LB object with maps pinned under --bpf-root, attaches its nine
 * cgroup programs through bpf_links pinned under <bpf-root>/links (a
 * restarted agent swaps the program inside the existing link instead of
 * attaching twice), keeps the maps equal to the plan with the map writer,
 * destroys connected UDP sockets toward removed backends, and hands the
 * external datapath to bpf/nodeport.
 * Owns: the sock_lb object, its links and pins. Must not: touch tc/XDP.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <json-c/json.h>

#include "agent/backend.h"
#include "bpf/ct_handoff.h"
#include "bpf/flows.h"
#include "bpf/kpx_abi.h"
#include "bpf/loader.h"
#include "bpf/map_walk.h"
#include "bpf/map_writer.h"
#include "bpf/nat_keep.h"
#include "bpf/nodeport.h"
#include "bpf/sock_lb.skel.h"
#include "common/log.h"
#include "common/loop.h"

/* Pin paths are built from --bpf-root (< PATH_MAX, checked by the loader's
 * mkdir) plus short fixed names; truncation cannot reach a valid path. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

#define KPX_NETNS_MAX 4096

struct kpx_backend {
	struct kpx_config cfg;
	int root_lock; /* fd holding the --bpf-root lock; -1: none */
	struct sock_lb *skel;
	int fds[KPX_MAP_N];
	struct kpx_map_writer *w;
	struct kpx_nodeport *np;
	/* The last sync's svcports that could not be programmed (the
	 * others were): for the agent's `skipped` op. */
	size_t n_skipped;
	char skipped_msg[320];
	/* UDP backends removed during the current sync (loop only). */
	struct kpx_udp_destroy_key *gone;
	size_t n_gone, cap_gone;
	/* The UDP cleanup worker: uw_q/uw_n/uw_cap, uw_stop and the
	 * counters below are guarded by uw_mu. */
	pthread_t uw_thread;
	pthread_mutex_t uw_mu;
	pthread_cond_t uw_cv;
	bool uw_started, uw_stop;
	struct kpx_udp_destroy_key *uw_q;
	size_t uw_n, uw_cap;
	uint64_t udp_destroy_runs;
	uint64_t uw_last_ms;
};

struct hook {
	const char *prog; /* program name == link pin name */
	enum bpf_attach_type type;
};

static const struct hook hooks[] = {
	/* First: a socket must not get a sock slot before the program that
	 * frees it is attached. */
	{ "kpx_sock_release", BPF_CGROUP_INET_SOCK_RELEASE },
	{ "kpx_connect4", BPF_CGROUP_INET4_CONNECT },
	{ "kpx_connect6", BPF_CGROUP_INET6_CONNECT },
	{ "kpx_sendmsg4", BPF_CGROUP_UDP4_SENDMSG },
	{ "kpx_sendmsg6", BPF_CGROUP_UDP6_SENDMSG },
	{ "kpx_recvmsg4", BPF_CGROUP_UDP4_RECVMSG },
	{ "kpx_recvmsg6", BPF_CGROUP_UDP6_RECVMSG },
	{ "kpx_getpeername4", BPF_CGROUP_INET4_GETPEERNAME },
	{ "kpx_getpeername6", BPF_CGROUP_INET6_GETPEERNAME },
};
#define N_HOOKS (sizeof(hooks) / sizeof(hooks[0]))

static const char *root_of(const struct kpx_config *cfg)
{
	return cfg->bpf_root[0] ? cfg->bpf_root : "/sys/fs/bpf/kpx";
}

static int cgroup_of(const struct kpx_config *cfg, char *buf, size_t len)
{
	if (cfg->cgroup_path[0]) {
		snprintf(buf, len, "%s", cfg->cgroup_path);
		return 0;
	}
	return kpx_cgroup2_mount(buf, len) ? 0 : -ENOENT;
}

static int libbpf_quiet(enum libbpf_print_level level, const char *fmt,
			va_list ap)
{
	if (level == LIBBPF_DEBUG && kpx_log_verbosity < 6)
		return 0;
	if (level == LIBBPF_INFO && kpx_log_verbosity < 4)
		return 0;
	return vfprintf(stderr, fmt, ap);
}

static int bpf_probe(const struct kpx_config *cfg)
{
	char cg[PATH_MAX];

	if (access("/sys/kernel/btf/vmlinux", R_OK)) {
		kpx_warn("bpf: kernel BTF (/sys/kernel/btf/vmlinux) missing");
		return -EOPNOTSUPP;
	}
	if (cgroup_of(cfg, cg, sizeof(cg)) || access(cg, R_OK)) {
		kpx_warn("bpf: no cgroup v2 directory for the socket hooks");
		return -EOPNOTSUPP;
	}
	if (libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, NULL) !=
	    1) {
		kpx_warn("bpf: kernel lacks cgroup sock_addr programs");
		return -EOPNOTSUPP;
	}
	return 0;
}

/* ---- links ---- */

static uint64_t cgroup_id(int cgfd)
{
	struct stat st;

	/* On cgroup2 the inode number is the cgroup id. */
	return fstat(cgfd, &st) ? 0 : st.st_ino;
}

static int attach_hook(const struct hook *h, int prog_fd, int cgfd,
		       const char *dir)
{
	char path[PATH_MAX];
	struct bpf_link_info info = {};
	__u32 len = sizeof(info);
	int fd, err;

	snprintf(path, sizeof(path), "%s/%s", dir, h->prog);
	fd = bpf_obj_get(path);
	if (fd >= 0) {
		if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0 &&
		    info.type == BPF_LINK_TYPE_CGROUP &&
		    info.cgroup.cgroup_id == cgroup_id(cgfd) &&
		    info.cgroup.attach_type == h->type &&
		    bpf_link_update(fd, prog_fd, NULL) == 0) {
			/* Same cgroup: swap in this build's program; the
			 * attachment (and every socket under it) is kept. */
			close(fd);
			return 0;
		}
		kpx_info("bpf: link %s points elsewhere or is dead; "
			 "re-attaching", path);
		bpf_link_detach(fd);
		close(fd);
		unlink(path);
	}
	fd = bpf_link_create(prog_fd, cgfd, h->type, NULL);
	if (fd < 0) {
		err = -errno;
		kpx_err("bpf: attach %s to cgroup: %s", h->prog, strerror(-err));
		return err;
	}
	if (bpf_obj_pin(fd, path)) {
		err = -errno;
		kpx_err("bpf: pin link %s: %s", path, strerror(-err));
		bpf_link_detach(fd);
		close(fd);
		return err;
	}
	close(fd);
	return 0;
}

static int attach_all(struct kpx_backend *b)
{
	char cg[PATH_MAX], dir[PATH_MAX];
	int cgfd, err = 0;

	if (cgroup_of(&b->cfg, cg, sizeof(cg))) {
		kpx_err("bpf: no cgroup2 mount found for the socket hooks");
		return -ENOENT;
	}
	snprintf(dir, sizeof(dir), "%s/links", root_of(&b->cfg));
	if (mkdir(dir, 0700) && errno != EEXIST) {
		err = -errno;
		kpx_err("bpf: mkdir %s: %s", dir, strerror(-err));
		return err;
	}
	cgfd = open(cg, O_RDONLY | O_DIRECTORY);
	if (cgfd < 0) {
		err = -errno;
		kpx_err("bpf: cgroup %s: %s", cg, strerror(-err));
		return err;
	}
	for (size_t i = 0; i < N_HOOKS && !err; i++) {
		struct bpf_program *p = bpf_object__find_program_by_name(
			b->skel->obj, hooks[i].prog);

		err = p ? attach_hook(&hooks[i], bpf_program__fd(p), cgfd, dir)
			: -ENOENT;
	}
	close(cgfd);
	if (!err)
		kpx_info("bpf: socket LB attached to cgroup %s", cg);
	return err;
}

/* ---- UDP socket destroy, per network namespace, off the sync loop ----
 *
 * Finding the connected UDP sockets toward removed backends walks /proc
 * for every network namespace and runs the socket iterator in each: with
 * many pods that takes long, and on the agent's single-threaded loop it
 * held /healthz, the status socket and the next sync. A worker thread
 * does it; the loop only queues the (frontend, backend) pairs of a sync.
 * The worker takes everything queued at once (a burst of syncs costs one
 * walk), owns the kpx_udp_destroy map and the iterator link, and enters
 * namespaces only in its own thread (setns), returning to the agent's
 * after each run. Sockets are destroyed shortly after the sync that
 * removed their backend instead of inside it; the datapath already sends
 * new datagrams elsewhere.
 */

static void *udp_worker_main(void *arg);

/* Every distinct netns of a process on this machine (pods included). */
static size_t collect_netns(int *fds, size_t max)
{
	ino_t *seen = calloc(max, sizeof(*seen));
	size_t n = 0;
	struct dirent *de;
	DIR *d = opendir("/proc");

	if (!d || !seen) {
		if (d)
			closedir(d);
		free(seen);
		return 0;
	}
	while ((de = readdir(d)) && n < max) {
		char path[64];
		struct stat st;
		bool dup = false;
		int fd;

		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/ns/net", de->d_name);
		if (stat(path, &st))
			continue;
		for (size_t i = 0; i < n && !dup; i++)
			dup = seen[i] == st.st_ino;
		if (dup)
			continue;
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		seen[n] = st.st_ino;
		fds[n++] = fd;
	}
	closedir(d);
	free(seen);
	return n;
}

static bool udp_worker_stopping(struct kpx_backend *b)
{
	bool stop;

	pthread_mutex_lock(&b->uw_mu);
	stop = b->uw_stop;
	pthread_mutex_unlock(&b->uw_mu);
	return stop;
}

/* One run in the worker: the pairs in keys[0, n). */
static void udp_destroy_batch(struct kpx_backend *b,
			      const struct kpx_udp_destroy_key *keys, size_t n,
			      int home_ns)
{
	int map_fd = bpf_map__fd(b->skel->maps.kpx_udp_destroy);
	uint64_t t0 = kpx_now_ms();
	struct bpf_link *link;
	size_t n_ns = 0, done = 0;
	uint8_t one = 1;
	int *ns_fds;
	char buf[256];

	for (size_t i = 0; i < n; i++)
		bpf_map_update_elem(map_fd, &keys[i], &one, BPF_ANY);
	link = bpf_program__attach_iter(b->skel->progs.kpx_udp_destroy_iter,
					NULL);
	if (!link) {
		kpx_warn("bpf: udp socket iterator unavailable (%s); connected "
			 "UDP clients of removed backends are not re-balanced",
			 strerror(errno));
		goto out;
	}
	ns_fds = calloc(KPX_NETNS_MAX, sizeof(int));
	if (ns_fds) {
		n_ns = collect_netns(ns_fds, KPX_NETNS_MAX);
		/* The iterator walks the sockets of the netns current when
		 * its fd is created. */
		for (size_t i = 0; i < n_ns; i++) {
			int it;

			if (udp_worker_stopping(b) ||
			    setns(ns_fds[i], CLONE_NEWNET))
				continue;
			it = bpf_iter_create(bpf_link__fd(link));
			if (it < 0)
				continue;
			while (read(it, buf, sizeof(buf)) > 0)
				;
			close(it);
			done++;
		}
		if (home_ns >= 0 && setns(home_ns, CLONE_NEWNET))
			kpx_warn("bpf: udp cleanup worker: back to the agent's "
				 "netns: %s", strerror(errno));
		for (size_t i = 0; i < n_ns; i++)
			close(ns_fds[i]);
		free(ns_fds);
	}
	bpf_link__destroy(link);
out:
	for (size_t i = 0; i < n; i++)
		bpf_map_delete_elem(map_fd, &keys[i]);
	pthread_mutex_lock(&b->uw_mu);
	b->udp_destroy_runs++;
	b->uw_last_ms = kpx_now_ms() - t0;
	pthread_mutex_unlock(&b->uw_mu);
	kpx_dbg(1, "bpf: destroyed connected UDP sockets toward %zu removed "
		   "(frontend, backend) pairs in %zu of %zu network namespaces "
		   "in %llu ms (worker thread)", n, done, n_ns,
		(unsigned long long)(kpx_now_ms() - t0));
}

static void *udp_worker_main(void *arg)
{
	struct kpx_backend *b = arg;
	int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);

	pthread_mutex_lock(&b->uw_mu);
	for (;;) {
		struct kpx_udp_destroy_key *keys;
		size_t n;

		while (!b->uw_n && !b->uw_stop)
			pthread_cond_wait(&b->uw_cv, &b->uw_mu);
		if (b->uw_stop)
			break;
		keys = b->uw_q;
		n = b->uw_n;
		b->uw_q = NULL;
		b->uw_n = b->uw_cap = 0;
		pthread_mutex_unlock(&b->uw_mu);
		udp_destroy_batch(b, keys, n, home);
		free(keys);
		pthread_mutex_lock(&b->uw_mu);
	}
	pthread_mutex_unlock(&b->uw_mu);
	if (home >= 0)
		close(home);
	return NULL;
}

/* On the loop: hands this sync's pairs to the worker (started at the
 * first use), never waits for it. */
static void udp_destroy_run(struct kpx_backend *b)
{
	uint64_t t0 = kpx_now_ms();

	if (!b->n_gone)
		return;
	pthread_mutex_lock(&b->uw_mu);
	if (!b->uw_started) {
		if (pthread_create(&b->uw_thread, NULL, udp_worker_main, b)) {
			pthread_mutex_unlock(&b->uw_mu);
			kpx_warn("bpf: cannot start the UDP cleanup worker; "
				 "connected UDP clients of removed backends are "
				 "not re-balanced");
			b->n_gone = 0;
			return;
		}
		b->uw_started = true;
	}
	if (b->uw_n + b->n_gone > b->uw_cap) {
		size_t cap = b->uw_cap ? b->uw_cap : 16;
		void *p;

		while (cap < b->uw_n + b->n_gone)
			cap *= 2;
		p = realloc(b->uw_q, cap * sizeof(*b->uw_q));
		if (!p) {
			pthread_mutex_unlock(&b->uw_mu);
			kpx_warn("bpf: out of memory; connected UDP sockets of "
				 "%zu removed backends are not re-balanced",
				 b->n_gone);
			b->n_gone = 0;
			return;
		}
		b->uw_q = p;
		b->uw_cap = cap;
	}
	memcpy(b->uw_q + b->uw_n, b->gone, b->n_gone * sizeof(*b->gone));
	b->uw_n += b->n_gone;
	pthread_cond_signal(&b->uw_cv);
	pthread_mutex_unlock(&b->uw_mu);
	kpx_dbg(2, "bpf: queued %zu (frontend, backend) pairs for UDP cleanup "
		   "in %llu ms", b->n_gone,
		(unsigned long long)(kpx_now_ms() - t0));
	b->n_gone = 0;
}

static void udp_worker_stop(struct kpx_backend *b)
{
	if (!b->uw_started)
		return;
	pthread_mutex_lock(&b->uw_mu);
	b->uw_stop = true;
	pthread_cond_signal(&b->uw_cv);
	pthread_mutex_unlock(&b->uw_mu);
	pthread_join(b->uw_thread, NULL);
	b->uw_started = false;
}

static void udp_backend_removed(void *ctx, const struct kpx_svc_key *fe,
				const struct kpx_backend_value *be)
{
	struct kpx_backend *b = (struct kpx_backend *)((char *)ctx -
			offsetof(struct kpx_backend, fds));
	struct kpx_udp_destroy_key k = {};

	if (b->n_gone == b->cap_gone) {
		size_t cap = b->cap_gone ? 2 * b->cap_gone : 16;
		void *p = realloc(b->gone, cap * sizeof(*b->gone));

		if (!p) {
			kpx_warn("bpf: out of memory; connected UDP sockets "
				 "of a removed backend are not re-balanced");
			return;
		}
		b->gone = p;
		b->cap_gone = cap;
	}
	memcpy(k.addr, be->addr, 16);
	k.port = be->port;
	k.family = be->family;
	memcpy(k.frontend, fe->addr, 16);
	k.frontend_port = fe->port;
	b->gone[b->n_gone++] = k;
}

/* ---- open / sync / close ---- */

static void bpf_close(struct kpx_backend *b)
{
	if (!b)
		return;
	/* first: it uses the skeleton's map and program */
	udp_worker_stop(b);
	free(b->uw_q);
	pthread_mutex_destroy(&b->uw_mu);
	pthread_cond_destroy(&b->uw_cv);
	kpx_map_writer_free(b->w);
	if (b->np)
		kpx_nodeport_close(b->np);
	/* Links and maps are pinned: destroying the skeleton keeps them. */
	sock_lb__destroy(b->skel);
	/* Last: the next agent may start once everything above is done. */
	if (b->root_lock >= 0)
		close(b->root_lock);
	free(b->gone);
	free(b);
}

/* A writer whose view of the maps is read from the kernel (the pins). */
static int writer_open(struct kpx_backend *b, struct kpx_map_writer **out)
{
	struct kpx_map_writer_opts wo;
	struct kpx_map_ops ops = kpx_map_fd_ops;

	ops.ctx = b->fds;
	ops.udp_backend_removed = udp_backend_removed;
	kpx_map_writer_opts_from_config(&b->cfg, &wo);
	return kpx_map_writer_new(&ops, &wo, out);
}

/*
 * One agent per --bpf-root: two would fight over every map entry and
 * the links. An agent that is just exiting (a restart right after
 * SIGKILL/SIGTERM) gets a second to release it.
 */
static int lock_root(struct kpx_backend *b)
{
	pid_t holder = 0;
	int err;

	for (int i = 0; i < 10; i++) {
		err = kpx_bpf_lock_root(&b->cfg, &b->root_lock, &holder);
		if (err != -EBUSY)
			break;
		usleep(100 * 1000);
	}
	if (err == -EBUSY) {
		char comm[64] = "";
		char path[64];
		FILE *f;

		snprintf(path, sizeof(path), "/proc/%d/comm", (int)holder);
		if (holder > 0 && (f = fopen(path, "re"))) {
			if (fgets(comm, sizeof(comm), f))
				comm[strcspn(comm, "\n")] = '\0';
			fclose(f);
		}
		if (holder > 0)
			kpx_err("bpf root %s is in use by another process "
				"(pid %d%s%s): one agent per --bpf-root; give "
				"each agent its own",
				root_of(&b->cfg), (int)holder,
				comm[0] ? ", " : "", comm);
		else
			kpx_err("bpf root %s is in use by another process: one "
				"agent per --bpf-root; give each agent its own",
				root_of(&b->cfg));
	} else if (err) {
		kpx_err("bpf root %s: lock: %s", root_of(&b->cfg),
			strerror(-err));
	}
	return err;
}

static int bpf_open(const struct kpx_config *cfg, struct kpx_backend **out)
{
	LIBBPF_OPTS(bpf_object_open_opts, oo);
	struct kpx_backend *b;
	int err;

	libbpf_set_print(libbpf_quiet);
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->cfg = *cfg;
	b->root_lock = -1;
	pthread_mutex_init(&b->uw_mu, NULL);
	pthread_cond_init(&b->uw_cv, NULL);
	err = kpx_bpf_prepare_root(cfg);
	if (err)
		goto fail;
	err = lock_root(b);
	if (err)
		goto fail;
	err = kpx_bpf_abi_check(cfg);
	if (err)
		goto fail;
	oo.pin_root_path = root_of(cfg);
	b->skel = sock_lb__open_opts(&oo);
	if (!b->skel) {
		err = -errno;
		kpx_err("bpf: open sock_lb object: %s", strerror(-err));
		goto fail;
	}
	err = kpx_bpf_size_maps(b->skel->obj, cfg);
	if (err)
		goto fail;
	err = sock_lb__load(b->skel);
	if (err) {
		kpx_err("bpf: load sock_lb object: %s", strerror(-err));
		goto fail;
	}
	err = kpx_bpf_abi_store(bpf_map__fd(b->skel->maps.kpx_abi_version));
	if (err)
		goto fail;
	b->fds[KPX_MAP_SVC] = bpf_map__fd(b->skel->maps.kpx_svc);
	b->fds[KPX_MAP_SLOTS] = bpf_map__fd(b->skel->maps.kpx_slots);
	b->fds[KPX_MAP_BACKENDS] = bpf_map__fd(b->skel->maps.kpx_backends);
	b->fds[KPX_MAP_MAGLEV] = bpf_map__fd(b->skel->maps.kpx_maglev);
	b->fds[KPX_MAP_SVC_META] = bpf_map__fd(b->skel->maps.kpx_svc_meta);
	b->fds[KPX_MAP_SRC_RANGE] = bpf_map__fd(b->skel->maps.kpx_src_range);
	b->fds[KPX_MAP_AFFINITY] = bpf_map__fd(b->skel->maps.kpx_affinity);
	b->fds[KPX_MAP_CLUSTER_CIDR] =
		bpf_map__fd(b->skel->maps.kpx_cluster_cidr);
	err = writer_open(b, &b->w);
	if (err)
		goto fail;
	err = attach_all(b);
	if (err)
		goto fail;
	err = kpx_bpf_nat_keep_open();
	if (err < 0)
		kpx_warn("bpf: table inet " KPX_NAT_KEEP_TABLE ": %s; connections "
			 "kube-proxy translated lose their translation once its "
			 "tables are removed", strerror(-err));
	if (cfg->n_devices > 0) {
		err = kpx_nodeport_open(cfg, &b->np);
		if (err == -ENOSYS) {
			kpx_warn("bpf: NodePort datapath not available in this "
				 "build; external traffic is not served");
			b->np = NULL;
		} else if (err) {
			kpx_err("bpf: NodePort datapath: %s", strerror(-err));
			goto fail;
		}
	}
	*out = b;
	return 0;
fail:
	bpf_close(b);
	return err;
}

static int bpf_sync(struct kpx_backend *b, const struct kpx_plan *plan)
{
	struct kpx_map_writer_stats st;
	uint64_t full0;
	int err;

	kpx_map_writer_get_stats(b->w, &st);
	full0 = st.full;
	err = kpx_map_writer_sync(b->w, plan);

	kpx_map_writer_get_stats(b->w, &st);
	kpx_dbg(2, "bpf: %s sync processed %u of %zu service ports",
		st.last_sync_full ? "full" : "incremental", st.last_svcports,
		plan->n_svcports);
	udp_destroy_run(b);
	/* Objects that cannot be programmed never hold back the others:
	 * the writer wrote every other svcport; the sync succeeds with
	 * them reported as skipped (the agent keeps the wanted plan, so
	 * `kpx services --verify` shows them missing). */
	b->n_skipped = 0;
	/* A full map is the node's capacity, not an object's fault: the
	 * sync fails (health follows, retries back off) though every other
	 * object was written all the same. */
	if (err && st.last_skipped && !st.last_sync_failed &&
	    st.full == full0) {
		b->n_skipped = st.last_skipped;
		snprintf(b->skipped_msg, sizeof(b->skipped_msg),
			 "%u service port%s not programmed (previous state "
			 "kept, retried by the next sync); last: %s",
			 st.last_skipped, st.last_skipped == 1 ? "" : "s",
			 st.last_error);
		return 0;
	}
	/* A full hash map fails with E2BIG ("Argument list too long"), which
	 * would be the agent's last_error in kpx status and the logs; say
	 * "No space left on device" instead (the writer logged which map). */
	return err == -E2BIG ? -ENOSPC : err;
}

/*
 * Periodic full reconcile: the writer's cache may no longer match the maps
 * (an entry changed or deleted behind kpx's back). The writer compares
 * every pinned map with its cache (batched reads) and the sync repairs
 * what differs; only when the maps cannot be read that way is the writer
 * re-opened from the pins, as after a restart.
 */
static int bpf_resync(struct kpx_backend *b, const struct kpx_plan *plan)
{
	struct kpx_map_writer *w;
	uint64_t t0 = kpx_now_ms();
	int err = kpx_map_writer_verify(b->w);

	kpx_dbg(1, "bpf: full resync compared the pinned maps in %llu ms",
		(unsigned long long)(kpx_now_ms() - t0));
	if (!err)
		return bpf_sync(b, plan);
	err = writer_open(b, &w);
	if (err) {
		kpx_warn("bpf: re-reading maps for a full resync: %s; partial sync",
			 strerror(-err));
		return bpf_sync(b, plan);
	}
	kpx_map_writer_free(b->w);
	b->w = w;
	return bpf_sync(b, plan);
}

static const char *bpf_skipped(struct kpx_backend *b, size_t *n)
{
	*n = b->n_skipped;
	return b->n_skipped ? b->skipped_msg : NULL;
}

static void bpf_tick(struct kpx_backend *b)
{
	if (b->np)
		kpx_nodeport_tick(b->np);
}

/* ---- inspection (from the pins, no agent needed) ---- */

static int pinned_map(const struct kpx_config *cfg, const char *name)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s", root_of(cfg), name);
	return bpf_obj_get(path);
}

static const char *const shared_maps[] = {
	"kpx_svc",	"kpx_slots",	 "kpx_backends",      "kpx_maglev",
	"kpx_revnat",	"kpx_affinity",	 "kpx_svc_meta",      "kpx_drops",
	"kpx_svc_stats", "kpx_backend_stats", "kpx_config", "kpx_ct",
	"kpx_src_range", "kpx_sk_revnat", "kpx_sock_slots", "kpx_cluster_cidr",
	"kpx_abi_version",
};

static const char *const drop_names[KPX_DROP_REASON_MAX] = {
	"no_backend",	 "local_none", "source_range", "backend_missing",
	"ct_full",	 "snat_exhausted", "fib_failed", "malformed",
	"unsupported",	 "flood",
};

static long count_by_key(int fd, __u32 key_size, __u32 limit)
{
	uint8_t k[256], nk[256];
	const void *prev = NULL;
	long n = 0;

	if (key_size > sizeof(k))
		return -1;
	while ((__u32)n <= limit && bpf_map_get_next_key(fd, prev, nk) == 0) {
		memcpy(k, nk, key_size);
		prev = k;
		n++;
	}
	return n;
}

static int count_chunk(const void *keys, const void *vals, uint32_t n,
		       void *arg)
{
	(void)keys;
	(void)vals;
	*(long *)arg += n;
	return 0;
}

/* Entries of a hash/LRU map, for kpx status and every /metrics scrape:
 * batched (one syscall per few thousand entries; key by key, a million
 * backends took a second), key by key when the first batch call fails
 * (LPM trie: no batch operations). */
static long count_entries(int fd, const struct bpf_map_info *mi)
{
	struct kpx_map_walk mw = { .fd = fd,
				   .key_size = mi->key_size,
				   .value_size = mi->value_size,
				   .chunk = 4096 };
	long total = 0;

	if (kpx_map_walk(&mw, count_chunk, &total) == 0)
		return total;
	return mw.first_err ? count_by_key(fd, mi->key_size, mi->max_entries)
			    : -1;
}

static int percpu_sum(int fd, __u32 key, size_t words, uint64_t *sum)
{
	int ncpu = libbpf_num_possible_cpus();
	uint64_t *v;

	if (ncpu <= 0)
		return -EINVAL;
	v = calloc((size_t)ncpu * words, sizeof(uint64_t));
	if (!v)
		return -ENOMEM;
	memset(sum, 0, words * sizeof(*sum));
	if (bpf_map_lookup_elem(fd, &key, v)) {
		free(v);
		return -errno;
	}
	for (int c = 0; c < ncpu; c++)
		for (size_t i = 0; i < words; i++)
			sum[i] += v[(size_t)c * words + i];
	free(v);
	return 0;
}

static const char *attach_name(enum bpf_attach_type t)
{
	for (size_t i = 0; i < N_HOOKS; i++)
		if (hooks[i].type == t)
			return hooks[i].prog + 4;
	return "?";
}

static int bpf_dump_datapath(const struct kpx_config *cfg,
			     struct json_object **out)
{
	struct json_object *o, *progs, *maps, *drops, *np = NULL;
	char cg[PATH_MAX], path[PATH_MAX];
	int fd, n_links = 0;

	fd = pinned_map(cfg, "kpx_svc");
	if (fd < 0)
		return -ENOENT;
	close(fd);
	o = json_object_new_object();
	progs = json_object_new_array();
	maps = json_object_new_object();
	drops = json_object_new_object();
	json_object_object_add(o, "backend", json_object_new_string("bpf"));
	json_object_object_add(o, "bpf_root",
			       json_object_new_string(root_of(cfg)));
	if (cgroup_of(cfg, cg, sizeof(cg)) == 0)
		json_object_object_add(o, "cgroup", json_object_new_string(cg));
	for (size_t i = 0; i < N_HOOKS; i++) {
		struct bpf_link_info li = {};
		struct bpf_prog_info pi = {};
		__u32 len = sizeof(li);
		struct json_object *p;
		int pfd;

		snprintf(path, sizeof(path), "%s/links/%s", root_of(cfg),
			 hooks[i].prog);
		fd = bpf_obj_get(path);
		if (fd < 0)
			continue;
		p = json_object_new_object();
		json_object_object_add(p, "name",
				       json_object_new_string(hooks[i].prog));
		json_object_object_add(p, "hook", json_object_new_string(
						       attach_name(hooks[i].type)));
		if (bpf_obj_get_info_by_fd(fd, &li, &len) == 0) {
			json_object_object_add(p, "link_id",
					       json_object_new_int(li.id));
			json_object_object_add(p, "prog_id",
					       json_object_new_int(li.prog_id));
			json_object_object_add(
				p, "cgroup_id",
				json_object_new_int64(
					(int64_t)li.cgroup.cgroup_id));
			pfd = bpf_prog_get_fd_by_id(li.prog_id);
			len = sizeof(pi);
			if (pfd >= 0 &&
			    bpf_obj_get_info_by_fd(pfd, &pi, &len) == 0) {
				json_object_object_add(
					p, "run_cnt",
					json_object_new_int64(
						(int64_t)pi.run_cnt));
				json_object_object_add(
					p, "run_time_ns",
					json_object_new_int64(
						(int64_t)pi.run_time_ns));
			}
			if (pfd >= 0)
				close(pfd);
		}
		json_object_array_add(progs, p);
		n_links++;
		close(fd);
	}
	json_object_object_add(o, "programs", progs);
	json_object_object_add(o, "attached",
			       json_object_new_boolean(n_links == N_HOOKS));
	for (size_t i = 0; i < sizeof(shared_maps) / sizeof(*shared_maps);
	     i++) {
		struct bpf_map_info mi = {};
		__u32 len = sizeof(mi);
		struct json_object *m;

		fd = pinned_map(cfg, shared_maps[i]);
		if (fd < 0)
			continue;
		if (bpf_obj_get_info_by_fd(fd, &mi, &len)) {
			close(fd);
			continue;
		}
		m = json_object_new_object();
		json_object_object_add(m, "capacity",
				       json_object_new_int64(mi.max_entries));
		if (mi.type == BPF_MAP_TYPE_HASH ||
		    mi.type == BPF_MAP_TYPE_LRU_HASH ||
		    mi.type == BPF_MAP_TYPE_LPM_TRIE) {
			long n = count_entries(fd, &mi);

			json_object_object_add(m, "entries",
					       json_object_new_int64(n));
			if (n >= 0 && mi.max_entries)
				json_object_object_add(
					m, "fill_percent",
					json_object_new_double(
						100.0 * (double)n /
						mi.max_entries));
		}
		json_object_object_add(maps, shared_maps[i], m);
		if (!strcmp(shared_maps[i], "kpx_drops")) {
			for (__u32 r = 0; r < KPX_DROP_REASON_MAX; r++) {
				uint64_t s;

				if (percpu_sum(fd, r, 1, &s) == 0)
					json_object_object_add(
						drops, drop_names[r],
						json_object_new_int64(
							(int64_t)s));
			}
		}
		close(fd);
	}
	json_object_object_add(o, "maps", maps);
	json_object_object_add(o, "drops", drops);
	if (kpx_nodeport_dump(cfg, &np) == 0 && np)
		json_object_object_add(o, "nodeport", np);
	*out = o;
	return 0;
}

static const char *proto_name(uint8_t p)
{
	return p == IPPROTO_TCP ? "TCP" : p == IPPROTO_UDP ? "UDP"
		: p == IPPROTO_SCTP ? "SCTP" : "?";
}

static const char *type_name(uint8_t k)
{
	switch (k) {
	case KPX_FE_TYPE_NODE_PORT:
		return "NodePort";
	case KPX_FE_TYPE_EXTERNAL_IP:
		return "ExternalIP";
	case KPX_FE_TYPE_LOAD_BALANCER:
		return "LoadBalancer";
	default:
		return "ClusterIP";
	}
}

static const char *addr_str(const uint8_t *a16, uint8_t fam, char *buf)
{
	return inet_ntop(fam == KPX_AF_INET ? AF_INET : AF_INET6, a16, buf,
			 KPX_ADDR_STRLEN);
}

static struct json_object *backends_json(int slots, int bes, int bstats,
					 const struct kpx_svc_value *v)
{
	struct json_object *arr = json_object_new_array();
	char buf[KPX_ADDR_STRLEN];

	for (uint16_t i = 0; i < v->count; i++) {
		struct kpx_slot_key k = { v->svc_id, v->gen, i };
		struct kpx_backend_value be;
		struct json_object *b;
		uint64_t c[3];
		__u32 id;

		if (bpf_map_lookup_elem(slots, &k, &id) ||
		    bpf_map_lookup_elem(bes, &id, &be))
			continue;
		b = json_object_new_object();
		json_object_object_add(b, "address", json_object_new_string(
							     addr_str(be.addr, be.family, buf)));
		json_object_object_add(b, "port",
				       json_object_new_int(ntohs(be.port)));
		json_object_object_add(
			b, "state",
			json_object_new_string(be.flags & KPX_BE_F_TERMINATING
						       ? "terminating"
						       : "active"));
		json_object_object_add(
			b, "local",
			json_object_new_boolean(be.flags & KPX_BE_F_LOCAL));
		json_object_object_add(b, "id", json_object_new_int(id));
		if (bstats >= 0 && percpu_sum(bstats, id, 3, c) == 0)
			json_object_object_add(
				b, "connections",
				json_object_new_int64((int64_t)c[2]));
		json_object_array_add(arr, b);
	}
	return arr;
}

static int bpf_dump_frontends(const struct kpx_config *cfg,
			      struct json_object **out)
{
	int svc = pinned_map(cfg, "kpx_svc"), slots = pinned_map(cfg, "kpx_slots");
	int bes = pinned_map(cfg, "kpx_backends");
	int meta = pinned_map(cfg, "kpx_svc_meta");
	int sstats = pinned_map(cfg, "kpx_svc_stats");
	int bstats = pinned_map(cfg, "kpx_backend_stats");
	struct kpx_svc_key k, nk;
	const void *prev = NULL;
	struct json_object *arr;
	int err = 0;

	if (svc < 0 || slots < 0 || bes < 0) {
		err = -ENOENT;
		goto out;
	}
	arr = json_object_new_array();
	while (bpf_map_get_next_key(svc, prev, &nk) == 0) {
		struct kpx_svc_key ok;
		struct kpx_svc_value v, ov;
		struct kpx_svc_meta m = {};
		struct json_object *o;
		char buf[KPX_ADDR_STRLEN], *colon;
		uint64_t c[3];

		k = nk;
		prev = &k;
		if (bpf_map_lookup_elem(svc, &k, &v))
			continue;
		/* One record per frontend, the entry its own traffic uses:
		 * ClusterIP from local sockets (internal), the other kinds
		 * from outside (external); the other scope is nested. */
		if ((k.scope == KPX_SCOPE_INTERNAL) !=
		    (v.kind == KPX_FE_TYPE_CLUSTER_IP))
			continue;
		if (meta >= 0)
			bpf_map_lookup_elem(meta, &v.svc_id, &m);
		m.name[sizeof(m.name) - 1] = '\0';
		o = json_object_new_object();
		json_object_object_add(o, "address", json_object_new_string(
							     addr_str(k.addr, k.family, buf)));
		json_object_object_add(o, "port",
				       json_object_new_int(ntohs(k.port)));
		json_object_object_add(o, "protocol", json_object_new_string(
							      proto_name(k.proto)));
		json_object_object_add(o, "type", json_object_new_string(
							  type_name(v.kind)));
		colon = strrchr(m.name, ':');
		json_object_object_add(o, "port_name", json_object_new_string(
							       colon ? colon + 1 : ""));
		if (colon)
			*colon = '\0';
		json_object_object_add(o, "service",
				       json_object_new_string(m.name));
		json_object_object_add(
			o, "affinity_timeout",
			json_object_new_int64((v.flags & KPX_SVC_F_AFFINITY)
						      ? v.affinity_timeout
						      : 0));
		json_object_object_add(o, "svc_id", json_object_new_int(v.svc_id));
		/* For the POLICY column of `kpx services`. */
		if (v.flags & KPX_SVC_F_LOCAL_ONLY)
			json_object_object_add(o, "local_only",
					       json_object_new_boolean(1));
		json_object_object_add(
			o, "algorithm",
			json_object_new_string(v.flags & KPX_SVC_F_MAGLEV
						       ? "maglev"
						       : "random"));
		json_object_object_add(o, "backends",
				       backends_json(slots, bes, bstats, &v));
		json_object_object_add(
			o, "empty_action",
			v.count ? NULL
				: json_object_new_string(
					  v.flags & KPX_SVC_F_EMPTY_DROP
						  ? "drop"
						  : "reject"));
		if (sstats >= 0 && percpu_sum(sstats, v.svc_id, 3, c) == 0)
			json_object_object_add(
				o, "connections",
				json_object_new_int64((int64_t)c[2]));
		/* The other scope, nested. The map writer programs both
		 * scopes of every frontend; --verify reports a missing one. */
		ok = k;
		ok.scope = v.kind == KPX_FE_TYPE_CLUSTER_IP ? KPX_SCOPE_EXTERNAL
							    : KPX_SCOPE_INTERNAL;
		if (bpf_map_lookup_elem(svc, &ok, &ov) == 0)
			json_object_object_add(
				o,
				ok.scope == KPX_SCOPE_INTERNAL
					? "local_client_backends"
					: "outside_backends",
				backends_json(slots, bes, bstats, &ov));
		else
			json_object_object_add(
				o, "missing_scopes",
				json_object_new_string(
					ok.scope == KPX_SCOPE_INTERNAL
						? "internal"
						: "external"));
		json_object_array_add(arr, o);
	}
	*out = arr;
out:
	if (svc >= 0)
		close(svc);
	if (slots >= 0)
		close(slots);
	if (bes >= 0)
		close(bes);
	if (meta >= 0)
		close(meta);
	if (sstats >= 0)
		close(sstats);
	if (bstats >= 0)
		close(bstats);
	return err;
}

/* ---- cleanup ---- */

/*
 * Unlinks the pins kpx creates, by name: every pinned map of the sock_lb
 * object (lib/maps.h's shared maps, which the nodeport object pins under
 * the same names, and sock_lb's own). The object is opened, not loaded,
 * so the names always match what this build pins. Returns how many were
 * removed, or a negative errno.
 */
static int unlink_known_pins(const char *root)
{
	LIBBPF_OPTS(bpf_object_open_opts, oo, .pin_root_path = root);
	struct sock_lb *skel = sock_lb__open_opts(&oo);
	struct bpf_map *map;
	int n = 0;

	if (!skel)
		return -errno;
	bpf_object__for_each_map(map, skel->obj) {
		const char *path = bpf_map__pin_path(map);

		if (path && unlink(path) == 0)
			n++;
	}
	sock_lb__destroy(skel);
	return n;
}

/* Entries of dir other than . and .. (what kpx did not create). */
static int count_foreign_entries(const char *dir)
{
	struct dirent *de;
	DIR *d = opendir(dir);
	int n = 0;

	if (!d)
		return 0;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static int bpf_dump_flows(const struct kpx_config *cfg, struct json_object **out)
{
	return kpx_bpf_dump_flows(root_of(cfg), out);
}

static int bpf_cleanup(const struct kpx_config *cfg)
{
	const char *root = root_of(cfg);
	char path[PATH_MAX];
	struct stat st;
	int err, n;

	/* Before the programs go: the proxy that takes over translates
	 * kpx's flows from then on. */
	err = kpx_bpf_ct_handoff(root);
	if (err < 0)
		kpx_warn("bpf: handing flows to the kernel's conntrack: %s",
			 strerror(-err));
	err = kpx_nodeport_cleanup(cfg);
	if (err && err != -ENOSYS && err != -ENOENT)
		kpx_warn("bpf: nodeport cleanup: %s", strerror(-err));
	err = kpx_bpf_nat_keep_cleanup();
	if (err < 0)
		kpx_warn("bpf: table inet " KPX_NAT_KEEP_TABLE ": %s",
			 strerror(-err));
	for (size_t i = 0; i < N_HOOKS; i++) {
		int fd;

		snprintf(path, sizeof(path), "%s/links/%s", root, hooks[i].prog);
		fd = bpf_obj_get(path);
		if (fd < 0)
			continue;
		/* Detach explicitly: another process may still hold the
		 * link open, and the hooks must stop now. */
		bpf_link_detach(fd);
		close(fd);
		unlink(path);
	}
	if (stat(root, &st))
		return 0;
	/* Only what kpx pins, by name: the directory may hold other
	 * programs' pins (a shared --bpf-root), which stay. */
	n = unlink_known_pins(root);
	if (n < 0) {
		kpx_warn("bpf: reading the pin names of this build: %s",
			 strerror(-n));
		return n;
	}
	snprintf(path, sizeof(path), "%s/links", root);
	rmdir(path);
	n = count_foreign_entries(root);
	if (n) {
		kpx_info("bpf: removed kpx's links and pins under %s; %d "
			 "entries kpx did not create are left in place",
			 root, n);
		return 0;
	}
	if (rmdir(root) && errno != ENOENT) {
		err = -errno;
		kpx_warn("bpf: remove %s: %s", root, strerror(-err));
		return err;
	}
	kpx_info("bpf: removed links and pins under %s", root);
	return 0;
}

const struct kpx_backend_ops kpx_bpf_backend = {
	.name = "bpf",
	/* Local traffic goes through connect()/sendmsg() hooks: they can
	 * only fail the call at once (EPERM) and run before the socket has
	 * a source address; pods and node processes are both local
	 * sockets to them. */
	.caps = { .local_drop = false,
		  .local_source_ranges = false,
		  .local_pod_vs_node = false },
	.probe = bpf_probe,
	.open = bpf_open,
	.sync = bpf_sync,
	.resync = bpf_resync,
	.tick = bpf_tick,
	.skipped = bpf_skipped,
	.close = bpf_close,
	.dump_datapath = bpf_dump_datapath,
	.dump_frontends = bpf_dump_frontends,
	.dump_flows = bpf_dump_flows,
	.cleanup = bpf_cleanup,
};
