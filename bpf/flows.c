// SPDX-License-Identifier: Apache-2.0
/*
 * `kpx conntrack` for the bpf backend: the service flows the tc/XDP
 * datapath tracks in its own conntrack map (kpx_ct), read from the pins:
 * one entry per original-direction key, with the Service from
 * kpx_svc_meta. Connections balanced by the socket hooks have no entry
 * (they were translated once, at connect()).
 * Owns: nothing. Must not: change any map.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "bpf/flows.h"
#include "bpf/kpx_abi.h"
#include "bpf/map_walk.h"
#include "common/addr.h"

struct flows_walk {
	struct json_object *arr;
	int meta_fd;
	uint64_t now_ns;
};

/* "addr:port", IPv6 as "[addr]:port". */
static void ep_str(const uint8_t *addr, uint8_t fam, __be16 port, char *buf,
		   size_t len)
{
	char a[INET6_ADDRSTRLEN];
	bool v6 = fam == KPX_AF_INET6;

	inet_ntop(v6 ? AF_INET6 : AF_INET, addr, a, sizeof(a));
	snprintf(buf, len, v6 ? "[%s]:%u" : "%s:%u", a, ntohs(port));
}

static const char *proto_name(uint8_t p)
{
	return p == IPPROTO_TCP ? "TCP" : p == IPPROTO_UDP ? "UDP" :
	       p == IPPROTO_SCTP ? "SCTP" : "?";
}

static int flows_chunk(const void *keys, const void *vals, uint32_t n,
		       void *arg)
{
	const struct kpx_ct_key *k = keys;
	const struct kpx_ct_value *v = vals;
	struct flows_walk *w = arg;
	char buf[64];

	for (uint32_t i = 0; i < n; i++) {
		struct json_object *f;
		struct kpx_svc_meta meta;
		size_t alen = k[i].family == KPX_AF_INET6 ? 16 : 4;

		if (k[i].dir != KPX_CT_DIR_ORIG)
			continue;
		f = json_object_new_object();
		json_object_object_add(f, "protocol",
				       json_object_new_string(proto_name(k[i].proto)));
		ep_str(k[i].saddr, k[i].family, k[i].sport, buf, sizeof(buf));
		json_object_object_add(f, "client", json_object_new_string(buf));
		ep_str(k[i].daddr, k[i].family, k[i].dport, buf, sizeof(buf));
		json_object_object_add(f, "frontend", json_object_new_string(buf));
		ep_str(v[i].new_daddr, k[i].family, v[i].new_dport, buf, sizeof(buf));
		json_object_object_add(f, "backend", json_object_new_string(buf));
		if (memcmp(v[i].new_saddr, k[i].saddr, alen) ||
		    v[i].new_sport != k[i].sport) {
			ep_str(v[i].new_saddr, k[i].family, v[i].new_sport, buf,
			       sizeof(buf));
			json_object_object_add(f, "source_nat",
					       json_object_new_string(buf));
		} else {
			json_object_object_add(f, "source_nat", NULL);
		}
		if (w->meta_fd >= 0 &&
		    !bpf_map_lookup_elem(w->meta_fd, &v[i].svc_id, &meta)) {
			meta.name[sizeof(meta.name) - 1] = '\0';
			json_object_object_add(f, "service",
					       json_object_new_string(meta.name));
		} else {
			json_object_object_add(f, "service", NULL);
		}
		json_object_object_add(
			f, "idle_seconds",
			json_object_new_double(w->now_ns > v[i].last_seen_ns ?
				(w->now_ns - v[i].last_seen_ns) / 1e9 : 0));
		json_object_array_add(w->arr, f);
	}
	return 0;
}

int kpx_bpf_dump_flows(const char *bpf_root, struct json_object **out)
{
	struct flows_walk w = { .meta_fd = -1 };
	struct kpx_map_walk mw = {
		.key_size = sizeof(struct kpx_ct_key),
		.value_size = sizeof(struct kpx_ct_value),
		.chunk = 4096,
	};
	char path[4096];
	struct timespec ts;
	int err;

	*out = NULL;
	snprintf(path, sizeof(path), "%s/kpx_ct", bpf_root);
	mw.fd = bpf_obj_get(path);
	if (mw.fd < 0)
		return errno == ENOENT ? -ENOENT : -errno;
	snprintf(path, sizeof(path), "%s/kpx_svc_meta", bpf_root);
	w.meta_fd = bpf_obj_get(path);
	/* bpf_ktime_get_ns() is CLOCK_MONOTONIC. */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	w.now_ns = (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
	w.arr = json_object_new_array();
	err = kpx_map_walk(&mw, flows_chunk, &w);
	close(mw.fd);
	if (w.meta_fd >= 0)
		close(w.meta_fd);
	if (err) {
		json_object_put(w.arr);
		return err;
	}
	*out = w.arr;
	return 0;
}
