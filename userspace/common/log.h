/* SPDX-License-Identifier: Apache-2.0 */
/*
 * klog-shaped single-line logging on stderr:
 *   E1123 14:16:00.123456   4242 file.c:12] message
 * Control characters and invalid UTF-8 in a message (names from
 * objects) are escaped: a line is always one line, and never acts on a
 * terminal.
 * Owns: the verbosity level. Must not: allocate, or log per packet.
 */
#ifndef KPX_LOG_H
#define KPX_LOG_H

#include <stddef.h>

extern int kpx_log_verbosity;
/* Fuzzers: lines are formatted and escaped as always, then dropped. */
extern int kpx_log_silent;

void kpx_log(char severity, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/*
 * Copies s into buf (always NUL-terminated, cut before a character or an
 * escape that does not fit) with control characters as \n, \t, \r,
 * \xNN, bytes that are not valid UTF-8 as \xNN, and C1 controls, line
 * separators and bidi controls as \uNNNN; other UTF-8 passes. For every
 * string from an object that reaches a log, a table or a terminal; buf of
 * 4 x strlen(s) + 1 never cuts. Returns the length written.
 */
size_t kpx_escape(const char *s, char *buf, size_t len);

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
