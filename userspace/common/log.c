// SPDX-License-Identifier: Apache-2.0
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int kpx_log_verbosity;

void kpx_log(char severity, const char *file, int line, const char *fmt, ...)
{
	char msg[1024];
	struct timeval tv;
	struct tm tm;
	const char *base = strrchr(file, '/');
	va_list ap;

	gettimeofday(&tv, NULL);
	localtime_r(&tv.tv_sec, &tm);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* One write per line so concurrent agents never interleave a line. */
	fprintf(stderr, "%c%02d%02d %02d:%02d:%02d.%06ld %7d %s:%d] %s\n",
		severity, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
		tm.tm_sec, (long)tv.tv_usec, (int)getpid(),
		base ? base + 1 : file, line, msg);
}
