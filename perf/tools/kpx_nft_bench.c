// SPDX-License-Identifier: Apache-2.0
/*
 * Times the nft backend directly (no agent, no manifests): builds an
 * in-memory plan of N ClusterIP TCP services x E endpoints, runs a cold
 * full sync, then one-endpoint changes (remove one, add it back).
 * Must run inside a throwaway network namespace (perf/nft_bench.sh).
 * Usage: kpx_nft_bench SERVICES ENDPOINTS [--keep] [--changes N]
 *        [--affinity SECONDS] [--gap MS] [--ticks N] [--grow K] [-v N]
 *        (affinity: every service with ClientIP affinity; gap: idle time
 *        before each change, as between an agent's syncs; ticks: backend
 *        ticks after the changes, default 40, each timed; grow: then
 *        scale one service up by K endpoints, one per sync; -v 1 logs each
 *        sync's build/commit split)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/backend.h"
#include "agent/config.h"
#include "common/log.h"
#include "plan/plan.h"

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	if (ms > 0)
		nanosleep(&ts, NULL);
}

static void mkplan(struct kpx_plan *p, size_t n, size_t e)
{
	memset(p, 0, sizeof(*p));
	kpx_cidr_parse("198.19.0.0/16", &p->input.cluster_cidrs[0]);
	p->input.n_cluster_cidrs = 1;
	p->svcports = calloc(n, sizeof(*p->svcports));
	for (size_t i = 0; i < n; i++) {
		struct kpx_plan_svcport *sp = &p->svcports[i];
		char s[64];

		snprintf(s, sizeof(s), "bench/svc%06zu:http/TCP/v4", i);
		sp->id = kpx_intern(s);
		sp->ns = kpx_intern("bench");
		snprintf(s, sizeof(s), "svc%06zu", i);
		sp->name = kpx_intern(s);
		sp->port_name = kpx_intern("http");
		sp->family = AF_INET;
		sp->proto = IPPROTO_TCP;
		sp->port = 80;
		sp->type = KPX_SVC_CLUSTER_IP;
		sp->frontends = calloc(1, sizeof(*sp->frontends));
		sp->n_frontends = 1;
		sp->frontends[0].kind = KPX_FE_CLUSTER_IP;
		sp->frontends[0].addr.family = AF_INET;
		/* 198.18.128.0/17 holds 32k ClusterIPs. */
		sp->frontends[0].addr.v4.s_addr = htonl(0xc6128000u + (uint32_t)i + 1);
		sp->frontends[0].port = 80;
		sp->endpoints = calloc(e + 1, sizeof(*sp->endpoints));
		sp->internal = calloc(e + 1, sizeof(uint32_t));
		sp->n_endpoints = e;
		sp->n_internal = e;
		for (size_t j = 0; j < e; j++) {
			struct kpx_plan_endpoint *ep = &sp->endpoints[j];
			uint32_t k = (uint32_t)(i * e + j);
			ep->addr.family = AF_INET;
			/* 198.19.0.0/16 + 198.20... stays in 198.18/15 only
			 * for 65k endpoints: reuse addresses, vary ports. */
			ep->addr.v4.s_addr = htonl(0xc6130000u + (k % 65000u) + 1);
			ep->port = (uint16_t)(8000 + (k / 65000u));
			ep->flags = KPX_EP_READY | KPX_EP_SERVING;
			sp->internal[j] = (uint32_t)j;
		}
		sp->hash = i + 1;
	}
	p->n_svcports = n;
}

int main(int argc, char **argv)
{
	struct kpx_config cfg;
	struct kpx_backend *b;
	struct kpx_plan plan;
	size_t n, e;
	int changes = 5, keep = 0, gap = 0, ticks = 40, grow = 0, err;
	uint32_t aff = 0;
	double t;

	if (argc < 3) {
		fprintf(stderr, "usage: %s SERVICES ENDPOINTS [--keep] [--changes N] [--affinity S] [--gap MS] [--ticks N] [--grow K] [-v N]\n", argv[0]);
		return 2;
	}
	n = strtoul(argv[1], NULL, 10);
	e = strtoul(argv[2], NULL, 10);
	for (int i = 3; i < argc; i++) {
		if (!strcmp(argv[i], "--keep"))
			keep = 1;
		else if (!strcmp(argv[i], "--changes") && i + 1 < argc)
			changes = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--affinity") && i + 1 < argc)
			aff = (uint32_t)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--gap") && i + 1 < argc)
			gap = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--grow") && i + 1 < argc)
			grow = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--ticks") && i + 1 < argc)
			ticks = atoi(argv[++i]);
		else if (!strcmp(argv[i], "-v") && i + 1 < argc)
			kpx_log_verbosity = atoi(argv[++i]);
	}
	kpx_config_defaults(&cfg);
	mkplan(&plan, n, e);
	for (size_t i = 0; i < n; i++)
		plan.svcports[i].affinity_timeout = aff;
	if ((err = kpx_nft_backend.open(&cfg, &b))) {
		fprintf(stderr, "open: %s\n", strerror(-err));
		return 1;
	}
	t = now_ms();
	err = kpx_nft_backend.sync(b, &plan);
	printf("cold_full_sync services=%zu endpoints=%zu ms=%.1f err=%d\n", n, e,
	       now_ms() - t, err);
	if (err)
		return 1;
	double sum = 0, max = 0;
	for (int c = 0; c < changes; c++) {
		struct kpx_plan_svcport *sp = &plan.svcports[(size_t)c * 7919 % n];
		/* remove the last endpoint, then put it back; the backend
		 * diffs by the plan's svcport hash */
		uint64_t h0 = sp->hash;
		sp->n_internal = sp->n_endpoints = e - 1;
		sp->hash = h0 ^ 0x9e3779b97f4a7c15ull;
		sleep_ms(gap);
		t = now_ms();
		err = kpx_nft_backend.sync(b, &plan);
		double d = now_ms() - t;
		sum += d;
		max = d > max ? d : max;
		sp->n_internal = sp->n_endpoints = e;
		sp->hash = h0;
		sleep_ms(gap);
		t = now_ms();
		err |= kpx_nft_backend.sync(b, &plan);
		d = now_ms() - t;
		sum += d;
		max = d > max ? d : max;
		if (err)
			break;
	}
	if (changes)
		printf("one_endpoint_remove_add services=%zu endpoints=%zu mean_ms=%.2f max_ms=%.2f n=%d err=%d\n",
		       n, e, sum / (2 * changes), max, 2 * changes, err);
	/* One endpoint replaced (a pod rescheduled: new IP, same count). */
	sum = max = 0;
	for (int c = 0; c < changes && !err; c++) {
		struct kpx_plan_svcport *sp = &plan.svcports[(size_t)c * 7919 % n];
		struct kpx_plan_endpoint *ep = &sp->endpoints[e - 1];
		uint64_t h0 = sp->hash;
		struct kpx_addr a0 = ep->addr;
		ep->addr.v4.s_addr = htonl(0xc613fe00u + (uint32_t)c);
		sp->hash = h0 ^ 0x51ed270b27a9c3f1ull;
		sleep_ms(gap);
		t = now_ms();
		err = kpx_nft_backend.sync(b, &plan);
		double d = now_ms() - t;
		sum += d;
		max = d > max ? d : max;
		ep->addr = a0;
		sp->hash = h0;
		sleep_ms(gap);
		t = now_ms();
		err |= kpx_nft_backend.sync(b, &plan);
		d = now_ms() - t;
		sum += d;
		max = d > max ? d : max;
	}
	if (changes)
		printf("one_endpoint_replace services=%zu endpoints=%zu mean_ms=%.2f max_ms=%.2f n=%d err=%d\n",
		       n, e, sum / (2 * changes), max, 2 * changes, err);
	/* Housekeeping as the agent's tick timer runs it (the nft backend
	 * adds the selection tables a full sync left out, one per tick). */
	if (kpx_nft_backend.tick && ticks > 0 && !err) {
		double tot = 0, tmax = 0;
		for (int k = 0; k < ticks; k++) {
			t = now_ms();
			kpx_nft_backend.tick(b);
			double d = now_ms() - t;
			tot += d;
			tmax = d > tmax ? d : tmax;
		}
		printf("ticks services=%zu endpoints=%zu n=%d total_ms=%.1f max_ms=%.2f\n",
		       n, e, ticks, tot, tmax);
	}
	/* One service scaled up one endpoint per sync (a rollout): every
	 * count past the prepared ones needs its selection table. */
	if (grow > 0 && !err) {
		struct kpx_plan_svcport *sp = &plan.svcports[n / 2];
		struct kpx_plan_endpoint *eps =
			realloc(sp->endpoints, (e + (size_t)grow) * sizeof(*eps));
		uint32_t *in = realloc(sp->internal, (e + (size_t)grow) * sizeof(*in));
		double gsum = 0, gmax = 0;
		if (eps)
			sp->endpoints = eps;
		if (in)
			sp->internal = in;
		for (int k = 0; k < grow && eps && in && !err; k++) {
			struct kpx_plan_endpoint *ep = &sp->endpoints[e + (size_t)k];
			*ep = sp->endpoints[0];
			ep->addr.v4.s_addr = htonl(0xc613fd00u + (uint32_t)k);
			sp->internal[e + (size_t)k] = (uint32_t)(e + (size_t)k);
			sp->n_endpoints = sp->n_internal = e + (size_t)k + 1;
			sp->hash ^= 0x2545f4914f6cdd1dull + (uint64_t)k;
			sleep_ms(gap);
			t = now_ms();
			err = kpx_nft_backend.sync(b, &plan);
			double d = now_ms() - t;
			gsum += d;
			gmax = d > gmax ? d : gmax;
		}
		printf("grow services=%zu endpoints=%zu..%zu mean_ms=%.2f max_ms=%.2f total_ms=%.1f n=%d err=%d\n",
		       n, e, e + (size_t)grow, gsum / grow, gmax, gsum, grow, err);
	}
	/* A second full sync (agent restart shape: open + first sync). */
	kpx_nft_backend.close(b);
	kpx_nft_backend.open(&cfg, &b);
	t = now_ms();
	err = kpx_nft_backend.sync(b, &plan);
	printf("restart_full_sync services=%zu endpoints=%zu ms=%.1f err=%d\n", n, e,
	       now_ms() - t, err);
	kpx_nft_backend.close(b);
	if (!keep)
		kpx_nft_backend.cleanup(&cfg);
	return err ? 1 : 0;
}
