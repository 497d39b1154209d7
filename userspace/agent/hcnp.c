// SPDX-License-Identifier: Apache-2.0
/*
 * healthCheckNodePort servers: one HTTP server per eTP=Local service's
 * healthCheckNodePort, so that cloud load balancers send traffic only to
 * nodes with a local ready endpoint (kube-proxy's service health server).
 * Servers follow the programmed plan; a port that cannot be bound is
 * logged and retried on the next plan update, never fatal. Each server
 * answers on threads of its own (http.c); the loop publishes the
 * service's name and local endpoint count under kpx_hcnp.lock and the
 * handler reads them there, with the proxy's health from kpx_serve.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "agent/serve.h"
#include "agent/serve_priv.h"
#include "common/log.h"
#include "common/loop.h"
#include "plan/plan.h"

struct hc_server {
	uint16_t port;
	/* Published: written by the loop, read by the handler, under
	 * owner->lock. */
	char ns[KPX_NS_MAX];
	char name[KPX_NAME_MAX];
	uint32_t local_ready;
	/* Loop thread only. */
	uint32_t next_ready; /* during an update */
	bool seen; /* during an update */
	bool failed; /* bind failed: logged once per port */
	struct kpx_httpd *d;
	struct kpx_hcnp *owner;
};

struct kpx_hcnp {
	struct kpx_serve *serve;
	pthread_mutex_t lock;
	struct hc_server **srv;
	size_t n, cap;
};

static void hc_handle(void *arg, const struct kpx_request *req,
		      struct kpx_reply *rep)
{
	struct hc_server *s = arg;
	struct kpx_health_input in;
	struct kpx_health h;
	char ns[KPX_NS_MAX], name[KPX_NAME_MAX];
	uint32_t local_ready;
	bool ok;
	int n;

	(void)req;
	pthread_mutex_lock(&s->owner->lock);
	memcpy(ns, s->ns, sizeof(ns));
	memcpy(name, s->name, sizeof(name));
	local_ready = s->local_ready;
	pthread_mutex_unlock(&s->owner->lock);
	/* kube-proxy answers on every path and ignores the node's own state
	 * here: only proxy health and local endpoints count. */
	kpx_serve_health(s->owner->serve, &in, NULL);
	kpx_health_eval_input(&in, kpx_wall_seconds(), &h);
	ok = h.healthy && local_ready > 0;
	rep->status = ok ? 200 : 503;
	rep->content_type = "application/json";
	rep->hdr_name = "X-Load-Balancing-Endpoint-Weight";
	snprintf(rep->hdr_value, sizeof(rep->hdr_value), "%u", local_ready);
	n = asprintf(&rep->body,
		     "{\n\t\"service\": {\n\t\t\"namespace\": \"%s\",\n"
		     "\t\t\"name\": \"%s\"\n\t},\n\t\"localEndpoints\": %u,\n"
		     "\t\"serviceProxyHealthy\": %s\n}",
		     ns, name, local_ready, h.healthy ? "true" : "false");
	if (n < 0)
		rep->body = NULL;
	else
		rep->len = n;
}

int kpx_hcnp_new(struct kpx_agent *agent, struct kpx_hcnp **out)
{
	struct kpx_hcnp *h;

	if (!agent->serve)
		return -EINVAL;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->serve = agent->serve;
	pthread_mutex_init(&h->lock, NULL);
	*out = h;
	return 0;
}

static struct hc_server *hc_find(struct kpx_hcnp *h, uint16_t port)
{
	size_t i;

	for (i = 0; i < h->n; i++)
		if (h->srv[i]->port == port)
			return h->srv[i];
	return NULL;
}

static void hc_stop(struct hc_server *s)
{
	kpx_httpd_stop(s->d);
	free(s);
}

static struct hc_server *hc_add(struct kpx_hcnp *h, uint16_t port)
{
	struct hc_server *s, **n;

	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 8;

		n = realloc(h->srv, cap * sizeof(*n));
		if (!n)
			return NULL;
		h->srv = n;
		h->cap = cap;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->port = port;
	s->owner = h;
	h->srv[h->n++] = s;
	return s;
}

void kpx_hcnp_update(struct kpx_hcnp *h, const struct kpx_plan *plan)
{
	char bind[16];
	size_t i, j;
	int ret;

	if (!h)
		return;
	for (i = 0; i < h->n; i++) {
		h->srv[i]->seen = false;
		h->srv[i]->next_ready = 0;
	}
	for (i = 0; plan && i < plan->n_svcports; i++) {
		const struct kpx_plan_svcport *sp = &plan->svcports[i];
		struct hc_server *s;

		if (!sp->hc_node_port)
			continue;
		s = hc_find(h, sp->hc_node_port);
		if (s && s->seen &&
		    (strcmp(s->ns, sp->ns) || strcmp(s->name, sp->name))) {
			kpx_warn("healthCheckNodePort %u: used by %s/%s and "
				 "%s/%s; serving the first",
				 sp->hc_node_port, s->ns, s->name, sp->ns,
				 sp->name);
			continue;
		}
		if (!s) {
			s = hc_add(h, sp->hc_node_port);
			if (!s) {
				kpx_err("healthCheckNodePort %u of %s/%s: %s",
					sp->hc_node_port, sp->ns, sp->name,
					strerror(ENOMEM));
				continue;
			}
		}
		if (!s->seen) {
			/* A new server is not listening yet; a running one's
			 * handler may read these right now. */
			pthread_mutex_lock(&h->lock);
			snprintf(s->ns, sizeof(s->ns), "%s", sp->ns);
			snprintf(s->name, sizeof(s->name), "%s", sp->name);
			pthread_mutex_unlock(&h->lock);
		}
		s->seen = true;
		/* Service ports and families share the one health port;
		 * kube-proxy reports the service's local endpoint count. */
		if (sp->local_ready > s->next_ready)
			s->next_ready = sp->local_ready;
	}
	pthread_mutex_lock(&h->lock);
	for (i = 0; i < h->n; i++)
		h->srv[i]->local_ready = h->srv[i]->next_ready;
	pthread_mutex_unlock(&h->lock);
	for (i = 0, j = 0; i < h->n; i++) {
		struct hc_server *s = h->srv[i];

		if (!s->seen) {
			kpx_dbg(1, "healthCheckNodePort %u of %s/%s: closed",
				s->port, s->ns, s->name);
			hc_stop(s);
			continue;
		}
		h->srv[j++] = s;
		if (s->d)
			continue;
		snprintf(bind, sizeof(bind), ":%u", s->port);
		ret = kpx_httpd_start(bind, &kpx_httpd_hcnp_limits, hc_handle,
				      s, &s->d);
		if (ret) {
			if (!s->failed)
				kpx_err("healthCheckNodePort %u of %s/%s: %s",
					s->port, s->ns, s->name,
					strerror(-ret));
			s->failed = true;
		} else {
			s->failed = false;
			kpx_info("healthCheckNodePort %u of %s/%s: serving",
				 s->port, s->ns, s->name);
		}
	}
	h->n = j;
}

void kpx_hcnp_free(struct kpx_hcnp *h)
{
	size_t i;

	if (!h)
		return;
	for (i = 0; i < h->n; i++)
		hc_stop(h->srv[i]);
	free(h->srv);
	pthread_mutex_destroy(&h->lock);
	free(h);
}
