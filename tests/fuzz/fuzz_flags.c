// SPDX-License-Identifier: Apache-2.0
/*
 * Flag and value parsers (agent/config.c, common/addr.c): the whole
 * `kpx run` command line (one argument per line of the input), and the
 * duration, boolean, backend, address and CIDR parsers and the
 * Prometheus sample reader of `kpx cleanup --wait-for-metric` on the input
 * as one string. Durations must survive a format/parse round trip.
 * --config, --kubeconfig and friends are left out: they read files.
 * Corpus: corpus/flags.
 */
#include <stdbool.h>

#include "agent/config.h"
#include "cli/cli.h"
#include "common/addr.h"
#include "fuzz.h"

#define MAX_ARGS 64

static void value_parsers(const char *s)
{
	enum kpx_backend_kind bk;
	struct kpx_cidr cidrs[8];
	struct kpx_addr addr;
	char buf[128];
	uint64_t ms, ms2;
	int64_t ns;
	size_t n;
	bool b;

	kpx_duration_parse_ns(s, &ns);
	if (!kpx_duration_parse(s, &ms)) {
		kpx_duration_format(ms, buf, sizeof(buf));
		/* What we print for a duration reads back as the same. */
		if (kpx_duration_parse(buf, &ms2) || ms2 != ms)
			abort();
	}
	kpx_bool_parse(s, &b);
	kpx_prom_sample_above_zero(s, "kubeproxy_sync_proxy_rules_last_timestamp_seconds");
	kpx_backend_parse(s, &bk);
	if (!kpx_addr_parse(s, &addr))
		kpx_addr_str(&addr, buf);
	kpx_cidr_parse(s, &cidrs[0]);
	kpx_cidr_list_parse(s, cidrs, 8, &n);
	snprintf(buf, sizeof(buf), "%s", s);
	kpx_addr_append_port(buf, sizeof(buf), 10256);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct kpx_config cfg;
	char *s, *argv[MAX_ARGS + 2], *save = NULL, *tok;
	int argc = 0;

	if (size > 4096)
		return 0;
	s = fuzz_cstr(data, size);
	value_parsers(s);
	if (strstr(s, "config") || memchr(data, '\0', size)) {
		free(s);
		return 0;
	}
	argv[argc++] = "run";
	for (tok = strtok_r(s, "\n", &save); tok && argc <= MAX_ARGS;
	     tok = strtok_r(NULL, "\n", &save))
		argv[argc++] = tok;
	argv[argc] = NULL;
	kpx_config_defaults(&cfg);
	kpx_config_parse_run(&cfg, argc, argv);
	free(s);
	return 0;
}
