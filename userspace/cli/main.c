// SPDX-License-Identifier: Apache-2.0
/* `kpx`: one binary, subcommands dispatched here; flags are parsed by each. */
#include <stdio.h>
#include <string.h>

#include "agent/agent.h"
#include "cli/cli.h"

static void usage(FILE *f)
{
	fprintf(f,
		"kpx - Kubernetes Service dataplane (kube-proxy replacement)\n"
		"\n"
		"Usage: kpx COMMAND [flags]\n"
		"\n"
		"  run [flags]              the node agent (DaemonSet entrypoint)\n"
		"  status [-o json]         agent, backend and datapath state\n"
		"  services [-o json|wide]  services as programmed (alias: svc)\n"
		"  plan --manifests DIR     desired per-node state, no kernel access\n"
		"  explain --src IP --dst IP --port N   what kpx does with one packet, and why\n"
		"  conntrack [-o json] [NAME]  service flows the datapath tracks\n"
		"  cleanup [--backend X]    remove everything kpx programmed\n"
		"  version                  print the version\n"
		"\n"
		"Run 'kpx COMMAND --help' for a command's flags.\n");
}

int main(int argc, char **argv)
{
	const char *cmd;

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	cmd = argv[1];
	if (!strcmp(cmd, "run"))
		return kpx_agent_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "status"))
		return kpx_cmd_status(argc - 1, argv + 1);
	if (!strcmp(cmd, "services") || !strcmp(cmd, "svc"))
		return kpx_cmd_services(argc - 1, argv + 1);
	if (!strcmp(cmd, "conntrack"))
		return kpx_cmd_conntrack(argc - 1, argv + 1);
	if (!strcmp(cmd, "explain"))
		return kpx_cmd_explain(argc - 1, argv + 1);
	if (!strcmp(cmd, "plan"))
		return kpx_cmd_plan(argc - 1, argv + 1);
	if (!strcmp(cmd, "cleanup"))
		return kpx_cmd_cleanup(argc - 1, argv + 1);
	if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
		printf("kpx %s\n", KPX_VERSION);
		return 0;
	}
	if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") ||
	    !strcmp(cmd, "-h")) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "kpx: unknown command '%s'\n\n", cmd);
	usage(stderr);
	return 2;
}
