// SPDX-License-Identifier: Apache-2.0
/*
 * The KubeProxyConfiguration reader (agent/config_file.c, --config FILE):
 * YAML or JSON, or a whole ConfigMap holding it, then rendered back as
 * /configz would.
 * Corpus: corpus/config_file.
 */
#include "agent/config.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct kpx_config cfg;
	char path[64];
	int fd;

	if (size > (1 << 20))
		return 0;
	fd = fuzz_file(data, size, path, sizeof(path));
	if (fd < 0)
		return 0;
	kpx_config_defaults(&cfg);
	if (!kpx_config_load_file(&cfg, path))
		free(kpx_config_render(&cfg, KPX_BACKEND_NFT));
	close(fd);
	return 0;
}
