// SPDX-License-Identifier: Apache-2.0
/* Common flags and backend discovery for `kpx status` / `kpx services`. */
#include "cli/inspect.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "agent/serve.h"

enum { O_OUTPUT, O_NAMESPACE, O_VERIFY };

struct inspect_ctx {
	struct kpx_inspect_opts *o;
	bool allow_filter;
};

static int inspect_flag(void *arg, const struct kpx_flag *f, const char *v)
{
	struct inspect_ctx *c = arg;

	switch (f->id) {
	case O_OUTPUT:
		if (strcmp(v, "json") && strcmp(v, "wide") && strcmp(v, "text")) {
			fprintf(stderr, "kpx: -o %s: want json, wide or text\n",
				v);
			return -EINVAL;
		}
		c->o->output = strcmp(v, "text") ? v : NULL;
		return 0;
	case O_NAMESPACE:
		if (!c->allow_filter)
			return -EINVAL;
		c->o->ns = v;
		return 0;
	case O_VERIFY:
		if (!c->allow_filter)
			return -EINVAL;
		return kpx_bool_parse(v, &c->o->verify);
	default:
		return -EINVAL;
	}
}

int kpx_inspect_parse(int argc, char **argv, bool allow_filter,
		      const char *usage, struct kpx_inspect_opts *o)
{
	/* Their own flags on top of the one table of `kpx run` (bpf-root,
	 * state-socket, backend, cgroup-path...): an agent's argument list
	 * works here too. */
	static const struct kpx_flag extra[] = {
		{ "output", 'o', KPX_FT_STRING, O_OUTPUT, NULL },
		{ "namespace", 'n', KPX_FT_STRING, O_NAMESPACE, NULL },
		{ "verify", 0, KPX_FT_BOOL, O_VERIFY, NULL },
		{ NULL, 0, 0, 0, NULL },
	};
	struct inspect_ctx ictx = { .o = o, .allow_filter = allow_filter };
	char *pos[1];
	struct kpx_flag_cmd c = {
		.cmd = argv[0],
		.usage = usage,
		.extra = extra,
		.fn = inspect_flag,
		.arg = &ictx,
		.pos = pos,
		.max_pos = allow_filter ? 1 : 0,
		.quiet = true,
	};
	int ret;

	memset(o, 0, sizeof(*o));
	kpx_config_defaults(&o->cfg);
	ret = kpx_config_parse(&o->cfg, argc, argv, &c);
	if (ret > 0)
		return 1;
	if (ret < 0) {
		fputs(usage, stderr);
		return -EINVAL;
	}
	if (c.n_pos)
		o->name = pos[0];
	kpx_state_socket_resolve(o->cfg.state_socket,
				 sizeof(o->cfg.state_socket));
	return 0;
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
