// SPDX-License-Identifier: Apache-2.0
/* Common flags and backend discovery for `kpx status` / `kpx services`. */
#include "cli/inspect.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "agent/serve.h"

int kpx_inspect_parse(int argc, char **argv, bool allow_filter,
		      const char *usage, struct kpx_inspect_opts *o)
{
	enum { O_SOCK = 256, O_ROOT, O_BACKEND, O_CGROUP, O_VERIFY };
	static const struct option longopts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "namespace", required_argument, NULL, 'n' },
		{ "state-socket", required_argument, NULL, O_SOCK },
		{ "bpf-root", required_argument, NULL, O_ROOT },
		{ "backend", required_argument, NULL, O_BACKEND },
		{ "proxy-mode", required_argument, NULL, O_BACKEND },
		{ "cgroup-path", required_argument, NULL, O_CGROUP },
		{ "verify", no_argument, NULL, O_VERIFY },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c, idx = 0;
	size_t len = 0;
	char *dst;

	memset(o, 0, sizeof(*o));
	kpx_config_defaults(&o->cfg);
	optind = 1;
	opterr = 1;
	while ((c = getopt_long(argc, argv, "o:n:h", longopts, &idx)) != -1) {
		dst = NULL;
		switch (c) {
		case 'o':
			if (strcmp(optarg, "json") && strcmp(optarg, "wide") &&
			    strcmp(optarg, "text")) {
				fprintf(stderr,
					"kpx: -o %s: want json, wide or text\n",
					optarg);
				return -EINVAL;
			}
			o->output = strcmp(optarg, "text") ? optarg : NULL;
			break;
		case 'n':
			if (!allow_filter)
				goto bad;
			o->ns = optarg;
			break;
		case O_SOCK:
			dst = o->cfg.state_socket;
			len = sizeof(o->cfg.state_socket);
			break;
		case O_ROOT:
			dst = o->cfg.bpf_root;
			len = sizeof(o->cfg.bpf_root);
			break;
		case O_CGROUP:
			dst = o->cfg.cgroup_path;
			len = sizeof(o->cfg.cgroup_path);
			break;
		case O_BACKEND:
			if (kpx_backend_parse(optarg, &o->cfg.backend)) {
				fprintf(stderr,
					"kpx: --backend %s: want bpf or nft\n",
					optarg);
				return -EINVAL;
			}
			break;
		case O_VERIFY:
			if (!allow_filter)
				goto bad;
			o->verify = true;
			break;
		case 'h':
			fputs(usage, stdout);
			return 1;
		default:
			goto bad;
		}
		/* The path flags: only the long form exists, so idx is set. */
		if (dst && snprintf(dst, len, "%s", optarg) >= (int)len) {
			fprintf(stderr, "kpx: --%s: value too long\n",
				longopts[idx].name);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		if (!allow_filter || argc - optind > 1) {
			fprintf(stderr, "kpx: unexpected argument '%s'\n",
				argv[optind]);
			goto bad;
		}
		o->name = argv[optind];
	}
	kpx_state_socket_resolve(o->cfg.state_socket,
				 sizeof(o->cfg.state_socket));
	return 0;
bad:
	fputs(usage, stderr);
	return -EINVAL;
}

const struct kpx_backend_ops *kpx_inspect_backend(const struct kpx_config *cfg,
						  const char *agent_backend)
{
	static const enum kpx_backend_kind order[] = { KPX_BACKEND_BPF,
						       KPX_BACKEND_NFT };
	const struct kpx_backend_ops *ops;
	struct json_object *dp = NULL;
	size_t i;

	if (cfg->backend != KPX_BACKEND_AUTO)
		return kpx_backend_ops(cfg->backend);
	if (agent_backend) {
		for (i = 0; i < 2; i++) {
			ops = kpx_backend_ops(order[i]);
			if (ops && ops->name && !strcmp(ops->name, agent_backend))
				return ops;
		}
	}
	/* No hint: whichever backend has state programmed (pinned maps
	 * under bpf_root, or the kpx nftables table in this netns). */
	for (i = 0; i < 2; i++) {
		ops = kpx_backend_ops(order[i]);
		if (!ops || !ops->dump_datapath)
			continue;
		if (!ops->dump_datapath(cfg, &dp)) {
			json_object_put(dp);
			return ops;
		}
		json_object_put(dp);
		dp = NULL;
	}
	return NULL;
}

struct json_object *kpx_jget(const struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	if (!o || !json_object_is_type(o, json_type_object))
		return NULL;
	json_object_object_get_ex(o, key, &v);
	return v;
}

const char *kpx_jstr(const struct json_object *o, const char *key,
		     const char *dflt)
{
	struct json_object *v = kpx_jget(o, key);

	return v ? json_object_get_string(v) : dflt;
}

int64_t kpx_jint(const struct json_object *o, const char *key, int64_t dflt)
{
	struct json_object *v = kpx_jget(o, key);

	return v ? json_object_get_int64(v) : dflt;
}

bool kpx_jbool(const struct json_object *o, const char *key)
{
	struct json_object *v = kpx_jget(o, key);

	return v && json_object_get_boolean(v);
}
