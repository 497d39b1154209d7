/* SPDX-License-Identifier: Apache-2.0 */
/*
 * klog-shaped single-line logging on stderr:
 *   E1123 14:16:00.123456   4242 file.c:12] message
 * Owns: the verbosity level. Must not: allocate, or log per packet.
 */
#ifndef KPX_LOG_H
#define KPX_LOG_H

extern int kpx_log_verbosity;

void kpx_log(char severity, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#define kpx_err(fmt, ...) kpx_log('E', __FILE__, __LINE__, fmt, ##__VA_ARGS__)
#define kpx_warn(fmt, ...) kpx_log('W', __FILE__, __LINE__, fmt, ##__VA_ARGS__)
#define kpx_info(fmt, ...) kpx_log('I', __FILE__, __LINE__, fmt, ##__VA_ARGS__)
/* Verbose info, shown at -v N and above. */
#define kpx_dbg(level, fmt, ...)                                               \
	do {                                                                   \
		if (kpx_log_verbosity >= (level))                              \
			kpx_log('I', __FILE__, __LINE__, fmt, ##__VA_ARGS__);  \
	} while (0)

#endif
