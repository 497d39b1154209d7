// SPDX-License-Identifier: Apache-2.0
/*
 * `kpx cleanup`: removes what kpx programmed (both backends unless
 * --backend picks one), and with --kube-proxy also what kube-proxy left on
 * the node, so that kpx can take over a node that ran kube-proxy:
 *   - its nftables tables `ip kube-proxy` and `ip6 kube-proxy`, deleted over
 *     netlink (libnftnl/libmnl), one transaction per table;
 *   - its iptables chains (KUBE-*, in every table, for iptables-legacy and
 *     iptables-nft, IPv4 and IPv6) and the rules in other chains that jump
 *     to them. These go through iptables-save/iptables-restore (fork/exec,
 *     no shell): the legacy xtables ABI has no library worth linking, and
 *     restore applies each table atomically. Chains kubelet owns
 *     (KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-MARK-DROP) are kept.
 *
 * While a kpx agent answers on --state-socket, its own state is left in
 * place (it would re-program it anyway, after a window without Services);
 * --kube-proxy still runs, which is the migration step on a live node.
 *
 * Owns: nothing persistent. Must not: touch any nftables table or iptables
 * chain that is neither kpx's nor kube-proxy's.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Before the linux/ headers: glibc's netinet/in.h must come first. */
#include "agent/backend.h"
#include "agent/config.h"
#include "agent/serve.h"
#include "bpf/loader.h"
#include "cli/cli.h"
#include "common/log.h"

#include <curl/curl.h>
#include <json-c/json.h>
#include <libmnl/libmnl.h>
#include <libnftnl/common.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>

#define KUBE_PROXY_TABLE "kube-proxy"
#define SAVE_MAX_BYTES (256u << 20)

static void cleanup_usage(FILE *f)
{
	fprintf(f,
		"Usage: kpx cleanup [flags]\n"
		"\n"
		"Removes everything kpx programmed on this node (both backends\n"
		"unless --backend is given), then exits. Every flag of `kpx run`\n"
		"is accepted too (kube-proxy's --cleanup takes its whole flag\n"
		"set), so the agent's argument list can be reused as is.\n"
		"\n"
		"  --backend bpf|nft     clean only this backend\n"
		"  --config FILE         take bpfRoot, cgroupPath, stateSocket\n"
		"                        from the agent's KubeProxyConfiguration\n"
		"                        (flags win)\n"
		"  --bpf-root PATH       bpf pin directory (/sys/fs/bpf/kpx); only\n"
		"                        the pins kpx creates are removed\n"
		"  --cgroup-path PATH    cgroup the socket hooks are attached to\n"
		"  --state-socket PATH   agent socket (" KPX_STATE_SOCKET_DEFAULT "); kpx's\n"
		"                        own state is kept while an agent answers\n"
		"  --kube-proxy          also remove kube-proxy's nftables tables\n"
		"                        (ip/ip6 kube-proxy) and iptables KUBE-*\n"
		"                        chains (migration from kube-proxy)\n"
		"  --force               clean kpx's state even if an agent runs\n"
		"  --wait-for URL        first wait until URL answers 200 (e.g.\n"
		"                        kube-proxy's http://127.0.0.1:10256/healthz);\n"
		"                        not within --wait-timeout (5m): keep kpx's\n"
		"                        state, exit 1\n"
		"  --wait-for-metric NAME  with --wait-for: also until the page\n"
		"                        has Prometheus sample NAME above 0 (e.g.\n"
		"                        kube-proxy's /metrics and\n"
		"                        kubeproxy_sync_proxy_rules_last_timestamp_seconds:\n"
		"                        its first sync is done; its /healthz is\n"
		"                        200 before that)\n"
		"  --then-sleep          after a successful cleanup, stay up until\n"
		"                        SIGTERM (a DaemonSet pod that stays Ready)\n"
		"  -v N                  log verbosity\n"
		"\n"
		"Exit status: 0 when done (also when there was nothing to\n"
		"remove), 1 on any error, 2 on bad flags.\n");
}

/* The page --wait-for fetches: kept (bounded) only when a metric is to
 * be read from it. */
struct wait_body {
	char *buf;
	size_t len, cap;
	bool keep;
};

#define WAIT_BODY_MAX (16u << 20)

static size_t wait_body_add(char *p, size_t size, size_t n, void *arg)
{
	struct wait_body *b = arg;
	size_t add = size * n;

	if (!b->keep || b->len + add + 1 > WAIT_BODY_MAX)
		return add; /* a page this big: the sample is not read */
	if (b->len + add + 1 > b->cap) {
		size_t cap = (b->len + add + 1) * 2;
		char *nb = realloc(b->buf, cap);

		if (!nb)
			return 0;
		b->buf = nb;
		b->cap = cap;
	}
	memcpy(b->buf + b->len, p, add);
	b->len += add;
	b->buf[b->len] = '\0';
	return add;
}

bool kpx_prom_sample_above_zero(const char *page, const char *name)
{
	size_t nl = strlen(name);
	const char *l = page;

	while (l && *l) {
		const char *v = l + nl;

		if (!strncmp(l, name, nl) && (*v == ' ' || *v == '{')) {
			if (*v == '{')
				v = strchr(v, '}'); /* labels */
			if (v && strtod(v + (*v == '}'), NULL) > 0)
				return true;
		}
		l = strchr(l, '\n');
		if (l)
			l++;
	}
	return false;
}

/* ---- kpx's own state ---------------------------------------------- */

/* An agent holds the lock of the bpf root (bpf/loader.c), whatever its
 * state socket. When free, *fd keeps it so no agent starts mid-cleanup. */
static bool bpf_root_busy(const struct kpx_config *cfg, int *fd)
{
	pid_t pid = 0;

	if (kpx_bpf_lock_root(cfg, fd, &pid) != -EBUSY)
		return false;
	printf("kpx: bpf root %s is held by a running agent (pid %d); its "
	       "state is left in place (stop it first, or pass --force)\n",
	       cfg->bpf_root[0] ? cfg->bpf_root : "/sys/fs/bpf/kpx", (int)pid);
	return true;
}

static int clean_backend(const struct kpx_backend_ops *ops,
			 const struct kpx_config *cfg)
{
	int ret;

	if (!ops->cleanup) {
		printf("%s: not available in this build\n", ops->name);
		return 0;
	}
	ret = ops->cleanup(cfg);
	switch (ret) {
	case 0:
		printf("%s: removed everything kpx programmed\n", ops->name);
		return 0;
	case -ENOENT:
		printf("%s: nothing to clean\n", ops->name);
		return 0;
	case -ENOSYS:
	case -EOPNOTSUPP:
		printf("%s: not available on this kernel or build\n",
		       ops->name);
		return 0;
	default:
		fprintf(stderr, "kpx cleanup: %s backend: %s\n", ops->name,
			strerror(-ret));
		return ret;
	}
}

/* ---- kube-proxy's nftables tables --------------------------------- */

/*
 * Deletes table `family kube-proxy` in its own transaction. Returns 1 when
 * removed, 0 when absent, or a negative errno.
 */
static int nft_delete_table(struct mnl_socket *nl, uint16_t family,
			    uint32_t *seq)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct mnl_nlmsg_batch *batch;
	struct nftnl_table *t;
	struct nlmsghdr *nlh;
	uint32_t portid = mnl_socket_get_portid(nl), del_seq;
	ssize_t n;
	int ret;

	t = nftnl_table_alloc();
	if (!t)
		return -ENOMEM;
	nftnl_table_set_str(t, NFTNL_TABLE_NAME, KUBE_PROXY_TABLE);
	batch = mnl_nlmsg_batch_start(buf, sizeof(buf));
	nftnl_batch_begin(mnl_nlmsg_batch_current(batch), (*seq)++);
	mnl_nlmsg_batch_next(batch);
	del_seq = (*seq)++;
	nlh = nftnl_nlmsg_build_hdr(mnl_nlmsg_batch_current(batch),
				    NFT_MSG_DELTABLE, family, NLM_F_ACK,
				    del_seq);
	nftnl_table_nlmsg_build_payload(nlh, t);
	mnl_nlmsg_batch_next(batch);
	nftnl_batch_end(mnl_nlmsg_batch_current(batch), (*seq)++);
	mnl_nlmsg_batch_next(batch);
	nftnl_table_free(t);

	if (mnl_socket_sendto(nl, mnl_nlmsg_batch_head(batch),
			      mnl_nlmsg_batch_size(batch)) < 0) {
		ret = -errno;
		goto out;
	}
	/* Only the DELTABLE asked for an ack; it is the one reply. */
	n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
	if (n < 0) {
		ret = -errno;
		goto out;
	}
	ret = mnl_cb_run(buf, n, del_seq, portid, NULL, NULL);
	if (ret < 0)
		ret = errno == ENOENT ? 0 : -errno;
	else
		ret = 1;
out:
	mnl_nlmsg_batch_stop(batch);
	return ret;
}

static int clean_kube_proxy_nft(void)
{
	static const struct {
		uint16_t family;
		const char *name;
	} fams[] = { { NFPROTO_IPV4, "ip" }, { NFPROTO_IPV6, "ip6" } };
	struct mnl_socket *nl;
	uint32_t seq = (uint32_t)time(NULL);
	int ret = 0, r;
	size_t i;

	nl = mnl_socket_open(NETLINK_NETFILTER);
	if (!nl) {
		fprintf(stderr, "kpx cleanup: nftables netlink: %s\n",
			strerror(errno));
		return -errno;
	}
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		ret = -errno;
		fprintf(stderr, "kpx cleanup: nftables netlink: %s\n",
			strerror(errno));
		goto out;
	}
	for (i = 0; i < sizeof(fams) / sizeof(fams[0]); i++) {
		r = nft_delete_table(nl, fams[i].family, &seq);
		if (r > 0) {
			printf("kube-proxy: removed nftables table %s %s\n",
			       fams[i].name, KUBE_PROXY_TABLE);
		} else if (r == 0) {
			printf("kube-proxy: no nftables table %s %s\n",
			       fams[i].name, KUBE_PROXY_TABLE);
		} else {
			fprintf(stderr,
				"kpx cleanup: nftables table %s %s: %s\n",
				fams[i].name, KUBE_PROXY_TABLE, strerror(-r));
			ret = r;
		}
	}
out:
	mnl_socket_close(nl);
	return ret;
}

/* ---- kube-proxy's iptables chains --------------------------------- */

/* Executable `name` in PATH or the sbin directories a container may lack
 * in PATH; writes its path to out. */
static bool find_exe(const char *name, char *out, size_t len)
{
	const char *path = getenv("PATH");
	char dirs[4096];
	char *save = NULL, *d;

	snprintf(dirs, sizeof(dirs), "%s:/usr/sbin:/sbin:/usr/local/sbin",
		 path ? path : "/usr/bin:/bin");
	for (d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		if (!*d)
			continue;
		snprintf(out, len, "%s/%s", d, name);
		if (access(out, X_OK) == 0)
			return true;
	}
	return false;
}

/*
 * Runs argv (no shell). in (may be NULL) is written to its stdin; with
 * out non-NULL, stdout is collected into a malloc'd NUL-terminated buffer.
 * stderr is inherited. Returns the exit status (>= 0) or a negative errno.
 */
static int run_cmd(char *const argv[], const char *in, size_t inlen,
		   char **out)
{
	int inp[2] = { -1, -1 }, outp[2] = { -1, -1 };
	size_t cap = 0, n = 0;
	char *buf = NULL;
	int status, ret = 0;
	pid_t pid;

	if ((in && pipe2(inp, O_CLOEXEC) < 0) ||
	    (out && pipe2(outp, O_CLOEXEC) < 0)) {
		ret = -errno;
		goto out;
	}
	pid = fork();
	if (pid < 0) {
		ret = -errno;
		goto out;
	}
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDWR);

		dup2(in ? inp[0] : devnull, 0);
		if (out)
			dup2(outp[1], 1);
		else
			dup2(devnull, 1);
		execv(argv[0], argv);
		_exit(127);
	}
	if (in) {
		size_t off = 0;

		close(inp[0]);
		inp[0] = -1;
		/* A restore that dies early must not kill us with SIGPIPE. */
		signal(SIGPIPE, SIG_IGN);
		while (off < inlen) {
			ssize_t w = write(inp[1], in + off, inlen - off);

			if (w < 0) {
				if (errno == EINTR)
					continue;
				break;
			}
			off += (size_t)w;
		}
		close(inp[1]);
		inp[1] = -1;
	}
	if (out) {
		close(outp[1]);
		outp[1] = -1;
		for (;;) {
			ssize_t r;

			if (n + 65536 + 1 > cap) {
				char *nb;

				cap = cap ? cap * 2 : 65536 * 2;
				nb = cap > SAVE_MAX_BYTES ? NULL :
							    realloc(buf, cap);
				if (!nb) {
					ret = -ENOMEM;
					break;
				}
				buf = nb;
			}
			r = read(outp[0], buf + n, cap - n - 1);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				break;
			n += (size_t)r;
		}
	}
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			ret = -errno;
			goto out;
		}
	}
	if (ret == 0)
		ret = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
	if (out && buf) {
		buf[n] = '\0';
		*out = buf;
		buf = NULL;
	}
out:
	free(buf);
	for (int i = 0; i < 2; i++) {
		if (inp[i] >= 0)
			close(inp[i]);
		if (outp[i] >= 0)
			close(outp[i]);
	}
	return ret;
}

/* kube-proxy's chains: every KUBE-* chain except kubelet's own. */
static bool kube_proxy_chain(const char *name, size_t len)
{
	static const char *const kubelet[] = { "KUBE-FIREWALL",
					       "KUBE-KUBELET-CANARY",
					       "KUBE-MARK-DROP" };
	size_t i;

	if (len < 5 || strncmp(name, "KUBE-", 5))
		return false;
	for (i = 0; i < sizeof(kubelet) / sizeof(kubelet[0]); i++)
		if (strlen(kubelet[i]) == len && !strncmp(name, kubelet[i], len))
			return false;
	return true;
}

/* Next whitespace-separated token of a save line, "quoted" ones whole. */
static const char *next_token(const char *p, size_t *len)
{
	const char *s;
	bool q = false;

	while (*p == ' ' || *p == '\t')
		p++;
	if (!*p || *p == '\n')
		return NULL;
	for (s = p; *p && *p != '\n' && (q || (*p != ' ' && *p != '\t'));
	     p++) {
		if (*p == '\\' && q && p[1])
			p++;
		else if (*p == '"')
			q = !q;
	}
	*len = (size_t)(p - s);
	return s;
}

/* Does this `-A CHAIN ...` rule jump or goto a kube-proxy chain? */
static bool rule_targets_kube_proxy(const char *line)
{
	const char *t = line;
	size_t len;
	bool jump = false;

	while ((t = next_token(t, &len))) {
		if (jump && kube_proxy_chain(t, len))
			return true;
		jump = (len == 2 && (!strncmp(t, "-j", 2) ||
				     !strncmp(t, "-g", 2))) ||
		       (len == 6 && !strncmp(t, "--jump", 6)) ||
		       (len == 6 && !strncmp(t, "--goto", 6));
		t += len;
	}
	return false;
}

struct strbuf {
	char *s;
	size_t len, cap;
};

static int sb_add(struct strbuf *b, const char *s, size_t len)
{
	if (b->len + len + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		char *n;

		while (b->len + len + 1 > cap)
			cap *= 2;
		n = realloc(b->s, cap);
		if (!n)
			return -ENOMEM;
		b->s = n;
		b->cap = cap;
	}
	memcpy(b->s + b->len, s, len);
	b->len += len;
	b->s[b->len] = '\0';
	return 0;
}

struct ipt_table {
	const char *name;
	size_t name_len;
	struct strbuf del_rules, flush, del_chains;
	unsigned n_chains, n_rules;
};

/*
 * Turns one table's section of iptables-save output (from `*table` up to
 * COMMIT) into iptables-restore --noflush input that removes the jumps into
 * kube-proxy's chains, flushes them, then deletes them.
 */
static int plan_table(const char *sec, const char *end, struct ipt_table *t,
		      struct strbuf *script)
{
	const char *line, *nl;
	int ret = 0;

	for (line = sec; line < end; line = nl + 1) {
		nl = memchr(line, '\n', (size_t)(end - line));
		if (!nl)
			nl = end;
		if (line[0] == ':') {
			const char *name = line + 1, *sp = name;

			while (sp < nl && *sp != ' ')
				sp++;
			if (kube_proxy_chain(name, (size_t)(sp - name))) {
				t->n_chains++;
				ret = ret ?: sb_add(&t->flush, "-F ", 3);
				ret = ret ?: sb_add(&t->flush, name,
						    (size_t)(sp - name));
				ret = ret ?: sb_add(&t->flush, "\n", 1);
				ret = ret ?: sb_add(&t->del_chains, "-X ", 3);
				ret = ret ?: sb_add(&t->del_chains, name,
						    (size_t)(sp - name));
				ret = ret ?: sb_add(&t->del_chains, "\n", 1);
			}
		} else if (!strncmp(line, "-A ", 3)) {
			const char *chain = line + 3, *sp = chain;
			char *copy;

			while (sp < nl && *sp != ' ')
				sp++;
			/* Rules inside kube-proxy's chains go with -F. */
			if (kube_proxy_chain(chain, (size_t)(sp - chain)))
				continue;
			copy = strndup(line, (size_t)(nl - line));
			if (!copy)
				return -ENOMEM;
			if (rule_targets_kube_proxy(copy + 3)) {
				t->n_rules++;
				ret = ret ?: sb_add(&t->del_rules, "-D", 2);
				ret = ret ?: sb_add(&t->del_rules, line + 2,
						    (size_t)(nl - line - 2));
				ret = ret ?: sb_add(&t->del_rules, "\n", 1);
			}
			free(copy);
		}
		if (ret)
			return ret;
	}
	if (!t->n_chains && !t->n_rules)
		return 0;
	ret = ret ?: sb_add(script, "*", 1);
	ret = ret ?: sb_add(script, t->name, t->name_len);
	ret = ret ?: sb_add(script, "\n", 1);
	if (t->del_rules.len)
		ret = ret ?: sb_add(script, t->del_rules.s, t->del_rules.len);
	if (t->flush.len)
		ret = ret ?: sb_add(script, t->flush.s, t->flush.len);
	if (t->del_chains.len)
		ret = ret ?: sb_add(script, t->del_chains.s,
				    t->del_chains.len);
	ret = ret ?: sb_add(script, "COMMIT\n", 7);
	return ret;
}

/* One iptables flavour (e.g. "iptables-nft", "ip6tables-legacy"). */
static int clean_ipt_variant(const char *variant)
{
	char save[PATH_MAX], restore[PATH_MAX], exe[PATH_MAX];
	char *dump = NULL, *p;
	struct strbuf script = { 0 };
	unsigned chains = 0, rules = 0;
	int ret;

	snprintf(exe, sizeof(exe), "%s-save", variant);
	if (!find_exe(exe, save, sizeof(save)))
		return 0;
	snprintf(exe, sizeof(exe), "%s-restore", variant);
	if (!find_exe(exe, restore, sizeof(restore))) {
		kpx_warn("%s-save found but not %s-restore; skipped", variant,
			 variant);
		return 0;
	}
	{
		char *argv[] = { save, NULL };

		ret = run_cmd(argv, NULL, 0, &dump);
	}
	if (ret != 0) {
		/* e.g. legacy iptables without its kernel modules: then it
		 * cannot hold kube-proxy's chains either. */
		kpx_dbg(1, "%s: exited %d; skipped", save, ret);
		free(dump);
		return 0;
	}
	for (p = dump; p && (p = strstr(p, "\n*")) != NULL;) {
		struct ipt_table t = { 0 };
		const char *end;

		p += 2;
		t.name = p;
		t.name_len = strcspn(p, "\n");
		end = strstr(p, "\nCOMMIT");
		if (!end)
			break;
		ret = plan_table(p + t.name_len + 1, end + 1, &t, &script);
		free(t.del_rules.s);
		free(t.flush.s);
		free(t.del_chains.s);
		if (ret)
			goto out;
		if (t.n_chains || t.n_rules)
			printf("kube-proxy: %s table %.*s: removing %u KUBE-* "
			       "chains, %u jump rules\n",
			       variant, (int)t.name_len, t.name, t.n_chains,
			       t.n_rules);
		chains += t.n_chains;
		rules += t.n_rules;
		p = (char *)end + 1;
	}
	if (!chains && !rules) {
		printf("kube-proxy: %s: no KUBE-* chains\n", variant);
		ret = 0;
		goto out;
	}
	kpx_dbg(1, "%s --noflush input:\n%s", restore, script.s);
	{
		/* -w: kubelet and CNI plugins take the xtables lock too. */
		char *argv[] = { restore, "-w", "--noflush", NULL };

		ret = run_cmd(argv, script.s, script.len, NULL);
	}
	if (ret != 0) {
		fprintf(stderr, "kpx cleanup: %s --noflush failed (%s %d)\n",
			restore, ret < 0 ? strerror(-ret) : "exit", ret);
		ret = -EIO;
		goto out;
	}
	printf("kube-proxy: %s: removed %u chains, %u jump rules\n", variant,
	       chains, rules);
out:
	free(script.s);
	free(dump);
	return ret;
}

static int clean_kube_proxy_iptables(void)
{
	static const char *const fams[] = { "iptables", "ip6tables" };
	/* kube-proxy used whichever flavour the node's iptables is; look
	 * at both, since a node may have rules in either. */
	static const char *const flavours[] = { "-legacy", "-nft" };
	char path[PATH_MAX], name[64];
	int ret = 0, r;
	size_t i, j;

	for (i = 0; i < 2; i++) {
		bool any = false;

		for (j = 0; j < 2; j++) {
			snprintf(name, sizeof(name), "%s%s-save", fams[i],
				 flavours[j]);
			if (!find_exe(name, path, sizeof(path)))
				continue;
			snprintf(name, sizeof(name), "%s%s", fams[i],
				 flavours[j]);
			r = clean_ipt_variant(name);
			ret = ret ?: r;
			any = true;
		}
		if (!any) {
			snprintf(name, sizeof(name), "%s-save", fams[i]);
			if (find_exe(name, path, sizeof(path))) {
				r = clean_ipt_variant(fams[i]);
				ret = ret ?: r;
			} else {
				printf("kube-proxy: %s not installed; no "
				       "iptables chains to look at\n",
				       fams[i]);
			}
		}
	}
	return ret;
}

/* ---- waiting for a successor, and staying up ---------------------- */

/* GET url until it answers 200 (and, with metric, has that sample above
 * 0) or timeout_ms passes. 0, or -ETIMEDOUT. */
static int wait_for_url(const char *url, const char *metric,
			uint64_t timeout_ms)
{
	struct wait_body body = { .keep = metric != NULL };
	struct timespec t0, now;
	CURL *h = curl_easy_init();
	long code = 0;
	int ret = -ETIMEDOUT;

	if (!h)
		return -ENOMEM;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 2000L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, wait_body_add);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
	printf("kpx cleanup: waiting for %s to answer 200%s%s%s (up to %" PRIu64
	       " s)\n", url, metric ? " with " : "", metric ? metric : "",
	       metric ? " above 0" : "", timeout_ms / 1000);
	fflush(stdout);
	for (;;) {
		body.len = 0;
		if (curl_easy_perform(h) == CURLE_OK &&
		    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code) ==
			    CURLE_OK &&
		    code == 200 &&
		    (!metric ||
		     (body.buf && kpx_prom_sample_above_zero(body.buf, metric)))) {
			ret = 0;
			break;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		/* signed: the nanosecond part of the difference may be < 0 */
		if ((int64_t)(now.tv_sec - t0.tv_sec) * 1000 +
			    (int64_t)(now.tv_nsec - t0.tv_nsec) / 1000000 >=
		    (int64_t)timeout_ms)
			break;
		usleep(500 * 1000);
	}
	curl_easy_cleanup(h);
	free(body.buf);
	return ret;
}

/* Until SIGTERM/SIGINT: a cleanup pod that stays Ready (a container that
 * exits is restarted, and a DaemonSet rollout waits for Ready pods). */
static int sleep_until_signal(int status)
{
	sigset_t set;
	int sig;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	printf("kpx cleanup: done (status %d); sleeping until terminated\n",
	       status);
	fflush(stdout);
	sigwait(&set, &sig);
	return status;
}

/* ---- command ------------------------------------------------------ */

enum {
	OPT_KUBE_PROXY,
	OPT_FORCE,
	OPT_THEN_SLEEP,
	OPT_WAIT_FOR,
	OPT_WAIT_FOR_METRIC,
	OPT_WAIT_TIMEOUT,
};

struct cleanup_opts {
	bool kube_proxy, force, then_sleep;
	const char *wait_for, *wait_for_metric;
	uint64_t wait_timeout_ms;
};

static const struct kpx_flag cleanup_flags[] = {
	{ "kube-proxy", 0, KPX_FT_BOOL, OPT_KUBE_PROXY, NULL },
	{ "force", 0, KPX_FT_BOOL, OPT_FORCE, NULL },
	{ "then-sleep", 0, KPX_FT_BOOL, OPT_THEN_SLEEP, NULL },
	{ "wait-for", 0, KPX_FT_STRING, OPT_WAIT_FOR, NULL },
	{ "wait-for-metric", 0, KPX_FT_STRING, OPT_WAIT_FOR_METRIC, NULL },
	{ "wait-timeout", 0, KPX_FT_DURATION, OPT_WAIT_TIMEOUT, NULL },
	{ NULL, 0, 0, 0, NULL },
};

static int cleanup_flag(void *arg, const struct kpx_flag *f, const char *v)
{
	struct cleanup_opts *o = arg;

	switch (f->id) {
	case OPT_KUBE_PROXY:
		return kpx_bool_parse(v, &o->kube_proxy);
	case OPT_FORCE:
		return kpx_bool_parse(v, &o->force);
	case OPT_THEN_SLEEP:
		return kpx_bool_parse(v, &o->then_sleep);
	case OPT_WAIT_FOR:
		o->wait_for = *v ? v : NULL;
		return 0;
	case OPT_WAIT_FOR_METRIC:
		o->wait_for_metric = *v ? v : NULL;
		return 0;
	case OPT_WAIT_TIMEOUT:
		return kpx_duration_parse(v, &o->wait_timeout_ms);
	default:
		return -EINVAL;
	}
}

/* The cleanup itself; 0 when done, 1 on any error or a held state. */
static int do_cleanup(struct kpx_config *cfg, const struct cleanup_opts *o)
{
	enum kpx_backend_kind only = cfg->backend;
	int root_fd = -1, ret = 0, r;
	bool busy;

	kpx_state_socket_resolve(cfg->state_socket, sizeof(cfg->state_socket));
	busy = !o->force && only != KPX_BACKEND_NFT &&
	       bpf_root_busy(cfg, &root_fd);
	if (busy || (!o->force && kpx_state_socket_live(cfg->state_socket))) {
		if (!busy)
			printf("kpx: an agent is running (%s); its state is "
			       "left in place (stop it first, or pass "
			       "--force)\n",
			       cfg->state_socket);
		if (!o->kube_proxy) {
			if (root_fd >= 0)
				close(root_fd);
			return 1;
		}
	} else {
		if (only != KPX_BACKEND_NFT &&
		    (r = clean_backend(&kpx_bpf_backend, cfg)) < 0)
			ret = r;
		if (only != KPX_BACKEND_BPF &&
		    (r = clean_backend(&kpx_nft_backend, cfg)) < 0)
			ret = ret ?: r;
	}
	if (o->kube_proxy) {
		r = clean_kube_proxy_nft();
		ret = ret ?: r;
		r = clean_kube_proxy_iptables();
		ret = ret ?: r;
	}
	if (root_fd >= 0)
		close(root_fd);
	return ret ? 1 : 0;
}

int kpx_cleanup_other_backend(const struct kpx_config *cfg, int keep)
{
	struct json_object *dp = NULL;
	char sock[PATH_MAX];
	pid_t holder = 0;
	int fd = -1, r;

	if (keep == KPX_BACKEND_NFT) {
		/* bpf state: pins under --bpf-root, socket hooks linked from
		 * there. Its lock says whether a bpf agent still runs. */
		r = kpx_bpf_lock_root(cfg, &fd, &holder);
		if (r == -ENOENT)
			return 0;
		if (r == -EBUSY) {
			kpx_warn("switching to nft: the bpf backend's state under "
				 "%s belongs to a running agent (pid %d); left "
				 "in place", cfg->bpf_root, (int)holder);
			return r;
		}
		if (r) {
			kpx_warn("switching to nft: bpf root %s: %s",
				 cfg->bpf_root, strerror(-r));
			return r;
		}
		kpx_info("switching to nft: removing the bpf backend's state "
			 "(pins under %s, socket hooks)", cfg->bpf_root);
		r = kpx_bpf_backend.cleanup ? kpx_bpf_backend.cleanup(cfg) : 0;
		close(fd);
		return r;
	}
	if (keep != KPX_BACKEND_BPF || !kpx_nft_backend.dump_datapath)
		return 0;
	/* nft state: table inet kpx in this netns. */
	r = kpx_nft_backend.dump_datapath(cfg, &dp);
	json_object_put(dp);
	if (r)
		return 0;
	snprintf(sock, sizeof(sock), "%s", cfg->state_socket);
	kpx_state_socket_resolve(sock, sizeof(sock));
	if (kpx_state_socket_live(sock)) {
		kpx_warn("switching to bpf: table inet kpx belongs to the agent "
			 "answering on %s; left in place", sock);
		return -EBUSY;
	}
	kpx_info("switching to bpf: removing the nft backend's table inet kpx");
	return kpx_nft_backend.cleanup ? kpx_nft_backend.cleanup(cfg) : 0;
}

int kpx_cleanup_exec(struct kpx_config *cfg)
{
	struct cleanup_opts o = { 0 };

	kpx_log_verbosity = cfg->verbosity;
	return do_cleanup(cfg, &o);
}

int kpx_cmd_cleanup(int argc, char **argv)
{
	struct cleanup_opts o = { .wait_timeout_ms = 300000 };
	struct kpx_flag_cmd c = {
		.cmd = "cleanup",
		.extra = cleanup_flags,
		.fn = cleanup_flag,
		.arg = &o,
	};
	struct kpx_config *cfg;
	char usage[4096];
	FILE *uf;
	int ret;

	/* PATH_MAX fields: not for the stack */
	cfg = calloc(1, sizeof(*cfg));
	if (!cfg)
		return 1;
	uf = fmemopen(usage, sizeof(usage), "w");
	if (uf) {
		cleanup_usage(uf);
		fclose(uf);
		c.usage = usage;
	}
	kpx_config_defaults(cfg);
	ret = kpx_config_parse(cfg, argc, argv, &c);
	if (ret) {
		free(cfg);
		return ret > 0 ? 0 : 2;
	}
	kpx_log_verbosity = cfg->verbosity;
	if (o.wait_for_metric && !o.wait_for) {
		fprintf(stderr, "kpx cleanup: --wait-for-metric needs --wait-for URL\n");
		free(cfg);
		return 2;
	}
	if (o.wait_for &&
	    wait_for_url(o.wait_for, o.wait_for_metric, o.wait_timeout_ms)) {
		/* The successor is not serving: kpx's state keeps the node's
		 * Services working, so it stays. */
		fprintf(stderr,
			"kpx cleanup: %s did not answer 200 within %" PRIu64
			" s; kpx's state is left in place\n",
			o.wait_for, o.wait_timeout_ms / 1000);
		ret = 1;
	} else {
		ret = do_cleanup(cfg, &o);
	}
	free(cfg);
	if (o.then_sleep && ret == 0)
		return sleep_until_signal(ret);
	return ret;
}
