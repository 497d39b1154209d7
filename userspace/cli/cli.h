/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `kpx` subcommands. Each takes argv starting at the subcommand name and
 * returns the process exit code.
 */
#ifndef KPX_CLI_H
#define KPX_CLI_H

int kpx_cmd_status(int argc, char **argv);   /* cli/status.c */
int kpx_cmd_services(int argc, char **argv); /* cli/services.c */
int kpx_cmd_plan(int argc, char **argv);     /* cli/plan.c */
int kpx_cmd_cleanup(int argc, char **argv);  /* cli/cleanup.c */
int kpx_cmd_explain(int argc, char **argv);  /* cli/explain.c */
int kpx_cmd_conntrack(int argc, char **argv); /* cli/conntrack.c */

struct json_object;
/* `kpx plan` argument handling and build, as the plan document (cli/plan.c):
 * 0 with *out set, 0 with *out NULL after --help, else the exit code. */
int kpx_cli_plan_json(int argc, char **argv, const char *who,
		      struct json_object **out);

struct kpx_config;
/* `kpx run --cleanup`: what `kpx cleanup` does with the run's flags
 * (kube-proxy's --cleanup). Returns the exit code. */
int kpx_cleanup_exec(struct kpx_config *cfg);
/*
 * An agent starting with backend keep removes the other backend's state
 * first (bpf: pins and socket hooks under --bpf-root; nft: table inet
 * kpx), unless a live agent holds it (the bpf root's lock; an agent on
 * the state socket). 0, or a negative errno (logged, not fatal).
 */
int kpx_cleanup_other_backend(const struct kpx_config *cfg, int keep);
/* True when the Prometheus text page (NUL-terminated) has a sample of
 * metric `name`, with or without labels, whose value is above 0: what
 * `kpx cleanup --wait-for-metric` waits for on a successor's /metrics. */
bool kpx_prom_sample_above_zero(const char *page, const char *name);

#endif
