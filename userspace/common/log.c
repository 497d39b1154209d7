// SPDX-License-Identifier: Apache-2.0
#include "common/log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int kpx_log_verbosity;
int kpx_log_silent;

/* Length of the valid UTF-8 sequence at s (1..4), 0 when invalid. */
static size_t utf8_len(const unsigned char *s)
{
	unsigned char c = s[0];

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		return (s[1] & 0xc0) == 0x80 ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) {
		unsigned char lo = c == 0xe0 ? 0xa0 : 0x80;
		unsigned char hi = c == 0xed ? 0x9f : 0xbf;

		return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 ? 3 :
									    0;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		unsigned char lo = c == 0xf0 ? 0x90 : 0x80;
		unsigned char hi = c == 0xf4 ? 0x8f : 0xbf;

		return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 &&
			       (s[3] & 0xc0) == 0x80 ?
			       4 :
			       0;
	}
	return 0;
}

/* Code points that are valid UTF-8 but move or hide text on a terminal:
 * C1 controls (CSI is U+009B), line/paragraph separators, bidi controls. */
static bool unsafe_code_point(uint32_t cp)
{
	return (cp >= 0x80 && cp <= 0x9f) || (cp >= 0x2028 && cp <= 0x202e) ||
	       (cp >= 0x2066 && cp <= 0x2069) || cp == 0x200e || cp == 0x200f;
}

static uint32_t decode(const unsigned char *s, size_t n)
{
	uint32_t cp = n == 1 ? s[0] : s[0] & (0x7f >> n);

	for (size_t i = 1; i < n; i++)
		cp = cp << 6 | (s[i] & 0x3f);
	return cp;
}

size_t kpx_escape(const char *in, char *buf, size_t len)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t o = 0;

	if (!len)
		return 0;
	while (*s) {
		char tmp[8];
		const char *out = tmp;
		size_t n = utf8_len(s), w;

		if (n == 1 && *s >= 0x20 && *s != 0x7f) {
			tmp[0] = (char)*s;
			w = 1;
		} else if (*s == '\n' || *s == '\t' || *s == '\r') {
			tmp[0] = '\\';
			tmp[1] = *s == '\n' ? 'n' : *s == '\t' ? 't' : 'r';
			w = 2;
		} else if (n <= 1) {
			/* A control character or a byte that starts no valid
			 * sequence: one byte, shown as its value. */
			w = (size_t)snprintf(tmp, sizeof(tmp), "\\x%02x", *s);
			n = 1;
		} else if (unsafe_code_point(decode(s, n))) {
			w = (size_t)snprintf(tmp, sizeof(tmp), "\\u%04x",
					     (unsigned)decode(s, n));
		} else {
			out = (const char *)s;
			w = n;
		}
		if (o + w >= len)
			break; /* never half an escape or a character */
		memcpy(buf + o, out, w);
		o += w;
		s += n;
	}
	buf[o] = '\0';
	return o;
}

void kpx_log(char severity, const char *file, int line, const char *fmt, ...)
{
	char msg[1024], esc[4 * sizeof(msg)];
	struct timeval tv;
	struct tm tm;
	const char *base = strrchr(file, '/');
	va_list ap;

	gettimeofday(&tv, NULL);
	localtime_r(&tv.tv_sec, &tm);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* Messages carry names from objects that any tenant writes: a
	 * newline would forge a log line, an escape sequence would act on
	 * the operator's terminal. */
	kpx_escape(msg, esc, sizeof(esc));
	if (kpx_log_silent)
		return;
	/* One write per line so concurrent agents never interleave a line. */
	fprintf(stderr, "%c%02d%02d %02d:%02d:%02d.%06ld %7d %s:%d] %s\n",
		severity, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
		tm.tm_sec, (long)tv.tv_usec, (int)getpid(),
		base ? base + 1 : file, line, esc);
}
