// SPDX-License-Identifier: Apache-2.0
/*
 * kubeconfig parsing (k8s/kubeconfig.c): the file behind --kubeconfig,
 * current-context, clusters, users, inline and file credentials.
 * Corpus: corpus/kubeconfig.
 */
#include "fuzz.h"
#include "k8s/client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct kpx_k8s_conn conn;
	char path[64], err[512];
	int fd;

	if (size > (1 << 20))
		return 0;
	fd = fuzz_file(data, size, path, sizeof(path));
	if (fd < 0)
		return 0;
	if (!kpx_kubeconfig_load(path, &conn, err, sizeof(err)))
		kpx_k8s_conn_clear(&conn);
	close(fd);
	return 0;
}
