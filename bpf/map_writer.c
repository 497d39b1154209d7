// SPDX-License-Identifier: Apache-2.0
/* The map writer (see map_writer.h). */
#include <errno.h>
#include <string.h>

#include "bpf/map_writer.h"

const char *const kpx_map_names[KPX_MAP_N] = {
	[KPX_MAP_SVC] = "kpx_svc",
	[KPX_MAP_SLOTS] = "kpx_slots",
	[KPX_MAP_BACKENDS] = "kpx_backends",
	[KPX_MAP_MAGLEV] = "kpx_maglev",
	[KPX_MAP_SVC_META] = "kpx_svc_meta",
	[KPX_MAP_SRC_RANGE] = "kpx_src_range",
	[KPX_MAP_AFFINITY] = "kpx_affinity",
};

uint32_t kpx_map_writer_slots_capacity(uint32_t services_max,
				       uint32_t backends_max)
{
	uint64_t n = 4ull * (services_max > backends_max ? services_max
							  : backends_max);

	return n > (1u << 24) ? (1u << 24) : (uint32_t)n;
}
