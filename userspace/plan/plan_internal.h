/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helpers shared by plan.c (building) and plan_json.c (output).
 * Owns nothing; private to userspace/plan/.
 */
#ifndef KPX_PLAN_INTERNAL_H
#define KPX_PLAN_INTERNAL_H

#include <stdint.h>

#include "plan/plan.h"

const char *kpx_plan_type_name(enum kpx_svc_type type);
uint64_t kpx_plan_svcport_hash(const struct kpx_plan_svcport *sp);

#endif
